"""Configuration: environment over autarky.toml, and one clear message for bad values."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from autarky.config import ConfigError, load_settings


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
    with pytest.raises(ConfigError, match="unknown setting 'monitr_interval'"):
        load_settings()


def test_broken_toml_file(tmp_path: Path) -> None:
    (tmp_path / "autarky.toml").write_text("task_queue = \n")
    with pytest.raises(ConfigError, match="invalid configuration file"):
        load_settings()


def test_cli_prints_the_message_and_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from autarky.cli import app

    monkeypatch.setenv("AUTARKY_AUTOPILOT__MAX_CONCURRENT_ACTIONS", "many")
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 2
    assert "AUTARKY_AUTOPILOT__MAX_CONCURRENT_ACTIONS" in result.output and "'many'" in result.output
