"""Shared images across managed accounts on moto (PRODUCT.md section 8): a consumer that is a managed
account is checked at once, in the image's region, through its spoke role (its references, as the
owner's are checked), instead of waiting for a usage report. In use there: kept `shared-in-use`
naming the account and the reference; its role missing or its sources not answering: kept
`shared-unverified` naming the account and why; unused there: that consumer does not keep it. The
other consumers still go through the usage reports."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from ami_lifecycle.aws.clients import Aws
from ami_lifecycle.aws.ec2 import Ec2, RegionGateways
from ami_lifecycle.domain.evidence import usage_of
from ami_lifecycle.domain.report import RegionReport
from ami_lifecycle.domain.retention import Decision, Reason, decide, rank_families
from ami_lifecycle.domain.settings import Settings
from ami_lifecycle.runtime import Deps
from ami_lifecycle.services.evidence import check_sharing, gather_evidence
from ami_lifecycle.services.executor import Executor
from ami_lifecycle_localaws import motoext
from ami_lifecycle_localaws.fleet import create_image
from botocore.config import Config

from tests.conftest import ACCOUNT_ID, LocalAws

P = "ami-lifecycle"
HUB = ACCOUNT_ID
SPOKE = "222222222222"  # managed, its spoke role deployed
NO_ROLE = "333333333333"  # managed, its spoke role missing
STRANGER = "444444444444"  # not managed
EAST = "us-east-1"
ROLE = "ami-lifecycle-spoke"
Build = Callable[..., str]  # the `managed` fixture (tests/integration/conftest.py)


@pytest.fixture
def aws(moto_aws: LocalAws) -> Aws:
    return moto_aws.aws(Config(retries={"mode": "standard", "total_max_attempts": 1}))


@pytest.fixture
def settings_for(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        # Launches are not what is tested here (the spoke's instances would keep the image anyway).
        data: dict[str, Any] = {"managed_accounts_param": (SPOKE, NO_ROLE), "keep_if_launched_within": "0d"}
        data.update(overrides)
        return make_settings(**data)

    return make


@pytest.fixture
def spoke_role(moto_aws: LocalAws) -> None:
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{HUB}:root"}, "Action": "sts:AssumeRole"}
        ],
    }
    moto_aws.client("iam", account=SPOKE).create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(trust))


@pytest.fixture
def shared_with(managed: Build, ec2: Any) -> Callable[..., str]:
    """`shared_with(*accounts)`: an expired managed image of the hub, shared with these accounts."""

    def make(*accounts: str, name: str = "shared") -> str:
        image_id = managed(ec2, name, datetime.now(UTC))
        ec2.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"UserId": a} for a in accounts]})
        return image_id

    return make


def sweep_decisions(settings: Settings, aws: Aws, *image_ids: str) -> tuple[dict[str, Decision], RegionReport]:
    """What the sweep decides for these hub images in us-east-1 (services/pipeline.RegionWork.decide):
    the owner's in-use check, then the shared-image check with the managed accounts."""
    now = datetime.now(UTC)
    deps = Deps.create(settings, aws, now, HUB)
    gw = RegionGateways.of(aws, EAST)
    images = [image for image_id in image_ids if (image := Ec2(aws.ec2(EAST), EAST).describe_image(image_id))]
    ranks = rank_families(images, settings, HUB)
    decisions = {i.image_id: decide(i, ranks.get(i.image_id), None, settings, now, HUB) for i in images}
    assert all(d.awaits_reference_check for d in decisions.values())
    evidence, _ = gather_evidence(gw, list(image_ids))
    out = RegionReport(EAST, HUB)
    sharing = check_sharing(
        Executor(gw.ec2, dry_run=False), images, decisions, settings, now, out, dry_run=False, account_id=HUB, deps=deps
    )
    final = {
        i.image_id: decide(
            i, ranks.get(i.image_id), usage_of(i.image_id, evidence, sharing[i.image_id]), settings, now, HUB
        )
        for i in images
    }
    return final, out


def test_a_shared_image_used_by_an_instance_in_a_managed_account_is_kept_naming_it(
    settings_for: Callable[..., Settings], aws: Aws, moto_aws: LocalAws, shared_with: Any, spoke_role: None
) -> None:
    image_id = shared_with(SPOKE)
    (instance,) = moto_aws.ec2(EAST, account=SPOKE).run_instances(ImageId=image_id, MinCount=1, MaxCount=1)["Instances"]
    motoext.reset_calls()

    decisions, out = sweep_decisions(settings_for(), aws, image_id)

    d = decisions[image_id]
    assert not d.retire and d.reason is Reason.SHARED_IN_USE
    assert f"managed account {SPOKE} ({EAST})" in d.detail and instance["InstanceId"] in d.detail
    # At once, in the consumer's account: no usage report asked for.
    assert motoext.calls()["CreateImageUsageReport"] == 0 and motoext.calls()["DescribeImageUsageReports"] == 0
    assert out.notes["managed_consumers"][SPOKE]["in_use"] == [image_id]


def test_a_launch_template_in_the_managed_account_keeps_it_too(
    settings_for: Callable[..., Settings], aws: Aws, moto_aws: LocalAws, shared_with: Any, spoke_role: None
) -> None:
    image_id = shared_with(SPOKE)
    moto_aws.ec2(EAST, account=SPOKE).create_launch_template(
        LaunchTemplateName="web", LaunchTemplateData={"ImageId": image_id}
    )
    d = sweep_decisions(settings_for(), aws, image_id)[0][image_id]
    assert d.reason is Reason.SHARED_IN_USE and "ec2:LaunchTemplate" in d.detail and SPOKE in d.detail


def test_unused_in_the_managed_account_it_is_not_kept_for_that_consumer(
    settings_for: Callable[..., Settings], aws: Aws, moto_aws: LocalAws, shared_with: Any, spoke_role: None
) -> None:
    image_id = shared_with(SPOKE)
    # The spoke runs other images only.
    spoke_east = moto_aws.ec2(EAST, account=SPOKE)
    own = create_image(spoke_east, "spoke-own")
    spoke_east.run_instances(ImageId=own, MinCount=1, MaxCount=1)
    decisions, _ = sweep_decisions(settings_for(), aws, image_id)
    assert decisions[image_id].retire, decisions[image_id].reasons
    assert motoext.calls()["CreateImageUsageReport"] == 0


def test_the_managed_accounts_role_missing_keeps_it_unverified_naming_the_account(
    settings_for: Callable[..., Settings], aws: Aws, shared_with: Any
) -> None:
    image_id = shared_with(NO_ROLE)
    decisions, out = sweep_decisions(settings_for(), aws, image_id)
    d = decisions[image_id]
    assert not d.retire and d.reason is Reason.SHARED_UNVERIFIED
    assert f"managed account {NO_ROLE} ({EAST}) could not be checked" in d.detail
    assert f"arn:aws:iam::{NO_ROLE}:role/{ROLE}" in d.detail and "AccessDenied" in d.detail
    assert "AccessDenied" in out.notes["managed_consumers"][NO_ROLE]["error"]


def test_sources_not_answering_in_the_managed_account_keep_it_unverified_naming_them(
    settings_for: Callable[..., Settings], aws: Aws, shared_with: Any, spoke_role: None
) -> None:
    image_id = shared_with(SPOKE)
    # Only the consumer's check here (the faults are for the spoke's calls, not the hub's own check).
    now = datetime.now(UTC)
    settings = settings_for()
    deps = Deps.create(settings, aws, now, HUB)
    gw = RegionGateways.of(aws, EAST)
    image = Ec2(aws.ec2(EAST), EAST).describe_image(image_id)
    assert image is not None
    decision = decide(image, rank_families([image], settings, HUB).get(image_id), None, settings, now, HUB)
    motoext.inject_error("DescribeImageReferences", "UnauthorizedOperation", "not authorized", times=1)
    motoext.inject_error("DescribeInstances", "UnauthorizedOperation", "not authorized to DescribeInstances")
    out = RegionReport(EAST, HUB)
    sharing = check_sharing(
        Executor(gw.ec2, dry_run=False),
        [image],
        {image_id: decision},
        settings,
        now,
        out,
        dry_run=False,
        account_id=HUB,
        deps=deps,
    )[image_id]
    assert sharing.blocks and sharing.state == "unverified"
    assert f"managed account {SPOKE} ({EAST}) not proven unused" in sharing.detail
    assert "instances (DescribeImageReferences, then DescribeInstances" in sharing.detail


def test_other_consumers_still_go_through_the_usage_report(
    settings_for: Callable[..., Settings], aws: Aws, moto_aws: LocalAws, shared_with: Any, spoke_role: None
) -> None:
    image_id = shared_with(SPOKE, STRANGER)
    decisions, out = sweep_decisions(settings_for(), aws, image_id)
    d = decisions[image_id]
    assert d.reason is Reason.SHARED_UNVERIFIED and "requested amiur-" in d.detail
    assert f"shared with account {STRANGER}" in d.detail and SPOKE not in d.detail  # the spoke: checked, unused
    assert len(out.notes["shared_check"]["usage_reports_requested"]) == 1

    # A use in the spoke is found at once, whatever the report still says.
    moto_aws.ec2(EAST, account=SPOKE).run_instances(ImageId=image_id, MinCount=1, MaxCount=1)
    d = sweep_decisions(settings_for(), aws, image_id)[0][image_id]
    assert d.reason is Reason.SHARED_IN_USE and f"managed account {SPOKE}" in d.detail


def test_with_managed_accounts_mode_only_the_managed_consumers_are_checked(
    settings_for: Callable[..., Settings], aws: Aws, moto_aws: LocalAws, shared_with: Any, spoke_role: None
) -> None:
    settings = settings_for(shared_image_check="managed-accounts")
    used, unused = shared_with(SPOKE, STRANGER, name="used"), shared_with(SPOKE, STRANGER, name="unused")
    moto_aws.ec2(EAST, account=SPOKE).run_instances(ImageId=used, MinCount=1, MaxCount=1)
    motoext.reset_calls()

    decisions, _ = sweep_decisions(settings, aws, used, unused)

    assert decisions[used].reason is Reason.SHARED_IN_USE and SPOKE in decisions[used].detail
    assert decisions[unused].retire  # the stranger is not checked in this mode; the spoke does not use it
    assert motoext.calls()["CreateImageUsageReport"] == 0 and motoext.calls()["DescribeImageUsageReports"] == 0


def test_an_account_that_is_not_managed_is_never_entered(
    settings_for: Callable[..., Settings], aws: Aws, moto_aws: LocalAws, shared_with: Any
) -> None:
    image_id = shared_with(STRANGER)
    moto_aws.ec2(EAST, account=STRANGER).run_instances(ImageId=image_id, MinCount=1, MaxCount=1)
    motoext.reset_calls()
    decisions, out = sweep_decisions(settings_for(), aws, image_id)
    assert motoext.calls()["AssumeRole"] == 0 and "managed_consumers" not in out.notes
    assert decisions[image_id].reason is Reason.SHARED_UNVERIFIED  # a usage report, as before


def test_assume_role_throttled_keeps_it_unverified_naming_the_account_and_why(
    settings_for: Callable[..., Settings], aws: Aws, shared_with: Any, spoke_role: None
) -> None:
    image_id = shared_with(SPOKE)
    motoext.inject_error("AssumeRole", "Throttling", "Rate exceeded", status=400)
    d = sweep_decisions(settings_for(), aws, image_id)[0][image_id]
    assert d.reason is Reason.SHARED_UNVERIFIED
    assert f"managed account {SPOKE} ({EAST}) could not be checked" in d.detail and "Throttling" in d.detail
