"""Where the client's connections go and whom they trust.

The proxy: ``Settings.proxy_url`` when set, else the environment read as curl and pip read it
(``https_proxy``/``http_proxy`` for the base URL's scheme, then ``all_proxy``, lower case before
upper case; ``no_proxy`` names hosts reached directly). httpx's own ``trust_env`` reading is not
used: it matches ``NO_PROXY=.example.com`` against sub-domains only and takes a CIDR range
(``10.0.0.0/8``) for a single address, where curl matches both. The client talks to one origin,
so the decision is made once, here.

The trust: certifi's bundle, a CA bundle file, or the operating system's store through
``truststore``. ``SSL_CERT_FILE``/``SSL_CERT_DIR`` change nothing unless the system store is
chosen (on Linux that store is OpenSSL's, which those variables define).
"""

import ipaddress
import ssl
import urllib.request
from urllib.parse import urlsplit

import certifi

from jicoo_connector.errors import ConfigError
from jicoo_connector.redaction import redact_url
from jicoo_connector.settings import Settings, checked_proxy_url

__all__ = ["proxy_for", "tls_context"]


def proxy_for(settings: Settings) -> str | None:
    """The proxy URL for ``settings.base_url``, or None to connect directly."""
    if settings.proxy_url is not None:
        return settings.proxy_url
    target = urlsplit(settings.base_url)
    environment = urllib.request.getproxies_environment()
    proxy = environment.get(target.scheme) or environment.get("all")
    if not proxy:
        return None
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    if bypassed(host, port, environment.get("no", "")):
        return None
    if "://" not in proxy:  # "proxy:3128", as curl and pip accept it
        proxy = f"http://{proxy}"
    if urlsplit(proxy).scheme not in ("http", "https"):
        raise ConfigError(
            f"proxy {redact_url(proxy)} from the environment: only http:// and https:// proxies "
            "are supported; set JICOO_PROXY_URL or NO_PROXY"
        )
    try:
        return checked_proxy_url(proxy)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (from HTTPS_PROXY/HTTP_PROXY/ALL_PROXY)") from None


def bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (curl's NO_PROXY syntax) sends ``host:port`` direct: ``*``; a name
    that matches the host or a parent domain, leading dot or not; an address or CIDR range
    that holds the host's address; any entry may end in ``:port``."""
    host = host.lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if entry == "*":
            return True
        name, entry_port = _split_port(entry)
        if not name or (entry_port is not None and entry_port != port):
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.lstrip(".").rstrip(".")
        if host == name or host.endswith(f".{name}"):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [::1]:8080
        name, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":")
        return name, int(port) if port.isdecimal() else None
    if entry.count(":") == 1:  # host:port (more colons: a bare IPv6 address)
        name, _, port = entry.partition(":")
        return (name, int(port)) if port.isdecimal() else (entry, None)
    return entry, None


def tls_context(settings: Settings) -> ssl.SSLContext:
    """A verifying client context (host name and chain) on the configured trust."""
    if settings.tls_trust == "system":
        import truststore  # here: only those who chose it pay for the import

        return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cafile = settings.ca_bundle if settings.ca_bundle is not None else certifi.where()
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"CA bundle {cafile!r} could not be read as PEM certificates ({exc.strerror or exc})"
        ) from None
