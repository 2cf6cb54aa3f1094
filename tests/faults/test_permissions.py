"""Least privilege, checked from the other side: every AWS action a function actually performs
(recorded on moto while the flow runs: a day of events, copies and the sweep, a failed-copy event,
a malformed copy request, and a backfill that applies) is granted to that function's role by
template.yaml. A code change that needs a new permission fails here, not in production."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from fnmatch import fnmatchcase
from typing import Any

import pytest
from ami_lifecycle_localaws import motoext
from ami_lifecycle_localaws.stack import LocalStack

from tests.conftest import LocalAws
from tests.faults.conftest import EAST, EC2_ACTIONS, WEST, Event, FreshSystem
from tests.unit.test_template import RESOURCES, Cfn, as_list, function_statements, parameters

# The SAM policy templates the template uses, as SAM expands them (actions only).
SAM_POLICY_TEMPLATES = {
    "SQSSendMessagePolicy": ["sqs:SendMessage*"],
    "SNSPublishMessagePolicy": ["sns:Publish"],
    "SQSPollerPolicy": [
        "sqs:ChangeMessageVisibility",
        "sqs:ChangeMessageVisibilityBatch",
        "sqs:DeleteMessage",
        "sqs:DeleteMessageBatch",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
    ],
}
# moto's action names -> the IAM action that authorizes them.
# Sharing checks and AMI usage reports (the sweep and the backfill).
SHARING_ACTIONS = {
    "DescribeImageAttribute",
    "DescribeSnapshotAttribute",
    "CreateImageUsageReport",
    "DescribeImageUsageReports",
    "DescribeImageUsageReportEntries",
    "DeleteImageUsageReport",
    "DescribeRegions",
}
IAM_ACTION = {
    **{a: f"ec2:{a}" for a in EC2_ACTIONS | SHARING_ACTIONS | {"ListImagesInRecycleBin"}},
    "DescribeParameters": "ssm:DescribeParameters",
    "GetParameters": "ssm:GetParameters",
    "ListImageRecipes": "imagebuilder:ListImageRecipes",
    "ListContainerRecipes": "imagebuilder:ListContainerRecipes",
    "ListRules": "rbin:ListRules",  # the Recycle Bin's rules (motoext serves rbin)
    "GetRule": "rbin:GetRule",
    "DescribeLaunchConfigurations": "autoscaling:DescribeLaunchConfigurations",
    "SendMessage": "sqs:SendMessage",
    "Publish": "sns:Publish",  # the digest
    "SendMessageBatch": "sqs:SendMessage",
    "ChangeMessageVisibility": "sqs:ChangeMessageVisibility",
    "Invoke": "lambda:InvokeFunction",
}


def granted(function: str) -> list[str]:
    """The actions the function's role is allowed (resources and conditions aside)."""
    cfn = Cfn(parameters(ReplicaKmsKeys=""))
    actions = [a for s in function_statements(cfn, function) if s["Effect"] == "Allow" for a in as_list(s["Action"])]
    for entry in RESOURCES[function]["Properties"].get("Policies", []):
        if isinstance(entry, dict):
            for name in entry:
                actions += SAM_POLICY_TEMPLATES.get(name, [])
    return actions


def test_every_action_a_function_performs_is_granted_to_it(
    monkeypatch: pytest.MonkeyPatch, fresh_system: FreshSystem, available_event: Event, local_aws: LocalAws
) -> None:
    performed: dict[str, Counter[str]] = defaultdict(Counter)
    original = LocalStack.invoke

    def recording(self: LocalStack, logical_id: str, event: Any) -> Any:
        before = motoext.calls()
        try:
            return original(self, logical_id, event)
        finally:
            performed[logical_id].update(motoext.calls() - before)

    monkeypatch.setattr(LocalStack, "invoke", recording)
    with fresh_system() as system:
        system.day()
        # A copy that failed: ImageEventsFunction records it on the source.
        (copy_image,) = system.ec2(WEST).describe_images(Owners=["self"])["Images"]
        system.deliver([available_event(copy_image["ImageId"], WEST, State="failed")])
        # A malformed copy request: the replicator changes its visibility.
        sqs = local_aws.client("sqs", EAST)
        sqs.send_message(QueueUrl=system.stack.queue_url("CopyQueue"), MessageBody="{}")
        system.replicate()
        # A backfill that applies everything.
        report = system.stack.invoke("BackfillFunction", {"dry_run": False})
        assert report.get("status") != "refused", report

    assert set(performed) == {"ImageEventsFunction", "ReplicatorFunction", "RetentionSweepFunction", "BackfillFunction"}
    missing: dict[str, list[str]] = {}
    for function, actions in performed.items():
        allowed = granted(function)
        for action in actions:
            iam = IAM_ACTION.get(action)
            assert iam is not None, f"{function} calls {action}: add it to IAM_ACTION"
            if not any(fnmatchcase(iam, pattern) for pattern in allowed):
                missing.setdefault(function, []).append(iam)
    assert missing == {}, "actions performed but not granted:\n" + json.dumps(missing, indent=1)
