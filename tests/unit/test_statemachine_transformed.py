"""The roles SAM generates for the sweep, read from the transformed template (SAM's own translator).

`AWS::Serverless::StateMachine` and its `ScheduleV2` event become an `AWS::StepFunctions::StateMachine`,
its role, an `AWS::Scheduler::Schedule` and the schedule's role: those are what IAM receives, so
the least-privilege checks run on them. The translator lives in `.venv-sam` (`make template-check`
installs it; it pins versions the project's venv does not share), so it runs in a subprocess, offline:
local code URIs are given placeholder S3 locations and no IAM managed policy is looked up.
"""

from __future__ import annotations

import json
import os
import subprocess
from functools import cache
from typing import Any

import pytest
from ami_lifecycle_localaws.stack import ROOT

SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
FUNCTIONS = ("ImageEventsFunction", "ReplicatorFunction", "RetentionSweepFunction", "BackfillFunction")

TRANSLATE = r"""
import json, sys
from pathlib import Path
from samtranslator.public.translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class Offline(ManagedPolicyLoader):
    def __init__(self): pass
    def load(self): return {}

template = yaml_parse(Path(sys.argv[1]).read_text())
for res in template["Resources"].values():
    props = res.get("Properties", {})
    kind = res["Type"]
    if kind == "AWS::Serverless::StateMachine" and isinstance(props.get("DefinitionUri"), str):
        props["DefinitionUri"] = {"Bucket": "bucket", "Key": props["DefinitionUri"]}
    for key in ("CodeUri", "ContentUri"):
        if isinstance(props.get(key), str):
            props[key] = "s3://bucket/" + props[key]
json.dump(transform(template, {}, Offline()), sys.stdout)
"""


@cache
def transformed() -> dict[str, Any]:
    if not SAM_PYTHON.exists():
        pytest.skip("no .venv-sam (make template-check creates it): SAM's translator is not available")
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    out = subprocess.run(  # noqa: S603 - our own venv's interpreter, our own script
        [str(SAM_PYTHON), "-c", TRANSLATE, str(ROOT / "template.yaml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if out.returncode != 0:
        pytest.fail(f"SAM's translator refused template.yaml:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout))


def resources() -> dict[str, Any]:
    return dict(transformed()["Resources"])


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of the role's inline policies; both branches of a conditional one (Fn::If)."""
    out: list[dict[str, Any]] = []

    def add(statement: Any) -> None:
        if isinstance(statement, dict) and set(statement) == {"Fn::If"}:
            for branch in statement["Fn::If"][1:]:
                add(branch)
        elif isinstance(statement, dict) and "Action" in statement:
            out.append(statement)

    for policy in role["Properties"].get("Policies", []):
        doc = policy["PolicyDocument"]
        for statement in doc["Statement"] if isinstance(doc["Statement"], list) else [doc["Statement"]]:
            add(statement)
    return out


def actions(statement: dict[str, Any]) -> list[str]:
    a = statement["Action"]
    return a if isinstance(a, list) else [a]


def test_the_state_machine_role_invokes_only_the_sweep_function() -> None:
    res = resources()
    machine = res["SweepStateMachine"]
    assert machine["Type"] == "AWS::StepFunctions::StateMachine"
    assert machine["Properties"]["RoleArn"] == {"Fn::GetAtt": ["SweepStateMachineRole", "Arn"]}
    role = res["SweepStateMachineRole"]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": ["states.amazonaws.com"]}
    invoke = [s for s in statements(role) if any(a.startswith("lambda:") for a in actions(s))]
    (statement,) = invoke
    assert actions(statement) == ["lambda:InvokeFunction"]
    assert statement["Resource"] == [
        {"Fn::GetAtt": ["RetentionSweepFunction", "Arn"]},
        {"Fn::Sub": "${RetentionSweepFunction.Arn}:*"},
    ]
    every = {a for s in statements(role) for a in actions(s)}
    assert {a.split(":")[0] for a in every} == {"lambda", "states", "logs"}
    # Tracing: the one managed policy SAM attaches, X-Ray's write-only one.
    assert role["Properties"].get("ManagedPolicyArns", []) in ([], ["arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"])


def test_the_schedule_targets_the_state_machine_with_a_role_that_may_only_start_it() -> None:
    res = resources()
    schedules = {lid: r for lid, r in res.items() if r["Type"] == "AWS::Scheduler::Schedule"}
    (schedule,) = schedules.values()
    target = schedule["Properties"]["Target"]
    assert target["Arn"] == {"Ref": "SweepStateMachine"}
    assert json.loads(target["Input"]) == {"source": "schedule"}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["SweepScheduleDeadLetterQueue", "Arn"]}}
    role_id = target["RoleArn"]["Fn::GetAtt"][0]
    role = res[role_id]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": ["scheduler.amazonaws.com"]}
    granted = {(a, json.dumps(s["Resource"], sort_keys=True)) for s in statements(role) for a in actions(s)}
    assert granted == {
        ("states:StartExecution", json.dumps({"Ref": "SweepStateMachine"})),
        ("sqs:SendMessage", json.dumps({"Fn::GetAtt": ["SweepScheduleDeadLetterQueue", "Arn"]}, sort_keys=True)),
    }
    assert not role["Properties"].get("ManagedPolicyArns")


def test_no_role_of_the_transformed_template_lets_a_function_invoke_itself() -> None:
    res = resources()
    for function in FUNCTIONS:
        role = res[f"{function}Role"]
        every = {a for s in statements(role) for a in actions(s)}
        assert not {a for a in every if a.startswith("lambda:")}, function
        for lid, r in res.items():  # policies attached to the role from outside
            if r["Type"] == "AWS::IAM::Policy" and {"Ref": f"{function}Role"} in r["Properties"]["Roles"]:
                doc = r["Properties"]["PolicyDocument"]
                assert "lambda:" not in json.dumps(doc), (function, lid)
    invokers = [
        lid for lid, r in res.items() if r["Type"].startswith("AWS::IAM::") and "lambda:InvokeFunction" in json.dumps(r)
    ]
    assert invokers == ["SweepStateMachineRole"]


CHECKOV = ROOT / ".venv-scan" / "bin" / "checkov"
SWEEP_RESOURCES = ("SweepStateMachine", "SweepStateMachineRole", "SweepStateMachineSweep", "SweepStateMachineSweepRole")


def test_checkov_passes_the_state_machine_and_its_roles_as_cloudformation_receives_them(tmp_path: Any) -> None:
    """checkov reads no `AWS::Serverless::StateMachine` (make scan sees the template as written): its
    IAM checks run here on the transformed resources, the state machine's role and the schedule's."""
    if not CHECKOV.exists():
        pytest.skip("no .venv-scan (make scan creates it)")
    res = resources()
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {lid: res[lid] for lid in SWEEP_RESOURCES},
    }
    path = tmp_path / "sweep-state-machine.json"
    path.write_text(json.dumps(template))
    out = subprocess.run(  # noqa: S603 - our own venv's checkov
        [str(CHECKOV), "-f", str(path), "--framework", "cloudformation", "--skip-download", "--compact", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(out.stdout)
    summary = report["summary"]
    assert summary["failed"] == 0, report["results"].get("failed_checks")
    assert summary["passed"] >= 5  # the IAM checks did run on the two roles
