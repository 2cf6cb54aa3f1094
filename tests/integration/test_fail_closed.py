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
from datetime import UTC, datetime, timedelta
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
from ami_lifecycle_localaws.fleet import create_image
from botocore.config import Config

from tests.conftest import ACCOUNT_ID
from tests.integration.test_sweep import EAST, WEST, P, aws, client, entries, managed

CONSUMER = "222222222222"


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(replica_regions=(WEST,), copy_queue_url=None)


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


def run(settings: Settings, now: datetime, **kw: Any) -> Any:
    return sweep(Deps.create(settings, aws(), now, ACCOUNT_ID), regions=[EAST], **kw)


def ssm_image_parameter(name: str, image_id: str) -> None:
    client("ssm").put_parameter(Name=name, Value=image_id, Type="String", DataType="aws:ec2:image")


def many_expired(now: datetime, n: int = 61) -> list[str]:
    """Enough expired candidates that listing the resources is cheaper than DescribeImageReferences."""
    ec2 = client("ec2")
    return [managed(ec2, f"bulk-{i}", now) for i in range(n)]


# ---------------------------------------------------------------- every source answers, or nothing is retired


def test_an_image_named_only_by_an_ssm_parameter_is_kept_when_the_region_is_listed(
    moto_aws: None, settings: Settings, now: datetime
) -> None:
    # Given 61 expired candidates (listing is cheaper) and one named only by an SSM parameter
    ids = many_expired(now)
    ssm_image_parameter("/golden/web/latest", ids[7])
    # When the sweep runs
    report = run(settings, now)
    # Then the listing asked SSM too, and the image is kept as in use by the parameter
    note = report.regions[EAST].notes["in_use_check"]
    assert note["way"] == "resource-listing"
    assert note["sources"]["ssm-parameters"] == {"answered": True, "by": "DescribeParameters+GetParameters"}
    kept = entries(report)[ids[7]]
    assert kept["reason"] == "in-use" and "ssm:Parameter" in kept["references"][0]
    assert report.totals.retired == 60
    assert ids[7] in {i["ImageId"] for i in client("ec2").describe_images(Owners=["self"])["Images"]}


def test_a_refused_describe_image_references_falls_back_to_listing_every_source(
    moto_aws: None, settings: Settings, now: datetime
) -> None:
    ec2 = client("ec2")
    expired = managed(ec2, "expired", now)
    by_parameter = managed(ec2, "by-parameter", now)
    ssm_image_parameter("/app/ami", by_parameter)
    motoext.inject_error("DescribeImageReferences", "UnauthorizedOperation", "not authorized: ssm:DescribeParameters")
    report = run(settings, now)
    note = report.regions[EAST].notes["in_use_check"]
    assert "UnauthorizedOperation" in note["fallback"]
    assert note["sources"]["ssm-parameters"]["answered"] is True
    assert note["sources"]["ssm-parameters"]["by"] == "DescribeImageReferences, then DescribeParameters+GetParameters"
    assert entries(report)[by_parameter]["reason"] == "in-use"
    assert entries(report)[expired]["outcome"] == "retired"


def test_a_source_that_cannot_answer_keeps_every_candidate_as_unverified(
    moto_aws: None, settings: Settings, now: datetime
) -> None:
    # Given DescribeImageReferences denied and SSM refusing its listing too
    ec2 = client("ec2")
    candidates = [managed(ec2, f"expired-{n}", now) for n in range(3)]
    ssm_image_parameter("/app/ami", candidates[0])
    motoext.inject_error("DescribeImageReferences", "UnauthorizedOperation", "denied", times=5)
    motoext.inject_error("DescribeParameters", "AccessDeniedException", "no ssm:DescribeParameters", times=5)
    # When the sweep runs for real
    report = run(settings, now)
    # Then nothing is retired, each candidate says which source could not be checked, and how
    assert report.totals.retired == 0
    for image_id in candidates:
        e = entries(report)[image_id]
        assert e["reason"] == "unverified" and e["outcome"] == "kept"
        assert "ssm-parameters" in e["detail"] and "AccessDeniedException" in e["detail"]
    sources = report.regions[EAST].notes["in_use_check"]["sources"]
    assert sources["ssm-parameters"]["answered"] is False
    assert sources["instances"]["answered"] is True  # the others answered by listing
    assert report.regions[EAST].notes["in_use_check"]["unverified_sources"] == ["ssm-parameters"]
    assert set(candidates) <= {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}


def test_a_throttled_launch_configuration_listing_keeps_the_candidates(
    moto_aws: None, settings: Settings, now: datetime
) -> None:
    ec2 = client("ec2")
    image_id = managed(ec2, "expired", now)
    motoext.inject_error("DescribeLaunchConfigurations", "Throttling", "Rate exceeded", times=20)
    # botocore's retries run out (two attempts here, ten with the product's adaptive mode).
    few_retries = aws(Config(retries={"mode": "standard", "total_max_attempts": 2}))
    report = sweep(Deps.create(settings, few_retries, now, ACCOUNT_ID), regions=[EAST])
    e = entries(report)[image_id]
    assert e["reason"] == "unverified" and "launch-configurations" in e["detail"]
    assert report.totals.retired == 0


# ---------------------------------------------------------------- recently launched, shared


def test_a_recently_launched_image_is_kept(moto_aws: None, settings: Settings, now: datetime) -> None:
    ec2 = client("ec2")
    launched, idle = managed(ec2, "launched", now), managed(ec2, "idle", now)
    motoext.set_last_launched(ACCOUNT_ID, EAST, launched, now - timedelta(days=2))
    motoext.set_last_launched(ACCOUNT_ID, EAST, idle, now - timedelta(days=30))
    report = run(settings, now)
    assert entries(report)[launched]["reason"] == "recently-launched"
    assert entries(report)[idle]["outcome"] == "retired"


def test_keep_if_launched_within_zero_disables_the_check(
    moto_aws: None, make_settings: Callable[..., Settings], now: datetime
) -> None:
    ec2 = client("ec2")
    launched = managed(ec2, "launched", now)
    motoext.set_last_launched(ACCOUNT_ID, EAST, launched, now - timedelta(days=2))
    report = run(make_settings(keep_if_launched_within="0d"), now)
    assert entries(report)[launched]["outcome"] == "retired"


def consumer_ec2(region: str) -> Any:
    """An EC2 client acting in the consumer account (moto: credentials of an assumed role act there)."""
    import boto3

    creds = client("sts").assume_role(RoleArn=f"arn:aws:iam::{CONSUMER}:role/consumer", RoleSessionName="consumer")[
        "Credentials"
    ]
    return boto3.client(
        "ec2",
        region_name=region,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def share(image_id: str, account: str = CONSUMER) -> None:
    client("ec2").modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"UserId": account}]})


def test_a_shared_image_waits_for_a_usage_report_then_is_retired_when_nobody_uses_it(
    moto_aws: None, settings: Settings, now: datetime
) -> None:
    ec2 = client("ec2")
    image_id, unshared = managed(ec2, "shared", now), managed(ec2, "unshared", now)
    share(image_id)
    # First sweep: a usage report is requested, the image kept as shared-unverified.
    first = run(settings, now)
    e = entries(first)[image_id]
    assert e["reason"] == "shared-unverified" and "requested" in e["detail"] and CONSUMER in e["detail"]
    assert entries(first)[unshared]["outcome"] == "retired"
    assert len(first.regions[EAST].notes["shared_check"]["usage_reports_requested"]) == 1
    # A dry run never requests one.
    motoext.reset_calls()
    run(settings, now, dry_run=True)
    assert motoext.calls()["CreateImageUsageReport"] == 0
    # Second sweep: the report is read and shows no use: retired.
    second = run(settings, now + timedelta(minutes=5))
    assert entries(second)[image_id]["outcome"] == "retired"


def test_a_shared_image_used_in_the_consumer_account_is_kept(moto_aws: None, settings: Settings, now: datetime) -> None:
    ec2 = client("ec2")
    image_id = managed(ec2, "shared", now)
    share(image_id)
    # The consumer runs an instance from it.
    consumer_ec2(EAST).run_instances(ImageId=image_id, MinCount=1, MaxCount=1)
    run(settings, now)
    second = run(settings, now + timedelta(minutes=5))
    e = entries(second)[image_id]
    assert e["reason"] == "shared-in-use" and CONSUMER in e["detail"]


def test_a_pending_usage_report_keeps_the_image(moto_aws: None, settings: Settings, now: datetime) -> None:
    ec2 = client("ec2")
    image_id = managed(ec2, "shared", now)
    share(image_id)
    motoext.set_usage_report_delay(3600)
    try:
        run(settings, now)
        second = run(settings, now + timedelta(minutes=5))
    finally:
        motoext.set_usage_report_delay(0)
    e = entries(second)[image_id]
    assert e["reason"] == "shared-unverified" and "pending" in e["detail"]


def test_a_public_image_whose_launch_permissions_cannot_be_read_is_kept(
    moto_aws: None, settings: Settings, now: datetime
) -> None:
    ec2 = client("ec2")
    image_id = managed(ec2, "shared", now)
    share(image_id)
    motoext.inject_error("DescribeImageAttribute", "UnauthorizedOperation", "denied", times=5)
    report = run(settings, now)
    e = entries(report)[image_id]
    assert e["reason"] == "shared-unverified" and "launch permissions could not be read" in e["detail"]


def test_shared_image_check_off_treats_shared_images_as_unshared(
    moto_aws: None, make_settings: Callable[..., Settings], now: datetime
) -> None:
    ec2 = client("ec2")
    image_id = managed(ec2, "shared", now)
    share(image_id)
    motoext.reset_calls()
    report = run(make_settings(shared_image_check="off"), now)
    assert entries(report)[image_id]["outcome"] == "retired"
    assert motoext.calls()["DescribeImageAttribute"] == 0


# ---------------------------------------------------------------- the backfill decides from EC2's state


def test_a_backfill_never_retires_an_image_whose_adoption_failed(
    moto_aws: None, settings: Settings, now: datetime
) -> None:
    # Given an old untagged image (adoption would make it expired at once) and CreateTags refused
    ec2 = client("ec2")
    old = create_image(ec2, "legacy", created=now - timedelta(days=400))
    motoext.inject_error("CreateTags", "UnauthorizedOperation", "not authorized to perform ec2:CreateTags", times=5)
    # When the backfill applies tag + retire
    request = parse_backfill_request(
        {"actions": ["tag", "retire"], "regions": [EAST], "dry_run": False}, settings, known_regions()
    )
    report = Backfill(Deps.create(settings, aws(), now, ACCOUNT_ID)).run(request)
    # Then the image is not retired, and the report says tagging failed
    assert old in {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
    e = entries(report)[old]
    assert e["outcome"] != "retired" and any("UnauthorizedOperation" in err for err in e["errors"])
    assert report.totals.retired == 0


# ---------------------------------------------------------------- unreadable tags never stop a region


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_an_out_of_range_expiry_is_a_bad_tag_not_a_failed_region(
    moto_aws: None, settings: Settings, now: datetime, value: str
) -> None:
    ec2 = client("ec2")
    bad = managed(ec2, "bad", now, tags={f"{P}:expires-at": value})
    good = managed(ec2, "good", now)
    report = run(settings, now)
    assert report.regions[EAST].status == "complete"
    assert entries(report)[bad]["reason"] == "bad-tag"
    assert entries(report)[good]["outcome"] == "retired"


def available_event(image_id: str, region: str = EAST) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "e1",
        "detail-type": "EC2 AMI State Change",
        "source": "aws.ec2",
        "account": ACCOUNT_ID,
        "time": "2026-11-25T10:00:00Z",
        "region": region,
        "resources": [f"arn:aws:ec2:{region}::image/{image_id}"],
        "detail": {"RequestId": "r1", "ImageId": image_id, "State": "available", "ErrorMessage": ""},
    }


def tags_of(image_id: str) -> dict[str, str]:
    image = client("ec2").describe_images(ImageIds=[image_id])["Images"][0]
    return {t["Key"]: t["Value"] for t in image.get("Tags", [])}


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_the_event_handler_writes_p_error_for_an_out_of_range_expiry(
    moto_aws: None, settings: Settings, now: datetime, value: str
) -> None:
    image_id = create_image(client("ec2"), "user-tagged", tags={f"{P}:expires-at": value})
    outcome = handle_event(available_event(image_id), Deps.create(settings, aws(), now, ACCOUNT_ID))
    assert outcome.status == "tagged"
    assert "expires-at" in tags_of(image_id)[f"{P}:error"]


# ---------------------------------------------------------------- the tag limit, unknown regions


def test_an_image_near_the_tag_limit_is_refused_with_p_error_and_no_retry(
    moto_aws: None, settings: Settings, now: datetime
) -> None:
    # 48 user tags: adoption needs 5 more, one more (P:error) still fits.
    image_id = create_image(client("ec2"), "crowded", tags={f"team-{n}": "x" for n in range(48)})
    outcome = handle_event(available_event(image_id), Deps.create(settings, aws(), now, ACCOUNT_ID))  # does not raise
    assert outcome.status == "refused"
    tags = tags_of(image_id)
    assert "50 tags" in tags[f"{P}:error"] and f"{P}:managed" not in tags and len(tags) == 49


def test_an_image_at_the_tag_limit_is_refused_without_writing_anything(
    moto_aws: None, settings: Settings, now: datetime
) -> None:
    image_id = create_image(client("ec2"), "full", tags={f"team-{n}": "x" for n in range(50)})
    outcome = handle_event(available_event(image_id), Deps.create(settings, aws(), now, ACCOUNT_ID))
    assert outcome.status == "refused" and "50" in outcome.reason
    assert len(tags_of(image_id)) == 50


def test_replicate_to_an_unknown_region_is_refused_in_p_error_and_never_queued(
    moto_aws: None, make_settings: Callable[..., Settings], now: datetime
) -> None:
    queue = client("sqs").create_queue(QueueName="copies")["QueueUrl"]
    settings = make_settings(replica_regions=(WEST,), copy_queue_url=queue)
    image_id = create_image(client("ec2"), "typo", tags={f"{P}:replicate-to": "us-west-2,us-east-9"})
    outcome = handle_event(available_event(image_id), Deps.create(settings, aws(), now, ACCOUNT_ID))
    assert outcome.copies_requested == []
    assert "us-east-9" in tags_of(image_id)[f"{P}:error"]
    attributes = client("sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"
