"""DisableBeforeDeregister: a retirable image is disabled first and deregistered only once it is still
retirable after the grace period; an image that stops being retirable in between is re-enabled
(with its sharing given back). What it will not do: deregister during the grace period, deregister
an image that became held, or leave an image disabled that the rule keeps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from ami_lifecycle.domain.settings import Settings
from ami_lifecycle.domain.tags import format_instant
from ami_lifecycle_localaws import motoext

P = "ami-lifecycle"
EAST = "us-east-1"
Entries = Callable[..., dict[str, dict[str, Any]]]
Run = Callable[..., Any]


def state(ec2: Any, image_id: str) -> str | None:
    images = ec2.describe_images(ImageIds=[image_id], IncludeDisabled=True)["Images"]
    return images[0]["State"] if images else None


def tags(ec2: Any, image_id: str) -> dict[str, str]:
    (image,) = ec2.describe_images(ImageIds=[image_id], IncludeDisabled=True)["Images"]
    return {t["Key"]: t["Value"] for t in image.get("Tags", [])}


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(disable_before_deregister="7d", manage_new_images=False)


def test_disable_wait_then_deregister_over_three_sweeps(
    ec2: Any, settings: Settings, now: datetime, managed: Callable[..., str], entries: Entries, run_sweep: Run
) -> None:
    # Given an expired, unused image and a 7-day grace period
    image_id = managed(ec2, "web-1", now)
    # When the first sweep finds it retirable, it disables it and records when
    first = run_sweep(settings, now)
    e = entries(first)[image_id]
    assert (
        e["outcome"] == "disabled"
        and e["detail"] == f"disabled (grace until {format_instant(now + timedelta(days=7))})"
    )
    assert first.totals.disabled == 1 and first.totals.retired == 0
    assert state(ec2, image_id) == "disabled" and tags(ec2, image_id)[f"{P}:disabled-at"] == format_instant(now)
    # Then a sweep inside the grace period keeps it, disabled, saying until when
    middle = run_sweep(settings, now + timedelta(days=3))
    e = entries(middle)[image_id]
    assert (e["outcome"], e["reason"]) == ("kept", "disabled") and "grace until" in e["detail"]
    assert state(ec2, image_id) == "disabled" and middle.totals.retired == 0
    # And the first sweep after it deregisters it with its snapshot
    last = run_sweep(settings, now + timedelta(days=8))
    assert entries(last)[image_id]["outcome"] == "retired" and last.totals.snapshots_deleted == 1
    assert state(ec2, image_id) is None


def test_a_hold_added_during_the_grace_period_re_enables_instead(
    ec2: Any,
    make_settings: Callable[..., Settings],
    now: datetime,
    managed: Callable[..., str],
    entries: Entries,
    run_sweep: Run,
) -> None:
    # (Shared with an account whose use is not checked here: SharedImageCheck=off.)
    settings = make_settings(disable_before_deregister="7d", manage_new_images=False, shared_image_check="off")
    image_id = managed(ec2, "web-1", now)
    ec2.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"UserId": "222233334444"}]})
    run_sweep(settings, now)
    assert state(ec2, image_id) == "disabled"
    assert tags(ec2, image_id)[f"{P}:launch-permissions"] == "a:222233334444"
    # A user puts a hold on it during the grace period
    ec2.create_tags(Resources=[image_id], Tags=[{"Key": f"{P}:hold", "Value": "true"}])
    motoext.reset_calls()
    later = run_sweep(settings, now + timedelta(days=10))
    e = entries(later)[image_id]
    # It is never deregistered: re-enabled, shared again, the record of the disable removed
    assert motoext.calls()["DeregisterImage"] == 0 and e["reason"] == "hold" and later.totals.enabled == 1
    assert state(ec2, image_id) == "available"
    assert f"{P}:disabled-at" not in tags(ec2, image_id) and f"{P}:launch-permissions" not in tags(ec2, image_id)
    shared = ec2.describe_image_attribute(ImageId=image_id, Attribute="launchPermission")["LaunchPermissions"]
    assert shared == [{"UserId": "222233334444"}]
    assert any(a.startswith("re-enabled and shared again") for a in e["actions"])


def test_a_new_retention_during_the_grace_period_re_enables(
    ec2: Any, settings: Settings, now: datetime, managed: Callable[..., str], entries: Entries, run_sweep: Run
) -> None:
    image_id = managed(ec2, "web-1", now)
    run_sweep(settings, now)
    # The user raises the retention: P:expires-at is the tool's (no basis tag means computed), so it moves
    ec2.create_tags(
        Resources=[image_id], Tags=[{"Key": f"{P}:expires-at", "Value": format_instant(now + timedelta(days=365))}]
    )
    later = run_sweep(settings, now + timedelta(days=8))
    assert entries(later)[image_id]["reason"] == "not-expired" and state(ec2, image_id) == "available"


def test_the_grace_period_counts_against_nothing_and_disabling_counts_against_the_cap(
    ec2: Any, make_settings: Callable[..., Settings], now: datetime, managed: Callable[..., str], run_sweep: Run
) -> None:
    settings = make_settings(disable_before_deregister="7d", manage_new_images=False, max_retirements_per_run=2)
    ids = [managed(ec2, f"app-{n}", now) for n in range(3)]
    blocked = run_sweep(settings, now)
    assert blocked.blast_radius == {"would_retire": 3, "limit": 2}
    assert all(state(ec2, i) == "available" for i in ids)  # nothing disabled over the cap


def test_a_dry_run_disables_nothing(
    ec2: Any, settings: Settings, now: datetime, managed: Callable[..., str], entries: Entries, run_sweep: Run
) -> None:
    image_id = managed(ec2, "web-1", now)
    report = run_sweep(settings, now, dry_run=True)
    assert entries(report)[image_id]["outcome"] == "would disable"
    assert state(ec2, image_id) == "available" and f"{P}:disabled-at" not in tags(ec2, image_id)


def test_without_a_grace_period_images_are_deregistered_at_once(
    ec2: Any, make_settings: Callable[..., Settings], now: datetime, managed: Callable[..., str], run_sweep: Run
) -> None:
    image_id = managed(ec2, "web-1", now)
    report = run_sweep(make_settings(manage_new_images=False), now)
    assert report.totals.retired == 1 and report.totals.disabled == 0 and state(ec2, image_id) is None
