"""The tree's size limits (CONTRIBUTING): no Python file over 600 lines, no function over 60.

A function's length runs from its ``def`` line to its last line, docstring included (decorators
not). The limits hold in the library, the sandbox, the code location, the scripts, the
benchmarks and the tests alike.
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
ROOTS = ("jicoo_connector", "sandbox", "assets", "scripts", "benchmarks", "tests")
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 60


def _sources() -> list[Path]:
    # Hidden folders are environments, not our code: .venv, and benchmarks/.venv-bench (dlt's,
    # made by make bench) or .venv-py3.10 (make test-py).
    found = [path for root in ROOTS for path in (REPO / root).rglob("*.py")]
    return sorted(
        p
        for p in found
        if not any(
            part.startswith(".") or part == "__pycache__" for part in p.relative_to(REPO).parts
        )
    )


def _too_long_functions(path: Path, base: Path = REPO) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        f"{path.relative_to(base)}:{node.lineno} {node.name} ({length} lines)"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and (length := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES
    ]


def test_the_scan_sees_every_root() -> None:
    # A renamed or emptied root would make both checks below pass on nothing.
    sources = _sources()
    for root in ROOTS:
        assert any(p.is_relative_to(REPO / root) for p in sources), root
    assert Path(__file__) in sources


def test_no_python_file_is_over_600_lines() -> None:
    long = {
        str(path.relative_to(REPO)): lines
        for path in _sources()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES
    }
    assert long == {}


@pytest.mark.parametrize("root", ROOTS)
def test_no_function_is_over_60_lines(root: str) -> None:
    sources = [p for p in _sources() if p.is_relative_to(REPO / root)]
    assert [line for path in sources for line in _too_long_functions(path)] == []


def test_the_function_check_sees_a_61_line_function(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES - 1))
    source = tmp_path / "long.py"
    source.write_text(f"def fits():\n{body}\n\nasync def too_long():\n{body}    return x0\n")
    # fits: the def and 59 lines; too_long: the def, 59 lines and its return.
    assert _too_long_functions(source, tmp_path) == ["long.py:63 too_long (61 lines)"]
