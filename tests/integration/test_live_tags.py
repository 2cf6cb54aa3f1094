"""Live tags (PRODUCT.md section 1): a retention changed after adoption is honoured by the next sweep.

The tool writes `P:expiry-basis` beside the `P:expires-at` it computes; a `P:expires-at` without a
matching basis is the user's and always wins.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ami_lifecycle.domain.settings import Settings
from ami_lifecycle.domain.tags import format_instant
from ami_lifecycle.runtime import Deps
from ami_lifecycle.services.image_events import handle_event
from ami_lifecycle.services.sweep import sweep
from ami_lifecycle_localaws.fleet import create_image

from tests.conftest import ACCOUNT_ID
from tests.integration.test_fail_closed import available_event, tags_of
from tests.integration.test_sweep import EAST, P, aws, client, entries


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(default_keep_latest=0)


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


def adopted(settings: Settings, now: datetime, age_days: int = 100, **tags: str) -> tuple[str, datetime]:
    """An image `age_days` old, adopted through its event (the default retention, 90d)."""
    created = (now - timedelta(days=age_days)).replace(microsecond=0)
    image_id = create_image(client("ec2"), f"app-{age_days}", tags=tags or None, created=created)
    assert handle_event(available_event(image_id), Deps.create(settings, aws(), now, ACCOUNT_ID)).status == "tagged"
    return image_id, created


def retag(image_id: str, **tags: str) -> None:
    client("ec2").create_tags(Resources=[image_id], Tags=[{"Key": f"{P}:{k}", "Value": v} for k, v in tags.items()])


def run(settings: Settings, now: datetime, **kw: Any) -> Any:
    return sweep(Deps.create(settings, aws(), now, ACCOUNT_ID), regions=[EAST], **kw)


def deprecation(image_id: str) -> str | None:
    return client("ec2").describe_images(ImageIds=[image_id])["Images"][0].get("DeprecationTime")


def test_adoption_writes_the_basis_beside_the_expiry(moto_aws: None, settings: Settings, now: datetime) -> None:
    image_id, created = adopted(settings, now, age_days=10)
    tags = tags_of(image_id)
    assert tags[f"{P}:expiry-basis"] == "90d"
    assert tags[f"{P}:expires-at"] == format_instant(created + timedelta(days=90))


def test_a_retention_raised_after_adoption_keeps_the_image_and_rewrites_the_expiry(
    moto_aws: None, settings: Settings, now: datetime
) -> None:
    # Given an image adopted at 90d, now 100 days old (its P:expires-at has passed)
    image_id, created = adopted(settings, now)
    # When the user raises its retention to 365d and the sweep runs
    retag(image_id, retention="365d")
    dry = run(settings, now, dry_run=True)
    report = run(settings, now)
    # Then it is kept, P:expires-at and the basis follow the new retention, and so does the deprecation time
    expected = format_instant(created + timedelta(days=365))
    for r in (dry, report):
        e = entries(r)[image_id]
        assert e["outcome"] == "kept" and e["reason"] == "not-expired" and e["expires_at"] == expected
    assert any("rewrite the expiry" in a for a in entries(dry)[image_id]["actions"])
    tags = tags_of(image_id)
    assert tags[f"{P}:expires-at"] == expected and tags[f"{P}:expiry-basis"] == "365d"
    assert deprecation(image_id) is not None and deprecation(image_id).startswith(expected[:16])  # type: ignore[union-attr]
    # A second sweep has nothing left to rewrite.
    again = run(settings, now)
    assert not any("expiry" in a for a in entries(again)[image_id].get("actions", []))


def test_a_retention_lowered_after_adoption_retires_on_the_new_expiry(
    moto_aws: None, settings: Settings, now: datetime
) -> None:
    image_id, _ = adopted(settings, now, age_days=40)  # 90d: not expired
    retag(image_id, retention="30d")  # now it is
    report = run(settings, now)
    assert entries(report)[image_id]["outcome"] == "retired"


def test_forever_after_adoption_keeps_the_image_and_removes_the_expiry(
    moto_aws: None, settings: Settings, now: datetime
) -> None:
    image_id, _ = adopted(settings, now, age_days=10)
    assert deprecation(image_id) is not None
    retag(image_id, retention="forever")
    report = run(settings, now)
    e = entries(report)[image_id]
    assert e["outcome"] == "kept" and e["reason"] == "not-expired" and "forever" in e["detail"]
    tags = tags_of(image_id)
    assert f"{P}:expires-at" not in tags and f"{P}:expiry-basis" not in tags and f"{P}:error" not in tags
    assert deprecation(image_id) is None


def test_a_users_expires_at_always_wins(moto_aws: None, settings: Settings, now: datetime) -> None:
    # Given an adopted image whose P:expires-at the user moved a year ahead
    image_id, _ = adopted(settings, now)
    mine = format_instant(now + timedelta(days=365))
    retag(image_id, **{"expires-at": mine})
    # When the user also changes the retention
    retag(image_id, retention="7d")
    report = run(settings, now)
    # Then the user's P:expires-at decides, and the stale basis is removed
    e = entries(report)[image_id]
    assert e["outcome"] == "kept" and e["expires_at"] == mine
    tags = tags_of(image_id)
    assert tags[f"{P}:expires-at"] == mine and f"{P}:expiry-basis" not in tags


def test_a_users_expires_at_beside_forever_is_a_conflict_kept_and_reported(
    moto_aws: None, settings: Settings, now: datetime
) -> None:
    image_id, _ = adopted(settings, now, **{f"{P}:expires-at": format_instant(now - timedelta(days=1))})
    retag(image_id, retention="forever")
    report = run(settings, now)
    e = entries(report)[image_id]
    assert e["outcome"] == "kept" and e["reason"] == "bad-tag" and "conflicting" in e["detail"]


def test_an_image_adopted_before_the_basis_existed_follows_its_retention_from_now_on(
    moto_aws: None, settings: Settings, now: datetime
) -> None:
    # Given a legacy adoption: the tool's own P:expires-at (CreationDate + 90d), no basis
    created = (now - timedelta(days=100)).replace(microsecond=0)
    legacy = {
        f"{P}:managed": "true",
        f"{P}:retention": "90d",
        f"{P}:expires-at": format_instant(created + timedelta(days=90)),
        f"{P}:keep-latest": "0",
    }
    image_id = create_image(client("ec2"), "legacy", tags=legacy, created=created)
    # When the retention is raised and the sweep runs
    retag(image_id, retention="200d")
    report = run(settings, now)
    # Then it is recognised as the tool's value and recomputed
    assert entries(report)[image_id]["outcome"] == "kept"
    assert tags_of(image_id)[f"{P}:expiry-basis"] == "200d"
