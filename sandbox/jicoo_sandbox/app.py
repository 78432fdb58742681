"""The sandbox's HTTP face: Starlette routes per openapi.yaml, auth, validation, envelopes.

State and business rules live in store.py; faults in faults/ (profile, injector, control
endpoints). Imports no client code.
"""

import datetime as dt
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from jicoo_sandbox.config import SandboxConfig
from jicoo_sandbox.faults import FAULT_EXTENSION, FaultControl
from jicoo_sandbox.index import BookingQuery, page_count
from jicoo_sandbox.instants import EPOCH, ONE_MS, parse_datetime
from jicoo_sandbox.store import BookingPatch, SandboxError, SandboxStore, valid_zone
from jicoo_sandbox.webhooks import API_EVENTS, ChurnRunner, WebhookSender

__all__ = ["API_KEY_HEADER", "DEFAULT_PER_PAGE", "MAX_PER_PAGE", "create_app", "parse_instant"]

API_KEY_HEADER: Final = "x-jicoo-api-key"
DEFAULT_PER_PAGE: Final = 20
MAX_PER_PAGE: Final = 100
# The API documents a 7-day limit for available_schedules (seen in public client code).
MAX_SLOT_WINDOW: Final = dt.timedelta(days=7)
MAX_UPDATE_MESSAGE: Final = 2000
MAX_CANCEL_REASON: Final = 2000
JSON: Final = "application/json"
NOT_FOUND: Final = 404
# nginx's "client closed request": logged only, never sent (the client is gone).
CLIENT_CLOSED_REQUEST: Final = 499
DIGITS: Final = re.compile(r"[0-9]+")
PRIORITY_VALUES: Final = ("low", "middle", "high")
HOST_ROLES: Final = ("admin", "editor", "viewer")
PATCH_FIELDS: Final = frozenset(
    {
        "name",
        "description",
        "timeZone",
        "startedAt",
        "endedAt",
        "hosts",
        "priority",
        "updateMessage",
        "isSendUpdates",
    }
)
EMPTY_ERRORS: Final = b'"errors":{}'

Endpoint = Callable[[Request], Awaitable[Response]]


def parse_instant(value: str) -> int | None:
    """Epoch ms of an ISO 8601 date-time with ``Z`` or an offset (millis optional), else None."""
    if "T" not in value and "t" not in value:
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return (parsed - EPOCH) // ONE_MS


def _json(status: int, payload: object) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON)


def _error(exc: SandboxError) -> Response:
    body = {
        "data": None,
        "errors": {"code": exc.code, "message": exc.message, "fields": exc.fields},
    }
    return _json(exc.status, body)


def _data(payload: object) -> Response:
    return _json(200, {"data": payload, "errors": {}})


def _data_only(payload: object) -> Response:
    """The portal's Reschedule (and Update Event Type Host) 200 example: ``{data}`` without
    ``errors``, which the contract therefore makes optional on success bodies."""
    return _json(200, {"data": payload})


def _raw_data(raw: bytes) -> Response:
    return Response(b'{"data":' + raw + b"," + EMPTY_ERRORS + b"}", media_type=JSON)


def _page(items: list[bytes], total: int, page: int, per_page: int) -> Response:
    """List envelope; ``nextPage`` is absent on the last page (and past it)."""
    pages = page_count(total, per_page)
    tail = b',"totalCount":%d,"count":%d,"currentPage":%d' % (total, len(items), page)
    if page < pages:
        tail += b',"nextPage":%d' % (page + 1)
    tail += b',"numberOfPages":%d}' % pages
    return Response(b'{"data":[' + b",".join(items) + b"]," + EMPTY_ERRORS + tail, media_type=JSON)


class _Fields:
    """Collects per-field validation messages, then raises one 422."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def raise_if_any(self) -> None:
        if self.errors:
            names = ", ".join(sorted(self.errors))
            raise SandboxError(
                422, "invalid_parameter", f"invalid parameter(s): {names}", self.errors
            )

    def integer(
        self, params: Mapping[str, str], name: str, default: int, lo: int, hi: int | None
    ) -> int:
        raw = params.get(name)
        if raw is None:
            return default
        if not DIGITS.fullmatch(raw):
            self.add(name, f"must be an integer, got {raw!r}")
            return default
        value = int(raw)
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
            self.add(name, f"must be {bound}, got {value}")
        return value

    def choice(self, params: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str | None:
        raw = params.get(name)
        if raw is not None and raw not in choices:
            self.add(name, f"must be one of {', '.join(choices)}; got {raw!r}")
            return None
        return raw

    def instant(
        self, params: Mapping[str, str], name: str, *, required: bool = False
    ) -> int | None:
        raw = params.get(name)
        if raw is None:
            if required:
                self.add(name, "is required")
            return None
        # An unencoded '+' of an offset arrives as a space in a query string.
        value = parse_instant(raw.replace(" ", "+"))
        if value is None:
            self.add(name, f"must be an ISO 8601 date-time with a time zone, got {raw!r}")
        return value


def _paging(params: Mapping[str, str], fields: _Fields) -> tuple[int, int]:
    page = fields.integer(params, "page", 1, 1, None)
    per_page = fields.integer(params, "perPage", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
    return page, per_page


def _list_page(items: list[dict[str, object]], params: Mapping[str, str]) -> Response:
    fields = _Fields()
    page, per_page = _paging(params, fields)
    fields.raise_if_any()
    offset = (page - 1) * per_page
    chunk = [orjson.dumps(item) for item in items[offset : offset + per_page]]
    return _page(chunk, len(items), page, per_page)


def _parse_body(raw: bytes) -> tuple[object, object, bool]:
    """(parsed body or None, what the journal keeps, whether it parsed)."""
    if not raw.strip():
        return None, None, True
    try:
        parsed: object = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, raw.decode("utf-8", "replace"), False
    return parsed, parsed, True


class _Api:
    """The endpoints; each is wrapped with auth, the 403 gate and error rendering."""

    def __init__(
        self, store: SandboxStore, config: SandboxConfig, sender: WebhookSender | None
    ) -> None:
        self.store = store
        self.sender = sender
        self.keys = config.valid_keys()
        self.denied = config.denied
        self.auth_failure_status = config.auth_failure_status

    def _guard(self, request: Request, operation: str) -> None:
        key = request.headers.get(API_KEY_HEADER)
        if key is None or key not in self.keys:
            # Bearer auth is not documented by the portal: refused like a missing key, with 403
            # as the real API did (or 401, SandboxConfig.auth_failure_status).
            raise SandboxError(
                self.auth_failure_status,
                "unauthorized",
                "a valid X-Jicoo-Api-Key header is required",
            )
        if operation in self.denied.get(key, frozenset()):
            raise SandboxError(403, "forbidden", f"this API key may not call {operation}")

    def read(self, operation: str, handler: Endpoint) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                self._guard(request, operation)
                return await handler(request)
            except SandboxError as exc:
                return _error(exc)

        return endpoint

    def write(
        self, operation: str, handler: Callable[[Request, object], tuple[Response, bool]]
    ) -> Endpoint:
        """A mutating endpoint: every outcome, refusals included, goes to the journal."""

        async def endpoint(request: Request) -> Response:
            try:
                raw = await request.body()
            except ClientDisconnect:
                # The client died mid-request (crash tests kill appliers): nothing arrived, so
                # nothing is applied or journaled, and nobody is left to answer.
                return Response(status_code=CLIENT_CLOSED_REQUEST)
            body, journal_body, parsed = _parse_body(raw)
            changed = False
            try:
                self._guard(request, operation)
                if not parsed:
                    raise SandboxError(422, "invalid_body", "the request body is not valid JSON")
                response, changed = handler(request, body)
            except SandboxError as exc:
                response = _error(exc)
            self.store.record(
                method=request.method,
                path=request.url.path,
                booking_uid=request.path_params.get("uid"),
                body=journal_body,
                status=response.status_code,
                changed=changed,
                fault=request.scope.get("extensions", {}).get(FAULT_EXTENSION),
            )
            if changed and self.sender is not None:
                self._notify(operation, request.path_params["uid"], body)
            return response

        return endpoint

    def _notify(self, operation: str, uid: str, body: object) -> None:
        event = API_EVENTS.get(operation)
        # A PATCH is a reschedule only when it moves the booking; other fields send nothing.
        moved = isinstance(body, dict) and ("startedAt" in body or "endedAt" in body)
        if self.sender is not None and event and (operation != "updateBooking" or moved):
            self.sender.emit(event, uid)

    # -- bookings --

    async def list_bookings(self, request: Request) -> Response:
        params = request.query_params
        fields = _Fields()
        page, per_page = _paging(params, fields)
        status = fields.choice(params, "status", ("open", "cancel"))
        started = fields.instant(params, "startedAt")
        ended = fields.instant(params, "endedAt")
        sort = fields.choice(params, "sort", ("asc", "desc"))
        order = fields.choice(params, "order", ("startedAt", "createdAt"))
        fields.raise_if_any()
        query = BookingQuery(status, started, ended, sort == "desc", order or "startedAt")
        total, items = self.store.list_bookings(query, offset=(page - 1) * per_page, limit=per_page)
        return _page(items, total, page, per_page)

    async def get_booking(self, request: Request) -> Response:
        raw = self.store.booking_json(request.path_params["uid"])
        if raw is None:
            raise SandboxError(404, "not_found", "Record Not Found")
        return _raw_data(raw)

    async def get_contacts(self, request: Request) -> Response:
        contacts = self.store.contacts(request.path_params["uid"])
        if contacts is None:
            raise SandboxError(404, "not_found", "Record Not Found")
        return _data(contacts)

    def cancel(self, request: Request, body: object) -> tuple[Response, bool]:
        uid = request.path_params["uid"]
        self.store.require_booking(uid)
        reason: str | None = None
        if body is not None:
            if not isinstance(body, dict):
                raise SandboxError(422, "invalid_body", "the body must be a JSON object")
            value = body.get("cancelReason")
            if value is not None and (not isinstance(value, str) or len(value) > MAX_CANCEL_REASON):
                raise SandboxError(
                    422,
                    "invalid_parameter",
                    "cancelReason must be a string of at most 2000 characters",
                    {"cancelReason": ["must be a string of at most 2000 characters"]},
                )
            reason = value
        return _data(self.store.cancel(uid, reason)), True

    def reschedule(self, request: Request, body: object) -> tuple[Response, bool]:
        uid = request.path_params["uid"]
        self.store.require_booking(uid)
        if not isinstance(body, dict):
            raise SandboxError(
                422, "invalid_body", "the body must be a JSON object with timeZone and startedAt"
            )
        fields = _Fields()
        zone = body.get("timeZone")
        if zone is None:
            fields.add("timeZone", "is required")
        elif not isinstance(zone, str) or not valid_zone(zone):
            fields.add("timeZone", f"must be an IANA time zone name, got {zone!r}")
        raw_start = body.get("startedAt")
        start: int | None = None
        if raw_start is None:
            fields.add("startedAt", "is required")
        elif not isinstance(raw_start, str) or (start := parse_instant(raw_start)) is None:
            fields.add(
                "startedAt", f"must be an ISO 8601 date-time with a time zone, got {raw_start!r}"
            )
        fields.raise_if_any()
        if start is None or not isinstance(zone, str):
            raise AssertionError("validated above")
        return _data_only(self.store.reschedule(uid, start, zone)), True

    def update(self, request: Request, body: object) -> tuple[Response, bool]:
        uid = request.path_params["uid"]
        self.store.require_booking(uid)
        if not isinstance(body, dict):
            raise SandboxError(422, "invalid_body", "the body must be a JSON object")
        patch = _patch(body)
        booking, changed = self.store.update(uid, patch)
        return _data(booking), changed

    # -- the rest --

    async def list_schedules(self, request: Request) -> Response:
        fields = _Fields()
        page, per_page = _paging(request.query_params, fields)
        fields.raise_if_any()
        items = self.store.schedules((page - 1) * per_page, per_page)
        total = self.store.schedule_total()
        return _page([orjson.dumps(item) for item in items], total, page, per_page)

    async def list_calendars(self, request: Request) -> Response:
        user_id = request.query_params.get("userId")
        if not user_id:
            # 400, not 422: the portal's Errors page says 400 means a missing required parameter.
            raise SandboxError(
                400, "missing_parameter", "userId is required", {"userId": ["is required"]}
            )
        return _list_page(self.store.calendars(user_id), request.query_params)

    async def get_calendar(self, request: Request) -> Response:
        return _data(_found(self.store.calendar(request.path_params["uid"])))

    async def list_users(self, request: Request) -> Response:
        return _list_page(self.store.users(), request.query_params)

    async def get_user(self, request: Request) -> Response:
        return _data(_found(self.store.user(request.path_params["userId"])))

    async def list_event_types(self, request: Request) -> Response:
        return _list_page(self.store.event_types(), request.query_params)

    async def get_event_type(self, request: Request) -> Response:
        return _data(_found(self.store.event_type(request.path_params["uid"])))

    async def available_schedules(self, request: Request) -> Response:
        params = request.query_params
        uid = request.path_params["uid"]
        fields = _Fields()
        start = fields.instant(params, "periodStart", required=True)
        end = fields.instant(params, "periodEnd", required=True)
        if start is not None and end is not None:
            if end <= start:
                fields.add("periodEnd", "must be after periodStart")
            elif end - start > MAX_SLOT_WINDOW // ONE_MS:
                fields.add("periodEnd", "must be at most 7 days after periodStart")
        fields.raise_if_any()
        if start is None or end is None:
            raise AssertionError("validated above")
        return _data(_found(self.store.available_slots(uid, start, end)))

    async def list_hosts(self, request: Request) -> Response:
        event_type_id = request.query_params.get("eventTypeId")
        if not event_type_id:
            # The spec lists 422 (not 400) for this operation.
            raise SandboxError(
                422,
                "invalid_parameter",
                "eventTypeId is required",
                {"eventTypeId": ["is required"]},
            )
        return _list_page(self.store.event_type_hosts(event_type_id), request.query_params)

    # -- sandbox control (no auth: loopback test hook) --

    async def reset(self, request: Request) -> Response:
        self.store.reset()
        return _data(None)

    async def journal(self, request: Request) -> Response:
        fields = _Fields()
        since = fields.integer(request.query_params, "since", 0, 0, None)
        fields.raise_if_any()
        entries = self.store.journal(since)
        return _json(200, {"data": entries, "errors": {}, "count": len(entries)})


def _found(value: object) -> object:
    if value is None:
        raise SandboxError(404, "not_found", "Record Not Found")
    return value


def _patch(body: Mapping[str, object]) -> BookingPatch:
    """Type-check a PATCH body; unknown keys are refused so a typo cannot pass silently."""
    fields = _Fields()
    for key in sorted(set(body) - PATCH_FIELDS):
        fields.add(key, "is not an updatable field")
    values: dict[str, object] = {}
    name = body.get("name")
    if "name" in body and (not isinstance(name, str) or not name.strip()):
        fields.add("name", "must be a non-empty string")
    description = body.get("description")
    if "description" in body and description is not None and not isinstance(description, str):
        fields.add("description", "must be a string or null")
    zone = body.get("timeZone")
    if "timeZone" in body and (not isinstance(zone, str) or not valid_zone(zone)):
        fields.add("timeZone", f"must be an IANA time zone name, got {zone!r}")
    for key, attr in (("startedAt", "start"), ("endedAt", "end")):
        if key in body:
            raw = body[key]
            instant = parse_instant(raw) if isinstance(raw, str) else None
            if instant is None:
                fields.add(key, f"must be an ISO 8601 date-time with a time zone, got {raw!r}")
            else:
                values[attr] = instant
    hosts: list[tuple[str, str]] = []
    if "hosts" in body:
        raw_hosts = body["hosts"]
        if not isinstance(raw_hosts, list) or not raw_hosts:
            fields.add("hosts", "must be a non-empty list of {userId, role}")
        else:
            for host in raw_hosts:
                user_id = host.get("userId") if isinstance(host, dict) else None
                role = host.get("role") if isinstance(host, dict) else None
                if not isinstance(user_id, str) or role not in HOST_ROLES:
                    fields.add("hosts", f"each host needs a userId and a role in {HOST_ROLES}")
                    break
                hosts.append((user_id, str(role)))
    priority = body.get("priority")
    if "priority" in body and priority not in PRIORITY_VALUES:
        fields.add("priority", f"must be one of {', '.join(PRIORITY_VALUES)}")
    message = body.get("updateMessage")
    if "updateMessage" in body and (
        not isinstance(message, str) or len(message) > MAX_UPDATE_MESSAGE
    ):
        fields.add("updateMessage", "must be a string of at most 2000 characters")
    if "isSendUpdates" in body and not isinstance(body["isSendUpdates"], bool):
        fields.add("isSendUpdates", "must be a boolean")
    fields.raise_if_any()
    start = values.get("start", 0)
    end = values.get("end", 0)
    return BookingPatch(
        sent=frozenset(body),
        name=name if isinstance(name, str) else "",
        description=description if isinstance(description, str) else None,
        time_zone=zone if isinstance(zone, str) else "",
        start=start if isinstance(start, int) else 0,
        end=end if isinstance(end, int) else 0,
        hosts=tuple(hosts),
        priority=priority if isinstance(priority, str) else None,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown routes and wrong methods answer in the API's error shape."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == NOT_FOUND:
        return _error(SandboxError(404, "not_found", "Record Not Found"))
    return _error(SandboxError(status, "http_error", f"{request.method} is not allowed here"))


def create_app(config: SandboxConfig) -> Starlette:
    """The sandbox ASGI app; ``app.state.store`` is its ``SandboxStore``, ``app.state.webhooks``
    its ``WebhookSender`` (or None) and ``app.state.churn`` its ``ChurnRunner`` (or None)."""
    store = SandboxStore(config)
    sender = None if config.webhooks is None else WebhookSender(config.webhooks, store)
    app = Starlette(
        routes=_routes(_Api(store, config, sender)),
        middleware=[Middleware(FaultControl, store=store, config=config)],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.store = store
    app.state.webhooks = sender
    app.state.churn = (
        ChurnRunner(store, sender, config.churn_rate, limit=config.churn_limit, seed=config.seed)
        if config.churn_rate > 0
        else None
    )
    return app


def _routes(api: _Api) -> list[Route]:
    """The API's paths with their operationIds (openapi.yaml), then the control endpoints."""
    read, write = api.read, api.write
    return [
        Route("/v1/bookings", read("listBookings", api.list_bookings), methods=["GET"]),
        Route("/v1/bookings/{uid}", read("getBooking", api.get_booking), methods=["GET"]),
        Route("/v1/bookings/{uid}", write("updateBooking", api.update), methods=["PATCH"]),
        Route(
            "/v1/bookings/{uid}/contacts",
            read("getBookingContacts", api.get_contacts),
            methods=["GET"],
        ),
        Route("/v1/bookings/{uid}/cancel", write("cancelBooking", api.cancel), methods=["POST"]),
        Route(
            "/v1/bookings/{uid}/reschedule",
            write("rescheduleBooking", api.reschedule),
            methods=["POST"],
        ),
        Route("/v1/schedules", read("listSchedules", api.list_schedules), methods=["GET"]),
        Route(
            "/v1/user_availability_calendars",
            read("listUserAvailabilityCalendars", api.list_calendars),
            methods=["GET"],
        ),
        Route(
            "/v1/user_availability_calendars/{uid}",
            read("getUserAvailabilityCalendar", api.get_calendar),
            methods=["GET"],
        ),
        Route(
            "/v1/organization_users",
            read("listOrganizationUsers", api.list_users),
            methods=["GET"],
        ),
        Route(
            "/v1/organization_users/{userId}",
            read("getOrganizationUser", api.get_user),
            methods=["GET"],
        ),
        Route("/v1/event_types", read("listEventTypes", api.list_event_types), methods=["GET"]),
        Route("/v1/event_types/{uid}", read("getEventType", api.get_event_type), methods=["GET"]),
        Route(
            "/v1/event_types/{uid}/available_schedules",
            read("getEventTypeAvailableSchedules", api.available_schedules),
            methods=["GET"],
        ),
        Route("/v1/event_type_hosts", read("listEventTypeHosts", api.list_hosts), methods=["GET"]),
        Route("/_sandbox/reset", api.reset, methods=["POST"]),
        Route("/_sandbox/journal", api.journal, methods=["GET"]),
    ]
