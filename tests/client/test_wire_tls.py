"""TLS on the client's connections: verified against a throwaway CA, with SNI, kept alive; a
certificate that fails verification is a connect failure, never a request in doubt."""

import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from jicoo_connector.errors import InDoubtError, TransportError
from tests.client.wire import CANCELLED, Serve, always, bookings, response, run


@dataclass
class Certificates:
    ca: Path
    chain: Path
    key: Path


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A throwaway CA and a leaf certificate for ``localhost`` only."""
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    folder = tmp_path_factory.mktemp("tls")
    paths = Certificates(folder / "ca.pem", folder / "chain.pem", folder / "key.pem")
    ca.cert_pem.write_to_path(str(paths.ca))
    leaf.cert_chain_pems[0].write_to_path(str(paths.chain))
    leaf.private_key_pem.write_to_path(str(paths.key))
    return paths


def tls_server_context(certificates: Certificates, names: list[str | None]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates.chain, certificates.key)

    def record(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = record  # type: ignore[assignment]
    return context


def test_tls_is_verified_with_sni_and_keeps_the_connection(
    serve: Serve, certificates: Certificates
) -> None:
    names: list[str | None] = []
    server = serve(always(response()), tls=tls_server_context(certificates, names))
    base_url = f"https://localhost:{server.port}"
    found = run(base_url, lambda client: bookings(client, 3), ca_bundle=str(certificates.ca))
    assert found == ["b1"] * 3
    assert server.connections == 1
    assert names == ["localhost"]
    assert b"\r\nHost: localhost:" in server.heads[0]


@pytest.mark.parametrize("trusted", [False, True], ids=["unknown-issuer", "wrong-host"])
def test_a_certificate_that_fails_verification_is_a_connect_failure(
    serve: Serve,
    certificates: Certificates,
    trusted: bool,
) -> None:
    # Trusted or not, the certificate names localhost, not 127.0.0.1.
    trust = {"ca_bundle": str(certificates.ca)} if trusted else {}
    server = serve(always(response(CANCELLED)), tls=tls_server_context(certificates, []))
    with pytest.raises(TransportError, match="could not connect") as caught:
        run(server.base_url, lambda client: client.cancel_booking("b1"), max_retries=1, **trust)
    assert not isinstance(caught.value, InDoubtError)  # never sent: resending was safe
    assert server.heads == []
