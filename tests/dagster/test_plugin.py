"""The integration as a user installs it: `JicooComponent` found by `dg`, scaffolded into a
defs.yaml that loads once its key's variable is set, the README's two ways (YAML and Python)
run as written, the factory's arguments and the Component's attributes one contract, and the
core library free of Dagster."""

import dataclasses
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster.components.testing import create_defs_folder_sandbox

from jicoo_connector.config import ConnectorConfig
from jicoo_connector.dagster import (
    JicooComponent,
    JicooNames,
    JicooResource,
    JicooSettings,
    build_jicoo_definitions,
)
from jicoo_connector.errors import ConfigError
from jicoo_connector.receiver_limits import ReceiverLimits

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README.split("\n## Add Jicoo to your Dagster project\n", 1)[1].split("\n## ", 1)[0]
TYPE = "jicoo_connector.dagster.JicooComponent"
DG_TIMEOUT_S = 240
# Dagster's own YAML loading (1.13) calls pydantic's deprecated parse_obj_as.
DAGSTER_YAML_WARNING = (
    "ignore:`parse_obj_as` is deprecated:pydantic.warnings.PydanticDeprecatedSince20"
)
# The Component's attributes beside the settings: what the factory takes by name.
OWN_ATTRIBUTES = {
    "organization",
    "api_key",
    "data_root",
    "tables",
    "schedules",
    "changeset_inbox_sensor",
    "booking_events_sensor",
}


def _snippet(language: str) -> str:
    (found,) = re.findall(rf"```{language}\n(.*?)```", SECTION, re.S)
    return str(found)


def _names(defs: dg.Definitions) -> set[str]:
    repository = defs.get_repository_def()
    return {
        *(k.to_user_string() for k in repository.asset_graph.get_all_asset_keys()),
        *(j.name for j in repository.get_all_jobs() if not j.name.startswith("__")),
        *(s.name for s in repository.schedule_defs),
        *(s.name for s in repository.sensor_defs),
        *(defs.resources or {}),
    }


def test_the_components_attributes_are_the_factorys_arguments_and_every_setting() -> None:
    attributes = {f.name for f in dataclasses.fields(JicooComponent)}
    parameters = set(inspect.signature(build_jicoo_definitions).parameters) - {"settings"}
    settings = set(JicooSettings.__annotations__)
    assert attributes == OWN_ATTRIBUTES | settings
    assert parameters == OWN_ATTRIBUTES | {"config"}
    # Every documented setting but the receiver's own (its secret and bounds), by the same name.
    fields = {f.name for f in dataclasses.fields(ConnectorConfig)}
    receiver = {f"webhook_{name}" for name in ReceiverLimits.__dataclass_fields__}
    assert fields - attributes == {"webhook_secret", *receiver}
    schema = JicooComponent.model().model_json_schema()["properties"]
    for name in attributes:
        assert len(schema[name].get("description", "")) > 20, name


def _component(attributes: dict[str, object]) -> JicooComponent:
    text = "\n".join(f"{key}: {value}" for key, value in attributes.items())
    component = JicooComponent.resolve_from_yaml(text)
    assert isinstance(component, JicooComponent)
    return component


@pytest.mark.filterwarnings(DAGSTER_YAML_WARNING)
def test_the_key_is_taken_by_its_variables_name_and_never_written_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACME_JICOO_API_KEY", "sk_live_never_shown")
    for template in ('"{{ env.ACME_JICOO_API_KEY }}"', "\"{{ env('ACME_JICOO_API_KEY') }}\""):
        component = _component({"organization": "acme", "api_key": template})
        assert isinstance(component.api_key, dg.EnvVar)
        assert component.api_key.env_var_name == "ACME_JICOO_API_KEY"
    defs = component.build_defs(dg.ComponentTree.for_test().load_context)
    resource = (defs.resources or {})["jicoo_acme"]
    assert "sk_live_never_shown" not in repr(resource)
    assert isinstance(resource, JicooResource)
    assert resource.process_config_and_initialize().api_key == "sk_live_never_shown"
    written = _component({"organization": "acme", "api_key": "sk_live_never_shown"})
    with pytest.raises(ConfigError, match=r"ACME_JICOO_API_KEY .*never the key itself") as caught:
        written.build_defs(dg.ComponentTree.for_test().load_context)
    assert "sk_live_never_shown" not in str(caught.value)
    with pytest.raises(ConfigError, match="api_key must come from the environment"):
        build_jicoo_definitions("acme", api_key="sk_live_never_shown")  # type: ignore[arg-type]


def test_a_url_with_a_password_is_taken_by_variable_only(monkeypatch: pytest.MonkeyPatch) -> None:
    key = dg.EnvVar("ACME_JICOO_API_KEY")
    url = "postgresql://loader:pw-never-shown@db.internal/dwh"
    with pytest.raises(ConfigError, match="warehouse_url holds a password") as caught:
        build_jicoo_definitions("acme", api_key=key, warehouse_url=url)
    assert "pw-never-shown" not in str(caught.value)
    monkeypatch.setenv("ACME_WAREHOUSE_URL", url)
    defs = build_jicoo_definitions(
        "acme", api_key=key, warehouse_url=dg.EnvVar("ACME_WAREHOUSE_URL")
    )
    assert "pw-never-shown" not in repr(defs.resources)
    (spec,) = defs.resolve_assets_def(JicooNames("acme").asset_key("warehouse")).specs
    assert spec.kinds == {"jicoo", "postgres"}
    # Without a password, a URL may be written out.
    plain = build_jicoo_definitions("acme", api_key=key, ledger_url="postgresql://db/ledger")
    (spec,) = plain.resolve_assets_def(JicooNames("acme").asset_key("apply_log")).specs
    assert "postgres" in spec.kinds


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"organization": "Acme-Prod"}, "is not an organization name"),
        ({"timezone": "Tokyo"}, r"timezone='Tokyo': 'Tokyo' is not an IANA time zone"),
        ({"rate_limit": -1}, r"rate_limit=-1: '-1' is not a number above 0"),
        ({"tables": ["booking_contacts"]}, "booking_contacts is made from bookings"),
        ({"tables": ["meetings"]}, r"unknown \['meetings'\]"),
        ({"retries": 3}, r"unknown settings \['retries'\]"),
    ],
)
def test_a_bad_argument_says_which_and_why(arguments: dict[str, object], message: str) -> None:
    arguments = {"organization": "acme", **arguments}
    with pytest.raises(ConfigError, match=message):
        build_jicoo_definitions(api_key=dg.EnvVar("ACME_JICOO_API_KEY"), **arguments)  # type: ignore[arg-type]


def test_tables_and_switches_choose_what_is_built() -> None:
    names = JicooNames("acme")
    defs = build_jicoo_definitions(
        "acme",
        api_key=dg.EnvVar("ACME_JICOO_API_KEY"),
        tables=["users", "schedules"],
        schedules=False,
        booking_events_sensor=False,
    )
    built = _names(defs)
    assert {names.asset_key(t).to_user_string() for t in ("users", "schedules")} <= built
    assert names.asset_key("bookings").to_user_string() not in built
    assert names.job("daily_tables") not in built  # no day table, no daily job or webhook job
    assert names.job("webhook_refresh") not in built
    assert defs.get_repository_def().schedule_defs == []
    assert {s.name for s in defs.get_repository_def().sensor_defs} == {
        names.sensor("changeset_inbox")
    }
    graph = defs.resolve_asset_graph()
    assert graph.get(names.asset_key("warehouse")).parent_keys == {
        names.asset_key("users"),
        names.asset_key("schedules"),
    }


def test_the_readmes_python_snippet_makes_two_organizations() -> None:
    namespace: dict[str, object] = {}
    exec(compile(_snippet("python"), "README.md", "exec"), namespace)  # noqa: S102 - our README
    load = namespace["defs"]
    defs = load() if callable(load) else load
    assert isinstance(defs, dg.Definitions)
    built = _names(defs)
    for organization in ("acme", "globex"):
        names = JicooNames(organization)
        assert {names.asset_key("bookings").to_user_string(), names.job("daily_tables")} <= built
    assert JicooNames("globex").sensor("booking_events") not in built  # switched off there
    globex = (defs.resources or {})["jicoo_globex"]
    assert isinstance(globex, JicooResource)
    assert globex.rate_limit == 5


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A dg project of our own (pyproject, a definitions module over its defs folder), with
    two organizations: the README's defs.yaml, and the same for globex."""
    package = tmp_path / "src" / "twoorgs"
    (package / "defs").mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "twoorgs"\nversion = "0"\n\n'
        '[tool.dg]\ndirectory_type = "project"\n\n'
        '[tool.dg.project]\nroot_module = "twoorgs"\n\n'
        '[tool.dg.cli]\nsuppress_warnings = ["project_and_activated_venv_mismatch"]\n',
        encoding="utf-8",
    )
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "defs" / "__init__.py").write_text("", encoding="utf-8")
    (package / "definitions.py").write_text(
        "from pathlib import Path\n\nimport dagster as dg\n\n\n"
        "@dg.definitions\ndef defs() -> dg.Definitions:\n"
        "    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)\n",
        encoding="utf-8",
    )
    yaml = _snippet("yaml")
    for organization in ("acme", "globex"):
        folder = package / "defs" / organization
        folder.mkdir()
        text = yaml.replace("acme", organization).replace("ACME", organization.upper())
        (folder / "defs.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def _dg(project: Path, *args: str) -> str:
    home = project / ".dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    done = subprocess.run(  # noqa: S603 - our own venv's dg
        [str(Path(sys.executable).with_name("dg")), *args],
        cwd=project,
        env={**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(project / "src")},
        capture_output=True,
        text=True,
        timeout=DG_TIMEOUT_S,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


# Two runs of dg, each loading Dagster in a process of its own: slow on a loaded machine.
@pytest.mark.timeout(2 * DG_TIMEOUT_S)
def test_dg_lists_the_component_and_checks_two_readme_organizations(project: Path) -> None:
    assert TYPE in _dg(project, "list", "components", "--json")
    # The keys' variables are not set: they are read when a run starts, never at load.
    output = _dg(project, "check", "defs")
    assert "All definitions loaded successfully" in output


@pytest.mark.filterwarnings(DAGSTER_YAML_WARNING)
def test_a_scaffolded_defs_yaml_loads_once_its_key_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(JicooComponent, defs_path="acme")
        text = (path / "defs.yaml").read_text(encoding="utf-8")
        assert 'api_key: "{{ env.ACME_JICOO_API_KEY }}"' in text
        assert "data_root: data/jicoo/acme" in text
        named = sandbox.scaffold_component(
            JicooComponent, defs_path="second", scaffold_params={"organization": "globex"}
        )
        assert "organization: globex" in (named / "defs.yaml").read_text(encoding="utf-8")
        monkeypatch.setenv("ACME_JICOO_API_KEY", "sk_live_acme")
        with sandbox.build_all_defs() as defs:
            built = _names(defs)
            acme = (defs.resources or {})["jicoo_acme_warehouse"]
        assert {
            "jicoo/acme/bookings",
            "jicoo/globex/bookings",
            "jicoo_acme",
            "jicoo_globex",
        } <= built
        # data_root is read from the project's root, wherever Dagster runs.
        assert Path(acme.root) == sandbox.project_root / "data" / "jicoo" / "acme" / "warehouse"


def test_the_core_library_imports_no_dagster() -> None:
    probe = (
        "import sys, jicoo_connector, jicoo_connector.cli, jicoo_connector.extract, "
        "jicoo_connector.changes, jicoo_connector.warehouse, jicoo_connector.webhooks, "
        "jicoo_connector.webhooks; "
        "print(sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.')))"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]"
