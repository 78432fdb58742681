"""The `jicoo` command run as a user runs it: a child process with its own environment, in a
folder of the test's own (the default paths, data/..., land there), signalled for real."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from jicoo_connector.atomic import TEMP_MARKER
from jicoo_sandbox.server import SandboxServer

ROOT = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_S = 120.0
POLL_S = 0.05
# Names of the exit codes as the README's table gives them.
INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143}


def environment(sandbox: SandboxServer | None, cwd: Path, **extra: str) -> dict[str, str]:
    """The child's environment: no JICOO_* of ours leaks in, the sandbox's key and URL, the
    test's folder for temp files (a spool left behind would show there)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JICOO_")}
    env |= {"PYTHONPATH": str(ROOT), "TMPDIR": str(cwd / "tmp"), "PYTHONUNBUFFERED": "1"}
    (cwd / "tmp").mkdir(exist_ok=True)
    if sandbox is not None:
        env |= {
            "JICOO_API_KEY": sandbox.api_key,
            "JICOO_BASE_URL": sandbox.base_url,
            "JICOO_RATE_LIMIT": "200",
            "JICOO_BURST": "200",
        }
    return env | extra


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "jicoo_connector.cli", *args]


def run(*args: str, env: dict[str, str], cwd: Path) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(  # noqa: S603 - our own CLI
        command(*args),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )


def start(*args: str, env: dict[str, str], cwd: Path) -> "subprocess.Popen[str]":
    return subprocess.Popen(  # noqa: S603 - our own CLI
        command(*args),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(done: Callable[[], bool], what: str, child: "subprocess.Popen[str]") -> None:
    """Until ``done()`` (a real point of progress, never a sleep standing in for one); the
    child must still be running then, or the test would signal nothing."""
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while not done():
        if child.poll() is not None:
            out, err = child.communicate()
            raise AssertionError(f"the child ended before {what}: {child.returncode}\n{out}{err}")
        if time.monotonic() > deadline:
            child.kill()
            raise AssertionError(f"no {what} within {CHILD_TIMEOUT_S} s")
        time.sleep(POLL_S)


def interrupt(child: "subprocess.Popen[str]", sig: signal.Signals) -> tuple[int, str, str]:
    """Send ``sig`` and wait: (exit code, stdout, stderr)."""
    child.send_signal(sig)
    return finish(child)


def finish(child: "subprocess.Popen[str]") -> tuple[int, str, str]:
    try:
        out, err = child.communicate(timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
        raise AssertionError(f"the child did not stop:\n{out}{err}") from None
    return child.returncode, out, err


def one_line(stderr: str) -> str:
    """The single line a user mistake or an interrupt prints on stderr, without a traceback."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def temp_files(*roots: Path) -> list[Path]:
    """Files an interrupted writer could leave: atomic_path's temp files, spools, plans' temps."""
    return [
        path
        for root in roots
        for path in root.rglob("*")
        if path.is_file() and (TEMP_MARKER in path.name or path.parent.name.startswith("jicoo-"))
    ]
