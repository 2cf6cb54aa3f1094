"""`restore` (services/restore.py, PRODUCT.md section 10) on moto: a disabled image is re-enabled, an
image in the Recycle Bin comes back with its snapshots, both are held; everything else is refused,
and an AWS error never passes for a restore."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from ami_lifecycle.domain.settings import Settings
from ami_lifecycle.runtime import Deps
from ami_lifecycle.services.restore import Restore, Source, Status, restore
from ami_lifecycle_localaws import motoext
from ami_lifecycle_localaws.fleet import create_image, set_owner, snapshot_ids, tags_of
from botocore.config import Config

from tests.conftest import ACCOUNT_ID, LocalAws

P = "ami-lifecycle"
EAST = "us-east-1"
CONSUMER = "222222222222"


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def run(moto_aws: LocalAws, settings: Settings, now: datetime) -> Callable[..., Restore]:
    """`run(image_id, region=EAST, reason=None, settings=..., config=None)`: restore with the production
    clients (or clients with `Config(**config)`)."""

    def go(
        image_id: str,
        region: str = EAST,
        reason: str | None = None,
        settings: Settings = settings,
        config: dict[str, Any] | None = None,
    ) -> Restore:
        aws = moto_aws.aws(Config(**config)) if config else moto_aws.aws()
        return restore(Deps.create(settings, aws, now, ACCOUNT_ID), image_id, region, reason=reason)

    return go


@pytest.fixture
def rules(moto_aws: LocalAws) -> Callable[..., None]:
    """`rules(image_days=7, snapshot_days=7, region=EAST)`: Region-level Recycle Bin rules (0: none)."""

    def make(image_days: int = 7, snapshot_days: int = 7, region: str = EAST) -> None:
        client = moto_aws.client("rbin", region)
        for resource_type, days in (("EC2_IMAGE", image_days), ("EBS_SNAPSHOT", snapshot_days)):
            if days:
                client.create_rule(
                    ResourceType=resource_type,
                    RetentionPeriod={"RetentionPeriodValue": days, "RetentionPeriodUnit": "DAYS"},
                )

    return make


def managed(ec2: Any, name: str, **extra: str) -> tuple[str, str]:
    """A managed image tagged as the tool tags one (image and snapshot): its id and snapshot id."""
    tags = {f"{P}:managed": "true", f"{P}:retention": "30d", f"{P}:expires-at": "2020-01-01T00:00:00Z", **extra}
    image_id = create_image(ec2, name, tags=tags)
    snapshot = snapshot_ids(ec2, image_id)[0]
    ec2.create_tags(Resources=[snapshot], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    return image_id, snapshot


def state(ec2: Any, image_id: str) -> str:
    return str(ec2.describe_images(ImageIds=[image_id], IncludeDisabled=True)["Images"][0]["State"])


def binned_snapshots(ec2: Any) -> set[str]:
    return {s["SnapshotId"] for s in ec2.list_snapshots_in_recycle_bin()["Snapshots"]}


def binned_images(ec2: Any) -> set[str]:
    return {i["ImageId"] for i in ec2.list_images_in_recycle_bin()["Images"]}


# ---------------------------------------------------------------- a disabled image


def test_a_disabled_image_is_re_enabled_held_and_shared_again(ec2: Any, run: Callable[..., Restore]) -> None:
    # Given an image the tool disabled (DisableBeforeDeregister): marks on the image and its snapshot
    marks = {f"{P}:disabled-at": "2026-11-30T00:00:00Z", f"{P}:launch-permissions": f"a:{CONSUMER}"}
    image_id, snapshot = managed(ec2, "web-1", **marks)
    ec2.create_tags(Resources=[snapshot], Tags=[{"Key": k, "Value": v} for k, v in marks.items()])
    ec2.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"UserId": CONSUMER}]})
    ec2.disable_image(ImageId=image_id)

    # When it is restored
    result = run(image_id, reason="INC-42")

    # Then it is available, shared again, held, and the marks are gone; the reason is in the result only
    assert result.status is Status.RESTORED and result.source is Source.DISABLED, result.message
    assert state(ec2, image_id) == "available"
    shared = ec2.describe_image_attribute(ImageId=image_id, Attribute="launchPermission")["LaunchPermissions"]
    assert shared == [{"UserId": CONSUMER}]
    for resource in (image_id, snapshot):
        tags = tags_of(ec2, resource)
        assert tags[f"{P}:hold"] == "true"
        assert f"{P}:disabled-at" not in tags and f"{P}:launch-permissions" not in tags
        assert not any("reason" in key for key in tags)
    assert "re-enabled (disabled since 2026-11-30T00:00:00Z)" in result.hold_reason
    assert result.hold_reason.endswith(": INC-42")
    assert result.held and result.snapshots == [snapshot] and result.snapshots_restored == []
    out = result.to_dict()
    assert out["status"] == "restored" and out["source"] == "disabled" and out["hold_reason"] == result.hold_reason
    assert result.line().startswith(f"restored {image_id} (us-east-1): re-enabled; held with {P}:hold=true")


def test_an_image_disabled_by_hand_is_re_enabled_and_held(ec2: Any, run: Callable[..., Restore]) -> None:
    image_id = create_image(ec2, "scratch-1")
    ec2.disable_image(ImageId=image_id)
    result = run(image_id)
    assert result.ok and state(ec2, image_id) == "available"
    assert tags_of(ec2, image_id)[f"{P}:hold"] == "true"
    assert "re-enabled (disabled)" in result.hold_reason


# ---------------------------------------------------------------- the Recycle Bin


def test_an_image_in_the_recycle_bin_comes_back_with_its_snapshots(
    ec2: Any, run: Callable[..., Restore], rules: Callable[..., None]
) -> None:
    # Given Recycle Bin rules for AMIs and snapshots, and an image retired with its snapshot
    rules(image_days=7, snapshot_days=10)
    image_id, snapshot = managed(ec2, "api-1")
    ec2.deregister_image(ImageId=image_id, DeleteAssociatedSnapshots=True)
    assert binned_images(ec2) == {image_id} and binned_snapshots(ec2) == {snapshot}
    motoext.reset_calls()

    # When it is restored
    result = run(image_id)

    # Then the snapshot (first) and the image are back, both held
    assert result.status is Status.RESTORED and result.source is Source.RECYCLE_BIN, result.message
    assert result.snapshots_restored == [snapshot] and result.snapshots_missing == []
    assert state(ec2, image_id) == "available"
    assert ec2.describe_snapshots(SnapshotIds=[snapshot])["Snapshots"][0]["State"] == "completed"
    assert binned_images(ec2) == set() and binned_snapshots(ec2) == set()
    for resource in (image_id, snapshot):
        tags = tags_of(ec2, resource)
        assert tags[f"{P}:hold"] == "true" and tags[f"{P}:managed"] == "true"
        assert "aws:recycle-bin:resource-in-bin" not in tags
    assert result.recycle_bin_exit_time is not None
    assert f"restored from the Recycle Bin (it would have been deleted for good at {result.recycle_bin_exit_time})" in (
        result.hold_reason
    )
    assert "1 snapshot(s) restored" in result.message
    calls = motoext.calls()
    assert calls["RestoreSnapshotFromRecycleBin"] == 1 and calls["RestoreImageFromRecycleBin"] == 1
    assert calls["EnableImage"] == 0 and calls["ModifyImageAttribute"] == 0


def test_snapshots_the_bin_does_not_name_after_the_image_come_back_by_its_block_devices(
    ec2: Any, run: Callable[..., Restore], rules: Callable[..., None], register_on_snapshot: Callable[..., str]
) -> None:
    # Given an image registered on another image's snapshot (its description names the other one)
    rules()
    first, snapshot = managed(ec2, "base-1")
    second = register_on_snapshot(ec2, "base-2", snapshot, {f"{P}:managed": "true"})
    ec2.deregister_image(ImageId=first)
    ec2.deregister_image(ImageId=second, DeleteAssociatedSnapshots=True)
    assert binned_snapshots(ec2) == {snapshot}

    result = run(second)

    assert result.ok, result.message
    assert result.snapshots == [snapshot] and result.snapshots_restored == [snapshot]
    assert binned_snapshots(ec2) == set() and first in binned_images(ec2)


def test_an_image_whose_snapshots_are_gone_for_good_is_held_but_reported_failed(
    ec2: Any, run: Callable[..., Restore], rules: Callable[..., None]
) -> None:
    # Given a rule for AMIs only: the image is in the bin, its snapshot was deleted for good
    rules(image_days=7, snapshot_days=0)
    image_id, snapshot = managed(ec2, "db-1")
    ec2.deregister_image(ImageId=image_id, DeleteAssociatedSnapshots=True)

    result = run(image_id)

    assert result.status is Status.FAILED and not result.ok
    assert result.snapshots_missing == [snapshot]
    assert "cannot launch" in result.message and snapshot in result.message
    assert result.held and tags_of(ec2, image_id)[f"{P}:hold"] == "true"
    assert result.line().startswith(f"restore of {image_id} (us-east-1) FAILED")


def test_a_rerun_finishes_an_image_whose_snapshots_are_still_in_the_bin(
    ec2: Any, run: Callable[..., Restore], rules: Callable[..., None]
) -> None:
    rules()
    image_id, snapshot = managed(ec2, "half-1")
    ec2.deregister_image(ImageId=image_id, DeleteAssociatedSnapshots=True)
    ec2.restore_image_from_recycle_bin(ImageId=image_id)  # by hand, the snapshot left in the bin

    result = run(image_id)

    assert result.ok and result.source is Source.RESUMED, result.message
    assert result.snapshots_restored == [snapshot] and binned_snapshots(ec2) == set()
    assert tags_of(ec2, snapshot)[f"{P}:hold"] == "true"


def test_an_image_deregistered_while_disabled_comes_back_enabled(
    ec2: Any, run: Callable[..., Restore], rules: Callable[..., None]
) -> None:
    rules()
    image_id, _snapshot = managed(ec2, "staged-1", **{f"{P}:disabled-at": "2026-11-01T00:00:00Z"})
    ec2.disable_image(ImageId=image_id)
    ec2.deregister_image(ImageId=image_id, DeleteAssociatedSnapshots=True)

    result = run(image_id)

    assert result.ok and result.source is Source.RECYCLE_BIN, result.message
    assert state(ec2, image_id) == "available"
    assert f"{P}:disabled-at" not in tags_of(ec2, image_id)


def test_a_custom_tag_prefix_is_used(
    ec2: Any, run: Callable[..., Restore], make_settings: Callable[..., Settings]
) -> None:
    image_id = create_image(ec2, "acme-1", tags={"acme:managed": "true", "acme:disabled-at": "2026-11-01T00:00:00Z"})
    ec2.disable_image(ImageId=image_id)
    result = run(image_id, settings=make_settings(tag_prefix="acme"))
    assert result.ok
    tags = tags_of(ec2, image_id)
    assert tags["acme:hold"] == "true" and "acme:disabled-at" not in tags and f"{P}:hold" not in tags


# ---------------------------------------------------------------- refusals


def test_what_cannot_be_restored_is_refused_and_nothing_changes(
    ec2: Any, run: Callable[..., Restore], rules: Callable[..., None]
) -> None:
    rules()
    available, _ = managed(ec2, "live-1")
    others = create_image(ec2, "theirs-1")
    ec2.disable_image(ImageId=others)
    set_owner(EAST, others, "999999999999")
    gone, _ = managed(ec2, "gone-1")
    motoext.reset_calls()

    cases = {
        available: f"nothing to restore: it is available (tag {P}:hold=true to keep it from the sweeps)",
        "ami-0123456789abcdef0": "not found, not in the Recycle Bin of us-east-1",
        others: "owned by account 999999999999, not 123456789012: only its owner can restore it",
        "ami-12": "'ami-12' is not an AMI id",
    }
    for image_id, message in cases.items():
        result = run(image_id)
        assert (result.status, result.message) == (Status.REFUSED, message), image_id
        assert not result.changed and not result.held
    assert run(gone, region="mars-north-1").message == "'mars-north-1' is not an AWS region"
    assert run(gone, region="eu-west-1").message == "not found, not in the Recycle Bin of eu-west-1"
    writes = {a for a in motoext.calls() if not a.startswith(("Describe", "List"))}
    assert writes == set(), writes

    ec2.create_tags(Resources=[available], Tags=[{"Key": f"{P}:hold", "Value": "true"}])
    assert run(available).message == "nothing to restore: it is available and held"


# ---------------------------------------------------------------- AWS errors


def test_access_denied_stops_with_a_clear_error_and_the_image_already_held(
    ec2: Any, run: Callable[..., Restore]
) -> None:
    image_id = create_image(ec2, "denied-1")
    ec2.disable_image(ImageId=image_id)
    motoext.inject_error("EnableImage", "UnauthorizedOperation", "You are not authorized to perform this operation.")

    result = run(image_id)

    assert result.status is Status.FAILED and not result.ok and result.denied
    assert result.error_code == "UnauthorizedOperation"
    assert "not allowed to call EnableImage" in result.message and "the caller needs ec2:EnableImage" in result.message
    assert "the image is held, so no sweep retires it" in result.message
    assert state(ec2, image_id) == "disabled" and tags_of(ec2, image_id)[f"{P}:hold"] == "true"

    again = run(image_id)  # the permission granted: a rerun finishes
    assert again.ok and state(ec2, image_id) == "available"


def test_throttling_past_the_retries_is_a_failure_and_a_rerun_finishes(
    ec2: Any, run: Callable[..., Restore], rules: Callable[..., None]
) -> None:
    rules()
    image_id, snapshot = managed(ec2, "busy-1")
    ec2.deregister_image(ImageId=image_id, DeleteAssociatedSnapshots=True)
    motoext.inject_error("RestoreImageFromRecycleBin", "RequestLimitExceeded", "Request limit exceeded.", status=503)

    result = run(image_id, config={"retries": {"total_max_attempts": 1}})

    assert result.status is Status.FAILED and result.error_code == "RequestLimitExceeded" and not result.denied
    assert "AWS throttled RestoreImageFromRecycleBin past the retries" in result.message
    assert f"restored snapshot {snapshot}" in result.message  # what was done before, said
    assert binned_images(ec2) == {image_id}  # the image is still in the bin: not reported restored

    again = run(image_id)
    assert again.ok and state(ec2, image_id) == "available", again.message
    assert again.snapshots_restored == []  # the snapshot was restored by the first run


def test_an_unreachable_region_fails_before_changing_anything(ec2: Any, run: Callable[..., Restore]) -> None:
    image_id = create_image(ec2, "far-1")
    motoext.set_faults(unreachable_regions={EAST})
    result = run(image_id)
    assert result.status is Status.FAILED and result.error_code == "OptInRequired"
    assert result.message.endswith("nothing was changed") and not result.changed
