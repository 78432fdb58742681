"""The pure parts of make test-deploy's driver (the driver itself runs in make test-deploy)."""

import dataclasses
from pathlib import Path

import pytest

from tests.deploy import check_image
from tests.deploy.check_image import files_holding
from tests.deploy.standin import RECIPE, dockerfile_base, recipe_key

REPO = Path(__file__).resolve().parents[2]


def test_the_base_is_the_dockerfiles_first_from(tmp_path: Path) -> None:
    assert dockerfile_base(REPO / "deploy" / "Dockerfile") == "python:3.11-slim"
    staged = tmp_path / "Dockerfile"
    staged.write_text("# FROM nothing\nFROM --platform=linux/amd64 debian:12 AS build\nFROM x\n")
    assert dockerfile_base(staged) == "debian:12"


def test_any_change_of_the_stand_in_recipe_changes_its_cache_key() -> None:
    keys = {
        recipe_key(dataclasses.replace(RECIPE, **change))
        for change in ({}, {"suite": "trixie"}, {"packages": (*RECIPE.packages, "curl")},
                       {"steps": RECIPE.steps + 1})
    }  # fmt: skip
    assert len(keys) == 4
    assert recipe_key() == recipe_key(dataclasses.replace(RECIPE))


def test_a_needle_is_found_across_a_chunk_boundary_and_symlinks_are_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(check_image, "CHUNK", 8)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "split").write_bytes(b"0123456NEEDLE-LINE789")  # crosses bytes 8 and 16
    (tmp_path / "clean").write_bytes(b"NEEDLE-LIN" + b"x" * 20)
    (tmp_path / "link").symlink_to(tmp_path / "etc" / "split")
    assert files_holding(tmp_path, b"NEEDLE-LINE") == ["/etc/split"]
