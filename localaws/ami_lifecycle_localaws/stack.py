"""A local runner for template.yaml: the functions, wired exactly as the template wires them.

`sam local invoke` needs Docker, which is not everywhere. This runner reads template.yaml and, on
whatever AWS the process points at (moto in-process, the embedded moto server, or real AWS):

- creates the queues the template declares (with their redrive policies),
- gives each function the environment the template gives it (Globals + its own, parameters
  resolved, `!Ref CopyQueue` resolved to the queue URL),
- routes an EventBridge event to every function whose `EventBridgeRule` pattern matches it, by
  asking EventBridge's own matcher (`TestEventPattern`) with the pattern read from the template,
- drains an SQS queue into the function that has it as an `SQS` event source, with the template's
  BatchSize and ReportBatchItemFailures semantics (failed items stay on the queue, the rest are
  deleted; after maxReceiveCount receives a message moves to the dead-letter queue),
- fires a `ScheduleV2` event with the template's `Input`.

Handlers are imported from `functions/<CodeUri>/app.py` by file path, as Lambda would load them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
DEFAULT_ACCOUNT = "123456789012"


# ------------------------------------------------------------------ reading the template


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that keeps CloudFormation short-form tags (`!Ref X` -> {"Ref": "X"})."""


def _cfn_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - YAML has no other node kind
        raise TypeError(f"unexpected YAML node {node!r}")
    return {name: value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        return yaml.load(f, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass


@dataclass
class FunctionSpec:
    logical_id: str
    code_uri: str
    handler: str
    timeout: int
    environment: dict[str, Any]
    events: dict[str, dict[str, Any]]

    def events_of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e["Properties"] for e in self.events.values() if e.get("Type") == kind]


def functions(template: Mapping[str, Any]) -> dict[str, FunctionSpec]:
    glob = template.get("Globals", {}).get("Function", {})
    specs = {}
    for logical_id, res in template["Resources"].items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        props = res["Properties"]
        env = dict(glob.get("Environment", {}).get("Variables", {}))
        env.update(props.get("Environment", {}).get("Variables", {}))
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            code_uri=props["CodeUri"],
            handler=props.get("Handler", glob.get("Handler", "app.lambda_handler")),
            timeout=int(props.get("Timeout", glob.get("Timeout", 3))),
            environment=env,
            events=props.get("Events", {}),
        )
    return specs


# ------------------------------------------------------------------ the local stack


@dataclass
class LocalContext:
    """The parts of the Lambda context our handlers use."""

    function_name: str
    invoked_function_arn: str
    timeout_ms: int
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return self.timeout_ms


@dataclass
class Invocation:
    function: str
    event: Any
    result: Any


class LocalStack:
    """template.yaml, deployed onto the AWS the process points at. See the module docstring."""

    def __init__(
        self,
        region: str = "us-east-1",
        parameters: Mapping[str, str] | None = None,
        *,
        stack_name: str = "ami-lifecycle",
        account_id: str = DEFAULT_ACCOUNT,
        template_path: Path = TEMPLATE,
        session: boto3.Session | None = None,
    ) -> None:
        self.region = region
        self.stack_name = stack_name
        self.account_id = account_id
        self.template = load_template(template_path)
        self.session = session or boto3.Session()
        self.parameters = self._parameters(parameters or {})
        self.functions = functions(self.template)
        self.resources: dict[str, str] = {}  # logical id -> physical id (queue URL, ...)
        self.invocations: list[Invocation] = []
        self._modules: dict[str, ModuleType] = {}
        self._deploy()

    # -------------------------------------------------------------- deploy

    def _parameters(self, overrides: Mapping[str, str]) -> dict[str, str]:
        declared = self.template.get("Parameters", {})
        unknown = set(overrides) - set(declared)
        if unknown:
            raise ValueError(f"unknown template parameters: {', '.join(sorted(unknown))}")
        values = {name: str(spec.get("Default", "")) for name, spec in declared.items()}
        values.update({k: str(v) for k, v in overrides.items()})
        for name, spec in declared.items():
            allowed = spec.get("AllowedValues")
            if allowed and values[name] not in [str(a) for a in allowed]:
                raise ValueError(f"parameter {name}={values[name]!r} is not one of {allowed}")
        return values

    def _deploy(self) -> None:
        sqs = self.session.client("sqs", region_name=self.region)
        queues = {lid: res for lid, res in self.template["Resources"].items() if res.get("Type") == "AWS::SQS::Queue"}
        # Dead-letter queues first, so redrive policies can name them.
        ordered = sorted(queues, key=lambda lid: "RedrivePolicy" in queues[lid].get("Properties", {}))
        for lid in ordered:
            props = queues[lid].get("Properties", {})
            attrs: dict[Any, str] = {}  # QueueAttributeName keys
            if "VisibilityTimeout" in props:
                attrs["VisibilityTimeout"] = str(props["VisibilityTimeout"])
            if "RedrivePolicy" in props:
                policy = props["RedrivePolicy"]
                target = self._resolve(policy["deadLetterTargetArn"])
                attrs["RedrivePolicy"] = json.dumps(
                    {"deadLetterTargetArn": target, "maxReceiveCount": str(policy["maxReceiveCount"])}
                )
            name = f"{self.stack_name}-{lid}"
            url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
            self.resources[lid] = url

    def _queue_arn(self, logical_id: str) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account_id}:{self.stack_name}-{logical_id}"

    def _resolve(self, value: Any) -> Any:
        """The intrinsic functions the template uses in environments and queue properties."""
        if isinstance(value, dict) and len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":
                if arg in self.parameters:
                    return self.parameters[arg]
                if arg in self.resources:
                    return self.resources[arg]
                if arg == "AWS::Region":
                    return self.region
                if arg == "AWS::AccountId":
                    return self.account_id
                if arg == "AWS::StackName":
                    return self.stack_name
                raise KeyError(f"cannot resolve !Ref {arg} locally")
            if fn == "Fn::GetAtt":
                lid, attr = arg
                if attr == "Arn" and self.template["Resources"][lid]["Type"] == "AWS::SQS::Queue":
                    return self._queue_arn(lid)
                if attr == "QueueName":
                    return f"{self.stack_name}-{lid}"
                raise KeyError(f"cannot resolve !GetAtt {lid}.{attr} locally")
            if fn == "Fn::Sub" and isinstance(arg, str):
                out = arg
                for name, val in {
                    **self.parameters,
                    "AWS::Region": self.region,
                    "AWS::AccountId": self.account_id,
                    "AWS::StackName": self.stack_name,
                    "AWS::Partition": "aws",
                }.items():
                    out = out.replace("${" + name + "}", val)
                return out
        return value

    def environment(self, logical_id: str) -> dict[str, str]:
        spec = self.functions[logical_id]
        env = {k: str(self._resolve(v)) for k, v in spec.environment.items()}
        env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = self.region
        env["AWS_LAMBDA_FUNCTION_NAME"] = self.function_name(logical_id)
        return env

    def function_name(self, logical_id: str) -> str:
        return f"{self.stack_name}-{logical_id}"

    def queue_url(self, logical_id: str) -> str:
        return self.resources[logical_id]

    # -------------------------------------------------------------- invoking

    def _module(self, logical_id: str) -> ModuleType:
        if logical_id not in self._modules:
            spec = self.functions[logical_id]
            module_file, _, _ = spec.handler.partition(".")
            path = ROOT / spec.code_uri / f"{module_file}.py"
            name = f"_local_{logical_id}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
            mod_spec = importlib.util.spec_from_file_location(name, path)
            if mod_spec is None or mod_spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[name] = module
            mod_spec.loader.exec_module(module)
            self._modules[logical_id] = module
        return self._modules[logical_id]

    @contextlib.contextmanager
    def function_env(self, logical_id: str) -> Iterator[None]:
        """The process runs with the function's environment (and fresh cached settings/clients) inside."""
        from ami_lifecycle import runtime

        env = self.environment(logical_id)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        runtime.reset()
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            runtime.reset()

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Invoke a function's handler with the template's environment, as Lambda would."""
        spec = self.functions[logical_id]
        module = self._module(logical_id)
        handler = getattr(module, spec.handler.partition(".")[2])
        context = LocalContext(
            function_name=self.function_name(logical_id),
            invoked_function_arn=(
                f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name(logical_id)}"
            ),
            timeout_ms=spec.timeout * 1000,
        )
        with self.function_env(logical_id):
            result = handler(event, context)
        self.invocations.append(Invocation(logical_id, event, result))
        return result

    # -------------------------------------------------------------- event sources

    def rule_targets(self, event: Mapping[str, Any]) -> list[str]:
        """The functions whose EventBridgeRule pattern (read from the template) matches the event,
        by EventBridge's own matcher."""
        events = self.session.client("events", region_name=self.region)
        matched = []
        for lid, spec in self.functions.items():
            for props in spec.events_of_type("EventBridgeRule"):
                pattern = json.dumps(props["Pattern"])
                if events.test_event_pattern(EventPattern=pattern, Event=json.dumps(event))["Result"]:
                    matched.append(lid)
                    break
        return matched

    def put_event(self, event: Mapping[str, Any]) -> list[Invocation]:
        """Deliver an EventBridge event as the default bus would: to every matching function."""
        out = []
        for lid in self.rule_targets(event):
            out.append(Invocation(lid, event, self.invoke(lid, dict(event))))
        return out

    def sqs_consumer(self, queue_logical_id: str) -> tuple[str, dict[str, Any]]:
        for lid, spec in self.functions.items():
            for props in spec.events_of_type("SQS"):
                if props["Queue"] == {"Fn::GetAtt": [queue_logical_id, "Arn"]}:
                    return lid, props
        raise KeyError(f"no function consumes {queue_logical_id}")

    def drain_queue(self, queue_logical_id: str, max_batches: int = 1000) -> list[Invocation]:
        """Poll the queue into its consumer until nothing is visible, as the SQS event source does."""
        lid, props = self.sqs_consumer(queue_logical_id)
        batch_size = int(props.get("BatchSize", 10))
        partial = "ReportBatchItemFailures" in props.get("FunctionResponseTypes", [])
        sqs = self.session.client("sqs", region_name=self.region)
        url = self.queue_url(queue_logical_id)
        out = []
        for _ in range(max_batches):
            resp = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=min(batch_size, 10),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages = resp.get("Messages", [])
            if not messages:
                break
            event = {"Records": [self._sqs_record(m, queue_logical_id) for m in messages]}
            try:
                result = self.invoke(lid, event)
            except Exception as exc:  # the whole batch fails and becomes visible again later
                out.append(Invocation(lid, event, {"error": repr(exc)}))
                continue
            failed = set()
            if partial and isinstance(result, dict):
                failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
            done = [m for m in messages if m["MessageId"] not in failed]
            if done:
                sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
                )
            out.append(Invocation(lid, event, result))
        return out

    def _sqs_record(self, message: Mapping[str, Any], queue_logical_id: str) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": dict(message.get("Attributes", {})),
            "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self._queue_arn(queue_logical_id),
            "awsRegion": self.region,
        }

    def fire_schedule(self, logical_id: str) -> Any:
        """Run a function's ScheduleV2 event once, with the template's Input."""
        schedules = self.functions[logical_id].events_of_type("ScheduleV2")
        if not schedules:
            raise KeyError(f"{logical_id} has no ScheduleV2 event")
        payload = json.loads(schedules[0].get("Input", "{}"))
        return self.invoke(logical_id, payload)
