"""`ami-lifecycle restore`, driven as a user drives it: a subprocess with real exit codes and `--json`
parsed, against the embedded local AWS (a moto server started in this test process): a disabled
image and an image in the Recycle Bin come back held; what cannot be restored is refused."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import boto3
import pytest
from ami_lifecycle_cli.main import main
from ami_lifecycle_localaws import motoext
from ami_lifecycle_localaws.fleet import create_image, snapshot_ids, tags_of
from ami_lifecycle_localaws.server import EmbeddedAws

from tests.e2e.conftest import cli

pytestmark = pytest.mark.e2e

P = "ami-lifecycle"
EAST = "us-east-1"


def ec2() -> Any:
    return boto3.client("ec2", region_name=EAST)  # AWS_ENDPOINT_URL: the embedded server


def managed(client: Any, name: str) -> tuple[str, str]:
    tags = {f"{P}:managed": "true", f"{P}:retention": "30d", f"{P}:expires-at": "2020-01-01T00:00:00Z"}
    image_id = create_image(client, name, tags=tags)
    snapshot = snapshot_ids(client, image_id)[0]
    client.create_tags(Resources=[snapshot], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    return image_id, snapshot


def state(client: Any, image_id: str) -> str:
    return str(client.describe_images(ImageIds=[image_id], IncludeDisabled=True)["Images"][0]["State"])


def test_restore_is_a_documented_command() -> None:
    out = cli("--help")
    assert out.returncode == 0 and "restore" in out.stdout, out.stderr
    sub = cli("restore", "--help")
    assert sub.returncode == 0, sub.stderr
    for word in ("IMAGE_ID", "--region", "--account", "--reason", "--json", "exit codes:", "Recycle Bin"):
        assert word in sub.stdout


def test_a_disabled_image_is_re_enabled_and_held(local: EmbeddedAws) -> None:
    # Given an image the tool disabled (DisableBeforeDeregister)
    client = ec2()
    image_id, snapshot = managed(client, "web-1")
    client.create_tags(
        Resources=[image_id, snapshot], Tags=[{"Key": f"{P}:disabled-at", "Value": "2026-11-30T00:00:00Z"}]
    )
    client.disable_image(ImageId=image_id)

    # When the operator restores it, asking for JSON
    out = cli("restore", image_id, "--region", EAST, "--reason", "INC-42", "--json")

    # Then it is available and held; stdout is the result and nothing else
    assert out.returncode == 0, (out.stdout, out.stderr)
    result = json.loads(out.stdout)
    assert result["kind"] == "restore" and result["status"] == "restored" and result["source"] == "disabled"
    assert result["image_id"] == image_id and result["region"] == EAST and result["account_id"] == "123456789012"
    assert result["held"] is True and result["hold_reason"].endswith(": INC-42")
    assert state(client, image_id) == "available"
    for resource in (image_id, snapshot):
        tags = tags_of(client, resource)
        assert tags[f"{P}:hold"] == "true" and f"{P}:disabled-at" not in tags
    assert "enabled the image" in out.stderr  # the steps, on stderr


def test_an_image_in_the_recycle_bin_comes_back_with_its_snapshot(local: EmbeddedAws) -> None:
    # Given Recycle Bin rules and an image retired with its snapshot
    rbin = boto3.client("rbin", region_name=EAST)
    for resource_type in ("EC2_IMAGE", "EBS_SNAPSHOT"):
        rbin.create_rule(
            ResourceType=resource_type, RetentionPeriod={"RetentionPeriodValue": 7, "RetentionPeriodUnit": "DAYS"}
        )
    client = ec2()
    image_id, snapshot = managed(client, "api-1")
    client.deregister_image(ImageId=image_id, DeleteAssociatedSnapshots=True)

    # When it is restored (human output)
    out = cli("restore", image_id)

    # Then one readable line says what happened, and image and snapshot are back and held
    assert out.returncode == 0, (out.stdout, out.stderr)
    line = out.stdout.strip()
    assert line.startswith(f"restored {image_id} (us-east-1): restored from the Recycle Bin, 1 snapshot(s) restored")
    assert f"held with {P}:hold=true" in line and "would have been deleted for good at" in line
    assert state(client, image_id) == "available"
    assert client.describe_snapshots(SnapshotIds=[snapshot])["Snapshots"]
    assert tags_of(client, image_id)[f"{P}:hold"] == "true" and tags_of(client, snapshot)[f"{P}:hold"] == "true"
    assert f"restored snapshot {snapshot}" in out.stderr


def test_what_cannot_be_restored_exits_1_with_the_reason(local: EmbeddedAws) -> None:
    client = ec2()
    image_id = create_image(client, "live-1")
    out = cli("restore", image_id, "--json")
    assert out.returncode == 1
    result = json.loads(out.stdout)
    assert result["status"] == "refused" and result["message"].startswith("nothing to restore: it is available")
    out = cli("restore", "ami-0123456789abcdef0", "--region", EAST)
    assert out.returncode == 1
    assert out.stdout.strip() == (
        "not restored ami-0123456789abcdef0 (us-east-1): not found, not in the Recycle Bin of us-east-1"
    )
    assert f"{P}:hold" not in tags_of(client, image_id)


BAD = [
    (["ami-12"], "'ami-12' is not an AMI id"),
    (["ami-0123456789abcdef0", "--region", "mars-north-1"], "--region: 'mars-north-1' is not an AWS region"),
    (["ami-0123456789abcdef0", "--account", "12345"], "--account: '12345' is not a 12-digit AWS account id"),
    ([], "the following arguments are required: IMAGE_ID"),
]


def test_bad_arguments_exit_2_before_any_aws_call(local: EmbeddedAws) -> None:
    motoext.reset_calls()
    out = cli("restore", *BAD[0][0])
    assert out.returncode == 2 and BAD[0][1] in out.stderr and out.stdout == "", out.stderr
    for args, message in BAD:  # in-process: the same main()
        stdout, stderr = io.StringIO(), io.StringIO()
        assert main(["restore", *args], stdout=stdout, stderr=stderr) == 2, stderr.getvalue()
        assert message in stderr.getvalue() and stdout.getvalue() == ""
    assert not motoext.calls()


def in_account(service: str, account: str) -> Any:
    """A client acting in another moto account (motoext: OrganizationAccountAccessRole is everywhere)."""
    creds = boto3.client("sts", region_name=EAST).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole", RoleSessionName="setup"
    )["Credentials"]
    return boto3.client(
        service,
        region_name=EAST,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def test_another_managed_account_through_its_spoke_role(local: EmbeddedAws) -> None:
    spoke = "222222222222"
    # Without the spoke role there: refused, exit 3, nothing done
    out = cli("restore", "ami-0123456789abcdef0", "--account", spoke)
    assert out.returncode == 3 and f"cannot assume arn:aws:iam::{spoke}:role/ami-lifecycle-spoke" in out.stderr
    # With it: the disabled image in that account is re-enabled and held there
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    in_account("iam", spoke).create_role(RoleName="ops-spoke", AssumeRolePolicyDocument=json.dumps(trust))
    client = in_account("ec2", spoke)
    image_id, _ = managed(client, "web-1")
    client.disable_image(ImageId=image_id)
    done = cli("restore", image_id, "--account", spoke, "--role-name", "ops-spoke", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "restored" and state(client, image_id) == "available"
    assert tags_of(client, image_id)[f"{P}:hold"] == "true"


def test_an_unreachable_endpoint_exits_3(local: EmbeddedAws) -> None:
    env = dict(os.environ, AWS_ENDPOINT_URL="http://127.0.0.1:9")
    out = cli("restore", "ami-0123456789abcdef0", env=env)
    assert out.returncode == 3, out.stderr
    assert "AWS_ENDPOINT_URL=http://127.0.0.1:9" in out.stderr and out.stdout == ""
