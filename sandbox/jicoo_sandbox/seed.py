"""Seeded, deterministic sandbox data: users, availability, event types, bookings, contacts,
schedules.

Pure generation from ``random.Random(seed)`` and the anchor day; no HTTP, no locks, no client code.
"""

import base64
import datetime as dt
import math
import random
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from jicoo_sandbox.instants import MS_PER_DAY, MS_PER_MINUTE, MS_PER_S, format_ms
from jicoo_sandbox.model import SLOT_STEP_MS, Booking, EventType, Rule, SeedData, User

__all__ = [
    "booking_contacts",
    "build_seed",
    "schedule_count",
    "schedule_record",
    "short_uid",
]

# One host per ~250 bookings keeps hosts about a third busy over the default 91-day range,
# so random placement finds free slots quickly and open bookings never overlap.
BOOKINGS_PER_HOST = 250
MIN_USERS = 8
EVENT_TYPES_PER_USER = 2
TEAM_EVENT_TYPE_EVERY_USERS = 4
DURATIONS_MIN = (15, 30, 45, 60, 90)
DEFAULT_ZONE = "Asia/Tokyo"
OTHER_ZONES = ("America/New_York", "Europe/London", "Asia/Singapore", "Australia/Sydney")
OTHER_ZONE_EVERY = 6  # about one user in six works outside Japan
# Status mix as thresholds on one random byte: ~80% open, ~12% cancel, ~8% request.
OPEN_BELOW = 205
CANCEL_BELOW = 236
MAX_PLACEMENT_TRIES = 40
UID_BYTES = 9  # 9 random bytes -> 12 base64 characters, like `mzgdPJVBb7RE`
USER_UID_CHARS = 28  # Firebase-style, like `cfmSbUHeizSoZob9cRA3N8fmfKg1`
UID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
MAX_CREATED_BEFORE_MS = 21 * MS_PER_DAY
MIN_CREATED_BEFORE_MS = 60 * MS_PER_MINUTE
MIN_SCHEDULES = 20
SCHEDULES_PER_BOOKINGS = 10
MAX_CONTACTS = 3
# Rule startedAt: templates took effect well before any seeded booking.
TEMPLATE_AGE_DAYS = 400

# Weekdays use 0=Sunday..6=Saturday, as assumed by the spec's AvailabilityCalendarRule.wday.
WEEKDAYS = (1, 2, 3, 4, 5)


def _rules(days: Sequence[int], *windows: tuple[int, int]) -> tuple[Rule, ...]:
    return tuple(Rule(day, start * 60, end * 60) for day in days for start, end in windows)


# Variants never put two windows of a day back to back, so a meeting fits the grid of free
# cells exactly when it fits inside one rule window.
STANDARD = ("営業時間", _rules(WEEKDAYS, (9, 18)))
LUNCH_BREAK = ("営業時間 昼休みあり", _rules(WEEKDAYS, (9, 12), (13, 18)))
EARLY = ("朝型", _rules(WEEKDAYS, (8, 17)) + _rules((6,), (10, 13)))
LATE = ("遅番", _rules((1, 2, 3, 4), (10, 19)))
# Gives data between 00:00 and 01:00 JST (15:00-16:00 UTC the day before) for day-boundary tests.
NIGHT_DESK = ("夜間窓口", _rules(WEEKDAYS, (0, 1), (10, 19)))
VARIANTS = (STANDARD, STANDARD, LUNCH_BREAK, EARLY, LATE)

FAMILY_NAMES = (
    ("佐藤", "sato"), ("鈴木", "suzuki"), ("高橋", "takahashi"), ("田中", "tanaka"),
    ("伊藤", "ito"), ("渡辺", "watanabe"), ("山本", "yamamoto"), ("中村", "nakamura"),
    ("小林", "kobayashi"), ("加藤", "kato"), ("吉田", "yoshida"), ("山田", "yamada"),
)  # fmt: skip
GIVEN_NAMES = (
    ("花子", "hanako"), ("太郎", "taro"), ("陽菜", "hina"), ("蓮", "ren"), ("結衣", "yui"),
    ("大翔", "hiroto"), ("美咲", "misaki"), ("翔太", "shota"), ("さくら", "sakura"), ("健", "ken"),
)  # fmt: skip
LATIN_FIRST = ("Emma", "Liam", "Olivia", "Noah", "Sophie", "Lucas", "Mia", "Ethan")
LATIN_LAST = ("Smith", "Müller", "García", "Martin", "Wilson", "Rossi", "Dubois", "Kim")
LATIN_EVERY = 4  # one person in four has a Latin-script name
EVENT_TYPE_NAMES = (
    "打ち合わせ", "無料相談", "商談", "採用面接", "オンライン説明会", "Intro call", "Demo",
    "1on1", "サポート窓口", "Consultation",
)  # fmt: skip
TEAM_EVENT_TYPE_NAMES = ("合同面接", "チーム商談", "Panel interview")
LOCATIONS = (
    "zoom",
    "zoom",
    "zoom",
    "googleMeet",
    "teams",
    "phone",
    "inPerson",
    "custom",
    "askInvitee",
)
ONLINE_LOCATIONS = frozenset({"zoom", "googleMeet", "teams"})
PRIORITIES = ("low", "middle", "high", None)
GUEST_ZONES = ("Asia/Tokyo", "Asia/Tokyo", "Asia/Tokyo", "America/Los_Angeles", "Europe/Berlin")
CANCEL_REASONS = ("日程の都合がつかなくなりました", "Schedule conflict", None, "体調不良のため")
COMPANIES = ("株式会社サンプル", "Example Inc.", None, "合同会社テスト", None)
QUESTIONS = (
    ("ご相談内容を教えてください", ("料金プランについて", "導入時期について", "その他")),
    ("How did you hear about us?", ("Search", "Friend", "Event")),
    ("参加人数", ("1名", "2〜5名", "6名以上")),
)
BOOKING_DESCRIPTION = "事前資料を共有します"
DESCRIPTION_BIT = 1 << 16
MEETING_URL = "https://zoom.us/j/"
MEETING_ID_RANGE = 10**10
PHONE = "03-1234-5678"
ADDRESS = "東京都千代田区丸の内1-1-1"
CUSTOM_LOCATION = "本社3F 会議室A"
ACCESS = "丸の内線 東京駅 徒歩5分"
# Probabilities of optional parts of generated records.
HALF = 0.5
CC_SHARE = 0.3
SMS_SHARE = 0.3
PHONE_SHARE = 0.4
ALL_DAY_SHARE = 0.05
OPEN_SCHEDULE_SHARE = 0.9
SCHEDULE_NAMES = ("社内MTG", "移動", "ランチ", "Focus time", "定例会議", "研修")


def _firebase_uid(rng: random.Random) -> str:
    return "".join(rng.choices(UID_ALPHABET, k=USER_UID_CHARS))


def short_uid(rng: random.Random) -> str:
    return "".join(rng.choices(UID_ALPHABET, k=12))


def _person(rng: random.Random, index: int) -> tuple[str, str]:
    """(display name, email local part) - Japanese or Latin script."""
    if index % LATIN_EVERY == LATIN_EVERY - 1:
        first, last = rng.choice(LATIN_FIRST), rng.choice(LATIN_LAST)
        ascii_last = last.encode("ascii", "ignore").decode().lower()
        return f"{first} {last}", f"{first.lower()}.{ascii_last}{index}"
    family, family_ro = rng.choice(FAMILY_NAMES)
    given, given_ro = rng.choice(GIVEN_NAMES)
    return f"{family} {given}", f"{given_ro}.{family_ro}{index}"


def _day_start_ms(day: dt.date) -> int:
    return (
        int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp())
        * MS_PER_S
    )


def _windows(user: User, first: dt.date, last: dt.date, lo: int, hi: int) -> list[tuple[int, int]]:
    """The user's availability windows as UTC ms intervals inside [lo, hi), in time order."""
    zone = ZoneInfo(user.timezone)
    out: list[tuple[int, int]] = []
    day = first - dt.timedelta(days=1)
    while day <= last + dt.timedelta(days=1):
        wday = (day.weekday() + 1) % 7
        midnight = dt.datetime(day.year, day.month, day.day, tzinfo=zone)
        for rule in user.rules:
            if rule.wday != wday:
                continue
            # Wall-clock arithmetic, then UTC: DST days keep their local opening hours.
            start = midnight + dt.timedelta(minutes=rule.start_min)
            end = midnight + dt.timedelta(minutes=rule.end_min)
            start_ms = int(start.timestamp()) * MS_PER_S
            end_ms = int(end.timestamp()) * MS_PER_S
            if lo <= start_ms and end_ms <= hi:
                out.append((start_ms, end_ms))
        day += dt.timedelta(days=1)
    out.sort()
    return out


def _users(rng: random.Random, count: int, anchor_ms: int) -> list[User]:
    users: list[User] = []
    roles = ("owner", "admin", "member", "member", "member", "restricted")
    for index in range(count):
        name, local = _person(rng, index)
        if index == 0:
            template_name, rules = NIGHT_DESK
            zone = DEFAULT_ZONE
        else:
            template_name, rules = rng.choice(VARIANTS)
            zone = (
                rng.choice(OTHER_ZONES)
                if index % OTHER_ZONE_EVERY == OTHER_ZONE_EVERY - 1
                else DEFAULT_ZONE
            )
        created = anchor_ms - TEMPLATE_AGE_DAYS * MS_PER_DAY + rng.randrange(30) * MS_PER_DAY
        uid = _firebase_uid(rng)
        users.append(
            User(
                uid=uid,
                name=name,
                email=f"{local}@example.com",
                role=roles[0] if index == 0 else rng.choice(roles[1:]),
                profile_image=None if index % 3 else f"https://img.jicoo.com/u/{uid}.png",
                timezone=zone,
                template_uid=short_uid(rng),
                template_name=template_name,
                rules=rules,
                created=created,
                updated=created + rng.randrange(60) * MS_PER_DAY,
            )
        )
    return users


def _event_types(rng: random.Random, users: list[User], anchor_ms: int) -> list[EventType]:
    types: list[EventType] = []

    def add(name: str, hosts: tuple[int, ...], notify: tuple[int, ...]) -> None:
        created = anchor_ms - rng.randrange(100, TEMPLATE_AGE_DAYS) * MS_PER_DAY
        types.append(
            EventType(
                uid=short_uid(rng),
                name=name,
                description=rng.choice((None, f"{name}の予約ページです。", f"Book a {name}.")),
                duration=rng.choice(DURATIONS_MIN),
                hosts=hosts,
                notify=notify,
                priorities=tuple(rng.randrange(4) for _ in hosts + notify),
                created=created,
                updated=created + rng.randrange(90) * MS_PER_DAY,
            )
        )

    for index in range(len(users)):
        for _ in range(EVENT_TYPES_PER_USER):
            add(rng.choice(EVENT_TYPE_NAMES), (index,), ())
    # Team types: hosts share a zone so their working hours overlap; all of them must attend.
    tokyo = [i for i, user in enumerate(users) if user.timezone == DEFAULT_ZONE]
    for _ in range(len(users) // TEAM_EVENT_TYPE_EVERY_USERS):
        first, second = rng.sample(tokyo, 2)
        extra = rng.randrange(len(users)) if rng.random() < HALF else first
        notify: tuple[int, ...] = () if extra in (first, second) else (extra,)
        add(rng.choice(TEAM_EVENT_TYPE_NAMES), (first, second), notify)
    return types


def _grids(windows: list[list[tuple[int, int]]], range_start: int, cells: int) -> list[bytearray]:
    """Per user, one byte per 15-minute cell: 0 unavailable, 1 free, 2 taken."""
    grids = []
    for user_windows in windows:
        grid = bytearray(cells)
        for start, end in user_windows:
            first = (start - range_start) // SLOT_STEP_MS
            last = (end - range_start) // SLOT_STEP_MS
            grid[first:last] = b"\x01" * (last - first)
        grids.append(grid)
    return grids


def _uids(rng: random.Random, count: int) -> list[str]:
    # One draw and one encode for all uids; 'x'/'Z' replace '+'/'/' so uids stay alphanumeric.
    raw = base64.b64encode(rng.randbytes(UID_BYTES * count), altchars=b"xZ").decode()
    width = UID_BYTES * 4 // 3
    uids = [raw[i : i + width] for i in range(0, len(raw), width)]
    seen: set[str] = set()
    for index, uid in enumerate(uids):
        while uid in seen:
            uid = short_uid(rng)
        seen.add(uid)
        uids[index] = uid
    return uids


def build_seed(
    seed: int, bookings: int, anchor: dt.date, past_days: int, future_days: int
) -> SeedData:
    """Generate the whole data set; the same arguments give the same data, byte for byte."""
    rng = random.Random(seed)
    anchor_ms = _day_start_ms(anchor)
    first_day = anchor - dt.timedelta(days=past_days)
    last_day = anchor + dt.timedelta(days=future_days)
    range_start = _day_start_ms(first_day)
    range_end = _day_start_ms(last_day) + MS_PER_DAY
    users = _users(rng, max(MIN_USERS, math.ceil(bookings / BOOKINGS_PER_HOST)), anchor_ms)
    event_types = _event_types(rng, users, anchor_ms)
    # Users share a few (zone, rules) pairs: compute each pair's windows once, share the list.
    by_shape: dict[tuple[str, tuple[Rule, ...]], list[tuple[int, int]]] = {}
    windows = []
    for user in users:
        shape = (user.timezone, user.rules)
        if shape not in by_shape:
            by_shape[shape] = _windows(user, first_day, last_day, range_start, range_end)
        windows.append(by_shape[shape])
    grids = _grids(windows, range_start, (range_end - range_start) // SLOT_STEP_MS)
    uids = _uids(rng, bookings)
    shared = _Shared(event_types, users)
    out = [_place(rng, uid, shared, windows, grids, range_start, anchor_ms) for uid in uids]
    return SeedData(users, event_types, out, range_start, range_end, anchor_ms, windows)


class _Shared:
    """Strings and tuples that a million bookings share: made once each."""

    def __init__(self, event_types: list[EventType], users: list[User]) -> None:
        self.event_types = event_types
        self.hosts = [
            tuple((users[h].uid, "admin" if i == 0 else "editor") for i, h in enumerate(et.hosts))
            for et in event_types
        ]
        self.names: dict[tuple[str, str], str] = {}

    def name(self, et_name: str, guest: str) -> str:
        key = (et_name, guest)
        found = self.names.get(key)
        if found is None:
            found = self.names[key] = f"{et_name} - {guest}様"
        return found


def _place(
    rng: random.Random,
    uid: str,
    shared: _Shared,
    windows: list[list[tuple[int, int]]],
    grids: list[bytearray],
    range_start: int,
    anchor_ms: int,
) -> Booking:
    """One booking inside its hosts' availability; open/request ones take their cells."""
    event_types = shared.event_types
    n_types = len(event_types)
    draw = rng.getrandbits(8)
    status = "open" if draw < OPEN_BELOW else "cancel" if draw < CANCEL_BELOW else "request"
    blocking = status != "cancel"
    for attempt in range(2 * MAX_PLACEMENT_TRIES):
        if attempt == MAX_PLACEMENT_TRIES:
            # A host this busy is rare; a cancelled booking needs availability only.
            status, blocking = "cancel", False
        bits = rng.getrandbits(64)
        et_index = (bits & 0xFFFF) % n_types
        et = event_types[et_index]
        host_windows = windows[et.hosts[0]]
        if not host_windows:
            continue
        win_start, win_end = host_windows[((bits >> 16) & 0xFFFFFF) % len(host_windows)]
        duration_ms = et.duration * MS_PER_MINUTE
        positions = (win_end - win_start - duration_ms) // SLOT_STEP_MS + 1
        if positions <= 0:
            continue
        start = win_start + ((bits >> 40) % positions) * SLOT_STEP_MS
        first = (start - range_start) // SLOT_STEP_MS
        last = first + duration_ms // SLOT_STEP_MS
        ok = True
        for host in et.hosts:
            grid = grids[host]
            if blocking:
                if grid.count(1, first, last) != last - first:
                    ok = False
                    break
            elif grid.find(0, first, last) != -1:
                ok = False
                break
        if not ok:
            continue
        if blocking:
            taken = b"\x02" * (last - first)
            for host in et.hosts:
                grids[host][first:last] = taken
        return _booking(rng, uid, et_index, shared, status, start, start + duration_ms, anchor_ms)
    raise RuntimeError(f"could not place booking {uid}: the seeded hosts have no availability")


def _booking(
    rng: random.Random,
    uid: str,
    et_index: int,
    shared: _Shared,
    status: str,
    start: int,
    end: int,
    anchor_ms: int,
) -> Booking:
    bits = rng.getrandbits(64)
    et = shared.event_types[et_index]
    location = LOCATIONS[bits % len(LOCATIONS)]
    guest_family, _ = FAMILY_NAMES[(bits >> 8) % len(FAMILY_NAMES)]
    created_limit = min(start, anchor_ms)
    created = created_limit - MIN_CREATED_BEFORE_MS - ((bits >> 16) % MAX_CREATED_BEFORE_MS)
    created -= created % MS_PER_S
    updated = created + ((bits >> 40) % (created_limit - created))
    updated -= updated % MS_PER_S
    cancelled = status == "cancel"
    in_person = location == "inPerson"
    # Positional arguments: this runs a million times and keywords cost measurably more.
    return Booking(
        uid,
        et_index,
        shared.name(et.name, guest_family),
        None if bits & DESCRIPTION_BIT else BOOKING_DESCRIPTION,
        status,
        start,
        end,
        location,
        f"{MEETING_URL}{(bits >> 20) % MEETING_ID_RANGE:010d}"
        if location in ONLINE_LOCATIONS
        else None,
        PHONE if location == "phone" else None,
        ADDRESS if in_person else None,
        CUSTOM_LOCATION if location == "custom" else None,
        ACCESS if in_person else None,
        GUEST_ZONES[(bits >> 50) % len(GUEST_ZONES)],
        PRIORITIES[(bits >> 54) % len(PRIORITIES)],
        CANCEL_REASONS[(bits >> 58) % len(CANCEL_REASONS)] if cancelled else None,
        updated if cancelled else None,
        ("host" if bits >> 62 else "guest") if cancelled else None,
        shared.hosts[et_index],
        created,
        updated,
    )


def booking_contacts(seed: int, booking: Booking) -> list[dict[str, object]]:
    """1-3 guest contacts, derived from (seed, uid) on demand so they cost no memory up front."""
    rng = random.Random(f"{seed}:contacts:{booking.uid}")
    stamp = format_ms(booking.created)
    contacts: list[dict[str, object]] = []
    for index in range(rng.randint(1, MAX_CONTACTS)):
        name, local = _person(rng, index)
        question, choices = rng.choice(QUESTIONS)
        answers = [{"question": question, "content": rng.sample(choices, rng.randint(1, 2))}]
        if rng.random() < HALF:
            answers.append({"question": "備考", "content": ["よろしくお願いいたします。"]})
        sms = rng.random() < SMS_SHARE
        contacts.append(
            {
                "name": name,
                "email": f"{local}@guest.example.com",
                "ccEmails": [f"cc{index}.{local}@guest.example.com"]
                if rng.random() < CC_SHARE
                else [],
                "company": rng.choice(COMPANIES),
                "phoneNumber": "090-1234-5678" if rng.random() < PHONE_SHARE else None,
                "message": rng.choice(
                    (None, "当日はよろしくお願いします。", "Looking forward to it.")
                ),
                "textRemindNumber": "9012345678" if sms else None,
                "textRemindCountryCode": "+81" if sms else None,
                "answers": answers,
                "createdAt": stamp,
                "updatedAt": stamp,
            }
        )
    return contacts


def schedule_count(bookings: int) -> int:
    return max(MIN_SCHEDULES, bookings // SCHEDULES_PER_BOOKINGS)


def schedule_record(seed: int, index: int, count: int, data: SeedData) -> dict[str, object]:
    """The index-th manual schedule, in startedAt order, derived on demand from (seed, index)."""
    rng = random.Random(f"{seed}:schedule:{index}")
    span = data.range_end - data.range_start
    start = data.range_start + (span * index // count) // SLOT_STEP_MS * SLOT_STEP_MS
    end = start + rng.choice((30, 60, 90)) * MS_PER_MINUTE
    user = data.users[rng.randrange(len(data.users))]
    created = format_ms(min(start, data.anchor_ms) - MIN_CREATED_BEFORE_MS)
    all_day = rng.random() < ALL_DAY_SHARE
    return {
        "uid": short_uid(rng),
        "name": rng.choice(SCHEDULE_NAMES),
        "description": rng.choice((None, "社内のみ")),
        "routine": None,
        "isRemind": rng.random() < HALF,
        "projectId": None,
        "phoneNumber": None,
        "access": None,
        "address": None,
        "customLocation": None,
        "attendees": [{"userId": user.uid, "role": "admin", "userType": "host"}],
        "isAllDay": all_day,
        "timeZone": user.timezone,
        "startedAt": format_ms(start),
        "endedAt": format_ms(end),
        "priority": rng.choice(PRIORITIES),
        "displayType": rng.choice(("private", "teamPublic", "public")),
        "location": rng.choice(("zoom", "none", None)),
        "transparency": rng.choice(("opaque", "transparent")),
        "behavior": rng.choice(("event", "work")),
        "visibilityType": rng.choice(("default", "busy")),
        "status": "open" if rng.random() < OPEN_SCHEDULE_SHARE else "cancel",
        "url": None,
        "updatedAt": created,
        "createdAt": created,
    }
