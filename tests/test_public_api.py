"""The package's public surface: complete, sorted `__all__`s and one error tree."""

import datetime as dt
import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable
from pathlib import Path

import pytest

import jicoo_connector
from jicoo_connector import errors
from jicoo_connector._compat import ExceptionGroup
from jicoo_connector.changes import APPLY_LOG
from jicoo_connector.client import RateLimiter
from jicoo_connector.extract import TABLES, day_window, extract_range, register_table
from jicoo_connector.settings import ApiKey, Settings
from jicoo_connector.storage import ParquetStore
from jicoo_connector.tables import to_record_batch

LIBRARY = Path(jicoo_connector.__file__).parent
# catalog/<table>.py holds one table's declaration (no __all__: a guide's block pasted there as
# it is is a built-in table).
CATALOG_TABLE = "jicoo_connector.extract.catalog."


def _public_modules() -> set[str]:
    """Every module of the library whose dotted name has no ``_`` part, but the catalog's
    table declarations."""
    found = {
        info.name
        for info in pkgutil.walk_packages(jicoo_connector.__path__, "jicoo_connector.")
        if not any(part.startswith("_") for part in info.name.split("."))
        and not info.name.startswith(CATALOG_TABLE)
    }
    return {"jicoo_connector", *found}


# The deliberate surface: a package's top, plus a module apart where importing it costs what the
# package's users should not pay (pyarrow for the client's arrow_envelope) or where a table is
# declared (extract.sources, the built-in extract.catalog).
DELIBERATE = {
    "jicoo_connector",
    "jicoo_connector.atomic",
    "jicoo_connector.changes",
    "jicoo_connector.cli",
    "jicoo_connector.client",
    "jicoo_connector.client.arrow_envelope",
    "jicoo_connector.config",
    "jicoo_connector.dagster",
    "jicoo_connector.errors",
    "jicoo_connector.extract",
    "jicoo_connector.extract.catalog",
    "jicoo_connector.extract.sources",
    "jicoo_connector.names",
    "jicoo_connector.pages",
    "jicoo_connector.quality",
    "jicoo_connector.receiver_limits",
    "jicoo_connector.redaction",
    "jicoo_connector.settings",
    "jicoo_connector.storage",
    "jicoo_connector.tables",
    "jicoo_connector.warehouse",
    "jicoo_connector.webhooks",
}
PUBLIC_MODULES = sorted(_public_modules() | {"jicoo_sandbox"})


def test_the_public_modules_are_the_deliberate_ones() -> None:
    assert _public_modules() == DELIBERATE


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions, each alphabetical.
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    for attribute in exported:
        assert getattr(module, attribute) is not None


def test_every_error_class_is_in_the_tree_and_has_one_import_path() -> None:
    classes = [
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if obj.__module__ == errors.__name__
    ]
    assert all(issubclass(cls, errors.JicooError) for cls in classes)
    assert {cls.__name__ for cls in classes} == set(errors.__all__)
    for cls in classes:
        assert cls.__name__ in (errors.__doc__ or ""), f"{cls.__name__} missing from the drawing"
    # jicoo_connector.errors is each error's one path: no other public module exports one.
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        if name != errors.__name__:
            assert not set(module.__all__) & set(errors.__all__), name


# The flows' entry points, each at the top of its package.
ENTRY_POINTS = {
    "jicoo_connector.extract": ["extract_range"],
    "jicoo_connector.warehouse": ["load_warehouse"],
    "jicoo_connector.changes": ["run_changeset", "plan_changeset", "apply_changeset"],
    "jicoo_connector.webhooks": ["create_app", "serve"],
}


@pytest.mark.parametrize("package", sorted(ENTRY_POINTS))
def test_each_flows_entry_point_is_exported_from_its_package(package: str) -> None:
    module = importlib.import_module(package)
    for name in ENTRY_POINTS[package]:
        assert name in module.__all__
        assert callable(getattr(module, name))


def test_sync_and_async_names_follow_one_rule() -> None:
    # A flow's coroutine is its synchronous function's name plus _async, and takes the same
    # parsed input; the synchronous one opens its own client and event loop.
    for name in ("jicoo_connector.changes", "jicoo_connector.warehouse", "jicoo_connector.webhooks",
                 "jicoo_connector.client"):  # fmt: skip
        module = importlib.import_module(name)
        for attribute in module.__all__:
            value = getattr(module, attribute)
            if inspect.iscoroutinefunction(value):
                assert attribute.endswith("_async"), f"{name}.{attribute}"
                twin = getattr(module, attribute.removesuffix("_async"))
                assert not inspect.iscoroutinefunction(twin), f"{name}.{attribute}"


def test_only_the_config_module_reads_the_environment() -> None:
    readers = {
        str(path.relative_to(LIBRARY))
        for path in LIBRARY.rglob("*.py")
        if re.search(r"os\.environ|getenv\(|getproxies_environment", path.read_text())
    }
    # The client asks the standard library for the proxy variables curl and pip read
    # (HTTPS_PROXY, NO_PROXY...) when no proxy is configured: they are not the connector's.
    assert readers == {"config.py", "client/_network.py"}


def test_a_listing_too_large_and_a_failed_extract_are_errors_of_the_tree() -> None:
    assert issubclass(errors.ListingTooLargeError, errors.JicooError)
    assert issubclass(errors.ExtractError, errors.JicooError)
    assert issubclass(errors.ExtractError, ExceptionGroup)


def _bad_calls(tmp_path: Path) -> dict[str, Callable[[], object]]:
    settings = Settings(api_key=ApiKey("placeholder"), base_url="http://127.0.0.1:9")
    day = dt.date(2026, 1, 5)
    return {
        "unknown table": lambda: extract_range(settings, ["nope"], day, day, str(tmp_path)),
        "end before start": lambda: extract_range(
            settings, ["bookings"], day, day - dt.timedelta(days=1), str(tmp_path)
        ),
        "bad zone": lambda: day_window(day, "Mars/Olympus"),
        "registered twice": lambda: register_table(TABLES["users"]),
        "write-back's table as partitions": lambda: ParquetStore(tmp_path).write_partition(
            APPLY_LOG, day, []
        ),
        "naive extracted_at": lambda: to_record_batch(
            TABLES["users"].spec,
            [],
            extracted_at=dt.datetime(2026, 1, 5),  # noqa: DTZ001 - naive on purpose
            run_id=None,
            partition_value=day,
        ),
        "zero rate": lambda: RateLimiter(0, 1),
    }


@pytest.mark.parametrize(
    "call",
    [
        "unknown table",
        "end before start",
        "bad zone",
        "registered twice",
        "write-back's table as partitions",
        "naive extracted_at",
        "zero rate",
    ],
)
def test_a_bad_argument_is_a_config_error_of_the_tree(call: str, tmp_path: Path) -> None:
    # Nothing is sent: the settings point at a closed port.
    with pytest.raises(errors.ConfigError) as caught:
        _bad_calls(tmp_path)[call]()
    # Also the ValueError Python code expects of a bad argument.
    assert isinstance(caught.value, ValueError)
