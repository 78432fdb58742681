"""Every user mistake is one line on stderr, exit 2, no traceback, and nothing done: no request
sent, no file or warehouse created."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from jicoo_sandbox.server import SandboxServer
from tests.signals.support import CHILD_TIMEOUT_S, environment, one_line, run, temp_files

USERS = ["extract", "--tables", "users", "--quiet"]


def test_load_from_a_root_that_does_not_exist(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    env = environment(None, tmp_path)
    args = ["load", "--root", str(tmp_path / "nonexistent"), "--warehouse-url", str(warehouse)]
    done = run(*args, env=env, cwd=tmp_path)

    assert done.returncode == 2
    assert one_line(done.stderr) == (
        f"jicoo: load: no Parquet folder at {tmp_path / 'nonexistent'} (--root or "
        "JICOO_WAREHOUSE_ROOT): nothing was loaded; extract first (jicoo extract --out DIR)"
    )
    assert not warehouse.exists()


def test_load_from_a_folder_without_partitions(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    env = environment(None, tmp_path)
    args = ["load", "--root", str(tmp_path / "empty")]
    done = run(*args, "--warehouse-url", str(tmp_path / "w.duckdb"), env=env, cwd=tmp_path)

    assert done.returncode == 2
    assert one_line(done.stderr) == (
        f"jicoo: load: no Parquet partitions under {tmp_path / 'empty'} (run jicoo extract first?)"
    )


@pytest.mark.parametrize(
    ("variables", "line"),
    [
        (
            {"JICOO_BASE_URL": "{base}/v1"},
            "jicoo: base URL '{base}/v1' ends in /v1: give the origin alone "
            "(https://api.jicoo.com); the client adds /v1 to every path",
        ),
        (
            {"JICOO_API_KEY": "sk_live_ab\u201ccd"},
            "jicoo: JICOO_API_KEY: the API key contains non-ASCII characters: copy it again",
        ),
        (
            {"JICOO_PROXY_URL": "http://user:pw@proxy.internal:80800"},
            "jicoo: JICOO_PROXY_URL: the proxy URL's port is not a number from 1 to 65535",
        ),
        (
            {
                "HTTPS_PROXY": "http://proxy.internal:http",
                "JICOO_BASE_URL": "https://api.jicoo.com",
            },
            "jicoo: the proxy URL's port is not a number from 1 to 65535 (from "
            "HTTPS_PROXY/HTTP_PROXY/ALL_PROXY)",
        ),
    ],
    ids=["base-url-v1", "non-ascii-key", "proxy-port", "env-proxy-port"],
)
def test_a_setting_that_cannot_work_stops_the_extract_before_any_request(
    variables: dict[str, str], line: str, sandbox: SandboxServer, tmp_path: Path
) -> None:
    base = sandbox.base_url
    env = environment(sandbox, tmp_path, **{k: v.format(base=base) for k, v in variables.items()})
    sandbox.clear_requests()
    done = run(*USERS, "--out", str(tmp_path / "wh"), env=env, cwd=tmp_path)

    assert done.returncode == 2
    assert one_line(done.stderr) == line.format(base=base)
    assert "pw" not in done.stderr
    assert sandbox.requests() == []
    assert not (tmp_path / "wh").exists()


def test_an_api_error_in_extract_is_one_line_naming_the_request(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    # A base URL under a path the API does not serve: every request is a 404, never retried.
    env = environment(sandbox, tmp_path, JICOO_BASE_URL=f"{sandbox.base_url}/api")
    done = run(*USERS, "--out", str(tmp_path / "wh"), env=env, cwd=tmp_path)

    assert done.returncode == 2
    assert one_line(done.stderr) == (
        "jicoo: GET /v1/organization_users page 1: HTTP 404: Record Not Found; 0 of 1 partitions "
        "written, the others keep their previous data"
    )


# Slow tier: the client retries a refused connection with backoff before it gives up.
@pytest.mark.slow
def test_an_unreachable_host_in_extract_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on once this closes
        probe.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{probe.getsockname()[1]}"
    env = environment(None, tmp_path, JICOO_API_KEY="sk_test_x", JICOO_BASE_URL=nowhere)
    done = run(*USERS, "--out", str(tmp_path / "wh"), env=env, cwd=tmp_path)

    assert done.returncode == 2
    assert one_line(done.stderr) == (
        f"jicoo: GET /v1/organization_users page 1: could not connect to {nowhere} (All "
        "connection attempts failed); 0 of 1 partitions written, the others keep their "
        "previous data"
    )


# The child caps the size of files it may write (RLIMIT_FSIZE) and ignores SIGXFSZ, so a write
# past it fails with EFBIG: a disk that refuses the partition (ENOSPC takes the same path; a
# full device cannot be made without privileges).
CAPPED = (
    "import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000)); sys.argv[0] = 'jicoo'; "
    "runpy.run_module('jicoo_connector.cli', run_name='__main__')"
)


def test_a_write_the_disk_refuses_is_said_once_and_leaves_no_temp_file(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    out = tmp_path / "wh"
    day = str(sandbox.store.anchor)
    args = ["extract", "--tables", "bookings", "users", "--start", day, "--out", str(out)]
    done = subprocess.run(  # noqa: S603 - our own CLI, under a file size cap
        [sys.executable, "-c", CAPPED, *args, "--quiet"],
        cwd=tmp_path,
        env=environment(sandbox, tmp_path),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )

    assert done.returncode == 2
    assert one_line(done.stderr) == (
        "jicoo: [Errno 27] Error writing bytes to file. Detail: [errno 27] File too large; "
        "0 of 2 partitions written, the others keep their previous data"
    )
    assert [p for p in out.rglob("*") if p.is_file()] == []  # no partition, no temp file
    assert temp_files(tmp_path / "tmp") == []
