"""The invocation payloads of RetentionSweepFunction and BackfillFunction (PRODUCT.md section 4),
validated into frozen models. One refusal, `BadRequest`, whose message says what is wrong; nothing
else is raised whatever the payload. Pure: the region list is passed in.

The models are frozen `Model`s, checked as the pydantic models they replaced were (settings.py
explains): `model_validate(payload)` refuses unknown keys, wrong types and an explicit null where
absent is meant; built in code (`BackfillRequest(dry_run=True)`), a None is the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from .ids import is_account_id, is_image_id
from .settings import (
    BAD,
    Check,
    Loc,
    Model,
    Out,
    Problem,
    Settings,
    Spec,
    integer,
    items,
    one_of,
    optional,
    strict_boolean,
    text,
    then,
)
from .tags import is_region_name

# At most this many invocations of one sweep (or backfill) following its cursor (each up to 15 minutes).
MAX_CHAIN = 20
# Accounts in one payload (an organization may have thousands; the state machine sends one).
MAX_ACCOUNTS = 1000
MAX_IMAGE_IDS = 1000

Action = Literal["tag", "replicate", "retire"]
ACTIONS: tuple[Action, ...] = ("tag", "replicate", "retire")


class BadRequest(ValueError):
    """The payload is not one the function accepts; the message says why (one line)."""


# ---------------------------------------------------------------- the sweep


def _account_ids(v: list[str], _ctx: Mapping[str, Any]) -> list[str]:
    for account in v:
        if not is_account_id(account):
            raise ValueError(f"{account[:40]!r} is not a 12-digit AWS account id")
    return list(dict.fromkeys(v))


def _pair(v: list[str], _ctx: Mapping[str, Any]) -> list[str]:
    if len(v) != 2 or not is_account_id(v[0]) or not is_region_name(v[1]):
        raise ValueError("a pair is [12-digit account id, region]")
    return v


class SweepCursor(Model):
    """Where the next invocation of the same sweep starts (returned as `cursor`, sent back as is):
    the pairs still to do, the one in progress first, and how many invocations came before."""

    pairs: list[list[str]]  # [[account, region], ...], 1..MAX_ACCOUNTS * 50
    iteration: int = 1  # 1..MAX_CHAIN
    # Retired by the invocations before (what `retire_at_most` still allows is the rest).
    retired: int = 0

    SPEC: ClassVar[dict[str, Spec]] = {
        "pairs": Spec(items(then(items(text(), min_length=2, max_length=2), _pair), min_length=1)),
        "iteration": Spec(integer(ge=1, le=MAX_CHAIN)),
        "retired": Spec(integer(ge=0)),
    }


def _sweep_cursor(value: Any, loc: Loc, out: Out, ctx: Mapping[str, Any]) -> Any:
    return SweepCursor.check_mapping(value, out, ctx, loc)


class SweepRequest(Model):
    """`{"accounts": [...], "regions": [...], "dry_run": bool}`, all optional; the schedule and the
    state machine add `source`, the next invocation of a sweep that ran out of time `cursor`, and
    the state machine `retire_at_most` (its share of MaxRetirementsPerRun for the execution)."""

    accounts: list[str] | None = None  # 1..MAX_ACCOUNTS of them
    regions: list[str] | None = None  # 1..50 of them
    # None: absent, i.e. the stack's DryRun. An explicit `"dry_run": null` is refused by parse_request.
    dry_run: bool | None = None  # strictly true or false
    source: Literal["schedule", "manual", "state-machine"] | None = None
    cursor: SweepCursor | None = None
    # Over this many retirements the invocation retires none (blast-radius); 0: none may be retired.
    retire_at_most: int | None = None

    SPEC: ClassVar[dict[str, Spec]] = {
        "accounts": Spec(optional(then(items(text(), min_length=1, max_length=MAX_ACCOUNTS), _account_ids))),
        "regions": Spec(optional(items(text(), min_length=1, max_length=50))),
        "dry_run": Spec(optional(strict_boolean)),
        "source": Spec(optional(one_of("schedule", "manual", "state-machine"))),
        "cursor": Spec(optional(_sweep_cursor)),
        "retire_at_most": Spec(optional(integer(ge=0, le=1_000_000))),
    }


def parse_sweep_request(event: Any, settings: Settings, known_regions: frozenset[str]) -> SweepRequest:
    """Validate the payload. Raises BadRequest for unknown keys, wrong types, and regions that are
    not AWS regions or not covered by this stack's sweep regions, and nothing else whatever the input.

    An absent `dry_run` means the stack's DryRun; an explicit `"dry_run": null` is refused, never
    taken as "for real"."""
    if event is None:
        event = {}
    if not isinstance(event, Mapping):
        raise BadRequest(f"payload is a {type(event).__name__}, not a JSON object")
    payload = dict(event)
    problems: list[str] = []
    if "dry_run" in payload and payload["dry_run"] is None:
        problems.append("dry_run: dry_run must be true or false")
    for key, what in (("regions", "every sweep region"), ("accounts", "every managed account")):
        if key in payload and payload[key] is None:
            problems.append(f"{key}: must not be null (leave the key out for {what})")
    out: Out = []
    request = SweepRequest.check_mapping(payload, out)
    # Locations and messages are clipped: an unknown key may be a megabyte long.
    problems += [f"{'.'.join(str(p)[:40] for p in e.loc) or 'payload'}: {e.msg[:200]}" for e in out]
    if problems or request is BAD:
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        message = f"invalid sweep payload: {'; '.join(problems[:5])}{more}"
        raise BadRequest(message if len(message) <= 900 else message[:899] + "…")
    cursor_regions = [region for _, region in request.cursor.pairs] if request.cursor else []
    for region in dict.fromkeys([*(request.regions or ()), *cursor_regions]):
        if region in settings.sweep_regions:
            continue
        if not is_region_name(region) or region not in known_regions:
            raise BadRequest(f"invalid sweep payload: regions: {region[:40]!r} is not an AWS region")
        raise BadRequest(
            f"invalid sweep payload: regions: {region} is not swept by this stack "
            f"(sweep regions: {', '.join(settings.sweep_regions)})"
        )
    return request


# ---------------------------------------------------------------- the backfill


class Cursor(Model):
    """Where the next invocation starts: the (account, region) pair (index into the request's
    pairs, account by account) and, in it, the images after `after` (image-id order; `offset` of
    them were done). Internal: written by the function, sent back as is."""

    region_index: int  # >= 0: the pair's index
    offset: int = 0  # >= 0
    after: str | None = None
    chain: int = 1  # 1..MAX_CHAIN
    run_id: str = ""  # at most 64 characters
    # Image ids of the request found in the regions done so far (to report those found nowhere).
    found: list[str] = []  # at most MAX_IMAGE_IDS (the default is copied by its check)
    # Retired (or disabled first) by the invocations before: MaxRetirementsPerRun spans them; and
    # whether the cap already stopped the run.
    retired: int = 0
    blocked: bool = False

    SPEC: ClassVar[dict[str, Spec]] = {
        "region_index": Spec(integer(ge=0)),
        "offset": Spec(integer(ge=0)),
        "after": Spec(optional(text())),
        "chain": Spec(integer(ge=1, le=MAX_CHAIN)),
        "run_id": Spec(text(max_length=64)),
        "found": Spec(items(text(), max_length=MAX_IMAGE_IDS)),
        "retired": Spec(integer(ge=0)),
        "blocked": Spec(strict_boolean),
    }


def _cursor(value: Any, loc: Loc, out: Out, ctx: Mapping[str, Any]) -> Any:
    return Cursor.check_mapping(value, out, ctx, loc)


def _known_regions(v: list[str], ctx: Mapping[str, Any]) -> list[str]:
    known = ctx.get("known_regions")
    for region in v:
        if not is_region_name(region) or (known is not None and region not in known):
            raise ValueError(f"{region[:40]!r} is not an AWS region")
    return list(dict.fromkeys(v))


def _image_ids(v: list[str], _ctx: Mapping[str, Any]) -> list[str]:
    for image_id in v:
        if not is_image_id(image_id):
            raise ValueError(f"{image_id[:40]!r} is not an AMI id (ami- and 8 or 17 hex digits)")
    return list(dict.fromkeys(v))


# An explicit null must not pass for absent: for dry_run that would mean "for real"; for the
# lists, "every image, every action".
_NOT_NULL = "must not be null (leave the key out)"
_ACTION: Check = one_of(*ACTIONS)


class BackfillRequest(Model):
    """`{"actions": [...], "accounts": [...], "regions": [...], "image_ids": [...], "dry_run": bool}`,
    all optional; the next invocation of a backfill that ran out of time adds `continuation`."""

    actions: list[Action] | None = None  # 1..3 of them
    accounts: list[str] | None = None  # 1..MAX_ACCOUNTS of them
    regions: list[str] | None = None  # 1..50 of them
    image_ids: list[str] | None = None  # 1..MAX_IMAGE_IDS of them
    dry_run: bool | None = None  # None: absent, i.e. a dry run (an explicit null is refused)
    continuation: Cursor | None = None

    SPEC: ClassVar[dict[str, Spec]] = {
        "actions": Spec(optional(items(_ACTION, min_length=1, max_length=3)), null=_NOT_NULL),
        "accounts": Spec(
            optional(then(items(text(), min_length=1, max_length=MAX_ACCOUNTS), _account_ids)), null=_NOT_NULL
        ),
        "regions": Spec(optional(then(items(text(), min_length=1, max_length=50), _known_regions)), null=_NOT_NULL),
        "image_ids": Spec(
            optional(then(items(text(), min_length=1, max_length=MAX_IMAGE_IDS), _image_ids)), null=_NOT_NULL
        ),
        "dry_run": Spec(optional(strict_boolean), null="dry_run must be true or false"),
        "continuation": Spec(optional(_cursor)),
    }

    def effective_dry_run(self, settings: Settings) -> bool:
        """A dry run unless `"dry_run": false` is stated, and always under the DryRun parameter."""
        return True if settings.dry_run else (True if self.dry_run is None else self.dry_run)

    def ordered_actions(self) -> tuple[Action, ...]:
        """The requested actions in the order they run: tag, replicate, retire."""
        wanted = set(self.actions or ACTIONS)
        return tuple(a for a in ACTIONS if a in wanted)


def parse_backfill_request(event: Any, settings: Settings, known_regions: frozenset[str]) -> BackfillRequest:
    """Validate a payload. Raises BadRequest (one readable line) for unknown keys or actions, wrong
    types, regions that are not AWS regions or not swept by this stack, and malformed image ids."""
    if event is None:
        event = {}
    if not isinstance(event, Mapping):
        raise BadRequest(f"payload is a {type(event).__name__}, not a JSON object")
    out: Out = []
    request = BackfillRequest.check_mapping(dict(event), out, {"known_regions": known_regions})
    if out or request is BAD:
        raise BadRequest(f"invalid backfill payload: {_problems(out)}")
    for region in request.regions or ():
        if region not in settings.sweep_regions:
            raise BadRequest(
                f"invalid backfill payload: regions: {region} is not covered by this stack "
                f"(sweep regions: {', '.join(settings.sweep_regions)})"
            )
    return request


def _problems(problems: list[Problem]) -> str:
    """One readable line, short whatever the payload: keys, values and the number of problems are clipped."""
    out = []
    for err in problems:
        loc = ".".join(str(p)[:40] for p in err.loc if not isinstance(p, int)) or "payload"
        msg = err.msg.removeprefix("Value error, ")[:200]
        if err.type == "extra_forbidden":
            msg = "unknown key (allowed: actions, accounts, regions, image_ids, dry_run)"
        elif err.type == "literal_error":
            given = err.input
            shown = repr(given[:40]) if isinstance(given, str) else f"of type {type(given).__name__}"
            msg = f"unknown action {shown} (allowed: tag, replicate, retire)"
        out.append(f"{loc}: {msg}")
    unique = list(dict.fromkeys(out))
    more = f"; and {len(unique) - 5} more" if len(unique) > 5 else ""
    line = "; ".join(unique[:5]) + more
    return line if len(line) <= 850 else line[:849] + "…"
