"""Tests for ami_lifecycle_localaws.motoext entries 3, 17 and 18: disabled images, the Recycle Bin
(rbin retention rules and EC2's bin for images and snapshots) and FullSnapshotSizeInBytes, through
boto3 as the product calls them."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ami_lifecycle_localaws import motoext
from ami_lifecycle_localaws.fleet import set_owner
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from tests.conftest import ACCOUNT_ID, LocalAws

REGION = "us-east-1"
OTHER = "eu-west-1"
GIB = 2**30
Clients = Callable[..., Any]  # the `ec2` fixture (tests/localaws/conftest.py)


@pytest.fixture
def rbin(local_aws: LocalAws) -> Clients:
    """`rbin(region="us-east-1", account=moto's default, **config)`: a Recycle Bin client."""

    def make(region: str = REGION, **kwargs: Any) -> Any:
        return local_aws.client("rbin", region, **kwargs)

    return make


def days(n: int) -> dict[str, Any]:
    return {"RetentionPeriodValue": n, "RetentionPeriodUnit": "DAYS"}


def rule(client: Any, resource_type: str = "EC2_IMAGE", retention: int = 7, **kwargs: Any) -> str:
    return str(client.create_rule(ResourceType=resource_type, RetentionPeriod=days(retention), **kwargs)["Identifier"])


def image(client: Any, name: str = "base-image", tags: dict[str, str] | None = None) -> str:
    image_id = str(client.register_image(Name=name, RootDeviceName="/dev/xvda")["ImageId"])
    if tags:
        client.create_tags(Resources=[image_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    return image_id


def snapshot_of(client: Any, image_id: str) -> str:
    found = client.describe_images(ImageIds=[image_id], IncludeDisabled=True)["Images"][0]
    return str(found["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"])


def code(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response: Any = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def binned_images(client: Any, **kwargs: Any) -> dict[str, dict[str, Any]]:
    return {i["ImageId"]: i for i in client.list_images_in_recycle_bin(**kwargs)["Images"]}


def binned_snapshots(client: Any, **kwargs: Any) -> dict[str, dict[str, Any]]:
    return {s["SnapshotId"]: s for s in client.list_snapshots_in_recycle_bin(**kwargs)["Snapshots"]}


def tags(client: Any, resource_id: str) -> dict[str, str]:
    resp = client.describe_tags(Filters=[{"Name": "resource-id", "Values": [resource_id]}])
    return {t["Key"]: t["Value"] for t in resp["Tags"]}


# --------------------------------------------------------------------------- 17. retention rules


def test_create_get_list_and_delete_a_rule(rbin: Clients) -> None:
    client = rbin()
    created = client.create_rule(
        ResourceType="EC2_IMAGE",
        RetentionPeriod=days(10),
        Description="AMIs retired by ami-lifecycle",
        ResourceTags=[{"ResourceTagKey": "ami-lifecycle:managed", "ResourceTagValue": "true"}],
        Tags=[{"Key": "team", "Value": "platform"}],
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    identifier = created["Identifier"]
    assert len(identifier) == 11 and identifier.isalnum()
    assert created["RuleArn"] == f"arn:aws:rbin:{REGION}:{ACCOUNT_ID}:rule/{identifier}"
    assert created["Status"] == "pending" and created["LockState"] == "unlocked"
    assert created["Tags"] == [{"Key": "team", "Value": "platform"}]

    got = client.get_rule(Identifier=identifier)
    assert got["Status"] == "available"
    assert got["RetentionPeriod"] == days(10)
    assert got["ResourceTags"] == [{"ResourceTagKey": "ami-lifecycle:managed", "ResourceTagValue": "true"}]
    assert got["Description"] == "AMIs retired by ami-lifecycle"

    assert client.list_rules(ResourceType="EC2_IMAGE")["Rules"] == [
        {
            "Identifier": identifier,
            "Description": "AMIs retired by ami-lifecycle",
            "RetentionPeriod": days(10),
            "LockState": "unlocked",
            "RuleArn": created["RuleArn"],
        }
    ]
    assert client.list_rules(ResourceType="EBS_SNAPSHOT")["Rules"] == []
    assert rbin(OTHER).list_rules(ResourceType="EC2_IMAGE")["Rules"] == []  # rules are per region

    assert client.delete_rule(Identifier=identifier)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as excinfo:
        client.get_rule(Identifier=identifier)
    assert code(excinfo) == ("ResourceNotFoundException", 404)


def test_list_rules_filters_and_paginates(rbin: Clients) -> None:
    client = rbin()
    tagged = rule(client, ResourceTags=[{"ResourceTagKey": "env", "ResourceTagValue": "prod"}])
    locked = rule(client, LockConfiguration={"UnlockDelay": {"UnlockDelayValue": 7, "UnlockDelayUnit": "DAYS"}})
    excluding = rule(client, ExcludeResourceTags=[{"ResourceTagKey": "keep-out", "ResourceTagValue": "yes"}])

    def ids(**kwargs: Any) -> set[str]:
        return {r["Identifier"] for r in client.list_rules(ResourceType="EC2_IMAGE", **kwargs)["Rules"]}

    assert ids() == {tagged, locked, excluding}
    assert ids(ResourceTags=[{"ResourceTagKey": "env", "ResourceTagValue": "prod"}]) == {tagged}
    assert ids(ExcludeResourceTags=[{"ResourceTagKey": "keep-out", "ResourceTagValue": "yes"}]) == {excluding}
    assert ids(LockState="locked") == {locked}
    first = client.list_rules(ResourceType="EC2_IMAGE", MaxResults=2)
    second = client.list_rules(ResourceType="EC2_IMAGE", MaxResults=2, NextToken=first["NextToken"])
    assert len(first["Rules"]) == 2 and len(second["Rules"]) == 1 and "NextToken" not in second
    paginated = client.get_paginator("list_rules").paginate(ResourceType="EC2_IMAGE", PaginationConfig={"PageSize": 1})
    assert sum(len(page["Rules"]) for page in paginated) == 3


BAD_RULES = [
    {"ResourceType": "EC2_IMAGE", "RetentionPeriod": days(366)},
    {"ResourceType": "EBS_VOLUME", "RetentionPeriod": days(8)},
    {
        "ResourceType": "EC2_IMAGE",
        "RetentionPeriod": days(7),
        "ResourceTags": [{"ResourceTagKey": "a", "ResourceTagValue": "b"}],
        "ExcludeResourceTags": [{"ResourceTagKey": "c", "ResourceTagValue": "d"}],
    },
    {
        "ResourceType": "EC2_IMAGE",
        "RetentionPeriod": days(7),
        "ResourceTags": [{"ResourceTagKey": "a", "ResourceTagValue": "b"}],
        "LockConfiguration": {"UnlockDelay": {"UnlockDelayValue": 7, "UnlockDelayUnit": "DAYS"}},
    },
    {
        "ResourceType": "EC2_IMAGE",
        "RetentionPeriod": days(7),
        "LockConfiguration": {"UnlockDelay": {"UnlockDelayValue": 31, "UnlockDelayUnit": "DAYS"}},
    },
    {
        "ResourceType": "EC2_IMAGE",
        "RetentionPeriod": days(7),
        "ResourceTags": [{"ResourceTagKey": f"k{i}", "ResourceTagValue": "v"} for i in range(51)],
    },
]


@pytest.mark.parametrize(
    "params", BAD_RULES, ids=["366d", "volume-8d", "tags-and-excluded", "lock-tagged", "lock-31d", "51-tags"]
)
def test_invalid_rules_are_validation_errors(rbin: Clients, params: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as excinfo:
        rbin().create_rule(**params)
    assert code(excinfo) == ("ValidationException", 400)
    assert rbin().list_rules(ResourceType=params["ResourceType"])["Rules"] == []


def test_a_locked_rule_cannot_be_deleted(rbin: Clients) -> None:
    client = rbin()
    identifier = rule(client, LockConfiguration={"UnlockDelay": {"UnlockDelayValue": 7, "UnlockDelayUnit": "DAYS"}})
    assert client.get_rule(Identifier=identifier)["LockState"] == "locked"
    with pytest.raises(ClientError) as excinfo:
        client.delete_rule(Identifier=identifier)
    assert code(excinfo) == ("ConflictException", 409)


def test_a_region_holds_at_most_250_rules(rbin: Clients) -> None:
    client = rbin()
    for _ in range(motoext.RBIN_MAX_RULES):
        motoext.rbin_backends[ACCOUNT_ID][REGION].create_rule(
            {"ResourceType": "EBS_SNAPSHOT", "RetentionPeriod": days(1)}
        )
    with pytest.raises(ClientError) as excinfo:
        rule(client)
    assert code(excinfo) == ("ServiceQuotaExceededException", 402)


# --------------------------------------------------------------------------- 17. EC2's bin


def test_without_a_rule_deregistered_images_and_snapshots_are_gone(ec2: Clients, rbin: Clients) -> None:
    client = ec2()
    rule(rbin(OTHER))  # a rule of another region does not apply here
    ami = image(client)
    snapshot = snapshot_of(client, ami)
    client.deregister_image(ImageId=ami, DeleteAssociatedSnapshots=True)
    assert binned_images(client) == {} and binned_snapshots(client) == {}
    with pytest.raises(ClientError, match="InvalidAMIID.NotFound"):
        client.restore_image_from_recycle_bin(ImageId=ami)
    with pytest.raises(ClientError, match="InvalidSnapshot.NotFound"):
        client.restore_snapshot_from_recycle_bin(SnapshotId=snapshot)


def test_region_level_rule_keeps_images_and_snapshots_until_their_retention_ends(ec2: Clients, rbin: Clients) -> None:
    client = ec2()
    rule(rbin(), "EC2_IMAGE", 7)
    rule(rbin(), "EBS_SNAPSHOT", 10)
    ami = image(client, "web-1", tags={"team": "web"})
    snapshot = snapshot_of(client, ami)
    before = datetime.now(UTC).replace(microsecond=0)

    result = client.deregister_image(ImageId=ami, DeleteAssociatedSnapshots=True)

    assert result["DeleteSnapshotResults"] == [{"SnapshotId": snapshot, "ReturnCode": "success"}]
    assert client.describe_images(Owners=["self"], IncludeDisabled=True)["Images"] == []
    assert client.describe_snapshots(OwnerIds=["self"])["Snapshots"] == []
    listed = binned_images(client)[ami]
    assert listed["Name"] == "web-1"
    assert listed["RecycleBinEnterTime"] >= before
    assert listed["RecycleBinExitTime"] - listed["RecycleBinEnterTime"] == timedelta(days=7)
    snap = binned_snapshots(client)[snapshot]
    assert snap["RecycleBinExitTime"] - snap["RecycleBinEnterTime"] == timedelta(days=10)
    assert snap["Description"] and snap["VolumeId"].startswith("vol-")
    assert tags(client, ami) == {"team": "web", "aws:recycle-bin:resource-in-bin": "true"}
    assert binned_images(ec2(OTHER)) == {}


def test_tag_level_rules_match_one_of_their_pairs_and_exclusions_keep_out(ec2: Clients, rbin: Clients) -> None:
    client = ec2()
    rule(rbin(), ResourceTags=[{"ResourceTagKey": "env", "ResourceTagValue": "prod"}, {"ResourceTagKey": "keep"}])
    prod, any_keep, dev = (
        image(client, "prod-1", {"env": "prod"}),
        image(client, "keep-1", {"keep": "whatever"}),
        image(client, "dev-1", {"env": "dev"}),
    )
    for ami in (prod, any_keep, dev):
        client.deregister_image(ImageId=ami)
    assert set(binned_images(client)) == {prod, any_keep}

    region = ec2(OTHER)
    rule(rbin(OTHER), ExcludeResourceTags=[{"ResourceTagKey": "scratch", "ResourceTagValue": "true"}])
    kept, scratch = image(region, "kept-1"), image(region, "scratch-1", {"scratch": "true"})
    region.deregister_image(ImageId=kept)
    region.deregister_image(ImageId=scratch)
    assert set(binned_images(region)) == {kept}


def test_the_longest_matching_retention_wins(ec2: Clients, rbin: Clients) -> None:
    client = ec2()
    rule(rbin(), retention=3)
    rule(rbin(), retention=30, ResourceTags=[{"ResourceTagKey": "env", "ResourceTagValue": "prod"}])
    ami = image(client, tags={"env": "prod"})
    client.deregister_image(ImageId=ami)
    listed = binned_images(client)[ami]
    assert listed["RecycleBinExitTime"] - listed["RecycleBinEnterTime"] == timedelta(days=30)


def test_delete_snapshot_goes_to_the_bin_and_is_restored(ec2: Clients, rbin: Clients) -> None:
    client = ec2()
    rule(rbin(), "EBS_SNAPSHOT", 5)
    ami = image(client)
    snapshot = snapshot_of(client, ami)
    client.deregister_image(ImageId=ami)  # no image rule: the image is gone, its snapshot stays
    client.delete_snapshot(SnapshotId=snapshot)
    assert set(binned_snapshots(client, SnapshotIds=[snapshot])) == {snapshot}
    with pytest.raises(ClientError, match="InvalidSnapshot.NotFound"):
        client.describe_snapshots(SnapshotIds=[snapshot])

    restored = client.restore_snapshot_from_recycle_bin(SnapshotId=snapshot)
    assert restored["SnapshotId"] == snapshot and restored["State"] == "completed" and restored["VolumeSize"] == 15
    assert client.describe_snapshots(SnapshotIds=[snapshot])["Snapshots"][0]["SnapshotId"] == snapshot
    assert binned_snapshots(client) == {}
    assert "aws:recycle-bin:resource-in-bin" not in tags(client, snapshot)


def test_restore_image_brings_it_back_as_it_was(ec2: Clients, rbin: Clients) -> None:
    client = ec2()
    rule(rbin(), "EC2_IMAGE", 7)
    rule(rbin(), "EBS_SNAPSHOT", 7)
    ami = image(client, "golden-1", {"ami-lifecycle:managed": "true"})
    snapshot = snapshot_of(client, ami)
    client.deregister_image(ImageId=ami, DeleteAssociatedSnapshots=True)

    assert client.restore_snapshot_from_recycle_bin(SnapshotId=snapshot)["SnapshotId"] == snapshot
    assert client.restore_image_from_recycle_bin(ImageId=ami)["Return"] is True

    found = client.describe_images(ImageIds=[ami])["Images"][0]
    assert found["State"] == "available" and found["Name"] == "golden-1"
    assert found["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"] == snapshot
    assert tags(client, ami) == {"ami-lifecycle:managed": "true"}
    assert binned_images(client) == {}
    with pytest.raises(ClientError, match="InvalidAMIID.NotFound"):
        client.restore_image_from_recycle_bin(ImageId=ami)  # not in the bin any more
    with pytest.raises(ClientError, match="InvalidAMIID.Malformed"):
        client.restore_image_from_recycle_bin(ImageId="image-1")
    client.deregister_image(ImageId=ami)  # registered again: it can be deregistered again
    assert set(binned_images(client)) == {ami}


def test_an_image_can_be_restored_before_its_snapshots(ec2: Clients, rbin: Clients) -> None:
    client = ec2()
    rule(rbin(), "EC2_IMAGE", 7)
    rule(rbin(), "EBS_SNAPSHOT", 7)
    ami = image(client)
    snapshot = snapshot_of(client, ami)
    client.deregister_image(ImageId=ami, DeleteAssociatedSnapshots=True)
    client.restore_image_from_recycle_bin(ImageId=ami)
    assert snapshot_of(client, ami) == snapshot and set(binned_snapshots(client)) == {snapshot}
    client.restore_snapshot_from_recycle_bin(SnapshotId=snapshot)
    assert binned_snapshots(client) == {}


def test_resources_leave_the_bin_for_good_when_their_retention_ends(
    monkeypatch: pytest.MonkeyPatch, ec2: Clients, rbin: Clients
) -> None:
    client = ec2()
    rule(rbin(), "EC2_IMAGE", 1)
    rule(rbin(), "EBS_SNAPSHOT", 3)
    ami = image(client)
    snapshot = snapshot_of(client, ami)
    client.deregister_image(ImageId=ami, DeleteAssociatedSnapshots=True)
    later = datetime.now(UTC) + timedelta(days=2)
    monkeypatch.setattr(motoext, "_now", lambda: later)
    assert binned_images(client) == {} and set(binned_snapshots(client)) == {snapshot}
    with pytest.raises(ClientError, match="InvalidAMIID.NotFound"):
        client.restore_image_from_recycle_bin(ImageId=ami)
    assert tags(client, ami) == {}


def test_list_in_recycle_bin_limits_and_pages(ec2: Clients, rbin: Clients) -> None:
    client = ec2()
    rule(rbin(), "EC2_IMAGE", 7)
    rule(rbin(), "EBS_SNAPSHOT", 7)
    amis = [image(client, f"img-{i}") for i in range(7)]
    for ami in amis:
        client.deregister_image(ImageId=ami, DeleteAssociatedSnapshots=True)
    with pytest.raises(ClientError, match="InvalidParameterValue"):
        client.list_images_in_recycle_bin(ImageIds=[f"ami-{i:017x}" for i in range(21)])
    assert set(binned_images(client, ImageIds=amis[:2] + ["ami-0123456789abcdef0"])) == set(amis[:2])
    pages = list(client.get_paginator("list_images_in_recycle_bin").paginate(PaginationConfig={"PageSize": 3}))
    assert [len(p["Images"]) for p in pages] == [3, 3, 1]
    with pytest.raises(ClientError, match="InvalidParameterValue"):
        client.list_snapshots_in_recycle_bin(MaxResults=1001)  # botocore checks only the minimum
    pages = list(client.get_paginator("list_snapshots_in_recycle_bin").paginate(PaginationConfig={"PageSize": 5}))
    assert [len(p["Snapshots"]) for p in pages] == [5, 2]


def test_recycle_bin_works_behind_threaded_moto_server(ec2: Clients, local_aws: LocalAws) -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        rbin, client = local_aws.client("rbin", OTHER, endpoint_url=url), ec2(OTHER, endpoint_url=url)
        identifier = rule(rbin, "EC2_IMAGE", 4)
        assert rbin.get_rule(Identifier=identifier)["RetentionPeriod"] == days(4)
        assert [r["Identifier"] for r in rbin.list_rules(ResourceType="EC2_IMAGE")["Rules"]] == [identifier]
        ami = image(client, "served")
        client.deregister_image(ImageId=ami)
        assert set(binned_images(client)) == {ami}
        client.restore_image_from_recycle_bin(ImageId=ami)
        assert client.describe_images(ImageIds=[ami])["Images"][0]["State"] == "available"
        assert motoext.calls_by_region()[OTHER]["CreateRule"] == 1
    finally:
        request = urllib.request.Request(f"{url}/moto-api/reset", data=json.dumps({}).encode(), method="POST")
        urllib.request.urlopen(request).close()
        server.stop()


# --------------------------------------------------------------------------- 3. disabled images


def test_disabling_removes_sharing_for_good_and_refuses_sharing_and_launches(ec2: Clients) -> None:
    client = ec2()
    ami = image(client)
    client.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"UserId": "222222222222"}, {"Group": "all"}]})
    client.disable_image(ImageId=ami)
    assert client.describe_image_attribute(ImageId=ami, Attribute="launchPermission")["LaunchPermissions"] == []
    with pytest.raises(ClientError, match="InvalidAMIID.Unavailable"):
        client.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"UserId": "222222222222"}]})
    with pytest.raises(ClientError, match="InvalidAMIID.Unavailable"):
        client.modify_image_attribute(
            ImageId=ami, Attribute="launchPermission", OperationType="add", UserIds=["222222222222"]
        )
    with pytest.raises(ClientError, match="InvalidAMIID.Unavailable"):
        client.run_instances(ImageId=ami, MinCount=1, MaxCount=1)
    with pytest.raises(ClientError, match="InvalidSnapshot.InUse"):
        client.delete_snapshot(SnapshotId=snapshot_of(client, ami))

    client.enable_image(ImageId=ami)
    assert client.describe_image_attribute(ImageId=ami, Attribute="launchPermission")["LaunchPermissions"] == []
    client.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"UserId": "222222222222"}]})
    assert client.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"]


def test_only_the_owner_disables_or_enables_an_image(ec2: Clients) -> None:
    client = ec2()
    ami = image(client)
    set_owner(REGION, ami, "999999999999")
    for call in (client.disable_image, client.enable_image):
        with pytest.raises(ClientError, match="InvalidAMIID.Unavailable"):
            call(ImageId=ami)
    with pytest.raises(ClientError, match="InvalidAMIID.NotFound"):
        client.enable_image(ImageId="ami-0123456789abcdef0")


def test_a_disabled_image_is_retained_by_a_rule_and_restored_disabled(ec2: Clients, rbin: Clients) -> None:
    client = ec2()
    rule(rbin())
    ami = image(client)
    client.disable_image(ImageId=ami)
    client.deregister_image(ImageId=ami)
    assert set(binned_images(client)) == {ami}  # "Retention rules also apply to disabled AMIs"
    client.restore_image_from_recycle_bin(ImageId=ami)
    assert client.describe_images(ImageIds=[ami], IncludeDisabled=True)["Images"][0]["State"] == "disabled"


# --------------------------------------------------------------------------- 18. FullSnapshotSizeInBytes


def test_full_snapshot_size_defaults_to_a_fraction_of_the_volume_in_whole_blocks(ec2: Clients) -> None:
    client = ec2()
    snapshot = client.describe_snapshots(SnapshotIds=[snapshot_of(client, image(client))])["Snapshots"][0]
    assert snapshot["VolumeSize"] == 15
    assert snapshot["FullSnapshotSizeInBytes"] == 6 * GIB  # 0.4 of 15 GiB
    volume = client.create_volume(AvailabilityZone=f"{REGION}a", Size=8)
    odd = client.create_snapshot(VolumeId=volume["VolumeId"])
    size = client.describe_snapshots(SnapshotIds=[odd["SnapshotId"]])["Snapshots"][0]["FullSnapshotSizeInBytes"]
    assert size % motoext.EBS_BLOCK == 0 and 0 < size <= 8 * GIB * motoext.FULL_SNAPSHOT_FRACTION


def test_full_snapshot_size_can_be_pinned_or_left_unreported(ec2: Clients) -> None:
    client = ec2()
    snapshot_id = snapshot_of(client, image(client))

    def size() -> Any:
        return client.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0].get("FullSnapshotSizeInBytes")

    motoext.set_full_snapshot_size(ACCOUNT_ID, REGION, snapshot_id, 3 * GIB // 2)
    assert size() == 3 * GIB // 2
    motoext.set_full_snapshot_size(ACCOUNT_ID, REGION, snapshot_id, None)
    assert size() is None
    motoext.clear_full_snapshot_size(ACCOUNT_ID, REGION, snapshot_id)
    assert size() == 6 * GIB
    with pytest.raises(ValueError, match="15 GiB"):
        motoext.set_full_snapshot_size(ACCOUNT_ID, REGION, snapshot_id, 16 * GIB)
