"""End to end, hub and spokes (PRODUCT.md section 7): template.yaml deployed in the hub account and
spoke.yaml in the other accounts and regions, for real on moto (`stack.LocalStack`: their rules, buses,
policies and roles created through each account's own credentials). An AMI event travels as the
templates wire it (the spoke's rule -> the hub's bus -> the hub's rule -> ImageEventsFunction), read
back from what is deployed: a wrong pattern, bus or target is an event that does not arrive."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ami_lifecycle_localaws.cfn import TemplateError
from ami_lifecycle_localaws.fleet import create_image, snapshot_ids, tags_of
from ami_lifecycle_localaws.server import shared_botocore_loader
from ami_lifecycle_localaws.stack import SPOKE_TEMPLATE, TEMPLATE, LocalStack

from tests.conftest import ACCOUNT_ID as HUB
from tests.conftest import LocalAws, regions

pytestmark = pytest.mark.e2e
Event = Callable[..., dict[str, Any]]

P = "ami-lifecycle"
EAST, WEST = "us-east-1", "eu-west-1"  # the hub region, and a second covered region
B, C = "222222222222", "333333333333"  # managed accounts with their spoke role
ROLELESS = "444444444444"  # managed, but its hub-region stack instance (the role) was never deployed
OUTSIDER = "999999999999"  # not managed
PARAMETERS = {"ManagedAccounts": f"{B},{C}", "SweepRegions": f"{EAST},{WEST}", "DefaultRetention": "90d"}


def spoke_rule_arn(stack: LocalStack, account: str, region: str) -> str:
    return stack.spokes[(account, region)].resources["ForwardAmiEventsRule"].attrs["Arn"]


def hub_rule_arn(stack: LocalStack, event_name: str) -> str:
    return stack.hub.resources[f"ImageEventsFunction{event_name}"].attrs["Arn"]


@pytest.fixture(autouse=True)
def _one_data_loader() -> Iterator[None]:
    """Each invocation's spoke-role session is a new botocore session (as in a cold Lambda): they
    share one data loader, so botocore's models are parsed once (as the embedded local AWS does)."""
    with shared_botocore_loader():
        yield


@pytest.fixture
def stack(moto_aws: LocalAws) -> LocalStack:
    return LocalStack(region=EAST, parameters=PARAMETERS, session=moto_aws.session)


# ------------------------------------------------------------------ what is deployed


def test_the_templates_are_deployed_into_every_account_and_region(stack: LocalStack, moto_aws: LocalAws) -> None:
    assert set(stack.spokes) == {(a, r) for a in (HUB, B, C) for r in (EAST, WEST)}
    bus_arn = stack.hub_outputs()["HubEventBusArn"]
    assert bus_arn == f"arn:aws:events:{EAST}:{HUB}:event-bus/ami-lifecycle-hub"
    # The hub's bus admits the managed accounts only.
    policy = moto_aws.client("events", EAST).describe_event_bus(Name="ami-lifecycle-hub")["Policy"]
    assert B in policy and C in policy and OUTSIDER not in policy
    for account in (HUB, B, C):
        iam = moto_aws.client("iam", account=account)
        roles = {r["RoleName"]: r for r in iam.list_roles()["Roles"]}
        # The spoke role: once per account (the hub-region instance), never in the hub account.
        assert ("ami-lifecycle-spoke" in roles) == (account != HUB), account
        for region in (EAST, WEST):
            rules = moto_aws.client("events", region, account=account).list_rules()["Rules"]
            forwards = not (account == HUB and region == EAST)
            assert len([r for r in rules if "ForwardAmiEventsRule" in r["Name"]]) == int(forwards), (account, region)
    spoke_role = moto_aws.client("iam", account=B).get_role(RoleName="ami-lifecycle-spoke")["Role"]
    (trust,) = spoke_role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": f"arn:aws:iam::{HUB}:root"}
    attached = moto_aws.client("iam", account=B).list_attached_role_policies(RoleName="ami-lifecycle-spoke")
    assert len(attached["AttachedPolicies"]) == 5


# ------------------------------------------------------------------ events, through the wiring


def test_an_image_baked_in_a_spoke_region_is_tagged_by_its_own_event_in_its_own_account(
    stack: LocalStack, moto_aws: LocalAws, available_event: Event
) -> None:
    ec2 = moto_aws.ec2(WEST, account=B)
    image_id = create_image(ec2, "web-2026-11-25-10", account_id=B)

    (delivered,) = stack.put_event(available_event(image_id, WEST, account=B))

    # spoke rule (B, eu-west-1) -> HubEventBus -> the hub's rule on it -> ImageEventsFunction
    assert delivered.function == "ImageEventsFunction"
    assert delivered.route == (spoke_rule_arn(stack, B, WEST), hub_rule_arn(stack, "AmiStateChangeFromSpokes"))
    assert delivered.result["status"] == "tagged", delivered.result
    tags = tags_of(ec2, image_id)
    assert tags[f"{P}:managed"] == "true" and tags[f"{P}:family"] == "web" and f"{P}:expires-at" in tags
    assert tags_of(ec2, snapshot_ids(ec2, image_id)[0])[f"{P}:managed"] == "true"
    # Nothing was done anywhere else.
    assert moto_aws.ec2(WEST).describe_images(Owners=["self"])["Images"] == []


def test_the_hub_regions_own_event_arrives_from_its_default_bus(
    stack: LocalStack, moto_aws: LocalAws, available_event: Event
) -> None:
    ec2 = moto_aws.ec2(EAST)
    image_id = create_image(ec2, "api-v2.0.0")
    (delivered,) = stack.put_event(available_event(image_id, EAST))
    assert delivered.route == (hub_rule_arn(stack, "AmiStateChange"),)
    assert delivered.result["status"] == "tagged" and tags_of(ec2, image_id)[f"{P}:managed"] == "true"


def test_the_hub_accounts_other_region_forwards_to_the_hub_bus(
    stack: LocalStack, moto_aws: LocalAws, available_event: Event
) -> None:
    ec2 = moto_aws.ec2(WEST)
    image_id = create_image(ec2, "api-v2.0.0")
    (delivered,) = stack.put_event(available_event(image_id, WEST))
    assert delivered.route == (spoke_rule_arn(stack, HUB, WEST), hub_rule_arn(stack, "AmiStateChangeFromSpokes"))
    assert tags_of(ec2, image_id)[f"{P}:managed"] == "true"


def test_copies_stay_in_the_images_account_and_their_events_come_back_through_the_spoke(
    moto_aws: LocalAws, available_event: Event
) -> None:
    stack = LocalStack(
        region=EAST, parameters={**PARAMETERS, "ReplicaRegions": WEST, "SweepRegions": ""}, session=moto_aws.session
    )
    ec2 = moto_aws.ec2(EAST, account=C)
    image_id = create_image(ec2, "web-2026-11-25-10", account_id=C)
    (delivered,) = stack.put_event(available_event(image_id, EAST, account=C))
    assert delivered.result["copies_requested"] == [WEST], delivered.result
    stack.drain_queue("CopyQueue")

    remote = moto_aws.ec2(WEST, account=C)
    (copy,) = remote.describe_images(Owners=["self"])["Images"]
    assert tags_of(remote, copy["ImageId"])[f"{P}:source-image"] == image_id
    assert moto_aws.ec2(WEST).describe_images(Owners=["self"])["Images"] == []  # not in the hub account
    (again,) = stack.put_event(available_event(copy["ImageId"], WEST, account=C))
    assert again.route[0] == spoke_rule_arn(stack, C, WEST)
    assert again.result["status"] == "tagged" and "copies_requested" not in again.result


def test_an_event_from_an_unmanaged_account_changes_nothing(
    stack: LocalStack, moto_aws: LocalAws, available_event: Event
) -> None:
    # Someone deploys spoke.yaml in an account the hub does not manage: the hub's bus refuses its events.
    stack.deploy_spoke(OUTSIDER, WEST)
    ec2 = moto_aws.ec2(WEST, account=OUTSIDER)
    image_id = create_image(ec2, "web-2026-11-25-10", account_id=OUTSIDER)
    event = available_event(image_id, WEST, account=OUTSIDER)

    assert stack.put_event(event) == []
    (refused,) = stack.undelivered
    assert refused.route == (spoke_rule_arn(stack, OUTSIDER, WEST),)
    assert f"does not admit account {OUTSIDER}" in refused.reason

    # Put on the hub's bus anyway (as if its policy were open): the function refuses it.
    (delivered,) = stack.put_event(event, bus_arn=stack.hub_outputs()["HubEventBusArn"])
    assert delivered.result["status"] == "refused" and OUTSIDER in delivered.result["reason"]
    assert tags_of(ec2, image_id) == {} and stack.invocations[-1].function == "ImageEventsFunction"


def test_an_event_from_a_region_the_hub_does_not_cover_is_refused(
    stack: LocalStack, moto_aws: LocalAws, available_event: Event
) -> None:
    # The StackSet reaches a region SweepRegions does not list: the event arrives, and is refused.
    far = "ap-southeast-2"
    stack.deploy_spoke(B, far)
    ec2 = moto_aws.ec2(far, account=B)
    image_id = create_image(ec2, "web-2026-11-25-10", account_id=B)
    (delivered,) = stack.put_event(available_event(image_id, far, account=B))
    assert delivered.result["status"] == "refused" and far in delivered.result["reason"]
    assert tags_of(ec2, image_id) == {}


# ------------------------------------------------------------------ broken wiring does not deliver


def _spoke_with(tmp_path: Path, old: str, new: str) -> Path:
    text = SPOKE_TEMPLATE.read_text()
    assert old in text
    path = tmp_path / "spoke.yaml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        pytest.param({"parameters": {"HubEventBusArn": f"arn:aws:events:{EAST}:{HUB}:event-bus/ami-lifecycle-hbu"}},
                     "ResourceNotFoundException", id="a bus that does not exist"),
        pytest.param({"parameters": {"HubEventBusArn": f"arn:aws:events:{WEST}:{HUB}:event-bus/ami-lifecycle-hub"}},
                     "ResourceNotFoundException", id="the hub bus in the wrong region"),
        pytest.param({"template": ("detail-type: [EC2 AMI State Change]", "detail-type: [EC2 AMI State Changed]")},
                     None, id="a pattern that does not match"),
        pytest.param({"template": ("Resource: !Ref HubEventBusArn", 'Resource: !Sub "${HubEventBusArn}-other"')},
                     "is not allowed events:PutEvents", id="a forwarding role without the permission"),
        pytest.param({"template": ("          RoleArn: !GetAtt ForwardAmiEventsRole.Arn\n", "")},
                     "needs a role", id="a cross-region target without a role"),
    ],
)  # fmt: skip
def test_a_broken_spoke_wiring_delivers_nothing(
    broken: dict[str, Any], reason: str | None, moto_aws: LocalAws, available_event: Event, tmp_path: Path
) -> None:
    kwargs: dict[str, Any] = {}
    if "template" in broken:
        kwargs["spoke_template_path"] = _spoke_with(tmp_path, *broken["template"])
    stack = LocalStack(region=EAST, parameters=PARAMETERS, session=moto_aws.session, spokes=False, **kwargs)
    stack.deploy_spoke(B, WEST, broken.get("parameters"))
    ec2 = moto_aws.ec2(WEST, account=B)
    image_id = create_image(ec2, "web-2026-11-25-10", account_id=B)

    assert stack.put_event(available_event(image_id, WEST, account=B)) == []
    assert stack.invocations == [] and tags_of(ec2, image_id) == {}
    if reason is None:
        assert stack.undelivered == []  # no rule matched
    else:
        (undelivered,) = stack.undelivered
        assert reason in undelivered.reason, undelivered.reason


def test_a_hub_rule_on_the_wrong_bus_delivers_nothing_from_the_spokes(
    moto_aws: LocalAws, available_event: Event, tmp_path: Path
) -> None:
    text = TEMPLATE.read_text()
    rule = "EventBusName: !Ref HubEventBus\n            Pattern:"  # the function's rule, not the bus policy
    assert text.count(rule) == 1
    broken = tmp_path / "template.yaml"
    broken.write_text(text.replace(rule, "EventBusName: default\n            Pattern:"))
    stack = LocalStack(region=EAST, parameters=PARAMETERS, session=moto_aws.session, template_path=broken)
    image_id = create_image(moto_aws.ec2(WEST, account=B), "web-2026-11-25-10", account_id=B)
    assert stack.put_event(available_event(image_id, WEST, account=B)) == []  # the hub's bus has no rule
    # ... and the hub region's own events now match two rules on the default bus: delivered twice.
    hub_image = create_image(moto_aws.ec2(EAST), "api-v2.0.0")
    assert len(stack.put_event(available_event(hub_image, EAST))) == 2


def test_the_control_the_same_spoke_deployed_as_written_delivers(moto_aws: LocalAws, available_event: Event) -> None:
    stack = LocalStack(region=EAST, parameters=PARAMETERS, session=moto_aws.session, spokes=False)
    stack.deploy_spoke(B, EAST)  # the role
    stack.deploy_spoke(B, WEST)  # the forwarding
    image_id = create_image(moto_aws.ec2(WEST, account=B), "web-2026-11-25-10", account_id=B)
    (delivered,) = stack.put_event(available_event(image_id, WEST, account=B))
    assert delivered.function == "ImageEventsFunction" and delivered.result["status"] == "tagged"


def test_a_hub_whose_managed_accounts_omit_the_spoke_refuses_its_events(
    moto_aws: LocalAws, available_event: Event
) -> None:
    stack = LocalStack(
        region=EAST, parameters={**PARAMETERS, "ManagedAccounts": C}, session=moto_aws.session, spokes=False
    )
    stack.deploy_spoke(B, WEST)
    image_id = create_image(moto_aws.ec2(WEST, account=B), "web-2026-11-25-10", account_id=B)
    assert stack.put_event(available_event(image_id, WEST, account=B)) == []
    assert "does not admit account" in stack.undelivered[0].reason


def test_a_spoke_parameter_the_template_refuses_fails_the_deployment(moto_aws: LocalAws) -> None:
    stack = LocalStack(region=EAST, parameters=PARAMETERS, session=moto_aws.session, spokes=False)
    with pytest.raises(TemplateError, match="HubEventBusArn"):
        stack.deploy_spoke(B, WEST, {"HubEventBusArn": "ami-lifecycle-hub"})


# ------------------------------------------------------------------ a sweep over every pair


def sweep(stack: LocalStack) -> dict[str, Any]:
    """RetentionSweepFunction invoked by hand (every pair), re-invoked with its cursor until done."""
    report: dict[str, Any] = stack.invoke("RetentionSweepFunction", {})
    assert not report.get("cursor"), "one invocation is enough for this fleet"
    return report


def test_a_sweep_over_three_accounts_and_two_regions_retires_what_the_rule_says_in_each_pair(
    moto_aws: LocalAws, available_event: Event, now: datetime
) -> None:
    parameters = {**PARAMETERS, "ManagedAccounts": f"{B},{C},{ROLELESS}", "DefaultKeepLatest": "1"}
    stack = LocalStack(region=EAST, parameters=parameters, session=moto_aws.session, spokes=False)
    for account in (HUB, B, C):
        for region in (EAST, WEST):
            stack.deploy_spoke(account, region)
    stack.deploy_spoke(ROLELESS, WEST)  # its events are forwarded; its role (hub-region instance) is missing

    # Each pair: n expired images of family "web" and a recent one; n differs per pair.
    expected: dict[tuple[str, str], set[str]] = {}
    kept: dict[tuple[str, str], str] = {}
    for n, (account, region) in enumerate(((a, r) for a in (HUB, B, C) for r in (EAST, WEST)), start=1):
        ec2 = moto_aws.ec2(region, account=account)
        old = [
            create_image(ec2, f"web-2025-01-{i + 10}", created=now - timedelta(days=300 - 10 * i), account_id=account)
            for i in range(n)
        ]
        new = create_image(ec2, "web-2026-11-25", created=now - timedelta(days=1), account_id=account)
        for image_id in (*old, new):
            (delivered,) = stack.put_event(available_event(image_id, region, account=account))
            assert delivered.result["status"] == "tagged", (account, region, delivered.result)
        expected[(account, region)], kept[(account, region)] = set(old), new
    untouched = create_image(moto_aws.ec2(WEST, account=ROLELESS), "web-0", account_id=ROLELESS)

    report = sweep(stack)

    for (account, region), retired in expected.items():
        pair = regions(report, account)[region]
        assert pair["status"] == "complete", (account, region, pair)
        assert {e["image_id"] for e in pair["images"] if e.get("outcome") == "retired"} == retired, (account, region)
        images = moto_aws.ec2(region, account=account).describe_images(Owners=["self"])["Images"]
        assert {i["ImageId"] for i in images} == {kept[(account, region)]}, (account, region)
    # The account whose role is missing: both its pairs failed, with the reason; nothing touched.
    for region in (EAST, WEST):
        failed = regions(report, ROLELESS)[region]
        assert failed["status"] == "failed" and "AccessDenied" in failed["error"], failed
    assert [i["ImageId"] for i in moto_aws.ec2(WEST, account=ROLELESS).describe_images(Owners=["self"])["Images"]] == [
        untouched
    ]
    assert report["status"] == "partial"
    assert report["totals"]["retired"] == sum(len(v) for v in expected.values()) == 21
