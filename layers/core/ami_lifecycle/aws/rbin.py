"""The Recycle Bin's retention rules of one region (rbin ListRules, then GetRule per rule: only
GetRule says which tags a rule retains or excludes)."""

from __future__ import annotations

from typing import Any

from ..domain.recycle_bin import Rule

RESOURCE_TYPES = ("EC2_IMAGE", "EBS_SNAPSHOT")


def retention_rules(client: Any) -> list[Rule]:
    """Every available rule for AMIs and EBS snapshots. Raises the client's errors."""
    rules: list[Rule] = []
    for resource_type in RESOURCE_TYPES:
        for page in client.get_paginator("list_rules").paginate(ResourceType=resource_type):
            for summary in page.get("Rules", []):
                detail = client.get_rule(Identifier=summary["Identifier"])
                rule = Rule.of({"ResourceType": resource_type, **detail})
                if rule is not None:
                    rules.append(rule)
    return rules
