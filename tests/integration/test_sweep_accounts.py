"""The sweep over every (account, region) pair (PRODUCT.md section 7): 3 accounts x 2 regions, one
account whose spoke role is missing. Each reachable pair retires exactly what the rule says, in
its own account; the unreachable account's pairs are reported failed with the reason, and nothing
is touched there; each spoke role is assumed once per run; the report is keyed by account, then
region; a shared image a managed consumer uses is kept."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from ami_lifecycle.domain.settings import Settings
from ami_lifecycle.runtime import Deps
from ami_lifecycle.services import sweep as sweep_module
from ami_lifecycle_localaws import motoext

from tests.conftest import ACCOUNT_ID, LocalAws, regions

HUB, SPOKE, NO_ROLE = ACCOUNT_ID, "222222222222", "333333333333"
EAST, WEST = "us-east-1", "us-west-2"
ROLE = "ami-lifecycle-spoke"
Build = Callable[..., str]


def spoke_role(local: LocalAws) -> None:
    """The spoke role in SPOKE, which the hub may assume (NO_ROLE has none)."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{HUB}:root"}, "Action": "sts:AssumeRole"}
        ],
    }
    local.client("iam", account=SPOKE).create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(trust))


@pytest.fixture
def fleet(moto_aws: LocalAws, now: datetime, managed: Build) -> dict[tuple[str, str], dict[str, str]]:
    """In every (account, region): one expired image (retirable) and one that is not expired."""
    spoke_role(moto_aws)
    images: dict[tuple[str, str], dict[str, str]] = {}
    for account in (HUB, SPOKE, NO_ROLE):
        for region in (EAST, WEST):
            ec2 = moto_aws.client("ec2", region, account=account)
            images[(account, region)] = {
                "expired": managed(ec2, f"old-{account[:3]}-{region}", now, account=account),
                "fresh": managed(ec2, f"new-{account[:3]}-{region}", now, expired=False, account=account),
            }
    return images


def registered(local: LocalAws, account: str, region: str) -> set[str]:
    ec2 = local.client("ec2", region, account=account)
    return {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}


def test_three_accounts_two_regions_one_role_missing(
    fleet: dict[tuple[str, str], dict[str, str]],
    moto_aws: LocalAws,
    make_settings: Callable[..., Settings],
    now: datetime,
) -> None:
    settings = make_settings(replica_regions=(WEST,), managed_accounts_param=(SPOKE, NO_ROLE), manage_new_images=False)
    motoext.reset_calls()
    out = sweep_module.handle({"dry_run": False}, Deps.create(settings, moto_aws.aws(), now, HUB))
    assumed = motoext.calls()["AssumeRole"]
    assert list(out["accounts"]) == [HUB, SPOKE, NO_ROLE] and out["status"] == "partial"
    for account in (HUB, SPOKE):
        for region in (EAST, WEST):
            pair = regions(out, account)[region]
            assert pair["status"] == "complete" and pair["account"] == account
            retired = {e["image_id"] for e in pair["images"] if e["outcome"] == "retired"}
            assert retired == {fleet[(account, region)]["expired"]}
            assert registered(moto_aws, account, region) == {fleet[(account, region)]["fresh"]}
    for region in (EAST, WEST):
        pair = regions(out, NO_ROLE)[region]
        assert pair["status"] == "failed" and "AccessDenied" in pair["error"] and ROLE in pair["error"]
        assert registered(moto_aws, NO_ROLE, region) == set(fleet[(NO_ROLE, region)].values())  # untouched
    assert out["totals"]["retired"] == 4 and out["accounts"][SPOKE]["totals"]["retired"] == 2
    # One AssumeRole per spoke account (the missing role's refusal is remembered for its other region).
    assert assumed == 2


def test_the_payload_chooses_accounts_and_refuses_unmanaged_ones(
    fleet: dict[tuple[str, str], dict[str, str]],
    moto_aws: LocalAws,
    make_settings: Callable[..., Settings],
    now: datetime,
) -> None:
    settings = make_settings(replica_regions=(WEST,), managed_accounts_param=(SPOKE, NO_ROLE), manage_new_images=False)
    deps = Deps.create(settings, moto_aws.aws(), now, HUB)
    only = sweep_module.handle({"accounts": [SPOKE], "regions": [EAST], "dry_run": True}, deps)
    assert list(only["accounts"]) == [SPOKE] and list(regions(only, SPOKE)) == [EAST]
    refused = sweep_module.handle({"accounts": ["444444444444"]}, deps)
    assert refused["status"] == "refused" and "444444444444 not managed" in refused["error"]
    assert all(registered(moto_aws, a, r) == set(fleet[(a, r)].values()) for a, r in fleet)  # nothing changed


def test_the_blast_radius_counts_every_account_together(
    fleet: dict[tuple[str, str], dict[str, str]],
    moto_aws: LocalAws,
    make_settings: Callable[..., Settings],
    now: datetime,
) -> None:
    settings = make_settings(
        replica_regions=(WEST,), managed_accounts_param=(SPOKE,), manage_new_images=False, max_retirements_per_run=3
    )
    out = sweep_module.handle({"dry_run": False}, Deps.create(settings, moto_aws.aws(), now, HUB))
    assert out["blast_radius"] == {"would_retire": 4, "limit": 3} and out["totals"]["retired"] == 0
    assert all(registered(moto_aws, a, r) == set(fleet[(a, r)].values()) for a, r in fleet)


def test_a_retired_spoke_image_gets_its_copy_requests_on_the_hub_queue_not_the_spokes(
    moto_aws: LocalAws, make_settings: Callable[..., Settings], now: datetime, managed: Build
) -> None:
    spoke_role(moto_aws)
    queue = moto_aws.client("sqs", EAST).create_queue(QueueName="copies")["QueueUrl"]
    image_id = managed(moto_aws.client("ec2", EAST, account=SPOKE), "web-1", now, expired=False, account=SPOKE)
    settings = make_settings(replica_regions=(WEST,), managed_accounts_param=(SPOKE,), copy_queue_url=queue)
    sweep_module.handle({"accounts": [SPOKE]}, Deps.create(settings, moto_aws.aws(), now, HUB))
    (message,) = moto_aws.client("sqs", EAST).receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    body: dict[str, Any] = json.loads(message["Body"])
    assert body["account"] == SPOKE and body["source_image_id"] == image_id and body["target_region"] == WEST
