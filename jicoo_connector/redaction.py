"""The one rule for showing a URL that may hold a secret, and for scrubbing it out of text.

A URL is shown with its scheme, user, host, port and path; its password and every query value
that may hold a secret become ``***`` (only values of a few keys known to be harmless, such as
``sslmode``, stay). A URL that cannot be read unambiguously (a raw ``@``, ``/``, ``?``, ``#``
or space in the password, a bad port, a stray ``%``) is shown as ``<unparseable URL>``, never
raw: drivers split such URLs differently from Python, so any part of it may be the secret.

Imports nothing of the package: the client, the ledger, the warehouse and the webhooks use it.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote, unquote_to_bytes, urlsplit

__all__ = [
    "MASK",
    "UNPARSEABLE",
    "UNPARSEABLE_HINT",
    "SecretURL",
    "redact_location",
    "redact_url",
    "scrub",
]

MASK: Final = "***"
UNPARSEABLE: Final = "<unparseable URL>"
# What a refusal of such a URL says after naming the setting.
UNPARSEABLE_HINT: Final = (
    "cannot be parsed; percent-encode reserved characters in the password "
    "(@ as %40, / as %2F, ? as %3F, # as %23, % as %25, a space as %20)"
)
# Query keys whose values configure a connection and never carry a credential: shown as is.
SAFE_QUERY_KEYS: Final = frozenset(
    {
        "application_name",
        "connect_timeout",
        "database",
        "location",
        "region",
        "role",
        "schema",
        "sslmode",
        "target_session_attrs",
        "warehouse",
    }
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_QUERY_KEY = re.compile(r"[A-Za-z0-9_.-]+")
# A host: a name (internationalized ones too) or IPv4 address, or an IPv6 address in brackets.
_HOST = re.compile(r"[^\s/?#@\[\]:\\]*|\[[0-9A-Fa-f:.]+\]")
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_BLANK_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
# Something in free text that starts like a URL: redacted as a whole, up to the next blank.
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://\S+")
# libpq-style key=value secrets in driver messages ("password=...").
_SECRET_PAIR = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|token|api_?key|access_?key)(\s*[=:]\s*)\S+"
)


class _UnparseableError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class SecretURL:
    """A URL read once, strictly: ``display`` is what may be shown, ``secrets`` every spelling
    of what may not (the password and secret query values, raw and percent-decoded).

    >>> SecretURL.parse("postgresql://loader:s3cr%40t@db:5432/analytics?sslmode=require").display
    'postgresql://loader:***@db:5432/analytics?sslmode=require'
    >>> SecretURL.parse("postgresql://loader:p@ss@db/analytics").display
    '<unparseable URL>'
    """

    url: str
    display: str
    secrets: tuple[str, ...]
    parseable: bool

    def __repr__(self) -> str:
        return f"SecretURL({self.display!r})"

    __str__ = __repr__

    @classmethod
    def parse(cls, url: str) -> "SecretURL":
        try:
            display, secrets = _redacted(url)
        except _UnparseableError:
            return cls(url, UNPARSEABLE, _guessed_secrets(url), parseable=False)
        return cls(url, display, secrets, parseable=True)


def redact_url(url: str) -> str:
    """``url`` fit for a message, a log line or metadata (see the module's rule).

    >>> redact_url("https://user:pw@proxy.internal:3128/?token=abc&region=jp")
    'https://user:***@proxy.internal:3128/?token=***&region=jp'
    """
    return SecretURL.parse(url).display


def redact_location(location: object) -> str:
    """A location that is a URL (``scheme://...``) redacted; a plain path as it is."""
    text = str(location)
    return redact_url(text) if "://" in text else text


def scrub(text: str, urls: Iterable[str] = (), secrets: Iterable[str] = ()) -> str:
    """``text`` (a driver's message, say) with each of ``urls``, their secrets and ``secrets``
    masked, in any spelling, then every other URL and ``password=...`` pair in it redacted."""
    masked: list[str] = list(_spellings(secrets))
    for url in urls:
        parsed = SecretURL.parse(url)
        text = text.replace(url, parsed.display)
        masked += parsed.secrets
    for secret in sorted(masked, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_IN_TEXT.sub(lambda m: _redact_in_text(m.group(0)), text)
    return _SECRET_PAIR.sub(rf"\1\2{MASK}", text)


def _redact_in_text(candidate: str) -> str:
    url = candidate.rstrip(".,;:)]}'\"")
    return redact_url(url) + candidate[len(url) :]


def _redacted(url: str) -> tuple[str, tuple[str, ...]]:
    scheme, sep, _ = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme) or _BLANK_OR_CONTROL.search(url):
        raise _UnparseableError
    if _STRAY_PERCENT.search(url):
        raise _UnparseableError
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _UnparseableError from None
    netloc = parts.netloc
    # A second "@", or one after the authority, means a raw "@", "/", "?" or "#" in the
    # userinfo: Python and libpq would cut it at different places.
    if netloc.count("@") > 1 or "@" in url[len(scheme) + 3 + len(netloc) :]:
        raise _UnparseableError
    # A percent-escape that decodes to no UTF-8 ("%c1" meant literally) is read as text by
    # nobody: libpq hands psycopg bytes it cannot decode.
    _check_utf8(url)
    userinfo, _, hostport = netloc.rpartition("@")
    host = hostport.rsplit(":", 1)[0] if port is not None else hostport.removesuffix(":")
    if not _HOST.fullmatch(host):
        raise _UnparseableError
    user, has_password, password = userinfo.partition(":")
    secrets: list[str] = [password, unquote(password)] if has_password and password else []
    query, query_secrets = _masked_query(parts.query)
    secrets += query_secrets
    shown_user = f"{user}{':' + MASK if has_password else ''}@" if userinfo else ""
    shown = f"{scheme}://{shown_user}{hostport}{parts.path}"
    shown += f"?{query}" if parts.query else ""
    if parts.fragment:
        shown += f"#{MASK}"
        secrets += [parts.fragment, unquote(parts.fragment)]
    return shown, _spellings(secrets)


def _check_utf8(text: str) -> None:
    try:
        unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise _UnparseableError from None


def _masked_query(query: str) -> tuple[str, list[str]]:
    shown: list[str] = []
    secrets: list[str] = []
    for raw in query.split("&") if query else []:
        key, has_value, value = raw.partition("=")
        # A key alone is what a raw "&" in a value leaves behind: the value's rest.
        if not has_value or not _QUERY_KEY.fullmatch(unquote(key)):
            raise _UnparseableError
        if not value or unquote(key).lower() in SAFE_QUERY_KEYS:
            shown.append(raw)
            continue
        shown.append(f"{key}={MASK}")
        secrets += [value, unquote(value.replace("+", " ")), unquote(value)]
    return "&".join(shown), secrets


def _spellings(secrets: Iterable[str]) -> tuple[str, ...]:
    found: set[str] = set()
    for secret in secrets:
        if secret:
            found.update({secret, quote(secret, safe=""), quote(secret)})
    return tuple(sorted(found, key=len, reverse=True))


def _guessed_secrets(url: str) -> tuple[str, ...]:
    """What may be a password in a URL that cannot be parsed: everything between the scheme's
    ``://`` and the last ``@`` after the first ``:`` of the user (and the query string)."""
    _, _, rest = url.partition("://")
    guesses = [url]
    if "@" in rest:
        userinfo = rest.rsplit("@", 1)[0]
        guesses += [userinfo, userinfo.partition(":")[2]]
        # The pieces a driver might have taken for a password, a host or a path.
        guesses += [piece for piece in re.split(r"[@/?#:\s]", userinfo) if len(piece) > 1]
    query = rest.partition("?")[2]
    # A raw "&", "=" or "#" in a value: it runs from some "=" to the end, or to some separator.
    guesses += [query[at + 1 :] for at, char in enumerate(query) if char == "="]
    guesses += [piece.partition("=")[2] for piece in re.split(r"[&;#]", query)]
    return _spellings(guess for guess in guesses if len(guess) > 1)
