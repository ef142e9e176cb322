"""Autarky's custom search attributes: what the Temporal UI filters on ("what is waiting for me")."""

from __future__ import annotations

from collections.abc import Iterable

from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey

KIND = SearchAttributeKey.for_keyword("AutarkyKind")  # autopilot, housekeeping, ab_test, ...
RISK = SearchAttributeKey.for_float("AutarkyRisk")  # highest risk among pending approvals
APPROVAL = SearchAttributeKey.for_keyword("AutarkyApproval")  # "pending" or "none"
RESEARCH_ITEMS = SearchAttributeKey.for_int("AutarkyItems")  # items a research cycle analysed
RESEARCH_TOP_SCORE = SearchAttributeKey.for_float("AutarkyTopScore")  # a research cycle's best score

SLOT = SearchAttributeKey.for_keyword("AutarkySlot")  # the model slot an A/B test runs on
DECISION = SearchAttributeKey.for_keyword("AutarkyDecision")  # an A/B test's: running, promoted, kept, …

AGENT = SearchAttributeKey.for_keyword("AutarkyAgent")  # the agent a self-modification improves

ALL = (KIND, RISK, APPROVAL, RESEARCH_ITEMS, RESEARCH_TOP_SCORE, SLOT, DECISION, AGENT)

# How the `temporal` CLI (and tcld) spell each indexed value type.
TYPE_NAMES = {
    SearchAttributeIndexedValueType.TEXT: "Text",
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.DOUBLE: "Double",
    SearchAttributeIndexedValueType.BOOL: "Bool",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}


def type_name(indexed_value_type: int) -> str:
    """The CLI spelling of an indexed value type (a temporalio enum or the API's IndexedValueType int)."""
    try:
        return TYPE_NAMES[SearchAttributeIndexedValueType(int(indexed_value_type))]
    except ValueError:
        return f"unknown type {int(indexed_value_type)}"


# `temporal server start-dev --search-attribute NAME=TYPE` spelling of each.
DEV_SERVER_TYPES = {key.name: type_name(key.indexed_value_type) for key in ALL}


def create_commands(namespace: str, missing: Iterable[SearchAttributeKey]) -> str:
    """What a person runs to create the missing attributes: the `temporal` CLI, or tcld on Temporal Cloud."""
    keys = list(missing)
    if not keys:
        return ""
    lines = [
        f"temporal operator search-attribute create --namespace {namespace} "
        f"--name {key.name} --type {type_name(key.indexed_value_type)}"
        for key in keys
    ]
    pairs = " ".join(f'--sa "{key.name}={type_name(key.indexed_value_type)}"' for key in keys)
    return "\n".join(
        [
            *lines,
            f"(on Temporal Cloud: tcld namespace search-attributes add -n {namespace} {pairs})",
        ]
    )


def conflict_message(namespace: str, key: SearchAttributeKey, existing_type: int) -> str:
    """A name that exists with another type: Autarky cannot use it, and Temporal cannot change its type."""
    return (
        f"search attribute {key.name} exists on namespace {namespace} as "
        f"{type_name(existing_type)}, but Autarky needs {type_name(key.indexed_value_type)}: "
        f"Temporal cannot change a search attribute's type. If nothing else uses it, remove it "
        f"(temporal operator search-attribute remove --namespace {namespace} --name {key.name}) "
        f"and run `autarky up` again; otherwise give Autarky another namespace"
    )
