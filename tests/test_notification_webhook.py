"""The notification webhook, against a real HTTP server on a local socket: what it receives, and how each
answer is classified for Temporal (retry, retry after the asked delay, give up)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.infra.notifications import recent_notifications
from activities.infra.remediation import RemediationActivities
from activities.infra.webhook import retry_after
from activities.storage.handle import KnowledgeBaseHandle
from autarky.core.actions import ActionRequest
from autarky.core.notification_settings import NotificationSettings

TOKEN = "T0KEN-in-the-path"


@dataclass
class Receiver:
    """A webhook: answers with the next of `answers` (status, headers), then 204; records each POST."""

    url: str
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.received.append((dict(self.headers), body))
            status, headers = state.answers.pop(0) if state.answers else (204, {})
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/{TOKEN}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def activities(tmp_path: Path, url: str) -> tuple[RemediationActivities, KnowledgeBaseHandle]:
    kb = KnowledgeBaseHandle(f"sqlite:///{tmp_path / 'knowledge.db'}")
    settings = NotificationSettings(webhook_url=SecretStr(url), webhook_timeout=timedelta(seconds=5))
    return RemediationActivities(tmp_path, kb, settings), kb


def request(action_id: str = "ap-1f2e:act-1") -> ActionRequest:
    return ActionRequest(action_id=action_id, action_type="notify", reason="disk at 96 %", host="web-1")


async def test_a_notification_is_stored_and_posted_with_its_key(tmp_path: Path, receiver: Receiver) -> None:
    notify, kb = activities(tmp_path, receiver.url)
    result = await ActivityEnvironment().run(notify.notify, request())
    assert result.success and "http://127.0.0.1" in result.detail and TOKEN not in result.detail
    [(headers, body)] = receiver.received
    assert headers["Idempotency-Key"] == "ap-1f2e:act-1" and headers["Content-Type"] == "application/json"
    assert body["key"] == "ap-1f2e:act-1" and body["host"] == "web-1" and body["reason"] == "disk at 96 %"
    [stored] = recent_notifications(kb.get())
    assert stored.key == "ap-1f2e:act-1" and stored.delivered_at is not None
    # A retry after the webhook took it (say the worker died before reporting): stored once, not re-sent.
    await ActivityEnvironment().run(notify.notify, request())
    assert len(receiver.received) == 1 and len(recent_notifications(kb.get())) == 1


async def test_a_server_error_is_retried_and_the_retry_delivers(tmp_path: Path, receiver: Receiver) -> None:
    receiver.answers = [(503, {"Retry-After": "7"})]
    notify, kb = activities(tmp_path, receiver.url)
    with pytest.raises(ApplicationError) as failed:
        await ActivityEnvironment().run(notify.notify, request())
    assert not failed.value.non_retryable
    assert failed.value.next_retry_delay == timedelta(seconds=7)  # what the receiver asked for
    assert "HTTP 503" in str(failed.value) and TOKEN not in str(failed.value)
    [stored] = recent_notifications(kb.get())  # stored before the POST: `autarky notifications` shows it
    assert stored.delivered_at is None
    result = await ActivityEnvironment().run(notify.notify, request())  # Temporal's retry
    assert result.success
    assert [h["Idempotency-Key"] for h, _ in receiver.received] == ["ap-1f2e:act-1"] * 2
    assert len(recent_notifications(kb.get())) == 1  # the retry is not a second notification


async def test_a_refusal_is_final_and_says_what_to_check(tmp_path: Path, receiver: Receiver) -> None:
    receiver.answers = [(404, {})]
    notify, _ = activities(tmp_path, receiver.url)
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(notify.notify, request())
    assert refused.value.non_retryable
    assert "HTTP 404" in str(refused.value) and "notifications.webhook_url" in str(refused.value)
    assert TOKEN not in str(refused.value)


async def test_a_webhook_that_does_not_answer_is_retried(tmp_path: Path, receiver: Receiver) -> None:
    server_gone = receiver.url.rsplit(":", 1)[0] + ":9/hooks/" + TOKEN  # the discard port: nobody listens
    notify, _ = activities(tmp_path, server_gone)
    with pytest.raises(ApplicationError) as failed:
        await ActivityEnvironment().run(notify.notify, request())
    assert not failed.value.non_retryable and "did not answer" in str(failed.value)
    assert TOKEN not in str(failed.value)


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after("120") == timedelta(seconds=120)
    assert retry_after("999999") == timedelta(hours=1)  # capped
    assert retry_after(None) is None and retry_after("soon") is None
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == timedelta(seconds=30)
