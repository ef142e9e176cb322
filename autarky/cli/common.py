"""What every command of the `autarky` CLI shares: the console, how it fails, its settings, and `run_command`,
the one place that turns the errors a command means (no server, a refusal, a bad request…) into a one-line
message and an exit code. Any other exception is a bug: it leaves with its traceback (autarky.cli.main)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import typer
from rich.console import Console
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from autarky.client import (
    ApprovalNotFound,
    ApprovalRefused,
    AutarkyClient,
    ResearchBusy,
    ServerUnavailable,
    is_unreachable,
    server_address,
)
from autarky.core.logging import configure_logging
from autarky.core.settings import AutarkySettings, ConfigError, load_settings
from autarky.core.temporal import ServerStartFailed
from autarky.scaling.client import ScaleRefused
from autarky.scaling.scalers import UnknownResource

console = Console()
T = TypeVar("T")

# Errors whose message is all a person needs: said as they are, exit 1.
MEANT = (ConfigError, ApprovalNotFound, UnknownResource, ResearchBusy, ServerStartFailed)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `message` to stderr as it is (no markup, no wrapping: one line stays one line) and exit."""
    Console(stderr=True, soft_wrap=True, highlight=False).print(message, style="red", markup=False)
    raise typer.Exit(code)


def cli_settings(configure_logs: bool = True) -> AutarkySettings:
    """This process's settings (a configuration error exits 2, saying what is wrong), logging set up unless
    not `configure_logs`."""
    try:
        settings = load_settings()
    except ConfigError as error:
        fail(str(error), 2)
    if configure_logs:
        configure_logging(settings.log_format, settings.log_level)
    return settings


def run_command(make: Callable[[AutarkySettings], Awaitable[T]]) -> T:
    """Run the coroutine `make(settings)`; the errors a command means become one line on stderr and exit 1."""
    settings = cli_settings()
    try:
        return asyncio.run(make(settings))
    except ServerUnavailable as error:
        fail(str(error))
    except (ApprovalRefused, ScaleRefused) as error:
        fail(f"refused: {error}")
    except MEANT as error:
        fail(str(error))
    except WorkflowUpdateFailedError as error:
        fail(f"refused: {error.cause.message if error.cause else error}")
    except WorkflowFailureError as error:  # e.g. a research cycle that failed: its reason
        cause = error.cause
        while getattr(cause, "cause", None) is not None:
            cause = cause.cause
        fail(f"the workflow failed: {getattr(cause, 'message', None) or cause or error}")
    except WorkflowAlreadyStartedError as error:
        fail(f"{error.workflow_id} is already running")
    except RPCError as error:
        if is_unreachable(error):  # the server went away after we connected
            fail(str(ServerUnavailable(server_address(settings))))
        fail(f"Temporal said: {error.message}")
    except RuntimeError as error:
        if is_unreachable(error):
            fail(str(ServerUnavailable(server_address(settings))))
        if not is_connect_failure(error):
            raise  # a bug: its traceback, not just its message
        fail(str(error))


def is_connect_failure(error: RuntimeError) -> bool:
    """Whether the SDK's bridge could not connect for another reason than no server (TLS, a bad address…)."""
    return str(error).startswith("Failed client connect")


async def autarky_client(settings: AutarkySettings) -> AutarkyClient:
    return await AutarkyClient.connect(settings)


def require_reason(reason: str, example: str = "pool is idle") -> None:
    if not reason.strip():  # checked here, before anything talks to the server
        fail(f'--reason is required and must not be empty: say why, e.g. --reason "{example}"', 2)


def shorten(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
