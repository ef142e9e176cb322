"""Which hosts run an Autarky worker: the pollers of the shared task queue, as the server lists them.

Every worker's identity is `<pid>@<host_id>` (autarky.core.hosts), so the server's own record of who polls
answers the question without any registry of ours; a host whose workers stop polling drops out of the
list after the server's poller expiry (a few minutes).
"""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from autarky.core.hosts import DiscoveredHosts, DiscoverHostsInput, host_of_identity, hosts_of


@activity.defn(name="discover_hosts")
async def discover_hosts(request: DiscoverHostsInput) -> DiscoveredHosts:
    client = activity.client()
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=request.task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        )
    )
    last_polled: dict[str, datetime] = {}
    for poller in response.pollers:
        host = host_of_identity(poller.identity)
        if host is not None and poller.HasField("last_access_time"):
            polled = poller.last_access_time.ToDatetime(tzinfo=UTC)
            last_polled[host] = max(polled, last_polled.get(host, polled))
    return DiscoveredHosts(hosts=hosts_of(p.identity for p in response.pollers), last_polled=last_polled)
