"""Child process for the kill-and-resume tests: apply one change set, print the counts as JSON.

Usage: python apply_child.py <csv> <ledger> <batch_id> <now>; <ledger> is a file or a
postgresql:// URL, ``now`` the sandbox clock's instant (ISO 8601) the change set is validated
against. Reads JICOO_API_KEY / JICOO_BASE_URL, and ``KILL_ENV``: ``<point>[:<n>]`` makes it
SIGKILL itself the n-th time (default 1st) the applier passes ``<point>`` (after_intent,
after_post or after_outcome), through the library's ``on_point`` hook.

``worker`` is the same applier as a multiprocessing target, for the two-worker test.
"""

import datetime as dt
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from jicoo_connector.changes.apply import apply_changeset
from jicoo_connector.changes.changeset import parse_changeset
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
            settings, parsed, ledger_location=ledger, batch_id=batch_id, concurrency=CONCURRENCY
        )
    except LedgerBusyError as exc:
        result: dict[str, object] = {"busy": str(exc)}
    else:
        result = {"counts": report.counts, "posts": report.posts_sent}
    Path(RESULT_FILE).write_text(json.dumps(result), encoding="utf-8")


def kill_at(spec: str) -> Callable[[str], None]:
    """The ``on_point`` hook for ``KILL_ENV``'s ``<point>[:<n>]``."""
    wanted, _, nth = spec.partition(":")
    hits: Counter[str] = Counter()

    def on_point(point: str) -> None:
        if point != wanted:
            return
        hits[point] += 1
        if hits[point] == (int(nth) if nth else 1):
            os.kill(os.getpid(), signal.SIGKILL)

    return on_point


def main() -> None:
    csv_path, ledger_location, batch_id, now = sys.argv[1:5]
    parsed = parse_changeset(csv_path, now=dt.datetime.fromisoformat(now))
    report = apply_changeset(
        Settings.from_env(),
        parsed,
        ledger_location=ledger_location,
        batch_id=batch_id,
        concurrency=CONCURRENCY,
        on_point=kill_at(spec) if (spec := os.environ.get(KILL_ENV)) else None,
    )
    sys.stdout.write(json.dumps({"counts": report.counts, "posts": report.posts_sent}) + "\n")


if __name__ == "__main__":
    main()
