"""The package's public surface: complete, sorted `__all__`s and one error tree."""

import importlib
import inspect

import pytest

import jicoo_connector
from jicoo_connector import errors

PUBLIC_MODULES = [
    "jicoo_connector",
    "jicoo_connector.errors",
    "jicoo_connector.settings",
    "jicoo_connector.client",
    "jicoo_connector.changes",
    "jicoo_connector.sandbox",
    "jicoo_connector.webhooks",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions, each alphabetical.
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    for attribute in exported:
        assert getattr(module, attribute) is not None


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
