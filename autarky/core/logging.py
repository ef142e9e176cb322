"""structlog set-up: readable console locally, JSON when AUTARKY_LOG_FORMAT=json; secrets redacted.

Redaction (autarky.core.redaction) happens twice: on the event dict (values under secret-looking keys, secret
values and token shapes inside strings) and on the rendered line, so that whatever a renderer adds
(a traceback, an object's repr) cannot carry a configured secret's value either.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

import structlog

from autarky.core.redaction import current_secrets, redact_text, redact_value


def redact(value: Any, secrets: Iterable[str] | None = None) -> Any:
    """`value` with secrets replaced: strings, and dicts, lists and tuples of them (secret-named keys whole).

    `secrets`: the values to hide besides the known token shapes; default the process's current ones.
    """
    return redact_value(value, current_secrets() if secrets is None else secrets)


def _redact_processor(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return redact(event_dict)


def _redact_rendered(_: Any, __: str, rendered: Any) -> Any:
    """The last step: the line as it is written (str for our renderers)."""
    return redact_text(rendered, current_secrets()) if isinstance(rendered, str) else rendered


def _brief_retryable_failures(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """A retryable ApplicationError (a source or provider that is down, classified by our activities) is
    logged by the SDK at every attempt: its message says everything, so it gets one line, not a traceback.
    An offline stack meets one every few seconds, and pages of tracebacks cost CPU and, written to a pipe
    nobody reads fast enough, block the worker."""
    exc_info = event_dict.get("exc_info")
    error = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) == 3 else None
    if error is not None and type(error).__name__ == "ApplicationError" and not error.non_retryable:
        del event_dict["exc_info"]
        event_dict["error"] = f"{error.type or 'ApplicationError'}: {error.message}"
    return event_dict


def configure_logging(log_format: str = "console", level: str = "info") -> None:
    """Route structlog and the standard library (Temporal SDK, workflow.logger) through one renderer."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_processor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        # Plain tracebacks: rich's, with every frame's locals, are pages long and slow to render.
        else structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    )
    # The console renderer prints tracebacks itself; JSON needs them as a field ("exception").
    tracebacks: list[Any] = [structlog.processors.format_exc_info] if log_format == "json" else []
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _brief_retryable_failures],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *tracebacks,
                _redact_processor,
                renderer,
                _redact_rendered,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
