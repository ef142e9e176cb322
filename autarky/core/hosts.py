"""Host identity and routing: which task queue reaches which machine (pure code).

Every worker has a host identity (`host_id`, the hostname by default). Besides the shared task queue it
polls its host queue `<task_queue>@<host_id>`, where work that belongs to that machine runs (probes,
clearing its cache); the process that owns the host's local worker pool also polls the host's control
queue `<control_task_queue>@<host_id>` (pool restarts). Worker identities are `<pid>@<host_id>`, so the
pollers of the shared queue tell which hosts run a worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel, Field
from temporalio import activity

SEPARATOR = "@"


def host_queue(task_queue: str, host_id: str) -> str:
    return f"{task_queue}{SEPARATOR}{host_id}"


def worker_identity(pid: int, host_id: str) -> str:
    return f"{pid}{SEPARATOR}{host_id}"


def host_of_identity(identity: str) -> str | None:
    """The host named by a worker identity `<pid>@<host_id>`; None for identities of other shapes."""
    pid, sep, host = identity.rpartition(SEPARATOR)
    return host if sep and pid and host else None


def hosts_of(identities: Iterable[str]) -> list[str]:
    """The distinct hosts among poller identities, sorted (a stable order for the workflow)."""
    return sorted({h for h in (host_of_identity(i) for i in identities) if h})


class DiscoverHostsInput(BaseModel):
    task_queue: str  # the shared queue whose pollers are listed


class DiscoveredHosts(BaseModel):
    hosts: list[str]
    # When each host's workers last asked for work (the newest poll among them).
    last_polled: dict[str, datetime] = Field(default_factory=dict)


# The activity listing the hosts, typed for workflows (the SDK takes its name and result type from here);
# it runs in activities/infra/hosts.py, and tests/test_activity_contract.py keeps the two equal.
@activity.defn(name="discover_hosts")
async def discover_hosts(request: DiscoverHostsInput) -> DiscoveredHosts:
    raise NotImplementedError("activities/infra/hosts.py")
