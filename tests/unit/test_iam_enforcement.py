"""IAM, evaluated: what each function's role may really do to which image or snapshot.

The roles' statements are template.yaml's, resolved for a stack (test_template: Cfn,
function_statements) with the default tag prefix and with another one. A small evaluator of
IAM's identity-policy logic then decides concrete requests: an explicit Deny wins over any Allow;
an Allow needs its Action and Resource to match and every condition to hold; anything else is an
implicit deny. It implements the condition operators the roles use, with IAM's semantics for keys
missing from the request, and raises on anything else rather than guess.

Not modelled: SCPs, permission boundaries, session and resource policies (none here), and the AWS
managed policies and SAM policy templates the roles also hold (logs, X-Ray, SQS: no EC2 action).
EC2 authorizes every resource of a call separately (CreateTags on an image and its snapshots is
one check per ARN); `call` does the same and allows the call only if every resource is allowed.
Which condition keys EC2 puts in the context of each action follows the service authorization
reference: CreateTags/DeleteTags have aws:ResourceTag, aws:RequestTag and aws:TagKeys; CopyImage
has aws:RequestTag and aws:TagKeys but no aws:ResourceTag.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import pytest
from ami_lifecycle.domain.adoption import decide_adoption, foreign_manager
from ami_lifecycle.domain.model import Image
from ami_lifecycle.domain.replication import plan_copies
from ami_lifecycle.domain.settings import Settings
from ami_lifecycle.domain.tags import FOREIGN_MANAGER_TAGS, parse_bool

from tests.unit.test_template import (
    ACCOUNT,
    FUNCTIONS,
    KEY_WEST,
    Cfn,
    as_list,
    function_statements,
    managed_policy_document,
    parameters,
)

ALLOW, EXPLICIT, IMPLICIT = "allow", "explicit-deny", "implicit-deny"
EVENTS, REPLICATOR, SWEEP, BACKFILL = FUNCTIONS
EAST, WEST = "us-east-1", "us-west-2"
OTHER_ACCOUNT = "444455556666"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
Statement = dict[str, Any]
ContextValue = str | tuple[str, ...]


# ------------------------------------------------------------------ the evaluator


def glob(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's wildcards: `*` any run of characters, `?` one character; nothing else is special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def canonical_key(key: str) -> str:
    """Condition key names are case-insensitive; the tag key after `aws:ResourceTag/` is not (EC2
    tag keys are case-sensitive)."""
    name, slash, rest = key.partition("/")
    return name.lower() + slash + rest


def _present(value: ContextValue | None) -> bool:
    return value is not None and value != ()


def _single(context_value: ContextValue | None, key: str) -> str | None:
    if isinstance(context_value, tuple):
        raise NotImplementedError(f"single-valued operator on multivalued key {key}")
    return context_value


def _string_equals(v: ContextValue | None, key: str, wanted: Sequence[str]) -> bool:
    value = _single(v, key)
    return value is not None and value in wanted


def _string_equals_ignore_case(v: ContextValue | None, key: str, wanted: Sequence[str]) -> bool:
    value = _single(v, key)
    return value is not None and value.casefold() in {w.casefold() for w in wanted}


def _string_like(v: ContextValue | None, key: str, wanted: Sequence[str]) -> bool:
    value = _single(v, key)
    return value is not None and any(glob(w, value) for w in wanted)


def _null(v: ContextValue | None, key: str, wanted: Sequence[str]) -> bool:
    # Null "true": the key is absent; "false": it is present (an empty tag-key set counts as absent).
    (flag,) = wanted
    assert flag in ("true", "false"), flag
    return _present(v) is (flag == "false")


def _values(v: ContextValue | None) -> tuple[str, ...]:
    return () if v is None else v if isinstance(v, tuple) else (v,)


def _for_all_values_string_like(v: ContextValue | None, key: str, wanted: Sequence[str]) -> bool:
    # Every value in the request matches: vacuously true over a missing or empty set.
    return all(any(glob(w, value) for w in wanted) for value in _values(v))


def _for_any_value_string_equals(v: ContextValue | None, key: str, wanted: Sequence[str]) -> bool:
    # At least one value in the request matches: false over a missing or empty set.
    return any(value in wanted for value in _values(v))


def _bool_if_exists(v: ContextValue | None, key: str, wanted: Sequence[str]) -> bool:
    value = _single(v, key)
    return value is None or value.lower() in {w.lower() for w in wanted}


OPERATORS: dict[str, Callable[[ContextValue | None, str, Sequence[str]], bool]] = {
    "StringEquals": _string_equals,
    "StringEqualsIgnoreCase": _string_equals_ignore_case,
    "StringLike": _string_like,
    "Null": _null,
    "ForAllValues:StringLike": _for_all_values_string_like,
    "ForAnyValue:StringEquals": _for_any_value_string_equals,
    "BoolIfExists": _bool_if_exists,
}
ELEMENTS = {"Sid", "Effect", "Action", "Resource", "Condition"}


def conditions_hold(condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, ContextValue]) -> bool:
    """Operators are ANDed, keys within an operator are ANDed, values of one key are ORed."""
    ctx = {canonical_key(k): v for k, v in context.items()}
    for operator, keys in condition.items():
        if operator not in OPERATORS:
            raise NotImplementedError(f"condition operator {operator}")
        for key, wanted in keys.items():
            if not OPERATORS[operator](ctx.get(canonical_key(key)), key, [str(w) for w in as_list(wanted)]):
                return False
    return True


def statement_applies(statement: Statement, action: str, resource: str, context: Mapping[str, ContextValue]) -> bool:
    unknown = set(statement) - ELEMENTS
    if unknown:
        raise NotImplementedError(f"policy elements {sorted(unknown)}")
    return (
        any(glob(a, action, ignore_case=True) for a in as_list(statement["Action"]))
        and any(glob(r, resource) for r in as_list(statement["Resource"]))
        and conditions_hold(statement.get("Condition", {}), context)
    )


def evaluate(statements: Iterable[Statement], action: str, resource: str, context: Mapping[str, ContextValue]) -> str:
    applicable = [s for s in statements if statement_applies(s, action, resource, context)]
    if any(s["Effect"] == "Deny" for s in applicable):
        return EXPLICIT
    if any(s["Effect"] == "Allow" for s in applicable):
        return ALLOW
    return IMPLICIT


# ------------------------------------------------------------------ requests, as EC2 authorizes them


@dataclass(frozen=True)
class Res:
    """A resource of a call and the tags it carries (none for one being created)."""

    arn: str
    tags: Mapping[str, str] = field(default_factory=dict)


def image(tags: Mapping[str, str] | None = None, image_id: str = "ami-0123456789abcdef0", region: str = EAST) -> Res:
    return Res(f"arn:aws:ec2:{region}::image/{image_id}", dict(tags or {}))


def snapshot(
    tags: Mapping[str, str] | None = None, snapshot_id: str = "snap-0123456789abcdef0", region: str = EAST
) -> Res:
    return Res(f"arn:aws:ec2:{region}::snapshot/{snapshot_id}", dict(tags or {}))


def report(account: str = ACCOUNT, region: str = EAST) -> Res:
    return Res(f"arn:aws:ec2:{region}:{account}:image-usage-report/amiur-0123456789abcdef0")


EVERYTHING = Res("*")


@cache
def role(function: str, prefix: str) -> tuple[Statement, ...]:
    """Every statement the function's role holds, for a stack with this tag prefix (KMS keys
    configured, so the Replicator's conditional KMS statement is evaluated too)."""
    cfn = Cfn(parameters(TagPrefix=prefix, ReplicaKmsKeys=f"{WEST}={KEY_WEST}"))
    return tuple(function_statements(cfn, function))


def call(
    function: str,
    prefix: str,
    action: str,
    resources: Sequence[Res],
    *,
    tags: Mapping[str, str] | None = None,
    keys: Sequence[str] | None = None,
    extra: Mapping[str, ContextValue] | None = None,
) -> str:
    """One API call: `tags` are the request's tags (CreateTags, TagSpecifications), `keys` the tag
    keys of a DeleteTags (None: no Tags parameter, which deletes every tag)."""
    request: dict[str, ContextValue] = dict(extra or {})
    if tags is not None:
        request.update({f"aws:RequestTag/{k}": v for k, v in tags.items()})
        request["aws:TagKeys"] = tuple(tags)
    if keys is not None:
        request["aws:TagKeys"] = tuple(keys)
    resource_tags = action not in ("ec2:CopyImage",)  # CopyImage has no aws:ResourceTag key
    decisions = []
    for res in resources:
        context = dict(request)
        if resource_tags:
            context.update({f"aws:ResourceTag/{k}": v for k, v in res.tags.items()})
        decisions.append(evaluate(role(function, prefix), action, res.arn, context))
    if all(d == ALLOW for d in decisions):
        return ALLOW
    return EXPLICIT if EXPLICIT in decisions else IMPLICIT


def every_role(prefix: str, action: str, resources: Sequence[Res], **kw: Any) -> dict[str, str]:
    return {function: call(function, prefix, action, resources, **kw) for function in FUNCTIONS}


def only(*allowed: str) -> dict[str, str]:
    return {function: ALLOW if function in allowed else IMPLICIT for function in FUNCTIONS}


# Who may write lifecycle tags: the event path, the backfill, and the sweep (live tags: a changed
# P:retention rewrites the tool's P:expires-at).
TAGGERS = (EVENTS, BACKFILL, SWEEP)
ALL_DENIED = dict.fromkeys(FUNCTIONS, EXPLICIT)


@pytest.fixture(params=["ami-lifecycle", "acme"], ids=["default-prefix", "prefix-acme"])
def p(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def lifecycle(p: str, **extra: str) -> dict[str, str]:
    """The tags an adoption writes (tagging.py: one CreateTags for the image and its snapshots)."""
    return {
        f"{p}:managed": "true",
        f"{p}:retention": "90d",
        f"{p}:expires-at": "2027-02-23T09:00:00Z",
        f"{p}:family": "web",
        f"{p}:keep-latest": "1",
        **{f"{p}:{k.replace('_', '-')}": v for k, v in extra.items()},
    }


def managed(p: str, **more: str) -> dict[str, str]:
    return {f"{p}:managed": "true", f"{p}:retention": "90d", **more}


def code_image(tags: Mapping[str, str]) -> Image:
    return Image(
        "ami-0123456789abcdef0",
        EAST,
        "web-2026-11-25-10",
        "available",
        NOW - timedelta(hours=1),
        owner_id=ACCOUNT,
        tags=dict(tags),
        snapshot_ids=("snap-0123456789abcdef0",),
    )


# ------------------------------------------------------------------ the evaluator itself


def test_an_explicit_deny_wins_over_an_allow() -> None:
    statements = [
        {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "ec2:DeleteSnapshot", "Resource": "arn:aws:ec2:*::snapshot/*"},
    ]
    assert evaluate(statements, "ec2:DeleteSnapshot", snapshot().arn, {}) == EXPLICIT
    assert evaluate(statements, "ec2:DeregisterImage", image().arn, {}) == ALLOW
    assert evaluate(statements[1:], "ec2:DeregisterImage", image().arn, {}) == IMPLICIT
    # Action names match case-insensitively, ARNs case-sensitively.
    assert evaluate(statements, "EC2:deletesnapshot", snapshot().arn, {}) == EXPLICIT
    assert evaluate(statements[1:], "ec2:DeleteSnapshot", "arn:aws:ec2:us-east-1::SNAPSHOT/snap-1", {}) == IMPLICIT


def test_missing_keys_follow_iam() -> None:
    # Plain operators: a missing key never matches.
    assert not conditions_hold({"StringEquals": {"aws:ResourceTag/x": "true"}}, {})
    assert not conditions_hold({"StringEqualsIgnoreCase": {"aws:ResourceTag/x": ["false"]}}, {})
    assert not conditions_hold({"StringLike": {"kms:ViaService": "ec2.*"}}, {})
    # ForAllValues over a missing (or empty) set holds vacuously: hence `Null aws:TagKeys false`.
    assert conditions_hold({"ForAllValues:StringLike": {"aws:TagKeys": ["p:*"]}}, {})
    assert conditions_hold({"ForAllValues:StringLike": {"aws:TagKeys": ["p:*"]}}, {"aws:TagKeys": ()})
    assert not conditions_hold({"Null": {"aws:TagKeys": "false"}}, {"aws:TagKeys": ()})
    assert conditions_hold({"Null": {"aws:TagKeys": "true"}}, {})
    # ForAnyValue over a missing set is false.
    assert not conditions_hold({"ForAnyValue:StringEquals": {"aws:TagKeys": ["p:hold"]}}, {})
    # ...IfExists holds when the key is missing.
    assert conditions_hold({"BoolIfExists": {"kms:GrantIsForAWSResource": "true"}}, {})
    grant = {"BoolIfExists": {"kms:GrantIsForAWSResource": "true"}}
    assert not conditions_hold(grant, {"kms:GrantIsForAWSResource": "false"})


def test_condition_values_keys_and_operators_combine_as_in_iam() -> None:
    ctx: dict[str, ContextValue] = {"aws:ResourceTag/p:managed": "FALSE", "aws:TagKeys": ("p:a", "p:hold")}
    # Values of one key are ORed; case folding only for ...IgnoreCase.
    assert conditions_hold({"StringEqualsIgnoreCase": {"aws:ResourceTag/p:managed": ["no", "false"]}}, ctx)
    assert not conditions_hold({"StringEquals": {"aws:ResourceTag/p:managed": ["no", "false"]}}, ctx)
    # Keys and operators are ANDed.
    both = {"StringEqualsIgnoreCase": {"aws:ResourceTag/p:managed": "false"}, "Null": {"aws:ResourceTag/q": "false"}}
    assert not conditions_hold(both, ctx)
    assert conditions_hold(both, {**ctx, "aws:ResourceTag/q": ""})
    # Set operators: every value / any value.
    assert not conditions_hold({"ForAllValues:StringLike": {"aws:TagKeys": ["p:a"]}}, ctx)
    assert conditions_hold({"ForAllValues:StringLike": {"aws:TagKeys": ["p:*"]}}, ctx)
    assert conditions_hold({"ForAnyValue:StringEquals": {"aws:TagKeys": ["p:hold"]}}, ctx)
    assert not conditions_hold({"ForAnyValue:StringEquals": {"aws:TagKeys": ["p:Hold"]}}, ctx)
    # Condition key names are case-insensitive, tag keys are not.
    assert conditions_hold({"StringEquals": {"AWS:RESOURCETAG/p:managed": "FALSE"}}, ctx)
    assert not conditions_hold({"StringEquals": {"aws:ResourceTag/P:MANAGED": "FALSE"}}, ctx)


def test_what_the_evaluator_does_not_know_it_refuses_to_guess() -> None:
    with pytest.raises(NotImplementedError):
        conditions_hold({"DateGreaterThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}}, {})
    with pytest.raises(NotImplementedError):
        statement_applies({"Effect": "Allow", "NotAction": "ec2:*", "Resource": "*"}, "s3:GetObject", "*", {})
    with pytest.raises(NotImplementedError):
        conditions_hold({"StringEquals": {"aws:TagKeys": "p:hold"}}, {"aws:TagKeys": ("p:hold",)})


def test_the_evaluator_knows_every_operator_the_roles_use(p: str) -> None:
    used = {op for f in FUNCTIONS for s in role(f, p) for op in s.get("Condition", {})}
    assert used == set(OPERATORS)
    assert all(set(s) <= ELEMENTS for f in FUNCTIONS for s in role(f, p))


# ------------------------------------------------------------------ adoption


def test_adopting_an_untagged_image_and_its_snapshots(p: str) -> None:
    both = [image({"Name": "web", "Team": "platform"}), snapshot()]
    assert every_role(p, "ec2:CreateTags", both, tags=lifecycle(p)) == only(*TAGGERS)


@pytest.mark.parametrize("spelling", ["TRUE", "True", "yes", "1"])
def test_p_managed_spelled_otherwise_true_is_rewritten_to_true(p: str, spelling: str) -> None:
    assert parse_bool(spelling) is True
    target = [image({f"{p}:managed": spelling})]
    assert every_role(p, "ec2:CreateTags", target, tags={f"{p}:managed": "true"}) == only(*TAGGERS)


def test_adopting_a_held_image_without_writing_the_hold(p: str) -> None:
    held = [image({f"{p}:hold": "true"})]
    assert every_role(p, "ec2:CreateTags", held, tags=lifecycle(p)) == only(*TAGGERS)


def test_another_stacks_prefix_is_not_this_stacks_opt_out() -> None:
    # A stack with prefix acme reads only acme: tags; ami-lifecycle:managed=false is not its opt-out...
    other = [image({"ami-lifecycle:managed": "false"})]
    assert every_role("acme", "ec2:CreateTags", other, tags=lifecycle("acme")) == only(*TAGGERS)
    # ...and it may not write another prefix's tags.
    untagged = [image()]
    assert every_role("acme", "ec2:CreateTags", untagged, tags=lifecycle("ami-lifecycle")) == only()


# ------------------------------------------------------------------ opted out: P:managed false


OPT_OUT = ["false", "False", "FALSE", "no", "No", "NO", "0"]


@pytest.mark.parametrize("value", OPT_OUT)
def test_no_role_may_adopt_an_image_opted_out(p: str, value: str) -> None:
    assert parse_bool(value) is False  # what the code reads as false, IAM denies on
    for target in ([image({f"{p}:managed": value})], [image(), snapshot({f"{p}:managed": value})]):
        assert every_role(p, "ec2:CreateTags", target, tags=lifecycle(p)) == ALL_DENIED
        assert every_role(p, "ec2:CreateTags", target, tags={f"{p}:managed": "true"}) == ALL_DENIED


@pytest.mark.parametrize("value", ["false", "No", "0"])
def test_no_role_may_retag_deprecate_or_retire_an_image_opted_out(p: str, value: str) -> None:
    opted_out = {f"{p}:managed": value, f"{p}:retention": "1d", f"{p}:error": "x"}
    img, snap = image(opted_out), snapshot(opted_out)
    assert every_role(p, "ec2:CreateTags", [img], tags={f"{p}:copies": "us-west-2=ami-1"}) == ALL_DENIED
    assert every_role(p, "ec2:DeleteTags", [img], keys=[f"{p}:error"]) == ALL_DENIED
    assert every_role(p, "ec2:DeleteTags", [snap], keys=[f"{p}:error"]) == ALL_DENIED
    for action in ("ec2:DeregisterImage", "ec2:EnableImageDeprecation", "ec2:DisableImage", "ec2:EnableImage"):
        assert every_role(p, action, [img]) == ALL_DENIED, action
    assert every_role(p, "ec2:DeleteSnapshot", [snap]) == ALL_DENIED


# ------------------------------------------------------------------ other lifecycle managers

MARKERS = {
    "aws-backup": {"aws:backup:source-resource": "arn:aws:ec2:us-east-1:111122223333:instance/i-0abc"},
    "dlm": {"aws:dlm:lifecycle-policy-id": "policy-0123456789abcdef0"},
    "image-builder": {"CreatedBy": "EC2 Image Builder"},
}


def test_the_markers_denied_are_the_markers_the_code_knows(p: str) -> None:
    """A marker added to the code (tags.FOREIGN_MANAGER_TAGS) without its Deny fails here."""
    denied: dict[str, str | None] = {}
    for statement in managed_policy_document(Cfn(parameters(TagPrefix=p)), "ProtectImagesPolicy")["Statement"]:
        for operator, keys in statement["Condition"].items():
            for key, value in keys.items():
                if key.startswith("aws:ResourceTag/") and not key.startswith(f"aws:ResourceTag/{p}:"):
                    # Null "false": the tag is there, whatever its value.
                    assert operator == "StringEquals" or (operator, value) == ("Null", "false"), statement["Sid"]
                    denied[key.removeprefix("aws:ResourceTag/")] = None if operator == "Null" else value
    assert denied == FOREIGN_MANAGER_TAGS
    assert {k for marker in MARKERS.values() for k in marker} == set(FOREIGN_MANAGER_TAGS)


@pytest.mark.parametrize("marker", MARKERS.values(), ids=list(MARKERS))
def test_no_role_may_adopt_another_managers_image_or_snapshot(p: str, marker: dict[str, str]) -> None:
    assert foreign_manager(code_image(marker)) is not None  # the code refuses it too
    for target in ([image(marker)], [image(), snapshot(marker)]):
        assert every_role(p, "ec2:CreateTags", target, tags=lifecycle(p)) == ALL_DENIED


@pytest.mark.parametrize("marker", MARKERS.values(), ids=list(MARKERS))
def test_another_managers_image_stays_out_of_reach_even_tagged_managed(p: str, marker: dict[str, str]) -> None:
    """A user tagged P:managed=true on it: the Allows match, the Deny still wins."""
    tags = {**managed(p, **{f"{p}:expires-at": "2026-01-01T00:00:00Z"}), **marker}
    img, snap = image(tags), snapshot(tags)
    assert every_role(p, "ec2:CreateTags", [img], tags={f"{p}:copies": "us-west-2=ami-1"}) == ALL_DENIED
    assert every_role(p, "ec2:DeleteTags", [img, snap], keys=[f"{p}:error"]) == ALL_DENIED
    for action in ("ec2:DeregisterImage", "ec2:EnableImageDeprecation", "ec2:DisableImage", "ec2:EnableImage"):
        assert every_role(p, action, [img]) == ALL_DENIED, action
    assert every_role(p, "ec2:DeleteSnapshot", [snap]) == ALL_DENIED


@pytest.mark.parametrize("created_by", ["Packer", "ec2 image builder", "EC2 Image Builder "])
def test_a_created_by_tag_of_anything_else_is_not_a_marker(p: str, created_by: str) -> None:
    # Same rule as the code: exactly `EC2 Image Builder`.
    tag = {"CreatedBy": created_by}
    assert foreign_manager(code_image(tag)) is None
    assert every_role(p, "ec2:CreateTags", [image(tag)], tags=lifecycle(p)) == only(*TAGGERS)
    assert every_role(p, "ec2:DeregisterImage", [image({**managed(p), **tag})]) == only(SWEEP, BACKFILL)


# ------------------------------------------------------------------ P:hold


def test_no_role_may_create_change_or_delete_a_hold(p: str) -> None:
    held = managed(p, **{f"{p}:hold": "true"})
    for target in ([image(managed(p))], [image(held)], [snapshot(held)], [image(), snapshot()]):
        assert every_role(p, "ec2:CreateTags", target, tags={f"{p}:hold": "true"}) == ALL_DENIED
        assert every_role(p, "ec2:CreateTags", target, tags={f"{p}:hold": "false"}) == ALL_DENIED
        assert every_role(p, "ec2:CreateTags", target, tags={f"{p}:error": "x", f"{p}:hold": "true"}) == ALL_DENIED
        assert every_role(p, "ec2:DeleteTags", target, keys=[f"{p}:hold"]) == ALL_DENIED
        assert every_role(p, "ec2:DeleteTags", target, keys=[f"{p}:error", f"{p}:hold"]) == ALL_DENIED
    # Not in an adoption, not on a copy at creation either.
    assert every_role(p, "ec2:CreateTags", [image()], tags=lifecycle(p, hold="true")) == ALL_DENIED
    new_copy = [image(image_id="ami-0fedcba9876543210", region=WEST), snapshot(region=WEST)]
    at_creation = {"ec2:CreateAction": "CopyImage"}
    copy_tags = {**lifecycle(p, hold="true"), f"{p}:source-image": "ami-0123456789abcdef0"}
    assert every_role(p, "ec2:CreateTags", new_copy, tags=copy_tags, extra=at_creation) == ALL_DENIED


# ------------------------------------------------------------------ managed images: what still works


def test_retagging_a_managed_image_and_its_snapshots(p: str) -> None:
    both = [image(managed(p, **{f"{p}:error": "bad retention"})), snapshot(managed(p))]
    assert every_role(p, "ec2:DeleteTags", both, keys=[f"{p}:error"]) == only(*TAGGERS)
    # P:error and the copy record on the source: the replicator may write them too.
    assert every_role(p, "ec2:CreateTags", both, tags={f"{p}:error": "x"}) == only(*TAGGERS, REPLICATOR)
    record = {f"{p}:copies": "us-west-2=ami-0fedcba9876543210"}
    assert every_role(p, "ec2:CreateTags", both, tags=record) == only(*TAGGERS, REPLICATOR)
    # The deprecation time: every role that tags or retires.
    assert every_role(p, "ec2:EnableImageDeprecation", both[:1]) == only(*FUNCTIONS)


def test_retiring_managed_images_and_snapshots(p: str) -> None:
    assert every_role(p, "ec2:DeregisterImage", [image(managed(p))]) == only(SWEEP, BACKFILL)
    assert every_role(p, "ec2:DeleteSnapshot", [snapshot(managed(p))]) == only(SWEEP, BACKFILL)
    # Only P:managed exactly true: the tool rewrites other spellings first.
    assert every_role(p, "ec2:DeregisterImage", [image({f"{p}:managed": "TRUE"})]) == only()
    assert every_role(p, "ec2:DeregisterImage", [image()]) == only()
    assert every_role(p, "ec2:DeleteSnapshot", [snapshot()]) == only()
    # Staged retirement (DisableBeforeDeregister): disabling, re-enabling and giving the launch
    # permissions back, on managed images only, by the functions that retire.
    for action in ("ec2:DisableImage", "ec2:EnableImage", "ec2:ModifyImageAttribute"):
        assert every_role(p, action, [image(managed(p))]) == only(SWEEP, BACKFILL), action
        assert every_role(p, action, [image()]) == only(), action
        opted_out = every_role(p, action, [image({f"{p}:managed": "false"})])
        assert set(opted_out.values()) == {EXPLICIT}, action


def test_tag_keys_outside_the_prefix_are_never_written(p: str) -> None:
    img = [image(managed(p))]
    assert every_role(p, "ec2:CreateTags", img, tags={"Name": "web"}) == only()
    assert every_role(p, "ec2:CreateTags", [image()], tags={**lifecycle(p), "Name": "web"}) == only()
    assert every_role(p, "ec2:DeleteTags", img, keys=["Name"]) == only()
    assert every_role(p, "ec2:DeleteTags", img, keys=[f"{p}:error", "Name"]) == only()
    # DeleteTags without Tags deletes every tag: refused (aws:TagKeys is absent).
    assert every_role(p, "ec2:DeleteTags", img) == only()


# ------------------------------------------------------------------ copies


def test_copies_are_created_and_tagged_at_creation_by_the_replicator_only(p: str) -> None:
    new_copy = [
        image(image_id="ami-0fedcba9876543210", region=WEST),
        snapshot(snapshot_id="snap-0fedcba987654321", region=WEST),
    ]
    copy_tags = {**lifecycle(p), f"{p}:source-image": "ami-0123456789abcdef0", f"{p}:source-region": EAST}
    at_creation = {"ec2:CreateAction": "CopyImage"}
    assert every_role(p, "ec2:CopyImage", new_copy, tags=copy_tags) == only(REPLICATOR)
    # Tagging at creation (only the Replicator may CopyImage; ImageEvents' and Backfill's adoption
    # statement would allow these tags as well, being P:managed=true and P: keys only).
    assert call(REPLICATOR, p, "ec2:CreateTags", new_copy, tags=copy_tags, extra=at_creation) == ALLOW
    # The template's claim, checked the other way too: were aws:ResourceTag filled from the request
    # tags at creation, no Deny would match them either.
    as_if_tagged = [Res(r.arn, copy_tags) for r in new_copy]
    assert call(REPLICATOR, p, "ec2:CreateTags", as_if_tagged, tags=copy_tags, extra=at_creation) == ALLOW
    # Born managed, with lifecycle keys only.
    assert every_role(p, "ec2:CopyImage", new_copy, tags={**copy_tags, "Name": "web"}) == only()
    assert every_role(p, "ec2:CreateTags", new_copy, tags={**copy_tags, "Name": "web"}, extra=at_creation) == only()
    unmanaged = {k: v for k, v in copy_tags.items() if k != f"{p}:managed"}
    assert every_role(p, "ec2:CopyImage", new_copy, tags=unmanaged) == only()
    assert every_role(p, "ec2:CopyImage", new_copy) == only()


# ------------------------------------------------------------------ reads and usage reports


def test_sharing_and_usage_reads(p: str) -> None:
    reads = only(SWEEP, BACKFILL)
    assert every_role(p, "ec2:DescribeImageAttribute", [image()]) == reads
    assert every_role(p, "ec2:DescribeSnapshotAttribute", [snapshot()]) == reads
    for action in ("ec2:DescribeImageUsageReports", "ec2:DescribeImageUsageReportEntries", "ec2:DescribeRegions"):
        assert every_role(p, action, [EVERYTHING]) == reads, action
    assert every_role(p, "ec2:DescribeImages", [EVERYTHING]) == only(*FUNCTIONS)


def test_usage_reports_only_on_managed_images_and_in_this_account(p: str) -> None:
    assert every_role(p, "ec2:CreateImageUsageReport", [image(managed(p)), report()]) == only(SWEEP, BACKFILL)
    assert every_role(p, "ec2:CreateImageUsageReport", [image(), report()]) == only()
    assert every_role(p, "ec2:CreateImageUsageReport", [image({f"{p}:managed": "false"}), report()]) == only()
    assert every_role(p, "ec2:CreateImageUsageReport", [image(managed(p)), report(OTHER_ACCOUNT)]) == only()
    assert every_role(p, "ec2:DeleteImageUsageReport", [report()]) == only(SWEEP, BACKFILL)
    assert every_role(p, "ec2:DeleteImageUsageReport", [report(OTHER_ACCOUNT)]) == only()


# ------------------------------------------------------------------ the calls the code makes


@pytest.fixture
def code_settings(p: str, make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(tag_prefix=p, replica_regions=(WEST,))


def test_the_adoption_the_code_writes_is_allowed(p: str, code_settings: Settings) -> None:
    decision = decide_adoption(code_image({"Team": "web"}), code_settings, NOW)
    assert decision.adopt and decision.image_tags == decision.snapshot_tags
    both = [image({"Team": "web"}), snapshot()]
    assert every_role(p, "ec2:CreateTags", both, tags=decision.snapshot_tags) == only(*TAGGERS)


@pytest.mark.parametrize(
    "tags",
    [{"{p}:managed": v} for v in ("false", "NO", "0")] + list(MARKERS.values()),
    ids=["false", "NO", "0", *MARKERS],
)
def test_what_the_code_does_not_adopt_iam_refuses(p: str, code_settings: Settings, tags: dict[str, str]) -> None:
    tags = {k.format(p=p): v for k, v in tags.items()}
    assert not decide_adoption(code_image(tags), code_settings, NOW).adopt
    assert every_role(p, "ec2:CreateTags", [image(tags)], tags=lifecycle(p)) == ALL_DENIED


def test_adopting_a_held_image_writes_no_hold(p: str, code_settings: Settings) -> None:
    held = {f"{p}:hold": "true"}
    decision = decide_adoption(code_image(held), code_settings, NOW)
    assert decision.adopt
    assert every_role(p, "ec2:CreateTags", [snapshot()], tags=decision.snapshot_tags) == only(*TAGGERS)


def test_copying_a_held_image_writes_no_hold(p: str, code_settings: Settings) -> None:
    held = managed(p, **{f"{p}:hold": "true"})
    (request,) = plan_copies(code_image(held), code_settings, held).requests
    new_copy = [image(image_id="ami-0fedcba9876543210", region=WEST), snapshot(region=WEST)]
    at_creation = {"ec2:CreateAction": "CopyImage"}
    assert f"{p}:hold" not in request.tags
    allowed = every_role(p, "ec2:CreateTags", new_copy, tags=request.tags, extra=at_creation)
    assert allowed[REPLICATOR] == ALLOW


# ------------------------------------------------------------------ P:error alone (a refusal, e.g. the tag limit)


def test_a_refusal_may_write_p_error_alone_on_an_unadopted_image(p: str) -> None:
    unadopted = [image()]
    assert every_role(p, "ec2:CreateTags", unadopted, tags={f"{p}:error": "too many tags"}) == only(*TAGGERS)
    # ...but nothing else with it, not on snapshots, and never on an opted-out or foreign image.
    assert every_role(p, "ec2:CreateTags", unadopted, tags={f"{p}:error": "x", f"{p}:family": "web"}) == only()
    assert every_role(p, "ec2:CreateTags", [snapshot()], tags={f"{p}:error": "x"}) == only()
    for tag in ({f"{p}:managed": "false"}, {"aws:dlm:lifecycle-policy-id": "policy-1"}):
        assert every_role(p, "ec2:CreateTags", [image(tag)], tags={f"{p}:error": "x"}) == ALL_DENIED
