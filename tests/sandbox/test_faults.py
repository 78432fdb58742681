"""Every fault kind, observed over real HTTP with httpx; profile validation without a server."""

import asyncio
import datetime as dt
import email.utils
import gzip
import json
import socket
import time
from collections.abc import Mapping

import httpx
import orjson
import pytest

from jicoo_sandbox.config import Clock, SandboxConfig
from jicoo_sandbox.faults.profile import FAULT_KINDS, FaultProfile, FaultProfileError
from jicoo_sandbox.faults.responses import DEEP_NESTING_DEPTH
from jicoo_sandbox.server import SandboxServer

BOOKINGS = "/v1/bookings"
TIMEOUT_S = 10.0
HUNG_UP_BOOKINGS = 200
HUNG_UP_READ_BYTES = 64
HUNG_UP_LINGER_S = 0.3
HUNG_UP_STOP_S = 2.0
BUCKET_MAX_TRIES = 40
PACED_REQUESTS = 8
PACE_MARGIN = 1.1  # a little over one token's refill between a client's requests


def statuses(client: httpx.Client, n: int, path: str = BOOKINGS) -> list[int]:
    return [client.get(path).status_code for _ in range(n)]


def counters(client: httpx.Client) -> Mapping[str, object]:
    state: Mapping[str, object] = client.get("/_sandbox/faults").json()["data"]["counters"]
    return state


def open_booking_uid(sandbox: SandboxServer, client: httpx.Client) -> str:
    """A booking that can be cancelled now (open and in the future)."""
    now = sandbox.config.clock().strftime("%Y-%m-%dT%H:%M:%S.000Z")
    page = client.get(BOOKINGS, params={"status": "open", "startedAt": now, "perPage": 1})
    assert page.status_code == 200, page.text
    uid: str = page.json()["data"][0]["uid"]
    return uid


# --- triggers ---------------------------------------------------------------------------------


def test_every_fires_on_every_nth_matching_request(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    sandbox.set_faults({"rules": [{"kind": "status", "status": 503, "every": 3}]})
    assert statuses(client, 9) == [200, 200, 503] * 3


def test_burst_after_and_times_bound_the_firings(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    sandbox.set_faults(
        {
            "rules": [
                {"kind": "status", "status": 500, "after": 1, "burst": 2},
                {"kind": "status", "status": 502, "times": 1},
            ]
        }
    )
    # Rule 1 skips one match, then fires twice; rule 2 catches what rule 1 let through, once.
    assert statuses(client, 5) == [502, 500, 500, 200, 200]
    assert counters(client)["fired"] == {"status": 3}


def test_methods_and_path_narrow_what_a_rule_matches(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    sandbox.set_faults({"rules": [{"kind": "status", "methods": ["GET"], "path": "^/v1/users$"}]})
    assert client.get(BOOKINGS).status_code == 200
    sandbox.set_faults({"rules": [{"kind": "status", "methods": ["POST"], "path": "^/v1/book"}]})
    assert client.get(BOOKINGS).status_code == 200
    sandbox.set_faults({"rules": [{"kind": "status", "methods": ["get"], "path": "^/v1/book"}]})
    assert client.get(BOOKINGS).status_code == 503


def test_probability_is_seeded_so_runs_repeat(sandbox: SandboxServer, client: httpx.Client) -> None:
    profile = {"seed": 11, "rules": [{"kind": "status", "probability": 0.5}]}
    sandbox.set_faults(profile)
    first = statuses(client, 40)
    sandbox.set_faults(profile)
    assert statuses(client, 40) == first
    assert 5 < first.count(503) < 35
    sandbox.set_faults({**profile, "seed": 12})
    assert statuses(client, 40) != first


# --- kinds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (402, "request_failed"),
        (500, "internal_error"),
        (502, "bad_gateway"),
        (503, "service_unavailable"),
        (504, "gateway_timeout"),
    ],
)
def test_status_answers_with_the_error_envelope(
    sandbox: SandboxServer, client: httpx.Client, status: int, code: str
) -> None:
    sandbox.set_faults({"rules": [{"kind": "status", "status": status}]})
    response = client.get(BOOKINGS)
    assert response.status_code == status
    body = response.json()
    assert body["data"] is None
    assert body["errors"]["code"] == code
    assert body["errors"]["fields"] == {}


def test_injected_failure_on_a_post_is_journaled_as_not_applied(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    uid = open_booking_uid(sandbox, client)
    sandbox.set_faults({"rules": [{"kind": "status", "status": 500, "methods": ["POST"]}]})
    response = client.post(f"{BOOKINGS}/{uid}/cancel", json={"cancelReason": "test"})
    assert response.status_code == 500
    entries = [e for e in sandbox.store.journal() if e.booking_uid == uid]
    assert [(e.method, e.status, e.changed, e.fault) for e in entries] == [
        ("POST", 500, False, "status")
    ]
    assert client.get(f"{BOOKINGS}/{uid}").json()["data"]["status"] == "open"


def test_rate_limited_burst_carries_integer_retry_after(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    sandbox.set_faults({"rules": [{"kind": "rate_limited", "retry_after": 2.5, "burst": 2}]})
    first, second, third = (client.get(BOOKINGS) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (429, 429, 200)
    assert first.headers["retry-after"] == "3"
    assert first.json()["errors"]["code"] == "rate_limited"


def test_rate_limited_can_send_an_http_date_or_no_header(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    sandbox.set_faults(
        {"rules": [{"kind": "rate_limited", "retry_after": 30, "retry_after_format": "http_date"}]}
    )
    response = client.get(BOOKINGS)
    when = email.utils.parsedate_to_datetime(response.headers["retry-after"])
    wait = (when - dt.datetime.now(dt.UTC)).total_seconds()
    assert response.status_code == 429
    assert 25 < wait <= 31
    sandbox.set_faults({"rules": [{"kind": "rate_limited", "retry_after_format": "none"}]})
    response = client.get(BOOKINGS)
    assert response.status_code == 429
    assert "retry-after" not in response.headers


def test_token_bucket_lets_the_burst_through_then_refuses(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    # A token a second: the refill the requests below can meet is bounded by their own time.
    rps, burst = 1, 5
    sandbox.set_faults({"rate_limit": {"rps": rps, "burst": burst}})
    started = time.monotonic()
    passed = 0
    while (limited := client.get(BOOKINGS)).status_code == 200 and passed < BUCKET_MAX_TRIES:
        passed += 1
    elapsed = time.monotonic() - started
    assert limited.status_code == 429
    assert burst <= passed <= burst + rps * elapsed
    assert limited.headers["retry-after"] == "1"  # ceil of under a second, and never 0
    assert limited.json()["errors"]["code"] == "rate_limited"


def test_token_bucket_never_passes_more_than_the_burst_and_the_rate(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    rps, burst = 20, 5
    sandbox.set_faults({"rate_limit": {"rps": rps, "burst": burst}})
    started = time.monotonic()
    answers = statuses(client, BUCKET_MAX_TRIES)
    elapsed = time.monotonic() - started
    # Every request arrived after ``started`` and was answered before the clock read again.
    assert answers.count(200) <= burst + rps * elapsed
    assert set(answers) <= {200, 429}


def test_token_bucket_never_refuses_a_client_that_keeps_to_the_rate(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    rps = 20
    sandbox.set_faults({"rate_limit": {"rps": rps, "burst": 1}})
    answers = []
    for _ in range(PACED_REQUESTS):
        answers.append(client.get(BOOKINGS).status_code)
        # Measured from the answer, so two arrivals are at least this far apart on any load.
        time.sleep(PACE_MARGIN / rps)
    assert answers == [200] * PACED_REQUESTS


def test_token_bucket_is_per_key(sandbox: SandboxServer, client: httpx.Client) -> None:
    sandbox.set_faults({"rate_limit": {"rps": 0.1, "burst": 1}})
    assert statuses(client, 2) == [200, 429]
    other = client.get(BOOKINGS, headers={"X-Jicoo-Api-Key": "sk_test_limited"})
    assert other.status_code == 200


def test_reset_aborts_the_connection(sandbox: SandboxServer, client: httpx.Client) -> None:
    sandbox.set_faults({"rules": [{"kind": "reset", "times": 1}]})
    # SO_LINGER 0 makes it a real RST (ECONNRESET), not the orderly close of drop_after_apply.
    with pytest.raises(httpx.ReadError, match="reset"):
        client.get(BOOKINGS)
    assert client.get(BOOKINGS).status_code == 200


def test_truncate_sends_half_the_declared_body(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    sandbox.set_faults({"rules": [{"kind": "truncate", "times": 1}]})
    with pytest.raises(httpx.RemoteProtocolError, match="without sending complete message body"):
        client.get(BOOKINGS)
    assert client.get(BOOKINGS).status_code == 200


def test_trickle_beats_a_read_timeout_but_not_a_deadline(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    full = client.get(BOOKINGS, params={"perPage": 5}).content
    chunk, interval_ms = len(full) // 6 + 1, 60
    sandbox.set_faults(
        {"rules": [{"kind": "trickle", "chunk_bytes": chunk, "interval_ms": interval_ms}]}
    )
    started = time.monotonic()
    # Each read waits at most one interval, far below this read timeout.
    response = client.get(BOOKINGS, params={"perPage": 5}, timeout=httpx.Timeout(5, read=0.5))
    elapsed = time.monotonic() - started
    assert response.content == full
    assert elapsed >= 5 * interval_ms / 1000


def test_a_hung_up_trickle_stops_and_lets_the_server_stop_promptly(clock: Clock) -> None:
    # ~60 s to trickle a page: only a trickle that notices the hang-up lets stop() finish fast.
    rule = {"kind": "trickle", "chunk_bytes": 16, "interval_ms": 100}
    config = SandboxConfig(bookings=HUNG_UP_BOOKINGS, faults={"rules": [rule]}, clock=clock)
    server = SandboxServer(config)
    server.start()
    try:
        host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=TIMEOUT_S) as conn:
            conn.sendall(
                f"GET {BOOKINGS}?perPage=100 HTTP/1.1\r\nHost: {host}\r\n"
                f"X-Jicoo-Api-Key: {server.api_key}\r\n\r\n".encode()
            )
            assert conn.recv(HUNG_UP_READ_BYTES).startswith(b"HTTP/1.1 200")
        time.sleep(HUNG_UP_LINGER_S)  # a few more intervals: the sandbox must see the hang-up
    finally:
        started = time.monotonic()
        server.stop()
    assert time.monotonic() - started < HUNG_UP_STOP_S


def test_redirect_points_to_the_other_origin_keeping_the_path(
    sandbox: SandboxServer, client: httpx.Client, capture_server: object
) -> None:
    origin: str = capture_server.base_url  # type: ignore[attr-defined]
    sandbox.set_faults({"rules": [{"kind": "redirect", "location": origin, "status": 302}]})
    response = client.get(BOOKINGS, params={"page": 2})
    assert response.status_code == 302
    assert response.headers["location"] == f"{origin}{BOOKINGS}?page=2"
    # A client that follows blindly hands the key to the other origin: what the client must avoid.
    client.get(BOOKINGS, follow_redirects=True)
    assert capture_server.requests[-1]["x-jicoo-api-key"] == sandbox.api_key  # type: ignore[attr-defined]


def test_malformed_json_is_a_200_no_parser_accepts(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    sandbox.set_faults({"rules": [{"kind": "malformed_json"}]})
    response = client.get(BOOKINGS)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_hostile_deep_nesting(sandbox: SandboxServer, client: httpx.Client) -> None:
    sandbox.set_faults({"rules": [{"kind": "hostile_json", "variant": "deep_nesting"}]})
    content = client.get(BOOKINGS).content
    assert content.count(b"[") == DEEP_NESTING_DEPTH
    with pytest.raises(RecursionError):
        json.loads(content)


def test_hostile_huge_number(sandbox: SandboxServer, client: httpx.Client) -> None:
    sandbox.set_faults({"rules": [{"kind": "hostile_json", "variant": "huge_number"}]})
    content = client.get(BOOKINGS).content
    with pytest.raises(ValueError, match="digits"):
        json.loads(content)  # CPython refuses ints above 4,300 digits


def test_hostile_nan(sandbox: SandboxServer, client: httpx.Client) -> None:
    sandbox.set_faults({"rules": [{"kind": "hostile_json", "variant": "nan"}]})
    content = client.get(BOOKINGS).content
    assert json.loads(content)["totalCount"] == float("inf")  # the lenient parser swallows it
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(content)


def test_hostile_invalid_surrogate(sandbox: SandboxServer, client: httpx.Client) -> None:
    sandbox.set_faults({"rules": [{"kind": "hostile_json", "variant": "invalid_surrogate"}]})
    content = client.get(BOOKINGS).content
    name = json.loads(content)["data"][0]["name"]
    with pytest.raises(UnicodeEncodeError):
        name.encode("utf-8")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(content)


def test_hostile_huge_body_is_bigger_than_asked(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    size = 3_000_000
    sandbox.set_faults(
        {"rules": [{"kind": "hostile_json", "variant": "huge_body", "size_bytes": size}]}
    )
    response = client.get(BOOKINGS)
    assert int(response.headers["content-length"]) == len(response.content) > size
    assert len(json.loads(response.content)["data"]) > 1


def test_hostile_huge_body_gzip_is_a_decompression_bomb(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    size = 20_000_000
    sandbox.set_faults(
        {
            "rules": [
                {"kind": "hostile_json", "variant": "huge_body", "size_bytes": size, "gzip": True}
            ]
        }
    )
    with client.stream("GET", BOOKINGS) as response:
        wire = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert len(wire) < size // 100
    assert len(gzip.decompress(wire)) > size


def test_drop_after_apply_applies_but_never_answers(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    uid = open_booking_uid(sandbox, client)
    sandbox.set_faults({"rules": [{"kind": "drop_after_apply", "path": "/cancel$", "times": 1}]})
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        client.post(f"{BOOKINGS}/{uid}/cancel", json={"cancelReason": "dropped"})
    assert client.get(f"{BOOKINGS}/{uid}").json()["data"]["status"] == "cancel"
    entries = [e for e in sandbox.store.journal() if e.booking_uid == uid]
    assert [(e.changed, e.fault) for e in entries] == [(True, "drop_after_apply")]


def test_drift_changes_what_later_pages_return(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    params = {"perPage": 100}
    before = client.get(BOOKINGS, params={**params, "page": 2}).json()
    sandbox.set_faults({"rules": [{"kind": "drift", "after": 1, "burst": 1, "delete": 150}]})
    page1 = client.get(BOOKINGS, params={**params, "page": 1}).json()
    assert page1["totalCount"] == before["totalCount"]  # the first match is skipped
    page2 = client.get(BOOKINGS, params={**params, "page": 2}).json()
    # page 2 was answered, then 150 bookings went: page 3 onwards sees the shift
    page2_again = client.get(BOOKINGS, params={**params, "page": 2}).json()
    assert page2["totalCount"] == before["totalCount"]
    assert page2_again["totalCount"] == before["totalCount"] - 150
    assert [b["uid"] for b in page2_again["data"]] != [b["uid"] for b in before["data"]]
    assert counters(client)["fired"] == {"drift": 1}


def test_drift_leaves_other_paths_alone(sandbox: SandboxServer, client: httpx.Client) -> None:
    total = client.get(BOOKINGS).json()["totalCount"]
    sandbox.set_faults({"rules": [{"kind": "drift", "insert": 10}]})
    client.get("/v1/event_types")
    assert client.get(BOOKINGS).json()["totalCount"] == total  # this GET fires after answering
    assert client.get(BOOKINGS).json()["totalCount"] == total + 10


# --- latency, control endpoints, request log --------------------------------------------------


def test_latency_delays_without_blocking_the_loop(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    # One at a time would take parallel x latency; the latency is long beside the requests'
    # own time, which a loaded machine stretches (0.85 s for six listings at load 14).
    latency_s, parallel = 1.0, 6
    sandbox.set_faults({"latency_ms": latency_s * 1000})

    async def burst() -> list[int]:
        async with httpx.AsyncClient(
            base_url=sandbox.base_url, headers={"X-Jicoo-Api-Key": sandbox.api_key}
        ) as http:
            pages = (http.get(BOOKINGS, params={"perPage": 1}) for _ in range(parallel))
            responses = await asyncio.gather(*pages)
        return [r.status_code for r in responses]

    started = time.monotonic()
    assert asyncio.run(burst()) == [200] * parallel
    elapsed = time.monotonic() - started
    assert latency_s <= elapsed < latency_s * parallel / 2


def test_sandbox_paths_are_never_faulted(sandbox: SandboxServer, client: httpx.Client) -> None:
    sandbox.set_faults(
        {"latency_ms": 500, "rate_limit": {"rps": 0.1, "burst": 1}, "rules": [{"kind": "reset"}]}
    )
    started = time.monotonic()
    for _ in range(5):
        assert client.get("/_sandbox/faults").status_code == 200
        assert client.get("/_sandbox/requests").status_code == 200
    assert time.monotonic() - started < 1.0
    assert counters(client)["fired"] == {}


def test_control_endpoint_shows_profile_and_replaces_it(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    profile = {
        "latency_ms": 1,
        "rate_limit": {"rps": 100, "burst": 10},
        "rules": [{"kind": "status", "status": 502, "every": 2, "methods": ["GET"]}],
    }
    assert client.post("/_sandbox/faults", json=profile).status_code == 200
    statuses(client, 2)
    state = client.get("/_sandbox/faults").json()["data"]
    assert state["profile"] == FaultProfile.from_mapping(profile).to_mapping()
    assert state["counters"]["fired"] == {"status": 1}
    assert state["counters"]["rules"] == [{"kind": "status", "matched": 2, "fired": 1}]
    assert client.post("/_sandbox/faults", json={}).status_code == 200
    assert client.get("/_sandbox/faults").json()["data"]["profile"] == {}
    assert statuses(client, 15) == [200] * 15


def test_control_endpoint_refuses_a_bad_profile_and_keeps_the_old(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    sandbox.set_faults({"rules": [{"kind": "status"}]})
    response = client.post("/_sandbox/faults", json={"rules": [{"kind": "status", "every": 0}]})
    assert response.status_code == 400
    assert response.json()["errors"]["message"] == "rules[0].every: must be >= 1, got 0"
    assert client.post("/_sandbox/faults", content=b"{not json").status_code == 400
    with pytest.raises(ValueError, match="unknown key"):
        sandbox.set_faults({"latency": 5})
    assert client.get(BOOKINGS).status_code == 503


def test_request_log_records_presence_never_the_key(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    sandbox.clear_requests()
    client.get(BOOKINGS, params={"page": 3})
    httpx.get(f"{sandbox.base_url}{BOOKINGS}")
    other_key = client.get(BOOKINGS, headers={"X-Jicoo-Api-Key": "sk_test_limited"})
    assert other_key.status_code == 200
    raw = client.get("/_sandbox/requests")
    assert sandbox.api_key not in raw.text
    log = raw.json()["data"]
    assert [(e["method"], e["path"], e["query"], e["had_key"]) for e in log] == [
        ("GET", BOOKINGS, "page=3", True),
        ("GET", BOOKINGS, "", False),
        ("GET", BOOKINGS, "", True),
    ]
    assert [e["status"] for e in log] == [200, 403, 200]
    assert log[0]["key_hash"] != log[2]["key_hash"]
    assert log[1]["key_hash"] is None
    assert log[0]["at"] <= log[1]["at"] <= log[2]["at"]
    client.post("/_sandbox/requests/clear")
    assert client.get("/_sandbox/requests").json()["data"] == []


def test_request_log_stamps_each_arrival_so_a_client_wait_shows(
    sandbox: SandboxServer, client: httpx.Client
) -> None:
    """Each entry's ``at`` lies between the moments the client sent the request and read the
    answer (the wall clock, as the log's): a client's wait for Retry-After shows as the gap."""
    sandbox.set_faults({"rules": [{"kind": "rate_limited", "retry_after": 1, "times": 1}]})
    sandbox.clear_requests()
    windows = []
    for _ in range(2):
        sent = time.time()
        response = client.get(BOOKINGS)
        windows.append((sent, time.time(), response.status_code))
    log = sandbox.requests()
    assert [(e["status"], e["fault"]) for e in log] == [(429, "rate_limited"), (200, None)]
    for entry, (sent, answered, status) in zip(log, windows, strict=True):
        assert entry["status"] == status
        assert sent <= float(str(entry["at"])) <= answered


# --- profile validation (no server) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ({"latency": 5}, "profile: unknown key(s) latency"),
        ({"latency_ms": -1}, "latency_ms: must be a finite number >= 0"),
        ({"latency_ms": True}, "latency_ms: expected a number"),
        ({"rate_limit": {"rps": 0}}, "rate_limit.rps: must be > 0"),
        ({"rate_limit": {"burst": 3}}, "rate_limit.rps: required"),
        ({"rate_limit": {"rps": 1, "burst": 0}}, "rate_limit.burst: must be >= 1"),
        ({"rules": {}}, "rules: expected a list"),
        ({"rules": [{}]}, "rules[0].kind: required"),
        ({"rules": [{"kind": "explode"}]}, "rules[0].kind: expected one of"),
        ({"rules": [{"kind": "status", "status": 404}]}, "rules[0].status: must be one of"),
        ({"rules": [{"kind": "status", "every": 2, "burst": 1}]}, "use one of probability"),
        ({"rules": [{"kind": "status", "probability": 1.5}]}, "rules[0].probability: must be in"),
        ({"rules": [{"kind": "status", "path": "("}]}, "rules[0].path: bad regex"),
        ({"rules": [{"kind": "status", "methods": ["FETCH"]}]}, "unknown method(s) FETCH"),
        ({"rules": [{"kind": "reset", "status": 500}]}, "rules[0]: unknown key(s) status"),
        ({"rules": [{"kind": "redirect"}]}, "rules[0].location: required origin"),
        ({"rules": [{"kind": "redirect", "location": "ftp://x"}]}, "rules[0].location"),
        ({"rules": [{"kind": "hostile_json"}]}, "rules[0].variant: required"),
        (
            {"rules": [{"kind": "hostile_json", "variant": "nan", "gzip": True}]},
            "only apply to huge_body",
        ),
        ({"rules": [{"kind": "drift"}]}, "drift needs insert, delete or move"),
        (
            {"rules": [{"kind": "drop_after_apply", "methods": ["GET"]}]},
            "drop_after_apply needs mutating methods",
        ),
        (
            {"rules": [{"kind": "rate_limited", "retry_after_format": "minutes"}]},
            "retry_after_format: expected one of seconds, http_date, none",
        ),
    ],
)
def test_bad_profiles_are_refused_with_the_key_named(
    profile: Mapping[str, object], message: str
) -> None:
    with pytest.raises(FaultProfileError) as caught:
        FaultProfile.from_mapping(profile)
    assert message in str(caught.value)


def test_profile_round_trips_and_defaults_are_explicit() -> None:
    profile = FaultProfile.from_mapping(
        {
            "rules": [
                {"kind": kind}
                | (
                    {"location": "http://127.0.0.1:1"}
                    if kind == "redirect"
                    else {"variant": "huge_body"}
                    if kind == "hostile_json"
                    else {"move": 1}
                    if kind == "drift"
                    else {}
                )
                for kind in FAULT_KINDS
            ]
        }
    )
    assert FaultProfile.from_mapping(profile.to_mapping()) == profile
    by_kind = {rule.kind: rule for rule in profile.rules}
    assert by_kind["status"].status == 503
    assert by_kind["redirect"].status == 307
    assert by_kind["drop_after_apply"].methods == frozenset({"POST", "PATCH"})
    assert by_kind["drift"].path == "^/v1/bookings$"
    assert FaultProfile.from_mapping({}) == FaultProfile()
