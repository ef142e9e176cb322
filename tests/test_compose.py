"""Structure of the container stack (Dockerfile, docker-compose.yml): no Docker engine is needed."""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from autarky.config import AutarkySettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

REQUIRED_SERVICES = {
    "postgresql",
    "temporal",
    "temporal-admin-tools",
    "temporal-ui",
    "autarky-worker",
    "autarky-up",
}
AUTARKY_SERVICES = {"autarky-worker": ["autarky", "worker"], "autarky-up": ["autarky", "up"]}
SEARCH_ATTRIBUTES = {"AutarkyKind": "Keyword", "AutarkyRisk": "Double", "AutarkyApproval": "Keyword"}
DEPENDS_ON_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}

_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}")


def interpolate(value: str) -> str:
    """What Compose makes of a value with no variables set: ``${VAR:-default}`` becomes the default."""

    def replace(match: re.Match[str]) -> str:
        if match.group("default") is None:
            raise AssertionError(f"{value!r}: ${{{match.group('name')}}} has no default")
        return match.group("default")

    return _VARIABLE.sub(replace, value.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = (line.strip() for line in text.splitlines())
    pairs = []
    for line in lines:
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def instructions(dockerfile: list[tuple[str, str]], name: str) -> list[str]:
    return [arguments for instruction, arguments in dockerfile if instruction == name]


def dockerfile_env(dockerfile: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for arguments in instructions(dockerfile, "ENV"):
        for item in shlex.split(arguments):
            key, sep, value = item.partition("=")
            assert sep, f"ENV {arguments!r}: use the KEY=value form"
            env[key] = value
    return env


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolate(str(value)) for key, value in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def command_text(service: dict[str, Any]) -> str:
    command = service.get("command") or ""
    return command if isinstance(command, str) else "\n".join(command)


def host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    assert sep and port.isdigit(), f"{address!r} is not host:port"
    return host, int(port)


def published(service: dict[str, Any]) -> dict[int, int]:
    """Host port -> container port for a service's short-syntax port mappings."""
    mapping = {}
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        assert len(parts) >= 2, f"{entry!r}: give the host port explicitly"
        mapping[int(parts[-2])] = int(parts[-1].split("/")[0])
    return mapping


def container_ports(service: dict[str, Any]) -> set[int]:
    return {int(str(entry).split(":")[-1].split("/")[0]) for entry in service.get("ports", [])}


def names_a_setting(env_name: str) -> bool:
    """Whether an ``AUTARKY_…`` variable names a settings field (misspelt ones are silently ignored)."""
    model: Any = AutarkySettings
    for part in env_name.removeprefix("AUTARKY_").lower().split("__"):
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return False
        model = fields[part].annotation
    return True


def scripts() -> dict[str, str]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)["project"]["scripts"]


# --- Compose file -------------------------------------------------------------------------------------


def test_no_version_key(compose):
    assert "version" not in compose, "the Compose spec has no top-level `version`"


def test_required_services_exist(services):
    assert services.keys() >= REQUIRED_SERVICES, REQUIRED_SERVICES - services.keys()


def test_depends_on_targets_are_services_with_valid_conditions(services):
    for name, service in services.items():
        for target, condition in depends_on(service).items():
            assert target in services, f"{name} depends on undefined service {target}"
            assert target != name, f"{name} depends on itself"
            assert condition in DEPENDS_ON_CONDITIONS, f"{name} -> {target}: unknown condition {condition}"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits on {target}'s health: no healthcheck"
            if condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{target} must run once to complete"


def test_named_volumes_are_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                source = volume.get("source") if volume.get("type", "volume") == "volume" else None
            else:
                source = str(volume).split(":")[0] if ":" in str(volume) else None
            if source and not source.startswith(("/", ".", "~", "$")):
                assert source in declared, f"{name} uses volume {source!r}, not declared at the top level"


def test_images_are_pinned(services):
    for name, service in services.items():
        if "image" not in service:
            assert "build" in service, f"{name} has neither image nor build"
            continue
        image = interpolate(service["image"])
        reference = image.split("@")[0]
        _repository, sep, tag = reference.rpartition(":")
        assert sep and "/" not in tag and tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest", f"{name}: image {image!r} is not pinned"


def test_autarky_services_build_the_dockerfile(services):
    for name, expected_command in AUTARKY_SERVICES.items():
        service = services[name]
        build = service.get("build")
        context = build if isinstance(build, str) else (build or {}).get("context")
        dockerfile = "Dockerfile" if isinstance(build, str) else (build or {}).get("dockerfile", "Dockerfile")
        assert context in (".", "./"), f"{name} must build from the project root, not {context!r}"
        assert (ROOT / dockerfile).is_file()
        assert service["command"] == expected_command
        assert service["command"][0] in scripts(), f"{name}: {service['command'][0]} is no console script"
    images = {services[name].get("image") for name in AUTARKY_SERVICES}
    assert len(images) == 1, f"the Autarky services should share one image, not {images}"


def test_autarky_services_reach_temporal(services):
    temporal_ports = container_ports(services["temporal"])
    for name in AUTARKY_SERVICES:
        env = environment(services[name])
        host, port = host_port(env["TEMPORAL_ADDRESS"])
        assert host == "temporal" and host in services
        assert port in temporal_ports, f"{name} dials port {port}; temporal serves {temporal_ports}"
        assert env["TEMPORAL_NAMESPACE"] == environment(services["temporal"])["DEFAULT_NAMESPACE"]
        assert depends_on(services[name]).get("temporal") == "service_healthy"


def test_worker_replicas_and_up_waits_for_search_attributes(services):
    assert services["autarky-worker"]["deploy"]["replicas"] >= 2
    assert "ports" not in services["autarky-worker"], "replicas cannot share published host ports"
    assert depends_on(services["autarky-up"])["temporal-admin-tools"] == "service_completed_successfully"


@pytest.mark.parametrize("name", sorted(AUTARKY_SERVICES))
def test_autarky_environment_is_valid_settings(services, dockerfile, name, monkeypatch, tmp_path):
    """The image's ENV overlaid with the service's environment loads as AutarkySettings."""
    for key in list(os.environ):
        if key.startswith("AUTARKY_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AUTARKY_CONFIG", str(tmp_path / "absent.toml"))
    env = dockerfile_env(dockerfile) | environment(services[name])
    for key, value in env.items():
        if key.startswith("AUTARKY_") and key != "AUTARKY_CONFIG":
            assert names_a_setting(key), f"{name}: {key} is no Autarky setting"
            monkeypatch.setenv(key, value)

    settings = AutarkySettings()

    assert settings.log_format == "json"
    assert str(settings.data_dir) == "/data"
    mounts = [str(volume).split(":")[1] for volume in services[name].get("volumes", [])]
    assert "/data" in mounts, f"{name}: the data dir should be on a volume"
    assert settings.metrics_host == "0.0.0.0", "metrics bound to loopback are unreachable in a container"
    exposed = {int(port) for arguments in instructions(dockerfile, "EXPOSE") for port in arguments.split()}
    assert {settings.metrics_port, settings.sdk_metrics_port} <= exposed
    assert all(target.startswith("temporal:") for target in settings.autopilot.network_targets)
    if name == "autarky-up":
        assert settings.worker_pool_size == 0


def test_temporal_uses_postgresql(services):
    temporal, postgresql = services["temporal"], services["postgresql"]
    env = environment(temporal)
    assert env["DB"].startswith("postgres")
    assert env["POSTGRES_SEEDS"] == "postgresql"
    assert depends_on(temporal).get("postgresql") == "service_healthy"
    assert "pg_isready" in json.dumps(postgresql["healthcheck"]["test"])
    assert "7233" in env["TEMPORAL_ADDRESS"] and 7233 in container_ports(temporal)
    # Same variable and default on both sides, so overriding one overrides the other.
    raw_temporal, raw_postgres = temporal["environment"], postgresql["environment"]
    assert raw_temporal["POSTGRES_USER"] == raw_postgres["POSTGRES_USER"]
    assert raw_temporal["POSTGRES_PWD"] == raw_postgres["POSTGRES_PASSWORD"]
    assert raw_temporal["DBNAME"] == raw_postgres["POSTGRES_DB"]
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:-[^}]+\}", raw_postgres["POSTGRES_PASSWORD"])
    healthcheck = json.dumps(temporal["healthcheck"]["test"])
    assert "temporal operator cluster health" in healthcheck or "tctl" in healthcheck


def test_ui_is_on_host_port_8233(services):
    ui = services["temporal-ui"]
    assert published(ui).get(8233) == 8080
    assert environment(ui)["TEMPORAL_ADDRESS"] == environment(services["temporal"])["TEMPORAL_ADDRESS"]


def test_admin_tools_register_the_search_attributes(services):
    admin = services["temporal-admin-tools"]
    text = command_text(admin)
    creates = re.findall(r"search-attribute create\b[^\n]*", text)
    registered = {}
    for line in creates:
        names = re.findall(r"--name\s+(\w+)", line)
        types = re.findall(r"--type\s+(\w+)", line)
        assert len(names) == len(types), line
        registered |= dict(zip(names, types, strict=True))
    assert registered == SEARCH_ATTRIBUTES
    assert admin.get("entrypoint"), "the admin-tools image's own entrypoint only sleeps"
    assert str(admin.get("restart")) == "no"
    assert environment(admin)["TEMPORAL_ADDRESS"] == environment(services["temporal"])["TEMPORAL_ADDRESS"]
    assert depends_on(admin).get("temporal") == "service_healthy"


# --- Dockerfile ---------------------------------------------------------------------------------------


def test_dockerfile_base_user_and_install(dockerfile):
    assert instructions(dockerfile, "FROM") == ["python:3.11-slim"]
    users = instructions(dockerfile, "USER")
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    assert any("pip install --no-cache-dir ." in run for run in instructions(dockerfile, "RUN"))
    assert dockerfile_env(dockerfile)["AUTARKY_LOG_FORMAT"] == "json"


def test_dockerfile_cmd_runs_a_declared_console_script(dockerfile):
    cmd = json.loads(instructions(dockerfile, "CMD")[-1])
    assert cmd == ["autarky", "worker"]
    assert cmd[0] in scripts(), f"{cmd[0]} is not in [project.scripts]"


def test_dockerignore_keeps_local_state_out():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".autarky", ".git"} <= ignored
