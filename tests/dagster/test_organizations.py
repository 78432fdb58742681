"""Two Jicoo organizations in one code location, through Dagster, against two sandboxes with
different seeds and keys: no name collides, each organization's API steps run under its own
pool (one organization's full pool does not hold the other back), each writes only its own
files, a change set touches only its own ledger and bookings, and one webhook receiver gives
each organization its own events (by path or by secret).
"""

import contextlib
import contextvars
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx
import pytest

from jicoo_connector.dagster import JicooNames, build_jicoo_definitions
from jicoo_connector.extract import TABLES, day_window
from jicoo_connector.webhooks import READY_LINE_PREFIX, SIGNATURE_HEADER, SQLiteEventStore
from jicoo_sandbox.config import Clock, SandboxConfig, WebhookOptions
from jicoo_sandbox.server import SandboxServer
from jicoo_sandbox.webhooks import event_payload, sign
from tests.dagster.support import api_key, materializations, range_tags, store_of
from tests.support.sandbox import TOKYO, tokyo_today
from tests.support.writeback_data import future_open_bookings

ACME, GLOBEX = JicooNames("acme"), JicooNames("globex")
GLOBEX_SEED = 11
GLOBEX_KEY = "sk_test_globex"
GLOBEX_BOOKINGS = 600
# The holder of acme's one pool slot while globex runs: a run id no run has.
HOLDER_RUN = "slot-holder"
BLOCKED_WAIT_S = 60.0
POLL_S = 0.1
# Each organization's rate, which its sandbox enforces (429 beyond it).
RATE = 20.0
HEADER = "action,booking_uid,new_started_at,time_zone,cancel_reason\n"


def _sandbox(
    seed: int, key: str, bookings: int, clock: Clock, webhooks: WebhookOptions | None = None
) -> SandboxServer:
    """An organization's own Jicoo on the test's clock (its data around the test day, as the
    shared sandbox's), answering only ``key``."""
    config = SandboxConfig(
        seed=seed,
        bookings=bookings,
        anchor_date=None,
        clock=clock,
        api_keys=(key,),
        webhooks=webhooks,
    )
    return SandboxServer(config)


@pytest.fixture(scope="module")
def globex_sandbox(clock: Clock) -> Iterator[SandboxServer]:
    """The second organization's Jicoo: another seed, another key."""
    with _sandbox(GLOBEX_SEED, GLOBEX_KEY, GLOBEX_BOOKINGS, clock) as server:
        yield server


def _organization(names: JicooNames, sandbox: SandboxServer, root: Path) -> dg.Definitions:
    return build_jicoo_definitions(
        names.organization,
        api_key=api_key(sandbox.api_key),
        data_root=str(root / names.organization),
        base_url=sandbox.base_url,
        rate_limit=RATE,
        burst=int(RATE),
    )


def _both(acme: SandboxServer, globex: SandboxServer, root: Path) -> dg.Definitions:
    return dg.Definitions.merge(
        _organization(ACME, acme, root), _organization(GLOBEX, globex, root)
    )


def _every_name(defs: dg.Definitions) -> list[str]:
    """Every name the definitions carry: asset keys, groups, pools, jobs, schedules, sensors
    and resource keys."""
    repository = defs.get_repository_def()
    keys = repository.asset_graph.get_all_asset_keys()
    assets = {defs.resolve_assets_def(key) for key in keys}
    return [
        *(key.to_user_string() for key in keys),
        *{repository.asset_graph.get(key).group_name or "" for key in keys},
        *{asset.op.pool or "" for asset in assets if asset.op.pool},
        *(job.name for job in repository.get_all_jobs() if not job.name.startswith("__")),
        *(schedule.name for schedule in repository.schedule_defs),
        *(sensor.name for sensor in repository.sensor_defs),
        *(defs.resources or {}),
    ]


def test_two_organizations_load_side_by_side_and_share_no_name(
    sandbox: SandboxServer, globex_sandbox: SandboxServer, tmp_path: Path
) -> None:
    defs = _both(sandbox, globex_sandbox, tmp_path)
    dg.Definitions.validate_loadable(defs)
    names = _every_name(defs)
    # Every name is one organization's, and the two sets mirror each other.
    acme = {name for name in names if "acme" in name and "globex" not in name}
    globex = {name for name in names if "globex" in name and "acme" not in name}
    assert acme | globex == set(names)
    assert {name.replace("acme", "globex") for name in acme} == globex
    assert {ACME.pool, ACME.group, ACME.job("daily_tables"), ACME.api_resource} <= acme
    assert {GLOBEX.pool, GLOBEX.sensor("changeset_inbox"), GLOBEX.writeback_resource} <= globex
    # Each organization's files under its own data root.
    for names_of in (ACME, GLOBEX):
        root = tmp_path / names_of.organization
        warehouse = (defs.resources or {})[names_of.warehouse_resource]
        writeback = (defs.resources or {})[names_of.writeback_resource]
        paths = [warehouse.root, warehouse.duckdb_path, writeback.ledger_path]
        paths += [writeback.apply_log_root, writeback.inbox]
        assert all(Path(path).is_relative_to(root) for path in paths), paths


def _busy_day(sandbox: SandboxServer, not_before: dt.date) -> dt.date:
    """A Tokyo day, from ``not_before`` on, on which ``sandbox`` has bookings."""
    starts = [dt.datetime.fromisoformat(str(b["startedAt"])) for b in sandbox.store.all_bookings()]
    for offset in range(14):
        day = not_before + dt.timedelta(days=offset)
        low, high = day_window(day, TOKYO)
        if any(low <= start < high for start in starts):
            return day
    raise AssertionError("no booked day in two weeks")


def _uids(sandbox: SandboxServer, day: dt.date) -> set[str]:
    low, high = day_window(day, TOKYO)
    return {
        str(b["uid"])
        for b in sandbox.store.all_bookings()
        if low <= dt.datetime.fromisoformat(str(b["startedAt"])) < high
    }


def _blocked_on(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    """The pools the run's steps reported being blocked on."""
    return {
        str(entry.dagster_event.event_specific_data.metadata["pool"].value)  # type: ignore[union-attr]
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
        if entry.dagster_event is not None
        and "blocked by limit for pool" in (entry.dagster_event.message or "")
    }


def _step_pools(instance: dg.DagsterInstance, run_id: str) -> dict[str, str | None]:
    """Step key -> the pool its plan gave it, as the run recorded it."""
    run = instance.get_run_by_id(run_id)
    assert run is not None
    assert run.execution_plan_snapshot_id is not None
    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    return {step.key: step.pool for step in plan.steps}


@dataclass
class PoolRuns:
    day: dt.date
    acme: dg.ExecuteInProcessResult
    globex: dg.ExecuteInProcessResult
    blocked: set[str]
    acme_written_while_globex_ran: bool
    pools: dict[str, dict[str, str | None]]


def _pool_runs(defs: dg.Definitions, day: dt.date, home: Path) -> PoolRuns:
    """acme's only slot held by another run; acme's daily job started (it waits on its pool),
    globex's run start to end meanwhile; then the slot freed and acme's run completed."""
    tags = range_tags(day, day)
    overrides = {"concurrency": {"pools": {"default_limit": 1}}}
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home), overrides=overrides) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots(ACME.pool, 1)
        assert storage.claim_concurrency_slot(ACME.pool, HOLDER_RUN, "holder").is_claimed
        results: dict[str, dg.ExecuteInProcessResult | BaseException] = {}
        acme_job = defs.resolve_job_def(ACME.job("daily_tables"))
        acme_run = str(uuid.uuid4())

        def run_acme() -> None:
            try:
                results["acme"] = acme_job.execute_in_process(
                    instance=instance, tags=tags, run_id=acme_run
                )
            except BaseException as exc:  # noqa: BLE001 - the test reports it, not the thread
                results["acme"] = exc

        # In the test's context: Dagster's partitions on the test day, as in this thread.
        thread = threading.Thread(target=contextvars.copy_context().run, args=(run_acme,))
        thread.start()
        deadline = time.monotonic() + BLOCKED_WAIT_S
        while ACME.pool not in _blocked_on(instance, acme_run):
            assert "acme" not in results, results
            assert time.monotonic() < deadline, "acme's run never waited on its pool"
            time.sleep(POLL_S)
        globex = defs.resolve_job_def(GLOBEX.job("daily_tables")).execute_in_process(
            instance=instance, tags=tags
        )
        written = store_of(defs, ACME).has_partition(TABLES["bookings"].spec, day)
        storage.free_concurrency_slots_for_run(HOLDER_RUN)
        thread.join(BLOCKED_WAIT_S * 2)
        acme = results["acme"]
        assert isinstance(acme, dg.ExecuteInProcessResult), acme
        return PoolRuns(
            day=day,
            acme=acme,
            globex=globex,
            blocked=_blocked_on(instance, acme_run) | _blocked_on(instance, globex.run_id),
            acme_written_while_globex_ran=written,
            pools={
                "acme": _step_pools(instance, acme_run),
                "globex": _step_pools(instance, globex.run_id),
            },
        )


# Three runs in one test (one of them waiting on its pool), on a possibly loaded machine.
@pytest.mark.timeout(300)
def test_each_organization_runs_under_its_own_pool_and_gets_its_own_bookings(
    sandbox: SandboxServer, globex_sandbox: SandboxServer, tmp_path: Path
) -> None:
    acme_sandbox = sandbox
    for sandbox in (acme_sandbox, globex_sandbox):
        sandbox.set_faults({"rate_limit": {"rps": RATE, "burst": int(RATE)}})
        sandbox.clear_requests()
    day = _busy_day(acme_sandbox, tokyo_today(acme_sandbox))
    day = max(day, _busy_day(globex_sandbox, day))
    defs = _both(acme_sandbox, globex_sandbox, tmp_path)
    runs = _pool_runs(defs, day, tmp_path / "dagster")

    assert runs.globex.success
    assert runs.acme.success
    # globex ran start to end while acme's pool was full and acme's run waited on it alone.
    assert runs.blocked == {ACME.pool}
    assert not runs.acme_written_while_globex_ran
    for names, pools in ((ACME, runs.pools["acme"]), (GLOBEX, runs.pools["globex"])):
        assert pools == {names.op("bookings"): names.pool, names.op("booking_contacts"): names.pool}
    # Each organization's Parquet holds exactly its own sandbox's bookings of the day.
    acme_uids, globex_uids = _uids(acme_sandbox, day), _uids(globex_sandbox, day)
    assert acme_uids
    assert globex_uids
    assert acme_uids != globex_uids
    for names, expected in ((ACME, acme_uids), (GLOBEX, globex_uids)):
        table = store_of(defs, names).read_partition(TABLES["bookings"].spec, day)
        assert set(map(str, table.column("uid").to_pylist())) == expected, names.organization
    for result, names in ((runs.acme, ACME), (runs.globex, GLOBEX)):
        (event,) = materializations(result, names.asset_key("bookings"))
        assert event.partition == day.isoformat()
    # Each inside its own rate: neither sandbox refused a request.
    for sandbox in (acme_sandbox, globex_sandbox):
        statuses = [e["status"] for e in sandbox.requests() if str(e["path"]).startswith("/v1/")]
        assert statuses
        assert 429 not in statuses


def _evaluate(defs: dg.Definitions, sensor: str) -> list[dg.RunRequest]:
    with dg.build_sensor_context(resources=defs.resources) as context:
        tick = defs.resolve_sensor_def(sensor).evaluate_tick(context)
    return list(tick.run_requests or [])


def test_a_change_set_touches_only_its_own_organizations_ledger_and_bookings(
    sandbox: SandboxServer, globex_sandbox: SandboxServer, tmp_path: Path
) -> None:
    # Cancels only: the write-back job asks nothing of the system clock for them.
    defs = _both(sandbox, globex_sandbox, tmp_path)
    acme_writeback = (defs.resources or {})[ACME.writeback_resource]
    globex_writeback = (defs.resources or {})[GLOBEX.writeback_resource]
    uid = str(future_open_bookings(sandbox)[0]["uid"])
    inbox = Path(acme_writeback.inbox)
    inbox.mkdir(parents=True)
    (inbox / "closures.csv").write_text(f"{HEADER}cancel,{uid},,,room closed\n", encoding="utf-8")
    globex_seen = len(globex_sandbox.store.journal())

    assert _evaluate(defs, GLOBEX.sensor("changeset_inbox")) == []
    (request,) = _evaluate(defs, ACME.sensor("changeset_inbox"))
    # Its run config names acme's op: globex's job would not even take it.
    globex_job = defs.resolve_job_def(GLOBEX.job("apply_changeset"))
    with pytest.raises(dg.DagsterInvalidConfigError):
        dg.validate_run_config(globex_job, request.run_config)
    result = defs.resolve_job_def(ACME.job("apply_changeset")).execute_in_process(
        run_config=request.run_config
    )
    assert result.success

    (post,) = [e for e in sandbox.store.journal() if e["method"] == "POST"]
    assert (post["booking_uid"], post["changed"]) == (uid, True)
    assert globex_sandbox.store.journal()[globex_seen:] == []
    assert Path(acme_writeback.ledger_path).is_file()
    assert Path(acme_writeback.apply_log_root).is_dir()
    assert not Path(globex_writeback.ledger_path).exists()
    assert not Path(globex_writeback.apply_log_root).exists()


WEBHOOK_SECRETS = {"acme": "whsec_acme_only", "globex": "whsec_globex_only"}
RECEIVER_START_S = 30.0
DRAIN_S = 30.0
WEBHOOK_BOOKINGS = 300


@contextlib.contextmanager
def _receiver(tmp_path: Path, dbs: dict[str, Path]) -> Iterator[str]:
    """``jicoo webhook serve`` for both organizations, as the README runs it; its URL."""
    env = {
        **os.environ,
        **{f"{name.upper()}_JICOO_WEBHOOK_SECRET": s for name, s in WEBHOOK_SECRETS.items()},
    }
    argv = [sys.executable, "-m", "jicoo_connector.cli", "webhook", "serve", "--port", "0"]
    for name, db in dbs.items():
        argv += ["--organization", f"{name}={db}"]
    with (tmp_path / "receiver.log").open("w") as log:
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True, env=env)  # noqa: S603
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # the ready line; the child runs until stopped
        assert line.startswith(READY_LINE_PREFIX), (tmp_path / "receiver.log").read_text()
        yield line.removeprefix(READY_LINE_PREFIX).split()[0]
    finally:
        child.terminate()
        child.wait(RECEIVER_START_S)
        if child.stdout is not None:
            child.stdout.close()


def _webhook_sandbox(seed: int, key: str, url: str, secret: str, clock: Clock) -> SandboxServer:
    return _sandbox(seed, key, WEBHOOK_BOOKINGS, clock, WebhookOptions(url=url, secret=secret))


def _cancel_one(sandbox: SandboxServer) -> dict[str, object]:
    """Cancel one future open booking through the API (the sandbox sends its webhook)."""
    booking = future_open_bookings(sandbox)[0]
    response = httpx.post(
        f"{sandbox.base_url}/v1/bookings/{booking['uid']}/cancel",
        headers={"X-Jicoo-Api-Key": sandbox.api_key},
        json={"cancelReason": "organizations test"},
    )
    assert response.status_code == httpx.codes.OK, response.text
    return booking


def _recorded(db: Path) -> list[str]:
    with SQLiteEventStore(db) as store:
        return [s.event.booking_uid for s in store.events_after(0, 100)]


def test_one_receiver_gives_each_organization_its_own_events(tmp_path: Path, clock: Clock) -> None:
    dbs = {name: tmp_path / name / "webhook_events.sqlite" for name in WEBHOOK_SECRETS}
    with _receiver(tmp_path, dbs) as url:
        # acme's endpoint is its own path; globex's is the root: routed by its secret.
        acme_sandbox = _webhook_sandbox(
            7, "sk_test_sandbox", f"{url}/acme", WEBHOOK_SECRETS["acme"], clock
        )
        globex_sandbox = _webhook_sandbox(
            GLOBEX_SEED, GLOBEX_KEY, url, WEBHOOK_SECRETS["globex"], clock
        )
        with acme_sandbox, globex_sandbox:
            cancelled = {"acme": _cancel_one(acme_sandbox), "globex": _cancel_one(globex_sandbox)}
            for sandbox in (acme_sandbox, globex_sandbox):
                assert sandbox.webhooks is not None
                assert sandbox.webhooks.drain(DRAIN_S)
            # globex's secret does not open acme's path.
            body = json.dumps(event_payload("host_cancelled", cancelled["globex"], None)).encode()
            forged = httpx.post(
                f"{url}/acme",
                content=body,
                headers={SIGNATURE_HEADER: sign(WEBHOOK_SECRETS["globex"], body, int(time.time()))},
            )
            assert forged.status_code == httpx.codes.UNAUTHORIZED
            defs = _both(acme_sandbox, globex_sandbox, tmp_path)
    for name, booking in cancelled.items():
        assert _recorded(dbs[name]) == [booking["uid"]], name
    assert cancelled["acme"]["uid"] != cancelled["globex"]["uid"]

    # Each organization's sensor refreshes the day of its own event, from its own store.
    for names in (ACME, GLOBEX):
        (request,) = _evaluate(defs, names.sensor("booking_events"))
        day = dt.datetime.fromisoformat(str(cancelled[names.organization]["startedAt"]))
        expected = day.astimezone(TOKYO).date().isoformat()
        assert request.tags["dagster/asset_partition_range_start"] == expected
        assert request.tags["dagster/asset_partition_range_end"] == expected
        assert request.tags["jicoo/webhook_event_count"] == "1"
