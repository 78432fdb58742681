"""Snowflake's password reaches the ADBC driver through its documented ``password`` option.

No account is reachable from here, so the driver logs in to a loopback stand-in of Snowflake's
login endpoint, which records the request and refuses it: what the real service would be sent.
"""

import gzip
import http.server
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from jicoo_connector.config import ConnectorConfig
from jicoo_connector.errors import WarehouseError
from jicoo_connector.warehouse import WarehouseTarget
from jicoo_connector.warehouse._session import open_session

# Every character a URL reserves, and a few more that break naive parsers.
PASSWORD = "p@ss:w/rd?#[]!$&'()*+,;= %é"
REFUSAL = {"data": None, "code": "390100", "message": "Incorrect username or password.",
           "success": False}  # fmt: skip


@dataclass
class LoginStandIn:
    port: int
    logins: list[dict[str, object]] = field(default_factory=list)


@pytest.fixture
def login_stand_in() -> Iterator[LoginStandIn]:
    recorded = LoginStandIn(port=0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path.startswith("/session/v1/login-request"):
                recorded.logins.append(json.loads(body)["data"])
            answer = json.dumps(REFUSAL).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorded.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield recorded
    server.shutdown()
    server.server_close()


def _as_the_cli_reads(url: str) -> WarehouseTarget:
    """The target ``jicoo load`` builds: the URL, and JICOO_WAREHOUSE_PASSWORD beside it."""
    return WarehouseTarget.parse(url, password=ConnectorConfig.from_env().warehouse_password)


def test_the_driver_options_carry_the_url_password_in_adbc_password() -> None:
    userinfo = f"loader:{quote(PASSWORD, safe='')}"
    url = f"snowflake://{userinfo}@acme-xy123/JICOO/RAW?warehouse=LOAD&role=R"
    assert WarehouseTarget.parse(url).snowflake_options() == {
        "adbc.snowflake.sql.account": "acme-xy123",
        "username": "loader",
        "password": PASSWORD,
        "adbc.snowflake.sql.db": "JICOO",
        "adbc.snowflake.sql.schema": "RAW",
        "adbc.snowflake.sql.warehouse": "LOAD",
        "adbc.snowflake.sql.role": "R",
    }


def test_the_driver_options_take_the_password_setting_when_the_url_has_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JICOO_WAREHOUSE_PASSWORD", PASSWORD)
    options = _as_the_cli_reads("snowflake://loader@acme-xy123/JICOO/RAW").snowflake_options()
    assert options["password"] == PASSWORD
    assert "uri" not in options  # the driver would take the password from a URI alone


def test_an_unknown_snowflake_parameter_is_refused_by_name() -> None:
    with pytest.raises(WarehouseError, match="unknown parameter 'wharehouse'") as refused:
        WarehouseTarget.parse("snowflake://loader:s3cret@acme/DB/S?wharehouse=LOAD")
    assert "s3cret" not in str(refused.value)


@pytest.mark.parametrize("source", ["url", "setting"])
def test_the_driver_logs_in_with_the_password(
    login_stand_in: LoginStandIn, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    where = f"host=127.0.0.1&port={login_stand_in.port}&protocol=http"
    if source == "url":
        userinfo = f"loader:{quote(PASSWORD, safe='')}"
    else:
        monkeypatch.setenv("JICOO_WAREHOUSE_PASSWORD", PASSWORD)
        userinfo = "loader"
    target = _as_the_cli_reads(f"snowflake://{userinfo}@acme-xy123/JICOO/RAW?{where}")
    with (
        pytest.raises(WarehouseError, match="Incorrect username or password") as refused,
        open_session(target),
    ):
        pass
    (login,) = login_stand_in.logins
    assert (login["ACCOUNT_NAME"], login["LOGIN_NAME"]) == ("acme-xy123", "loader")
    assert login["PASSWORD"] == PASSWORD
    assert PASSWORD not in str(refused.value)
    assert quote(PASSWORD, safe="") not in str(refused.value)


def test_the_readme_snowflake_snippet_gives_the_driver_its_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    (url,) = re.findall(r"export JICOO_WAREHOUSE_URL='(snowflake://[^']+)'", readme)
    monkeypatch.setenv("JICOO_WAREHOUSE_PASSWORD", PASSWORD)
    options = _as_the_cli_reads(url).snowflake_options()
    assert options["password"] == PASSWORD
    assert options["username"] == "LOADER"
    assert options["adbc.snowflake.sql.account"] == "xy12345.ap-northeast-1.aws"
    assert (options["adbc.snowflake.sql.db"], options["adbc.snowflake.sql.schema"]) == (
        "JICOO",
        "RAW",
    )
    assert options["adbc.snowflake.sql.warehouse"] == "LOAD_WH"
