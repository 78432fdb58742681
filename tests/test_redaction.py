"""One redaction rule for every URL: generated passwords holding every reserved character, in the
userinfo and in the query, percent-encoded or not, never shown; and the places that show URLs
(the ledger, the warehouse, the client's settings) follow it, in one line and without a trace.
"""

import string
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jicoo_connector.changes import Ledger
from jicoo_connector.cli import EXIT_UNUSABLE, main
from jicoo_connector.errors import ConfigError, LedgerError, WarehouseError
from jicoo_connector.redaction import MASK, UNPARSEABLE, SecretURL, redact_url, scrub
from jicoo_connector.settings import ApiKey, Settings
from jicoo_connector.warehouse import WarehouseTarget

RESERVED = ":/?#[]@!$&'()*+,;=% "
# No upper-case letter appears in the URLs around the password: a password always starts with
# "Z", so any piece of it that shows would be found.
AROUND = "postgresql://loader@db.internal:5432/analytics"
PASSWORDS = st.text(
    alphabet=st.sampled_from(RESERVED + string.ascii_letters + string.digits + "é\u3042"),
    min_size=3,
    max_size=24,
).map(lambda body: f"Z{body}")


def _spellings(password: str) -> list[str]:
    return [password, quote(password, safe=""), quote(password), quote_plus(password)]


def _shows(text: str, password: str) -> bool:
    return any(spelling in text for spelling in _spellings(password))


@given(PASSWORDS)
def test_an_encoded_password_in_the_userinfo_is_masked(password: str) -> None:
    url = f"postgresql://loader:{quote(password, safe='')}@db.internal:5432/analytics"
    assert redact_url(url) == f"postgresql://loader:{MASK}@db.internal:5432/analytics"


@given(PASSWORDS)
def test_a_raw_password_in_the_userinfo_is_masked_or_the_url_unparseable(password: str) -> None:
    url = f"postgresql://loader:{password}@db.internal:5432/analytics"
    shown = redact_url(url)
    assert shown in (f"postgresql://loader:{MASK}@db.internal:5432/analytics", UNPARSEABLE)
    assert not _shows(shown, password)


@given(PASSWORDS, st.booleans())
def test_a_password_in_the_query_is_masked(password: str, encoded: bool) -> None:
    value = quote(password, safe="") if encoded else password
    shown = redact_url(f"{AROUND}?sslmode=require&password={value}")
    assert not _shows(shown, password)
    assert "Z" not in shown
    if encoded:
        assert shown == f"{AROUND}?sslmode=require&password={MASK}"


@given(PASSWORDS, st.sampled_from(["userinfo", "query"]), st.booleans())
def test_a_driver_message_is_scrubbed_of_every_spelling(
    password: str, where: str, encoded: bool
) -> None:
    value = quote(password, safe="") if encoded else password
    if where == "userinfo":
        url = f"postgresql://loader:{value}@db.internal:5432/analytics"
    else:
        url = f"{AROUND}?password={value}"
    message = f"cannot connect to {url}: bad password {password!r} ({quote(password)})"
    assert not _shows(scrub(message, [url]), password)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://proxy.internal:3128", "https://proxy.internal:3128"),
        ("http://alice:pw@proxy:8080/x", f"http://alice:{MASK}@proxy:8080/x"),
        ("s3://KEYID:SECRETKEY@bucket/prefix", f"s3://KEYID:{MASK}@bucket/prefix"),
        ("snowflake://me@acme/DB/S?warehouse=W&token=t0k", f"snowflake://me@acme/DB/S?warehouse=W&token={MASK}"),
        ("postgresql://u@h/db#frag", f"postgresql://u@h/db#{MASK}"),
        ("http://[::1]:8080/", "http://[::1]:8080/"),
        ("postgresql://u:pw@h:notaport/db", UNPARSEABLE),
        ("postgresql://u:p%zz@h/db", UNPARSEABLE),
        ("postgresql://u@h/db?bare", UNPARSEABLE),
        ("postgresql://u@h/db?password=ab%c1x", UNPARSEABLE),
        ("postgresql://u:%C3%A9t%C3%A9@h/db", f"postgresql://u:{MASK}@h/db"),
    ],
)  # fmt: skip
def test_the_rule_keeps_scheme_user_host_port_and_path(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert repr(SecretURL.parse(url)) == f"SecretURL({shown!r})"


def test_a_password_that_breaks_the_url_never_reaches_the_ledger_driver(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A raw "/" used to end in a ValueError traceback; a raw "@" or space in libpq's message."""
    changes = tmp_path / "changes.csv"
    changes.write_text("action,booking_uid\ncancel,abc\n", encoding="utf-8")
    # "%c1", meant literally, decodes to a byte that is no UTF-8: psycopg failed on it.
    for password in ("Zp/ss", "Zp@ss", "Zp ss", "Zp?ss#x", "Zp%c1ss"):
        url = f"postgresql://loader:{password}@127.0.0.1:1/db"
        with pytest.raises(LedgerError) as refused:
            Ledger(url)
        assert "percent-encode" in str(refused.value)
        assert not _shows(str(refused.value), password)
        code = main(["apply", str(changes), "--ledger", url, "--apply-log", str(tmp_path / "log")])
        out, err = capsys.readouterr()
        assert code == EXIT_UNUSABLE
        assert len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err
        assert not _shows(out + err, password)


def test_a_password_that_breaks_the_url_never_reaches_the_warehouse_driver(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for password in ("Zp/ss", "Zp@ss", "Zp ss"):
        url = f"postgresql://loader:{password}@127.0.0.1:1/db"
        with pytest.raises(WarehouseError, match="percent-encode") as refused:
            WarehouseTarget.parse(url)
        assert not _shows(str(refused.value), password)
        code = main(["load", "--warehouse-url", url, "--root", str(tmp_path / "wh")])
        out, err = capsys.readouterr()
        assert code == EXIT_UNUSABLE
        assert len(err.strip().splitlines()) == 1, err
        assert not _shows(out + err, password)


def test_a_warehouse_password_in_the_query_is_masked_in_what_it_describes() -> None:
    target = WarehouseTarget.parse(f"{AROUND}?password=Zs3cret&sslmode=require")
    assert target.describe() == f"{AROUND}?password={MASK}&sslmode=require"
    assert "Zs3cret" not in repr(target)


@pytest.mark.parametrize("variable", ["JICOO_LEDGER_URL", "JICOO_WAREHOUSE_URL", "JICOO_PROXY_URL"])
def test_a_url_setting_that_cannot_be_parsed_is_refused_without_being_shown(
    variable: str,
) -> None:
    from jicoo_connector.config import ConnectorConfig

    scheme = "http" if variable == "JICOO_PROXY_URL" else "postgresql"
    with pytest.raises(ConfigError, match=rf"^{variable}: .*cannot be parsed") as refused:
        ConnectorConfig.from_env({variable: f"{scheme}://loader:Zp/ss@host:5432/db"})
    assert "Zp" not in str(refused.value)


def test_a_proxy_url_that_cannot_be_parsed_is_refused_by_the_client_settings() -> None:
    with pytest.raises(ConfigError, match="cannot be parsed") as refused:
        Settings(api_key=ApiKey("k"), proxy_url="http://alice:Zp@ss/x@proxy:3128")
    assert "Zp" not in str(refused.value)
