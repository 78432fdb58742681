"""The benchmarks' own environments, apart from the project's: ``benchmarks/.venv-<name>``,
installed with the project's uv from ``benchmarks/requirements-<name>.txt`` on first use.

A stamp file holding the requirements' hash makes setting one up idempotent.
"""

import hashlib
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
# The name the dlt environment has always had (git-ignored, reused by earlier checkouts).
_FOLDERS = {"dlt": ".venv-bench"}


class EnvError(RuntimeError):
    """An environment could not be set up: the message says which step failed."""


def env_python(name: str) -> Path:
    """Where the environment's interpreter is (whether or not it exists yet)."""
    return BENCH / _FOLDERS.get(name, f".venv-{name}") / "bin" / "python"


def ensure_env(name: str) -> Path:
    """The environment's interpreter, set up from its requirements if it is missing or stale."""
    requirements = BENCH / f"requirements-{name}.txt"
    python = env_python(name)
    venv = python.parent.parent
    stamp = venv / ".requirements.sha256"
    wanted = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return python
    uv = ROOT / ".uv" / "bin" / "uv"
    uv_path = str(uv) if uv.exists() else shutil.which("uv")
    if uv_path is None:
        raise EnvError("uv not found (run `make setup`)")
    print(f"setting up {venv.relative_to(ROOT)} from {requirements.name} ...")
    steps = [
        [uv_path, "venv", str(venv), "--python", "python3.11", "--allow-existing", "-q"],
        [uv_path, "pip", "install", "-q", "--python", str(python), "-r", str(requirements)],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, cwd=ROOT, check=False)
        if done.returncode != 0:
            raise EnvError(f"{' '.join(step[:3])}: {done.stderr.strip()[-300:]}")
    stamp.write_text(wanted + "\n")
    return python
