"""`make example-changeset` (and `make sandbox`, first): data/changesets/example.csv made from
a seed-7 sandbox's data.

A change set names bookings and free future slots, and slots age: a committed file with fixed
dates stopped planning cleanly within days. This writes one from the data a `make sandbox`
(seed 7, 2,000 bookings, anchored on today) serves today, so `make sandbox` writes it afresh
before it serves; the demo uses the same generator. The file is not in git.
"""

import argparse
import csv
import datetime as dt
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from zoneinfo import ZoneInfo

from jicoo_connector._compat import parse_datetime
from jicoo_connector.atomic import atomic_path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "data" / "changesets" / "example.csv"
SEED = 7
BOOKINGS = 2000
RESCHEDULES = 4
CANCELS = 2
TOKYO = ZoneInfo("Asia/Tokyo")


def _interval(booking: Mapping[str, object]) -> tuple[dt.datetime, dt.datetime]:
    return (
        parse_datetime(str(booking["startedAt"])),
        parse_datetime(str(booking["endedAt"])),
    )


def _spelling(index: int, target: dt.datetime) -> dict[str, str]:
    """The ways a row may give its target: a local time in time_zone, an offset without a
    zone (the booking keeps its own), UTC."""
    if index == 0:
        local = target.astimezone(TOKYO).strftime("%Y-%m-%dT%H:%M")
        return {"new_started_at": local, "time_zone": "Asia/Tokyo"}
    if index == 1:
        return {"new_started_at": target.astimezone(TOKYO).isoformat(), "time_zone": ""}
    return {"new_started_at": target.astimezone(dt.timezone.utc).isoformat(), "time_zone": ""}


# Busy times per host in the target window: existing bookings, then the rows' targets.
Busy = list[tuple[frozenset[str], dt.datetime, dt.datetime]]


def _take_free_slot(
    slots: Iterable[Mapping[str, object]],
    hosts: frozenset[str],
    length: dt.timedelta,
    busy: Busy,
) -> dt.datetime | None:
    """The first slot that overlaps none of these hosts' busy times; it is then busy too (the
    API refuses a move onto a host's other booking, including one moved there by an earlier
    row)."""
    for slot in slots:
        target = parse_datetime(str(slot["startedAt"]))
        target_end = target + length
        if any(
            hosts & others and target < other_end and other_start < target_end
            for others, other_start, other_end in busy
        ):
            continue
        busy.append((hosts, target, target_end))
        return target
    return None


def _cancel_rows(
    open_bookings: Iterable[Mapping[str, object]], rows: list[dict[str, str]]
) -> list[dict[str, str]]:
    """Cancels for up to CANCELS open bookings that no row moves."""
    moved = {row["booking_uid"] for row in rows}
    cancels = [b for b in open_bookings if b["uid"] not in moved][:CANCELS]
    return [
        {
            "change_id": f"cancel-{len(rows) - RESCHEDULES + index + 1:03d}",
            "action": "cancel",
            "booking_uid": str(booking["uid"]),
            "new_started_at": "",
            "time_zone": "",
            "cancel_reason": "会議室が使えなくなりました (room closed)",
        }
        for index, booking in enumerate(cancels)
    ]


def write_changeset(base_url: str, api_key: str, path: Path, now: dt.datetime) -> None:
    """A change set made from the sandbox's current data, so its slots are free and after
    ``now`` (the sandbox's clock): clear of every host's bookings and of the slots the change
    set itself takes. tests/test_demo.py runs it on other days."""
    from jicoo_connector.changes._plan import host_ids
    from jicoo_connector.client import JicooClient
    from jicoo_connector.settings import ApiKey, Settings

    window = (now + dt.timedelta(days=10), now + dt.timedelta(days=13))
    settings = Settings(api_key=ApiKey(api_key), base_url=base_url)
    rows: list[dict[str, str]] = []
    with JicooClient(settings) as client:
        upcoming = client.list_bookings(
            started_at=now + dt.timedelta(days=2), ended_at=now + dt.timedelta(days=9)
        )
        open_bookings = [b for b in upcoming.records if b.get("status") == "open"]
        busy: Busy = [
            (host_ids(b), *_interval(b))
            for b in client.list_bookings(
                started_at=window[0] - dt.timedelta(days=1),
                ended_at=window[1] + dt.timedelta(days=1),
            ).records
            if b.get("status") != "cancel" and b.get("startedAt") and b.get("endedAt")
        ]
        for booking in open_bookings:
            if len(rows) >= RESCHEDULES:
                break
            start, end = _interval(booking)
            slots = client.list_available_slots(str(booking["eventTypeId"]), *window)
            target = _take_free_slot(slots, host_ids(booking), end - start, busy)
            if target is not None:
                rows.append(
                    {
                        "change_id": f"move-{len(rows) + 1:03d}",
                        "action": "reschedule",
                        "booking_uid": str(booking["uid"]),
                        **_spelling(len(rows), target),
                        "cancel_reason": "",
                    }
                )
        rows.extend(_cancel_rows(open_bookings, rows))
    with atomic_path(path) as temp, temp.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    from jicoo_sandbox import SandboxProcess
    from jicoo_sandbox.config import DEFAULT_SANDBOX_KEY

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=EXAMPLE, help=f"where ({EXAMPLE})")
    out: Path = parser.parse_args(argv).out
    with SandboxProcess(seed=SEED, bookings=BOOKINGS) as sandbox:
        write_changeset(
            sandbox.base_url, DEFAULT_SANDBOX_KEY, out, dt.datetime.now(dt.timezone.utc)
        )
    print(f"wrote {out}: it plans cleanly against today's `make sandbox`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
