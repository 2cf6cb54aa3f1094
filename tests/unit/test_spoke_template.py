"""spoke.yaml, and how template.yaml reaches into the spokes (PRODUCT.md section 7).

The spoke template is resolved like the hub's (test_template.Cfn, for a given account and region),
so the assertions are about what CloudFormation creates in each (account, region) and what IAM
receives: the spoke role exists once per account; only the hub's function roles may assume it; it
grants exactly the hub functions' tag-scoped permissions (tools/gen_spoke.py copies them from
template.yaml; this file fails on any drift); the hub's functions may assume exactly that role
name in the managed accounts (evaluated with test_iam_enforcement's IAM evaluator).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from ami_lifecycle_localaws.stack import ROOT, load_template

from tests.unit.test_iam_enforcement import ALLOW, IMPLICIT, evaluate, glob
from tests.unit.test_template import (
    ACCOUNT,
    FUNCTIONS,
    KEY_WEST,
    ORG_ID,
    READ_ONLY,
    REGION,
    RESOURCES,
    SPOKES,
    STACK,
    TEMPLATE,
    Cfn,
    as_list,
    function_statements,
    hub_parameters,
    parameters,
    walk_keys,
)
from tools import gen_spoke

SPOKE_PATH = ROOT / "spoke.yaml"
SPOKE_TEXT = SPOKE_PATH.read_text(encoding="utf-8")
SPOKE = load_template(SPOKE_PATH)
SPOKE_RESOURCES: dict[str, Any] = SPOKE["Resources"]
HUB, HUB_REGION = ACCOUNT, REGION
SPOKE_ACCOUNT, OTHER_REGION = SPOKES[0], "eu-west-1"
HUB_BUS = f"arn:aws:events:{HUB_REGION}:{HUB}:event-bus/{STACK}-hub"
PAIRS = [(HUB, HUB_REGION), (HUB, OTHER_REGION), (SPOKE_ACCOUNT, HUB_REGION), (SPOKE_ACCOUNT, OTHER_REGION)]
SPOKE_POLICIES = ("ReadImagesPolicy", *gen_spoke.TAG_SCOPED_POLICIES)
# What the hub's functions hold that makes sense in the hub account only: the copy queue (SAM
# policy templates, not expanded), invoking themselves, the ReplicaKmsKeys keys of the hub
# account, assuming the spoke roles, listing the organization.
HUB_ONLY = ("lambda:", "sqs:", "kms:", "sts:", "organizations:")


def spoke_parameters(**overrides: str) -> dict[str, str]:
    values = {name: str(spec.get("Default", "")) for name, spec in SPOKE["Parameters"].items()}
    values.update(HubAccountId=HUB, HubRegion=HUB_REGION, HubEventBusArn=HUB_BUS)
    values.update(overrides)
    return values


def spoke(account: str = SPOKE_ACCOUNT, region: str = HUB_REGION, **overrides: str) -> Cfn:
    return Cfn(spoke_parameters(**overrides), template=SPOKE, account=account, region=region)


def created(cfn: Cfn) -> set[str]:
    return {lid for lid in SPOKE_RESOURCES if cfn.created(lid)}


def spoke_role_statements(cfn: Cfn) -> list[dict[str, Any]]:
    """Every statement the spoke role holds, as IAM receives it."""
    role = SPOKE_RESOURCES["SpokeRole"]["Properties"]
    assert "Policies" not in role
    statements: list[dict[str, Any]] = []
    for ref in role["ManagedPolicyArns"]:
        (lid,) = ref.values()
        assert SPOKE_RESOURCES[lid]["Type"] == "AWS::IAM::ManagedPolicy"
        assert SPOKE_RESOURCES[lid]["Condition"] == SPOKE_RESOURCES["SpokeRole"]["Condition"], lid
        doc = cfn.resolve(SPOKE_RESOURCES[lid]["Properties"]["PolicyDocument"])
        doc = json.loads(doc) if isinstance(doc, str) else doc
        assert "${" not in json.dumps(doc), lid
        statements.extend(doc["Statement"])
    return statements


def flatten(statements: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """(effect, action, resource, condition) of every statement: equal sets grant the same."""
    return {
        (s["Effect"], action, resource, json.dumps(s.get("Condition", {}), sort_keys=True))
        for s in statements
        for action in as_list(s["Action"])
        for resource in as_list(s["Resource"])
    }


@pytest.fixture(params=["ami-lifecycle", "acme"], ids=["default-prefix", "prefix-acme"])
def prefix(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# ------------------------------------------------------------------ plain CloudFormation


def test_spoke_is_plain_cloudformation() -> None:
    """No Transform: service-managed StackSets with automatic deployment refuse macros."""
    assert "Transform" not in SPOKE
    assert SPOKE["AWSTemplateFormatVersion"] == "2010-09-09"
    assert all(not r["Type"].startswith("AWS::Serverless::") for r in SPOKE_RESOURCES.values())
    # ARNs follow the partition; nothing left for CloudFormation to resolve in a YAML key.
    text = json.dumps(SPOKE)
    assert "arn:aws:" not in text
    assert [f"{path}: {key}" for path, key in walk_keys(SPOKE) if "${" in key] == []


def test_spoke_parameters_match_the_hub() -> None:
    declared = SPOKE["Parameters"]
    assert set(declared) == {"HubAccountId", "HubRegion", "HubEventBusArn", "TagPrefix", "SpokeRoleName"}
    for name in ("TagPrefix", "SpokeRoleName"):
        hub = TEMPLATE["Parameters"][name]
        for key in ("Type", "Default", "AllowedPattern"):
            assert declared[name][key] == hub[key], (name, key)
    # The hub's bus, by the name template.yaml gives it, is an ARN the parameter admits.
    bus_name = Cfn(parameters()).resolve(RESOURCES["HubEventBus"]["Properties"]["Name"])
    pattern = declared["HubEventBusArn"]["AllowedPattern"]
    assert re.fullmatch(pattern, f"arn:aws:events:{HUB_REGION}:{HUB}:event-bus/{bus_name}")
    assert re.fullmatch(pattern, "arn:aws-cn:events:cn-north-1:111122223333:event-bus/ami-lifecycle-hub")
    assert not re.fullmatch(pattern, f"arn:aws:sqs:{HUB_REGION}:{HUB}:queue")
    assert re.fullmatch(declared["HubAccountId"]["AllowedPattern"], HUB)
    assert re.fullmatch(declared["HubRegion"]["AllowedPattern"], "ap-southeast-2")


# ------------------------------------------------------------------ what each (account, region) gets

FORWARDING = {"ForwardAmiEventsRule", "ForwardAmiEventsRole"}
ROLE = {"SpokeRole", *SPOKE_POLICIES}


@pytest.mark.parametrize(
    ("account", "region", "expected"),
    [
        # The hub region of the hub account: its default bus feeds the function; the functions act
        # with their own roles. A stack needs one resource: a no-op handle.
        (HUB, HUB_REGION, {"NothingToDoInTheHubRegionOfTheHubAccount"}),
        # The hub account's other regions: forwarding only.
        (HUB, OTHER_REGION, FORWARDING),
        # A managed account: the role once (in the hub region), forwarding everywhere.
        (SPOKE_ACCOUNT, HUB_REGION, FORWARDING | ROLE),
        (SPOKE_ACCOUNT, OTHER_REGION, FORWARDING),
    ],
)
def test_what_each_account_and_region_gets(account: str, region: str, expected: set[str]) -> None:
    assert created(spoke(account, region)) == expected


def test_the_spoke_role_is_created_once_per_account() -> None:
    regions = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"]
    for account in (SPOKE_ACCOUNT, SPOKES[1]):
        with_role = [r for r in regions if spoke(account, r).created("SpokeRole")]
        assert with_role == [HUB_REGION], account
    assert not any(spoke(HUB, r).created("SpokeRole") for r in regions)
    for lid in ROLE:
        assert SPOKE_RESOURCES[lid]["Condition"] == "CreatesSpokeRole", lid
    # Outputs exist exactly where their resource does.
    for name, output in SPOKE["Outputs"].items():
        (target,) = output["Value"]["Fn::GetAtt"][:1]
        assert output["Condition"] == SPOKE_RESOURCES[target]["Condition"], name


# ------------------------------------------------------------------ forwarding to the hub's bus


def test_the_rule_forwards_ami_state_changes_to_the_hub_bus() -> None:
    rule = SPOKE_RESOURCES["ForwardAmiEventsRule"]["Properties"]
    assert rule.get("EventBusName", "default") == "default"
    assert rule["State"] == "ENABLED"
    # The hub's own rules take the same events (and filter the State there).
    (hub_pattern,) = {
        json.dumps(e["Properties"]["Pattern"], sort_keys=True)
        for e in RESOURCES["ImageEventsFunction"]["Properties"]["Events"].values()
    }
    assert rule["EventPattern"] == {"source": ["aws.ec2"], "detail-type": ["EC2 AMI State Change"]}
    assert {k: v for k, v in json.loads(hub_pattern).items() if k != "detail"} == rule["EventPattern"]
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Ref": "HubEventBusArn"}
    assert target["RoleArn"] == {"Fn::GetAtt": ["ForwardAmiEventsRole", "Arn"]}


def test_the_forwarding_role_may_only_put_events_on_the_hub_bus() -> None:
    cfn = spoke(SPOKE_ACCOUNT, OTHER_REGION)
    role = cfn.resolve(SPOKE_RESOURCES["ForwardAmiEventsRole"]["Properties"])
    assert "RoleName" not in role  # one per region: IAM names must not collide
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": SPOKE_ACCOUNT}}
    assert "ManagedPolicyArns" not in role
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert [(s["Effect"], s["Action"], s["Resource"]) for s in statements] == [("Allow", "events:PutEvents", HUB_BUS)]


# ------------------------------------------------------------------ the spoke role: who may assume it


def test_only_the_hub_function_roles_may_assume_the_spoke_role() -> None:
    cfn = spoke()
    role = cfn.resolve(SPOKE_RESOURCES["SpokeRole"]["Properties"])
    assert role["RoleName"] == "ami-lifecycle-spoke"
    assert role.get("Path", "/") == "/"  # the hub assumes arn:...:role/<SpokeRoleName>
    renamed = spoke(SpokeRoleName="platform-ami").resolve(SPOKE_RESOURCES["SpokeRole"]["Properties"])
    assert renamed["RoleName"] == "platform-ami"
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert set(trust) == {"Sid", "Effect", "Principal", "Action", "Condition"}
    assert (trust["Effect"], trust["Action"]) == ("Allow", "sts:AssumeRole")
    assert trust["Principal"] == {"AWS": f"arn:aws:iam::{HUB}:root"}
    # The path every hub function role has (template.yaml, Globals: RolePath).
    path = TEMPLATE["Globals"]["Function"]["RolePath"]
    assert trust["Condition"] == {"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{HUB}:role{path}*"}}

    def trusted(principal_arn: str) -> bool:
        account = principal_arn.split(":")[4]
        root = trust["Principal"]["AWS"]
        return account == root.split(":")[4] and glob(trust["Condition"]["ArnLike"]["aws:PrincipalArn"], principal_arn)

    for function in FUNCTIONS:
        # SAM names a function's role <stack>-<function>Role-<suffix>, under RolePath.
        assert trusted(f"arn:aws:iam::{HUB}:role/ami-lifecycle/{STACK}-{function}Role-1A2B3C4D5E6F")
    assert not trusted(f"arn:aws:iam::{HUB}:role/{STACK}-ImageEventsFunctionRole-1A2B3C4D5E6F")
    assert not trusted(f"arn:aws:iam::{HUB}:role/Admin")
    assert not trusted(f"arn:aws:iam::{HUB}:user/ami-lifecycle/alice")
    assert not trusted(f"arn:aws:iam::{SPOKES[1]}:role/ami-lifecycle/{STACK}-ImageEventsFunctionRole-1A2B")
    assert not trusted(f"arn:aws:sts::{HUB}:assumed-role/Admin/session")


# ------------------------------------------------------------------ the spoke role: what it may do


def test_no_mutating_action_of_the_spoke_role_is_on_every_resource(prefix: str) -> None:
    statements = spoke_role_statements(spoke(TagPrefix=prefix))
    assert statements
    for statement in statements:
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, statement
        actions = as_list(statement["Action"])
        assert not any(a == "*" or a.endswith(":*") for a in actions), statement["Sid"]
        mutating = [a for a in actions if not READ_ONLY.match(a)]
        if statement["Effect"] == "Allow" and mutating:
            assert "*" not in as_list(statement["Resource"]), statement["Sid"]


def test_every_write_of_the_spoke_role_is_tag_scoped(prefix: str) -> None:
    statements = spoke_role_statements(spoke(TagPrefix=prefix))
    own_reports = f"arn:aws:ec2:*:{SPOKE_ACCOUNT}:image-usage-report/*"
    writes = 0
    for statement in statements:
        if statement["Effect"] != "Allow" or all(READ_ONLY.match(a) for a in as_list(statement["Action"])):
            continue
        writes += 1
        condition = statement.get("Condition", {})
        scopes = {
            condition.get("StringEquals", {}).get(f"aws:ResourceTag/{prefix}:managed"),
            condition.get("StringEquals", {}).get(f"aws:RequestTag/{prefix}:managed"),
            condition.get("StringEquals", {}).get("ec2:CreateAction"),
        } - {None}
        if statement["Sid"] == "ReportRefusals":
            # Unscoped by tag, but it writes nothing but P:error.
            assert condition["ForAllValues:StringLike"] == {"aws:TagKeys": [f"{prefix}:error"]}
        elif statement["Sid"] == "OwnUsageReports":
            # The new report (no tags yet): this account's reports only.
            assert as_list(statement["Resource"]) == [own_reports]
        else:
            assert scopes in ({"true"}, {"CopyImage"}), statement["Sid"]
        if {"ec2:CreateTags", "ec2:DeleteTags", "ec2:CopyImage"} & set(as_list(statement["Action"])):
            assert condition["Null"] == {"aws:TagKeys": "false"}, statement["Sid"]
            assert list(condition["ForAllValues:StringLike"]["aws:TagKeys"])[0].startswith(f"{prefix}:")
    assert writes >= 10
    # The explicit denies reach the spoke: opted-out and foreign images, P:hold.
    denies = {s["Sid"] for s in statements if s["Effect"] == "Deny"}
    assert denies == {
        "DenyWritesToOptedOut",
        "DenyWritesToAwsBackup",
        "DenyWritesToDataLifecycleManager",
        "DenyWritesToImageBuilder",
        "DenyHoldTagWrites",
    }


@pytest.mark.parametrize(
    "hub",
    [
        parameters(),
        hub_parameters(",".join(SPOKES)),
        {**hub_parameters("organization"), "ReplicaKmsKeys": f"us-west-2={KEY_WEST}"},
    ],
    ids=["single-account", "account-list", "organization-with-kms-keys"],
)
def test_the_spoke_role_grants_exactly_what_the_hub_functions_hold(prefix: str, hub: dict[str, str]) -> None:
    """The hub's statements, resolved for the spoke account (${AWS::AccountId}), minus what only
    makes sense in the hub: equal, statement for statement, to the spoke role's."""
    hub_cfn = Cfn({**hub, "TagPrefix": prefix}, account=SPOKE_ACCOUNT)
    held = flatten([s for f in FUNCTIONS for s in function_statements(hub_cfn, f)])
    hub_only = {t for t in held if t[1].startswith(HUB_ONLY)}
    assert flatten(spoke_role_statements(spoke(TagPrefix=prefix))) == held - hub_only


def test_spoke_yaml_is_what_the_generator_writes_from_template_yaml() -> None:
    """Fails on drift: after changing template.yaml's permissions, run python tools/gen_spoke.py."""
    assert gen_spoke.render(SPOKE_TEXT, gen_spoke.load(gen_spoke.TEMPLATE)) == SPOKE_TEXT
    assert gen_spoke.main(["--check"]) == 0


def test_the_generator_refuses_permissions_it_cannot_place() -> None:
    hub = gen_spoke.load(gen_spoke.TEMPLATE)
    # A changed tag-scoped policy changes the spoke.
    changed = copy.deepcopy(hub)
    document = changed["Resources"]["TagImagesPolicy"]["Properties"]["PolicyDocument"]
    document["Fn::Sub"] = document["Fn::Sub"].replace('"ec2:DeleteTags"', '"ec2:DeleteTags", "ec2:ResetImageAttribute"')
    assert gen_spoke.render(SPOKE_TEXT, changed) != SPOKE_TEXT
    # An inline write, a new managed policy, a new policy template: each needs a decision.
    inline = copy.deepcopy(hub)
    inline["Resources"]["BackfillFunction"]["Properties"]["Policies"][0]["Statement"].append(
        {"Sid": "Oops", "Effect": "Allow", "Action": "ec2:DeregisterImage", "Resource": "*"}
    )
    managed = copy.deepcopy(hub)
    managed["Resources"]["ReplicatorFunction"]["Properties"]["Policies"].append({"Ref": "SomeNewPolicy"})
    template = copy.deepcopy(hub)
    template["Resources"]["RetentionSweepFunction"]["Properties"]["Policies"].append(
        {"S3CrudPolicy": {"BucketName": "b"}}
    )
    for bad in (inline, managed, template):
        with pytest.raises(gen_spoke.SpokeDriftError):
            gen_spoke.render(SPOKE_TEXT, bad)


# ------------------------------------------------------------------ the hub: assuming the spoke roles


def assume(cfn: Cfn, function: str, target: str, org: str | None) -> str:
    """sts:AssumeRole of `target` by the function's role; `org` is the target account's organization."""
    account = target.split(":")[4]
    context = {"aws:ResourceAccount": account, **({"aws:ResourceOrgID": org} if org else {})}
    return evaluate(function_statements(cfn, function), "sts:AssumeRole", target, context)


def targets(name: str = "ami-lifecycle-spoke") -> list[tuple[str, str | None]]:
    """Roles in several accounts: the managed ones, the hub's, one outside; in or out of the org."""
    arns: list[tuple[str, str | None]] = []
    for account, org in [
        (SPOKES[0], ORG_ID),
        (SPOKES[1], ORG_ID),
        (HUB, ORG_ID),
        ("999900001111", ORG_ID),
        ("222200003333", "o-zzzzzzzzzz"),
        ("333300004444", None),
    ]:
        for role in (name, "Admin", f"team/{name}", f"{name}-2", "OrganizationAccountAccessRole"):
            arns.append((f"arn:aws:iam::{account}:role/{role}", org))
    return arns


@pytest.mark.parametrize("function", FUNCTIONS)
def test_no_managed_account_no_spoke_permission(function: str) -> None:
    statements = function_statements(Cfn(hub_parameters("")), function)
    assert not [a for s in statements for a in as_list(s["Action"]) if a.startswith(("sts:", "organizations:"))]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_assumes_exactly_the_spoke_role_in_the_listed_accounts(function: str) -> None:
    cfn = Cfn(hub_parameters(",".join(SPOKES)))
    sts = [s for s in function_statements(cfn, function) if any(a.startswith("sts:") for a in as_list(s["Action"]))]
    (statement,) = sts
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"] == {"StringEquals": {"aws:ResourceAccount": list(SPOKES)}}
    allowed = {arn for arn, org in targets() if assume(cfn, function, arn, org) == ALLOW}
    assert allowed == {f"arn:aws:iam::{a}:role/ami-lifecycle-spoke" for a in SPOKES}
    # Another SpokeRoleName: that name, and not the default one.
    renamed = Cfn({**hub_parameters(",".join(SPOKES)), "SpokeRoleName": "platform-ami"})
    allowed = {arn for arn, org in targets("platform-ami") if assume(renamed, function, arn, org) == ALLOW}
    assert allowed == {f"arn:aws:iam::{a}:role/platform-ami" for a in SPOKES}
    assert assume(renamed, function, f"arn:aws:iam::{SPOKES[0]}:role/ami-lifecycle-spoke", ORG_ID) == IMPLICIT
    # A request without the account key (which IAM always sets for a role) would match nothing.
    statements = function_statements(cfn, function)
    assert evaluate(statements, "sts:AssumeRole", f"arn:aws:iam::{SPOKES[0]}:role/ami-lifecycle-spoke", {}) == IMPLICIT
    assert not [a for s in statements for a in as_list(s["Action"]) if a.startswith("organizations:")]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_with_organization_each_function_assumes_the_spoke_role_in_the_organization_only(function: str) -> None:
    cfn = Cfn(hub_parameters("organization"))
    allowed = {arn for arn, org in targets() if assume(cfn, function, arn, org) == ALLOW}
    in_org = {arn.split(":")[4] for arn, org in targets() if org == ORG_ID}
    assert in_org == {*SPOKES, HUB, "999900001111"}
    # The hub's own account is in the organization too; it has no spoke role (and never needs one).
    assert allowed == {f"arn:aws:iam::{a}:role/ami-lifecycle-spoke" for a in in_org}
    # And the organization's accounts are listed (ListAccounts has no resource type).
    statements = function_statements(cfn, function)
    listing = [(a, s["Resource"]) for s in statements for a in as_list(s["Action"]) if a.startswith("organizations:")]
    assert listing == [("organizations:ListAccounts", "*")]
