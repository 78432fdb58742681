"""`jicoo extract --quiet`: no progress bar, so tqdm is not even imported; the summary still
says what was written."""

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from jicoo_sandbox.server import SandboxServer


def test_a_quiet_extract_does_not_import_the_progress_bar(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    script = (
        "import sys\n"
        "from jicoo_connector.cli import main\n"
        "code = main(['extract', '--tables', 'bookings', '--start', sys.argv[1], '--out', "
        "sys.argv[2], '--quiet'])\n"
        "print('tqdm imported:', 'tqdm' in sys.modules)\n"
        "sys.exit(code)\n"
    )
    env = {
        **os.environ,
        "JICOO_API_KEY": sandbox.api_key,
        "JICOO_BASE_URL": sandbox.base_url,
        "JICOO_RATE_LIMIT": "1000",
    }
    day = sandbox.store.anchor.isoformat()
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script, day, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "tqdm imported: False"
    summary = lines[-2].split()
    assert summary[0] == "bookings"
    files = list((tmp_path / "bookings").glob("day=*/data.parquet"))
    assert len(files) == 1
    assert int(summary[1]) == pq.ParquetFile(files[0]).metadata.num_rows
    assert done.stderr == ""  # no bar drawn
