"""template.yaml, read as CloudFormation reads it: least-privilege IAM, failure handling, alarms.

The policies are resolved the way CloudFormation would resolve them for given parameters (a small
evaluator of the intrinsic functions the template uses), so the assertions are about the
documents IAM receives, e.g. that `aws:ResourceTag/<TagPrefix>:managed` really names the prefix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from ami_lifecycle.runtime import load_settings
from ami_lifecycle_localaws.stack import ROOT, load_template

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
FUNCTIONS = ("ImageEventsFunction", "ReplicatorFunction", "RetentionSweepFunction", "BackfillFunction")
ASYNC_FUNCTIONS = ("ImageEventsFunction", "RetentionSweepFunction", "BackfillFunction")
STACK = "ami-lifecycle"
ACCOUNT = "111122223333"
REGION = "us-east-1"
KEY_WEST = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
KEY_EU = "arn:aws:kms:eu-west-1:111122223333:key/mrk-0123456789abcdef0123456789abcdef"
# Read-only actions: the only ones allowed on Resource "*".
READ_ONLY = re.compile(r"^[a-z0-9-]+:(Describe|Get|List)[A-Za-z]*$")
NO_VALUE = object()
# The AWS::IAM::ManagedPolicy resources whose document is one Fn::Sub JSON string (the tag prefix
# in condition keys).
TAG_SCOPED_POLICIES = ("TagImagesPolicy", "CopyImagesPolicy", "RetireImagesPolicy", "ProtectImagesPolicy")


# ------------------------------------------------------------------ a small CloudFormation evaluator


def parameters(**overrides: str) -> dict[str, str]:
    values = {name: str(spec.get("Default", "")) for name, spec in TEMPLATE["Parameters"].items()}
    values.update(overrides)
    return values


class Cfn:
    """Resolves Ref, Fn::Sub, Fn::Join, Fn::Split, Fn::Select, Fn::If, Fn::Equals, Fn::Not,
    Fn::And, Fn::Or, Condition and Fn::GetAtt (to stand-in ARNs and names) for one set of parameter
    values, in one account and region (template.yaml by default; spoke.yaml in its own tests)."""

    def __init__(
        self,
        params: Mapping[str, str],
        *,
        template: Mapping[str, Any] = TEMPLATE,
        account: str = ACCOUNT,
        region: str = REGION,
    ) -> None:
        self.params = dict(params)
        self.template = template
        self.account, self.region = account, region
        self.pseudo = {
            "AWS::Partition": "aws",
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::StackName": STACK,
            "AWS::URLSuffix": "amazonaws.com",
        }

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.params:
            return self.params[name]
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.template["Resources"] or name.endswith("Role"):
            return f"{STACK}-{name}"
        raise KeyError(name)

    def getatt(self, lid: str, attr: str) -> str:
        assert lid in self.template["Resources"] or lid.startswith(FUNCTIONS), f"GetAtt of unknown resource {lid}"
        if attr == "QueueName":
            return f"{STACK}-{lid}"
        return f"arn:aws:test:{self.region}:{self.account}:{lid}/{attr}"

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def created(self, logical_id: str) -> bool:
        """Whether the resource exists for these parameters (its Condition, if any, holds)."""
        condition = self.template["Resources"][logical_id].get("Condition")
        return condition is None or self.condition(condition)

    def sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                lid, attr = name.split(".", 1)
                return self.getatt(lid, attr)
            return str(self.ref(name))

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::GetAtt":
                lid, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.getatt(lid, attr)
            if fn == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                return self.sub(text, variables)
            if fn == "Fn::Join":
                return arg[0].join(str(v) for v in self.resolve(arg[1]))
            if fn == "Fn::Split":
                return str(self.resolve(arg[1])).split(arg[0])
            if fn == "Fn::Select":
                return self.resolve(arg[1])[int(self.resolve(arg[0]))]
            if fn == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if fn == "Fn::Equals":
                return self.resolve(arg[0]) == self.resolve(arg[1])
            if fn == "Fn::Not":
                return not self.resolve(arg[0])
            if fn == "Fn::And":
                return all(self.resolve(a) for a in arg)
            if fn == "Fn::Or":
                return any(self.resolve(a) for a in arg)
            if fn in ("Condition", "Fn::Condition"):  # `!Condition X` loads as Fn::Condition
                return self.condition(arg)
        out = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not NO_VALUE}


def managed_policy_document(cfn: Cfn, logical_id: str) -> dict[str, Any]:
    """The JSON document of an AWS::IAM::ManagedPolicy, as IAM receives it."""
    doc = cfn.resolve(RESOURCES[logical_id]["Properties"]["PolicyDocument"])
    return json.loads(doc) if isinstance(doc, str) else doc


def function_statements(cfn: Cfn, function: str) -> list[dict[str, Any]]:
    """Every statement the function's role holds: inline `Policies` statements, the managed
    policies it references, and AWS::IAM::Policy resources attached to its role when their
    Condition holds. (SAM policy templates such as SQSPollerPolicy are SAM's own, scoped to one
    queue, and not expanded.)"""
    statements: list[dict[str, Any]] = []
    for entry in RESOURCES[function]["Properties"].get("Policies", []):
        if isinstance(entry, dict) and "Statement" in entry:
            statements.extend(cfn.resolve(entry["Statement"]))
        elif isinstance(entry, dict) and set(entry) == {"Ref"}:
            statements.extend(managed_policy_document(cfn, entry["Ref"])["Statement"])
    for lid, res in RESOURCES.items():
        attached = res["Type"] == "AWS::IAM::Policy" and {"Ref": f"{function}Role"} in res["Properties"]["Roles"]
        if attached and cfn.created(lid):
            statements.extend(cfn.resolve(res["Properties"]["PolicyDocument"])["Statement"])
    return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def all_statements(cfn: Cfn) -> Iterator[tuple[str, dict[str, Any]]]:
    for function in FUNCTIONS:
        for statement in function_statements(cfn, function):
            yield function, statement


def walk_keys(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield path, k
            yield from walk_keys(v, f"{path}/{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk_keys(v, f"{path}/{i}")


@pytest.fixture(params=["ami-lifecycle", "acme"], ids=["default-prefix", "prefix-acme"])
def prefix(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# ------------------------------------------------------------------ the TagPrefix in condition keys


def test_no_intrinsic_placeholder_is_left_in_a_yaml_key() -> None:
    """CloudFormation resolves nothing in keys: `aws:ResourceTag/${TagPrefix}:managed` as a YAML key
    would reach IAM literally and match no tag."""
    bad = [f"{path}: {key}" for path, key in walk_keys(TEMPLATE) if "${" in key]
    assert bad == []


def test_condition_keys_name_the_tag_prefix_of_the_stack() -> None:
    cfn = Cfn(parameters(TagPrefix="acme"))
    keys: set[str] = set()
    values: set[str] = set()
    for lid in TAG_SCOPED_POLICIES:
        doc = managed_policy_document(cfn, lid)
        assert "${" not in json.dumps(doc)
        for statement in doc["Statement"]:
            for conditions in statement.get("Condition", {}).values():
                keys.update(conditions)
                values.update(v for value in conditions.values() for v in as_list(value))
    assert "aws:ResourceTag/acme:managed" in keys
    assert "aws:RequestTag/acme:managed" in keys
    assert {"acme:*", "acme:hold"} <= values
    assert not any("ami-lifecycle" in k for k in keys | values)


@pytest.mark.parametrize("tag_prefix", ["a", "team ops/ami=x+y@corp.v2", "Z" * 64])
def test_every_allowed_tag_prefix_gives_valid_json(tag_prefix: str) -> None:
    """The documents are JSON strings built with Fn::Sub: any prefix TagPrefix allows keeps them valid."""
    assert re.fullmatch(TEMPLATE["Parameters"]["TagPrefix"]["AllowedPattern"], tag_prefix)
    cfn = Cfn(parameters(TagPrefix=tag_prefix))
    for lid in TAG_SCOPED_POLICIES:
        doc = managed_policy_document(cfn, lid)
        assert f"aws:ResourceTag/{tag_prefix}:managed" in json.dumps(doc)


def test_tag_prefix_cannot_break_out_of_a_json_string() -> None:
    pattern = TEMPLATE["Parameters"]["TagPrefix"]["AllowedPattern"]
    for bad in ('acme"', "acme\\", 'a","Effect":"Allow'):
        assert not re.fullmatch(pattern, bad)


# ------------------------------------------------------------------ least privilege


def test_no_mutating_action_on_every_resource(prefix: str) -> None:
    cfn = Cfn(parameters(TagPrefix=prefix, ReplicaKmsKeys=f"us-west-2={KEY_WEST}"))
    for function, statement in all_statements(cfn):
        if statement.get("Effect") != "Allow":
            continue
        resources = as_list(statement["Resource"])
        mutating = [a for a in as_list(statement["Action"]) if not READ_ONLY.match(a)]
        assert not (mutating and "*" in resources), f"{function} {statement.get('Sid')}: {mutating} on *"
        assert not any(a == "*" or a.endswith(":*") for a in as_list(statement["Action"])), statement


def test_destructive_actions_only_on_managed_images_and_snapshots(prefix: str) -> None:
    cfn = Cfn(parameters(TagPrefix=prefix))
    destructive = {"ec2:DeregisterImage", "ec2:DeleteSnapshot", "ec2:EnableImageDeprecation", "ec2:DisableImage"}
    seen: set[str] = set()
    for function, statement in all_statements(cfn):
        granted = destructive & set(as_list(statement["Action"]))
        if not granted or statement["Effect"] != "Allow":
            continue
        seen |= granted
        assert statement["Condition"]["StringEquals"] == {f"aws:ResourceTag/{prefix}:managed": "true"}, function
        for arn in as_list(statement["Resource"]):
            assert re.fullmatch(r"arn:aws:ec2:\*::(image|snapshot)/\*", arn), arn
    assert {"ec2:DeregisterImage", "ec2:DeleteSnapshot", "ec2:EnableImageDeprecation"} <= seen


def test_tag_writes_are_limited_to_lifecycle_keys(prefix: str) -> None:
    cfn = Cfn(parameters(TagPrefix=prefix))
    found = 0
    for function, statement in all_statements(cfn):
        actions = set(as_list(statement["Action"])) & {"ec2:CreateTags", "ec2:DeleteTags"}
        if not actions or statement["Effect"] != "Allow":
            continue
        found += 1
        condition = statement["Condition"]
        # Lifecycle keys only; the refusal statement narrower still (P:error alone).
        assert condition["ForAllValues:StringLike"] in (
            {"aws:TagKeys": [f"{prefix}:*"]},
            {"aws:TagKeys": [f"{prefix}:error"]},
        ), function
        # Without tag keys, DeleteTags deletes every tag and ForAllValues holds vacuously.
        assert condition["Null"] == {"aws:TagKeys": "false"}, function
        scopes = [
            condition.get("StringEquals", {}).get(f"aws:ResourceTag/{prefix}:managed"),
            condition.get("StringEquals", {}).get(f"aws:RequestTag/{prefix}:managed"),
            condition.get("StringEquals", {}).get("ec2:CreateAction"),
        ]
        if statement["Sid"] == "ReportRefusals":
            # Unscoped, but it can write nothing but P:error, and only on images.
            assert condition["ForAllValues:StringLike"] == {"aws:TagKeys": [f"{prefix}:error"]}
            assert actions == {"ec2:CreateTags"} and not [s for s in scopes if s]
            continue
        assert [s for s in scopes if s] in (["true"], ["CopyImage"]), (function, statement["Sid"])
        if statement["Sid"] == "AdoptImages":
            # Only a call that makes the image managed may tag an unmanaged image.
            assert actions == {"ec2:CreateTags"}
    assert found >= 5


def test_copies_are_born_managed_and_tagged_on_creation(prefix: str) -> None:
    cfn = Cfn(parameters(TagPrefix=prefix))
    statements = [s for s in function_statements(cfn, "ReplicatorFunction") if s["Effect"] == "Allow"]
    copy = [s for s in statements if "ec2:CopyImage" in as_list(s["Action"])]
    assert len(copy) == 1
    assert copy[0]["Condition"]["StringEquals"] == {f"aws:RequestTag/{prefix}:managed": "true"}
    on_create = [s for s in statements if s["Sid"] == "TagCopiesOnCreation"]
    assert on_create[0]["Condition"]["StringEquals"] == {"ec2:CreateAction": "CopyImage"}
    # The P:copies record on the source: a CreateTags on a managed image with lifecycle keys.
    record = [s for s in statements if s["Sid"] == "RecordCopiesOnManagedSource"]
    assert record[0]["Condition"]["StringEquals"] == {f"aws:ResourceTag/{prefix}:managed": "true"}
    assert not any(a in as_list(s["Action"]) for s in statements for a in ("ec2:DeregisterImage", "ec2:DeleteSnapshot"))


PROTECTED_ACTIONS = {
    "ec2:CreateTags",
    "ec2:DeleteTags",
    "ec2:DeregisterImage",
    "ec2:DeleteSnapshot",
    "ec2:EnableImageDeprecation",
    "ec2:DisableImage",
    "ec2:EnableImage",
    "ec2:ModifyImageAttribute",
    "ec2:DisableImageDeprecation",
}


def test_every_function_holds_the_explicit_denies(prefix: str) -> None:
    """One managed policy holds every Deny, and every role holds that policy. What the denies
    refuse is evaluated in test_iam_enforcement.py."""
    cfn = Cfn(parameters(TagPrefix=prefix))
    protect = managed_policy_document(cfn, "ProtectImagesPolicy")["Statement"]
    assert {s["Effect"] for s in protect} == {"Deny"}
    for function in FUNCTIONS:
        assert {"Ref": "ProtectImagesPolicy"} in RESOURCES[function]["Properties"]["Policies"], function
        assert [s for s in function_statements(cfn, function) if s["Effect"] == "Deny"] == protect, function
    images_and_snapshots = [f"arn:aws:ec2:*::{kind}/*" for kind in ("image", "snapshot")]
    conditions = {}
    for statement in protect:
        assert statement["Resource"] == images_and_snapshots, statement["Sid"]
        # One condition key per statement: the conditions of one statement are ANDed.
        assert len(statement["Condition"]) == 1 and len(next(iter(statement["Condition"].values()))) == 1
        conditions[statement["Sid"]] = statement["Condition"]
        if statement["Sid"] != "DenyHoldTagWrites":
            assert set(statement["Action"]) == PROTECTED_ACTIONS, statement["Sid"]
    assert conditions == {
        "DenyWritesToOptedOut": {"StringEqualsIgnoreCase": {f"aws:ResourceTag/{prefix}:managed": ["false", "no", "0"]}},
        "DenyWritesToAwsBackup": {"Null": {"aws:ResourceTag/aws:backup:source-resource": "false"}},
        "DenyWritesToDataLifecycleManager": {"Null": {"aws:ResourceTag/aws:dlm:lifecycle-policy-id": "false"}},
        "DenyWritesToImageBuilder": {"StringEquals": {"aws:ResourceTag/CreatedBy": "EC2 Image Builder"}},
        "DenyHoldTagWrites": {"ForAnyValue:StringEquals": {"aws:TagKeys": [f"{prefix}:hold"]}},
    }
    (hold,) = [s for s in protect if s["Sid"] == "DenyHoldTagWrites"]
    assert hold["Action"] == ["ec2:CreateTags", "ec2:DeleteTags"]


def test_the_sweep_tags_only_as_the_event_path_does_and_never_copies(prefix: str) -> None:
    """Live tags: the sweep rewrites the tool's P:expires-at, with the same policy as the event path."""
    cfn = Cfn(parameters(TagPrefix=prefix))
    assert {"Ref": "TagImagesPolicy"} in RESOURCES["RetentionSweepFunction"]["Properties"]["Policies"]
    allowed = {
        a
        for s in function_statements(cfn, "RetentionSweepFunction")
        if s["Effect"] == "Allow"
        for a in as_list(s["Action"])
    }
    assert "ec2:CopyImage" not in allowed
    tagging = list(managed_policy_document(cfn, "TagImagesPolicy")["Statement"])
    sweep_tagging = [
        s
        for s in function_statements(cfn, "RetentionSweepFunction")
        if s["Effect"] == "Allow" and {"ec2:CreateTags", "ec2:DeleteTags"} & set(as_list(s["Action"]))
    ]
    assert sweep_tagging == [s for s in tagging if {"ec2:CreateTags", "ec2:DeleteTags"} & set(as_list(s["Action"]))]


def test_sharing_and_usage_reads_go_to_the_sweep_and_the_backfill_only(prefix: str) -> None:
    cfn = Cfn(parameters(TagPrefix=prefix))
    new = {
        "ec2:DescribeImageAttribute",
        "ec2:DescribeSnapshotAttribute",
        "ec2:CreateImageUsageReport",
        "ec2:DescribeImageUsageReports",
        "ec2:DescribeImageUsageReportEntries",
        "ec2:DeleteImageUsageReport",
        "ec2:DescribeRegions",
    }
    for function in FUNCTIONS:
        resources: dict[str, list[str]] = {}
        for statement in function_statements(cfn, function):
            if statement["Effect"] == "Allow":
                for action in set(as_list(statement["Action"])) & new:
                    resources.setdefault(action, []).extend(as_list(statement["Resource"]))
        if function in ("ImageEventsFunction", "ReplicatorFunction"):
            assert resources == {}, function
            continue
        assert resources == {
            # Both have resource types: IAM scopes them, so they are scoped.
            "ec2:DescribeImageAttribute": ["arn:aws:ec2:*::image/*"],
            "ec2:DescribeSnapshotAttribute": ["arn:aws:ec2:*::snapshot/*"],
            # Authorized on the image (managed ones, see test_iam_enforcement) and on the new report.
            "ec2:CreateImageUsageReport": [
                "arn:aws:ec2:*::image/*",
                f"arn:aws:ec2:*:{ACCOUNT}:image-usage-report/*",
            ],
            "ec2:DeleteImageUsageReport": [f"arn:aws:ec2:*:{ACCOUNT}:image-usage-report/*"],
            # No resource type: "*" is the only resource IAM accepts.
            "ec2:DescribeImageUsageReports": ["*"],
            "ec2:DescribeImageUsageReportEntries": ["*"],
            "ec2:DescribeRegions": ["*"],
        }, function
        (report,) = [
            s
            for s in function_statements(cfn, function)
            if s["Effect"] == "Allow" and as_list(s["Action"]) == ["ec2:CreateImageUsageReport"]
        ]
        assert report["Condition"] == {"StringEquals": {f"aws:ResourceTag/{prefix}:managed": "true"}}


def test_kms_is_limited_to_the_replica_kms_keys() -> None:
    cfn = Cfn(parameters(ReplicaKmsKeys=f"us-west-2={KEY_WEST},eu-west-1={KEY_EU}"))
    kms = [s for s in function_statements(cfn, "ReplicatorFunction") if s["Sid"].startswith("UseReplicaKmsKeys")]
    assert len(kms) == 1
    statement = kms[0]
    resources = statement["Resource"]
    assert KEY_WEST in resources and KEY_EU in resources
    # The rest are placeholders that name no key ("none" is not a key id).
    others = sorted(set(resources) - {KEY_WEST, KEY_EU})
    assert others == ["arn:*:kms:eu-west-1:*:key/none", "arn:*:kms:us-west-2:*:key/none"]
    assert set(statement["Action"]) == {
        "kms:CreateGrant",
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:GenerateDataKeyWithoutPlaintext",
        "kms:ReEncryptFrom",
        "kms:ReEncryptTo",
    }
    assert statement["Condition"] == {
        "StringLike": {"kms:ViaService": "ec2.*.amazonaws.com"},
        "BoolIfExists": {"kms:GrantIsForAWSResource": "true"},
    }
    # No other function holds any KMS permission.
    for function in FUNCTIONS:
        if function != "ReplicatorFunction":
            assert not any(
                a.startswith("kms:") for s in function_statements(cfn, function) for a in as_list(s["Action"])
            )


def test_no_kms_permission_without_replica_kms_keys() -> None:
    cfn = Cfn(parameters())
    assert not any(a.startswith("kms:") for _, s in all_statements(cfn) for a in as_list(s["Action"]))


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("", True),
        (f"us-west-2={KEY_WEST}", True),
        (f"us-west-2={KEY_WEST},eu-west-1={KEY_EU}", True),
        ("us-west-2=alias/ami-copies", False),  # IAM cannot name a key by its alias
        (f"us-west-2 = {KEY_WEST}", False),
        (f"us-west-2={KEY_WEST},", False),
        ("us-west-2=arn:aws:kms:us-west-2:111122223333:alias/ami", False),
    ],
)
def test_replica_kms_keys_must_be_key_arns(value: str, ok: bool) -> None:
    pattern = TEMPLATE["Parameters"]["ReplicaKmsKeys"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is ok


def test_no_function_may_invoke_itself() -> None:
    """A long sweep continues in SweepStateMachine's loop, a long backfill through its caller
    (tests/unit/test_statemachine.py checks the state machine's role)."""
    cfn = Cfn(parameters())
    for function in FUNCTIONS:
        assert not any("lambda:InvokeFunction" in as_list(s["Action"]) for s in function_statements(cfn, function))


def test_ec2_arns_follow_the_partition() -> None:
    text = json.dumps(TEMPLATE)
    assert "arn:aws:ec2" not in text and "arn:aws:lambda" not in text


# ------------------------------------------------------------------ parameters the functions read


def function_environment(cfn: Cfn) -> dict[str, str]:
    """Globals.Function.Environment.Variables as a function receives them (plus its region)."""
    env = cfn.resolve(TEMPLATE["Globals"]["Function"]["Environment"]["Variables"])
    return {**{k: str(v) for k, v in env.items()}, "AWS_REGION": REGION}


def test_the_new_parameters_reach_the_functions() -> None:
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["KEEP_IF_LAUNCHED_WITHIN"] == {"Ref": "KeepIfLaunchedWithin"}
    assert variables["SHARED_IMAGE_CHECK"] == {"Ref": "SharedImageCheck"}
    keep = TEMPLATE["Parameters"]["KeepIfLaunchedWithin"]
    assert (keep["Type"], keep["Default"]) == ("String", "7d")
    assert "0d disables" in keep["Description"]
    shared = TEMPLATE["Parameters"]["SharedImageCheck"]
    assert (shared["Type"], shared["Default"]) == ("String", "strict")
    # "off" quoted in YAML: unquoted, YAML 1.1 readers (CloudFormation's among them) see false.
    assert shared["AllowedValues"] == ["strict", "managed-accounts", "off"]
    assert "unsafe" in shared["Description"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("7d", True),
        ("0d", True),
        ("12h", True),
        ("2w", True),
        ("99999h", True),
        ("9999d", True),
        ("999w", True),
        ("100000h", False),
        ("7", False),
        ("7D", False),
        ("7 d", False),
        ("-1d", False),
        ("1.5d", False),
        ("P7D", False),
        ("1y", False),
        ("forever", False),
        ("", False),
    ],
)
def test_keep_if_launched_within_is_hours_days_or_weeks(value: str, ok: bool) -> None:
    assert bool(re.fullmatch(TEMPLATE["Parameters"]["KeepIfLaunchedWithin"]["AllowedPattern"], value)) is ok


@pytest.mark.parametrize("value", ["0d", "7d", "99999h", "9999d", "999w"])
def test_every_keep_if_launched_within_the_template_admits_is_accepted_by_the_functions(value: str) -> None:

    settings = load_settings(function_environment(Cfn(parameters(KeepIfLaunchedWithin=value))))
    assert settings.keep_if_launched_within == value


@pytest.mark.parametrize("value", ["strict", "managed-accounts", "off"])
def test_every_shared_image_check_reaches_the_settings(value: str) -> None:

    settings = load_settings(function_environment(Cfn(parameters(SharedImageCheck=value))))
    assert settings.shared_image_check == value


# ------------------------------------------------------------------ failure handling


def test_every_queue_is_encrypted() -> None:
    queues = {lid: r["Properties"] for lid, r in RESOURCES.items() if r["Type"] == "AWS::SQS::Queue"}
    assert len(queues) >= 5
    for lid, props in queues.items():
        assert props.get("SqsManagedSseEnabled") is True or props.get("KmsMasterKeyId"), lid


def test_every_asynchronous_path_has_bounded_retries_and_a_failure_queue() -> None:
    for function in ASYNC_FUNCTIONS:
        config = RESOURCES[function]["Properties"]["EventInvokeConfig"]
        assert 0 <= config["MaximumRetryAttempts"] <= 2
        assert config["MaximumEventAgeInSeconds"] <= 21600
        assert config["DestinationConfig"]["OnFailure"] == {
            "Type": "SQS",
            "Destination": {"Fn::GetAtt": ["AsyncFailureQueue", "Arn"]},
        }
    # The default bus's rule and HubEventBus's (events forwarded by the spokes).
    rules = [e["Properties"] for e in RESOURCES["ImageEventsFunction"]["Properties"]["Events"].values()]
    assert len(rules) == 2
    for rule in rules:
        assert rule["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["ImageEventsDeadLetterQueue", "Arn"]}}
        assert rule["RetryPolicy"]["MaximumRetryAttempts"] <= 185
    # The schedule starts SweepStateMachine (its DLQ: the schedule's; tests/unit/test_statemachine.py).
    (schedule,) = [e["Properties"] for e in RESOURCES["SweepStateMachine"]["Properties"]["Events"].values()]
    assert schedule["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["SweepScheduleDeadLetterQueue", "Arn"]}}
    assert schedule["RetryPolicy"]["MaximumRetryAttempts"] <= 185
    redrive = RESOURCES["CopyQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["CopyDeadLetterQueue", "Arn"]}
    assert 1 <= redrive["maxReceiveCount"] <= 100


def test_only_the_rules_may_send_to_their_dead_letter_queue() -> None:
    (statement,) = RESOURCES["ImageEventsDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    # SAM names each rule <function><event>: one per EventBridgeRule event of ImageEventsFunction.
    events = RESOURCES["ImageEventsFunction"]["Properties"]["Events"]
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": [{"Fn::GetAtt": [f"ImageEventsFunction{name}", "Arn"]} for name in events]}
    }


# ------------------------------------------------------------------ alarms and dashboard


def alarms() -> dict[str, dict[str, Any]]:
    return {lid: r["Properties"] for lid, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def test_every_alarm_notifies_the_alarm_topic() -> None:
    assert len(alarms()) >= 11
    for lid, props in alarms().items():
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}], lid
        assert props.get("AlarmDescription"), lid


def test_the_alarm_topic_is_encrypted_and_the_email_subscription_conditional() -> None:
    assert RESOURCES["AlarmTopic"]["Properties"]["KmsMasterKeyId"] == {"Ref": "AlarmTopicKey"}
    key = RESOURCES["AlarmTopicKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    cloudwatch = [s for s in key["KeyPolicy"]["Statement"] if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert set(cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    subscription = RESOURCES["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert not Cfn(parameters()).condition("HasAlarmEmail")
    assert Cfn(parameters(AlarmEmail="ops@example.com")).condition("HasAlarmEmail")


def test_each_function_has_an_errors_alarm() -> None:
    watched = {p["Dimensions"][0]["Value"]["Ref"] for p in alarms().values() if p.get("MetricName") == "Errors"}
    assert watched == set(FUNCTIONS)


def test_each_dead_letter_and_failure_queue_has_a_depth_alarm() -> None:
    watched = {
        p["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for p in alarms().values()
        if p.get("MetricName") == "ApproximateNumberOfMessagesVisible"
    }
    assert watched == {
        "CopyDeadLetterQueue",
        "ImageEventsDeadLetterQueue",
        "SweepScheduleDeadLetterQueue",
        "AsyncFailureQueue",
    }


def test_business_alarms_watch_powertools_metrics() -> None:
    service = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    namespace = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    copies = alarms()["CopiesFailedAlarm"]
    assert (copies["Namespace"], copies["MetricName"]) == (namespace, "CopiesFailed")
    assert copies["Dimensions"] == [{"Name": "service", "Value": service}]
    # SweepNotRun counts successful executions of SweepStateMachine (tests/unit/test_statemachine.py).
    sweep = alarms()["SweepNotRunAlarm"]
    assert (sweep["Namespace"], sweep["MetricName"], sweep["Statistic"]) == ("AWS/States", "ExecutionsSucceeded", "Sum")
    pairs = alarms()["SweepPairsFailedAlarm"]
    assert (pairs["Namespace"], pairs["MetricName"]) == (namespace, "SweepPairsFailed")
    assert pairs["Dimensions"] == [{"Name": "service", "Value": service}]
    # Two runs of the default schedule, rate(1 day), missed; missing data counts as missed.
    assert TEMPLATE["Parameters"]["SweepSchedule"]["Default"] == "rate(1 day)"
    assert sweep["Period"] * sweep["EvaluationPeriods"] == 2 * 86400
    assert (sweep["Threshold"], sweep["ComparisonOperator"]) == (1, "LessThanThreshold")
    assert sweep["TreatMissingData"] == "breaching"


def emitted_metric_names() -> set[str]:
    """Every metric name the code emits (count("X"), add_metric(name="X"), single_metric(name="X"))."""
    names: set[str] = set()
    for path in (ROOT / "layers" / "core" / "ami_lifecycle").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        names.update(re.findall(r"\bcount\(\s*f?\"([A-Za-z]+)", text))
        names.update(re.findall(r"name=\"([A-Za-z]+)\"", text))
    return names


def test_alarms_and_dashboard_name_only_metrics_the_code_emits() -> None:
    emitted = emitted_metric_names()
    cfn = Cfn(parameters())
    body = json.loads(cfn.resolve(RESOURCES["Dashboard"]["Properties"]["DashboardBody"]))
    named: set[str] = set()
    for widget in body["widgets"]:
        namespace = None
        for metric in widget.get("properties", {}).get("metrics", []):
            namespace = namespace if metric[0] in (".", "...") else metric[0]
            if namespace == "AmiLifecycle":
                named.add(metric[1])
    for props in alarms().values():
        if props.get("Namespace") == "AmiLifecycle":
            named.add(props["MetricName"])
        for query in props.get("Metrics", []):
            if "MetricStat" in query:
                named.add(query["MetricStat"]["Metric"]["MetricName"])
    assert named, "no business metric found"
    assert named - emitted == set(), f"metrics nothing emits: {sorted(named - emitted)}"


def test_the_dashboard_shows_every_alarm_and_is_valid_json() -> None:
    cfn = Cfn(parameters())
    body = json.loads(cfn.resolve(RESOURCES["Dashboard"]["Properties"]["DashboardBody"]))
    (alarm_widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert set(alarm_widget["properties"]["alarms"]) == {cfn.getatt(lid, "Arn") for lid in alarms()}


def test_the_built_template_keeps_the_policies(prefix: str) -> None:
    """`sam build` copies the template into .aws-sam/build: the policy documents must survive it."""
    built = Path(ROOT / ".aws-sam" / "build" / "template.yaml")
    if not built.exists():
        pytest.skip("no sam build output (make template-check builds it)")
    template = load_template(built)
    for lid in TAG_SCOPED_POLICIES:
        assert template["Resources"][lid] == RESOURCES[lid]


# ------------------------------------------------------------------ hub and spokes (PRODUCT.md section 7)

ORG_ID = "o-a1b2c3d4e5"
SPOKES = ("444455556666", "777788889999")


def hub_parameters(managed: str) -> dict[str, str]:
    """The parameters of a hub managing `managed` ("" / a comma-separated list / "organization")."""
    return parameters(ManagedAccounts=managed, OrganizationId=ORG_ID if managed == "organization" else "")


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("", True),
        ("organization", True),
        ("444455556666", True),
        ("444455556666,777788889999", True),
        ("444455556666, 777788889999", False),
        ("444455556666,", False),
        ("44445555666", False),
        ("4444555566667", False),
        ("Organization", False),
        ("organization,444455556666", False),
        ("o-a1b2c3d4e5", False),
    ],
)
def test_managed_accounts_are_account_ids_or_organization(value: str, ok: bool) -> None:
    assert bool(re.fullmatch(TEMPLATE["Parameters"]["ManagedAccounts"]["AllowedPattern"], value)) is ok


def test_the_hub_parameters_and_their_defaults() -> None:
    declared = TEMPLATE["Parameters"]
    assert (declared["ManagedAccounts"]["Type"], declared["ManagedAccounts"]["Default"]) == ("String", "")
    spoke_role = declared["SpokeRoleName"]
    assert (spoke_role["Type"], spoke_role["Default"]) == ("String", "ami-lifecycle-spoke")
    assert (declared["OrganizationId"]["Type"], declared["OrganizationId"]["Default"]) == ("String", "")
    assert "aws:PrincipalOrgID" in declared["OrganizationId"]["Description"]
    assert re.fullmatch(declared["OrganizationId"]["AllowedPattern"], ORG_ID)
    assert re.fullmatch(declared["SpokeRoleName"]["AllowedPattern"], "ami-lifecycle-spoke")
    assert not re.fullmatch(declared["SpokeRoleName"]["AllowedPattern"], "ami/lifecycle")
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["MANAGED_ACCOUNTS"] == {"Ref": "ManagedAccounts"}
    assert variables["SPOKE_ROLE_NAME"] == {"Ref": "SpokeRoleName"}
    assert variables["ORGANIZATION_ID"] == {"Ref": "OrganizationId"}


def test_organization_needs_the_organization_id() -> None:
    """A template Rule refuses ManagedAccounts=organization without OrganizationId (the bus policy
    and the assume-role condition name it)."""
    (rule,) = TEMPLATE["Rules"].values()
    for managed, org_id, refused in [
        ("organization", "", True),
        ("organization", ORG_ID, False),
        ("444455556666", "", False),
        ("", "", False),
    ]:
        cfn = Cfn(parameters(ManagedAccounts=managed, OrganizationId=org_id))
        applies = cfn.resolve(rule["RuleCondition"])
        holds = all(cfn.resolve(a["Assert"]) for a in rule["Assertions"])
        assert (applies and not holds) is refused, (managed, org_id)


@pytest.mark.parametrize(
    ("value", "accounts", "organization"),
    [
        ("", (), False),
        ("444455556666", ("444455556666",), False),
        (",".join(SPOKES), SPOKES, False),
        ("organization", (), True),
    ],
)
def test_every_managed_accounts_value_reaches_the_settings(
    value: str, accounts: tuple[str, ...], organization: bool
) -> None:
    settings = load_settings(function_environment(Cfn(hub_parameters(value))))
    assert settings.managed_accounts_param == accounts
    assert settings.organization is organization
    assert settings.spoke_role_name == "ami-lifecycle-spoke"
    other = load_settings(function_environment(Cfn(parameters(SpokeRoleName="platform-ami"))))
    assert other.spoke_role_name == "platform-ami"


def test_image_events_are_fed_by_the_default_bus_and_the_hub_bus() -> None:
    events = RESOURCES["ImageEventsFunction"]["Properties"]["Events"]
    rules = {name: e["Properties"] for name, e in events.items() if e["Type"] == "EventBridgeRule"}
    assert len(rules) == 2
    buses = {name: props.get("EventBusName") for name, props in rules.items()}
    assert sorted(buses.values(), key=str) == sorted([None, {"Ref": "HubEventBus"}], key=str)
    default, hub = (rules[n] for n in sorted(rules, key=lambda n: buses[n] is not None))
    assert default["Pattern"] == hub["Pattern"]
    assert hub["Pattern"]["source"] == ["aws.ec2"]
    assert hub["Pattern"]["detail-type"] == ["EC2 AMI State Change"]
    assert hub["RetryPolicy"] == default["RetryPolicy"]
    assert RESOURCES["HubEventBus"]["Type"] == "AWS::Events::EventBus"
    assert "Condition" not in RESOURCES["HubEventBus"]
    assert TEMPLATE["Outputs"]["HubEventBusArn"]["Value"] == {"Fn::GetAtt": ["HubEventBus", "Arn"]}


def bus_policy(managed: str) -> dict[str, Any] | None:
    cfn = Cfn(hub_parameters(managed))
    if not cfn.created("HubEventBusPolicy"):
        return None
    props = cfn.resolve(RESOURCES["HubEventBusPolicy"]["Properties"])
    assert props["EventBusName"] == cfn.ref("HubEventBus")
    statement: dict[str, Any] = props["Statement"]
    return statement


def test_the_hub_bus_admits_put_events_from_the_managed_accounts_only() -> None:
    # No managed account: no grant (the hub account's own rules in other regions need none).
    assert bus_policy("") is None
    listed = bus_policy(",".join(SPOKES))
    assert listed == {
        "Effect": "Allow",
        "Principal": {"AWS": list(SPOKES)},
        "Action": "events:PutEvents",
        "Resource": Cfn(parameters()).getatt("HubEventBus", "Arn"),
    }
    organization = bus_policy("organization")
    assert organization == {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "events:PutEvents",
        "Resource": Cfn(parameters()).getatt("HubEventBus", "Arn"),
        "Condition": {"StringEquals": {"aws:PrincipalOrgID": ORG_ID}},
    }


def test_every_function_role_lives_under_the_path_the_spoke_trusts() -> None:
    assert TEMPLATE["Globals"]["Function"]["RolePath"] == "/ami-lifecycle/"
    for function in FUNCTIONS:
        props = RESOURCES[function]["Properties"]
        assert "RolePath" not in props and "Role" not in props, function
