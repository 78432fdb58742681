"""Importing the library leaves httpx's command-line client (and the rich, click and pygments
it imports) unimported, while ``httpx.main`` still runs that client."""

import subprocess
import sys

_SCRIPT = (
    "import sys\n"
    "import jicoo_connector.extract\n"
    "print(sorted(n for n in ('httpx._main', 'rich', 'click', 'pygments') if n in sys.modules))\n"
    "import httpx\n"
    "httpx.main(['--help'])\n"
)


def test_the_library_skips_httpxs_command_line_which_httpx_main_still_runs() -> None:
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    lines = done.stdout.splitlines()
    assert lines[0] == "[]", done.stderr
    assert done.returncode == 0, done.stderr  # click's --help exits 0
    assert any(line.startswith("Usage: httpx") for line in lines[1:]), done.stdout
