"""`make dev`: the Dagster UI on the demo's setup (a sandbox in its own process alongside)."""

import os
import subprocess
import sys
from pathlib import Path

from jicoo_sandbox import SandboxProcess
from jicoo_sandbox.config import DEFAULT_SANDBOX_KEY

ROOT = Path(__file__).resolve().parent.parent
DEV_PORT = "3000"


def main() -> int:
    with SandboxProcess(seed=7, bookings=2000) as sandbox:
        env = {
            **os.environ,
            "JICOO_API_KEY": DEFAULT_SANDBOX_KEY,
            "JICOO_BASE_URL": sandbox.base_url,
        }
        print(f"Sandbox at {sandbox.base_url}; Dagster UI on http://127.0.0.1:{DEV_PORT}")
        dagster = ROOT / ".venv" / "bin" / "dagster"
        command = [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", DEV_PORT]
        try:
            return subprocess.call(command, cwd=ROOT, env=env)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
