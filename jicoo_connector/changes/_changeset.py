"""The change-set CSV contract: bytes in, validated changes plus located rejected rows out.

Pure (no I/O beyond reading the file); imports only errors from the package.
"""

import csv
import datetime as dt
import functools
import hashlib
import io
import logging
import os
import re
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jicoo_connector._compat import StrEnum, parse_datetime
from jicoo_connector.atomic import atomic_path
from jicoo_connector.errors import ChangeSetError

__all__ = [
    "ALL_COLUMNS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ROWS",
    "ERROR_COLUMNS",
    "MAX_HORIZON",
    "REQUIRED_COLUMNS",
    "Action",
    "Change",
    "ParsedChangeSet",
    "RejectedRow",
    "escape_cell",
    "format_instant",
    "parse_changeset",
    "parse_instant",
    "write_rejected_csv",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_ROWS = 50_000
# A target beyond this is almost surely a typo (year 2206) and would overflow date arithmetic
# near datetime.max; Jicoo event types book weeks, not years, ahead.
MAX_HORIZON = dt.timedelta(days=2 * 366)
MAX_REASON_CHARS = 1000
MAX_CELL_CHARS = 4096
# Header = line 1, so the first data row is line 2.
HEADER_ROW = 1

REQUIRED_COLUMNS = ("action", "booking_uid", "new_started_at", "time_zone")
OPTIONAL_COLUMNS = ("change_id", "cancel_reason")
ALL_COLUMNS = ("change_id", "action", "booking_uid", "new_started_at", "time_zone", "cancel_reason")
ERROR_COLUMNS = ("error_row", "error_column", "error_reason")

# Spreadsheet programs evaluate cells starting with these (OWASP "CSV injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

_UID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_CHANGE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# Text control characters other than tab/CR/LF mean the file is not a CSV we wrote by hand.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_CP932 = "cp932"


class Action(StrEnum):
    RESCHEDULE = "reschedule"
    CANCEL = "cancel"


def format_instant(instant: dt.datetime) -> str:
    """The API's canonical UTC form: ``2026-11-26T01:00:00.000Z``."""
    utc = instant.astimezone(dt.timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_instant(value: object) -> dt.datetime | None:
    """An API timestamp (``...Z`` or an offset, with or without millis) as an aware UTC value."""
    if not isinstance(value, str):
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    return parsed.astimezone(dt.timezone.utc) if parsed.tzinfo is not None else None


@dataclass(frozen=True, slots=True)
class Change:
    """One valid row. ``key`` is ``change_id`` when given, else a sha256 of the change itself."""

    key: str
    row: int
    action: Action
    booking_uid: str
    new_started_at: dt.datetime | None
    time_zone: str | None
    cancel_reason: str | None
    change_id: str | None
    # The row as read: what *.rejected.csv gives back when the change does not go through.
    cells: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def target(self) -> str | None:
        """The target start as the API writes it, or None for a cancel."""
        return format_instant(self.new_started_at) if self.new_started_at is not None else None


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row we refuse, located by file line (header = 1) and column; ``cells`` as read."""

    row: int
    column: str | None
    reason: str
    cells: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ParsedChangeSet:
    """Every data row of one file, each either a ``Change`` or a ``RejectedRow``."""

    changes: list[Change]
    rejected: list[RejectedRow]
    content_hash: str
    header: list[str]


def change_key(
    action: Action,
    booking_uid: str,
    target: str | None,
    time_zone: str | None,
    cancel_reason: str | None,
) -> str:
    material = "\x1f".join(
        (action.value, booking_uid, target or "", time_zone or "", cancel_reason or "")
    )
    return hashlib.sha256(material.encode()).hexdigest()


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _line_of_bytes(data: bytes, index: int) -> int:
    return data.count(b"\n", 0, index) + 1


def _decode(data: bytes, encoding: str | None) -> str:
    if encoding is not None:
        try:
            codec = encoding if encoding.lower() not in ("utf-8", "utf8") else "utf-8-sig"
            return data.decode(codec)
        except LookupError as exc:
            raise ChangeSetError(f"unknown encoding {encoding!r}") from exc
        except UnicodeDecodeError as exc:
            raise ChangeSetError(
                f"the file is not valid {encoding} text (byte {exc.start})",
                row=_line_of_bytes(data, exc.start),
            ) from exc
    if data.startswith(_UTF16_BOMS):
        raise ChangeSetError("the file is UTF-16; save it as UTF-8 (CSV UTF-8)", row=HEADER_ROW)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        row = _line_of_bytes(data, exc.start)
        try:
            as_cp932 = data.decode(_CP932)
        except UnicodeDecodeError:
            as_cp932 = None
        # Binary data can decode as CP932 by chance; real CP932 text has no control characters.
        if as_cp932 is None or _CONTROL_RE.search(as_cp932):
            raise ChangeSetError(
                "the file is neither UTF-8 text nor a known encoding (binary data?)", row=row
            ) from exc
        raise ChangeSetError(
            "the file is not UTF-8 but decodes as CP932 (Shift-JIS, as saved by Japanese "
            "Excel); re-run with --encoding cp932 or save it as CSV UTF-8",
            row=row,
        ) from exc


def _read_source(source: str | os.PathLike[str] | bytes, max_bytes: int) -> bytes:
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        try:
            with path.open("rb") as handle:
                # Read one byte past the cap so an oversized file is refused without loading it.
                data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise ChangeSetError(f"cannot read the change set: {exc.strerror}") from exc
    if len(data) > max_bytes:
        raise ChangeSetError(f"the file is larger than the limit of {max_bytes} bytes")
    return data


def _parse_header(first: list[str]) -> list[str]:
    header = [name.strip().lower() for name in first]
    # Unknown columns are refused, not ignored: a typo such as "cancel_reson" would otherwise
    # drop data silently, and a write-back must do exactly what the file says. The error_*
    # columns of a *.rejected.csv are ignored: fixed in place, it is resubmitted as is.
    unknown = [name for name in header if name not in (*ALL_COLUMNS, *ERROR_COLUMNS)]
    if unknown:
        raise ChangeSetError(
            f"unknown column {unknown[0]!r}; expected columns: {', '.join(ALL_COLUMNS)}",
            row=HEADER_ROW,
            column=unknown[0],
        )
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise ChangeSetError(f"column {name!r} appears twice", row=HEADER_ROW, column=name)
        seen.add(name)
    missing = [name for name in REQUIRED_COLUMNS if name not in seen]
    if missing:
        raise ChangeSetError(
            f"missing required column {missing[0]!r}", row=HEADER_ROW, column=missing[0]
        )
    return header


class _RowError(Exception):
    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = reason


def _parse_zone(raw: str) -> str:
    name = raw.strip()
    if not name:
        raise _RowError("time_zone", "time_zone is required for a reschedule")
    if name not in _known_zones():
        raise _RowError("time_zone", f"unknown IANA time zone {name!r}")
    return name


def _parse_instant(raw: str, zone_name: str | None, now: dt.datetime) -> dt.datetime:
    text = raw.strip()
    if not text:
        raise _RowError("new_started_at", "new_started_at is required for a reschedule")
    if "T" not in text and " " not in text:
        raise _RowError("new_started_at", f"{text!r} has no time of day")
    try:
        parsed = parse_datetime(text)
    except ValueError as exc:
        raise _RowError("new_started_at", f"{text!r} is not an ISO 8601 timestamp") from exc
    if parsed.tzinfo is None:
        if zone_name is None:
            raise _RowError(
                "time_zone",
                "time_zone is required when new_started_at has no UTC offset "
                "(or give one, e.g. +09:00)",
            )
        zone = zoneinfo.ZoneInfo(zone_name)
        early = parsed.replace(tzinfo=zone, fold=0)
        late = parsed.replace(tzinfo=zone, fold=1)
        if early.utcoffset() != late.utcoffset():
            round_trip = early.astimezone(dt.timezone.utc).astimezone(zone).replace(tzinfo=None)
            if round_trip != parsed:
                raise _RowError(
                    "new_started_at",
                    f"{text} does not exist in {zone_name} (skipped by a daylight-saving "
                    "change); give an explicit UTC offset",
                )
            raise _RowError(
                "new_started_at",
                f"{text} is ambiguous in {zone_name} (it happens twice when clocks go back); "
                "give an explicit UTC offset",
            )
        parsed = early
    try:
        instant = parsed.astimezone(dt.timezone.utc)
    except OverflowError as exc:
        raise _RowError("new_started_at", f"{text!r} is out of range") from exc
    if instant <= now:
        raise _RowError("new_started_at", f"{text} is in the past")
    if instant - now > MAX_HORIZON:
        raise _RowError("new_started_at", f"{text} is more than {MAX_HORIZON.days} days ahead")
    return instant


def _check_text(column: str, value: str, limit: int) -> None:
    if value.startswith(FORMULA_PREFIXES):
        raise _RowError(column, f"{column} starts with a spreadsheet formula character")
    if _CONTROL_RE.search(value) or "\n" in value or "\r" in value:
        raise _RowError(column, f"{column} contains control characters")
    if len(value) > limit:
        raise _RowError(column, f"{column} is longer than {limit} characters")


def _parse_row(row: int, cells: Mapping[str, str], now: dt.datetime) -> Change:
    raw_action = cells.get("action", "").strip()
    try:
        action = Action(raw_action.lower())
    except ValueError as exc:
        shown = raw_action[:40] if raw_action else "(empty)"
        raise _RowError(
            "action", f"unknown action {shown!r}; use 'reschedule' or 'cancel'"
        ) from exc
    uid = cells.get("booking_uid", "").strip()
    if not uid:
        raise _RowError("booking_uid", "booking_uid is required")
    if not _UID_RE.fullmatch(uid):
        raise _RowError("booking_uid", "booking_uid must be 1-64 letters, digits, '-' or '_'")
    change_id = cells.get("change_id", "").strip() or None
    if change_id is not None and not _CHANGE_ID_RE.fullmatch(change_id):
        raise _RowError(
            "change_id", "change_id must start with a letter or digit (then . _ : - allowed)"
        )
    reason = cells.get("cancel_reason", "").strip() or None
    raw_start = cells.get("new_started_at", "")
    raw_zone = cells.get("time_zone", "")
    if action is Action.RESCHEDULE:
        if reason is not None:
            raise _RowError("cancel_reason", "cancel_reason is only allowed on a cancel row")
        # With an offset in new_started_at the zone may be left out: the booking keeps its own.
        time_zone: str | None = _parse_zone(raw_zone) if raw_zone.strip() else None
        instant: dt.datetime | None = _parse_instant(raw_start, time_zone, now)
    else:
        if raw_start.strip():
            raise _RowError("new_started_at", "a cancel row takes no new_started_at")
        time_zone = _parse_zone(raw_zone) if raw_zone.strip() else None
        instant = None
        if reason is not None:
            _check_text("cancel_reason", reason, MAX_REASON_CHARS)
    target = format_instant(instant) if instant is not None else None
    # Cancels ignore the zone, so it stays out of their key: same cancel, same key.
    key = change_id or change_key(
        action, uid, target, time_zone if action is Action.RESCHEDULE else None, reason
    )
    return Change(
        key=key,
        row=row,
        action=action,
        booking_uid=uid,
        new_started_at=instant,
        time_zone=time_zone,
        cancel_reason=reason,
        change_id=change_id,
        cells=cells,
    )


def _flag_duplicates(
    verdicts: dict[int, Change | RejectedRow],
    cells_by_row: Mapping[int, Mapping[str, str]],
    column: str,
    what: str,
) -> None:
    groups: defaultdict[str, list[int]] = defaultdict(list)
    for row, verdict in verdicts.items():
        value = cells_by_row[row].get(column, "").strip()
        if value and (isinstance(verdict, Change) or verdict.column != column):
            groups[value].append(row)
    for rows in groups.values():
        if len(rows) < 2:
            continue
        for row in rows:
            if isinstance(verdicts[row], Change):
                others = ", ".join(str(other) for other in rows if other != row)
                verdicts[row] = RejectedRow(
                    row=row,
                    column=column,
                    reason=f"{what} also appears on row {others}; conflicting rows are all "
                    "rejected",
                    cells=cells_by_row[row],
                )


def _text_of(data: bytes, encoding: str | None) -> str:
    """The file's text, refused whole when it is empty, binary or holds control characters."""
    if not data.strip():
        raise ChangeSetError("the file is empty; expected a header row", row=HEADER_ROW)
    if b"\x00" in data:
        raise ChangeSetError(
            "the file contains NUL bytes (binary data, or UTF-16 text)",
            row=_line_of_bytes(data, data.index(b"\x00")),
        )
    text = _decode(data, encoding)
    if text.startswith("\ufeff"):
        text = text[1:]
    if control := _CONTROL_RE.search(text):
        raise ChangeSetError(
            f"the file contains control character {control.group()!r} (binary data?)",
            row=_line_of(text, control.start()),
        )
    return text


def _read_rows(
    text: str, max_rows: int, moment: dt.datetime
) -> tuple[list[str], dict[int, Change | RejectedRow], dict[int, dict[str, str]]]:
    """The header, and each data row's verdict and cells by its line number."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        first = next(reader, None)
        if first is None or not any(cell.strip() for cell in first):
            raise ChangeSetError("the first line must be the header row", row=HEADER_ROW)
        header = _parse_header(first)
        verdicts: dict[int, Change | RejectedRow] = {}
        cells_by_row: dict[int, dict[str, str]] = {}
        line_before = reader.line_num
        for record in reader:
            row = line_before + 1
            line_before = reader.line_num
            if not any(cell.strip() for cell in record):
                continue  # blank lines and Excel's ",,,," trailers are not rows
            if len(verdicts) >= max_rows:
                raise ChangeSetError(f"more than {max_rows} data rows", row=row)
            cells = dict(zip(header, record, strict=False))
            cells_by_row[row] = cells
            verdicts[row] = _verdict(row, header, record, cells, moment)
    except csv.Error as exc:
        raise ChangeSetError(f"malformed CSV: {exc}", row=reader.line_num) from exc
    if not verdicts:
        raise ChangeSetError("the file has a header but no data rows", row=HEADER_ROW + 1)
    return header, verdicts, cells_by_row


def parse_changeset(
    source: str | os.PathLike[str] | bytes,
    *,
    encoding: str | None = None,
    strict: bool = False,
    now: dt.datetime | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> ParsedChangeSet:
    """Read a change-set CSV (a path or its bytes) and give every data row a verdict.

    File-level problems raise ``ChangeSetError`` (nothing may be applied); bad rows become
    ``RejectedRow``s unless ``strict``, which turns the first one into a ``ChangeSetError``.

    >>> csv_bytes = b"action,booking_uid,new_started_at,time_zone\\ncancel,abc,,\\n"
    >>> parse_changeset(csv_bytes).changes[0].row
    2
    """
    moment = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    data = _read_source(source, max_bytes)
    content_hash = hashlib.sha256(data).hexdigest()
    header, verdicts, cells_by_row = _read_rows(_text_of(data, encoding), max_rows, moment)
    _flag_duplicates(verdicts, cells_by_row, "booking_uid", "this booking")
    _flag_duplicates(verdicts, cells_by_row, "change_id", "this change_id")
    _flag_duplicate_keys(verdicts, cells_by_row)
    changes = [v for v in verdicts.values() if isinstance(v, Change)]
    rejected = [v for v in verdicts.values() if isinstance(v, RejectedRow)]
    if strict and rejected:
        first_bad = rejected[0]
        raise ChangeSetError(
            f"{first_bad.reason} ({len(rejected)} rejected row(s); strict mode applies nothing)",
            row=first_bad.row,
            column=first_bad.column,
        )
    if rejected:
        logger.warning("change set: %d valid, %d rejected rows", len(changes), len(rejected))
    return ParsedChangeSet(
        changes=changes, rejected=rejected, content_hash=content_hash, header=header
    )


def _flag_duplicate_keys(
    verdicts: dict[int, Change | RejectedRow], cells_by_row: Mapping[int, Mapping[str, str]]
) -> None:
    # A user change_id may equal another row's hash key; keys must stay unique in a batch.
    by_key: defaultdict[str, list[int]] = defaultdict(list)
    for row, verdict in verdicts.items():
        if isinstance(verdict, Change):
            by_key[verdict.key].append(row)
    for rows in by_key.values():
        if len(rows) > 1:
            for row in rows:
                verdicts[row] = RejectedRow(
                    row=row,
                    column="change_id",
                    reason="two rows share one change key",
                    cells=cells_by_row[row],
                )


def _verdict(
    row: int,
    header: Sequence[str],
    record: Sequence[str],
    cells: Mapping[str, str],
    now: dt.datetime,
) -> Change | RejectedRow:
    if len(record) != len(header):
        return RejectedRow(
            row=row,
            column=None,
            reason=f"row has {len(record)} fields but the header has {len(header)}",
            cells=cells,
        )
    for name, value in cells.items():
        if len(value) > MAX_CELL_CHARS:
            return RejectedRow(
                row=row, column=name, reason=f"cell longer than {MAX_CELL_CHARS}", cells=cells
            )
    try:
        return _parse_row(row, cells, now)
    except _RowError as exc:
        return RejectedRow(row=row, column=exc.column, reason=exc.reason, cells=cells)


def escape_cell(value: str) -> str:
    """Neutralise a cell a spreadsheet would evaluate as a formula (OWASP CSV injection)."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def write_rejected_csv(
    path: str | os.PathLike[str],
    parsed: ParsedChangeSet,
    extra: Iterable[RejectedRow] = (),
) -> int:
    """Write the rejected rows (input columns + error_row, error_column, error_reason) as CSV:
    the parser's, plus ``extra`` (rows the plan or the apply did not pass), in file order.

    UTF-8 with a BOM so Excel opens it correctly; written atomically. Returns the row count.
    """
    rows = sorted([*parsed.rejected, *extra], key=lambda rejected: rejected.row)
    # A resubmitted *.rejected.csv's own error_* columns give way to the new reasons.
    kept = [name for name in parsed.header if name not in ERROR_COLUMNS]
    columns = [*kept, *ERROR_COLUMNS]
    with atomic_path(path) as temp, temp.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for rejected in rows:
            values: Iterable[str] = (
                *(rejected.cells.get(name, "") for name in kept),
                str(rejected.row),
                rejected.column or "",
                rejected.reason,
            )
            writer.writerow([escape_cell(value) for value in values])
    return len(rows)
