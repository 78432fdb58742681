"""What a user of the connector installs: no sandbox, no server framework unless asked for."""

import importlib.metadata
import importlib.util
import re

import pytest

from jicoo_connector.cli import WEBHOOKS_EXTRA_MODULES

SERVER_FRAMEWORKS = {"starlette", "uvicorn"}


def _requirements(distribution: str) -> dict[str, set[str]]:
    """Requirement names by extra ("" = required), from the installed metadata."""
    by_extra: dict[str, set[str]] = {}
    for requirement in importlib.metadata.requires(distribution) or []:
        name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", requirement)
        by_extra.setdefault(extra.group(1) if extra else "", set()).add(name)
    return by_extra


def test_the_connector_requires_no_server_framework_and_no_sandbox() -> None:
    requirements = _requirements("jicoo-connector")
    assert not requirements[""] & (SERVER_FRAMEWORKS | {"jicoo-sandbox"})
    assert requirements["webhooks"] == SERVER_FRAMEWORKS == WEBHOOKS_EXTRA_MODULES
    # Not find_spec("jicoo_connector.sandbox"): a checkout from before the move keeps a
    # bytecode-only jicoo_connector/sandbox/__pycache__/, which Python sees as an empty
    # namespace package. What matters is that no sandbox code can be imported from there.
    for module in ("jicoo_connector.sandbox.server", "jicoo_connector.sandbox.app"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(module)


def test_the_sandbox_is_its_own_distribution_with_its_own_command() -> None:
    required = _requirements("jicoo-sandbox")[""]
    assert required >= SERVER_FRAMEWORKS
    assert not any(name.startswith("jicoo") for name in required)
    scripts = {
        entry.name: entry.value
        for entry in importlib.metadata.entry_points(group="console_scripts")
    }
    assert scripts["jicoo-sandbox"] == "jicoo_sandbox.cli:main"
    assert scripts["jicoo"] == "jicoo_connector.cli:main"
