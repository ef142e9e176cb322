"""Autarky's search attributes on an external cluster (the embedded server is started with them).

Registered through the operator service where Autarky may; where the cluster refuses (no permission, or no
operator service, as on Temporal Cloud), the exact commands a person runs are printed and `autarky up`
carries on. A name that exists with another type is reported, never changed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

import structlog
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

from autarky.core import search_attributes as sa

log = structlog.get_logger(__name__)

# The cluster will not let this client manage search attributes: a person has to.
REFUSED = frozenset({RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED})


@dataclass
class Registration:
    """What `register_search_attributes` did on one namespace."""

    namespace: str
    registered: list[str] = field(default_factory=list)  # added now
    present: list[str] = field(default_factory=list)  # already there with the right type
    conflicts: dict[str, str] = field(default_factory=dict)  # name -> what is wrong with it
    missing: list[SearchAttributeKey] = field(default_factory=list)  # refused: a person must create them
    refused: str | None = None  # the cluster's answer when it refused

    @property
    def commands(self) -> str:
        """The commands a person must run for the missing attributes ("" when none are missing)."""
        return sa.create_commands(self.namespace, self.missing)

    def message(self) -> str:
        """What a person must do ("" when nothing): conflicts, and the commands for missing attributes."""
        parts = [f"error: {problem}" for problem in self.conflicts.values()]
        if self.missing:
            names = ", ".join(key.name for key in self.missing)
            parts.append(
                f"Autarky may not register its search attributes on namespace {self.namespace} "
                f"({self.refused}); until {names} exist, workflows and schedules that set them fail. "
                f"Run:\n{self.commands}"
            )
        return "\n".join(parts)


async def register_search_attributes(
    client: Client, keys: Sequence[SearchAttributeKey] = sa.ALL, out: TextIO | None = None
) -> Registration:
    """Add the attributes missing from the client's namespace; report (to `out`, default stderr) what a
    person must do about those it may not add or that exist with another type."""
    result = Registration(client.namespace)
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        existing = dict(listed.custom_attributes)
    except RPCError as error:
        if error.status not in REFUSED:
            raise
        result.missing, result.refused = list(keys), _why(error)
    else:
        to_add: list[SearchAttributeKey] = []
        for key in keys:
            wanted = int(key.indexed_value_type)
            if key.name not in existing:
                to_add.append(key)
            elif existing[key.name] == wanted:
                result.present.append(key.name)
            else:
                result.conflicts[key.name] = sa.conflict_message(client.namespace, key, existing[key.name])
        if to_add:
            try:
                await client.operator_service.add_search_attributes(
                    AddSearchAttributesRequest(
                        namespace=client.namespace,
                        search_attributes={
                            key.name: IndexedValueType.ValueType(int(key.indexed_value_type))
                            for key in to_add
                        },
                    )
                )
                result.registered = [key.name for key in to_add]
            except RPCError as error:
                if error.status not in REFUSED:
                    raise
                result.missing, result.refused = to_add, _why(error)
    log.info(
        "search attributes",
        namespace=result.namespace,
        registered=result.registered,
        present=result.present,
        conflicts=list(result.conflicts),
        missing=[key.name for key in result.missing],
    )
    if message := result.message():
        print(message, file=out or sys.stderr, flush=True)
    return result


def _why(error: RPCError) -> str:
    return f"{error.status.name if error.status else 'refused'}: {error.message}"
