"""The managed accounts (aws/accounts.py): ManagedAccounts as a list or `organization` (every ACTIVE
account, listed per run), the hub's own clients for the hub, one AssumeRole per spoke account, and
refusals remembered only briefly."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from ami_lifecycle.aws.accounts import Accounts, AccountUnreachable, NotManaged, session_name
from ami_lifecycle.domain.settings import Settings
from ami_lifecycle_localaws import motoext

from tests.conftest import ACCOUNT_ID, LocalAws

SPOKE = "222222222222"


def test_organization_mode_lists_the_active_accounts_and_refreshes_per_run(
    moto_aws: LocalAws, make_settings: Callable[..., Settings]
) -> None:
    org = moto_aws.client("organizations", "us-east-1")
    org.create_organization(FeatureSet="ALL")
    created = [
        org.create_account(AccountName=f"team-{n}", Email=f"team-{n}@example.com")["CreateAccountStatus"]["AccountId"]
        for n in range(2)
    ]
    accounts = Accounts(moto_aws.aws(), make_settings(organization=True), ACCOUNT_ID)
    managed = accounts.managed()
    assert managed[0] == ACCOUNT_ID and set(created) <= set(managed)
    assert accounts.is_managed(created[0]) and not accounts.is_managed("999999999999")
    # A new member shows up after refresh() (the next run), not within the run
    later = org.create_account(AccountName="late", Email="late@example.com")["CreateAccountStatus"]["AccountId"]
    assert later not in accounts.managed()
    accounts.refresh()
    assert later in accounts.managed()


def test_the_hub_uses_its_own_clients_and_a_spoke_its_role_once(
    moto_aws: LocalAws, make_settings: Callable[..., Settings]
) -> None:
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    moto_aws.client("iam", account=SPOKE).create_role(
        RoleName="ami-lifecycle-spoke", AssumeRolePolicyDocument=json.dumps(trust)
    )
    base = moto_aws.aws()
    accounts = Accounts(
        base, make_settings(managed_accounts_param=(SPOKE,)), ACCOUNT_ID, function="RetentionSweepFunction"
    )
    assert accounts.aws_for(ACCOUNT_ID) is base
    motoext.reset_calls()
    spoke = accounts.aws_for(SPOKE)
    assert accounts.aws_for(SPOKE) is spoke and motoext.calls()["AssumeRole"] == 1
    sts = spoke.client("sts", "us-east-1").get_caller_identity()
    assert sts["Account"] == SPOKE and "ami-lifecycle-RetentionSweepFunction" in sts["Arn"]
    with pytest.raises(NotManaged):
        accounts.aws_for("999999999999")


def test_a_missing_role_is_refused_and_the_refusal_is_remembered_briefly(
    moto_aws: LocalAws, make_settings: Callable[..., Settings]
) -> None:
    now = [0.0]
    accounts = Accounts(
        moto_aws.aws(), make_settings(managed_accounts_param=(SPOKE,)), ACCOUNT_ID, clock=lambda: now[0]
    )
    motoext.reset_calls()
    for _ in range(3):
        with pytest.raises(AccountUnreachable) as err:
            accounts.aws_for(SPOKE)
        assert "AccessDenied" in str(err.value) and err.value.account == SPOKE
    assert motoext.calls()["AssumeRole"] == 1
    now[0] += 121  # after REFUSAL_TTL_S: asked again (the role may have been deployed since)
    with pytest.raises(AccountUnreachable):
        accounts.aws_for(SPOKE)
    assert motoext.calls()["AssumeRole"] == 2


def test_session_names_fit_what_assume_role_accepts() -> None:
    assert (
        session_name("ami-lifecycle-ImageEventsFunction-AbC123 x/y")
        == "ami-lifecycle-ami-lifecycle-ImageEventsFunction-AbC123-x-y"[:64]
    )
    assert len(session_name("f" * 200)) == 64 and session_name("") == "ami-lifecycle"
