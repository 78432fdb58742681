"""The `jicoo-sandbox` command: installed as its own entry point, every option documented."""

import subprocess
import sys
from pathlib import Path

import pytest

from jicoo_sandbox.cli import main

# Every option of `jicoo-sandbox serve` (those `jicoo sandbox serve` had before the split).
SERVE_OPTIONS = (
    "--host",
    "--port",
    "--seed",
    "--bookings",
    "--api-key",
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
