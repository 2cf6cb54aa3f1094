"""CloudFormation, as much of it as the local stack needs, evaluated for one stack instance.

`StackInstance(template, parameters, account, region, stack_name)` is one template deployed in
one (account, region), as a StackSet stack instance or `sam deploy` would deploy it:

- parameters: declared ones only, defaults applied, required ones (no `Default`) demanded,
  `AllowedValues` and `AllowedPattern` (the whole value must match, as CloudFormation checks it)
  enforced: a bad value fails the deployment, as CloudFormation fails it;
- `Conditions`, with `Fn::Equals`, `Fn::And`, `Fn::Or`, `Fn::Not` and `Condition`; a resource or
  output whose condition is false does not exist;
- the intrinsic functions `Ref` (parameters, pseudo parameters, deployed resources), `Fn::GetAtt`,
  `Fn::Sub` (both forms, `${!Literal}` included), `Fn::If`, `Fn::Split`, `Fn::Join`, `Fn::Select`,
  and `AWS::NoValue` (the key or item is dropped);
- `deploy(client)` creates the resources of the types below, in dependency order (`Ref`, `Fn::GetAtt`,
  `Fn::Sub` references and `DependsOn`), with the API calls CloudFormation makes for them, through
  `client(service)`: clients acting in the instance's account and region (moto derives the account
  from the credentials, so these are the credentials of a role in that account). Physical names
  that the template leaves to CloudFormation are `<stack>-<logical id>-<12 characters>`, as
  CloudFormation makes them (the suffix is derived from the instance, so a redeployment gets the same).

- `AWS::IAM::Role`: CreateRole (trust policy, path, description, session duration), AttachRolePolicy
  per `ManagedPolicyArns`, PutRolePolicy per `Policies`;
- `AWS::IAM::ManagedPolicy`: CreatePolicy (a `Fn::Sub` JSON string or a document), AttachRolePolicy
  per `Roles`;
- `AWS::Events::EventBus`: CreateEventBus; `AWS::Events::EventBusPolicy`: PutPermission (`Statement`
  as a policy, or `Action`/`Principal`/`Condition`);
- `AWS::Events::Rule`: PutRule (pattern or schedule, state, bus), PutTargets;
- `AWS::CloudFormation::WaitConditionHandle`: nothing.

`deploy(client, types=...)` deploys only some types (the hub template is SAM: the local stack runs its
functions itself and deploys its event wiring here); without `types`, a resource of any other type
is an error, so a template that grows a resource the local stack does not create fails loudly.
There is no rollback: a failed call raises, and what was created stays.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

NO_VALUE: Any = object()  # AWS::NoValue: the key or list item is dropped
PSEUDO = ("AWS::Region", "AWS::AccountId", "AWS::StackName", "AWS::Partition", "AWS::URLSuffix", "AWS::StackId")
_SUB = re.compile(r"\$\{([^}]*)\}")

Client = Callable[[str], Any]


class TemplateError(ValueError):
    """The template cannot be deployed as given (a bad parameter, an unknown resource type, ...)."""


@dataclass
class Physical:
    """A deployed resource: what `Ref` gives and the attributes `Fn::GetAtt` reads."""

    ref: str
    attrs: dict[str, str] = field(default_factory=dict)
    type: str = ""


def resolve_parameters(template: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, str]:
    declared: Mapping[str, Any] = template.get("Parameters", {})
    unknown = set(overrides) - set(declared)
    if unknown:
        raise TemplateError(f"unknown template parameters: {', '.join(sorted(unknown))}")
    values: dict[str, str] = {}
    for name, spec in declared.items():
        if name in overrides:
            values[name] = str(overrides[name])
        elif "Default" in spec:
            values[name] = str(spec["Default"])
        else:
            raise TemplateError(f"parameter {name} is required (it has no default)")
        allowed = spec.get("AllowedValues")
        if allowed and values[name] not in [str(a) for a in allowed]:
            raise TemplateError(f"parameter {name}={values[name]!r} is not one of {allowed}")
        pattern = spec.get("AllowedPattern")
        if pattern and re.fullmatch(str(pattern), values[name]) is None:
            why = spec.get("ConstraintDescription") or f"it must match {pattern}"
            raise TemplateError(f"parameter {name}={values[name]!r} is not allowed: {why}")
    return values


class StackInstance:
    """One template in one (account, region). See the module docstring."""

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, Any],
        *,
        account: str,
        region: str,
        stack_name: str,
        partition: str = "aws",
    ) -> None:
        self.template = template
        self.parameters = resolve_parameters(template, parameters)
        self.account, self.region, self.stack_name, self.partition = account, region, stack_name, partition
        self.resources: dict[str, Physical] = {}
        self._conditions: dict[str, bool] = {}

    # ---------------------------------------------------------------- evaluation

    @property
    def stack_id(self) -> str:
        digest = hashlib.sha1(f"{self.account}/{self.region}/{self.stack_name}".encode()).hexdigest()
        uid = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
        return f"arn:{self.partition}:cloudformation:{self.region}:{self.account}:stack/{self.stack_name}/{uid}"

    def pseudo(self, name: str) -> str:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": self.stack_id,
        }[name]

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            conditions = self.template.get("Conditions", {})
            if name not in conditions:
                raise TemplateError(f"no condition {name}")
            self._conditions[name] = bool(self.resolve(conditions[name]))
        return self._conditions[name]

    def exists(self, logical_id: str) -> bool:
        """The resource (or output) is in this instance: no condition, or a true one."""
        spec = self.template.get("Resources", {}).get(logical_id) or self.template.get("Outputs", {}).get(logical_id)
        cond = (spec or {}).get("Condition")
        return cond is None or self.condition(cond)

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.parameters:
            spec = self.template["Parameters"][name]
            value = self.parameters[name]
            return value.split(",") if spec.get("Type") == "CommaDelimitedList" else value
        if name in PSEUDO:
            return self.pseudo(name)
        if name in self.resources:
            return self.resources[name].ref
        raise KeyError(f"cannot resolve Ref {name}: not a parameter, nor a deployed resource")

    def get_att(self, logical_id: str, attr: str) -> str:
        physical = self.resources.get(logical_id)
        if physical is None or attr not in physical.attrs:
            raise KeyError(f"cannot resolve Fn::GetAtt {logical_id}.{attr}")
        return physical.attrs[attr]

    def resolve(self, value: Any) -> Any:
        """`value` with every intrinsic function evaluated (NO_VALUE items and keys dropped)."""
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref" and isinstance(arg, str):
                return self.ref(arg)
            if fn in ("Condition", "Fn::Condition") and isinstance(arg, str):  # `!Condition X` loads as Fn::Condition
                return self.condition(arg)
            if fn.startswith("Fn::"):
                return self._function(fn, arg)
        out = {}
        for k, v in value.items():
            resolved = self.resolve(v)
            if resolved is not NO_VALUE:
                out[k] = resolved
        return out

    def _function(self, fn: str, arg: Any) -> Any:
        if fn == "Fn::GetAtt":
            lid, attr = arg.split(".", 1) if isinstance(arg, str) else arg
            return self.get_att(lid, self.resolve(attr))
        if fn == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
            return self._sub(text, variables)
        if fn == "Fn::If":
            name, then, otherwise = arg
            return self.resolve(then if self.condition(name) else otherwise)
        if fn == "Fn::Equals":
            left, right = (self.resolve(a) for a in arg)
            return str(left) == str(right) if not isinstance(left, list | dict) else left == right
        if fn == "Fn::And":
            return all(self.resolve(a) for a in arg)
        if fn == "Fn::Or":
            return any(self.resolve(a) for a in arg)
        if fn == "Fn::Not":
            (inner,) = arg
            return not self.resolve(inner)
        if fn == "Fn::Split":
            delimiter, text = arg
            return str(self.resolve(text)).split(delimiter)
        if fn == "Fn::Join":
            delimiter, items = arg
            return delimiter.join(str(i) for i in self.resolve(items))
        if fn == "Fn::Select":
            index, items = arg
            return self.resolve(items)[int(self.resolve(index))]
        raise TemplateError(f"intrinsic function {fn} is not supported locally")

    def _sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                lid, attr = name.split(".", 1)
                return self.get_att(lid, attr)
            value = self.ref(name)
            if value is NO_VALUE or isinstance(value, list):
                raise TemplateError(f"Fn::Sub cannot insert ${{{name}}}")
            return str(value)

        return _SUB.sub(one, text)

    def outputs(self) -> dict[str, Any]:
        """The outputs that exist and can be resolved from what is deployed."""
        out = {}
        for name, spec in self.template.get("Outputs", {}).items():
            if not self.exists(name):
                continue
            try:
                out[name] = self.resolve(spec["Value"])
            except KeyError:
                continue  # it names something the local stack does not deploy (a function, ...)
        return out

    def physical_name(self, logical_id: str, limit: int) -> str:
        """A name CloudFormation would generate: `<stack>-<logical id>-<suffix>`, at most `limit` long."""
        digest = hashlib.sha1(f"{self.stack_id}/{logical_id}".encode()).hexdigest()
        suffix = digest[:12].upper()
        base = f"{self.stack_name}-{logical_id}"[: limit - len(suffix) - 1]
        return f"{base}-{suffix}"

    # ---------------------------------------------------------------- deployment

    def deploy(self, client: Client, types: Collection[str] | None = None) -> None:
        resources: Mapping[str, Any] = self.template.get("Resources", {})
        chosen = [
            lid
            for lid, spec in resources.items()
            if (types is None or spec.get("Type") in types) and lid not in self.resources and self.exists(lid)
        ]
        for lid in _dependency_order(resources, chosen):
            kind = resources[lid].get("Type", "")
            handler = _HANDLERS.get(kind)
            if handler is None:
                raise TemplateError(f"{lid}: resource type {kind} is not deployed locally")
            props = self.resolve(resources[lid].get("Properties", {}))
            self.resources[lid] = handler(self, client, lid, props)
            self.resources[lid].type = kind


def _references(value: Any) -> set[str]:
    """The logical ids a value refers to (Ref, Fn::GetAtt, Fn::Sub's ${X} and ${X.Attr})."""
    out: set[str] = set()
    if isinstance(value, list):
        for v in value:
            out |= _references(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k == "Ref" and isinstance(v, str):
                out.add(v)
            elif k == "Fn::GetAtt":
                out.add(v.split(".", 1)[0] if isinstance(v, str) else v[0])
            elif k == "Fn::Sub":
                text = v if isinstance(v, str) else v[0]
                out |= {m.split(".", 1)[0] for m in _SUB.findall(text) if not m.startswith("!")}
                if not isinstance(v, str):
                    out |= _references(v[1])
            else:
                out |= _references(v)
    return out


def _dependency_order(resources: Mapping[str, Any], chosen: list[str]) -> list[str]:
    wanted = set(chosen)
    deps: dict[str, set[str]] = {}
    for lid in chosen:
        spec = resources[lid]
        depends = spec.get("DependsOn", [])
        named = {depends} if isinstance(depends, str) else set(depends)
        deps[lid] = (_references(spec.get("Properties", {})) | named) & wanted - {lid}
    ordered: list[str] = []
    done: set[str] = set()
    while len(ordered) < len(chosen):
        ready = [lid for lid in chosen if lid not in done and deps[lid] <= done]
        if not ready:
            raise TemplateError(f"circular dependency among {sorted(wanted - done)}")
        for lid in ready:
            ordered.append(lid)
            done.add(lid)
    return ordered


# -------------------------------------------------------------------- the resource types


def _document(value: Any) -> str:
    """A policy document as IAM takes it: a JSON string (a `Fn::Sub` of a JSON text, or a mapping)."""
    if isinstance(value, str):
        return json.dumps(json.loads(value))  # a malformed document fails here, as CloudFormation fails
    return json.dumps(value)


def _role(stack: StackInstance, client: Client, lid: str, props: dict[str, Any]) -> Physical:
    iam = client("iam")
    name = props.get("RoleName") or stack.physical_name(lid, 64)
    kwargs: dict[str, Any] = {
        "RoleName": name,
        "Path": props.get("Path", "/"),
        "AssumeRolePolicyDocument": _document(props["AssumeRolePolicyDocument"]),
    }
    if "Description" in props:
        kwargs["Description"] = props["Description"]
    if "MaxSessionDuration" in props:
        kwargs["MaxSessionDuration"] = int(props["MaxSessionDuration"])
    role = iam.create_role(**kwargs)["Role"]
    for arn in props.get("ManagedPolicyArns", []):
        iam.attach_role_policy(RoleName=name, PolicyArn=arn)
    for policy in props.get("Policies", []):
        iam.put_role_policy(
            RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=_document(policy["PolicyDocument"])
        )
    return Physical(name, {"Arn": role["Arn"], "RoleId": role["RoleId"]})


def _managed_policy(stack: StackInstance, client: Client, lid: str, props: dict[str, Any]) -> Physical:
    iam = client("iam")
    kwargs: dict[str, Any] = {
        "PolicyName": props.get("ManagedPolicyName") or stack.physical_name(lid, 128),
        "Path": props.get("Path", "/"),
        "PolicyDocument": _document(props["PolicyDocument"]),
    }
    if "Description" in props:
        kwargs["Description"] = props["Description"]
    arn = iam.create_policy(**kwargs)["Policy"]["Arn"]
    for role in props.get("Roles", []):
        iam.attach_role_policy(RoleName=role, PolicyArn=arn)
    return Physical(arn, {"PolicyArn": arn})


def _event_bus(stack: StackInstance, client: Client, lid: str, props: dict[str, Any]) -> Physical:
    arn = client("events").create_event_bus(Name=props["Name"])["EventBusArn"]
    return Physical(props["Name"], {"Arn": arn, "Name": props["Name"]})


def _event_bus_policy(stack: StackInstance, client: Client, lid: str, props: dict[str, Any]) -> Physical:
    events = client("events")
    sid = props["StatementId"]
    bus = props.get("EventBusName", "default")
    if "Statement" in props:
        statement = {"Sid": sid, **props["Statement"]}
        events.put_permission(EventBusName=bus, Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]}))
    else:
        kwargs: dict[str, Any] = {"EventBusName": bus, "StatementId": sid, "Action": props["Action"]}
        kwargs["Principal"] = props["Principal"]
        if "Condition" in props:
            kwargs["Condition"] = props["Condition"]
        events.put_permission(**kwargs)
    return Physical(sid)


_TARGET_KEYS = ("Id", "Arn", "RoleArn", "Input", "InputPath", "InputTransformer", "RetryPolicy", "DeadLetterConfig")


def _rule(stack: StackInstance, client: Client, lid: str, props: dict[str, Any]) -> Physical:
    name = props.get("Name") or stack.physical_name(lid, 64)
    return put_rule(client("events"), name, props)


def put_rule(events: Any, name: str, props: Mapping[str, Any]) -> Physical:
    """PutRule + PutTargets for an `AWS::Events::Rule`'s (resolved) properties."""
    kwargs: dict[str, Any] = {"Name": name, "State": props.get("State", "ENABLED")}
    if "EventPattern" in props:
        pattern = props["EventPattern"]
        kwargs["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
    if "ScheduleExpression" in props:
        kwargs["ScheduleExpression"] = props["ScheduleExpression"]
    if "Description" in props:
        kwargs["Description"] = props["Description"]
    if props.get("EventBusName"):
        kwargs["EventBusName"] = props["EventBusName"]
    arn = events.put_rule(**kwargs)["RuleArn"]
    targets = [{k: t[k] for k in _TARGET_KEYS if k in t} for t in props.get("Targets", [])]
    if targets:
        bus = {"EventBusName": kwargs["EventBusName"]} if "EventBusName" in kwargs else {}
        response = events.put_targets(Rule=name, Targets=targets, **bus)
        if response.get("FailedEntryCount"):
            raise TemplateError(f"rule {name}: targets refused: {response.get('FailedEntries')}")
    return Physical(name, {"Arn": arn})


def _nothing(stack: StackInstance, client: Client, lid: str, props: dict[str, Any]) -> Physical:
    return Physical(
        f"https://cloudformation-waitcondition-{stack.region}.s3.amazonaws.com/{stack.physical_name(lid, 128)}"
    )


_HANDLERS: dict[str, Callable[[StackInstance, Client, str, dict[str, Any]], Physical]] = {
    "AWS::IAM::Role": _role,
    "AWS::IAM::ManagedPolicy": _managed_policy,
    "AWS::Events::EventBus": _event_bus,
    "AWS::Events::EventBusPolicy": _event_bus_policy,
    "AWS::Events::Rule": _rule,
    "AWS::CloudFormation::WaitConditionHandle": _nothing,
}
