"""`make dev`: the Dagster UI on the demo's setup (a sandbox in its own process alongside, the
demo's own data folder), with the daemon, so schedules and the inbox sensor tick."""

import os
import subprocess
import sys
from pathlib import Path

from demo import DEMO_DIR, DEMO_SEED, demo_config  # scripts/ is this script's own folder

from jicoo_sandbox import SandboxProcess
from jicoo_sandbox.config import DEFAULT_SANDBOX_KEY

ROOT = Path(__file__).resolve().parent.parent
DEV_PORT = "3000"


def main() -> int:
    with SandboxProcess(seed=DEMO_SEED, bookings=2000) as sandbox:
        config = demo_config(DEMO_DIR, sandbox.base_url, DEFAULT_SANDBOX_KEY)
        Path(config.changeset_inbox).mkdir(parents=True, exist_ok=True)
        # Every JICOO_* variable from the demo's config, none inherited (a real ledger's URL).
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("JICOO_")}
        env = {**inherited, **config.to_env(), "JICOO_API_KEY": DEFAULT_SANDBOX_KEY}
        print(f"Sandbox at {sandbox.base_url}; Dagster UI on http://127.0.0.1:{DEV_PORT}")
        print(f"Drop a change-set CSV in {config.changeset_inbox}: the inbox sensor applies it.")
        dagster = ROOT / ".venv" / "bin" / "dagster"
        command = [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", DEV_PORT]
        try:
            return subprocess.call(command, cwd=ROOT, env=env)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
