"""Test worker processes: start `python -m MODULE ARGS…` and wait until it prints "polling"."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_DRAINS: set[asyncio.Task[bytes]] = set()


async def spawn_worker(module: str, *args: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    seen = []
    while (line := await asyncio.wait_for(process.stdout.readline(), 30)).strip() != b"polling":
        assert line, b"".join(seen)  # the worker exited before polling
        seen.append(line)
    # Keep reading its log, so a full pipe never blocks the worker.
    _DRAINS.add(asyncio.create_task(process.stdout.read()))
    return process
