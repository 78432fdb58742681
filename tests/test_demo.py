"""The demo's change set, built on the sandbox's day, plans and applies with no failure.

Marker dates: ``make test-dates`` builds and applies it again on other days (month and year
ends, a leap day), so ``make demo`` is not green only on some days.
"""

from collections import Counter
from pathlib import Path

import pytest

from jicoo_connector.changes import apply_changeset, build_plan, parse_changeset
from jicoo_connector.sandbox.server import SandboxServer
from scripts.example_changeset import CANCELS, RESCHEDULES, write_changeset
from tests.writeback_data import assert_server_matches, settings_for


@pytest.mark.dates
def test_the_demo_changeset_plans_and_applies_without_failures(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    now = sandbox.config.clock()
    path = tmp_path / "demo.csv"
    write_changeset(sandbox.base_url, sandbox.api_key, path, now)
    parsed = parse_changeset(path, now=now)
    assert parsed.rejected == []
    actions = Counter(change.action.value for change in parsed.changes)
    assert actions == {"reschedule": RESCHEDULES, "cancel": CANCELS}
    settings = settings_for(sandbox)
    rows = RESCHEDULES + CANCELS
    plan = build_plan(settings, parsed, now=now)
    assert plan.counts() == {"will_apply": rows}, [i.reason for i in plan.items]
    ledger = tmp_path / "ledger.sqlite"
    report = apply_changeset(settings, parsed, ledger_path=ledger, batch_id="demo", plan=plan)
    assert report.counts == {"applied": rows}, report.summary()
    assert_server_matches(sandbox, parsed, ledger, batch_id="demo")
