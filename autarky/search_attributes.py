"""Autarky's custom search attributes: what the Temporal UI filters on ("what is waiting for me")."""

from temporalio.common import SearchAttributeKey

KIND = SearchAttributeKey.for_keyword("AutarkyKind")  # autopilot, housekeeping, ab_test, ...
RISK = SearchAttributeKey.for_float("AutarkyRisk")  # highest risk among pending approvals
APPROVAL = SearchAttributeKey.for_keyword("AutarkyApproval")  # "pending" or "none"

ALL = (KIND, RISK, APPROVAL)

# `temporal server start-dev --search-attribute NAME=TYPE` spelling of each.
DEV_SERVER_TYPES = {KIND.name: "Keyword", RISK.name: "Double", APPROVAL.name: "Keyword"}
