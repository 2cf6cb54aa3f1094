"""The sweep reconciles what events missed (PRODUCT.md section 5): an image whose `available`
event never arrived is adopted by the next scheduled sweep and its copies are requested; it is not
retired in that sweep, even when its computed expiry has passed; the next sweep may retire it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from ami_lifecycle.aws.clients import Aws
from ami_lifecycle.domain.settings import Settings
from ami_lifecycle.runtime import Deps
from ami_lifecycle.services.sweep import sweep
from ami_lifecycle_localaws import motoext
from ami_lifecycle_localaws.fleet import create_image, snapshot_ids, tags_of

from tests.conftest import ACCOUNT_ID, regions

P = "ami-lifecycle"
EAST, WEST = "us-east-1", "us-west-2"


@pytest.fixture
def aws(moto_aws: None) -> Aws:
    return Aws(boto3.Session())


@pytest.fixture
def queue_url(aws: Aws) -> str:
    return str(aws.client("sqs", EAST).create_queue(QueueName="copies")["QueueUrl"])


@pytest.fixture
def settings(make_settings: Callable[..., Settings], queue_url: str) -> Settings:
    # SweepRegions is the home region only: the replica region is not swept, its copies are listed.
    return make_settings(
        replica_regions=(WEST,), sweep_regions_param=(EAST,), copy_queue_url=queue_url, default_retention="30d"
    )


def queued(aws: Aws, url: str) -> list[dict[str, Any]]:
    sqs = aws.client("sqs", EAST)
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def registered(aws: Aws) -> set[str]:
    return {i["ImageId"] for i in aws.ec2(EAST).describe_images(Owners=["self"], IncludeDisabled=True)["Images"]}


def entry(report: Any, image_id: str) -> dict[str, Any]:
    (found,) = [e for e in regions(report)[EAST]["images"] if e["image_id"] == image_id]
    return dict(found)


def test_an_image_whose_event_was_missed_is_adopted_by_the_sweep_copied_and_retired_only_later(
    aws: Aws, settings: Settings, queue_url: str
) -> None:
    # Given an image created 40 days ago whose EC2 AMI State Change event never arrived: no
    # lifecycle tag, and its computed expiry (CreationDate + 30d) is 10 days past; nothing but
    # this run's adoption could keep it (not the newest of its family, unused, not held).
    now = datetime.now(UTC)
    ec2 = aws.ec2(EAST)
    missed = create_image(ec2, "web-2026-10-20", created=now - timedelta(days=40))
    # (and a newer image of its family, whose event was missed too: keep-latest keeps that one)
    newer = create_image(ec2, "web-2026-11-28", created=now - timedelta(days=2))
    motoext.reset_calls()

    # When the scheduled sweep runs
    report = sweep(Deps.create(settings, aws, now, ACCOUNT_ID))

    # Then it is adopted: tagged on the image and its snapshot, with the expiry it computes...
    tags = tags_of(ec2, missed)
    assert tags[f"{P}:managed"] == "true" and tags[f"{P}:retention"] == "30d"
    assert tags[f"{P}:expires-at"] < now.strftime("%Y-%m-%dT%H:%M:%SZ")  # already past
    assert tags_of(ec2, snapshot_ids(ec2, missed)[0])[f"{P}:managed"] == "true"
    # ...the copies the adopted images lack are requested, once: the newer image's; the expired one
    # is not copied (its copy would carry the same expiry), and the report says so...
    assert [(m["source_image_id"], m["target_region"]) for m in queued(aws, queue_url)] == [(newer, WEST)]
    assert any(a.startswith("not copied: expired at") for a in entry(report, missed)["actions"])
    assert "requested a copy to us-west-2" in entry(report, newer)["actions"]
    # ...and it is not retired in the run that adopted it, which says why it was missed.
    assert missed in registered(aws) and motoext.calls()["DeregisterImage"] == 0
    e = entry(report, missed)
    assert (e["decision"], e["reason"], e["outcome"]) == ("keep", "adopted-this-run", "adopted")
    assert "no EC2 AMI State Change event adopted it" in e["detail"]
    assert any(a.startswith(f"tagged image: {P}:managed=true") for a in e["actions"])
    assert [o["kind"] for o in entry(report, newer)["outcomes"]] == ["tag", "deprecate", "request-copy"]
    assert report.totals.tagged == 2 and report.totals.copies_requested == 1 and report.totals.retired == 0
    assert regions(report)[EAST]["notes"]["adopted"]["images"] == 2

    # When the next sweep runs (the copy is still in flight: the queue's message is the request)
    again = sweep(Deps.create(settings, aws, now + timedelta(minutes=5), ACCOUNT_ID))

    # Then the image, now managed, expired, unused and not the newest of its family, is retired;
    # nothing is adopted again.
    assert entry(again, missed)["outcome"] == "retired", entry(again, missed)
    assert missed not in registered(aws) and newer in registered(aws)
    assert entry(again, newer)["reason"] == "not-expired"
    # ...and the report says what that freed (motoext reports FullSnapshotSizeInBytes, as EC2 does)
    notes = regions(again)[EAST]["notes"]
    assert notes["snapshot_gib_freed"] > 0 and notes["snapshot_size_basis"] == "FullSnapshotSizeInBytes"
    assert again.totals.tagged == 0


def test_the_sweep_adopts_nothing_when_manage_new_images_is_false_and_nothing_foreign_or_opted_out(
    aws: Aws, make_settings: Callable[..., Settings], queue_url: str
) -> None:
    # Given untagged, opted-out and foreign images, and ManageNewImages=false
    settings = make_settings(sweep_regions_param=(EAST,), copy_queue_url=queue_url, manage_new_images=False)
    ec2 = aws.ec2(EAST)
    old = datetime.now(UTC) - timedelta(days=400)
    untagged = create_image(ec2, "untagged", created=old)
    opted_out = create_image(ec2, "opted-out", tags={f"{P}:managed": "false"}, created=old)
    backup = create_image(ec2, "backup", tags={"aws:backup:source-resource": "arn:x"}, created=old)
    motoext.reset_calls()

    # When the sweep runs
    report = sweep(Deps.create(settings, aws, None, ACCOUNT_ID))

    # Then none is tagged, copied, retired or even reported
    for image_id in (untagged, opted_out, backup):
        assert not any(k.startswith(f"{P}:managed") and v == "true" for k, v in tags_of(ec2, image_id).items())
    assert {untagged, opted_out, backup} <= registered(aws)
    assert regions(report)[EAST]["images"] == []
    assert motoext.calls().get("CreateTags", 0) == 0 and queued(aws, queue_url) == []


def test_a_dry_run_sweep_says_it_would_adopt_and_changes_nothing(aws: Aws, settings: Settings, queue_url: str) -> None:
    # Given an image whose event was missed
    ec2 = aws.ec2(EAST)
    missed = create_image(ec2, "api-1", created=datetime.now(UTC) - timedelta(days=4))

    # When a dry-run sweep runs
    report = sweep(Deps.create(settings, aws, None, ACCOUNT_ID), dry_run=True)

    # Then it reports the adoption and the copy it would request, and writes nothing
    e = entry(report, missed)
    assert (e["reason"], e["outcome"]) == ("adopted-this-run", "would adopt")
    assert any(a.startswith(f"would tag image: {P}:managed=true") for a in e["actions"])
    assert "would request a copy to us-west-2" in e["actions"]
    assert tags_of(ec2, missed) == {} and queued(aws, queue_url) == []


def test_an_adoption_aws_refuses_is_reported_and_the_image_stays_unmanaged_and_registered(
    aws: Aws, settings: Settings
) -> None:
    # Given an untagged, long-expired image, and CreateTags refused once (a missing permission)
    ec2 = aws.ec2(EAST)
    missed = create_image(ec2, "batch-1", created=datetime.now(UTC) - timedelta(days=400))
    motoext.inject_error("CreateTags", "UnauthorizedOperation", "not allowed", times=1)

    # When the sweep runs
    report = sweep(Deps.create(settings, aws, None, ACCOUNT_ID))

    # Then the refusal is in the report, nothing is retired, and the image carries no lifecycle tag
    e = entry(report, missed)
    assert (e["decision"], e["reason"], e["outcome"]) == ("adopt", "failed", "failed")
    assert any("UnauthorizedOperation" in err for err in e["errors"]) and report.totals.errors == 1
    assert tags_of(ec2, missed) == {} and missed in registered(aws)
    assert report.totals.retired == 0 and report.totals.copies_requested == 0


def test_a_tag_write_aws_refuses_on_the_event_path_fails_the_event_for_a_retry_and_the_sweep_catches_up(
    aws: Aws, settings: Settings, available_event: Any
) -> None:
    from ami_lifecycle.services.image_events import handle_event

    # Given a new image, and CreateTags refused once when its event arrives
    ec2 = aws.ec2(EAST)
    image_id = create_image(ec2, "svc-1")
    motoext.inject_error("CreateTags", "UnauthorizedOperation", "not allowed", times=1)

    # When the event is handled, Then it fails (Lambda retries it, then the DLQ), nothing is tagged
    with pytest.raises(RuntimeError, match="UnauthorizedOperation"):
        handle_event(available_event(image_id), Deps.create(settings, aws, None, ACCOUNT_ID))
    assert tags_of(ec2, image_id) == {}

    # And the next sweep adopts it all the same
    sweep(Deps.create(settings, aws, None, ACCOUNT_ID))
    assert tags_of(ec2, image_id)[f"{P}:managed"] == "true"
