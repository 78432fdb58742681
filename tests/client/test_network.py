"""Company networks on loopback: the sandbox served over TLS with a throwaway CA (trustme), a
real CONNECT proxy (tests/support/proxy.py), and the environment variables that pick them."""

import asyncio
import datetime as dt
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
import uvicorn

from jicoo_connector.cli import build_parser
from jicoo_connector.cli import main as cli_main
from jicoo_connector.client import AsyncJicooClient, RateLimiter
from jicoo_connector.client._network import bypassed, proxy_for
from jicoo_connector.config import ConnectorConfig
from jicoo_connector.errors import ConfigError, JicooError, TransportError
from jicoo_connector.settings import ApiKey, Settings
from jicoo_sandbox.app import create_app
from jicoo_sandbox.config import SandboxConfig
from jicoo_sandbox.server import SandboxServer
from tests.support.proxy import ConnectProxy, connect_proxy
from tests.support.sandbox import SANDBOX_KEY

KEY = "sk_test_network"
ANCHOR = dt.date(2026, 3, 2)
UNTHROTTLED = 10_000.0
START_TIMEOUT_S = 10.0
PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "all_proxy",
    "no_proxy",
    "REQUEST_METHOD",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "JICOO_PROXY_URL",
    "JICOO_CA_BUNDLE",
    "JICOO_TLS_TRUST",
)


class TlsSandbox:
    """The sandbox app under uvicorn with a certificate for ``localhost`` only."""

    def __init__(self, ca: trustme.CA, folder: Path) -> None:
        self.ca_file = folder / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        leaf = ca.issue_cert("localhost")
        chain, key = folder / "chain.pem", folder / "key.pem"
        leaf.private_key_and_cert_chain_pem.write_to_path(str(chain))
        leaf.private_key_pem.write_to_path(str(key))
        config = SandboxConfig(seed=7, bookings=300, anchor_date=ANCHOR, api_keys=(KEY,))
        self._server = uvicorn.Server(
            uvicorn.Config(
                create_app(config),
                host="127.0.0.1",
                port=0,
                ssl_certfile=str(chain),
                ssl_keyfile=str(key),
                lifespan="off",
                log_level="critical",
            )
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the TLS sandbox did not start")
            time.sleep(0.01)
        self.port: int = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"https://localhost:{self.port}"
        self._control = httpx.Client(
            base_url=self.base_url, verify=ssl.create_default_context(cafile=self.ca_file)
        )

    def requests(self) -> list[dict[str, object]]:
        entries: list[dict[str, object]] = self._control.get("/_sandbox/requests").json()["data"]
        self._control.post("/_sandbox/requests/clear", json={})
        return [entry for entry in entries if not str(entry["path"]).startswith("/_sandbox")]

    def close(self) -> None:
        self._control.close()
        self._server.should_exit = True
        self._thread.join(START_TIMEOUT_S)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_sandbox(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsSandbox]:
    server = TlsSandbox(ca, tmp_path_factory.mktemp("tls"))
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the variables it is about; none leak in from the machine."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JICOO_API_KEY", KEY)


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    with connect_proxy() as running:
        yield running


def event_types(settings: Settings) -> int:
    async def main() -> int:
        limiter = RateLimiter(UNTHROTTLED, int(UNTHROTTLED))
        async with AsyncJicooClient(settings, limiter=limiter) as client:
            return len((await client.list_event_types()).records)

    return asyncio.run(main())


# -- TLS -----------------------------------------------------------------------------------------


def test_a_private_ca_is_refused_by_default_with_a_hint(tls_sandbox: TlsSandbox) -> None:
    settings = ConnectorConfig.from_env().settings(base_url=tls_sandbox.base_url, max_retries=0)
    with pytest.raises(TransportError, match=r"certificate not trusted.*JICOO_CA_BUNDLE"):
        event_types(settings)
    assert tls_sandbox.requests() == []


def test_jicoo_ca_bundle_makes_the_private_ca_trusted(
    tls_sandbox: TlsSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JICOO_BASE_URL", tls_sandbox.base_url)
    monkeypatch.setenv("JICOO_CA_BUNDLE", str(tls_sandbox.ca_file))
    assert event_types(ConnectorConfig.from_env().settings()) > 0
    assert all(entry["had_key"] for entry in tls_sandbox.requests())


def test_a_certificate_for_another_host_name_is_refused(
    tls_sandbox: TlsSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JICOO_CA_BUNDLE", str(tls_sandbox.ca_file))
    # The certificate names localhost; 127.0.0.1 is the same server under another name.
    settings = ConnectorConfig.from_env().settings(
        base_url=f"https://127.0.0.1:{tls_sandbox.port}", max_retries=0
    )
    with pytest.raises(TransportError, match=r"certificate not trusted.*(mismatch|not valid)"):
        event_types(settings)
    assert tls_sandbox.requests() == []


def test_ssl_cert_file_changes_the_trust_only_with_the_system_store(
    tls_sandbox: TlsSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSL_CERT_FILE is OpenSSL's: ignored on the certifi default, honoured as the system store
    on Linux once JICOO_TLS_TRUST=system chooses it (truststore reads OpenSSL's paths there)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_sandbox.ca_file))
    monkeypatch.setenv("JICOO_BASE_URL", tls_sandbox.base_url)
    with pytest.raises(TransportError, match="certificate not trusted"):
        event_types(ConnectorConfig.from_env().settings(max_retries=0))
    monkeypatch.setenv("JICOO_TLS_TRUST", "system")
    assert event_types(ConnectorConfig.from_env().settings()) > 0


def test_trust_settings_are_checked_up_front(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tls_trust"):
        Settings(api_key=ApiKey(KEY), tls_trust="windows")
    with pytest.raises(ConfigError, match="not both"):
        Settings(api_key=ApiKey(KEY), ca_bundle="x.pem", tls_trust="system")
    missing = Settings(api_key=ApiKey(KEY), ca_bundle=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match=r"missing\.pem"):
        AsyncJicooClient(missing)


# -- proxies -------------------------------------------------------------------------------------


def test_an_extract_goes_through_a_connect_proxy(
    tls_sandbox: TlsSandbox,
    proxy: ConnectProxy,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """HTTPS_PROXY, as a company sets it: the proxy sees one CONNECT per connection and
    nothing else (the tunnel is TLS); the sandbox sees every request, with the key."""
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("JICOO_BASE_URL", tls_sandbox.base_url)
    monkeypatch.setenv("JICOO_CA_BUNDLE", str(tls_sandbox.ca_file))
    day = ANCHOR.isoformat()
    out = tmp_path / "warehouse"
    argv = ["extract", "--tables", "bookings", "event_types", "--start", day, "--quiet"]
    assert cli_main([*argv, "--out", str(out)]) == 0
    seen = tls_sandbox.requests()
    assert {"/v1/bookings", "/v1/event_types"} <= {entry["path"] for entry in seen}
    assert all(entry["had_key"] for entry in seen)
    assert proxy.heads
    assert set(proxy.heads) == {f"CONNECT localhost:{tls_sandbox.port} HTTP/1.1"}
    assert len(proxy.heads) <= len(seen)  # connections were reused
    assert proxy.tunnelled > 0
    assert list((out / "bookings").rglob("*.parquet"))


def test_no_proxy_sends_the_host_direct(
    sandbox: SandboxServer, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain http to the loopback sandbox: through HTTP_PROXY unless NO_PROXY names it."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("JICOO_API_KEY", SANDBOX_KEY)
    settings = ConnectorConfig.from_env().settings(base_url=sandbox.base_url, max_retries=0)
    with pytest.raises(JicooError):
        event_types(settings)  # the test proxy forwards only CONNECT: it answers 501
    assert proxy.heads == [f"GET {sandbox.base_url}/v1/event_types?page=1&perPage=100 HTTP/1.1"]
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert event_types(ConnectorConfig.from_env().settings(base_url=sandbox.base_url)) > 0
    assert len(proxy.heads) == 1


def test_all_proxy_is_the_fallback_and_jicoo_proxy_url_wins(
    tls_sandbox: TlsSandbox, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JICOO_BASE_URL", tls_sandbox.base_url)
    monkeypatch.setenv("JICOO_CA_BUNDLE", str(tls_sandbox.ca_file))
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    assert event_types(ConnectorConfig.from_env().settings()) > 0
    through_all_proxy = len(proxy.heads)
    assert through_all_proxy >= 1
    with connect_proxy() as explicit:
        monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # nothing listens there
        monkeypatch.setenv("JICOO_PROXY_URL", explicit.url)
        assert event_types(ConnectorConfig.from_env().settings()) > 0
        assert explicit.heads == [f"CONNECT localhost:{tls_sandbox.port} HTTP/1.1"]
    assert len(proxy.heads) == through_all_proxy


def test_proxy_credentials_are_sent_and_never_shown(
    tls_sandbox: TlsSandbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    password = "pw-SENTINEL-77"
    monkeypatch.setenv("JICOO_CA_BUNDLE", str(tls_sandbox.ca_file))
    with connect_proxy(("alice", password)) as proxy, caplog.at_level(logging.DEBUG):
        good = f"http://alice:{password}@127.0.0.1:{proxy.port}"
        settings = ConnectorConfig.from_env().settings(
            base_url=tls_sandbox.base_url, proxy_url=good
        )
        assert event_types(settings) > 0
        assert proxy.authorizations[0] is not None
        wrong = ConnectorConfig.from_env().settings(
            base_url=tls_sandbox.base_url,
            proxy_url=f"http://alice:{password}x@127.0.0.1:{proxy.port}",
            max_retries=1,
        )
        with pytest.raises(TransportError, match="proxy refused the tunnel") as refused:
            event_types(wrong)
    texts = [caplog.text, repr(settings), repr(wrong), str(refused.value), repr(refused.value)]
    cause: BaseException | None = refused.value
    while cause is not None:
        texts.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    assert "127.0.0.1" in caplog.text  # the proxy is named in the debug log...
    assert not [text for text in texts if "SENTINEL" in text]  # ...its password never


def test_an_idn_host_goes_out_as_punycode(proxy: ConnectProxy) -> None:
    """faß.de is xn--fa-hia.de under IDNA 2008; fass.de (IDNA 2003) is someone else's."""
    settings = Settings(
        api_key=ApiKey(KEY), base_url="https://faß.de", proxy_url=proxy.url, max_retries=0
    )
    with pytest.raises(TransportError):
        event_types(settings)  # the proxy cannot reach it: no DNS on loopback
    assert proxy.heads == ["CONNECT xn--fa-hia.de:443 HTTP/1.1"]


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "direct"),
    [
        ("api.jicoo.com", 443, "jicoo.com", True),
        ("api.jicoo.com", 443, ".jicoo.com", True),
        ("jicoo.com", 443, ".jicoo.com", True),  # curl: a leading dot still matches the domain
        ("notjicoo.com", 443, "jicoo.com", False),
        ("api.jicoo.com", 443, "other.example, *", True),
        ("10.1.2.3", 443, "10.0.0.0/8", True),
        ("10.1.2.3", 443, "10.1.2.4", False),
        ("::1", 8443, "::1", True),
        ("::1", 8443, "[::1]:8443", True),
        ("api.jicoo.com", 443, "api.jicoo.com:8443", False),
        ("api.jicoo.com", 443, "API.JICOO.COM:443", True),
        ("api.jicoo.com", 443, "", False),
    ],
)
def test_no_proxy_matches_as_curl_does(host: str, port: int, no_proxy: str, direct: bool) -> None:
    assert bypassed(host, port, no_proxy) is direct


def test_proxy_variables_are_read_as_curl_and_pip_read_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(api_key=ApiKey(KEY), base_url="https://api.jicoo.com")
    assert proxy_for(settings) is None
    monkeypatch.setenv("ALL_PROXY", "http://all:3128")
    assert proxy_for(settings) == "http://all:3128"
    monkeypatch.setenv("HTTPS_PROXY", "corp-proxy:8080")  # no scheme: http, as curl reads it
    assert proxy_for(settings) == "http://corp-proxy:8080"
    monkeypatch.setenv("https_proxy", "http://lower:8080")  # lower case wins, as in urllib
    assert proxy_for(settings) == "http://lower:8080"
    monkeypatch.setenv("NO_PROXY", ".jicoo.com")
    assert proxy_for(settings) is None
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("https_proxy", "socks5://user:hidden@socks:1080")
    with pytest.raises(ConfigError, match="only http") as refused:
        proxy_for(settings)
    assert "hidden" not in str(refused.value)
    with pytest.raises(ConfigError) as bad:
        Settings(api_key=ApiKey(KEY), proxy_url="ftp://user:hidden@x")
    assert "hidden" not in str(bad.value)


def test_the_cli_help_names_every_network_setting() -> None:
    text = " ".join(build_parser().format_help().split())
    for name in (
        "HTTPS_PROXY",
        "NO_PROXY",
        "JICOO_PROXY_URL",
        "JICOO_CA_BUNDLE",
        "JICOO_TLS_TRUST=system",
        "JICOO_REQUEST_DEADLINE",
    ):
        assert name in text
