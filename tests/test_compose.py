"""Structure of the container stack (Dockerfile, docker-compose.yml): no Docker engine is needed."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from autarky.core.settings import AutarkySettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

REQUIRED_SERVICES = {
    "postgresql",
    "temporal-schema-setup",
    "temporal",
    "temporal-create-namespace",
    "temporal-admin-tools",
    "temporal-ui",
    "autarky-worker",
    "autarky-up",
}
# The temporalio/admin-tools one-shots: Alpine images without bash.
ADMIN_TOOLS_SERVICES = ("temporal-schema-setup", "temporal-create-namespace", "temporal-admin-tools")
AUTARKY_SERVICES = {"autarky-worker": ["autarky", "worker"], "autarky-up": ["autarky", "up"]}
SEARCH_ATTRIBUTES = {"AutarkyKind": "Keyword", "AutarkyRisk": "Double", "AutarkyApproval": "Keyword"}
DEPENDS_ON_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
# Where temporalio/admin-tools ships the versioned schema, per temporal-sql-tool plugin.
SQL_SCHEMA_DIRS = {"postgres12": "/etc/temporal/schema/postgresql/v12"}

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


def image_parts(service: dict[str, Any]) -> tuple[str, str]:
    """(repository, tag) of a service's image."""
    repository, _, tag = interpolate(service["image"]).split("@")[0].rpartition(":")
    return repository, tag


def frontend_address(services: dict[str, dict[str, Any]]) -> str:
    """The address clients inside the stack dial: the temporal service and its frontend gRPC port."""
    port = int(environment(services["temporal"]).get("FRONTEND_GRPC_PORT", "7233"))
    assert port in container_ports(services["temporal"]), (
        f"temporal does not publish its frontend port {port}"
    )
    return f"temporal:{port}"


def healthcheck_text(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(test)


def script(service: dict[str, Any]) -> str:
    """A one-shot's shell script as the container sees it (``$$`` unescaped), simple assignments expanded."""
    text = interpolate(command_text(service))
    for name, value in re.findall(r"^\s*(\w+)=([^\s\"'$]+)\s*$", text, flags=re.MULTILINE):
        text = re.sub(rf"\$(?:{name}\b|\{{{name}\}})", lambda _match, value=value: value, text)
    return text


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


def test_no_deprecated_auto_setup_image(services):
    for name, service in services.items():
        if "image" in service:
            assert "auto-setup" not in image_parts(service)[0], f"{name}: temporalio/auto-setup is deprecated"
    assert image_parts(services["temporal"])[0] == "temporalio/server"


def test_server_and_admin_tools_are_one_temporal_release(services):
    server_repository, server_tag = image_parts(services["temporal"])
    assert server_repository == "temporalio/server"
    assert re.fullmatch(r"\d+\.\d+\.\d+", server_tag), f"{server_tag!r} is not a Temporal release"
    admin_tools = {
        name: image_parts(service)[1]
        for name, service in services.items()
        if "image" in service and image_parts(service)[0] == "temporalio/admin-tools"
    }
    assert admin_tools.keys() == set(ADMIN_TOOLS_SERVICES)
    for name, tag in admin_tools.items():
        assert tag == server_tag, f"{name} runs admin-tools {tag}, the server is {server_tag}"


def test_admin_tools_scripts_run_in_posix_sh(services):
    """admin-tools is an Alpine image without bash: the one-shots run /bin/sh and stop at the first error."""
    for name in ADMIN_TOOLS_SERVICES:
        service = services[name]
        assert service.get("entrypoint") in (["/bin/sh", "-c"], ["sh", "-c"]), (
            f"{name}: the image's own command only sleeps; run the script with sh -c"
        )
        text = script(service)
        assert re.match(r"\s*set -e", text), f"{name}: a failing step must fail the one-shot (set -e)"
        for bashism in ("<<<", "[[", "function ", "pipefail", "$'"):
            assert bashism not in text, f"{name}: {bashism!r} is bash, not POSIX sh"
        assert str(service.get("restart")) == "no"


def test_schema_setup_runs_temporal_sql_tool_before_the_server(services):
    setups = [name for name, service in services.items() if "temporal-sql-tool" in command_text(service)]
    assert setups == ["temporal-schema-setup"], setups
    setup, temporal = services["temporal-schema-setup"], services["temporal"]
    assert depends_on(temporal).get("temporal-schema-setup") == "service_completed_successfully"
    assert depends_on(setup).get("postgresql") == "service_healthy"

    # The tool reaches the very database the server uses: the same variables, mapped onto its own.
    setup_env, server_env = environment(setup), environment(temporal)
    for key in (
        "DB",
        "DB_PORT",
        "POSTGRES_SEEDS",
        "POSTGRES_USER",
        "POSTGRES_PWD",
        "DBNAME",
        "VISIBILITY_DBNAME",
    ):
        assert setup_env.get(key) == server_env[key], f"{key}: schema setup and server differ"
    text = script(setup)
    exported = dict(re.findall(r'\b(SQL_\w+)="\$(\w+)"', text))
    assert exported == {
        "SQL_PLUGIN": "DB",
        "SQL_HOST": "POSTGRES_SEEDS",
        "SQL_PORT": "DB_PORT",
        "SQL_USER": "POSTGRES_USER",
        "SQL_PASSWORD": "POSTGRES_PWD",
    }
    assert {server_env["DBNAME"], server_env["VISIBILITY_DBNAME"]} == {"temporal", "temporal_visibility"}

    schema_dir = SQL_SCHEMA_DIRS[server_env["DB"]]
    steps = [line.split() for line in text.splitlines() if line.strip().startswith("temporal-sql-tool")]
    for database, schema in (("DBNAME", "temporal"), ("VISIBILITY_DBNAME", "visibility")):
        mine = [step for step in steps if step[1:3] == ["--db", f'"${database}"']]
        commands = [step[3] for step in mine]
        assert commands == ["create", "setup-schema", "update-schema"], f"{database}: {commands}"
        assert mine[1][4:] == ["-v", "0.0"]
        assert mine[2][4] == "-d" and mine[2][5].strip('"') == f"{schema_dir}/{schema}/versioned"


def test_temporal_uses_postgresql(services):
    temporal, postgresql = services["temporal"], services["postgresql"]
    env = environment(temporal)
    assert env["DB"] in SQL_SCHEMA_DIRS
    assert env["POSTGRES_SEEDS"] == "postgresql"
    assert depends_on(temporal).get("postgresql") == "service_healthy"
    assert "pg_isready" in json.dumps(postgresql["healthcheck"]["test"])
    # Same variable and default on both sides, so overriding one overrides the other.
    raw_temporal, raw_postgres = temporal["environment"], postgresql["environment"]
    assert raw_temporal["POSTGRES_USER"] == raw_postgres["POSTGRES_USER"]
    assert raw_temporal["POSTGRES_PWD"] == raw_postgres["POSTGRES_PASSWORD"]
    assert raw_temporal["DBNAME"] == raw_postgres["POSTGRES_DB"]
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:-[^}]+\}", raw_postgres["POSTGRES_PASSWORD"])
    # The frontend must listen beyond the container's own address for the port check and other containers.
    assert env["BIND_ON_IP"] == "0.0.0.0"
    healthcheck = healthcheck_text(temporal)
    assert "temporal operator" not in healthcheck and "tctl" not in healthcheck, "the server image has no CLI"
    assert frontend_address(services).rpartition(":")[2] in healthcheck


def test_temporal_has_its_dynamic_config(compose, services):
    """The server image ships no dynamic config file and the server refuses to start without it."""
    temporal = services["temporal"]
    path = environment(temporal)["DYNAMIC_CONFIG_FILE_PATH"]
    assert path.startswith("/")
    mounted = {
        entry["target"]: entry["source"] for entry in temporal.get("configs", []) if isinstance(entry, dict)
    }
    assert path in mounted, f"nothing is mounted at {path}"
    config = compose["configs"][mounted[path]]
    text = config["content"] if "content" in config else (ROOT / config["file"]).read_text()
    values = yaml.safe_load(text)
    assert isinstance(values, dict) and values
    for key, entries in values.items():
        assert isinstance(entries, list) and entries, key
        assert all(isinstance(entry, dict) and "value" in entry for entry in entries), key


def test_namespace_is_created_before_the_search_attributes(services):
    create, admin = services["temporal-create-namespace"], services["temporal-admin-tools"]
    assert depends_on(create).get("temporal") == "service_healthy"
    text = script(create)
    assert "temporal operator cluster health" in text, "wait until the cluster serves, not only its port"
    assert re.search(r'temporal operator namespace create --namespace "\$TEMPORAL_NAMESPACE"', text)
    assert environment(create)["TEMPORAL_ADDRESS"] == frontend_address(services)
    assert depends_on(admin).get("temporal-create-namespace") == "service_completed_successfully"
    assert environment(admin)["TEMPORAL_NAMESPACE"] == environment(create)["TEMPORAL_NAMESPACE"]


def test_admin_tools_register_the_search_attributes(services):
    admin = services["temporal-admin-tools"]
    text = script(admin)
    creates = re.findall(r"search-attribute create\b[^\n]*", text)
    registered = {}
    for line in creates:
        names = re.findall(r"--name\s+(\w+)", line)
        types = re.findall(r"--type\s+(\w+)", line)
        assert len(names) == len(types), line
        assert '--namespace "$TEMPORAL_NAMESPACE"' in line, line
        registered |= dict(zip(names, types, strict=True))
    assert registered == SEARCH_ATTRIBUTES
    assert environment(admin)["TEMPORAL_ADDRESS"] == frontend_address(services)
    assert depends_on(admin).get("temporal") == "service_healthy"


def test_ui_is_on_host_port_8233(services):
    ui = services["temporal-ui"]
    assert published(ui).get(8233) == 8080
    assert environment(ui)["TEMPORAL_ADDRESS"] == frontend_address(services)
    assert depends_on(ui).get("temporal") == "service_healthy"


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
    namespace = environment(services["temporal-create-namespace"])["TEMPORAL_NAMESPACE"]
    for name in AUTARKY_SERVICES:
        env = environment(services[name])
        assert env["TEMPORAL_ADDRESS"] == frontend_address(services)
        assert env["TEMPORAL_NAMESPACE"] == namespace, f"{name} uses a namespace nobody creates"
        deps = depends_on(services[name])
        assert deps.get("temporal") == "service_healthy"
        # The namespace and the search attributes exist before any Autarky workflow runs.
        assert deps.get("temporal-admin-tools") == "service_completed_successfully"


def test_services_start_after_what_they_need_is_healthy(services):
    """A long-running dependency is waited for until its healthcheck passes, a one-shot until it has
    succeeded; `service_started` (the default) waits for nothing that matters."""
    for name, service in services.items():
        for dependency, condition in depends_on(service).items():
            assert dependency in services, f"{name} depends on {dependency}, which is no service"
            target = services[dependency]
            if str(target.get("restart")) == "no":
                assert condition == "service_completed_successfully", f"{name} -> {dependency}: {condition}"
            else:
                assert condition == "service_healthy", f"{name} -> {dependency}: {condition}"
                assert healthcheck_text(target).strip(), f"{dependency} has no healthcheck to wait for"


def test_services_wait_for_every_service_they_reach(services):
    """A host in a service's environment (e.g. the knowledge base's postgresql) is a dependency."""
    for name, service in services.items():
        for key, value in environment(service).items():
            if not re.search(r"(ADDRESS|SEEDS|HOST|URL)$", key):
                continue  # e.g. POSTGRES_USER=temporal names a user, not the temporal service
            for other in services:
                # "postgresql", "temporal:7233", "…@postgresql:5432/…": the service as a host
                as_host = rf"(^|[@/]){re.escape(other)}(:\d+|/|$)"
                if other != name and re.search(as_host, value):
                    assert other in depends_on(service), f"{name} reaches {other} but does not wait for it"


def test_healthchecks_really_check(services):
    """Each healthcheck asks the service itself (its port or its own readiness tool), not `true`."""
    for name, service in services.items():
        if "healthcheck" not in service:
            continue
        text = healthcheck_text(service)
        assert service["healthcheck"].get("disable") is not True, name
        ports = {str(p) for p in container_ports(service)} | {
            environment(service).get("AUTARKY_METRICS_PORT")
        }
        assert "pg_isready" in text or any(port and port in text for port in ports), f"{name}: {text}"


def test_worker_replicas(services):
    assert services["autarky-worker"]["deploy"]["replicas"] >= 2
    assert "ports" not in services["autarky-worker"], "replicas cannot share published host ports"


@pytest.mark.parametrize("name", sorted(AUTARKY_SERVICES))
def test_autarky_services_have_a_metrics_healthcheck(services, name):
    service = services[name]
    test = service["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), test
    text = healthcheck_text(service)
    assert "python" in text and "urllib" in text, "python:3.11-slim has no curl or wget"
    urls = re.findall(r"http://(127\.0\.0\.1|localhost):(\d+)(/\S*?)['\")\s]", text)
    assert len(urls) == 1, text
    _host, port, path = urls[0]
    assert int(port) == int(environment(service)["AUTARKY_METRICS_PORT"]), "probe Autarky's own metrics port"
    assert path == "/metrics"
    assert environment(service)["AUTARKY_METRICS_HOST"] == "0.0.0.0"


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
    replicated = services[name].get("deploy", {}).get("replicas", 1) > 1
    if replicated:  # each replica is a host of its own: a shared data dir would share its cache
        assert "/data" not in mounts, f"{name}: replicas must not share a data dir"
    else:
        assert "/data" in mounts, f"{name}: the data dir should be on a volume"
    assert settings.metrics_host == "0.0.0.0", "metrics bound to loopback are unreachable in a container"
    exposed = {int(port) for arguments in instructions(dockerfile, "EXPOSE") for port in arguments.split()}
    assert {settings.metrics_port, settings.sdk_metrics_port} <= exposed
    # None: the autopilot probes the Temporal server in use (TEMPORAL_ADDRESS).
    assert settings.autopilot.network_targets is None
    if name == "autarky-up":
        assert settings.worker_pool_size == 0


def test_replicas_keep_their_own_host_identity(services, dockerfile):
    """The host id defaults to the hostname, each container's own; a constant would merge the replicas."""
    replicated = [
        name for name, service in services.items() if (service.get("deploy") or {}).get("replicas", 1) > 1
    ]
    assert "autarky-worker" in replicated
    for name in replicated:
        assert "AUTARKY_HOST_ID" not in dockerfile_env(dockerfile) | environment(services[name]), name
        assert "hostname" not in services[name] and "container_name" not in services[name], name


# --- Dockerfile ---------------------------------------------------------------------------------------


def test_dockerfile_base_user_and_install(dockerfile):
    assert instructions(dockerfile, "FROM") == ["python:3.11-slim"]
    users = instructions(dockerfile, "USER")
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    runs = instructions(dockerfile, "RUN")
    assert any("mkdir /data" in run and "chown" in run for run in runs), (
        "a fresh /data volume must be writable"
    )
    assert dockerfile_env(dockerfile)["AUTARKY_LOG_FORMAT"] == "json"


def test_dockerfile_installs_dependencies_before_the_source(dockerfile):
    """A source change must not reinstall the dependencies: they come from pyproject.toml alone."""
    steps = [
        (instruction, arguments) for instruction, arguments in dockerfile if instruction in ("COPY", "RUN")
    ]
    copy_all = steps.index(("COPY", ". ."))
    before, after = steps[:copy_all], steps[copy_all + 1 :]

    copies = [arguments.split() for instruction, arguments in before if instruction == "COPY"]
    assert copies and all(sources[:-1] == ["pyproject.toml"] for sources in copies), copies
    installs = [
        arguments for instruction, arguments in before if instruction == "RUN" and "pip install" in arguments
    ]
    assert len(installs) == 1, "install the dependencies in one layer before `COPY . .`"

    # Run the step's own requirement extraction on the project's pyproject.toml.
    command = next(part for part in installs[0].split("&&") if "tomllib" in part)
    argv = shlex.split(command)
    code = argv[argv.index("-c") + 1]
    with (ROOT / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    listed = set(result.stdout.split("\n")) - {""}
    assert set(project["project"]["dependencies"]) <= listed

    final = [
        arguments for instruction, arguments in after if instruction == "RUN" and "pip install" in arguments
    ]
    assert len(final) == 1 and re.search(r"\s\.$", final[0]), final
    assert "--no-deps" in final[0], "the dependencies are installed already"
    if "--no-build-isolation" in final[0]:
        assert set(project["build-system"]["requires"]) <= listed, "the build backend must be installed"


def test_dockerfile_cmd_runs_a_declared_console_script(dockerfile):
    cmd = json.loads(instructions(dockerfile, "CMD")[-1])
    assert cmd == ["autarky", "worker"]
    assert cmd[0] in scripts(), f"{cmd[0]} is not in [project.scripts]"


def test_dockerignore_keeps_local_state_out():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".autarky", ".git", ".env"} <= ignored
