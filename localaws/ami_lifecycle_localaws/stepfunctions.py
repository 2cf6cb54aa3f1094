"""Step Functions on the local AWS: moto 5.2's ASL interpreter, with Lambda tasks run in-process.

A documented addition to the moto extension (`motoext` is EC2's; this is Step Functions'), used by
`stack.LocalStack` to create the template's state machines from their own definition files and to
run them. Nothing here is deployed.

What moto gives
---------------
moto 5.2 stores state machines but runs them only when `stepfunctions.execute_state_machine` is on
(:func:`enable` sets it in moto's process-wide config, which in-process ``mock_aws()`` and a
``ThreadedMotoServer`` in the same process both read). It then interprets the definition with the
ASL parser it ported from LocalStack (``moto/stepfunctions/parser``), in a thread per execution.

What this module adds
---------------------
1. **Lambda tasks run the local stack's handlers.** moto's interpreter would call moto's Lambda
   backend, which needs Docker. :func:`install` replaces the two functions of
   ``moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils`` that invoke
   Lambda (``_invoke_lambda_function`` for ``arn:aws:states:::lambda:invoke`` tasks,
   ``exec_lambda_function`` for tasks whose ``Resource`` is a function ARN): a function registered
   with :func:`route` (by its ARN, as the definition names it after ``DefinitionSubstitutions``) is
   called in-process with the task's ``Payload`` (parsed from JSON, as Lambda would) and its result
   goes back through JSON, as Lambda's response does. A function that is not routed falls through
   to moto (Docker). The response has Lambda's shape (``StatusCode``, ``ExecutedVersion``,
   ``Payload``); a handler that raises gives ``FunctionError: "Unhandled"`` and the payload
   ``{"errorType", "errorMessage", "stackTrace"}``, so the task fails with ``errorType`` as its
   error name, as on AWS, and ``Retry``/``Catch`` see what they would see there.
2. **Lambda service errors on demand.** :func:`inject_service_error` makes the next invocations of a
   function fail the way the Lambda *service* fails (a ``ClientError`` with that code: the task's
   error becomes ``Lambda.<code>``, e.g. ``Lambda.TooManyRequestsException``), so the definition's
   ``Retry`` is exercised.
3. **A state machine runs more than one execution.** moto 5.2's StartExecution deep-copies the state
   machine with its past executions, whose workers hold a lock: the second execution of a state
   machine failed (HTTP 500, "cannot pickle '_thread.RLock' object"). :func:`install` lets the copy
   share the finished worker (``ExecutionWorker.__deepcopy__``).
4. **One handler at a time.** The local handlers run with the function's environment in
   ``os.environ`` (``LocalStack.function_env``), which is process-wide: invocations are serialized by
   a lock. A Map's ``MaxConcurrency`` therefore changes nothing locally (moto's threads wait for
   each other); on AWS it is the number of concurrent Lambda invocations.
5. **Payload sizes are recorded.** moto checks Step Functions' 256 KiB quota on a task's result
   and a state's input, as AWS does (``States.DataLimitExceeded``), but its ``Catch`` on
   ``States.ALL`` catches that error, which AWS documents it does not: locally such a pair would be
   recorded as failed, on AWS the child execution (and past the tolerated failures, the execution)
   fails. Every routed result's size is therefore recorded: :func:`largest_result` and
   :func:`oversized` (results over :data:`PAYLOAD_LIMIT`), which the tests and the bench read.

Also :func:`run` (start an execution with a name and wait for it) and :func:`history` (the
execution's events). moto names an execution started without ``name`` "None"; :func:`run` always
passes one.
"""

from __future__ import annotations

import json
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[2]

# Step Functions' quota on a state's input or output, and so on a task's result (256 KiB, UTF-8).
PAYLOAD_LIMIT = 262_144

Handler = Callable[[Any], Any]


@dataclass
class TaskCall:
    """One Lambda task run in-process."""

    function_arn: str
    payload: Any
    result: Any = None
    error: str | None = None  # errorType, when the handler raised; "Lambda.<code>" for injected ones
    size: int = 0  # bytes of the JSON result


@dataclass
class _Router:
    lock: threading.RLock = field(default_factory=threading.RLock)  # serializes handlers
    state: threading.Lock = field(default_factory=threading.Lock)  # guards the fields below
    routes: dict[str, Handler] = field(default_factory=dict)
    faults: dict[str, list[str]] = field(default_factory=dict)
    calls: list[TaskCall] = field(default_factory=list)


_ROUTER = _Router()
_ORIG: dict[str, Any] = {}


def enable() -> None:
    """Executions run (moto's interpreter) and routed Lambda tasks run in-process. Idempotent."""
    from moto.core.config import default_user_config

    default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = True
    install()


def disable() -> None:
    """Executions no longer run (moto's default), and every route, fault and call is forgotten."""
    from moto.core.config import default_user_config

    default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = False
    unroute_all()


def install() -> None:
    """Patch moto's Lambda invocation of the Step Functions interpreter (module docstring, 1)."""
    if _ORIG:
        return
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils as lam

    _ORIG["_invoke_lambda_function"] = lam._invoke_lambda_function
    _ORIG["exec_lambda_function"] = lam.exec_lambda_function
    lam._invoke_lambda_function = _invoke_lambda_function
    lam.exec_lambda_function = _exec_lambda_function
    # StartExecution deep-copies the state machine, its past executions included, and a finished
    # execution keeps its worker, which holds a lock: in moto 5.2 a state machine's second execution
    # fails with "cannot pickle '_thread.RLock' object" (HTTP 500). The copy may share the worker.
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    _ORIG["ExecutionWorker.__deepcopy__"] = getattr(ExecutionWorker, "__deepcopy__", None)
    ExecutionWorker.__deepcopy__ = lambda self, memo: self  # type: ignore[attr-defined]


def route(function_arn: str, handler: Handler) -> None:
    """Lambda tasks naming `function_arn` (with or without a qualifier) call `handler(payload)`."""
    with _ROUTER.state:
        _ROUTER.routes[_unqualified(function_arn)] = handler


def unroute_all() -> None:
    """Forget every route, fault and recorded call."""
    with _ROUTER.state:
        _ROUTER.routes.clear()
        _ROUTER.faults.clear()
        _ROUTER.calls.clear()


def inject_service_error(function_arn: str, code: str = "TooManyRequestsException", times: int = 1) -> None:
    """The next `times` invocations of the function fail as the Lambda service fails with `code`
    (the task's error is then `Lambda.<code>`); the handler is not called for them."""
    with _ROUTER.state:
        _ROUTER.faults.setdefault(_unqualified(function_arn), []).extend([code] * times)


def calls() -> list[TaskCall]:
    """Every routed Lambda task, in the order they ran."""
    with _ROUTER.state:
        return list(_ROUTER.calls)


def reset_calls() -> None:
    with _ROUTER.state:
        _ROUTER.calls.clear()


def largest_result() -> int:
    """The largest routed task result so far, in bytes of JSON."""
    return max((c.size for c in calls()), default=0)


def oversized() -> list[TaskCall]:
    """Routed task results over Step Functions' 256 KiB: on AWS each would be States.DataLimitExceeded."""
    return [c for c in calls() if c.size > PAYLOAD_LIMIT]


# ------------------------------------------------------------------ running executions


def run(
    client: Any,
    state_machine_arn: str,
    payload: Any,
    *,
    name: str | None = None,
    timeout_s: float = 600.0,
    poll_s: float = 0.02,
) -> dict[str, Any]:
    """Start an execution and wait until it is no longer RUNNING. Returns DescribeExecution's
    answer with `output` (and `input`) parsed from JSON."""
    name = name or f"local-{uuid.uuid4().hex[:12]}"
    arn = client.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))[
        "executionArn"
    ]
    deadline = time.monotonic() + timeout_s
    while True:
        described = dict(client.describe_execution(executionArn=arn))
        if described["status"] != "RUNNING":
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"execution {name} still RUNNING after {timeout_s:.0f} s")
        time.sleep(poll_s)
    described.pop("ResponseMetadata", None)
    for key in ("output", "input"):
        if isinstance(described.get(key), str):
            described[key] = json.loads(described[key])
    return described


def history(client: Any, execution_arn: str) -> list[dict[str, Any]]:
    """Every event of the execution's history (GetExecutionHistory, all pages)."""
    events: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
        if token:
            kwargs["nextToken"] = token
        page = client.get_execution_history(**kwargs)
        events.extend(page["events"])
        token = page.get("nextToken")
        if not token:
            return events


# ------------------------------------------------------------------ the patched invocation


def _unqualified(function: str) -> str:
    """A function ARN without its version or alias (arn:aws:lambda:r:a:function:name[:qualifier])."""
    parts = function.split(":")
    return ":".join(parts[:7]) if len(parts) > 7 and parts[5] == "function" else function


def _handler(function: str) -> Handler | None:
    with _ROUTER.state:
        return _ROUTER.routes.get(_unqualified(function))


def _service_error(function: str) -> ClientError | None:
    with _ROUTER.state:
        queued = _ROUTER.faults.get(_unqualified(function))
        if not queued:
            return None
        code = queued.pop(0)
    status = 429 if code == "TooManyRequestsException" else 500
    response: Any = {
        "Error": {"Code": code, "Message": f"injected Lambda service error {code}"},
        "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": str(uuid.uuid4())},
    }
    return ClientError(response, "Invoke")


def _call(function: str, handler: Handler, raw_payload: Any) -> dict[str, Any]:
    """Lambda's synchronous Invoke, in-process: a JSON payload in, a JSON payload out."""
    if isinstance(raw_payload, bytes | bytearray):
        raw_payload = raw_payload.decode("utf-8")
    payload = json.loads(raw_payload) if isinstance(raw_payload, str) and raw_payload else raw_payload
    record = TaskCall(_unqualified(function), payload)
    response: dict[str, Any] = {"StatusCode": 200, "ExecutedVersion": "$LATEST"}
    try:
        with _ROUTER.lock:
            result = handler(payload)
        body = json.dumps(result)
        response["Payload"] = json.loads(body)
        record.result, record.size = response["Payload"], len(body.encode("utf-8"))
    except Exception as e:  # the function failed: Lambda answers 200 with FunctionError
        error: dict[str, Any] = {
            "errorType": type(e).__name__,
            "errorMessage": str(e),
            "stackTrace": traceback.format_exception(e)[-5:],
        }
        response["FunctionError"] = "Unhandled"
        response["Payload"] = error
        record.error = type(e).__name__
    with _ROUTER.state:
        _ROUTER.calls.append(record)
    return response


def _invoke_lambda_function(parameters: dict[str, Any], region: str, state_credentials: Any) -> Any:
    function = str(parameters.get("FunctionName", ""))
    handler = _handler(function)
    if handler is None:
        return _ORIG["_invoke_lambda_function"](parameters, region, state_credentials)
    fault = _service_error(function)
    if fault is not None:
        with _ROUTER.state:
            _ROUTER.calls.append(
                TaskCall(_unqualified(function), None, error=f"Lambda.{fault.response['Error']['Code']}")
            )
        raise fault
    return _call(function, handler, parameters.get("Payload"))


def _exec_lambda_function(env: Any, parameters: dict[str, Any], region: str, account: str, credentials: Any) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils as lam

    function = str(parameters.get("FunctionName", ""))
    handler = _handler(function)
    if handler is None:
        _ORIG["exec_lambda_function"](env, parameters, region, account, credentials)
        return
    fault = _service_error(function)
    if fault is not None:
        raise fault
    response = _call(function, handler, parameters.get("Payload"))
    if response.get("FunctionError"):
        raise lam.LambdaFunctionErrorException(
            response["FunctionError"], json.dumps(response["Payload"], separators=(",", ":"))
        )
    env.stack.append(response)


# ------------------------------------------------------------------ the template's state machines


class LocalStack(Protocol):
    """What of stack.LocalStack this module uses (stack.py imports this module, not the reverse)."""

    resources: dict[str, str]

    @property
    def template(self) -> Mapping[str, Any]: ...

    @property
    def functions(self) -> Mapping[str, Any]: ...

    @property
    def stack_name(self) -> str: ...

    @property
    def account_id(self) -> str: ...

    @property
    def region(self) -> str: ...

    @property
    def session(self) -> Any: ...

    def invoke(self, logical_id: str, event: Any) -> Any: ...

    def function_name(self, logical_id: str) -> str: ...

    def _resolve(self, value: Any) -> Any: ...


@dataclass
class StateMachineSpec:
    logical_id: str
    definition_uri: str
    substitutions: dict[str, Any]
    events: dict[str, dict[str, Any]]
    name: Any  # the template's Name (an intrinsic), or None

    def events_of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e["Properties"] for e in self.events.values() if e.get("Type") == kind]


def state_machines(template: Mapping[str, Any]) -> dict[str, StateMachineSpec]:
    """The template's AWS::Serverless::StateMachine resources."""
    out = {}
    for lid, res in template.get("Resources", {}).items():
        if res.get("Type") != "AWS::Serverless::StateMachine":
            continue
        props = res.get("Properties", {})
        out[lid] = StateMachineSpec(
            lid,
            str(props.get("DefinitionUri", "")),
            dict(props.get("DefinitionSubstitutions", {})),
            dict(props.get("Events", {})),
            props.get("Name"),
        )
    return out


_PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9_]*)\}")


def definition(stack: LocalStack, logical_id: str) -> dict[str, Any]:
    """The definition as CloudFormation would hand it to Step Functions: the file's text with each
    `${Name}` of DefinitionSubstitutions replaced by its resolved value, then parsed (JSON or YAML).
    A placeholder the substitutions do not define is an error (CloudFormation leaves it, and Step
    Functions refuses the definition)."""
    spec = state_machines(stack.template)[logical_id]
    text = (ROOT / spec.definition_uri).read_text(encoding="utf-8")
    values = {name: str(_resolve(stack, value)) for name, value in spec.substitutions.items()}

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"{spec.definition_uri}: ${{{name}}} is not in {logical_id}'s DefinitionSubstitutions")
        return values[name]

    parsed = yaml.safe_load(_PLACEHOLDER.sub(one, text))
    if not isinstance(parsed, dict):
        raise ValueError(f"{spec.definition_uri} is not an ASL document")
    return parsed


def create(stack: LocalStack, logical_id: str) -> str:
    """Create the state machine in moto (module docstring) and route its Lambda tasks to the stack's
    handlers. Idempotent: returns the ARN of the one already created."""
    enable()
    if logical_id in stack.resources:
        return stack.resources[logical_id]
    for function in stack.functions:
        route(function_arn(stack, function), _invoker(stack, function))
    spec = state_machines(stack.template)[logical_id]
    name = str(_resolve(stack, spec.name)) if spec.name else f"{stack.stack_name}-{logical_id}"
    client = stack.session.client("stepfunctions", region_name=stack.region)
    arn = client.create_state_machine(
        name=name,
        definition=json.dumps(definition(stack, logical_id)),
        roleArn=f"arn:aws:iam::{stack.account_id}:role/{stack.stack_name}-{logical_id}Role",
        type="STANDARD",
    )["stateMachineArn"]
    stack.resources[logical_id] = arn
    return str(arn)


def execute(stack: LocalStack, logical_id: str, payload: Any, *, name: str | None = None) -> dict[str, Any]:
    """Start an execution of the stack's state machine and wait for it (see :func:`run`)."""
    arn = create(stack, logical_id)
    client = stack.session.client("stepfunctions", region_name=stack.region)
    return run(client, arn, payload, name=name)


def fire_schedule(stack: LocalStack, logical_id: str) -> dict[str, Any]:
    """The state machine's ScheduleV2 event, once: an execution with the schedule's Input."""
    schedules = state_machines(stack.template)[logical_id].events_of_type("ScheduleV2")
    if not schedules:
        raise KeyError(f"{logical_id} has no ScheduleV2 event")
    return execute(stack, logical_id, json.loads(schedules[0].get("Input", "{}")))


def function_arn(stack: LocalStack, function: str) -> str:
    return f"arn:aws:lambda:{stack.region}:{stack.account_id}:function:{stack.function_name(function)}"


def _invoker(stack: LocalStack, function: str) -> Handler:
    return lambda payload: stack.invoke(function, payload)


def _resolve(stack: LocalStack, value: Any) -> Any:
    """The stack's own resolution, plus what a substitution names: a function's ARN or name, the
    partition."""
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Fn::GetAtt":
            lid, attr = arg if isinstance(arg, list) else str(arg).split(".", 1)
            if attr == "Arn" and lid in stack.functions:
                return function_arn(stack, lid)
        if fn == "Ref":
            if arg in stack.functions:
                return stack.function_name(arg)
            if arg == "AWS::Partition":
                return "aws"
    return stack._resolve(value)
