"""Tests for ami_lifecycle_localaws.motoext: each EC2 behaviour it adds to moto, through boto3."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ami_lifecycle_localaws import motoext
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.server import ThreadedMotoServer

from tests.conftest import LocalAws

REGION = "us-east-1"
OTHER = "eu-west-1"
Clients = Callable[..., Any]  # the `ec2` and `imagebuilder` fixtures (tests/localaws/conftest.py)


def image(client: Any, name: str = "base-image", **kwargs: Any) -> str:
    return str(client.register_image(Name=name, **kwargs)["ImageId"])


def describe(client: Any, image_id: str, **kwargs: Any) -> dict[str, Any]:
    images = client.describe_images(ImageIds=[image_id], **kwargs)["Images"]
    assert len(images) == 1
    return dict(images[0])


def error(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response: Any = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def snapshot_of(client: Any, image_id: str) -> str:
    return str(describe(client, image_id, IncludeDisabled=True)["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"])


# --------------------------------------------------------------------------- install, CALLS


def test_install_is_idempotent_and_calls_are_counted_per_region(ec2: Clients, local_aws: LocalAws) -> None:
    motoext.install()
    motoext.install()
    ec2().describe_images(Owners=["self"])
    ec2().describe_images(Owners=["self"])
    ec2(OTHER).describe_snapshots(OwnerIds=["self"])
    local_aws.client("sqs", OTHER).list_queues()

    assert motoext.calls() == {"DescribeImages": 2, "DescribeSnapshots": 1, "ListQueues": 1}
    assert motoext.calls_by_region() == {
        REGION: {"DescribeImages": 2},
        OTHER: {"DescribeSnapshots": 1, "ListQueues": 1},
    }
    assert motoext.CALLS[(REGION, "DescribeImages")] == 2
    motoext.reset_calls()
    assert motoext.calls() == {}


# --------------------------------------------------------------------------- 1. deprecation


def test_enable_and_disable_image_deprecation(ec2: Clients) -> None:
    client = ec2()
    ami = image(client)
    at = (datetime.now(UTC) + timedelta(days=30)).replace(second=42, microsecond=0)

    assert client.enable_image_deprecation(ImageId=ami, DeprecateAt=at)["Return"] is True
    assert describe(client, ami)["DeprecationTime"] == at.strftime("%Y-%m-%dT%H:%M:00.000Z")

    assert client.disable_image_deprecation(ImageId=ami)["Return"] is True
    assert "DeprecationTime" not in describe(client, ami)


def test_image_deprecation_in_the_past_is_invalid(ec2: Clients) -> None:
    client = ec2()
    ami = image(client)
    with pytest.raises(ClientError) as excinfo:
        client.enable_image_deprecation(ImageId=ami, DeprecateAt=datetime.now(UTC) - timedelta(hours=1))
    assert error(excinfo) == ("InvalidParameterValue", 400)


def test_image_deprecation_of_unknown_image_is_not_found(ec2: Clients) -> None:
    with pytest.raises(ClientError) as excinfo:
        ec2().enable_image_deprecation(ImageId="ami-0123456789abcdef0", DeprecateAt=datetime(2100, 1, 1))
    assert error(excinfo) == ("InvalidAMIID.NotFound", 400)


def test_owner_sees_own_deprecated_images(monkeypatch: pytest.MonkeyPatch, ec2: Clients) -> None:
    client = ec2()
    ami = image(client)
    client.enable_image_deprecation(ImageId=ami, DeprecateAt=datetime.now(UTC) + timedelta(minutes=5))
    monkeypatch.setattr(motoext, "_now", lambda: datetime.now(UTC) + timedelta(days=1))
    owned = client.describe_images(Owners=["self"], IncludeDeprecated=False)["Images"]
    assert [i["ImageId"] for i in owned] == [ami]


# --------------------------------------------------------------------------- 2. deregistration protection


def test_deregistration_protection_blocks_deregister_until_disabled(ec2: Clients) -> None:
    client = ec2()
    ami = image(client)
    assert describe(client, ami)["DeregistrationProtection"] == "disabled"

    assert client.enable_image_deregistration_protection(ImageId=ami)["Return"] == "true"
    assert describe(client, ami)["DeregistrationProtection"] == "enabled"
    attribute = client.describe_image_attribute(ImageId=ami, Attribute="deregistrationProtection")
    assert attribute["DeregistrationProtection"] == {"Value": "enabled"}
    with pytest.raises(ClientError) as excinfo:
        client.deregister_image(ImageId=ami)
    assert error(excinfo) == ("InvalidParameter", 400)

    client.disable_image_deregistration_protection(ImageId=ami)
    assert describe(client, ami)["DeregistrationProtection"] == "disabled"
    client.deregister_image(ImageId=ami)
    assert client.describe_images(Owners=["self"])["Images"] == []


def test_deregistration_protection_cooldown_lasts_24_hours(monkeypatch: pytest.MonkeyPatch, ec2: Clients) -> None:
    client = ec2()
    ami = image(client)
    client.enable_image_deregistration_protection(ImageId=ami, WithCooldown=True)
    assert describe(client, ami)["DeregistrationProtection"] == "enabled-with-cooldown"

    client.disable_image_deregistration_protection(ImageId=ami)
    state = describe(client, ami)["DeregistrationProtection"]
    until = datetime.strptime(state.removeprefix("disabled-until-"), "%Y-%m-%dT%H:%M:%S.000Z")
    assert state.startswith("disabled-until-")
    assert timedelta(hours=23, minutes=59) < until - datetime.now(UTC).replace(tzinfo=None) <= timedelta(hours=24)
    attribute = client.describe_image_attribute(ImageId=ami, Attribute="deregistrationProtection")
    assert attribute["DeregistrationProtection"] == {"Value": state}
    with pytest.raises(ClientError) as excinfo:
        client.deregister_image(ImageId=ami)
    assert error(excinfo) == ("InvalidParameter", 400)

    monkeypatch.setattr(motoext, "_now", lambda: datetime.now(UTC) + timedelta(hours=24, seconds=1))
    assert describe(client, ami)["DeregistrationProtection"] == "disabled"
    client.deregister_image(ImageId=ami)


def test_other_image_attributes_still_work(ec2: Clients) -> None:
    client = ec2()
    ami = image(client, Description="hello")
    assert client.describe_image_attribute(ImageId=ami, Attribute="description")["Description"] == {"Value": "hello"}


# --------------------------------------------------------------------------- 3. disable / enable


def test_disabled_images_are_hidden_unless_include_disabled(ec2: Clients) -> None:
    client = ec2()
    ami = image(client)
    client.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"Group": "all"}]})

    assert client.disable_image(ImageId=ami)["Return"] is True
    assert client.describe_images(Owners=["self"])["Images"] == []
    assert client.describe_images(ImageIds=[ami])["Images"] == []
    disabled = describe(client, ami, IncludeDisabled=True)
    assert disabled["State"] == "disabled"
    assert disabled["Public"] is False  # disabling makes the AMI private

    assert client.enable_image(ImageId=ami)["Return"] is True
    assert describe(client, ami)["State"] == "available"


# --------------------------------------------------------------------------- 4. DescribeImages


def test_describe_images_paginates_in_ceil_n_over_max_results_calls(ec2: Clients) -> None:
    client = ec2()
    ids = {image(client, f"image-{i:02}") for i in range(12)}
    motoext.reset_calls()

    pages = list(client.get_paginator("describe_images").paginate(Owners=["self"], PaginationConfig={"PageSize": 5}))
    assert [len(p["Images"]) for p in pages] == [5, 5, 2]
    assert {i["ImageId"] for p in pages for i in p["Images"]} == ids
    assert motoext.calls()["DescribeImages"] == 3
    assert "NextToken" not in client.describe_images(Owners=["self"], MaxResults=12)


@pytest.mark.parametrize("max_results", [4, 1001])
def test_describe_images_max_results_out_of_range(max_results: int, ec2: Clients) -> None:
    with pytest.raises(ClientError) as excinfo:
        ec2().describe_images(Owners=["self"], MaxResults=max_results)
    assert error(excinfo) == ("InvalidParameterValue", 400)


def test_describe_images_rejects_a_bad_next_token(ec2: Clients) -> None:
    with pytest.raises(ClientError) as excinfo:
        ec2().describe_images(Owners=["self"], MaxResults=5, NextToken="garbage")
    assert error(excinfo) == ("InvalidPaginationToken", 400)


def test_pagination_and_deprecation_among_default_public_amis(monkeypatch: pytest.MonkeyPatch, ec2: Clients) -> None:
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "true")
    client = ec2("us-west-2")
    amazon = client.describe_images(Owners=["amazon"], MaxResults=5)["Images"]
    ids = {image(client, f"mine-{i}") for i in range(6)}

    pages = list(client.get_paginator("describe_images").paginate(Owners=["self"], PaginationConfig={"PageSize": 5}))
    assert {i["ImageId"] for p in pages for i in p["Images"]} == ids
    assert len(pages) == 2

    # Another owner's deprecated AMI is hidden unless IncludeDeprecated or asked for by id.
    public = amazon[0]["ImageId"]
    client.enable_image_deprecation(ImageId=public, DeprecateAt=datetime.now(UTC) + timedelta(minutes=5))
    monkeypatch.setattr(motoext, "_now", lambda: datetime.now(UTC) + timedelta(days=1))
    named = {"Name": "image-id", "Values": [public]}
    assert client.describe_images(Filters=[named])["Images"] == []
    assert len(client.describe_images(Filters=[named], IncludeDeprecated=True)["Images"]) == 1
    assert describe(client, public)["ImageId"] == public


def test_existing_filters_and_source_image_filter(ec2: Clients) -> None:
    client = ec2()
    src = image(client, "golden", TagSpecifications=[])
    client.create_tags(Resources=[src], Tags=[{"Key": "team", "Value": "a"}])
    image(client, "other")
    copy = client.copy_image(SourceImageId=src, SourceRegion=REGION, Name="golden-copy")["ImageId"]

    def ids(*filters: dict[str, Any]) -> set[str]:
        return {i["ImageId"] for i in client.describe_images(Owners=["self"], Filters=list(filters))["Images"]}

    assert ids({"Name": "name", "Values": ["golden*"]}) == {src, copy}
    assert ids({"Name": "tag:team", "Values": ["a"]}) == {src}
    assert ids({"Name": "source-image-id", "Values": [src]}) == {copy}
    assert ids({"Name": "source-image-region", "Values": [REGION]}) == {copy}


# --------------------------------------------------------------------------- 5. CreateImage snapshot tags


def test_create_image_tags_image_and_snapshot(ec2: Clients) -> None:
    client = ec2()
    base = image(client)
    instance = client.run_instances(ImageId=base, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ami = client.create_image(
        InstanceId=instance,
        Name="from-instance",
        TagSpecifications=[
            {"ResourceType": "image", "Tags": [{"Key": "kind", "Value": "image"}]},
            {"ResourceType": "snapshot", "Tags": [{"Key": "kind", "Value": "snapshot"}]},
        ],
    )["ImageId"]

    assert describe(client, ami)["Tags"] == [{"Key": "kind", "Value": "image"}]
    snapshot = client.describe_snapshots(SnapshotIds=[snapshot_of(client, ami)])["Snapshots"][0]
    assert snapshot["Tags"] == [{"Key": "kind", "Value": "snapshot"}]


# --------------------------------------------------------------------------- 6. CopyImage


def test_copy_image_client_token_is_idempotent_per_destination_region(ec2: Clients) -> None:
    src = image(ec2(), Description="golden")
    dest = ec2(OTHER)
    first = dest.copy_image(SourceImageId=src, SourceRegion=REGION, Name="copy", ClientToken="tok-1")
    second = dest.copy_image(SourceImageId=src, SourceRegion=REGION, Name="copy", ClientToken="tok-1")
    assert first["ImageId"] == second["ImageId"]
    assert len(dest.describe_images(Owners=["self"])["Images"]) == 1

    copy = describe(dest, first["ImageId"])
    assert (copy["SourceImageId"], copy["SourceImageRegion"]) == (src, REGION)
    assert (copy["Name"], copy["Description"], copy["State"]) == ("copy", "golden", "available")

    with pytest.raises(ClientError) as excinfo:
        dest.copy_image(SourceImageId=src, SourceRegion=REGION, Name="other", ClientToken="tok-1")
    assert error(excinfo) == ("IdempotentParameterMismatch", 400)


def test_copy_image_copies_user_tags_then_applies_tag_specifications(ec2: Clients) -> None:
    client = ec2()
    src = image(client)
    client.create_tags(
        Resources=[src],
        Tags=[
            {"Key": "team", "Value": "a"},
            {"Key": "env", "Value": "prod"},
            {"Key": "aws:internal", "Value": "x"},
        ],
    )
    copy = ec2(OTHER).copy_image(
        SourceImageId=src,
        SourceRegion=REGION,
        Name="copy",
        CopyImageTags=True,
        TagSpecifications=[
            {"ResourceType": "image", "Tags": [{"Key": "env", "Value": "dr"}]},
            {"ResourceType": "snapshot", "Tags": [{"Key": "copied-from", "Value": src}]},
        ],
    )["ImageId"]

    tags = {t["Key"]: t["Value"] for t in describe(ec2(OTHER), copy)["Tags"]}
    assert tags == {"team": "a", "env": "dr"}
    snapshot = ec2(OTHER).describe_snapshots(SnapshotIds=[snapshot_of(ec2(OTHER), copy)])["Snapshots"][0]
    assert snapshot["Tags"] == [{"Key": "copied-from", "Value": src}]


def test_copy_image_encrypted_with_existing_kms_key(ec2: Clients, local_aws: LocalAws) -> None:
    src = image(ec2())
    key = local_aws.client("kms", OTHER).create_key()["KeyMetadata"]
    dest = ec2(OTHER)
    copy = dest.copy_image(SourceImageId=src, SourceRegion=REGION, Name="copy", Encrypted=True, KmsKeyId=key["KeyId"])[
        "ImageId"
    ]

    described = describe(dest, copy)
    assert described["State"] == "available"
    assert described["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
    snapshot = dest.describe_snapshots(SnapshotIds=[snapshot_of(dest, copy)])["Snapshots"][0]
    assert (snapshot["Encrypted"], snapshot["KmsKeyId"]) == (True, key["Arn"])


def test_copy_image_encrypted_with_default_ebs_key(ec2: Clients) -> None:
    src = image(ec2())
    dest = ec2(OTHER)
    copy = dest.copy_image(SourceImageId=src, SourceRegion=REGION, Name="copy", Encrypted=True)["ImageId"]
    assert describe(dest, copy)["State"] == "available"
    snapshot = dest.describe_snapshots(SnapshotIds=[snapshot_of(dest, copy)])["Snapshots"][0]
    assert snapshot["Encrypted"] is True
    assert snapshot["KmsKeyId"].startswith(f"arn:aws:kms:{OTHER}:")


def test_copy_image_kms_key_without_encrypted_is_invalid(ec2: Clients) -> None:
    src = image(ec2())
    with pytest.raises(ClientError) as excinfo:
        ec2(OTHER).copy_image(SourceImageId=src, SourceRegion=REGION, Name="copy", KmsKeyId="alias/whatever")
    assert error(excinfo) == ("InvalidParameterDependency", 400)


def test_copy_image_with_unknown_kms_key_fails_asynchronously(ec2: Clients, local_aws: LocalAws) -> None:
    src = image(ec2())
    # A key of the *source* region is not a key of the destination region.
    key_arn = local_aws.client("kms", REGION).create_key()["KeyMetadata"]["Arn"]
    dest = ec2(OTHER)
    for key_id in (key_arn, "alias/does-not-exist", "1234abcd-12ab-34cd-56ef-1234567890ab"):
        copy = dest.copy_image(SourceImageId=src, SourceRegion=REGION, Name="copy", Encrypted=True, KmsKeyId=key_id)
        described = describe(dest, copy["ImageId"])
        assert described["State"] == "failed"
        assert described["StateReason"]["Code"] == "Client.InvalidKMSKey.InvalidState"


def test_copy_image_of_missing_source_is_not_found(ec2: Clients) -> None:
    deregistered = image(ec2())
    ec2().deregister_image(ImageId=deregistered)
    for source in ("ami-0123456789abcdef0", deregistered):
        with pytest.raises(ClientError) as excinfo:
            ec2(OTHER).copy_image(SourceImageId=source, SourceRegion=REGION, Name="copy")
        assert error(excinfo) == ("InvalidAMIID.NotFound", 400)


# --------------------------------------------------------------------------- 7. DeregisterImage + snapshots


def test_deregister_image_keeps_snapshots_by_default(ec2: Clients) -> None:
    client = ec2()
    ami = image(client)
    snapshot = snapshot_of(client, ami)
    response = client.deregister_image(ImageId=ami)
    assert "DeleteSnapshotResults" not in response
    assert client.describe_snapshots(SnapshotIds=[snapshot])["Snapshots"]


def test_deregister_image_deletes_associated_snapshots(ec2: Clients) -> None:
    client = ec2()
    ami = image(client)
    snapshot = snapshot_of(client, ami)
    response = client.deregister_image(ImageId=ami, DeleteAssociatedSnapshots=True)
    assert response["DeleteSnapshotResults"] == [{"SnapshotId": snapshot, "ReturnCode": "success"}]
    assert [s["SnapshotId"] for s in client.describe_snapshots(OwnerIds=["self"])["Snapshots"]] == []


def test_shared_snapshot_is_skipped_and_stays_in_use(ec2: Clients) -> None:
    client = ec2()
    first = image(client, "first")
    snapshot = snapshot_of(client, first)
    second = image(
        client,
        "second",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snapshot}}],
    )
    assert snapshot_of(client, second) == snapshot
    client.disable_image(ImageId=second)  # disabled images still use their snapshots

    response = client.deregister_image(ImageId=first, DeleteAssociatedSnapshots=True)
    assert response["DeleteSnapshotResults"] == [{"SnapshotId": snapshot, "ReturnCode": "skipped"}]
    with pytest.raises(ClientError) as excinfo:
        client.delete_snapshot(SnapshotId=snapshot)
    assert error(excinfo) == ("InvalidSnapshot.InUse", 400)

    client.deregister_image(ImageId=second)
    client.delete_snapshot(SnapshotId=snapshot)


# --------------------------------------------------------------------------- 8. DescribeImageReferences


def test_describe_image_references_finds_instances_templates_and_parameters(ec2: Clients, local_aws: LocalAws) -> None:
    client = ec2()
    used, unused = image(client, "used"), image(client, "unused")
    running = client.run_instances(ImageId=used, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    stopped = client.run_instances(ImageId=used, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    gone = client.run_instances(ImageId=used, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    client.stop_instances(InstanceIds=[stopped])
    client.terminate_instances(InstanceIds=[gone])
    template = client.create_launch_template(LaunchTemplateName="lt", LaunchTemplateData={"ImageId": used})
    template_id = template["LaunchTemplate"]["LaunchTemplateId"]
    client.create_launch_template_version(LaunchTemplateId=template_id, LaunchTemplateData={"ImageId": unused})
    local_aws.client("ssm", REGION).put_parameter(Name="/golden/ami", Value=used, Type="String")
    account = "123456789012"

    refs = client.describe_image_references(ImageIds=[used, unused], IncludeAllResourceTypes=True)["ImageReferences"]
    assert sorted((r["ImageId"], r["ResourceType"], r["Arn"]) for r in refs) == sorted(
        [
            (used, "ec2:Instance", f"arn:aws:ec2:{REGION}:{account}:instance/{running}"),
            (used, "ec2:Instance", f"arn:aws:ec2:{REGION}:{account}:instance/{stopped}"),
            (used, "ec2:LaunchTemplate", f"arn:aws:ec2:{REGION}:{account}:launch-template/{template_id}"),
            (unused, "ec2:LaunchTemplate", f"arn:aws:ec2:{REGION}:{account}:launch-template/{template_id}"),
            (used, "ssm:Parameter", f"arn:aws:ssm:{REGION}:{account}:parameter/golden/ami"),
        ]
    )

    only_running = client.describe_image_references(
        ImageIds=[used],
        ResourceTypes=[
            {
                "ResourceType": "ec2:Instance",
                "ResourceTypeOptions": [{"OptionName": "state-name", "OptionValues": ["running"]}],
            },
            {
                "ResourceType": "ec2:LaunchTemplate",
                "ResourceTypeOptions": [{"OptionName": "version-depth", "OptionValues": ["1"]}],
            },
        ],
    )["ImageReferences"]
    assert [r["Arn"].rsplit("/", 1)[1] for r in only_running] == [running]


def test_describe_image_references_paginates(ec2: Clients) -> None:
    client = ec2()
    ami = image(client)
    client.run_instances(ImageId=ami, MinCount=7, MaxCount=7)
    pages = list(
        client.get_paginator("describe_image_references").paginate(
            ImageIds=[ami], IncludeAllResourceTypes=True, PaginationConfig={"PageSize": 5}
        )
    )
    assert [len(p["ImageReferences"]) for p in pages] == [5, 2]


def test_describe_image_references_allows_at_most_10_image_ids(ec2: Clients) -> None:
    ids = [f"ami-{i:017x}" for i in range(11)]
    with pytest.raises(ClientError) as excinfo:
        ec2().describe_image_references(ImageIds=ids, IncludeAllResourceTypes=True)
    assert error(excinfo) == ("InvalidParameterValue", 400)


def test_describe_image_references_needs_resource_types(ec2: Clients) -> None:
    with pytest.raises(ClientError) as excinfo:
        ec2().describe_image_references(ImageIds=["ami-0123456789abcdef0"])
    assert error(excinfo) == ("MissingParameter", 400)


def test_describe_image_references_rejects_bad_version_depth(ec2: Clients) -> None:
    with pytest.raises(ClientError) as excinfo:
        ec2().describe_image_references(
            ImageIds=["ami-0123456789abcdef0"],
            ResourceTypes=[
                {
                    "ResourceType": "ec2:LaunchTemplate",
                    "ResourceTypeOptions": [{"OptionName": "version-depth", "OptionValues": ["10001"]}],
                }
            ],
        )
    assert error(excinfo) == ("InvalidParameterValue", 400)


# --------------------------------------------------------------------------- faults


def test_throttling_hits_only_the_chosen_actions(ec2: Clients) -> None:
    client = ec2(retries={"total_max_attempts": 1})
    motoext.set_faults(throttle_rate=1.0, actions={"DescribeImages"}, seed=7)
    with pytest.raises(ClientError) as excinfo:
        client.describe_images(Owners=["self"])
    assert error(excinfo) == ("RequestLimitExceeded", 503)
    assert excinfo.value.response["Error"]["Message"] == "Request limit exceeded."
    client.describe_snapshots(OwnerIds=["self"])
    assert motoext.calls() == {"DescribeImages": 1, "DescribeSnapshots": 1}

    motoext.clear_faults()
    client.describe_images(Owners=["self"])


def test_throttling_is_random_but_reproducible_with_a_seed(ec2: Clients) -> None:
    client = ec2(retries={"total_max_attempts": 1})

    def outcomes() -> list[bool]:
        motoext.set_faults(throttle_rate=0.5, seed=42)
        results = []
        for _ in range(20):
            try:
                client.describe_images(Owners=["self"])
                results.append(True)
            except ClientError:
                results.append(False)
        return results

    first = outcomes()
    assert first == outcomes()
    assert 0 < sum(first) < 20


def test_botocore_retries_through_a_throttle(ec2: Clients) -> None:
    client = ec2(retries={"mode": "standard", "total_max_attempts": 3})
    motoext.inject_error("DescribeImages", "RequestLimitExceeded", "Request limit exceeded.", status=503)
    assert client.describe_images(Owners=["self"])["Images"] == []
    assert motoext.calls()["DescribeImages"] == 2


def test_unreachable_region_answers_opt_in_required(ec2: Clients) -> None:
    motoext.set_faults(unreachable_regions={OTHER})
    with pytest.raises(ClientError) as excinfo:
        ec2(OTHER).describe_images(Owners=["self"])
    assert error(excinfo) == ("OptInRequired", 401)
    assert ec2().describe_images(Owners=["self"])["Images"] == []


def test_inject_error_fails_the_next_n_calls_of_an_action(ec2: Clients) -> None:
    src = image(ec2())
    dest = ec2(OTHER)
    motoext.inject_error("CopyImage", "ResourceLimitExceeded", "You have reached your quota.", times=2)
    motoext.inject_error("DeleteSnapshot", "InvalidSnapshot.InUse", "busy", region=REGION)
    for _ in range(2):
        with pytest.raises(ClientError) as excinfo:
            dest.copy_image(SourceImageId=src, SourceRegion=REGION, Name="copy")
        assert error(excinfo) == ("ResourceLimitExceeded", 400)
        assert excinfo.value.response["Error"]["Message"] == "You have reached your quota."
    assert dest.copy_image(SourceImageId=src, SourceRegion=REGION, Name="copy")["ImageId"].startswith("ami-")

    volume = dest.create_volume(AvailabilityZone=f"{OTHER}a", Size=1)["VolumeId"]
    dest.delete_snapshot(SnapshotId=dest.create_snapshot(VolumeId=volume)["SnapshotId"])  # other region: no fault
    snapshot = ec2().create_snapshot(VolumeId=ec2().create_volume(AvailabilityZone=f"{REGION}a", Size=1)["VolumeId"])
    with pytest.raises(ClientError) as excinfo:
        ec2().delete_snapshot(SnapshotId=snapshot["SnapshotId"])
    assert error(excinfo) == ("InvalidSnapshot.InUse", 400)
    ec2().delete_snapshot(SnapshotId=snapshot["SnapshotId"])


# --------------------------------------------------------------------------- over HTTP


def test_extension_works_behind_threaded_moto_server(ec2: Clients) -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:

        def client(region: str) -> Any:
            return ec2(region, endpoint_url=url)

        src = image(client(REGION), "served")
        dest = client(OTHER)
        first = dest.copy_image(SourceImageId=src, SourceRegion=REGION, Name="copy", ClientToken="http-token")
        again = dest.copy_image(SourceImageId=src, SourceRegion=REGION, Name="copy", ClientToken="http-token")
        assert first["ImageId"] == again["ImageId"]
        assert describe(dest, first["ImageId"])["SourceImageId"] == src

        dest.run_instances(ImageId=first["ImageId"], MinCount=1, MaxCount=1)
        refs = dest.describe_image_references(ImageIds=[first["ImageId"]], IncludeAllResourceTypes=True)
        assert [r["ResourceType"] for r in refs["ImageReferences"]] == ["ec2:Instance"]
        assert motoext.calls_by_region()[OTHER]["CopyImage"] == 2
    finally:
        request = urllib.request.Request(f"{url}/moto-api/reset", data=json.dumps({}).encode(), method="POST")
        urllib.request.urlopen(request).close()
        server.stop()


def test_recycle_bin_is_empty_without_rules_and_takes_at_most_20_ids(ec2: Clients) -> None:
    motoext.install()
    with mock_aws():
        client = ec2("us-east-1")
        assert client.list_images_in_recycle_bin(ImageIds=["ami-0123456789abcdef0"])["Images"] == []
        with pytest.raises(ClientError, match="InvalidParameterValue"):
            client.list_images_in_recycle_bin(ImageIds=[f"ami-{i:017x}" for i in range(21)])


def test_describe_parameters_filters_on_data_type(ec2: Clients, local_aws: LocalAws) -> None:
    ssm = local_aws.client("ssm", "us-east-1")
    image_id = ec2("us-east-1").register_image(Name="golden", RootDeviceName="/dev/xvda")["ImageId"]
    ssm.put_parameter(Name="/golden/ami", Value=image_id, Type="String", DataType="aws:ec2:image")
    ssm.put_parameter(Name="/golden/name", Value="golden", Type="String")
    images = ssm.describe_parameters(ParameterFilters=[{"Key": "DataType", "Values": ["aws:ec2:image"]}])
    assert [p["Name"] for p in images["Parameters"]] == ["/golden/ami"]
    text = ssm.describe_parameters(ParameterFilters=[{"Key": "DataType", "Option": "Equals", "Values": ["text"]}])
    assert [p["Name"] for p in text["Parameters"]] == ["/golden/name"]
    with pytest.raises(ClientError) as e:
        ssm.describe_parameters(ParameterFilters=[{"Key": "DataType", "Values": ["aws:ssm:integration"]}])
    assert e.value.response["Error"]["Code"] == "InvalidFilterValue"
