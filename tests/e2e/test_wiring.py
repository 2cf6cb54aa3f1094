"""End to end: events are routed to the handlers exactly as template.yaml wires them (the rule
patterns, queues and schedules are read from the template, never copied into the test)."""

from __future__ import annotations

import copy
from typing import Any

import boto3
import pytest
from ami_lifecycle_localaws.fleet import create_image, snapshot_ids, tags_of
from ami_lifecycle_localaws.stack import LocalStack, functions, load_template

P = "ami-lifecycle"
pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(moto_aws: None) -> LocalStack:
    return LocalStack(region="us-east-1")


def test_template_declares_the_contracts_functions() -> None:
    specs = functions(load_template())
    assert set(specs) == {
        "ImageEventsFunction",
        "ReplicatorFunction",
        "RetentionSweepFunction",
        "BackfillFunction",
    }
    assert specs["ImageEventsFunction"].events_of_type("EventBridgeRule")
    assert specs["RetentionSweepFunction"].events_of_type("ScheduleV2")
    assert specs["ReplicatorFunction"].events_of_type("SQS")


def test_every_template_parameter_reaches_the_functions_as_a_validated_setting(stack: LocalStack) -> None:
    from ami_lifecycle.settings import Settings

    env = stack.environment("ImageEventsFunction")
    settings = Settings.from_env(env)
    assert settings.tag_prefix == "ami-lifecycle" and settings.default_retention == "90d"
    assert settings.copy_queue_url == stack.queue_url("CopyQueue")
    params = set(load_template()["Parameters"])
    assert params == {
        "TagPrefix",
        "DefaultRetention",
        "DefaultKeepLatest",
        "ReplicaRegions",
        "ReplicaKmsKeys",
        "SweepRegions",
        "SweepSchedule",
        "DryRun",
        "ManageNewImages",
        "AlarmEmail",
    }


def test_the_rule_pattern_matches_ami_events_and_nothing_else(stack: LocalStack, event: Any) -> None:
    for name in ("ami_available.json", "ami_failed.json", "ami_deregistered.json"):
        assert stack.rule_targets(event(name)) == ["ImageEventsFunction"], name
    assert stack.rule_targets(event("ec2_instance_state_change.json")) == []
    other = copy.deepcopy(event("ami_available.json"))
    other["source"] = "custom.packer"
    assert stack.rule_targets(other) == []


def test_a_new_image_is_tagged_through_the_templates_wiring(stack: LocalStack, event: Any) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    image_id = create_image(ec2, "web-2026-11-25-10")
    e = copy.deepcopy(event("ami_available.json"))
    e["detail"]["ImageId"] = image_id
    delivered = stack.put_event(e)
    assert [d.function for d in delivered] == ["ImageEventsFunction"]
    assert delivered[0].result["status"] == "tagged"
    tags = tags_of(ec2, image_id)
    assert tags[f"{P}:managed"] == "true" and tags[f"{P}:family"] == "web"
    assert tags_of(ec2, snapshot_ids(ec2, image_id)[0])[f"{P}:managed"] == "true"


def test_template_parameters_change_behaviour(moto_aws: None, event: Any) -> None:
    stack = LocalStack(region="us-east-1", parameters={"TagPrefix": "acme", "DefaultRetention": "7d"})
    ec2 = boto3.client("ec2", region_name="us-east-1")
    image_id = create_image(ec2, "api-v2.0.1")
    e = copy.deepcopy(event("ami_available.json"))
    e["detail"]["ImageId"] = image_id
    stack.put_event(e)
    tags = tags_of(ec2, image_id)
    assert (
        tags["acme:retention"] == "7d"
        and tags["acme:family"] == "api"
        and not any(k.startswith(P) for k in tags)
    )


def test_unknown_or_invalid_parameters_are_refused(moto_aws: None) -> None:
    with pytest.raises(ValueError, match="unknown template parameters"):
        LocalStack(parameters={"NoSuchParameter": "x"})
    with pytest.raises(ValueError, match="DryRun"):
        LocalStack(parameters={"DryRun": "perhaps"})
