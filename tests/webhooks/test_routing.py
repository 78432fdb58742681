"""One receiver for several organizations, over real HTTP: a delivery to `/<name>` is checked
against that organization's secrets only; to any other path it goes to the organization whose
secret signed it; each event lands in its own organization's store, never another's."""

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from jicoo_connector.cli import EXIT_UNUSABLE, main
from jicoo_connector.errors import ConfigError
from jicoo_connector.webhooks import (
    HEALTH_PATH,
    SIGNATURE_HEADER,
    SQLiteEventStore,
    WebhookEndpoint,
    WebhookSecrets,
    create_router,
)
from jicoo_sandbox.webhooks import sign
from tests.support.webhook_receiver import NOW, START_TIMEOUT_S

SECRETS = {"acme": "whsec_acme", "globex": "whsec_globex_new, whsec_globex_old"}
TIMEOUT_S = 10.0


def _body(uid: str) -> bytes:
    event = {"event": "guest_booked", "createdAt": "2026-11-30T01:02:03.456Z"}
    return json.dumps({**event, "object": {"uid": uid, "status": "open"}}).encode()


class Router:
    def __init__(self, root: Path) -> None:
        self.stores = {name: SQLiteEventStore(root / f"{name}.sqlite") for name in SECRETS}
        endpoints = [
            WebhookEndpoint(name, self.stores[name], WebhookSecrets.parse(secrets))
            for name, secrets in SECRETS.items()
        ]
        app = create_router(endpoints, clock=lambda: NOW)
        config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    def post(self, path: str, uid: str, secret: str) -> httpx.Response:
        body = _body(uid)
        headers = {SIGNATURE_HEADER: sign(secret, body, NOW)}
        return httpx.post(f"{self.url}{path}", content=body, headers=headers, timeout=TIMEOUT_S)

    def uids(self, name: str) -> list[str]:
        return [s.event.booking_uid for s in self.stores[name].events_after(0, 100)]

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(START_TIMEOUT_S)
        for store in self.stores.values():
            store.close()


@pytest.fixture
def router(tmp_path: Path) -> Iterator[Router]:
    running = Router(tmp_path)
    yield running
    running.close()


def test_a_delivery_to_an_organizations_path_needs_its_own_secret(router: Router) -> None:
    assert router.post("/acme", "a1", "whsec_acme").json()["endpoint"] == "acme"
    assert router.post("/globex/hooks", "g1", "whsec_globex_old").json()["endpoint"] == "globex"
    # The other organization's secret does not open the path, even though it is valid there.
    assert router.post("/acme", "g2", "whsec_globex_new").status_code == httpx.codes.UNAUTHORIZED
    assert router.uids("acme") == ["a1"]
    assert router.uids("globex") == ["g1"]


def test_a_delivery_elsewhere_goes_to_the_organization_whose_secret_signed_it(
    router: Router,
) -> None:
    assert router.post("/", "a1", "whsec_acme").json()["endpoint"] == "acme"
    assert router.post("/jicoo/webhooks", "g1", "whsec_globex_new").json()["endpoint"] == "globex"
    assert router.post("/", "x1", "whsec_nobody").status_code == httpx.codes.UNAUTHORIZED
    assert router.uids("acme") == ["a1"]
    assert router.uids("globex") == ["g1"]


def test_health_is_ok_only_while_every_organizations_store_answers(
    router: Router, tmp_path: Path
) -> None:
    def health() -> int:
        return httpx.get(router.url + HEALTH_PATH, timeout=TIMEOUT_S).status_code

    assert health() == httpx.codes.OK
    # A POST there is a delivery like any other, routed by its secret.
    assert router.post(HEALTH_PATH, "a1", "whsec_acme").json()["endpoint"] == "acme"
    with sqlite3.connect(tmp_path / "globex.sqlite") as other:
        other.execute("DROP TABLE webhook_events")
    # globex's deliveries could not be recorded now: the receiver is not healthy.
    assert health() == httpx.codes.SERVICE_UNAVAILABLE
    assert router.post("/acme", "a2", "whsec_acme").status_code == httpx.codes.OK


def test_organizations_sharing_a_secret_or_a_name_are_refused(tmp_path: Path) -> None:
    with SQLiteEventStore(tmp_path / "a.sqlite") as a, SQLiteEventStore(tmp_path / "b.sqlite") as b:
        shared = WebhookSecrets.parse("whsec_same")
        with pytest.raises(ConfigError, match="acme and globex share a webhook secret"):
            create_router(
                [WebhookEndpoint("acme", a, shared), WebhookEndpoint("globex", b, shared)]
            )
        with pytest.raises(ConfigError, match="two webhook endpoints are named 'acme'"):
            create_router(
                [
                    WebhookEndpoint("acme", a, WebhookSecrets.parse("whsec_1")),
                    WebhookEndpoint("acme", b, WebhookSecrets.parse("whsec_2")),
                ]
            )
        with pytest.raises(ConfigError, match="is not an organization name"):
            WebhookEndpoint("Acme Corp", a, shared)
    assert "whsec_same" not in repr(shared)


def test_the_cli_names_what_is_missing_for_an_organization(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ACME_JICOO_WEBHOOK_SECRET", raising=False)
    argv = ["webhook", "serve", "--port", "0", "--organization", f"acme={tmp_path / 'a.sqlite'}"]
    assert main(argv) == EXIT_UNUSABLE
    assert "ACME_JICOO_WEBHOOK_SECRET is not set" in capsys.readouterr().err
    monkeypatch.setenv("ACME_JICOO_WEBHOOK_SECRET", "whsec_acme")
    assert main([*argv, "--db", str(tmp_path / "x.sqlite")]) == EXIT_UNUSABLE
    assert "--db is for one organization" in capsys.readouterr().err
    assert main(["webhook", "serve", "--organization", "acme"]) == EXIT_UNUSABLE
    assert "expected NAME=DB" in capsys.readouterr().err
    assert not (tmp_path / "a.sqlite").exists()
