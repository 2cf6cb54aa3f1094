"""Until when a retired image can be restored (domain/recycle_bin.py), as the Recycle Bin decides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ami_lifecycle.domain.recycle_bin import Rule, restorable

AT = datetime(2026, 12, 2, tzinfo=UTC)


def rule(
    kind: str,
    days: int,
    tags: tuple[tuple[str, str], ...] = (),
    exclude: tuple[tuple[str, str], ...] = (),
    status: str = "available",
) -> Rule:
    got = Rule.of(
        {
            "ResourceType": kind,
            "RetentionPeriod": {"RetentionPeriodValue": days, "RetentionPeriodUnit": "DAYS"},
            "ResourceTags": [{"ResourceTagKey": k, "ResourceTagValue": v} for k, v in tags],
            "ExcludeResourceTags": [{"ResourceTagKey": k, "ResourceTagValue": v} for k, v in exclude],
            "Status": status,
        }
    )
    assert got is not None
    return got


def test_region_level_rules_for_both_make_it_restorable_until_the_shorter() -> None:
    rules = [rule("EC2_IMAGE", 14), rule("EBS_SNAPSHOT", 7)]
    r = restorable(rules, {}, [{}], AT)
    assert r.until == AT + timedelta(days=7) and "until 2026-12-09T00:00:00Z" in r.detail


def test_without_a_snapshot_rule_it_is_not_restorable() -> None:
    r = restorable([rule("EC2_IMAGE", 14)], {}, [{}], AT)
    assert r.until is None and "no rule retains its snapshots" in r.detail


def test_tag_level_rules_match_any_tag_and_the_longest_wins() -> None:
    rules = [
        rule("EC2_IMAGE", 3, tags=(("team", "web"),)),
        rule("EC2_IMAGE", 30, tags=(("keep", ""),)),
        rule("EBS_SNAPSHOT", 60),
    ]
    assert restorable(rules, {"team": "web"}, [{}], AT).until == AT + timedelta(days=3)
    assert restorable(rules, {"team": "web", "keep": "x"}, [{}], AT).until == AT + timedelta(days=30)
    assert restorable(rules, {"team": "api"}, [{}], AT).until is None


def test_exclusion_tags_and_pending_rules_retain_nothing() -> None:
    rules = [rule("EC2_IMAGE", 10, exclude=(("scratch", "true"),)), rule("EBS_SNAPSHOT", 10)]
    assert restorable(rules, {"scratch": "true"}, [{}], AT).until is None
    assert (
        Rule.of({"ResourceType": "EC2_IMAGE", "Status": "pending", "RetentionPeriod": {"RetentionPeriodValue": 1}})
        is None
    )
