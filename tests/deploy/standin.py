"""The Dockerfile's base image, or a local stand-in for it when no registry serves it.

``python:3.11-slim`` is Debian with CPython 3.11, ``python`` and ``pip`` on PATH. The stand-in
is Debian bookworm (whose ``python3`` is 3.11) made by ``debootstrap --variant=minbase`` with
Debian's python3 and venv, plus a virtual environment at /opt/python first on PATH, so that
``python``, ``pip`` and what they install (``dagster``) are where the Dockerfile expects them.

It is cached twice, both keyed by a hash of ``RECIPE`` (a change of suite, mirror, packages or
steps makes a new one): the root filesystem as a tarball under ~/.cache/jicoo-connector/deploy/
(``$XDG_CACHE_HOME`` if set), and the image in the test's buildah storage there.
"""

import dataclasses
import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.deploy.buildah import (
    DeployTestError,
    buildah,
    cache_dir,
    command,
    image_exists,
    step,
    try_pull,
)

__all__ = ["RECIPE", "Base", "Recipe", "choose_base", "dockerfile_base", "recipe_key"]

PULL_TIMEOUT_S: Final = 45
DEBOOTSTRAP_TIMEOUT_S: Final = 900
VENV: Final = "/opt/python"


@dataclass(frozen=True)
class Recipe:
    """How the stand-in is made; its hash keys both caches."""

    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    variant: str = "minbase"
    # tzdata, netbase and ca-certificates are in python:*-slim too; passwd has useradd.
    packages: tuple[str, ...] = (
        "python3", "python3-venv", "ca-certificates", "passwd", "tzdata", "netbase",
    )  # fmt: skip
    python: str = "3.11"
    venv: str = VENV
    env: tuple[tuple[str, str], ...] = (
        ("PATH", f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        ("LANG", "C.UTF-8"),
    )
    steps: int = 1  # bump when _fill_rootfs changes what it does


RECIPE: Final = Recipe()


@dataclass(frozen=True)
class Base:
    """What the build starts from: ``override`` replaces the Dockerfile's FROM (None: its own)."""

    override: str | None
    description: str


def recipe_key(recipe: Recipe = RECIPE) -> str:
    return hashlib.sha256(json.dumps(dataclasses.asdict(recipe)).encode()).hexdigest()[:16]


def dockerfile_base(dockerfile: Path) -> str:
    """The image of the Dockerfile's first FROM."""
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\s*FROM\s+(?:--\S+\s+)*(\S+)", line, re.IGNORECASE)
        if match:
            return match.group(1)
    raise DeployTestError(f"{dockerfile} has no FROM line")


def choose_base(dockerfile: Path) -> Base:
    """The Dockerfile's own FROM when a registry gives it, else the stand-in."""
    wanted = dockerfile_base(dockerfile)
    with step(f"buildah pull {wanted}"):
        why_not = try_pull(wanted, PULL_TIMEOUT_S)
    if why_not is None:
        return Base(None, f"{wanted}, pulled from its registry")
    tag = _python_tag(wanted)
    if tag != RECIPE.python:
        raise DeployTestError(
            f"{wanted} is not in reach ({why_not}), and the stand-in has Python "
            f"{RECIPE.python}, not {tag}: update RECIPE in {__file__}"
        )
    image, how = standin_image()
    return Base(
        image,
        f"local stand-in {image} ({how}: debootstrap {RECIPE.suite} minbase, Debian's "
        f"python3 {RECIPE.python} and venv), because {wanted} is not in reach: {why_not}",
    )


def _python_tag(ref: str) -> str:
    match = re.search(r":(\d+\.\d+)", ref)
    return match.group(1) if match else ""


def standin_image() -> tuple[str, str]:
    """The stand-in's tag in buildah's storage, made when missing; and where it came from."""
    key = recipe_key()
    tag = f"localhost/jicoo-python-standin:{key}"
    if image_exists(tag):
        return tag, "cached in buildah's storage"
    tarball = cache_dir() / f"python-standin-{key}.tar"
    how = f"from the cached {tarball}"
    if not tarball.exists():
        _make_rootfs(tarball)
        how = f"made now, cached as {tarball}"
    with step("import into buildah"):
        _import(tarball, tag)
    return tag, how


def _make_rootfs(tarball: Path) -> None:
    tarball.parent.mkdir(parents=True, exist_ok=True)
    print(f"debootstrap {RECIPE.suite} (minbase) for the stand-in base image", flush=True)
    with (
        step("root filesystem made, tarred and its folder removed"),
        tempfile.TemporaryDirectory(dir=tarball.parent, prefix="rootfs-") as tmp,
    ):
        root = Path(tmp) / "root"
        try:
            _fill_rootfs(root, tarball)
        finally:
            # A debootstrap that failed half-way may leave /proc or /sys mounted in it: never
            # let the folder's removal walk into them.
            _unmount_below(root)


def _unmount_below(root: Path) -> None:
    prefix = f"{root.resolve()}/"
    mounts = Path("/proc/mounts").read_text(encoding="utf-8").splitlines()
    points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        command(["umount", "--lazy", point], what=f"umount {point}", timeout_s=60)


def _fill_rootfs(root: Path, tarball: Path) -> None:
    with step("debootstrap"):
        command(
            ["debootstrap", f"--variant={RECIPE.variant}",
             f"--include={','.join(RECIPE.packages)}", RECIPE.suite, str(root), RECIPE.mirror],
            what="debootstrap", timeout_s=DEBOOTSTRAP_TIMEOUT_S,
        )  # fmt: skip
    with step("python3 -m venv"):
        command(["chroot", str(root), "python3", "-m", "venv", VENV],
                what="python3 -m venv in the stand-in", timeout_s=300)  # fmt: skip
    version = command(
        ["chroot", str(root), f"{VENV}/bin/python", "-c",
         "import sys; print('%d.%d' % sys.version_info[:2])"],
        what="python in the stand-in", timeout_s=60,
    ).strip()  # fmt: skip
    if version != RECIPE.python:
        raise DeployTestError(f"the stand-in's Python is {version}, not {RECIPE.python}")
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        shutil.rmtree(root / leftover, ignore_errors=True)
    partial = tarball.with_suffix(".partial")
    with step("tar"):
        command(["tar", "-C", str(root), "-cf", str(partial), "."], what="tar", timeout_s=600)
    partial.replace(tarball)


def _import(tarball: Path, tag: str) -> None:
    name = command(buildah("from", "scratch"), what="buildah from scratch",
                   timeout_s=60).strip()  # fmt: skip
    try:
        root = command(buildah("mount", name), what="buildah mount", timeout_s=60).strip()
        command(["tar", "-C", root, "-xf", str(tarball)], what="tar", timeout_s=600)
        command(buildah("umount", name), what="buildah umount", timeout_s=60)
        config = buildah("config", "--cmd", "python3")
        for variable, value in RECIPE.env:
            config += ["--env", f"{variable}={value}"]
        command([*config, name], what="buildah config", timeout_s=60)
        command(buildah("commit", "--quiet", name, tag), what="buildah commit",
                timeout_s=600)  # fmt: skip
    finally:
        command(buildah("rm", name), what="buildah rm", timeout_s=60)
