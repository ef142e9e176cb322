"""Keeping secrets out of text: configuration errors, log lines, anything a person or a file sees.

Two kinds of secret are replaced by ``***``:

- the values of the secrets this process knows: secret-looking environment variables (names containing
  KEY, TOKEN, SECRET, PASSWORD, PASSWD, PASSPHRASE or CREDENTIAL, e.g. ``TEMPORAL_API_KEY``,
  ``GITHUB_TOKEN``, ``AWS_SECRET_ACCESS_KEY``, ``AUTARKY_OPENAI_API_KEY``) and the secret settings
  `autarky.core.settings.load_settings` read (`remember`), whatever their shape;
- well-known shapes, even when nobody configured them: OpenAI/Anthropic ``sk-…``, GitHub ``ghp_…`` and
  ``github_pat_…``, AWS ``AKIA…``, Slack ``xox…-``, JWTs (``eyJ….….…``) and ``Bearer …`` / ``Basic …``
  authorization values.

`redact_text`, `redact_value` and `secret_values` are pure; `current_secrets` reads the process
environment and what `remember` was given.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

REDACTED = "***"
# Shorter values are not worth hiding and would mangle ordinary text ("true", "admin", a port…).
MIN_SECRET_LENGTH = 8

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL", re.IGNORECASE)
# …except variables that only say where a secret lives (TEMPORAL_TLS_CLIENT_KEY_PATH, *_KEY_FILE).
_LOCATION_NAME = re.compile(r"_(PATH|FILE|DIR)$", re.IGNORECASE)

# Keys of structured data (log fields, settings) whose whole value is hidden.
SECRET_KEY = re.compile(r"api[_-]?key|token|secret|password|passwd|credential|authorization", re.IGNORECASE)

_SHAPES = re.compile(
    r"\bsk-ant-[A-Za-z0-9_-]{8,}"  # Anthropic
    r"|\bsk-[A-Za-z0-9_-]{8,}"  # OpenAI (sk-…, sk-proj-…)
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"  # GitHub tokens
    r"|\bgithub_pat_[A-Za-z0-9_]{20,}"  # GitHub fine-grained tokens
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key ids
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"  # JWT: header.payload.signature
)
_BEARER = re.compile(r"\b(Bearer)(\s+)([A-Za-z0-9._~+/-]{8,}=*)", re.IGNORECASE)
_BASIC = re.compile(r"\b(Basic)(\s+)([A-Za-z0-9+/]{4,}={0,2})", re.IGNORECASE)


def secret_values(environ: Mapping[str, str], min_length: int = MIN_SECRET_LENGTH) -> frozenset[str]:
    """The values of secret-looking variables in `environ` (``os.environ``), but trivially short ones."""
    return frozenset(
        value
        for name, value in environ.items()
        if len(value) >= min_length and SECRET_NAME.search(name) and not _LOCATION_NAME.search(name)
    )


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every occurrence of a value in `secrets` and every well-known token shape replaced.

    A secret is also found where it was quoted: in ``repr`` and JSON form (escaped quotes, backslashes
    and non-ASCII). Every non-empty value given counts; callers leave out values too short to hide.
    """
    pattern = _values_pattern(frozenset(secret for secret in secrets if secret))
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    text = _BEARER.sub(_redact_bearer, text)
    text = _BASIC.sub(_redact_basic, text)
    return _SHAPES.sub(REDACTED, text)


def redact_value(value: Any, secrets: Iterable[str] = ()) -> Any:
    """`value` redacted: strings, and dicts, lists and tuples of them; a secret-named key's value whole."""
    known = frozenset(secrets)
    if isinstance(value, str):
        return redact_text(value, known)
    if isinstance(value, dict):
        return {
            k: REDACTED if SECRET_KEY.search(str(k)) else redact_value(v, known) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v, known) for v in value)
    return value


_remembered: set[str] = set()


def remember(secrets: Iterable[str]) -> None:
    """Add configured secret values (e.g. the SecretStr settings) to those `current_secrets` returns."""
    _remembered.update(secret for secret in secrets if len(secret) >= MIN_SECRET_LENGTH)


def current_secrets() -> frozenset[str]:
    """The secrets this process knows now: secret-looking environment variables and remembered values."""
    # Every log line asks: decoding the whole environment each time would cost more than the rest.
    raw = getattr(os.environ, "_data", None)
    snapshot = tuple(raw.items()) if isinstance(raw, dict) else tuple(os.environ.items())
    return _environ_secrets(snapshot) | _remembered


@lru_cache(maxsize=8)
def _environ_secrets(snapshot: tuple[tuple[bytes | str, bytes | str], ...]) -> frozenset[str]:
    return secret_values({os.fsdecode(name): os.fsdecode(value) for name, value in snapshot})


@lru_cache(maxsize=32)
def _values_pattern(secrets: frozenset[str]) -> re.Pattern[str] | None:
    forms = set()
    for secret in secrets:
        forms |= {
            secret,
            repr(secret)[1:-1],
            json.dumps(secret)[1:-1],
            json.dumps(secret, ensure_ascii=False)[1:-1],
        }
    forms.discard("")
    if not forms:
        return None
    # Longest first, so that a secret containing another one disappears whole.
    return re.compile("|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True)))


def _redact_bearer(match: re.Match[str]) -> str:
    token = match.group(3)
    # "Bearer authentication" is prose; a token has a digit or punctuation, or is long.
    if len(token) >= 20 or not token.isalpha():
        return f"{match.group(1)}{match.group(2)}{REDACTED}"
    return match.group(0)


def _redact_basic(match: re.Match[str]) -> str:
    """Basic credentials are base64 of ``user:password``; "basic settings" is not."""
    try:
        decoded = base64.b64decode(match.group(3), validate=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    if b":" not in decoded:
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}{REDACTED}"
