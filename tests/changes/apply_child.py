"""Child process for the kill-and-resume tests: apply one change set, print the counts as JSON.

Usage: python apply_child.py <csv> <ledger> <batch_id> <now>; <ledger> is a file or a
postgresql:// URL, ``now`` the sandbox clock's instant (ISO 8601) the change set is validated
against. Reads JICOO_API_KEY / JICOO_BASE_URL, and ``KILL_ENV``: ``<point>[:<n>]`` makes it
SIGKILL itself the n-th time (default 1st) the applier passes ``<point>``, seen from the
ledger it writes to (``KillingLedger``): ``after_intent`` (an intent committed, its POST not
sent), ``after_post`` (an answer in hand, its outcome not yet recorded) or ``after_outcome``
(an outcome committed).

``worker`` is the same applier as a multiprocessing target, for the two-worker test.
"""

import datetime as dt
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from jicoo_connector.changes import (
    IN_FLIGHT_STATES,
    Lease,
    Ledger,
    State,
    apply_changeset,
    parse_changeset,
)
from jicoo_connector.config import ConnectorConfig
from jicoo_connector.errors import LedgerBusyError
from jicoo_connector.settings import ApiKey, Settings

KILL_ENV = "JICOO_TEST_KILL_AT"
RESULT_FILE = "result.json"
CONCURRENCY = 3


def worker(
    scratch: str, ledger: str, batch_id: str, api: tuple[str, str], now: str, start_at: float
) -> None:
    """One worker on its own machine, as far as a process can be: it works in ``scratch`` (its
    own copy of the change set, its result), shares only ``ledger`` and the API with the other.
    Validates as of ``now`` (the sandbox's clock) and starts applying at ``start_at`` (epoch
    seconds), so that two workers really race."""
    os.chdir(scratch)
    settings = Settings(
        api_key=ApiKey(api[0]), base_url=api[1], rate_limit=5000, burst=500, page_concurrency=4
    )
    parsed = parse_changeset(Path("batch.csv"), now=dt.datetime.fromisoformat(now))
    time.sleep(max(0.0, start_at - time.time()))
    try:
        report = apply_changeset(
            settings, parsed, ledger=ledger, batch_id=batch_id, concurrency=CONCURRENCY
        )
    except LedgerBusyError as exc:
        result: dict[str, object] = {"busy": str(exc)}
    else:
        result = {"counts": report.counts, "posts": report.posts_sent}
    Path(RESULT_FILE).write_text(json.dumps(result), encoding="utf-8")


class KillingLedger(Ledger):
    """A ledger that SIGKILLs its own process the n-th time a change passes ``point``."""

    def __init__(self, location: str, point: str) -> None:
        super().__init__(location)
        self.point, _, nth = point.partition(":")
        self.nth = int(nth) if nth else 1
        self.passed = 0

    def _passing(self, point: str) -> None:
        if point == self.point:
            self.passed += 1
            if self.passed == self.nth:
                os.kill(os.getpid(), signal.SIGKILL)

    def record(self, lease: Lease, key: str, state: State, **details: Any) -> int:
        if state not in IN_FLIGHT_STATES:
            self._passing("after_post")
        attempts = super().record(lease, key, state, **details)
        self._passing("after_intent" if state is State.INTENT else "after_outcome")
        return attempts


def main() -> None:
    csv_path, location, batch_id, now = sys.argv[1:5]
    parsed = parse_changeset(csv_path, now=dt.datetime.fromisoformat(now))
    spec = os.environ.get(KILL_ENV)
    with KillingLedger(location, spec) if spec else Ledger(location) as ledger:
        report = apply_changeset(
            ConnectorConfig.from_env().settings(),
            parsed,
            ledger=ledger,
            batch_id=batch_id,
            concurrency=CONCURRENCY,
        )
    sys.stdout.write(json.dumps({"counts": report.counts, "posts": report.posts_sent}) + "\n")


if __name__ == "__main__":
    main()
