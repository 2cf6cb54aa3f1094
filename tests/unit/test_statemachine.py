"""SweepStateMachine (PRODUCT.md section 9): its definition file and its place in template.yaml.

The definition is read as CloudFormation hands it to Step Functions: the file's text with the
resource's DefinitionSubstitutions, then parsed. The IAM checks here are on the template as written
(tests/unit/test_template.py's evaluator); tests/unit/test_statemachine_transformed.py checks the
roles SAM generates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from ami_lifecycle_localaws.stack import ROOT

from tests.unit.test_template import FUNCTIONS, RESOURCES, TEMPLATE, Cfn, as_list, function_statements, parameters

SM = RESOURCES["SweepStateMachine"]
PROPS = SM["Properties"]
DEFINITION_FILE = ROOT / PROPS["DefinitionUri"]
RAW = DEFINITION_FILE.read_text(encoding="utf-8")
LAMBDA_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}
PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9_]*)\}")


def substituted(**values: str) -> dict[str, Any]:
    """The definition with the placeholders replaced (as CloudFormation does, textually)."""
    defaults = {"SweepFunctionArn": "arn:aws:lambda:us-east-1:111122223333:function:sweep", "Partition": "aws"}
    defaults["SweepConcurrency"] = "10"
    defaults.update(values)
    return dict(yaml.safe_load(PLACEHOLDER.sub(lambda m: defaults[m.group(1)], RAW)))


DEFINITION = substituted()


def states(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, the Map's processor's included."""
    for name, state in definition["States"].items():
        yield name, state
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from states(processor)


def walk(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, v
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v)


# ------------------------------------------------------------------ the resource


def test_the_state_machine_is_a_standard_sam_state_machine_with_its_definition_in_statemachines() -> None:
    assert SM["Type"] == "AWS::Serverless::StateMachine"
    assert PROPS["Type"] == "STANDARD"
    assert PROPS["DefinitionUri"].startswith("statemachines/") and DEFINITION_FILE.exists()
    assert "Definition" not in PROPS and "DefinitionString" not in PROPS


def test_every_placeholder_is_a_substitution_and_every_substitution_is_used() -> None:
    used = set(PLACEHOLDER.findall(RAW))
    assert used == set(PROPS["DefinitionSubstitutions"])
    assert PROPS["DefinitionSubstitutions"] == {
        "SweepFunctionArn": {"Fn::GetAtt": ["RetentionSweepFunction", "Arn"]},
        "SweepConcurrency": {"Ref": "SweepConcurrency"},
        "Partition": {"Ref": "AWS::Partition"},
    }


def test_the_file_is_valid_yaml_before_and_after_substitution() -> None:
    raw = yaml.safe_load(RAW)
    assert raw["StartAt"] in raw["States"]
    assert json.loads(json.dumps(DEFINITION)) == DEFINITION  # plain JSON data, as Step Functions takes it


def test_sweep_concurrency_is_a_bounded_number_parameter_defaulting_to_10() -> None:
    spec = TEMPLATE["Parameters"]["SweepConcurrency"]
    assert (spec["Type"], spec["Default"], spec["MinValue"]) == ("Number", 10, 1)
    assert spec["MaxValue"] <= 10_000  # a Distributed Map runs at most 10,000 children at once


@pytest.mark.parametrize("concurrency", ["1", "10", "40", "1000"])
def test_the_maps_concurrency_is_sweep_concurrency(concurrency: str) -> None:
    (sweep,) = [s for _, s in states(substituted(SweepConcurrency=concurrency)) if s["Type"] == "Map"]
    assert sweep["MaxConcurrency"] == int(concurrency)
    assert "MaxConcurrencyPath" not in sweep


# ------------------------------------------------------------------ the definition


def test_every_task_invokes_the_sweep_function_and_nothing_else() -> None:
    tasks = [(n, s) for n, s in states(DEFINITION) if s["Type"] == "Task"]
    assert {n for n, _ in tasks} == {"ListPairs", "SweepPair", "RecordThePair", "Check", "Summarize"}
    for name, task in tasks:
        assert task["Resource"] == "arn:aws:states:::lambda:invoke", name
        assert task["Parameters"]["FunctionName"] == "arn:aws:lambda:us-east-1:111122223333:function:sweep", name
        assert "Credentials" not in task, name
    assert "arn:aws:" not in RAW  # the partition is substituted, never written


def test_every_task_retries_lambda_service_errors_and_throttling_with_back_off() -> None:
    for name, task in states(DEFINITION):
        if task["Type"] != "Task":
            continue
        (retry,) = task["Retry"]
        assert set(retry["ErrorEquals"]) >= LAMBDA_ERRORS, name
        assert "States.ALL" not in retry["ErrorEquals"], name  # a function's own error is not retried blindly
        assert retry["BackoffRate"] > 1 and retry["MaxAttempts"] >= 3 and retry["IntervalSeconds"] >= 1, name
        assert retry.get("JitterStrategy") == "FULL", name
        assert 0 < task["TimeoutSeconds"] <= 960, name  # the function's 900 s and some margin


def test_a_pair_that_fails_is_caught_recorded_with_its_error_and_the_others_go_on() -> None:
    (sweep,) = [s for _, s in states(DEFINITION) if s["Type"] == "Map"]
    inner = sweep["ItemProcessor"]["States"]
    for name in ("SweepPair", "RecordThePair"):
        (catch,) = inner[name]["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"] and catch["Next"] == "PairFailed"
        assert catch["ResultPath"] == "$.failure"  # the pair's input (account, region) is kept beside it
    failed = inner["PairFailed"]
    assert failed["Type"] == "Pass" and failed.get("End") is True
    assert failed["Parameters"] == {
        "account.$": "$.account",
        "region.$": "$.region",
        "status": "failed",
        "iterations.$": "$.iterations.count",
        "failure.$": "$.failure",
    }


def test_the_map_is_distributed_with_standard_children_and_a_declared_tolerated_failure() -> None:
    (sweep,) = [s for _, s in states(DEFINITION) if s["Type"] == "Map"]
    assert sweep["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    tolerated = sweep["ToleratedFailurePercentage"]
    assert isinstance(tolerated, float) and 0.0 < tolerated < 100.0  # moto takes only a float literal
    assert sweep["ItemsPath"] == "$.pairs"
    assert "ItemBatcher" not in sweep and "ItemReader" not in sweep and "ResultWriter" not in sweep


def test_a_pair_is_invoked_again_with_its_cursor_while_it_returns_one() -> None:
    inner = next(s for _, s in states(DEFINITION) if s["Type"] == "Map")["ItemProcessor"]["States"]
    assert inner["SweepPair"]["Parameters"]["Payload.$"] == "$.request"
    assert inner["SweepPair"]["ResultSelector"] == {"report.$": "$.Payload"}
    assert inner["SweepPair"]["Next"] == "MoreOfThePair"
    (choice,) = inner["MoreOfThePair"]["Choices"]
    assert choice["Next"] == "ContinueThePair"
    conditions = {json.dumps(c, sort_keys=True) for c in choice["And"]}
    assert json.dumps({"Variable": "$.last.report.cursor", "IsPresent": True}, sort_keys=True) in conditions
    assert inner["MoreOfThePair"]["Default"] == "RecordThePair"
    # The cursor goes into the next payload as it came; the invocations are counted.
    assert inner["ContinueThePair"]["InputPath"] == "$.last.report.cursor"
    assert inner["ContinueThePair"]["ResultPath"] == "$.request.cursor"
    assert inner["CountTheInvocation"]["Next"] == "SweepPair"


def test_the_pair_payload_is_a_sweep_payload_for_that_one_pair() -> None:
    sweep = next(s for _, s in states(DEFINITION) if s["Type"] == "Map")
    request = sweep["ItemSelector"]["request"]
    assert request == {
        "accounts.$": "States.Array($$.Map.Item.Value.account)",
        "regions.$": "States.Array($$.Map.Item.Value.region)",
        "dry_run.$": "$.dry_run",
        "source": "state-machine",
        "cursor": None,
        "retire_at_most.$": "$$.Map.Item.Value.retire_at_most",
    }


def test_operations_are_the_ones_the_function_implements() -> None:
    from ami_lifecycle.services.execution import OPERATIONS

    payloads = [s["Parameters"].get("Payload") for _, s in states(DEFINITION) if s["Type"] == "Task"]
    ops = {p["operation"] for p in payloads if isinstance(p, dict)}
    assert ops == set(OPERATIONS)


def test_the_plan_phase_leads_to_the_check_and_back_to_the_map() -> None:
    top = DEFINITION["States"]
    assert DEFINITION["StartAt"] == "ListPairs" and top["ListPairs"]["Next"] == "Sweep"
    assert top["Sweep"]["Next"] == "Phase"
    (plan,) = top["Phase"]["Choices"]
    assert plan == {"Variable": "$.phase", "StringEquals": "plan", "Next": "Check"}
    assert top["Phase"]["Default"] == "Summarize"
    assert top["Check"]["Next"] == "Sweep"
    assert top["Summarize"].get("End") is True and top["Summarize"]["OutputPath"] == "$.Payload"
    # Both steps that produce a run select the same keys, every one always present in the function's answer.
    assert top["ListPairs"]["ResultSelector"] == top["Check"]["ResultSelector"]


def test_every_transition_names_a_state_and_every_state_is_reachable() -> None:
    def check(machine: dict[str, Any]) -> None:
        names = set(machine["States"])
        seen, todo = set(), [machine["StartAt"]]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            state = machine["States"][name]
            nexts = [state.get("Next"), state.get("Default")]
            nexts += [c["Next"] for c in state.get("Choices", [])] + [c["Next"] for c in state.get("Catch", [])]
            for n in filter(None, nexts):
                assert n in names, f"{name} -> {n}"
                todo.append(n)
            assert state.get("End") or state["Type"] in ("Choice", "Succeed", "Fail") or state.get("Next"), name
            if "ItemProcessor" in state:
                check(state["ItemProcessor"])
        assert seen == names

    check(DEFINITION)


def test_only_what_moto_5_2_and_aws_both_run() -> None:
    keys = {k for k, _ in walk(DEFINITION)}
    assert not keys & {"Assign", "QueryLanguage", "Arguments", "Output", "ItemBatcher", "Items", "Credentials"}
    assert "{%" not in RAW  # no JSONata expression
    # No wildcard or filter JSONPath: moto answers one match as a scalar, AWS as a list.
    for k, v in walk(DEFINITION):
        if isinstance(v, str) and k.endswith(".$"):
            assert "*" not in v and "[?" not in v and ".." not in v, (k, v)


def test_the_execution_has_a_timeout_shorter_than_a_day() -> None:
    assert 3600 <= DEFINITION["TimeoutSeconds"] < 86400


# ------------------------------------------------------------------ the schedule


def test_the_schedule_starts_the_state_machine_not_the_function() -> None:
    (schedule,) = [e["Properties"] for e in PROPS["Events"].values() if e["Type"] == "ScheduleV2"]
    assert json.loads(schedule["Input"]) == {"source": "schedule"}
    assert schedule["ScheduleExpression"] == {"Ref": "SweepSchedule"}
    assert schedule["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["SweepScheduleDeadLetterQueue", "Arn"]}}
    assert 0 <= schedule["RetryPolicy"]["MaximumRetryAttempts"] <= 185
    assert "RoleArn" not in schedule  # SAM's role for this schedule: StartExecution on this state machine only
    for function in FUNCTIONS:
        events = RESOURCES[function]["Properties"].get("Events", {})
        assert not [e for e in events.values() if e["Type"] in ("ScheduleV2", "Schedule")], function


def test_the_sweep_function_stays_manually_invocable() -> None:
    assert RESOURCES["RetentionSweepFunction"]["Properties"]["EventInvokeConfig"]["MaximumRetryAttempts"] <= 1


# ------------------------------------------------------------------ IAM


def test_no_function_may_invoke_a_function_and_no_continuation_policy_is_left() -> None:
    cfn = Cfn(parameters())
    for function in FUNCTIONS:
        actions = {a for s in function_statements(cfn, function) for a in as_list(s["Action"])}
        assert not {a for a in actions if a.lower().startswith("lambda:")}, function
    assert not [lid for lid in RESOURCES if "Continuation" in lid]
    # Nothing else grants lambda:InvokeFunction but the state machine's own role.
    for lid, res in RESOURCES.items():
        if lid == "SweepStateMachine":
            continue
        assert "lambda:InvokeFunction" not in json.dumps(res), lid


def state_machine_statements(cfn: Cfn) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for entry in PROPS["Policies"]:
        assert isinstance(entry, dict) and set(entry) == {"Statement"}  # no SAM policy template, no managed policy
        statements.extend(cfn.resolve(entry["Statement"]))
    return statements


LOG_DELIVERY = {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


def test_the_state_machine_role_invokes_only_the_sweep_function_and_writes_its_logs() -> None:
    cfn = Cfn(parameters())
    function = cfn.getatt("RetentionSweepFunction", "Arn")
    own = "arn:aws:states:us-east-1:111122223333:stateMachine:ami-lifecycle-sweep"
    own_children = "arn:aws:states:us-east-1:111122223333:execution:ami-lifecycle-sweep/*"
    allowed: dict[str, set[str]] = {}
    for s in state_machine_statements(cfn):
        assert s["Effect"] == "Allow" and "NotAction" not in s and "NotResource" not in s
        for action in as_list(s["Action"]):
            allowed.setdefault(action, set()).update(as_list(s["Resource"]))
    assert allowed.pop("lambda:InvokeFunction") == {function, f"{function}:*"}
    # The Distributed Map's children are executions of this state machine, and nothing else.
    assert allowed.pop("states:StartExecution") == {own}
    assert allowed.pop("states:DescribeExecution") == allowed.pop("states:StopExecution") == {own_children}
    # Log delivery has no resource type (the only "*").
    assert set(allowed) == LOG_DELIVERY and all(r == {"*"} for r in allowed.values())
    assert cfn.resolve(PROPS["Name"]) == "ami-lifecycle-sweep"  # the name the policy names


def test_the_state_machine_logs_to_its_own_log_group_and_is_traced() -> None:
    logging = PROPS["Logging"]
    assert logging["Level"] in ("ERROR", "ALL")
    (destination,) = logging["Destinations"]
    assert destination["CloudWatchLogsLogGroup"]["LogGroupArn"] == {"Fn::GetAtt": ["SweepStateMachineLogGroup", "Arn"]}
    group = RESOURCES["SweepStateMachineLogGroup"]["Properties"]
    assert group["RetentionInDays"] >= 365
    assert PROPS["Tracing"] == {"Enabled": True}


# ------------------------------------------------------------------ alarms and dashboard


def alarm(lid: str) -> dict[str, Any]:
    return dict(RESOURCES[lid]["Properties"])


@pytest.mark.parametrize(
    ("lid", "metric"),
    [("SweepExecutionsFailedAlarm", "ExecutionsFailed"), ("SweepExecutionsTimedOutAlarm", "ExecutionsTimedOut")],
)
def test_failed_and_timed_out_executions_alarm(lid: str, metric: str) -> None:
    props = alarm(lid)
    assert (props["Namespace"], props["MetricName"]) == ("AWS/States", metric)
    assert props["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": "SweepStateMachine"}}]
    assert (props["Threshold"], props["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_sweep_not_run_counts_successful_executions() -> None:
    props = alarm("SweepNotRunAlarm")
    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == ("AWS/States", "ExecutionsSucceeded", "Sum")
    assert props["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": "SweepStateMachine"}}]
    assert props["Period"] * props["EvaluationPeriods"] == 2 * 86400
    assert (props["Threshold"], props["ComparisonOperator"], props["TreatMissingData"]) == (
        1,
        "LessThanThreshold",
        "breaching",
    )


def test_pairs_failed_alarm_watches_the_metric_the_summary_emits() -> None:
    props = alarm("SweepPairsFailedAlarm")
    assert (props["Namespace"], props["MetricName"]) == ("AmiLifecycle", "SweepPairsFailed")
    text = (ROOT / "layers/core/ami_lifecycle/services/execution.py").read_text(encoding="utf-8")
    assert 'count("SweepPairsFailed"' in text


def test_the_dashboard_shows_the_executions_and_the_last_per_pair_results() -> None:
    cfn = Cfn(parameters())
    body = json.loads(cfn.resolve(RESOURCES["Dashboard"]["Properties"]["DashboardBody"]))
    (logs,) = [w for w in body["widgets"] if w["type"] == "log"]
    query = logs["properties"]["query"]
    assert "sweep pair result" in query and "/aws/lambda/ami-lifecycle-RetentionSweepFunction" in query
    text = (ROOT / "layers/core/ami_lifecycle/services/execution.py").read_text(encoding="utf-8")
    assert '"sweep pair result"' in text
    executions = [w for w in body["widgets"] if "ExecutionsSucceeded" in json.dumps(w)]
    assert executions and "ami-lifecycle-SweepStateMachine" in json.dumps(executions)
