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
- runs the template's state machines (`AWS::Serverless::StateMachine`): created in moto from their
  own definition file, executed by moto's Step Functions interpreter, their Lambda tasks run by this
  stack's handlers (stepfunctions.py); a `ScheduleV2` event of a state machine starts an execution.

Handlers are imported from `functions/<CodeUri>/app.py` by file path, as Lambda would load them.

Hub and spokes (PRODUCT.md section 7), deployed for real on the AWS the process points at:

- the hub: template.yaml in `account_id` and `region`; its event wiring is created in EventBridge
  (`cfn.StackInstance` resolves the template's parameters, conditions and intrinsics): `HubEventBus`
  and its policy, and one rule per `EventBridgeRule` event of each function, on the event's bus
  (`EventBusName`, else the default bus), whose target is the function's ARN;
- the spokes: `spoke.yaml` as a StackSet would deploy it, one stack instance per covered pair
  (every managed account, hub included, times every covered region; `spokes=False` deploys none,
  `deploy_spoke` deploys one, with any parameters), its parameters resolved from the hub
  (HubAccountId, HubRegion, HubEventBusArn = the hub's `HubEventBusArn` output, TagPrefix,
  SpokeRoleName) and its resources created in that account and region: the forwarding rule and the
  role EventBridge uses, and, where the template's conditions say, the spoke role and its policies.
  Another account is acted in with credentials of `sts:AssumeRole` on `ADMIN_ROLE` there (the
  organization's administrator role; moto's credentials of an assumed role act in its account);
- `put_event(event)` delivers the event as EventBridge would, following what is deployed, nothing
  else: the enabled rules of the event's (account, region) default bus whose pattern matches
  (`TestEventPattern`, the pattern read back from the deployed rule); a target that is a function of
  this stack is invoked; a target that is an event bus is followed, when EventBridge would deliver
  to it: the bus exists, the target's role exists in the rule's account and its policies allow
  `events:PutEvents` on that bus (a bus in another region needs a role), and a bus in another
  account admits the sender in its policy (principal account, or `*` with `aws:PrincipalOrgID`).
  What is not delivered is recorded in `undelivered`, with the reason. A wrong pattern, bus, target
  or role is therefore an event that does not arrive.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import importlib.util
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import yaml
from botocore.exceptions import ClientError

from . import stepfunctions
from .cfn import Physical, StackInstance, put_rule

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SPOKE_TEMPLATE = ROOT / "spoke.yaml"
DEFAULT_ACCOUNT = "123456789012"
# The role the local stack assumes to deploy into another account: the one AWS Organizations creates
# in every account it creates (motoext takes it to exist in every moto account).
ADMIN_ROLE = "OrganizationAccountAccessRole"
SPOKE_SUFFIX = "-spoke"  # the spokes' stack name: the hub's, with this suffix
MAX_HOPS = 5  # buses an event may cross (a loop of rules stops here)
# The API calls `put_event` makes to route an event (the local runner's, not a function's).
ROUTING_ACTIONS = frozenset(
    {
        "ListRules",
        "TestEventPattern",
        "ListTargetsByRule",
        "DescribeEventBus",
        "GetRole",
        "ListRolePolicies",
        "GetRolePolicy",
        "ListAttachedRolePolicies",
        "GetPolicy",
        "GetPolicyVersion",
        "DescribeOrganization",
    }
)


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
        loaded: dict[str, Any] = yaml.load(f, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    return loaded


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
    # The remaining time, when a test shortens it (LocalStack.remaining_time); else the full timeout.
    remaining: Callable[[], int] | None = None

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining() if self.remaining is not None else self.timeout_ms


@dataclass
class Invocation:
    function: str
    event: Any
    result: Any
    route: tuple[str, ...] = ()  # the ARNs of the rules the event matched on its way (put_event)


@dataclass
class Undelivered:
    """An event a rule matched, whose target EventBridge would not deliver it to."""

    event: Any
    route: tuple[str, ...]
    target: str
    reason: str


class LocalStack:
    """template.yaml, deployed onto the AWS the process points at. See the module docstring."""

    # Tests may shorten an invocation's time: (logical id, event) -> the context's remaining-time
    # function (milliseconds), or None for the function's full timeout.
    remaining_time: Callable[[str, Any], Callable[[], int] | None] | None = None

    def __init__(
        self,
        region: str = "us-east-1",
        parameters: Mapping[str, str] | None = None,
        *,
        stack_name: str = "ami-lifecycle",
        account_id: str = DEFAULT_ACCOUNT,
        template_path: Path = TEMPLATE,
        session: boto3.Session | None = None,
        spokes: bool = True,
        spoke_template_path: Path = SPOKE_TEMPLATE,
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
        # Hub and spokes (see the module docstring).
        self.hub = StackInstance(
            self.template, self.parameters, account=account_id, region=region, stack_name=stack_name
        )
        self.spoke_template = load_template(spoke_template_path)
        self.spokes: dict[tuple[str, str], StackInstance] = {}
        self.undelivered: list[Undelivered] = []
        self._clients: dict[tuple[str, str, str], Any] = {}
        self._credentials: dict[str, dict[str, str]] = {}
        self._deploy()
        self._deploy_event_wiring()
        if spokes:
            self.deploy_spokes()

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
            self.hub.resources[lid] = Physical(url, {"Arn": self._queue_arn(lid), "QueueName": name})
        # SNS topics (the digest's: its ARN reaches the sweep's environment).
        sns = self.session.client("sns", region_name=self.region)
        for lid, res in self.template["Resources"].items():
            if res.get("Type") == "AWS::SNS::Topic":
                name = f"{self.stack_name}-{lid}"
                arn = sns.create_topic(Name=name)["TopicArn"]
                self.resources[lid] = arn
                self.hub.resources[lid] = Physical(arn, {"TopicName": name})

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

    # -------------------------------------------------------------- hub and spokes

    def _deploy_event_wiring(self) -> None:
        """The hub's buses and rules in EventBridge: `HubEventBus` and its policy, then a rule per
        `EventBridgeRule` event of each function, on the event's bus, targeting the function (as SAM
        generates it: rule `<stack>-<Function><Event>-<suffix>`, target `<Function><Event>LambdaTarget`)."""
        hub = self.hub
        hub.deploy(
            self._client_in(self.account_id, self.region), ("AWS::Events::EventBus", "AWS::Events::EventBusPolicy")
        )
        events = self.client("events")
        for lid, spec in self.functions.items():
            for event_name, source in spec.events.items():
                if source.get("Type") != "EventBridgeRule":
                    continue
                props = hub.resolve(source.get("Properties", {}))
                rule_id = f"{lid}{event_name}"
                target: dict[str, Any] = {
                    "Id": (props.get("Target") or {}).get("Id") or f"{rule_id}LambdaTarget",
                    "Arn": self.function_arn(lid),
                }
                for key in ("RetryPolicy", "DeadLetterConfig"):
                    if key in props:
                        target[key] = props[key]
                rule = {
                    "EventPattern": props["Pattern"],
                    "State": props.get("State", "ENABLED"),
                    "EventBusName": props.get("EventBusName"),
                    "Targets": [target],
                }
                hub.resources[rule_id] = put_rule(events, props.get("RuleName") or hub.physical_name(rule_id, 64), rule)

    def managed_accounts(self) -> list[str]:
        """The hub's account, then ManagedAccounts (`organization`: the organization's ACTIVE accounts)."""
        value = self.parameters.get("ManagedAccounts", "")
        if value == "organization":
            org = self.client("organizations")
            others = [
                a["Id"]
                for page in org.get_paginator("list_accounts").paginate()
                for a in page["Accounts"]
                if (a.get("State") or a.get("Status")) == "ACTIVE"
            ]
        else:
            others = [a for a in value.split(",") if a]
        return list(dict.fromkeys([self.account_id, *others]))

    def covered_regions(self) -> list[str]:
        """SweepRegions, else the hub region plus ReplicaRegions."""
        sweep = [r for r in self.parameters.get("SweepRegions", "").split(",") if r]
        replicas = [r for r in self.parameters.get("ReplicaRegions", "").split(",") if r]
        return list(dict.fromkeys(sweep or [self.region, *replicas]))

    def hub_outputs(self) -> dict[str, Any]:
        return self.hub.outputs()

    def spoke_parameters(self) -> dict[str, str]:
        """spoke.yaml's parameters as the hub gives them (README: the StackSet's parameters)."""
        known = {
            **self.parameters,
            "HubAccountId": self.account_id,
            "HubRegion": self.region,
            "HubEventBusArn": str(self.hub_outputs().get("HubEventBusArn", "")),
        }
        declared = self.spoke_template.get("Parameters", {})
        return {k: v for k, v in known.items() if k in declared}

    def deploy_spokes(self) -> None:
        """spoke.yaml in every covered pair: the managed accounts times the covered regions."""
        for account in self.managed_accounts():
            for region in self.covered_regions():
                self.deploy_spoke(account, region)

    def deploy_spoke(
        self,
        account: str,
        region: str,
        parameters: Mapping[str, str] | None = None,
        *,
        stack_name: str | None = None,
    ) -> StackInstance:
        """One stack instance of spoke.yaml in (account, region), with the hub's parameters overridden
        by `parameters`, named `<hub stack>-spoke` (so that two local hubs on one moto do not collide
        on the names CloudFormation generates). Raises cfn.TemplateError (a ValueError) for a parameter
        the template refuses."""
        values = {**self.spoke_parameters(), **(parameters or {})}
        name = stack_name or f"{self.stack_name}{SPOKE_SUFFIX}"
        instance = StackInstance(self.spoke_template, values, account=account, region=region, stack_name=name)
        instance.deploy(self._client_in(account, region))
        self.spokes[(account, region)] = instance
        return instance

    def client(self, service: str, account: str | None = None, region: str | None = None) -> Any:
        """A client acting in `account` (default: the hub's) and `region` (default: the hub's); another
        account's through `sts:AssumeRole` on ADMIN_ROLE there. Cached for the stack's lifetime."""
        account = account or self.account_id
        region = region or self.region
        key = (service, account, region)
        if key not in self._clients:
            factory: Any = self.session.client  # boto3-stubs' overloads want a literal service name
            self._clients[key] = factory(service, region_name=region, **self._credentials_for(account))
        return self._clients[key]

    def _client_in(self, account: str, region: str) -> Any:
        return lambda service: self.client(service, account, region)

    def _credentials_for(self, account: str) -> dict[str, str]:
        if account == self.account_id:
            return {}
        if account not in self._credentials:
            sts = self.client("sts")
            role = f"arn:aws:iam::{account}:role/{ADMIN_ROLE}"
            c = sts.assume_role(RoleArn=role, RoleSessionName="ami-lifecycle-local-stack")["Credentials"]
            self._credentials[account] = {
                "aws_access_key_id": c["AccessKeyId"],
                "aws_secret_access_key": c["SecretAccessKey"],
                "aws_session_token": c["SessionToken"],
            }
        return self._credentials[account]

    def function_arn(self, logical_id: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name(logical_id)}"

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
            invoked_function_arn=self.function_arn(logical_id),
            timeout_ms=spec.timeout * 1000,
            remaining=self.remaining_time(logical_id, event) if self.remaining_time else None,
        )
        with self.function_env(logical_id):
            result = handler(event, context)
        self.invocations.append(Invocation(logical_id, event, result))
        return result

    # -------------------------------------------------------------- event sources

    def rule_targets(self, event: Mapping[str, Any], *, bus_arn: str | None = None) -> list[str]:
        """The functions the event would reach from its (account, region) default bus (or `bus_arn`),
        through the deployed rules (see `put_event`), without invoking them."""
        return list(dict.fromkeys(lid for lid, _ in self.deliveries(event, bus_arn=bus_arn)))

    def put_event(self, event: Mapping[str, Any], *, bus_arn: str | None = None) -> list[Invocation]:
        """Deliver an EventBridge event as EventBridge would: put on the default bus of its (account,
        region), or on `bus_arn` (PutEvents by the hub account onto one of its buses), it reaches
        every function that the deployed rules lead it to. See the module docstring."""
        out = []
        for lid, route in self.deliveries(event, bus_arn=bus_arn):
            out.append(Invocation(lid, event, self.invoke(lid, dict(event)), route))
        return out

    def default_bus_arn(self, account: str, region: str) -> str:
        return f"arn:aws:events:{region}:{account}:event-bus/default"

    def deliveries(self, event: Mapping[str, Any], *, bus_arn: str | None = None) -> list[tuple[str, tuple[str, ...]]]:
        """(function, the rules crossed) for each function the event reaches."""
        if bus_arn is None:
            account, region = str(event.get("account")), str(event.get("region"))
            if not (account.isdigit() and len(account) == 12 and region in self.session.get_available_regions("ec2")):
                self.undelivered.append(Undelivered(event, (), f"{account}/{region}", "no such account or region"))
                return []
            bus_arn = self.default_bus_arn(account, region)
        return self._follow(bus_arn, event, ())

    def _follow(
        self, bus_arn: str, event: Mapping[str, Any], route: tuple[str, ...]
    ) -> list[tuple[str, tuple[str, ...]]]:
        region, account, bus = _bus_of(bus_arn)
        events = self.client("events", account, region)
        try:
            rules = [r for page in events.get_paginator("list_rules").paginate(EventBusName=bus) for r in page["Rules"]]
        except ClientError as e:
            self.undelivered.append(Undelivered(event, route, bus_arn, _code(e)))
            return []
        functions = {self.function_arn(lid): lid for lid in self.functions}
        body = json.dumps(event)
        out: list[tuple[str, tuple[str, ...]]] = []
        for rule in rules:
            if rule.get("State") != "ENABLED" or not rule.get("EventPattern"):
                continue
            if not events.test_event_pattern(EventPattern=rule["EventPattern"], Event=body)["Result"]:
                continue
            here = (*route, rule["Arn"])
            pages = events.get_paginator("list_targets_by_rule").paginate(Rule=rule["Name"], EventBusName=bus)
            for target in (t for page in pages for t in page["Targets"]):
                arn = target["Arn"]
                if arn in functions:
                    out.append((functions[arn], here))
                elif ":event-bus/" in arn:
                    refused = self._refused_by_bus(account, region, target) if len(here) < MAX_HOPS else "too many hops"
                    if refused:
                        self.undelivered.append(Undelivered(event, here, arn, refused))
                    else:
                        out.extend(self._follow(arn, event, here))
                else:
                    self.undelivered.append(Undelivered(event, here, arn, "not a function of this stack, nor a bus"))
        return out

    def _refused_by_bus(self, account: str, region: str, target: Mapping[str, Any]) -> str | None:
        """Why EventBridge would not put an event from a rule of (account, region) on the target bus
        (None: it would)."""
        arn = str(target["Arn"])
        to_region, to_account, bus = _bus_of(arn)
        role = target.get("RoleArn")
        if role:
            refused = self._role_refuses(account, str(role), "events:PutEvents", arn)
            if refused:
                return refused
        elif to_region != region:
            return f"a target bus in another region ({to_region}) needs a role"
        try:
            described = self.client("events", to_account, to_region).describe_event_bus(Name=bus)
        except ClientError as e:
            return f"bus {arn}: {_code(e)}"
        if to_account != account and not self._bus_admits(described.get("Policy"), account):
            return f"the policy of bus {arn} does not admit account {account}"
        return None

    def _role_refuses(self, account: str, role_arn: str, action: str, resource: str) -> str | None:
        """The role must exist in the rule's account, and its policies allow `action` on `resource`
        (Allow and Deny statements without conditions are evaluated; a Deny wins)."""
        name = role_arn.rsplit("/", 1)[-1]
        if f":iam::{account}:" not in role_arn:
            return f"role {role_arn} is not in the rule's account {account}"
        iam = self.client("iam", account)
        try:
            found = iam.get_role(RoleName=name)["Role"]
        except ClientError as e:
            return f"role {role_arn}: {_code(e)}"
        if found["Arn"] != role_arn:
            return f"role {role_arn} does not exist (there is {found['Arn']})"
        documents = [
            iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"]
            for page in iam.get_paginator("list_role_policies").paginate(RoleName=name)
            for p in page["PolicyNames"]
        ]
        for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name):
            for attached in page["AttachedPolicies"]:
                version = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
                documents.append(
                    iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=version)["PolicyVersion"][
                        "Document"
                    ]
                )
        verdicts = {
            st.get("Effect")
            for doc in documents
            for st in _statements(doc)
            if "Condition" not in st
            and _matches(st.get("Action"), action)
            and _matches(st.get("Resource"), resource, case=True)
        }
        if "Deny" in verdicts or "Allow" not in verdicts:
            return f"role {role_arn} is not allowed {action} on {resource}"
        return None

    def _bus_admits(self, policy: str | None, account: str) -> bool:
        """The bus policy allows events:PutEvents to `account` (by id or root ARN, or `*` limited to
        the sender's organization by aws:PrincipalOrgID)."""
        allowed = False
        for st in _statements(json.loads(policy) if policy else {}):
            if not _matches(st.get("Action"), "events:PutEvents"):
                continue
            principal = st.get("Principal")
            named = principal.get("AWS", []) if isinstance(principal, dict) else principal
            names = [named] if isinstance(named, str) else list(named or [])
            applies = "*" in names or any(n in (account, f"arn:aws:iam::{account}:root") for n in names)
            if applies and st.get("Condition"):
                applies = self._org_condition_holds(st["Condition"], account)
            if applies and st.get("Effect") == "Deny":
                return False
            allowed = allowed or (applies and st.get("Effect") == "Allow")
        return allowed

    def _org_condition_holds(self, condition: Mapping[str, Any], account: str) -> bool:
        if set(condition) != {"StringEquals"} or set(condition["StringEquals"]) != {"aws:PrincipalOrgID"}:
            return False  # a condition the local stack does not evaluate: not admitted
        try:
            org = self.client("organizations", account).describe_organization()["Organization"]["Id"]
        except ClientError:
            return False
        wanted = condition["StringEquals"]["aws:PrincipalOrgID"]
        return org in ([wanted] if isinstance(wanted, str) else wanted)

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
        """Run a function's ScheduleV2 event once, with the template's Input. For a state machine
        (stepfunctions.py): start an execution with the Input, wait for it, return DescribeExecution."""
        if logical_id in stepfunctions.state_machines(self.template):
            return stepfunctions.fire_schedule(self, logical_id)
        schedules = self.functions[logical_id].events_of_type("ScheduleV2")
        if not schedules:
            raise KeyError(f"{logical_id} has no ScheduleV2 event")
        payload = json.loads(schedules[0].get("Input", "{}"))
        return self.invoke(logical_id, payload)

    # -------------------------------------------------------------- state machines (stepfunctions.py)

    def create_state_machine(self, logical_id: str) -> str:
        """Create the state machine from the template's own definition file (DefinitionUri, with
        DefinitionSubstitutions resolved) in moto, its Lambda tasks routed to this stack's handlers.
        Returns its ARN (also `resources[logical_id]`). Idempotent."""
        return stepfunctions.create(self, logical_id)

    def run_state_machine(self, logical_id: str, payload: Any, *, name: str | None = None) -> dict[str, Any]:
        """Start an execution (created first if need be) and wait for it: DescribeExecution, with
        `output` parsed."""
        return stepfunctions.execute(self, logical_id, payload, name=name)


def _bus_of(arn: str) -> tuple[str, str, str]:
    """(region, account, bus name) of an event bus ARN."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "events" or not parts[5].startswith("event-bus/"):
        raise ValueError(f"not an event bus ARN: {arn}")
    return parts[3], parts[4], parts[5].removeprefix("event-bus/")


def _code(error: ClientError) -> str:
    err = error.response.get("Error", {})
    return f"{err.get('Code', '')}: {err.get('Message', '')}".strip(": ")


def _statements(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, str):
        document = json.loads(document)
    statements = (document or {}).get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def _matches(patterns: Any, value: str, *, case: bool = False) -> bool:
    """IAM's wildcard match of an action (case-insensitive) or a resource against a policy's list."""
    items = [patterns] if isinstance(patterns, str) else list(patterns or [])
    if case:
        return any(fnmatch.fnmatchcase(value, p) for p in items)
    return any(fnmatch.fnmatchcase(value.lower(), p.lower()) for p in items)
