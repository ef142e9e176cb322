"""Registering Autarky's search attributes on an external cluster: a fresh dev server started without them."""

from __future__ import annotations

import io
import shlex
import subprocess
from collections.abc import AsyncIterator

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from autarky.core import search_attributes as sa
from autarky.core.temporal import temporal_binary
from workers.search_attributes import Registration, register_search_attributes

NAMES = [
    "AutarkyKind",
    "AutarkyRisk",
    "AutarkyApproval",
    "AutarkyItems",
    "AutarkyTopScore",
    "AutarkySlot",
    "AutarkyDecision",
    "AutarkyAgent",
]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    """A dev server of its own, without Autarky's search attributes (the session server has them)."""
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()), dev_server_log_level="error"
    )
    try:
        yield environment.client
    finally:
        await environment.shutdown()


async def custom_attributes(client: Client) -> dict[str, int]:
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    return dict(listed.custom_attributes)


async def test_registers_them_then_finds_them_present(client: Client) -> None:
    assert not set(NAMES) & set(await custom_attributes(client))
    out = io.StringIO()

    first = await register_search_attributes(client, out=out)
    assert first.namespace == client.namespace == "default"
    assert first.registered == NAMES
    assert (first.present, first.conflicts, first.missing) == ([], {}, [])
    assert {name: kind for name, kind in (await custom_attributes(client)).items() if name in NAMES} == {
        "AutarkyKind": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "AutarkyRisk": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
        "AutarkyApproval": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "AutarkyItems": IndexedValueType.INDEXED_VALUE_TYPE_INT,
        "AutarkyTopScore": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
        "AutarkySlot": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "AutarkyDecision": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "AutarkyAgent": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    }

    second = await register_search_attributes(client, out=out)
    assert second.registered == []
    assert second.present == NAMES
    assert out.getvalue() == ""  # nothing for a person to do


async def test_a_name_with_another_type_is_reported_and_left_alone(client: Client) -> None:
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={"AutarkyRisk": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD},
        )
    )
    out = io.StringIO()

    result = await register_search_attributes(client, out=out)
    assert result.registered == [n for n in NAMES if n != "AutarkyRisk"]
    assert list(result.conflicts) == ["AutarkyRisk"]
    assert (await custom_attributes(client))["AutarkyRisk"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    printed = out.getvalue()
    assert "AutarkyRisk exists on namespace default as Keyword, but Autarky needs Double" in printed
    assert "temporal operator search-attribute remove --namespace default --name AutarkyRisk" in printed


def test_the_commands_for_missing_attributes_name_each_one_with_its_type() -> None:
    text = sa.create_commands("prod.a1", [sa.RISK, sa.APPROVAL])
    assert text.splitlines() == [
        "temporal operator search-attribute create --namespace prod.a1 --name AutarkyRisk --type Double",
        "temporal operator search-attribute create --namespace prod.a1 --name AutarkyApproval --type Keyword",
        "(on Temporal Cloud: tcld namespace search-attributes add -n prod.a1 "
        '--sa "AutarkyRisk=Double" --sa "AutarkyApproval=Keyword")',
    ]
    assert sa.create_commands("prod.a1", []) == ""


def test_a_refused_registration_tells_a_person_what_to_run() -> None:
    refused = Registration(
        "prod.a1", present=["AutarkyKind"], missing=[sa.RISK], refused="PERMISSION_DENIED: not allowed"
    )
    message = refused.message()
    assert "PERMISSION_DENIED: not allowed" in message
    assert (
        "temporal operator search-attribute create --namespace prod.a1 --name AutarkyRisk --type Double"
        in message.splitlines()
    )
    assert "AutarkyKind" not in message  # present: nothing to do about it
    assert Registration("prod.a1", present=NAMES).message() == ""


async def test_the_printed_commands_create_what_autarky_needs(client: Client) -> None:
    """Run the `temporal` commands exactly as printed (plus the server's address): Autarky then finds them."""
    address = client.service_client.config.target_host
    for line in sa.create_commands(client.namespace, sa.ALL).splitlines():
        if line.startswith("temporal "):
            command = [str(temporal_binary()), *shlex.split(line)[1:], "--address", address]
            subprocess.run(command, check=True, capture_output=True, timeout=30)

    result = await register_search_attributes(client, out=io.StringIO())
    assert result.registered == []
    assert result.present == NAMES
