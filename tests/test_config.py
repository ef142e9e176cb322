"""Configuration: environment over autarky.toml, and one clear message for bad values."""

from __future__ import annotations

import json
import secrets
import string
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from autarky.core.settings import AutarkySettings, ConfigError, load_settings
from autarky.core.settings_section import Section, SettingsSection


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no autarky.toml from the developer's folder
    for name in list(__import__("os").environ):
        if name.startswith("AUTARKY_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    s = load_settings()
    assert s.autopilot.monitor_interval == timedelta(seconds=30)
    assert s.autopilot.analysis_interval == timedelta(seconds=60)
    assert s.autopilot.optimization_interval == timedelta(minutes=5)
    assert s.autopilot.executor_interval == timedelta(seconds=10)
    assert s.autopilot.max_concurrent_actions == 3
    assert s.data_dir == Path(".autarky")


def test_environment_and_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "autarky.toml").write_text(
        'task_queue = "from-toml"\n[autopilot]\nmonitor_interval = "5m"\nmax_concurrent_actions = 2\n'
    )
    monkeypatch.setenv("AUTARKY_AUTOPILOT__MONITOR_INTERVAL", "0.25")
    s = load_settings()
    assert s.task_queue == "from-toml"
    assert s.autopilot.max_concurrent_actions == 2
    assert s.autopilot.monitor_interval == timedelta(milliseconds=250)  # environment wins over the file


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "AUTARKY_AUTOPILOT__MONITOR_INTERVAL",
            "soon",
            "autopilot.monitor_interval (AUTARKY_AUTOPILOT__MONITOR_INTERVAL) = 'soon'",
        ),
        ("AUTARKY_WORKER_POOL_SIZE", "-1", "worker_pool_size (AUTARKY_WORKER_POOL_SIZE) = '-1'"),
        ("AUTARKY_LOG_FORMAT", "xml", "log_format (AUTARKY_LOG_FORMAT) = 'xml'"),
        ("AUTARKY_AUTOPILOT__NETWORK_TARGETS", '["nohost"]', "'nohost' is not host:port"),
        ("AUTARKY_AUTOPILOT__DECISION__MAX_RISK", "1.5", "autopilot.decision.max_risk"),
        ("AUTARKY_AUTOPILOT__ANALYSIS__ANOMALY_METRICS", '["cpu"]', "unknown metric(s) cpu"),
    ],
)
def test_bad_values_name_the_field_and_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert message.startswith("invalid configuration: ")
    assert expected in message
    assert "\n" not in message  # one line


def test_unknown_toml_key_is_named(tmp_path: Path) -> None:
    (tmp_path / "autarky.toml").write_text("monitr_interval = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'monitr_interval'") as error:
        load_settings()
    # Not a top-level setting at all: the same name one section down is the likely intent.
    assert str(error.value) == (
        "invalid configuration: unknown setting 'monitr_interval' (in autarky.toml); "
        "did you mean 'autopilot.monitor_interval'?"
    )


def test_broken_toml_file(tmp_path: Path) -> None:
    (tmp_path / "autarky.toml").write_text("task_queue = \n")
    with pytest.raises(ConfigError, match="invalid configuration file"):
        load_settings()


def test_cli_prints_the_message_and_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from autarky.cli.main import app

    monkeypatch.setenv("AUTARKY_AUTOPILOT__MAX_CONCURRENT_ACTIONS", "many")
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 2
    assert "AUTARKY_AUTOPILOT__MAX_CONCURRENT_ACTIONS" in result.output and "'many'" in result.output


# --- unknown keys in every section ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "AUTARKY_AUTOPILOT__ANALYSIS__ANOMALY_TRESHOLD",
            "0.1",
            "invalid configuration: unknown setting 'autopilot.analysis.anomaly_treshold' "
            "(AUTARKY_AUTOPILOT__ANALYSIS__ANOMALY_TRESHOLD); did you mean 'anomaly_threshold'?",
        ),
        (
            "AUTARKY_AUTOPILOT__DECISION__MAX_RISC",
            "0.5",
            "invalid configuration: unknown setting 'autopilot.decision.max_risc' "
            "(AUTARKY_AUTOPILOT__DECISION__MAX_RISC); did you mean 'max_risk'?",
        ),
        (
            "AUTARKY_AUTOPILOT__ANALYSIS__ANOMALY__WINDOWS",
            "64",
            "invalid configuration: unknown setting 'autopilot.analysis.anomaly.windows' "
            "(AUTARKY_AUTOPILOT__ANALYSIS__ANOMALY__WINDOWS); did you mean 'window'?",
        ),
        (  # a section given as JSON: the key is inside the variable's value
            "AUTARKY_AUTOPILOT__RULES",
            '{"cpu_percent": 90, "memory_percnt": 90}',
            "invalid configuration: unknown setting 'autopilot.rules.memory_percnt' "
            "(in AUTARKY_AUTOPILOT__RULES); did you mean 'memory_percent'?",
        ),
        (  # a misspelt section: pydantic-settings drops the variable before the model sees it
            "AUTARKY_AUTOPILT__MONITOR_INTERVAL",
            "5",
            "invalid configuration: unknown setting 'autopilt.monitor_interval' "
            "(AUTARKY_AUTOPILT__MONITOR_INTERVAL); did you mean 'autopilot.monitor_interval'?",
        ),
        (
            "AUTARKY_AUTOPILOT__XYZZY",
            "1",
            "invalid configuration: unknown setting 'autopilot.xyzzy' (AUTARKY_AUTOPILOT__XYZZY); "
            "check the spelling (each capability's settings.py holds its section)",
        ),
    ],
)
def test_unknown_nested_variable_is_refused_with_the_nearest_key(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value) == expected


def test_unknown_nested_toml_key_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "elsewhere" / "site.toml"  # the file AUTARKY_CONFIG names
    config.parent.mkdir()
    config.write_text(
        "task_queue = 'q'\n"
        "[autopilot]\nmonitor_interval = '5s'\n"
        "[autopilot.analysis]\nanomaly_treshold = 0.1\n"
        "[autopilot.decision]\nmin_expected_valu = 0.1\n"
    )
    monkeypatch.setenv("AUTARKY_CONFIG", str(config))
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value) == (
        f"invalid configuration: unknown setting 'autopilot.analysis.anomaly_treshold' (in {config}); "
        f"did you mean 'anomaly_threshold'?; unknown setting 'autopilot.decision.min_expected_valu' "
        f"(in {config}); did you mean 'min_expected_value'?"
    )


def test_unknown_keys_and_bad_values_are_reported_together(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "autarky.toml").write_text("task_queu = 'q'\n[autopilot.rules]\nwindow = 0\n")
    monkeypatch.setenv("AUTARKY_AUTOPILOT__SIMULATON", "true")
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert (
        "unknown setting 'autopilot.simulaton' (AUTARKY_AUTOPILOT__SIMULATON); did you mean 'simulation'?"
        in (message)
    )
    assert "unknown setting 'task_queu' (in autarky.toml); did you mean 'task_queue'?" in message
    assert message.count("task_queu'") == 1  # pydantic's own extra_forbidden error is not repeated
    assert "autopilot.rules.window (AUTARKY_AUTOPILOT__RULES__WINDOW) = 0" in message
    assert "\n" not in message


def test_valid_nested_settings_and_leaf_collections_pass(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "autarky.toml").write_text(
        "[autopilot]\nnetwork_targets = ['db:5432']\n"
        "[autopilot.analysis]\nanomaly_threshold = 0.9\nanomaly_metrics = ['cpu_percent']\n"
        "[autopilot.analysis.anomaly]\nwindow = 64\n"
    )
    monkeypatch.setenv("AUTARKY_AUTOPILOT__RULES", '{"cpu_percent": 90}')
    monkeypatch.setenv("AUTARKY_AUTOPILOT__DECISION__MAX_RISK", "0.6")
    monkeypatch.setenv("AUTARKY_CONFIG", str(tmp_path / "autarky.toml"))  # not a setting: no complaint
    s = load_settings()
    assert s.autopilot.analysis.anomaly_threshold == 0.9
    assert s.autopilot.analysis.anomaly.window == 64
    assert s.autopilot.network_targets == ["db:5432"]
    assert s.autopilot.rules.cpu_percent == 90
    assert s.autopilot.decision.max_risk == 0.6


def test_dict_and_list_fields_are_leaves_and_extra_allow_models_accept_anything() -> None:
    from pydantic import ValidationError

    from autarky.core.settings_section import loading_settings

    class Inner(SettingsSection):
        size: int = 1

    class Elsewhere(BaseModel):  # a payload type a section reuses
        size: int = 1

    class Open(SettingsSection):
        model_config = ConfigDict(extra="allow")

    class Outer(SettingsSection):
        labels: dict[str, float] = {}
        items: list[Inner] = []
        inner: Inner | None = None
        reused: dict[str, Section[Elsewhere]] = {}
        open: Open = Open()

    data = {
        "labels": {"anything": 1.0},  # a dict's keys are its data, not settings
        "items": [{"size": 2, "whatever": 3}],  # a list's items are sections like any other
        "inner": {"size": 2, "sise": 3},
        "reused": {"any-name": {"size": 2, "sizes": 3}},
        "open": {"free": 1},
        "extra": 1,
    }
    with loading_settings(), pytest.raises(ValidationError) as error:
        Outer.model_validate(data)
    refused = {tuple(item["loc"]): (item.get("ctx") or {}).get("nearest") for item in error.value.errors()}
    assert refused == {
        ("items", 0, "whatever"): None,
        ("inner", "sise"): "size",
        ("reused", "any-name", "sizes"): "size",
        ("extra",): None,
    }
    assert {item["type"] for item in error.value.errors()} == {"extra_forbidden"}
    assert Outer.model_validate(data).inner == Inner(size=2)  # outside loading: a payload, lenient


def test_payload_models_keep_accepting_fields_they_do_not_know() -> None:
    """The nested models are workflow payloads: an older worker must decode a newer client's settings."""
    from autarky.autopilot.settings import AutopilotSettings

    newer = {"monitor_interval": 5, "field_from_the_future": 1, "analysis": {"another_new_one": True}}
    assert AutopilotSettings.model_validate(newer).monitor_interval == timedelta(seconds=5)


@pytest.mark.parametrize(
    ("section", "newer"),
    [
        (
            "autarky.autopilot.settings.AutopilotSettings",
            {"new_field": 1, "pool_policy": {"new": 1}, "analysis": {"anomaly": {"new": 1}}},
        ),
        (
            "autarky.scaling.settings.ScalingSettings",
            {"new_field": 1, "resources": [{"resource": "aws-asg/web", "new": 1, "policy": {"new": 1}}]},
        ),
        (
            "autarky.llm.settings.LlmSettings",
            {"new_field": 1, "prices": {"m": {"input": 1, "output": 2, "new": 1}}},
        ),
        ("autarky.selfmod.settings.EvolutionSettings", {"new_field": 1, "limits": {"new": 1}}),
        ("autarky.research.settings.ResearchSettings", {"new_field": 1}),
    ],
)
def test_every_section_is_lenient_as_a_payload(section: str, newer: dict[str, object]) -> None:
    """Outside loading, unknown fields are ignored at every depth, lists and dicts included."""
    import importlib

    module, name = section.rsplit(".", 1)
    model = getattr(importlib.import_module(module), name)
    assert "new_field" not in model.model_validate(newer).model_dump()


# --- unknown keys inside lists and dicts ----------------------------------------------------------


def test_a_typo_in_a_list_section_is_refused_with_the_nearest_key(tmp_path: Path) -> None:
    """`[[scaling.resources]]` with `polcy`: once ignored, the resource got the default max_capacity=8."""
    (tmp_path / "autarky.toml").write_text(
        "[[scaling.resources]]\nresource = 'aws-asg/web'\npolicy = { max_capacity = 3 }\n"
        "[[scaling.resources]]\nresource = 'aws-asg/api'\npolcy = { max_capacity = 2 }\n"
    )
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value) == (
        "invalid configuration: unknown setting 'scaling.resources.1.polcy' (in autarky.toml); "
        "did you mean 'policy'?"
    )


def test_a_typo_in_a_list_item_given_as_json_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AUTARKY_SCALING__RESOURCES", '[{"resource": "aws-asg/web", "policy": {"max_capacty": 2}}]'
    )
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value) == (
        "invalid configuration: unknown setting 'scaling.resources.0.policy.max_capacty' "
        "(in AUTARKY_SCALING__RESOURCES); did you mean 'max_capacity'?"
    )


def test_a_list_typo_and_a_bad_value_in_a_list_item_are_reported_together(tmp_path: Path) -> None:
    (tmp_path / "autarky.toml").write_text(
        "[[scaling.resources]]\nresource = 'aws-asg/web'\npolcy = { max_capacity = 2 }\n"
        "[[scaling.resources]]\nresource = 'aws-asg/api'\npolicy = { max_capacity = 0 }\n"
    )
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert "unknown setting 'scaling.resources.0.polcy' (in autarky.toml); did you mean 'policy'?" in message
    # A list item is set through the variable holding the whole list.
    assert "scaling.resources.1.policy.max_capacity (AUTARKY_SCALING__RESOURCES) = 0" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            "[llm.prices.mine]\ninput = 1\noutput = 2\noutpt = 3\n",
            "unknown setting 'llm.prices.mine.outpt' (in autarky.toml); did you mean 'output'?",
        ),
        (
            "[evolution.limits]\ncpu_second = 10\n",
            "unknown setting 'evolution.limits.cpu_second' (in autarky.toml); did you mean 'cpu_seconds'?",
        ),
        (
            "[autopilot.pool_policy]\nmax_capacty = 2\n",
            "unknown setting 'autopilot.pool_policy.max_capacty' (in autarky.toml); "
            "did you mean 'max_capacity'?",
        ),
        (
            "[scaling.aws]\nregio = 'eu-west-1'\n",
            "unknown setting 'scaling.aws.regio' (in autarky.toml); did you mean 'region'?",
        ),
    ],
)
def test_models_reused_by_sections_refuse_unknown_keys_too(tmp_path: Path, toml: str, expected: str) -> None:
    (tmp_path / "autarky.toml").write_text(toml)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value) == f"invalid configuration: {expected}"


def test_an_argument_is_named_as_the_origin_and_direct_construction_is_strict() -> None:
    from pydantic import ValidationError

    typo = {"resources": [{"resource": "aws-asg/web", "polcy": {}}]}
    with pytest.raises(ConfigError) as error:
        load_settings(scaling=typo)
    assert "unknown setting 'scaling.resources.0.polcy' (argument); did you mean 'policy'?" in str(
        error.value
    )
    with pytest.raises(ValidationError, match="polcy"):
        AutarkySettings(scaling=typo)  # settings, however made, are not payloads


def test_cli_refuses_a_list_section_typo_with_exit_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from autarky.cli.main import app

    (tmp_path / "autarky.toml").write_text(
        "[[scaling.resources]]\nresource = 'aws-asg/web'\npolcy = { max_capacity = 2 }\n"
    )
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 2
    assert "unknown setting 'scaling.resources.0.polcy'" in result.output
    assert "did you mean 'policy'?" in result.output


# --- every model the settings reach is guarded ------------------------------------------------------


# The marker `Section[Model]` puts beside a model (its own class is private to settings_section).
def test_a_secret_pasted_into_the_wrong_variable_is_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "k" + secrets.token_urlsafe(24)  # no known shape: only its value gives it away
    monkeypatch.setenv("AUTARKY_OPENAI_API_KEY", secret)
    monkeypatch.setenv("AUTARKY_AUTOPILOT__MONITOR_INTERVAL", secret)
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert message.startswith(
        "invalid configuration: autopilot.monitor_interval (AUTARKY_AUTOPILOT__MONITOR_INTERVAL) = ***: "
    )
    assert secret not in message and secret[:12] not in message


def test_secret_values_from_every_source_are_hidden(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from_toml = "toml-" + secrets.token_hex(10)
    github = secrets.token_hex(16)
    short = "valid"  # too short to look for inside text, but hidden where it is the whole value
    (tmp_path / "autarky.toml").write_text(
        f"anthropic_api_key = '{from_toml}'\n[autopilot]\nnetwork_targets = ['{from_toml}', 'ok:1']\n"
    )
    monkeypatch.setenv("GITHUB_TOKEN", github)  # not an Autarky setting: still a secret of this process
    monkeypatch.setenv("AUTARKY_OPENAI_API_KEY", short)
    monkeypatch.setenv("AUTARKY_LOG_FORMAT", short)
    monkeypatch.setenv("AUTARKY_TASK_QUEUE", "")
    monkeypatch.setenv("AUTARKY_AUTOPILOT__MAX_CONCURRENT_ACTIONS", f"{github}x")
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert "autopilot.network_targets" in message and "log_format (AUTARKY_LOG_FORMAT) = ***" in message
    assert "max_concurrent_actions" in message
    for value in (from_toml, github):
        assert value not in message
    assert f"{short!r}" not in message
    assert "Input should be a valid integer" in message  # "valid" as an ordinary word stays


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ("knowledge_base_url = 12345678\n", "knowledge_base_url (AUTARKY_KNOWLEDGE_BASE_URL) = ***"),
        (
            "[scaling.aws]\nsecret_access_key = ['wrong-type-secret']\n",
            "scaling.aws.secret_access_key (AUTARKY_SCALING__AWS__SECRET_ACCESS_KEY) = ***",
        ),
    ],
)
def test_a_secret_settings_bad_value_is_not_shown(tmp_path: Path, toml: str, field: str) -> None:
    (tmp_path / "autarky.toml").write_text(toml)
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert field in message
    assert "12345678" not in message and "wrong-type-secret" not in message


@pytest.mark.parametrize(
    "value",
    [
        "Bearer 0123456789abcdefXYZ",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlMTIz",
        "sk-ant-api03-0123456789abcdef",
        "AKIAABCDEFGHIJKLMNOP",
    ],
)
def test_token_shapes_in_a_bad_value_are_hidden(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("AUTARKY_AUTOPILOT__EXECUTOR_INTERVAL", value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "AUTARKY_AUTOPILOT__EXECUTOR_INTERVAL" in str(error.value)
    assert value.split()[-1][8:] not in str(error.value)


def test_secret_settings_loaded_are_hidden_from_later_logs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from autarky.core.redaction import current_secrets, redact_text

    from_toml = "toml-only-" + secrets.token_hex(8)
    (tmp_path / "autarky.toml").write_text(f"openai_api_key = '{from_toml}'\n")
    assert load_settings().openai_api_key.get_secret_value() == from_toml
    assert from_toml in current_secrets()  # not in the environment: remembered from the settings
    assert redact_text(f"using {from_toml}", current_secrets()) == "using ***"


_SECRET_ALPHABET = (string.ascii_letters + string.digits + string.punctuation + " é€").replace("*", "")


@settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # the clean environment is shared
)
@given(secret=st.text(alphabet=_SECRET_ALPHABET, min_size=8, max_size=40))
def test_generated_secrets_never_appear_in_the_message(secret: str) -> None:
    for variable, value in [
        ("AUTARKY_LOG_FORMAT", secret),
        ("AUTARKY_LOG_LEVEL", f"x{secret}y"),
        ("AUTARKY_AUTOPILOT__NETWORK_TARGETS", json.dumps([secret, "bad"])),
    ]:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AUTARKY_ANTHROPIC_API_KEY", secret)
            patch.setenv(variable, value)
            with pytest.raises(ConfigError) as error:
                load_settings()
        message = str(error.value)
        assert message.startswith("invalid configuration"), message
        assert secret not in message and repr(secret)[1:-1] not in message
