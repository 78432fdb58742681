"""The client's frozen settings and the redacted API key. Imports only errors and redaction.

Nothing here reads the environment: ``jicoo_connector.config`` does, and builds ``Settings``
from it (``ConnectorConfig.from_env().settings()``). The checks of a value both accept
(``proxy_url``, ``tls_trust``) are written once, here.
"""

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from jicoo_connector.errors import ConfigError
from jicoo_connector.redaction import UNPARSEABLE, UNPARSEABLE_HINT, SecretURL, redact_url

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_BURST",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_PAGE_CONCURRENCY",
    "DEFAULT_PER_PAGE",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_REQUEST_DEADLINE",
    "DEFAULT_TIMEZONE",
    "DEFAULT_TLS_TRUST",
    "TLS_TRUST_CHOICES",
    "ApiKey",
    "Settings",
    "checked_proxy_url",
    "checked_tls_trust",
]

DEFAULT_BASE_URL = "https://api.jicoo.com"
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 30.0
# The read timeout bounds each silence; this bounds a whole request, trickle included.
DEFAULT_REQUEST_DEADLINE = 60.0
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_RETRIES = 6
# The API documents no numbers; 10 req/s with a burst of 20 is the sandbox default too.
DEFAULT_RATE_LIMIT = 10.0
DEFAULT_BURST = 20
DEFAULT_PAGE_CONCURRENCY = 16
DEFAULT_PER_PAGE = 100
# The service's home market: calendar days are Tokyo days unless JICOO_TIMEZONE says otherwise.
DEFAULT_TIMEZONE = "Asia/Tokyo"
# Whom TLS trusts: certifi's bundle (the default, as httpx and pip ship it) or the operating
# system's store (where companies install the CA of their TLS-inspecting proxy).
TLS_TRUST_CHOICES = ("certifi", "system")
DEFAULT_TLS_TRUST = TLS_TRUST_CHOICES[0]


class ApiKey:
    """An API key whose repr and str never show the secret. Read it with ``reveal()``."""

    __slots__ = ("_secret",)

    def __init__(self, secret: str) -> None:
        if not secret or secret != secret.strip() or any(ord(c) < 0x21 for c in secret):
            raise ConfigError("the API key is empty or contains whitespace/control characters")
        if not secret.isascii():
            # HTTP header values are ASCII; a typographic quote or dash pasted with the key.
            raise ConfigError("the API key contains non-ASCII characters: copy it again")
        self._secret = secret

    def reveal(self) -> str:
        return self._secret

    def __repr__(self) -> str:
        return "ApiKey('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other._secret == self._secret

    def __hash__(self) -> int:
        return hash(self._secret)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("ApiKey is not picklable: secrets do not travel")


def checked_proxy_url(url: str) -> str:
    """``url`` stripped, or ``ConfigError`` when it is not an http(s) proxy URL (never quoted
    back: a proxy URL may carry a password)."""
    if _only_the_port_is_bad(url.strip()):
        raise ConfigError("the proxy URL's port is not a number from 1 to 65535")
    if not SecretURL.parse(url.strip()).parseable:
        raise ConfigError(f"the proxy URL {UNPARSEABLE_HINT}")
    proxy = urlsplit(url.strip())
    if proxy.scheme not in ("http", "https") or not proxy.hostname:
        raise ConfigError("the proxy URL must be http://[user:password@]host:port (or https://)")
    return url.strip()


def _only_the_port_is_bad(url: str) -> bool:
    """True when the port cannot be read but the authority holds at most one "@" and ends it
    (a raw "/", "?" or "#" in a password also makes a bad port: that one is the password's)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    try:
        parts.port  # noqa: B018 - urllib checks the port only when it is read
    except ValueError:
        after = url.partition("://")[2][len(parts.netloc) :]
        return parts.netloc.count("@") <= 1 and "@" not in after
    return False


def checked_tls_trust(value: str) -> str:
    """``value`` stripped, or ``ConfigError`` when it is not one of ``TLS_TRUST_CHOICES``."""
    if value.strip() not in TLS_TRUST_CHOICES:
        raise ConfigError(f"tls_trust must be one of {TLS_TRUST_CHOICES}, not {value!r}")
    return value.strip()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the client needs; build with ``Settings(...)``, or from the environment with
    ``ConnectorConfig.from_env().settings()``.

    >>> Settings(api_key=ApiKey("sk_test"), base_url="http://127.0.0.1:8765").base_url
    'http://127.0.0.1:8765'
    """

    api_key: ApiKey
    base_url: str = DEFAULT_BASE_URL
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    request_deadline: float = DEFAULT_REQUEST_DEADLINE
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_retries: int = DEFAULT_MAX_RETRIES
    rate_limit: float = DEFAULT_RATE_LIMIT
    burst: int = DEFAULT_BURST
    page_concurrency: int = DEFAULT_PAGE_CONCURRENCY
    per_page: int = DEFAULT_PER_PAGE
    user_agent: str = field(default="jicoo-connector/0.1")
    # None: HTTPS_PROXY/HTTP_PROXY/ALL_PROXY/NO_PROXY decide. Out of repr: it may carry a
    # password.
    proxy_url: str | None = field(default=None, repr=False)
    ca_bundle: str | None = None  # a PEM file of CAs to trust instead of certifi's
    tls_trust: str = DEFAULT_TLS_TRUST

    def __post_init__(self) -> None:
        shown = redact_url(self.base_url)
        if shown == UNPARSEABLE:
            raise ConfigError(f"the base URL {UNPARSEABLE_HINT}")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"base URL {shown!r} is not an http(s) URL")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ConfigError(f"base URL {shown!r}: plain http is allowed only to loopback hosts")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ConfigError("base URL must not carry credentials, a query or a fragment")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        if parts.path.rstrip("/").endswith("/v1"):
            # Every path already starts with /v1: /v1/v1/bookings answers a bare 404.
            raise ConfigError(
                f"base URL {self.base_url!r} ends in /v1: give the origin alone "
                f"({DEFAULT_BASE_URL}); the client adds /v1 to every path"
            )
        if self.rate_limit <= 0 or self.burst < 1:
            raise ConfigError("rate_limit must be > 0 and burst >= 1")
        if not 1 <= self.per_page <= 100:
            raise ConfigError("per_page must be between 1 and 100")
        if self.page_concurrency < 1 or self.max_retries < 0:
            raise ConfigError("page_concurrency must be >= 1 and max_retries >= 0")
        if min(self.connect_timeout, self.read_timeout, self.request_deadline) <= 0:
            raise ConfigError("timeouts and the request deadline must be > 0")
        checked_tls_trust(self.tls_trust)
        if self.ca_bundle is not None and self.tls_trust != "certifi":
            raise ConfigError("set either a CA bundle or tls_trust='system', not both")
        if self.proxy_url is not None:
            checked_proxy_url(self.proxy_url)
