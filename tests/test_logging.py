"""Secrets never reach the logs: token shapes, and configured secrets by value whatever their shape."""

from __future__ import annotations

import base64
import json
import logging
import secrets as random_secrets
import string
from collections.abc import Callable

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from autarky.core.logging import configure_logging, redact
from autarky.core.redaction import REDACTED, current_secrets, redact_text, secret_values


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


# --- secrets configured by value, token shapes, and what the renderer adds ---------------------------

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhdXRhcmt5IiwiZXhwIjoxNzAwMDAwMDAwfQ"
    ".Qm9ndXNTaWduYXR1cmVfMTIzNDU2Nzg5MA"
)


def _json_log(capsys: pytest.CaptureFixture[str], emit: Callable[[], None]) -> str:
    configure_logging("json", "info")
    try:
        emit()
    finally:
        structlog.reset_defaults()
    return capsys.readouterr().err


def test_jwt_and_bearer_in_a_log_line_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    def emit() -> None:
        structlog.get_logger("t").info(f"calling with Authorization: Bearer {JWT}", header=f"Bearer {JWT}")
        structlog.get_logger("t").info("refresh", token_value=JWT, url="https://example.org/?q=1")
        logging.getLogger("stdlib").warning("got jwt %s and bearer %s", JWT, "Bearer Zm9vYmFyYmF6MTIz")

    out = _json_log(capsys, emit)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(lines) == 3
    assert "eyJ" not in out and "Zm9vYmFyYmF6MTIz" not in out
    assert lines[0]["event"] == "calling with Authorization: Bearer ***"
    assert lines[0]["header"] == "Bearer ***"
    assert lines[1]["token_value"] == REDACTED  # a secret-named field: hidden whole
    assert lines[1]["url"] == "https://example.org/?q=1"  # ordinary values stay readable
    assert lines[2]["event"] == "got jwt *** and bearer Bearer ***"


def test_a_configured_secret_without_any_known_shape_is_redacted_everywhere(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "plain" + random_secrets.token_hex(8)  # no sk-/ghp_/JWT shape: only its value gives it away
    monkeypatch.setenv("AUTARKY_OPENAI_API_KEY", secret)

    def emit() -> None:
        log = structlog.get_logger("t")
        log.info(f"model answered for {secret}", detail={"nested": [f"x{secret}y"]})
        logging.getLogger("temporalio.worker").warning("payload %r", {"key": secret})
        try:
            raise RuntimeError(f"request failed with key {secret}")
        except RuntimeError:
            log.exception("call failed")  # the traceback is rendered after the event dict is redacted

    out = _json_log(capsys, emit)
    assert secret not in out
    assert out.count(REDACTED) >= 4
    assert "request failed with key ***" in out


def test_console_format_redacts_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = random_secrets.token_urlsafe(18)
    monkeypatch.setenv("GITHUB_TOKEN", secret)
    configure_logging("console", "info")
    try:
        structlog.get_logger("t").info("pushing", remote=f"https://x:{secret}@github.com/o/r", jwt=JWT)
        try:
            raise ValueError(secret)
        except ValueError:
            structlog.get_logger("t").exception("push failed")
    finally:
        structlog.reset_defaults()
    err = capsys.readouterr().err
    assert "pushing" in err and "push failed" in err
    assert secret not in err and "eyJhbGci" not in err


def test_secret_values_come_from_secret_looking_variables_only() -> None:
    environ = {
        "TEMPORAL_API_KEY": "temporal-key-123",
        "GITHUB_TOKEN": "gh-token-value-1",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
        "DB_PASSWORD": "correct horse",
        "GOOGLE_APPLICATION_CREDENTIALS_JSON": '{"type": "service_account"}',
        "AUTARKY_ANTHROPIC_API_KEY": "anthropic-value",
        "SHORT_TOKEN": "abc1234",  # under 8 characters: would mangle ordinary text
        "TEMPORAL_TLS_CLIENT_KEY_PATH": "/etc/temporal/client.key",  # where a secret lives, not the secret
        "HOME": "/home/someone-long",
        "AUTARKY_LOG_FORMAT": "console-ish",
    }
    assert secret_values(environ) == {
        "temporal-key-123",
        "gh-token-value-1",
        "wJalrXUtnFEMI/K7MDENG",
        "correct horse",
        '{"type": "service_account"}',
        "anthropic-value",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"jwt {JWT} end", "jwt *** end"),
        ("Authorization: Bearer abc.DEF-123_456~xyz", "Authorization: Bearer ***"),
        ("authorization: bearer 0123456789abcdef", "authorization: bearer ***"),
        (f"Basic {base64.b64encode(b'alice:s3cret').decode()}", "Basic ***"),
        ("key sk-ant-api03-abcdefghijk and sk-proj-ABCDEFGH12345678", "key *** and ***"),
        ("ghp_" + "a" * 36 + " github_pat_" + "B" * 30, "*** ***"),
        ("AKIAABCDEFGHIJKLMNOP", "***"),
        # prose and ordinary values stay as they are
        ("Basic settings are fine; Bearer authentication is described", None),
        ("the bearer of news; basic idea; eyJ alone; sk-short", None),
        ("monitor_interval=30s cpu_percent=85.0 path=/var/lib/autarky", None),
    ],
)
def test_token_shapes(text: str, expected: str | None) -> None:
    assert redact_text(text) == (text if expected is None else expected)


# Secrets as people paste them: any printable character but the marker's own '*' (a secret of stars
# cannot be told apart from the marker that replaces it).
_SECRET_ALPHABET = (string.ascii_letters + string.digits + string.punctuation + " éü€").replace("*", "")
_secrets = st.text(alphabet=_SECRET_ALPHABET, min_size=8, max_size=40)
_text = st.text(alphabet=_SECRET_ALPHABET + "\n\t", max_size=30)


@settings(max_examples=150, derandomize=True, deadline=None)
@given(secret=_secrets, before=_text, after=_text)
def test_a_secret_embedded_anywhere_is_gone(secret: str, before: str, after: str) -> None:
    text = before + secret + after
    for rendered in (text, repr(text), json.dumps(text), json.dumps({"m": text}, ensure_ascii=False)):
        assert secret not in redact_text(rendered, [secret])
    out = redact({"event": text, "extra": [text, (text,)], "n": 3}, [secret])
    assert secret not in json.dumps(out, ensure_ascii=False) and out["n"] == 3


@settings(max_examples=60, derandomize=True, deadline=None)
@given(secrets=st.lists(_secrets, min_size=1, max_size=4, unique=True), filler=_text)
def test_several_secrets_from_the_environment_are_all_gone(secrets: list[str], filler: str) -> None:
    environ = {f"SERVICE_{i}_TOKEN": secret for i, secret in enumerate(secrets)} | {"PATH": "/usr/bin"}
    text = filler.join(reversed(secrets)) + filler
    redacted = redact_text(text, secret_values(environ))
    assert not any(secret in redacted for secret in secrets)


def test_current_secrets_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    value = random_secrets.token_hex(12)
    assert value not in current_secrets()
    monkeypatch.setenv("SOME_SERVICE_PASSWORD", value)
    assert value in current_secrets()
    monkeypatch.delenv("SOME_SERVICE_PASSWORD")
    assert value not in current_secrets()


def test_a_retryable_activity_failure_is_one_line_and_a_final_one_keeps_its_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The SDK logs every failed attempt with its exception; an offline stack fails a source every few
    seconds, and pages of tracebacks written to a pipe blocked the worker (issue 26, `make run` offline)."""
    from temporalio.exceptions import ApplicationError

    configure_logging("console", "info")
    sdk = logging.getLogger("temporalio.activity")
    try:
        for error in (
            ApplicationError("arxiv: could not reach export.arxiv.org; retrying", type="SourceUnavailable"),
            ApplicationError("github: HTTP 401; replace the token", non_retryable=True),
        ):
            try:
                raise error
            except ApplicationError:
                sdk.warning("Completing activity as failed", exc_info=True)
    finally:
        structlog.reset_defaults()
    err = capsys.readouterr().err
    retryable, final = err.split("Completing activity as failed")[1:]
    assert "SourceUnavailable: arxiv: could not reach export.arxiv.org; retrying" in retryable
    assert "Traceback" not in retryable
    assert "Traceback" in final and "replace the token" in final
