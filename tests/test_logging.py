"""Secrets never reach the logs."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from autarky.logging import configure_logging


def test_json_logs_redact_keys_and_token_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "info")
    try:
        structlog.get_logger("t").info(
            "calling model",
            api_key="sk-live-0123456789abcdef",
            model="gpt",
            note="header Bearer sk-proj-ABCDEFGH12345678",
        )
        logging.getLogger("stdlib").warning("token ghp_%s in a message", "a" * 36)
    finally:
        structlog.reset_defaults()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines[0]["api_key"] == "***" and lines[0]["model"] == "gpt"
    assert "sk-proj" not in lines[0]["note"] and "***" in lines[0]["note"]
    assert "ghp_" not in lines[1]["event"] and lines[1]["level"] == "warning"
