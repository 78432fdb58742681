"""atomic_path: the target is the old file or the new one, never half, and no temp is left."""

from pathlib import Path

import pytest

from jicoo_connector.atomic import atomic_path, temp_glob, write_text_atomic


def test_a_clean_write_replaces_the_target_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "plan.json"
    write_text_atomic(target, "old", encoding="utf-8")
    assert write_text_atomic(target, "new ✓", encoding="utf-8") == target
    assert target.read_text(encoding="utf-8") == "new ✓"
    assert sorted(p.name for p in target.parent.iterdir()) == ["plan.json"]


def test_a_failed_write_keeps_the_old_target_and_removes_its_temp(tmp_path: Path) -> None:
    target = tmp_path / "rejected.csv"
    target.write_text("old", encoding="utf-8")

    def fail_midway() -> None:
        with atomic_path(target) as temp:
            temp.write_text("half of the new", encoding="utf-8")
            raise RuntimeError("midway")

    with pytest.raises(RuntimeError, match="midway"):
        fail_midway()
    assert target.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rejected.csv"]


def test_temps_are_hidden_unique_and_found_by_their_glob(tmp_path: Path) -> None:
    target = tmp_path / "data.parquet"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second
        assert first.parent == second.parent == tmp_path
        assert first.name.startswith(".")
        first.write_bytes(b"1")
        second.write_bytes(b"2")
        assert sorted(tmp_path.glob(temp_glob(target.name))) == sorted([first, second])
    # The later rename wins; both temps are gone.
    assert target.read_bytes() == b"1"
    assert list(tmp_path.iterdir()) == [target]
