"""The package's public surface: complete, sorted `__all__`s and one error tree."""

import datetime as dt
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from pathlib import Path

import pytest

import jicoo_connector
from jicoo_connector import errors
from jicoo_connector.changes.apply import APPLY_LOG
from jicoo_connector.client import RateLimiter
from jicoo_connector.extract import TABLES, day_window, extract_range, register_table
from jicoo_connector.settings import ApiKey, Settings
from jicoo_connector.storage import ParquetStore
from jicoo_connector.tables import to_record_batch

# The extractor's public modules: the flow and the registry (its top), how a table is declared,
# and the built-in catalog; the rest of extract/ is private. catalog/<table>.py holds one
# table's declaration (no __all__: a guide's block pasted there as it is is a built-in table).
EXTRACT_MODULES = [
    "jicoo_connector.extract",
    "jicoo_connector.extract.catalog",
    "jicoo_connector.extract.sources",
]

PUBLIC_MODULES = [
    "jicoo_connector",
    "jicoo_connector.errors",
    "jicoo_connector.settings",
    "jicoo_connector.client",
    "jicoo_connector.changes",
    "jicoo_sandbox",
    "jicoo_connector.webhooks",
    *EXTRACT_MODULES,
    "jicoo_connector.tables",
    "jicoo_connector.pages",
    "jicoo_connector.storage",
    "jicoo_connector.quality",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions, each alphabetical.
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    for attribute in exported:
        assert getattr(module, attribute) is not None


def test_the_extractors_public_modules_are_the_listed_ones() -> None:
    package = importlib.import_module("jicoo_connector.extract")
    public = {
        info.name
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
        if not any(part.startswith("_") for part in info.name.split("."))
        and not info.name.startswith("jicoo_connector.extract.catalog.")
    }
    assert {package.__name__, *public} == set(EXTRACT_MODULES)


def test_every_error_class_is_in_the_tree_and_exported() -> None:
    classes = [
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if obj.__module__ == errors.__name__
    ]
    assert all(issubclass(cls, errors.JicooError) for cls in classes)
    assert {cls.__name__ for cls in classes} == set(errors.__all__)
    assert set(errors.__all__) <= set(jicoo_connector.__all__)
    for cls in classes:
        assert cls.__name__ in (errors.__doc__ or ""), f"{cls.__name__} missing from the drawing"


def test_a_listing_too_large_and_a_failed_extract_are_errors_of_the_tree() -> None:
    from jicoo_connector.client import ListingTooLargeError

    assert ListingTooLargeError is errors.ListingTooLargeError
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
