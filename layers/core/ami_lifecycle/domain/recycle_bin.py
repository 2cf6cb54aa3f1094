"""Recycle Bin retention rules (rbin GetRule) and until when a retired image can be restored
(PRODUCT.md section 10).

How the Recycle Bin decides (AWS docs, "Recycle Bin retention rules"): a rule applies to one
resource type (`EC2_IMAGE`, `EBS_SNAPSHOT`) in one region, and only once its `Status` is
`available`. A tag-level rule (with `ResourceTags`) retains a resource that has at least one of
its tags (a tag without a value matches any value of the key); a Region-level rule (no
`ResourceTags`) retains every resource of the type, except those with one of its
`ExcludeResourceTags`. Several matching rules: the longest retention period wins.

An image is restorable only with its snapshots: DeregisterImage with DeleteAssociatedSnapshots
deletes them, so both an `EC2_IMAGE` and an `EBS_SNAPSHOT` rule must retain them; the image is
restorable until the earlier of the two ends. Pure: the rules are given as GetRule returns them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .tags import format_instant


@dataclass(frozen=True)
class Rule:
    resource_type: str  # EC2_IMAGE or EBS_SNAPSHOT
    days: int
    tags: tuple[tuple[str, str], ...] = ()  # tag-level rule: any of these
    exclude: tuple[tuple[str, str], ...] = ()  # Region-level rule: none of these
    identifier: str = ""

    @classmethod
    def of(cls, rule: Mapping[str, Any]) -> Rule | None:
        """A rule as GetRule returns it; None when it does not (yet) retain anything."""
        if rule.get("Status", "available") != "available":
            return None
        period = rule.get("RetentionPeriod") or {}
        value = period.get("RetentionPeriodValue")
        if not isinstance(value, int) or value <= 0 or period.get("RetentionPeriodUnit", "DAYS") != "DAYS":
            return None

        def pairs(key: str) -> tuple[tuple[str, str], ...]:
            return tuple(
                (str(t.get("ResourceTagKey", "")), str(t.get("ResourceTagValue", "") or ""))
                for t in rule.get(key) or []
            )

        return cls(
            str(rule.get("ResourceType", "")),
            value,
            pairs("ResourceTags"),
            pairs("ExcludeResourceTags"),
            str(rule.get("Identifier", "")),
        )

    def retains(self, tags: Mapping[str, str]) -> bool:
        def has(pair: tuple[str, str]) -> bool:
            key, value = pair
            return key in tags and (not value or tags[key] == value)

        if self.tags:
            return any(has(p) for p in self.tags)
        return not any(has(p) for p in self.exclude)


def retention_days(rules: Iterable[Rule], resource_type: str, tags: Mapping[str, str]) -> int | None:
    """The longest retention of the rules that retain a resource of this type with these tags."""
    days = [r.days for r in rules if r.resource_type == resource_type and r.retains(tags)]
    return max(days) if days else None


@dataclass(frozen=True)
class Restorable:
    until: datetime | None  # None: not restorable
    detail: str


def restorable(
    rules: Sequence[Rule],
    image_tags: Mapping[str, str],
    snapshot_tags: Sequence[Mapping[str, str]],
    retired_at: datetime,
) -> Restorable:
    """Until when an image retired at `retired_at` can be restored from the Recycle Bin, with its
    snapshots (`snapshot_tags`: one mapping per snapshot deleted with it)."""
    image_days = retention_days(rules, "EC2_IMAGE", image_tags)
    if image_days is None:
        return Restorable(None, "no Recycle Bin rule retains it: not restorable")
    snapshot_days = [retention_days(rules, "EBS_SNAPSHOT", tags) for tags in snapshot_tags]
    if any(d is None for d in snapshot_days):
        return Restorable(
            None,
            f"the image stays {image_days} days in the Recycle Bin, but no rule retains its snapshots: not restorable",
        )
    days = min([image_days, *(d for d in snapshot_days if d is not None)])
    until = retired_at + timedelta(days=days)
    return Restorable(until, f"restorable from the Recycle Bin until {format_instant(until)}")
