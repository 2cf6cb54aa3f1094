"""ImageEventsFunction on moto: adoption, tagging of image and snapshots, deprecation, idempotency,
missing images, bad events, and the API-call budget of one new image."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ami_lifecycle_localaws import motoext
from ami_lifecycle_localaws.fleet import backdate, create_image, set_owner, snapshot_ids, tags_of

from tests.conftest import FakeLambdaContext, LocalAws

P = "ami-lifecycle"
REGION = "us-east-1"
Event = Callable[..., dict[str, Any]]  # the `available_event` fixture (tests/conftest.py)


@pytest.fixture
def handler(
    monkeypatch: pytest.MonkeyPatch, lambda_context: FakeLambdaContext
) -> Iterator[Callable[[dict[str, Any]], dict[str, Any]]]:
    monkeypatch.setenv("AWS_REGION", REGION)
    # The stack covers a replica region too: failed copies there are reported to us.
    monkeypatch.setenv("REPLICA_REGIONS", "us-west-2")
    from functions.image_events.app import lambda_handler

    yield lambda event: lambda_handler(event, lambda_context)


def test_new_image_is_tagged_with_its_snapshots_and_deprecated(ec2: Any, handler: Any, available_event: Event) -> None:
    image_id = create_image(ec2, "web-2026-11-25-10", created=datetime(2026, 11, 25, 9, 0, tzinfo=UTC))
    out = handler(available_event(image_id))
    assert out["status"] == "tagged" and out["reason"] == "adopted"
    expected = {
        f"{P}:managed": "true",
        f"{P}:retention": "90d",
        f"{P}:expires-at": "2027-02-23T09:00:00Z",
        f"{P}:expiry-basis": "90d",
        f"{P}:family": "web",
        f"{P}:keep-latest": "1",
    }
    assert tags_of(ec2, image_id) == expected
    for snap in snapshot_ids(ec2, image_id):
        assert tags_of(ec2, snap) == expected
    described = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    assert described["DeprecationTime"].startswith("2027-02-23T09:00")


def test_tagging_one_new_image_costs_three_ec2_calls(ec2: Any, handler: Any, available_event: Event) -> None:
    image_id = create_image(ec2, "api-v1.4.2")
    motoext.reset_calls()
    handler(available_event(image_id))
    assert motoext.calls() == {"DescribeImages": 1, "CreateTags": 1, "EnableImageDeprecation": 1}


def test_duplicate_delivery_changes_nothing_the_second_time(ec2: Any, handler: Any, available_event: Event) -> None:
    image_id = create_image(ec2, "web-1")
    handler(available_event(image_id))
    before = tags_of(ec2, image_id)
    motoext.reset_calls()
    out = handler(available_event(image_id))
    assert out["status"] == "tagged" and out["reason"] == "already managed"
    calls = motoext.calls()
    assert "CreateTags" not in calls and "EnableImageDeprecation" not in calls
    assert tags_of(ec2, image_id) == before


def test_user_tags_are_kept_and_snapshots_get_the_full_set(ec2: Any, handler: Any, available_event: Event) -> None:
    user = {f"{P}:retention": "7d", f"{P}:family": "frontend", "Owner": "team-web"}
    image_id = create_image(ec2, "web-7", tags=user)
    handler(available_event(image_id))
    tags = tags_of(ec2, image_id)
    assert tags[f"{P}:retention"] == "7d" and tags[f"{P}:family"] == "frontend" and tags["Owner"] == "team-web"
    snap_tags = tags_of(ec2, snapshot_ids(ec2, image_id)[0])
    assert snap_tags[f"{P}:family"] == "frontend" and snap_tags[f"{P}:retention"] == "7d"
    assert "Owner" not in snap_tags


def test_fully_user_tagged_image_still_gets_its_snapshots_tagged(
    ec2: Any, handler: Any, available_event: Event
) -> None:
    user = {
        f"{P}:managed": "true",
        f"{P}:retention": "forever",
        f"{P}:family": "base",
        f"{P}:keep-latest": "2",
    }
    image_id = create_image(ec2, "base-1", tags=user)
    handler(available_event(image_id))
    assert tags_of(ec2, snapshot_ids(ec2, image_id)[0]) == user


@pytest.mark.parametrize(
    "tags",
    [
        {"aws:backup:source-resource": "arn:aws:ec2:us-east-1:123456789012:instance/i-0abc"},
        {"aws:dlm:lifecycle-policy-id": "policy-0123456789abcdef0"},
        {"CreatedBy": "EC2 Image Builder"},
        {f"{P}:managed": "false"},
    ],
)
def test_images_of_other_lifecycle_managers_are_left_alone(
    ec2: Any, handler: Any, available_event: Event, tags: dict
) -> None:
    image_id = create_image(ec2, "foreign-1", tags=tags)
    motoext.reset_calls()
    out = handler(available_event(image_id))
    assert motoext.calls() == {"DescribeImages": 1}
    assert out["status"] == "skipped"
    assert tags_of(ec2, image_id) == tags


def test_image_of_another_account_is_left_alone(ec2: Any, handler: Any, available_event: Event) -> None:
    image_id = create_image(ec2, "shared-1")
    set_owner(REGION, image_id, "999999999999")
    out = handler(available_event(image_id))
    assert out["status"] == "skipped" and tags_of(ec2, image_id) == {}


def test_bad_retention_writes_an_error_tag_and_no_expiry(ec2: Any, handler: Any, available_event: Event) -> None:
    image_id = create_image(ec2, "web-9", tags={f"{P}:retention": "ninety days"})
    handler(available_event(image_id))
    tags = tags_of(ec2, image_id)
    assert f"{P}:expires-at" not in tags and "ninety days" in tags[f"{P}:error"]
    assert "DeprecationTime" not in ec2.describe_images(ImageIds=[image_id])["Images"][0]


def test_old_image_is_tagged_but_not_deprecated_in_the_past(ec2: Any, handler: Any, available_event: Event) -> None:
    image_id = create_image(ec2, "old-1")
    backdate(REGION, image_id, datetime.now(UTC) - timedelta(days=200))
    out = handler(available_event(image_id))
    assert out["status"] == "tagged" and f"{P}:expires-at" in tags_of(ec2, image_id)
    assert "DeprecationTime" not in ec2.describe_images(ImageIds=[image_id])["Images"][0]


def test_missing_image_is_a_logged_no_op(ec2: Any, handler: Any, available_event: Event) -> None:
    out = handler(available_event("ami-0000000000000dead"))
    assert out["status"] == "missing"


def test_image_deregistered_between_event_and_tagging(ec2: Any, handler: Any, available_event: Event) -> None:
    image_id = create_image(ec2, "gone-1")
    ec2.deregister_image(ImageId=image_id)
    assert handler(available_event(image_id))["status"] == "missing"


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("ami_failed.json", "recorded"),
        ("ami_deregistered.json", "recorded"),
        ("ami_malformed.json", "refused"),
        ("ec2_instance_state_change.json", "refused"),
    ],
)
def test_other_events(ec2: Any, handler: Any, event: Any, name: str, status: str) -> None:
    assert handler(event(name))["status"] == status


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.pop("detail"),
        lambda e: e["detail"].update(State="exploded"),
        lambda e: e.update(region="mars-1"),
        lambda e: e.update(account="1234"),
        lambda e: e["detail"].update(ImageId=None),
        lambda e: e.update(source="aws.s3"),
    ],
)
def test_malformed_events_are_refused_and_touch_nothing(ec2: Any, handler: Any, event: Any, mutate: Any) -> None:
    e = copy.deepcopy(event("ami_available.json"))
    mutate(e)
    motoext.reset_calls()
    out = handler(e)
    assert out["status"] == "refused" and out["reason"]
    assert motoext.calls() == {}


def test_event_for_an_account_that_is_not_managed_is_refused(ec2: Any, handler: Any, available_event: Event) -> None:
    image_id = create_image(ec2, "web-1")
    e = available_event(image_id, account="999999999999")
    motoext.reset_calls()
    out = handler(e)
    assert out["status"] == "refused" and "999999999999" in out["reason"] and "does not manage" in out["reason"]
    assert motoext.calls() == {} and tags_of(ec2, image_id) == {}


def test_non_object_event_is_refused(ec2: Any, handler: Any) -> None:
    assert handler(["not", "an", "event"])["status"] == "refused"  # type: ignore[arg-type]


def test_event_from_a_region_the_stack_does_not_cover_is_refused(
    ec2: Any, handler: Any, available_event: Event, moto_aws: LocalAws
) -> None:
    other = moto_aws.ec2("ap-south-1")
    image_id = create_image(other, "web-1")
    out = handler(available_event(image_id, "ap-south-1"))
    assert out["status"] == "refused" and "does not cover" in out["reason"]
    assert tags_of(other, image_id) == {}
