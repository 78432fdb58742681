"""``make test-deploy``: deploy/Dockerfile built with buildah, then run as a deployment would.

1. The base: the Dockerfile's FROM when a registry gives it, else a debootstrap stand-in
   (standin.py); the output says which.
2. The build gets the company CA as the secret ``company_ca``: here the host's system bundle
   (this machine reaches PyPI through a TLS-inspecting proxy) plus a throwaway marker CA. The
   build must say that pip and uv trusted it, and no file of the image may hold the marker;
   built again with ``INSTALL_COMPANY_CA=yes``, the image's system bundle must hold it.
3. The image's own command serves the code location (its port moved to a free one on
   loopback), a daemon configured by deploy/dagster.yaml on a throwaway PostgreSQL launches
   through it one daily run of ``jicoo_default_daily_tables`` and one
   ``jicoo_default_apply_changeset`` against a sandbox, and both must succeed, with their rows
   in Parquet and their changes on the server.

Anything missing or failing stops it with a message and a non-zero exit; it never skips.

    .venv/bin/python -m tests.deploy.check_image
"""

import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import trustme

from tests.deploy.buildah import (
    DeployTestError,
    build,
    mounted_image,
    remove_images,
    require_tools,
)
from tests.deploy.stack import run_deployment
from tests.deploy.standin import choose_base

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
IMAGE = "localhost/jicoo-code-location:test"
IMAGE_WITH_CA = "localhost/jicoo-code-location:test-with-ca"
SECRET_ID = "company_ca"
TRUSTED_LINE = f"certificate(s) of the {SECRET_ID} secret trusted by pip and uv"
HOST_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
BUILD_TIMEOUT_S = 1200
CHUNK = 1 << 20

T = TypeVar("T")


@contextmanager
def phase(name: str, timings: dict[str, float]) -> Iterator[None]:
    print(f"== {name}", flush=True)
    start = time.monotonic()
    yield
    timings[name] = time.monotonic() - start
    print(f"== {name}: {timings[name]:.0f} s", flush=True)


def host_bundle() -> Path:
    for candidate in HOST_BUNDLES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise DeployTestError(f"no system CA bundle on this machine (looked at {HOST_BUNDLES})")


def write_secret(work: Path, marker: trustme.CA) -> Path:
    """The build's company CA: the host's bundle (the proxy's CA among them) and the marker."""
    secret = work / "company-ca.pem"
    secret.write_bytes(host_bundle().read_bytes() + b"\n" + marker.cert_pem.bytes())
    secret.chmod(0o600)
    return secret


def marker_needle(marker: trustme.CA) -> bytes:
    """A line from the middle of the marker's PEM body: in any copy of it, in no other file."""
    lines = marker.cert_pem.bytes().splitlines()
    return lines[len(lines) // 2]


def files_holding(root: Path, needle: bytes) -> list[str]:
    """Paths (inside the image) of the regular files that contain ``needle``."""
    found: list[str] = []
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        with path.open("rb") as handle:
            tail = b""
            while chunk := handle.read(CHUNK):
                window = tail + chunk
                if needle in window:
                    found.append("/" + str(path.relative_to(root)))
                    break
                tail = window[-(len(needle) - 1) :]
    return found


def build_image(base_override: str | None, secret: Path, tag: str, **args: str) -> str:
    return build(
        DOCKERFILE, REPO, tag, base_override=base_override, secrets={SECRET_ID: secret},
        build_args=args, timeout_s=BUILD_TIMEOUT_S,
    )  # fmt: skip


def check_ca(base_override: str | None, secret: Path, marker: trustme.CA, output: str) -> None:
    trusted = [line for line in output.splitlines() if TRUSTED_LINE in line]
    if not trusted:
        raise DeployTestError(f"the build never said '{TRUSTED_LINE}': the secret did not reach it")
    needle = marker_needle(marker)
    with mounted_image(IMAGE) as root:
        kept = files_holding(root, needle)
    if kept:
        raise DeployTestError(f"the image keeps the build's CA in {kept}")
    print(f"the CA reached {len(trusted)} install commands; no file of {IMAGE} holds it")
    # Every step but the last from the layers of the build just made.
    build_image(base_override, secret, IMAGE_WITH_CA, INSTALL_COMPANY_CA="yes")
    with mounted_image(IMAGE_WITH_CA) as root:
        bundle = root / "etc/ssl/certs/ca-certificates.crt"
        if not bundle.is_file() or needle not in bundle.read_bytes():
            raise DeployTestError(
                "built with INSTALL_COMPANY_CA=yes, the image's system bundle lacks the CA"
            )
    print(f"with INSTALL_COMPANY_CA=yes the CA is in {IMAGE_WITH_CA}'s system bundle")


def timed(timings: dict[str, float], name: str, step: Callable[[], T]) -> T:
    with phase(name, timings):
        return step()


def main() -> int:
    timings: dict[str, float] = {}
    started = time.monotonic()
    try:
        timed(timings, "tools", require_tools)
        base = timed(timings, "base image", lambda: choose_base(DOCKERFILE))
        print(f"base image: {base.description}", flush=True)
        marker = trustme.CA(organization_name="jicoo test-deploy marker CA")
        with tempfile.TemporaryDirectory(prefix="jicoo-deploy-") as tmp:
            work = Path(tmp)
            secret = write_secret(work, marker)
            # Every step, every time (only the base is kept between runs): a step from a cache
            # would not show that the build's pip and uv were given the CA.
            remove_images(IMAGE, IMAGE_WITH_CA)
            output = timed(timings, "build", lambda: build_image(base.override, secret, IMAGE))
            timed(timings, "company CA", lambda: check_ca(base.override, secret, marker, output))
            summary = timed(timings, "deployment", lambda: run_deployment(IMAGE, work))
    except (DeployTestError, AssertionError) as exc:
        remove_images(IMAGE, IMAGE_WITH_CA)
        print(f"make test-deploy: FAILED: {exc}", file=sys.stderr)
        return 1
    # About 1 GB each; the base stays.
    timed(timings, "cleanup", lambda: remove_images(IMAGE, IMAGE_WITH_CA))
    total = time.monotonic() - started
    print(f"base image: {base.description}")
    print(summary)
    print("timings: " + ", ".join(f"{name} {s:.0f} s" for name, s in timings.items()))
    print(f"make test-deploy: passed in {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
