"""Child process for the kill-and-resume tests: apply one change set, print the counts as JSON.

Usage: python apply_child.py <csv> <ledger> <batch_id> <now>; <ledger> is a file or a
postgresql:// URL, ``now`` the sandbox clock's instant (ISO 8601) the change set is validated
against. Reads JICOO_API_KEY / JICOO_BASE_URL,
and JICOO_TEST_KILL_AT (see jicoo_connector.changes.apply.KILL_ENV) to die at a named point.
"""

import datetime as dt
import json
import sys

from jicoo_connector.changes.apply import apply_changeset
from jicoo_connector.changes.changeset import parse_changeset
from jicoo_connector.settings import Settings


def main() -> None:
    csv_path, ledger_location, batch_id, now = sys.argv[1:5]
    parsed = parse_changeset(csv_path, now=dt.datetime.fromisoformat(now))
    report = apply_changeset(
        Settings.from_env(),
        parsed,
        ledger_location=ledger_location,
        batch_id=batch_id,
        concurrency=3,
    )
    sys.stdout.write(json.dumps({"counts": report.counts, "posts": report.posts_sent}) + "\n")


if __name__ == "__main__":
    main()
