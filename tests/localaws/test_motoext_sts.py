"""The moto extension, entry 19: AssumeRole of a role that does not exist fails as AWS answers it
(AccessDenied, HTTP 403); an existing role's credentials act in the role's account; the
organization's access role is present in every account."""

from __future__ import annotations

import json

import pytest
from ami_lifecycle_localaws import motoext
from botocore.exceptions import ClientError

from tests.conftest import ACCOUNT_ID, LocalAws

SPOKE = "222222222222"
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}, "Action": "sts:AssumeRole"}
        ],
    }
)


def assume(local_aws: LocalAws, role_arn: str) -> dict[str, str]:
    return dict(local_aws.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="tests")["Credentials"])


def test_a_role_that_does_not_exist_cannot_be_assumed(local_aws: LocalAws) -> None:
    arn = f"arn:aws:iam::{SPOKE}:role/ami-lifecycle-spoke"
    with pytest.raises(ClientError) as e:
        assume(local_aws, arn)
    error = e.value.response["Error"]
    assert error["Code"] == "AccessDenied"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "not authorized to perform: sts:AssumeRole on resource: " + arn in error["Message"]
    assert motoext.calls()["AssumeRole"] == 1


def test_a_role_of_the_same_name_in_another_account_does_not_count(local_aws: LocalAws) -> None:
    local_aws.client("iam").create_role(RoleName="ami-lifecycle-spoke", AssumeRolePolicyDocument=TRUST)
    with pytest.raises(ClientError, match="AccessDenied"):
        assume(local_aws, f"arn:aws:iam::{SPOKE}:role/ami-lifecycle-spoke")
    assume(local_aws, f"arn:aws:iam::{ACCOUNT_ID}:role/ami-lifecycle-spoke")  # its own account's


def test_an_existing_role_acts_in_its_account_and_the_path_is_part_of_its_arn(local_aws: LocalAws) -> None:
    # The organization's access role is there in every account: through it, the role is created.
    iam = local_aws.client("iam", account=SPOKE)
    iam.create_role(RoleName="ami-lifecycle-spoke", AssumeRolePolicyDocument=TRUST)
    iam.create_role(RoleName="pathed", Path="/tools/", AssumeRolePolicyDocument=TRUST)

    creds = assume(local_aws, f"arn:aws:iam::{SPOKE}:role/ami-lifecycle-spoke")
    sts = local_aws.session.client(
        "sts",
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    assert sts.get_caller_identity()["Account"] == SPOKE

    assume(local_aws, f"arn:aws:iam::{SPOKE}:role/tools/pathed")
    with pytest.raises(ClientError, match="AccessDenied"):
        assume(local_aws, f"arn:aws:iam::{SPOKE}:role/pathed")  # without its path: another ARN


def test_a_deleted_role_can_no_longer_be_assumed(local_aws: LocalAws) -> None:
    iam = local_aws.client("iam", account=SPOKE)
    iam.create_role(RoleName="gone", AssumeRolePolicyDocument=TRUST)
    assume(local_aws, f"arn:aws:iam::{SPOKE}:role/gone")
    iam.delete_role(RoleName="gone")
    with pytest.raises(ClientError, match="AccessDenied"):
        assume(local_aws, f"arn:aws:iam::{SPOKE}:role/gone")


def test_the_organization_access_role_is_in_every_account(local_aws: LocalAws) -> None:
    for account in (SPOKE, "333333333333", ACCOUNT_ID):
        assume(local_aws, f"arn:aws:iam::{account}:role/{motoext.ORGANIZATION_ROLE}")
