"""Live tags (PRODUCT.md section 1): a retention changed after adoption is honoured by the next sweep.

The tool writes `P:expiry-basis` beside the `P:expires-at` it computes; a `P:expires-at` without a
matching basis is the user's and always wins.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from ami_lifecycle.domain.settings import Settings
from ami_lifecycle.domain.tags import format_instant
from ami_lifecycle.runtime import Deps
from ami_lifecycle.services.image_events import handle_event
from ami_lifecycle_localaws.fleet import create_image, tags_of

from tests.conftest import ACCOUNT_ID, LocalAws

P = "ami-lifecycle"
EAST = "us-east-1"
# The fixtures' factories (`entries`, `run_sweep`: tests/integration/conftest.py; `adopted` below).
Entries = Callable[..., dict[str, dict[str, Any]]]
Adopt = Callable[..., tuple[str, datetime]]
Run = Callable[..., Any]


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(default_keep_latest=0)


@pytest.fixture
def adopted(moto_aws: LocalAws, available_event: Callable[..., dict[str, Any]]) -> Adopt:
    """`adopted(settings, now, age_days=100, **tags)`: an image `age_days` old, adopted through its event
    (the default retention, 90d); its id and creation date."""

    def adopt(settings: Settings, now: datetime, age_days: int = 100, **tags: str) -> tuple[str, datetime]:
        created = (now - timedelta(days=age_days)).replace(microsecond=0)
        image_id = create_image(moto_aws.ec2(), f"app-{age_days}", tags=tags or None, created=created)
        deps = Deps.create(settings, moto_aws.aws(), now, ACCOUNT_ID)
        assert handle_event(available_event(image_id), deps).status == "tagged"
        return image_id, created

    return adopt


def retag(ec2: Any, image_id: str, **tags: str) -> None:
    ec2.create_tags(Resources=[image_id], Tags=[{"Key": f"{P}:{k}", "Value": v} for k, v in tags.items()])


def deprecation(ec2: Any, image_id: str) -> str | None:
    return ec2.describe_images(ImageIds=[image_id])["Images"][0].get("DeprecationTime")


def test_adoption_writes_the_basis_beside_the_expiry(
    settings: Settings, now: datetime, adopted: Adopt, ec2: Any
) -> None:
    image_id, created = adopted(settings, now, age_days=10)
    tags = tags_of(ec2, image_id)
    assert tags[f"{P}:expiry-basis"] == "90d"
    assert tags[f"{P}:expires-at"] == format_instant(created + timedelta(days=90))


def test_a_retention_raised_after_adoption_keeps_the_image_and_rewrites_the_expiry(
    settings: Settings, now: datetime, adopted: Adopt, run_sweep: Run, ec2: Any, entries: Entries
) -> None:
    # Given an image adopted at 90d, now 100 days old (its P:expires-at has passed)
    image_id, created = adopted(settings, now)
    # When the user raises its retention to 365d and the sweep runs
    retag(ec2, image_id, retention="365d")
    dry = run_sweep(settings, now, regions=[EAST], dry_run=True)
    report = run_sweep(settings, now, regions=[EAST])
    # Then it is kept, P:expires-at and the basis follow the new retention, and so does the deprecation time
    expected = format_instant(created + timedelta(days=365))
    for r in (dry, report):
        e = entries(r)[image_id]
        assert e["outcome"] == "kept" and e["reason"] == "not-expired" and e["expires_at"] == expected
    assert any("rewrite the expiry" in a for a in entries(dry)[image_id]["actions"])
    tags = tags_of(ec2, image_id)
    assert tags[f"{P}:expires-at"] == expected and tags[f"{P}:expiry-basis"] == "365d"
    assert deprecation(ec2, image_id) is not None and deprecation(ec2, image_id).startswith(expected[:16])  # type: ignore[union-attr]
    # A second sweep has nothing left to rewrite.
    again = run_sweep(settings, now, regions=[EAST])
    assert not any("expiry" in a for a in entries(again)[image_id].get("actions", []))


def test_a_retention_lowered_after_adoption_retires_on_the_new_expiry(
    settings: Settings, now: datetime, adopted: Adopt, run_sweep: Run, ec2: Any, entries: Entries
) -> None:
    image_id, _ = adopted(settings, now, age_days=40)  # 90d: not expired
    retag(ec2, image_id, retention="30d")  # now it is
    report = run_sweep(settings, now, regions=[EAST])
    assert entries(report)[image_id]["outcome"] == "retired"


def test_forever_after_adoption_keeps_the_image_and_removes_the_expiry(
    settings: Settings, now: datetime, adopted: Adopt, run_sweep: Run, ec2: Any, entries: Entries
) -> None:
    image_id, _ = adopted(settings, now, age_days=10)
    assert deprecation(ec2, image_id) is not None
    retag(ec2, image_id, retention="forever")
    report = run_sweep(settings, now, regions=[EAST])
    e = entries(report)[image_id]
    assert e["outcome"] == "kept" and e["reason"] == "not-expired" and "forever" in e["detail"]
    tags = tags_of(ec2, image_id)
    assert f"{P}:expires-at" not in tags and f"{P}:expiry-basis" not in tags and f"{P}:error" not in tags
    assert deprecation(ec2, image_id) is None


def test_a_users_expires_at_always_wins(
    settings: Settings, now: datetime, adopted: Adopt, run_sweep: Run, ec2: Any, entries: Entries
) -> None:
    # Given an adopted image whose P:expires-at the user moved a year ahead
    image_id, _ = adopted(settings, now)
    mine = format_instant(now + timedelta(days=365))
    retag(ec2, image_id, **{"expires-at": mine})
    # When the user also changes the retention
    retag(ec2, image_id, retention="7d")
    report = run_sweep(settings, now, regions=[EAST])
    # Then the user's P:expires-at decides, and the stale basis is removed
    e = entries(report)[image_id]
    assert e["outcome"] == "kept" and e["expires_at"] == mine
    tags = tags_of(ec2, image_id)
    assert tags[f"{P}:expires-at"] == mine and f"{P}:expiry-basis" not in tags


def test_a_users_expires_at_beside_forever_is_a_conflict_kept_and_reported(
    settings: Settings, now: datetime, adopted: Adopt, run_sweep: Run, ec2: Any, entries: Entries
) -> None:
    image_id, _ = adopted(settings, now, **{f"{P}:expires-at": format_instant(now - timedelta(days=1))})
    retag(ec2, image_id, retention="forever")
    report = run_sweep(settings, now, regions=[EAST])
    e = entries(report)[image_id]
    assert e["outcome"] == "kept" and e["reason"] == "bad-tag" and "conflicting" in e["detail"]


def test_an_image_adopted_before_the_basis_existed_follows_its_retention_from_now_on(
    settings: Settings, now: datetime, run_sweep: Run, ec2: Any, entries: Entries
) -> None:
    # Given a legacy adoption: the tool's own P:expires-at (CreationDate + 90d), no basis
    created = (now - timedelta(days=100)).replace(microsecond=0)
    legacy = {
        f"{P}:managed": "true",
        f"{P}:retention": "90d",
        f"{P}:expires-at": format_instant(created + timedelta(days=90)),
        f"{P}:keep-latest": "0",
    }
    image_id = create_image(ec2, "legacy", tags=legacy, created=created)
    # When the retention is raised and the sweep runs
    retag(ec2, image_id, retention="200d")
    report = run_sweep(settings, now, regions=[EAST])
    # Then it is recognised as the tool's value and recomputed
    assert entries(report)[image_id]["outcome"] == "kept"
    assert tags_of(ec2, image_id)[f"{P}:expiry-basis"] == "200d"
