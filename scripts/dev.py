"""`make dev`: the Dagster UI on the demo's setup (a sandbox in its own process alongside, the
demo's own data folder and Dagster home), with the daemon and every schedule started, so the
schedules and the inbox sensor tick."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

from demo import DEMO_DIR, DEMO_SEED, demo_config, demo_dagster_home  # scripts/: its folder

from jicoo_sandbox import SandboxProcess
from jicoo_sandbox.config import DEFAULT_SANDBOX_KEY

ROOT = Path(__file__).resolve().parent.parent
DEV_PORT = "3000"
BIN = ROOT / ".venv" / "bin"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir", type=Path, default=DEMO_DIR, help=f"the demo's own folder ({DEMO_DIR})"
    )
    parser.add_argument("--port", default=DEV_PORT, help=f"the UI's port ({DEV_PORT})")
    args = parser.parse_args(argv)
    data_dir: Path = args.data_dir.resolve()
    with SandboxProcess(seed=DEMO_SEED, bookings=2000) as sandbox:
        config = demo_config(data_dir, sandbox.base_url, DEFAULT_SANDBOX_KEY)
        Path(config.changeset_inbox).mkdir(parents=True, exist_ok=True)
        home = demo_dagster_home(data_dir)
        # Every JICOO_* variable from the demo's config, none inherited (a real ledger's URL).
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("JICOO_")}
        env = {**inherited, **config.to_env(), "JICOO_API_KEY": DEFAULT_SANDBOX_KEY}
        # Schedules are stopped until started (Dagster's default, kept for deployments): in
        # this home they are started, so the daily refresh, the sweep and the snapshots tick.
        started = subprocess.run(
            [str(BIN / "dagster"), "schedule", "start", "--start-all", "-w", "workspace.yaml"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if started.returncode == 0:
            print(started.stdout.strip())
        else:
            last = (started.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"warning: the schedules were not started ({last}); start them in the UI")
        print(f"Sandbox at {sandbox.base_url}; Dagster UI on http://127.0.0.1:{args.port}")
        print(f"Dagster home (the demo's own, not your DAGSTER_HOME): {home}")
        print(f"Drop a change-set CSV in {config.changeset_inbox}: the inbox sensor applies it.")
        command = [str(BIN / "dagster"), "dev", "-w", "workspace.yaml"]
        command += ["-h", "127.0.0.1", "-p", str(args.port)]
        try:
            return subprocess.call(command, cwd=ROOT, env=env)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
