"""The client package's public surface: a sorted, complete ``__all__`` and no upward imports."""

import ast
from pathlib import Path
from types import ModuleType

import jicoo_connector.client as client

PACKAGE = Path(client.__file__).parent
FORBIDDEN = (
    "dagster",
    "assets",
    "jicoo_connector.tables",
    "jicoo_connector.extract",
    "jicoo_connector.storage",
    "jicoo_connector.changes",
    "jicoo_sandbox",
)


def test_all_is_sorted_and_complete() -> None:
    # Submodules (arrow_envelope, imported on its own to keep pyarrow out) are not exports.
    public = {
        name
        for name, value in vars(client).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert client.__all__ == sorted(public)
    assert {"AsyncJicooClient", "JicooClient", "FetchReport", "Listing", "RateLimiter"} <= public


def test_nothing_imports_upward_and_no_module_frames_http() -> None:
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not [name for name in imported if name.startswith(FORBIDDEN)], path.name
        # HTTP is httpx's: no parser, no raw sockets of our own.
        assert not {"httptools", "h11", "httpcore", "socket"} & imported, path.name
