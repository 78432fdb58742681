"""Fixtures of the webhook tests: a receiver on a loopback port with a pinned clock."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.webhook_receiver import OLD_SECRET, SECRET, Receiver


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    running = Receiver(tmp_path / "events.sqlite", f"{SECRET}, {OLD_SECRET}")
    yield running
    running.close()
