"""Fail closed: an image is retired only on proof that nothing uses it (issue "Fail closed").

Each test is one way the tool used to delete what it must keep, reproduced on moto:
- an image named only by an SSM parameter, when the region is checked by listing;
- a refused DescribeImageReferences, with a source that cannot be listed either;
- a shared image (another account), a recently launched one;
- a backfill whose adoption was refused;
- an unreadable P:expires-at that used to stop a whole region;
- an image near the 50-tag limit; a P:replicate-to naming a region that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from ami_lifecycle.aws.regions import known_regions
from ami_lifecycle.domain.requests import parse_backfill_request
from ami_lifecycle.domain.settings import Settings
from ami_lifecycle.runtime import Deps
from ami_lifecycle.services.backfill import Backfill
from ami_lifecycle.services.image_events import handle_event
from ami_lifecycle.services.sweep import sweep
from ami_lifecycle_localaws import motoext
from ami_lifecycle_localaws.fleet import create_image, tags_of
from botocore.config import Config

from tests.conftest import ACCOUNT_ID, LocalAws

P = "ami-lifecycle"
EAST, WEST = "us-east-1", "us-west-2"
CONSUMER = "222222222222"
# The fixtures' factories (tests/conftest.py, tests/integration/conftest.py).
Build = Callable[..., str]  # managed: the new image's id
Entries = Callable[..., dict[str, dict[str, Any]]]
Run = Callable[..., Any]  # run_sweep
Event = Callable[..., dict[str, Any]]  # available_event
MakeSettings = Callable[..., Settings]


@pytest.fixture
def settings(make_settings: MakeSettings) -> Settings:
    return make_settings(replica_regions=(WEST,), copy_queue_url=None)


def ssm_image_parameter(local: LocalAws, name: str, image_id: str) -> None:
    local.client("ssm").put_parameter(Name=name, Value=image_id, Type="String", DataType="aws:ec2:image")


# ---------------------------------------------------------------- every source answers, or nothing is retired


def test_an_image_named_only_by_an_ssm_parameter_is_kept_when_the_region_is_listed(
    moto_aws: LocalAws, settings: Settings, now: datetime, run_sweep: Run, entries: Entries, managed: Build, ec2: Any
) -> None:
    # Given 61 expired candidates: listing the resources is cheaper than DescribeImageReferences
    ids = [managed(ec2, f"bulk-{i}", now) for i in range(61)]
    ssm_image_parameter(moto_aws, "/golden/web/latest", ids[7])
    # When the sweep runs
    report = run_sweep(settings, now, regions=[EAST])
    # Then the listing asked SSM too, and the image is kept as in use by the parameter
    note = report.region(EAST, ACCOUNT_ID).notes["in_use_check"]
    assert note["way"] == "resource-listing"
    assert note["sources"]["ssm-parameters"] == {"answered": True, "by": "DescribeParameters+GetParameters"}
    kept = entries(report)[ids[7]]
    assert kept["reason"] == "in-use" and "ssm:Parameter" in kept["references"][0]
    assert report.totals.retired == 60
    assert ids[7] in {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}


def test_a_refused_describe_image_references_falls_back_to_listing_every_source(
    moto_aws: LocalAws, settings: Settings, now: datetime, run_sweep: Run, entries: Entries, managed: Build, ec2: Any
) -> None:
    expired = managed(ec2, "expired", now)
    by_parameter = managed(ec2, "by-parameter", now)
    ssm_image_parameter(moto_aws, "/app/ami", by_parameter)
    motoext.inject_error("DescribeImageReferences", "UnauthorizedOperation", "not authorized: ssm:DescribeParameters")
    report = run_sweep(settings, now, regions=[EAST])
    note = report.region(EAST, ACCOUNT_ID).notes["in_use_check"]
    assert "UnauthorizedOperation" in note["fallback"]
    assert note["sources"]["ssm-parameters"]["answered"] is True
    assert note["sources"]["ssm-parameters"]["by"] == "DescribeImageReferences, then DescribeParameters+GetParameters"
    assert entries(report)[by_parameter]["reason"] == "in-use"
    assert entries(report)[expired]["outcome"] == "retired"


def test_a_source_that_cannot_answer_keeps_every_candidate_as_unverified(
    moto_aws: LocalAws, settings: Settings, now: datetime, run_sweep: Run, entries: Entries, managed: Build, ec2: Any
) -> None:
    # Given DescribeImageReferences denied and SSM refusing its listing too
    candidates = [managed(ec2, f"expired-{n}", now) for n in range(3)]
    ssm_image_parameter(moto_aws, "/app/ami", candidates[0])
    motoext.inject_error("DescribeImageReferences", "UnauthorizedOperation", "denied", times=5)
    motoext.inject_error("DescribeParameters", "AccessDeniedException", "no ssm:DescribeParameters", times=5)
    # When the sweep runs for real
    report = run_sweep(settings, now, regions=[EAST])
    # Then nothing is retired, each candidate says which source could not be checked, and how
    assert report.totals.retired == 0
    for image_id in candidates:
        e = entries(report)[image_id]
        assert e["reason"] == "unverified" and e["outcome"] == "kept"
        assert "ssm-parameters" in e["detail"] and "AccessDeniedException" in e["detail"]
    sources = report.region(EAST, ACCOUNT_ID).notes["in_use_check"]["sources"]
    assert sources["ssm-parameters"]["answered"] is False
    assert sources["instances"]["answered"] is True  # the others answered by listing
    assert report.region(EAST, ACCOUNT_ID).notes["in_use_check"]["unverified_sources"] == ["ssm-parameters"]
    assert set(candidates) <= {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}


def test_a_throttled_launch_configuration_listing_keeps_the_candidates(
    moto_aws: LocalAws, settings: Settings, now: datetime, entries: Entries, managed: Build, ec2: Any
) -> None:
    image_id = managed(ec2, "expired", now)
    motoext.inject_error("DescribeLaunchConfigurations", "Throttling", "Rate exceeded", times=20)
    # botocore's retries run out (two attempts here, ten with the product's adaptive mode).
    few_retries = moto_aws.aws(Config(retries={"mode": "standard", "total_max_attempts": 2}))
    report = sweep(Deps.create(settings, few_retries, now, ACCOUNT_ID), regions=[EAST])
    e = entries(report)[image_id]
    assert e["reason"] == "unverified" and "launch-configurations" in e["detail"]
    assert report.totals.retired == 0


# ---------------------------------------------------------------- recently launched, shared


def test_a_recently_launched_image_is_kept(
    settings: Settings, now: datetime, run_sweep: Run, entries: Entries, managed: Build, ec2: Any
) -> None:
    launched, idle = managed(ec2, "launched", now), managed(ec2, "idle", now)
    motoext.set_last_launched(ACCOUNT_ID, EAST, launched, now - timedelta(days=2))
    motoext.set_last_launched(ACCOUNT_ID, EAST, idle, now - timedelta(days=30))
    report = run_sweep(settings, now, regions=[EAST])
    assert entries(report)[launched]["reason"] == "recently-launched"
    assert entries(report)[idle]["outcome"] == "retired"


def test_keep_if_launched_within_zero_disables_the_check(
    make_settings: MakeSettings, now: datetime, run_sweep: Run, entries: Entries, managed: Build, ec2: Any
) -> None:
    launched = managed(ec2, "launched", now)
    motoext.set_last_launched(ACCOUNT_ID, EAST, launched, now - timedelta(days=2))
    report = run_sweep(make_settings(keep_if_launched_within="0d"), now, regions=[EAST])
    assert entries(report)[launched]["outcome"] == "retired"


@pytest.fixture
def shared(managed: Build, now: datetime, ec2: Any) -> str:
    """An expired managed image, shared with the consumer account (a launch permission)."""
    image_id = managed(ec2, "shared", now)
    ec2.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"UserId": CONSUMER}]})
    return image_id


def test_a_shared_image_waits_for_a_usage_report_then_is_retired_when_nobody_uses_it(
    settings: Settings, now: datetime, run_sweep: Run, entries: Entries, managed: Build, shared: str, ec2: Any
) -> None:
    unshared = managed(ec2, "unshared", now)
    # First sweep: a usage report is requested, the image kept as shared-unverified.
    first = run_sweep(settings, now, regions=[EAST])
    e = entries(first)[shared]
    assert e["reason"] == "shared-unverified" and "requested" in e["detail"] and CONSUMER in e["detail"]
    assert entries(first)[unshared]["outcome"] == "retired"
    assert len(first.region(EAST, ACCOUNT_ID).notes["shared_check"]["usage_reports_requested"]) == 1
    # A dry run never requests one.
    motoext.reset_calls()
    run_sweep(settings, now, regions=[EAST], dry_run=True)
    assert motoext.calls()["CreateImageUsageReport"] == 0
    # Second sweep: the report is read and shows no use: retired.
    second = run_sweep(settings, now + timedelta(minutes=5), regions=[EAST])
    assert entries(second)[shared]["outcome"] == "retired"


def test_a_shared_image_used_in_the_consumer_account_is_kept(
    moto_aws: LocalAws, settings: Settings, now: datetime, run_sweep: Run, entries: Entries, shared: str
) -> None:
    # The consumer runs an instance from it.
    moto_aws.ec2(EAST, account=CONSUMER).run_instances(ImageId=shared, MinCount=1, MaxCount=1)
    run_sweep(settings, now, regions=[EAST])
    second = run_sweep(settings, now + timedelta(minutes=5), regions=[EAST])
    e = entries(second)[shared]
    assert e["reason"] == "shared-in-use" and CONSUMER in e["detail"]


def test_a_pending_usage_report_keeps_the_image(
    settings: Settings, now: datetime, run_sweep: Run, entries: Entries, shared: str
) -> None:
    motoext.set_usage_report_delay(3600)
    try:
        run_sweep(settings, now, regions=[EAST])
        second = run_sweep(settings, now + timedelta(minutes=5), regions=[EAST])
    finally:
        motoext.set_usage_report_delay(0)
    e = entries(second)[shared]
    assert e["reason"] == "shared-unverified" and "pending" in e["detail"]


def test_a_public_image_whose_launch_permissions_cannot_be_read_is_kept(
    settings: Settings, now: datetime, run_sweep: Run, entries: Entries, shared: str
) -> None:
    motoext.inject_error("DescribeImageAttribute", "UnauthorizedOperation", "denied", times=5)
    report = run_sweep(settings, now, regions=[EAST])
    e = entries(report)[shared]
    assert e["reason"] == "shared-unverified" and "launch permissions could not be read" in e["detail"]


def test_shared_image_check_off_treats_shared_images_as_unshared(
    make_settings: MakeSettings, now: datetime, run_sweep: Run, entries: Entries, shared: str
) -> None:
    motoext.reset_calls()
    report = run_sweep(make_settings(shared_image_check="off"), now, regions=[EAST])
    assert entries(report)[shared]["outcome"] == "retired"
    assert motoext.calls()["DescribeImageAttribute"] == 0


# ---------------------------------------------------------------- the backfill decides from EC2's state


def test_a_backfill_never_retires_an_image_whose_adoption_failed(
    moto_aws: LocalAws, settings: Settings, now: datetime, entries: Entries, ec2: Any
) -> None:
    # Given an old untagged image (adoption would make it expired at once) and CreateTags refused
    old = create_image(ec2, "legacy", created=now - timedelta(days=400))
    motoext.inject_error("CreateTags", "UnauthorizedOperation", "not authorized to perform ec2:CreateTags", times=5)
    # When the backfill applies tag + retire
    request = parse_backfill_request(
        {"actions": ["tag", "retire"], "regions": [EAST], "dry_run": False}, settings, known_regions()
    )
    report = Backfill(Deps.create(settings, moto_aws.aws(), now, ACCOUNT_ID)).run(request)
    # Then the image is not retired, and the report says tagging failed
    assert old in {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
    e = entries(report)[old]
    assert e["outcome"] != "retired" and any("UnauthorizedOperation" in err for err in e["errors"])
    assert report.totals.retired == 0


# ---------------------------------------------------------------- unreadable tags never stop a region


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_an_out_of_range_expiry_is_a_bad_tag_not_a_failed_region(
    settings: Settings, now: datetime, value: str, run_sweep: Run, entries: Entries, managed: Build, ec2: Any
) -> None:
    bad = managed(ec2, "bad", now, tags={f"{P}:expires-at": value})
    good = managed(ec2, "good", now)
    report = run_sweep(settings, now, regions=[EAST])
    assert report.region(EAST, ACCOUNT_ID).status == "complete"
    assert entries(report)[bad]["reason"] == "bad-tag"
    assert entries(report)[good]["outcome"] == "retired"


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_the_event_handler_writes_p_error_for_an_out_of_range_expiry(
    moto_aws: LocalAws, settings: Settings, now: datetime, value: str, available_event: Event, ec2: Any
) -> None:
    image_id = create_image(ec2, "user-tagged", tags={f"{P}:expires-at": value})
    outcome = handle_event(available_event(image_id), Deps.create(settings, moto_aws.aws(), now, ACCOUNT_ID))
    assert outcome.status == "tagged"
    assert "expires-at" in tags_of(ec2, image_id)[f"{P}:error"]


# ---------------------------------------------------------------- the tag limit, unknown regions


def test_an_image_near_the_tag_limit_is_refused_with_p_error_and_no_retry(
    moto_aws: LocalAws, settings: Settings, now: datetime, available_event: Event, ec2: Any
) -> None:
    # 48 user tags: adoption needs 5 more, one more (P:error) still fits.
    image_id = create_image(ec2, "crowded", tags={f"team-{n}": "x" for n in range(48)})
    # Refused, without raising (no retry).
    outcome = handle_event(available_event(image_id), Deps.create(settings, moto_aws.aws(), now, ACCOUNT_ID))
    assert outcome.status == "refused"
    tags = tags_of(ec2, image_id)
    assert "50 tags" in tags[f"{P}:error"] and f"{P}:managed" not in tags and len(tags) == 49


def test_an_image_at_the_tag_limit_is_refused_without_writing_anything(
    moto_aws: LocalAws, settings: Settings, now: datetime, available_event: Event, ec2: Any
) -> None:
    image_id = create_image(ec2, "full", tags={f"team-{n}": "x" for n in range(50)})
    outcome = handle_event(available_event(image_id), Deps.create(settings, moto_aws.aws(), now, ACCOUNT_ID))
    assert outcome.status == "refused" and "50" in outcome.reason
    assert len(tags_of(ec2, image_id)) == 50


def test_replicate_to_an_unknown_region_is_refused_in_p_error_and_never_queued(
    moto_aws: LocalAws, make_settings: MakeSettings, now: datetime, available_event: Event, ec2: Any
) -> None:
    queue = moto_aws.client("sqs").create_queue(QueueName="copies")["QueueUrl"]
    settings = make_settings(replica_regions=(WEST,), copy_queue_url=queue)
    image_id = create_image(ec2, "typo", tags={f"{P}:replicate-to": "us-west-2,us-east-9"})
    outcome = handle_event(available_event(image_id), Deps.create(settings, moto_aws.aws(), now, ACCOUNT_ID))
    assert outcome.copies_requested == []
    assert "us-east-9" in tags_of(ec2, image_id)[f"{P}:error"]
    attributes = moto_aws.client("sqs").get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"
