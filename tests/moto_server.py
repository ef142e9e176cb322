"""Moto's server mode for tests that talk to AWS over real HTTP, and a proxy that injects AWS's errors.

`moto_server()` runs `moto.server.ThreadedMotoServer` on a free port of 127.0.0.1 and yields its endpoint;
boto3 reaches it with `endpoint_url` and any fake credentials. Moto answers most calls faithfully but never
throttles nor fails like AWS does: `FaultProxy` sits in front of it, answers chosen requests with the status,
headers and error body that AWS would send and forwards everything else, counting requests per action.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

from moto.server import ThreadedMotoServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto server for the duration of the block: its endpoint URL, e.g. `http://127.0.0.1:40123`."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def reset(endpoint: str) -> None:
    """Forget every resource moto holds (all services, all regions)."""
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)


# ------------------------------------------------------------------------------------ AWS's error bodies


def query_error(code: str, message: str, *, sender: bool = True) -> bytes:
    """The query protocol's error (Auto Scaling, IAM, STS…), as AWS sends it."""
    kind = "Sender" if sender else "Receiver"
    return (
        '<ErrorResponse xmlns="https://autoscaling.amazonaws.com/doc/2011-01-01/">'
        f"<Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>0a1b2c3d-4e5f-6789-abcd-ef0123456789</RequestId></ErrorResponse>"
    ).encode()


def ec2_error(code: str, message: str) -> bytes:
    """EC2's own error shape."""
    return (
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        "<RequestID>0a1b2c3d-4e5f-6789-abcd-ef0123456789</RequestID></Response>"
    ).encode()


def json_error(code: str, message: str) -> bytes:
    """The JSON protocol's error (ECS)."""
    return json.dumps({"__type": code, "message": message}).encode()


# ------------------------------------------------------------------------------------------- the proxy


@dataclass
class Fault:
    action: str  # "SetDesiredCapacity", "UpdateService", "RunInstances"…
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1  # answered this many times, then the requests reach moto again


class FaultProxy:
    """An HTTP proxy in front of `upstream` that answers scripted faults and counts requests per action."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.requests: Counter[str] = Counter()  # every request seen, faulted or forwarded
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail(
        self,
        action: str,
        *,
        status: int,
        body: bytes,
        content_type: str = "text/xml",
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        with self._lock:
            self.faults.append(Fault(action, status, body, content_type, headers or {}, times))

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _take(self, action: str) -> Fault | None:
        with self._lock:
            self.requests[action] += 1
            for fault in self.faults:
                if fault.action == action and fault.times > 0:
                    fault.times -= 1
                    return fault
            return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = proxy._take(_action(self.headers.get("X-Amz-Target"), body))
                if fault is not None:
                    self._answer(
                        fault.status,
                        [("Content-Type", fault.content_type), *fault.headers.items()],
                        body=fault.body,
                    )
                    return
                connection = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    connection.request(self.command, self.path, body=body, headers=headers)
                    answer = connection.getresponse()
                    content = answer.read()
                    kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP]
                    self._answer(answer.status, kept, body=content)
                finally:
                    connection.close()

            do_GET = do_POST

            def _answer(self, status: int, headers: list[tuple[str, str]], *, body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


def _action(target: str | None, body: bytes) -> str:
    """The operation of a request: the JSON protocol's X-Amz-Target, or the query protocol's Action."""
    if target:
        return target.rsplit(".", 1)[-1]
    return parse_qs(body.decode(errors="replace")).get("Action", ["?"])[0]
