"""buildah as ``make test-deploy`` drives it: the tools, the build, an image's files, a container.

Every step runs buildah with chroot isolation: on these machines crun cannot set the rlimits an
OCI runtime asks for (``podman run`` fails), while ``--isolation chroot`` works; a container
shares the host's network, so its servers listen on loopback beside the test's own. buildah
keeps this test's images and layers in a storage of its own under ~/.cache/jicoo-connector/
(``buildah(...)``), never among the machine's other images: what the test removes is its own.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from typing_extensions import Self

__all__ = [
    "ISOLATION",
    "Container",
    "DeployTestError",
    "build",
    "buildah",
    "cache_dir",
    "command",
    "image_config",
    "image_exists",
    "mounted_image",
    "remove_images",
    "require_tools",
    "step",
    "try_pull",
]

ISOLATION = ("--isolation", "chroot")
RUN_ROOT = Path("/run/jicoo-connector/buildah")
# Tool -> the Debian package that has it.
TOOLS = {"buildah": "buildah", "debootstrap": "debootstrap", "chroot": "coreutils", "tar": "tar"}
APT_TIMEOUT_S = 600
STOP_TIMEOUT_S = 30


def cache_dir() -> Path:
    """``$JICOO_DEPLOY_CACHE`` if set (a run from nothing: an empty folder), else
    ~/.cache/jicoo-connector/deploy (``$XDG_CACHE_HOME`` if set)."""
    if chosen := os.environ.get("JICOO_DEPLOY_CACHE"):
        return Path(chosen)
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "jicoo-connector" / "deploy"


def buildah(*args: str) -> list[str]:
    """A buildah command line on the test's own storage."""
    return ["buildah", "--root", str(cache_dir() / "storage"), "--runroot", str(RUN_ROOT), *args]


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    """Print how long ``what`` took: where a phase's time goes, in every run's output."""
    start = time.monotonic()
    yield
    print(f"  {what}: {time.monotonic() - start:.1f} s", flush=True)


class DeployTestError(RuntimeError):
    """Something ``make test-deploy`` needs is missing or failed: it stops, it never skips."""


def command(args: Sequence[str], *, what: str, timeout_s: float) -> str:
    """Run ``args``; its stdout, or ``DeployTestError`` naming ``what`` with stderr's tail."""
    try:
        done = subprocess.run(  # noqa: S603 - our own arguments, no shell
            list(args), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise DeployTestError(f"{what}: no answer within {timeout_s:.0f} s") from None
    except FileNotFoundError as exc:
        raise DeployTestError(f"{what}: {args[0]} is not installed ({exc})") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-3000:]
        raise DeployTestError(f"{what} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


def require_tools() -> None:
    """buildah, debootstrap, chroot and tar, installed from Debian's packages when missing.

    buildah's storage and chroot need root: anyone else gets a message, never a skip.
    """
    missing = sorted({TOOLS[tool] for tool in TOOLS if shutil.which(tool) is None})
    if os.geteuid() != 0:
        raise DeployTestError(
            "make test-deploy builds and runs the image with buildah as root (its storage, "
            "chroot isolation); run it as root, as CI does"
            + (f"; missing too: {' '.join(missing)}" if missing else "")
        )
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise DeployTestError(f"missing {' '.join(missing)}, and no apt-get to install them")
    print(f"installing {' '.join(missing)} from Debian's packages", flush=True)
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    try:
        command(install, what="apt-get install", timeout_s=APT_TIMEOUT_S)
    except DeployTestError:
        # A fresh machine may have no package lists yet.
        command(["apt-get", "update"], what="apt-get update", timeout_s=APT_TIMEOUT_S)
        command(install, what="apt-get install", timeout_s=APT_TIMEOUT_S)
    still = sorted(tool for tool in TOOLS if shutil.which(tool) is None)
    if still:
        raise DeployTestError(f"installed {' '.join(missing)}, yet {' '.join(still)} not found")


def image_exists(ref: str) -> bool:
    done = subprocess.run(  # noqa: S603 - fixed arguments
        buildah("inspect", "--type", "image", ref),
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def image_config(ref: str) -> dict[str, object]:
    """The image's OCI config (``Cmd``, ``User``, ``Env``, ...)."""
    data = json.loads(command(buildah("inspect", "--type", "image", ref),
                              what=f"buildah inspect {ref}", timeout_s=60))  # fmt: skip
    config: dict[str, object] = data["OCIv1"]["config"]
    return config


def try_pull(ref: str, timeout_s: float) -> str | None:
    """Pull ``ref`` from its registry; None when it came, else why not (one line)."""
    try:
        command(buildah("pull", "--quiet", ref), what=f"buildah pull {ref}",
                timeout_s=timeout_s)  # fmt: skip
    except DeployTestError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        return lines[-1] if lines else str(exc)
    return None


def build(
    dockerfile: Path,
    context: Path,
    tag: str,
    *,
    base_override: str | None,
    secrets: Mapping[str, Path],
    build_args: Mapping[str, str],
    timeout_s: float,
) -> str:
    """``buildah build``, its layers kept for the next build; its output, echoed as it comes."""
    args = buildah("build", "--layers", *ISOLATION, "-f", str(dockerfile), "-t", tag)
    if base_override is not None:
        args += ["--from", base_override]
    for name, path in secrets.items():
        args += ["--secret", f"id={name},src={path}"]
    for name, value in build_args.items():
        args += ["--build-arg", f"{name}={value}"]
    process = subprocess.Popen(  # noqa: S603 - our own arguments, no shell
        [*args, str(context)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    lines: list[str] = []
    start = time.monotonic()
    for line in process.stdout:
        lines.append(line)
        # Seconds since the build began: where its time goes, step by step.
        sys.stdout.write(f"  |{time.monotonic() - start:5.0f}s {line}")
    sys.stdout.flush()
    try:
        code = process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        raise DeployTestError(f"buildah build did not finish within {timeout_s:.0f} s") from None
    if code != 0:
        raise DeployTestError(f"buildah build failed (exit {code}); its output is above")
    return "".join(lines)


@contextlib.contextmanager
def mounted_image(ref: str) -> Iterator[Path]:
    """The image's root filesystem, mounted read-write in a throwaway container."""
    name = command(buildah("from", "--quiet", ref), what=f"buildah from {ref}",
                   timeout_s=120).strip()  # fmt: skip
    try:
        root = command(buildah("mount", name), what="buildah mount", timeout_s=60).strip()
        yield Path(root)
    finally:
        command(buildah("rm", name), what="buildah rm", timeout_s=60)


def remove_images(*tags: str) -> None:
    """Remove ``tags`` (those there) and every layer no image needs any more, from the test's
    own storage: the next build starts from the base alone."""
    for tag in tags:
        subprocess.run(buildah("rmi", "--force", tag), capture_output=True, check=False)  # noqa: S603 - our own arguments
    subprocess.run(buildah("rmi", "--prune"), capture_output=True, check=False)  # noqa: S603 - our own arguments


class Container:
    """A command of an image run in a working container on the host network, in its own
    session (``stop`` ends buildah and everything it started, nothing else)."""

    def __init__(
        self,
        image: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        volumes: Mapping[Path, str],
        log: Path,
    ) -> None:
        self.image = image
        self.args = list(args)
        self.env = dict(env)
        self.volumes = dict(volumes)
        self.log_path = log
        self.name = f"jicoo-deploy-test-{os.getpid()}"
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        command(buildah("from", "--name", self.name, self.image),
                what=f"buildah from {self.image}", timeout_s=120)  # fmt: skip
        run = buildah("run", *ISOLATION)
        for host, inside in self.volumes.items():
            run += ["-v", f"{host}:{inside}"]
        for name, value in self.env.items():
            run += ["-e", f"{name}={value}"]
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - our own arguments, no shell
            [*run, self.name, "--", *self.args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT_S)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        subprocess.run(  # noqa: S603 - fixed arguments
            buildah("rm", self.name),
            capture_output=True,
            check=False,
        )

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
