"""What the code assumes of the Temporal SDK and of CPython's internals, checked against the real thing.

`autarky.client.is_unreachable` recognises "no server answered" by the SDK bridge's error text, and
`autarky.core.redaction.current_secrets` reads `os.environ._data`. Neither is a public API: an upgrade
may change them silently (the CLI would print a traceback instead of "no Temporal server", the
redaction would fall back to decoding the environment on every log line). These tests fail first.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeAlias

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from autarky.client import _NO_SERVER, is_unreachable
from autarky.core.redaction import current_secrets
from autarky.core.temporal import temporal_binary

UPDATE = "the SDK's connection errors changed: update _NO_SERVER in autarky/client.py"

# HTTP/2 frame types and flags (RFC 9113) for the stand-in of a proxy in front of no Temporal server.
_HEADERS, _SETTINGS = 1, 4
_ACK, _END_STREAM_AND_HEADERS = 0x1, 0x5
# HPACK: ":status: 404" is static entry 13; any other status is a literal on the name of entry 8.
_STATUS_BLOCK = {404: b"\x8d", 503: b"\x08\x03503"}


Handler: TypeAlias = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _answer_every_request_with(status: int) -> Handler:
    """An HTTP/2 server answering each request with a bare HTTP status, as a proxy or ingress does when
    no Temporal server stands behind it (gRPC maps 503 to Unavailable, 404 to Unimplemented)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readexactly(24)  # the client's connection preface
            writer.write(_frame(_SETTINGS, 0, 0))
            while True:
                head = await reader.readexactly(9)
                kind, flags = head[3], head[4]
                stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
                await reader.readexactly(int.from_bytes(head[:3], "big"))
                if kind == _SETTINGS and not flags & _ACK:
                    writer.write(_frame(_SETTINGS, _ACK, 0))
                elif kind == _HEADERS:
                    writer.write(_frame(_HEADERS, _END_STREAM_AND_HEADERS, stream, _STATUS_BLOCK[status]))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client gave up
        finally:
            writer.close()

    return serve


async def _connect_error(address: str) -> BaseException:
    with pytest.raises((RuntimeError, RPCError)) as raised:
        await Client.connect(address)
    return raised.value


def _assert_unreachable(error: BaseException, sign: str) -> None:
    assert isinstance(error, RuntimeError), (UPDATE, error)
    assert str(error).startswith("Failed client connect"), (UPDATE, str(error))
    assert sign in str(error), (UPDATE, sign, str(error))
    assert is_unreachable(error), (UPDATE, str(error))


@pytest.fixture
async def silent_listener() -> AsyncIterator[str]:
    """A port that accepts connections and never says a word (a hung server, a half-open tunnel)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield f"127.0.0.1:{sock.getsockname()[1]}"


async def test_nothing_listening_is_unreachable() -> None:
    with socket.socket() as sock:  # a port just freed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    _assert_unreachable(await _connect_error(address), "Server connection error")


@pytest.mark.slow
async def test_a_server_that_never_answers_is_unreachable(silent_listener: str) -> None:
    # The SDK waits 30 s for the first call's answer, whatever connect_timeout says (temporalio 1.35).
    _assert_unreachable(await _connect_error(silent_listener), "Timeout expired")


@pytest.mark.parametrize(("status", "sign"), [(503, "code: Unavailable"), (404, "code: Unimplemented")])
async def test_a_proxy_with_no_temporal_server_behind_it_is_unreachable(status: int, sign: str) -> None:
    server = await asyncio.start_server(_answer_every_request_with(status), "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        _assert_unreachable(await _connect_error(f"127.0.0.1:{port}"), sign)
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.slow
async def test_a_server_gone_after_connecting_is_unreachable() -> None:
    """A call on a connected client whose server stopped raises RPCError(UNAVAILABLE), not the bridge's
    RuntimeError: is_unreachable reads the status there."""
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()), dev_server_log_level="error"
    )
    client = environment.client
    await environment.shutdown()
    with pytest.raises(RPCError) as raised:
        await client.count_workflows()
    assert raised.value.status == RPCStatusCode.UNAVAILABLE, (UPDATE, raised.value.status, raised.value)
    assert is_unreachable(raised.value)


def test_every_sign_of_no_server_is_checked_above() -> None:
    assert set(_NO_SERVER) == {
        "Server connection error",
        "Timeout expired",
        "code: Unavailable",
        "code: Unimplemented",
    }, "a new sign needs a test here that produces it"


def test_os_environ_data_mirrors_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """current_secrets reads os.environ._data (encoded names and values) to skip decoding the whole
    environment on every log line; if CPython renames or reshapes it, that shortcut falls away silently."""
    raw = getattr(os.environ, "_data", None)
    assert isinstance(raw, dict), "os.environ._data is gone: update autarky/core/redaction.py"
    value = "sdk-assumption-" + os.urandom(8).hex()
    monkeypatch.setenv("AUTARKY_TEST_ASSUMPTION_TOKEN", value)
    decoded = {os.fsdecode(name): os.fsdecode(v) for name, v in raw.items()}
    assert decoded == dict(os.environ), "os.environ._data no longer mirrors os.environ"
    assert decoded["AUTARKY_TEST_ASSUMPTION_TOKEN"] == value
    assert value in current_secrets()
    monkeypatch.delenv("AUTARKY_TEST_ASSUMPTION_TOKEN")
    assert value not in current_secrets()
