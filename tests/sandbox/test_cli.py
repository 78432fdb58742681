"""The `jicoo-sandbox` command: installed as its own entry point, every option documented."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from jicoo_sandbox import SandboxProcess
from jicoo_sandbox.cli import EXIT_UNUSABLE, main

# Every option of `jicoo-sandbox serve` (those `jicoo sandbox serve` had before the split).
SERVE_OPTIONS = (
    "--host",
    "--port",
    "--seed",
    "--bookings",
    "--api-key",
    "--auth-failure-status",
    "--latency-ms",
    "--rate-limit",
    "--burst",
    "--faults",
    "--journal",
    "--anchor-date",
    "--webhook-url",
    "--webhook-secret",
    "--webhook-duplicate",
    "--webhook-reorder-ms",
    "--webhook-concurrency",
    "--churn",
    "--churn-limit",
)


def test_the_installed_command_lists_every_serve_option() -> None:
    command = Path(sys.executable).with_name("jicoo-sandbox")
    done = subprocess.run(  # noqa: S603 - the project's own entry point
        [str(command), "serve", "--help"], capture_output=True, text=True, check=True, timeout=60
    )
    listed = set(done.stdout.replace("[", " ").replace("]", " ").split())
    assert [option for option in SERVE_OPTIONS if option not in listed] == []


def test_a_webhook_url_without_its_secret_is_refused_before_serving() -> None:
    with pytest.raises(SystemExit, match="--webhook-url and --webhook-secret go together"):
        main(["serve", "--port", "0", "--webhook-url", "http://127.0.0.1:9/hooks"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "--faults {path}: No such file or directory"),
        ("{not json", "--faults {path}: not JSON"),
        (json.dumps([1]), "--faults {path}: the fault profile must be a JSON object"),
    ],
)
def test_a_bad_fault_file_is_one_line_and_exit_2(
    content: str | None, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "faults.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert main(["serve", "--port", "0", "--faults", str(path)]) == EXIT_UNUSABLE
    err = capsys.readouterr().err
    assert err.startswith(f"jicoo-sandbox: {message.format(path=path)}")
    assert err.count("\n") == 1


def test_a_port_in_use_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == EXIT_UNUSABLE
    assert capsys.readouterr().err == (
        f"jicoo-sandbox: port {port} on 127.0.0.1 is in use; pick another (--port 0: any)\n"
    )


@pytest.mark.parametrize("status", [None, 401, 403])
def test_serve_answers_a_wrong_key_with_the_chosen_status(status: int | None) -> None:
    with SandboxProcess(bookings=20, auth_failure_status=status) as sandbox:
        answer = httpx.get(
            f"{sandbox.base_url}/v1/bookings", headers={"X-Jicoo-Api-Key": "sk_wrong"}, timeout=10
        )
    assert answer.status_code == (status or 403)
