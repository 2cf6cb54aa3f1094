"""The Step Functions part of the local AWS (ami_lifecycle_localaws/stepfunctions.py): moto 5.2's ASL
interpreter runs a definition, and its Lambda tasks run in-process, as the module documents.

Also pinned here: what of ASL the interpreter runs the way AWS does (the constructs
statemachines/sweep.asl.yaml uses), and where it differs, so a moto upgrade that changes either is
noticed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from ami_lifecycle_localaws import stepfunctions as sf

from tests.conftest import LocalAws

ACCOUNT = "123456789012"
FUNCTION = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:tiny"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/tiny"


@pytest.fixture(autouse=True)
def _executions() -> Iterator[None]:
    sf.unroute_all()
    sf.enable()
    yield
    sf.disable()


@pytest.fixture
def sfn(local_aws: LocalAws) -> Any:
    return local_aws.client("stepfunctions")


def task(next_or_end: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": FUNCTION, "Payload.$": "$"},
        **extra,
        **next_or_end,
    }


def run(sfn: Any, definition: dict[str, Any], payload: Any) -> dict[str, Any]:
    arn = sfn.create_state_machine(name=f"tiny-{time.monotonic_ns()}", definition=json.dumps(definition), roleArn=ROLE)[
        "stateMachineArn"
    ]
    return sf.run(sfn, arn, payload, timeout_s=60)


def test_a_lambda_task_runs_the_routed_handler_with_the_tasks_payload(sfn: Any) -> None:
    seen: list[Any] = []

    def handler(payload: Any) -> dict[str, Any]:
        seen.append(payload)
        return {"doubled": payload["n"] * 2}

    sf.route(FUNCTION, handler)
    definition = {
        "StartAt": "Double",
        "States": {"Double": task({"End": True}, ResultSelector={"value.$": "$.Payload.doubled"})},
    }
    out = run(sfn, definition, {"n": 21})
    assert out["status"] == "SUCCEEDED" and out["output"] == {"value": 42}
    assert seen == [{"n": 21}]
    (call,) = sf.calls()
    assert call.function_arn == FUNCTION and call.result == {"doubled": 42} and call.error is None
    assert call.size == len(json.dumps({"doubled": 42}))


def test_a_qualified_name_and_a_function_arn_resource_reach_the_same_handler(sfn: Any) -> None:
    sf.route(FUNCTION, lambda payload: {"got": payload})
    definition = {
        "StartAt": "Qualified",
        "States": {
            "Qualified": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": f"{FUNCTION}:$LATEST", "Payload": {"a": 1}},
                "OutputPath": "$.Payload",
                "Next": "Legacy",
            },
            # The older form: the function's ARN as the Resource, the input as the payload.
            "Legacy": {"Type": "Task", "Resource": FUNCTION, "End": True},
        },
    }
    out = run(sfn, definition, {})
    assert out["status"] == "SUCCEEDED" and out["output"] == {"got": {"got": {"a": 1}}}
    assert len(sf.calls()) == 2


def test_a_handler_that_raises_fails_the_task_with_its_error_type_as_on_aws(sfn: Any) -> None:
    def handler(payload: Any) -> Any:
        raise PermissionError(f"denied in {payload['region']}")

    sf.route(FUNCTION, handler)
    definition = {
        "StartAt": "Work",
        "States": {
            "Work": task(
                {"End": True},
                Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Failed"}],
            ),
            "Failed": {"Type": "Pass", "End": True},
        },
    }
    out = run(sfn, definition, {"region": "us-west-2"})
    assert out["status"] == "SUCCEEDED"
    failure = out["output"]["failure"]
    assert failure["Error"] == "PermissionError"
    cause = json.loads(failure["Cause"])
    assert cause["errorType"] == "PermissionError" and cause["errorMessage"] == "denied in us-west-2"
    assert sf.calls()[0].error == "PermissionError"


def test_injected_service_errors_are_lambda_errors_the_retry_sees(sfn: Any) -> None:
    sf.route(FUNCTION, lambda payload: {"ok": True})
    sf.inject_service_error(FUNCTION, "TooManyRequestsException", times=1)
    sf.inject_service_error(FUNCTION, "ServiceException", times=1)
    retry = [
        {
            "ErrorEquals": ["Lambda.TooManyRequestsException", "Lambda.ServiceException"],
            "IntervalSeconds": 1,
            "MaxAttempts": 3,
            "BackoffRate": 1.0,
        }
    ]
    out = run(sfn, {"StartAt": "Work", "States": {"Work": task({"End": True}, Retry=retry)}}, {})
    assert out["status"] == "SUCCEEDED" and out["output"]["Payload"] == {"ok": True}
    assert [c.error for c in sf.calls()] == ["Lambda.TooManyRequestsException", "Lambda.ServiceException", None]


def test_without_a_retry_a_service_error_fails_the_execution(sfn: Any) -> None:
    sf.route(FUNCTION, lambda payload: {"ok": True})
    sf.inject_service_error(FUNCTION, "TooManyRequestsException")
    out = run(sfn, {"StartAt": "Work", "States": {"Work": task({"End": True})}}, {})
    assert out["status"] == "FAILED" and out["error"] == "Lambda.TooManyRequestsException"


def test_a_state_machine_runs_a_second_execution(sfn: Any) -> None:
    # moto 5.2 alone fails the second StartExecution (its deep copy of the finished execution).
    sf.route(FUNCTION, lambda payload: {"n": payload["n"]})
    definition = {"StartAt": "Work", "States": {"Work": task({"End": True}, OutputPath="$.Payload")}}
    arn = sfn.create_state_machine(name="twice", definition=json.dumps(definition), roleArn=ROLE)["stateMachineArn"]
    assert [sf.run(sfn, arn, {"n": n})["output"] for n in (1, 2, 3)] == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_a_function_that_is_not_routed_is_left_to_moto(sfn: Any) -> None:
    # moto's Lambda backend has no such function: the task fails as AWS's would.
    out = run(sfn, {"StartAt": "Work", "States": {"Work": task({"End": True})}}, {})
    assert out["status"] == "FAILED" and out["error"] == "Lambda.ResourceNotFoundException"
    assert sf.calls() == []


def test_a_distributed_map_runs_its_handlers_one_at_a_time(sfn: Any) -> None:
    running, most = 0, 0
    lock = threading.Lock()

    def handler(payload: Any) -> dict[str, Any]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.01)
        with lock:
            running -= 1
        return {"item": payload["item"]}

    sf.route(FUNCTION, handler)
    definition = {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemSelector": {"item.$": "$$.Map.Item.Value"},
                "MaxConcurrency": 4,
                "ToleratedFailurePercentage": 10.0,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "One",
                    "States": {"One": task({"End": True}, OutputPath="$.Payload")},
                },
                "End": True,
            }
        },
    }
    out = run(sfn, definition, {"items": list(range(8))})
    assert out["status"] == "SUCCEEDED"
    assert sorted(r["item"] for r in out["output"]) == list(range(8))
    assert most == 1  # os.environ is the function's while its handler runs: one at a time


def test_a_result_over_256_kib_fails_the_task_as_on_aws_and_is_recorded(sfn: Any) -> None:
    sf.route(FUNCTION, lambda payload: {"blob": "x" * (sf.PAYLOAD_LIMIT + 10)})
    catch = [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]
    definition = {
        "StartAt": "Work",
        "States": {
            "Work": task({"End": True}, ResultSelector={"n": 1}, Catch=catch),
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    out = run(sfn, definition, {})
    # moto checks Step Functions' quota on a task's result, as AWS does (States.DataLimitExceeded).
    # (AWS documents that States.ALL does not catch it; moto's Catch does: the execution then goes
    # on. The sweep's definition is written so that no result comes near the quota, which the
    # router's record shows: the bench prints the largest.)
    assert out["status"] == "SUCCEEDED"
    history = sf.history(sfn, out["executionArn"])
    failed = [e for e in history if e["type"] == "TaskFailed"]
    assert failed and failed[0]["taskFailedEventDetails"]["error"] == "States.DataLimitExceeded"
    (big,) = sf.oversized()
    assert big.size > sf.PAYLOAD_LIMIT and sf.largest_result() == big.size


# ------------------------------------------------------------------ the ASL the sweep's definition relies on


def test_the_constructs_of_the_sweep_definition_run_in_moto(sfn: Any) -> None:
    """Distributed Map over ItemsPath with ItemSelector ($$.Map.Item.Value, States.Array,
    States.ArrayLength), a Choice loop on IsPresent/IsNull, InputPath + ResultPath into a nested
    key, States.MathAdd, ResultSelector, OutputPath."""
    calls: dict[str, int] = {}

    def handler(payload: Any) -> dict[str, Any]:
        key = payload["regions"][0]
        calls[key] = calls.get(key, 0) + 1
        if key == "slow" and calls[key] < 3:
            return {"cursor": {"step": calls[key]}}  # invoke me again
        return {"done": key, "seen_cursor": payload.get("cursor")}

    sf.route(FUNCTION, handler)
    definition = {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.pairs",
                "ItemSelector": {
                    "region.$": "$$.Map.Item.Value.region",
                    "count.$": "States.ArrayLength($.pairs)",
                    "n": {"count": 1},
                    "request": {"regions.$": "States.Array($$.Map.Item.Value.region)", "cursor": None},
                },
                "MaxConcurrency": 2,
                "ToleratedFailurePercentage": 5.0,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "Call",
                    "States": {
                        "Call": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::lambda:invoke",
                            "Parameters": {"FunctionName": FUNCTION, "Payload.$": "$.request"},
                            "ResultSelector": {"report.$": "$.Payload"},
                            "ResultPath": "$.last",
                            "Next": "More",
                        },
                        "More": {
                            "Type": "Choice",
                            "Choices": [
                                {
                                    "And": [
                                        {"Variable": "$.last.report.cursor", "IsPresent": True},
                                        {"Not": {"Variable": "$.last.report.cursor", "IsNull": True}},
                                    ],
                                    "Next": "Continue",
                                }
                            ],
                            "Default": "Done",
                        },
                        "Continue": {
                            "Type": "Pass",
                            "InputPath": "$.last.report.cursor",
                            "ResultPath": "$.request.cursor",
                            "Next": "Count",
                        },
                        "Count": {
                            "Type": "Pass",
                            "Parameters": {"count.$": "States.MathAdd($.n.count, 1)"},
                            "ResultPath": "$.n",
                            "Next": "Call",
                        },
                        "Done": {
                            "Type": "Pass",
                            "Parameters": {
                                "region.$": "$.region",
                                "invocations.$": "$.n.count",
                                "pairs.$": "$.count",
                                "report.$": "$.last.report",
                            },
                            "End": True,
                        },
                    },
                },
                "ResultPath": "$.results",
                "OutputPath": "$.results",
                "End": True,
            }
        },
    }
    out = run(sfn, definition, {"pairs": [{"region": "fast"}, {"region": "slow"}]})
    assert out["status"] == "SUCCEEDED"
    by_region = {r["region"]: r for r in out["output"]}
    assert by_region["fast"] == {
        "region": "fast",
        "invocations": 1,
        "pairs": 2,
        "report": {"done": "fast", "seen_cursor": None},
    }
    assert by_region["slow"]["invocations"] == 3
    assert by_region["slow"]["report"] == {"done": "slow", "seen_cursor": {"step": 2}}


def test_where_moto_differs_from_aws(sfn: Any) -> None:
    """A difference the sweep's definition avoids (statemachines/sweep.asl.yaml uses no wildcard or
    filter path): a JSONPath wildcard with one match is a scalar in moto, a list on AWS."""
    definition = {
        "StartAt": "Pick",
        "States": {"Pick": {"Type": "Pass", "Parameters": {"picked.$": "$.a.*.b"}, "End": True}},
    }
    out = run(sfn, definition, {"a": {"only": {"b": 1}}})
    assert out["output"] == {"picked": 1}  # AWS: [1]
