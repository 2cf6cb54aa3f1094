"""End to end: events are routed to the handlers exactly as template.yaml wires them (the rule
patterns, queues and schedules are read from the template, never copied into the test)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from ami_lifecycle.runtime import load_settings
from ami_lifecycle_localaws.fleet import create_image, snapshot_ids, tags_of
from ami_lifecycle_localaws.stack import LocalStack, functions, load_template

from tests.conftest import LocalAws

P = "ami-lifecycle"
pytestmark = pytest.mark.e2e
Event = Callable[..., dict[str, Any]]  # the `available_event` fixture (tests/conftest.py)


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
    # The schedule starts SweepStateMachine (PRODUCT.md section 9), which invokes the sweep.
    assert not specs["RetentionSweepFunction"].events_of_type("ScheduleV2")
    assert load_template()["Resources"]["SweepStateMachine"]["Properties"]["Events"]["Sweep"]["Type"] == "ScheduleV2"
    assert specs["ReplicatorFunction"].events_of_type("SQS")


def test_every_template_parameter_reaches_the_functions_as_a_validated_setting(stack: LocalStack) -> None:

    env = stack.environment("ImageEventsFunction")
    settings = load_settings(env)
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
        "SweepConcurrency",  # the state machine's, not the functions' (DefinitionSubstitutions)
        "DryRun",
        "ManageNewImages",
        "AlarmEmail",
        "KeepIfLaunchedWithin",
        "SharedImageCheck",
        "MaxRetirementsPerRun",
        "ManagedAccounts",
        "SpokeRoleName",
        "OrganizationId",
        "DisableBeforeDeregister",
    }
    assert settings.max_retirements_per_run == 100
    assert settings.keep_if_launched_within == "7d" and settings.shared_image_check == "strict"


def test_the_rule_pattern_matches_ami_events_and_nothing_else(moto_aws: None, event: Any) -> None:
    # The sample events are from us-east-1 and us-west-2: both covered, so spoke.yaml forwards the
    # latter's from its default bus to the hub's bus.
    stack = LocalStack(region="us-east-1", parameters={"SweepRegions": "us-east-1,us-west-2"})
    for name in ("ami_available.json", "ami_failed.json", "ami_deregistered.json"):
        assert stack.rule_targets(event(name)) == ["ImageEventsFunction"], name
    assert stack.rule_targets(event("ec2_instance_state_change.json")) == []
    other = copy.deepcopy(event("ami_available.json"))
    other["source"] = "custom.packer"
    assert stack.rule_targets(other) == []


def test_a_new_image_is_tagged_through_the_templates_wiring(
    stack: LocalStack, moto_aws: LocalAws, available_event: Event
) -> None:
    ec2 = moto_aws.ec2("us-east-1")
    image_id = create_image(ec2, "web-2026-11-25-10")
    delivered = stack.put_event(available_event(image_id))
    assert [d.function for d in delivered] == ["ImageEventsFunction"]
    assert delivered[0].result["status"] == "tagged"
    tags = tags_of(ec2, image_id)
    assert tags[f"{P}:managed"] == "true" and tags[f"{P}:family"] == "web"
    assert tags_of(ec2, snapshot_ids(ec2, image_id)[0])[f"{P}:managed"] == "true"


def test_template_parameters_change_behaviour(moto_aws: LocalAws, available_event: Event) -> None:
    stack = LocalStack(region="us-east-1", parameters={"TagPrefix": "acme", "DefaultRetention": "7d"})
    ec2 = moto_aws.ec2("us-east-1")
    image_id = create_image(ec2, "api-v2.0.1")
    stack.put_event(available_event(image_id))
    tags = tags_of(ec2, image_id)
    assert tags["acme:retention"] == "7d" and tags["acme:family"] == "api" and not any(k.startswith(P) for k in tags)


def test_unknown_or_invalid_parameters_are_refused(moto_aws: None) -> None:
    with pytest.raises(ValueError, match="unknown template parameters"):
        LocalStack(parameters={"NoSuchParameter": "x"})
    with pytest.raises(ValueError, match="DryRun"):
        LocalStack(parameters={"DryRun": "perhaps"})


def test_a_new_image_appears_tagged_in_every_replica_region(moto_aws: LocalAws, available_event: Event) -> None:
    # Given a stack copying to two regions
    stack = LocalStack(region="us-east-1", parameters={"ReplicaRegions": "us-west-2,eu-west-1"})
    ec2 = moto_aws.ec2("us-east-1")
    image_id = create_image(ec2, "web-2026-11-25-10")
    e = available_event(image_id)
    # When EventBridge delivers its event, and the copy queue is drained into ReplicatorFunction
    stack.put_event(e)
    stack.put_event(e)  # delivered twice: still one copy per region
    consumed = stack.drain_queue("CopyQueue")
    assert consumed and all(i.function == "ReplicatorFunction" for i in consumed)
    # Then each replica region has exactly one copy, tagged (image and snapshots) with lineage
    source_tags = tags_of(ec2, image_id)
    for region in ("us-west-2", "eu-west-1"):
        remote = moto_aws.ec2(region)
        copies = remote.describe_images(Owners=["self"])["Images"]
        assert len(copies) == 1, region
        copy_id = copies[0]["ImageId"]
        tags = tags_of(remote, copy_id)
        assert tags[f"{P}:source-image"] == image_id and tags[f"{P}:source-region"] == "us-east-1"
        assert tags[f"{P}:expires-at"] == source_tags[f"{P}:expires-at"]
        assert tags_of(remote, snapshot_ids(remote, copy_id)[0])[f"{P}:source-image"] == image_id
        assert f"{region}={copy_id}" in source_tags[f"{P}:copies"] or f"{region}={copy_id}" in tags_of(
            ec2, image_id
        ).get(f"{P}:copies", "")
        # The copy's own event, delivered in its region, requests no further copies.
        (delivered,) = stack.put_event(available_event(copy_id, region))
        assert delivered.result["status"] == "tagged" and "copies_requested" not in delivered.result
    assert stack.drain_queue("CopyQueue") == []
