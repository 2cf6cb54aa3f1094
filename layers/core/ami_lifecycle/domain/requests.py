"""The invocation payloads of RetentionSweepFunction and BackfillFunction (PRODUCT.md section 4),
validated into frozen models. One refusal, `BadRequest`, whose message says what is wrong; nothing
else is raised whatever the payload. Pure: the region list is passed in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, ValidationInfo, field_validator

from .settings import Settings
from .tags import is_region_name

# At most this many follow-up invocations of one sweep or backfill in a row (each up to 15 minutes).
MAX_CHAIN = 20
MAX_IMAGE_IDS = 1000
IMAGE_ID = re.compile(r"^ami-[0-9a-f]{8,17}\Z", re.ASCII)

Action = Literal["tag", "replicate", "retire"]
ACTIONS: tuple[Action, ...] = ("tag", "replicate", "retire")


class BadRequest(ValueError):
    """The payload is not one the function accepts; the message says why (one line)."""


# ---------------------------------------------------------------- the sweep


class SweepRequest(BaseModel):
    """`{"regions": [...], "dry_run": bool}`, all optional; the schedule sends `{"source": "schedule"}`
    and a follow-up invocation adds `continuation`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    regions: list[str] | None = Field(default=None, min_length=1, max_length=50)
    # None: absent, i.e. the stack's DryRun. An explicit `"dry_run": null` is refused by parse_request.
    dry_run: StrictBool | None = None
    source: Literal["schedule", "manual"] | None = None
    continuation: int = Field(default=0, ge=0, le=MAX_CHAIN)


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
    if "regions" in payload and payload["regions"] is None:
        problems.append("regions: must not be null (leave the key out for every sweep region)")
    request: SweepRequest | None = None
    try:
        request = SweepRequest.model_validate(payload)
    except ValidationError as e:
        # Locations and messages are clipped: an unknown key may be a megabyte long.
        problems += [
            f"{'.'.join(str(p)[:40] for p in err['loc']) or 'payload'}: {str(err['msg'])[:200]}" for err in e.errors()
        ]
    if problems or request is None:
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        message = f"invalid sweep payload: {'; '.join(problems[:5])}{more}"
        raise BadRequest(message if len(message) <= 900 else message[:899] + "…")
    for region in request.regions or ():
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


class Cursor(BaseModel):
    """Where a follow-up invocation starts: the region (index into `regions`) and, in it, the images
    after `after` (image-id order; `offset` of them were done). Internal: written by the function."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region_index: int = Field(ge=0)
    offset: int = Field(default=0, ge=0)
    after: str | None = None
    chain: int = Field(default=1, ge=1, le=MAX_CHAIN)
    run_id: str = Field(default="", max_length=64)
    # Image ids of the request found in the regions done so far (to report those found nowhere).
    found: list[str] = Field(default_factory=list, max_length=MAX_IMAGE_IDS)


class BackfillRequest(BaseModel):
    """`{"actions": [...], "regions": [...], "image_ids": [...], "dry_run": bool}`, all optional;
    a follow-up invocation adds `continuation`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actions: list[Action] | None = Field(default=None, min_length=1, max_length=3)
    regions: list[str] | None = Field(default=None, min_length=1, max_length=50)
    image_ids: list[str] | None = Field(default=None, min_length=1, max_length=MAX_IMAGE_IDS)
    dry_run: StrictBool | None = None  # None: absent, i.e. a dry run (an explicit null is refused)
    continuation: Cursor | None = None

    @field_validator("dry_run", "actions", "regions", "image_ids", mode="before")
    @classmethod
    def _dry_run(cls, v: Any, info: ValidationInfo) -> Any:
        # Runs only for a key the payload states: an explicit null must not pass for absent (for
        # dry_run that would mean "for real"; for the lists, "every image, every action").
        if v is None:
            raise ValueError(
                "dry_run must be true or false"
                if info.field_name == "dry_run"
                else "must not be null (leave the key out)"
            )
        return v

    @field_validator("regions")
    @classmethod
    def _regions(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if v is None:
            return v
        known = (info.context or {}).get("known_regions")
        for region in v:
            if not is_region_name(region) or (known is not None and region not in known):
                raise ValueError(f"{region[:40]!r} is not an AWS region")
        return list(dict.fromkeys(v))

    @field_validator("image_ids")
    @classmethod
    def _image_ids(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        for image_id in v:
            if not IMAGE_ID.fullmatch(image_id):
                raise ValueError(f"{image_id[:40]!r} is not an AMI id (ami- and 8 or 17 hex digits)")
        return list(dict.fromkeys(v))

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
    try:
        request = BackfillRequest.model_validate(dict(event), context={"known_regions": known_regions})
    except ValidationError as e:
        raise BadRequest(f"invalid backfill payload: {_problems(e)}") from None
    for region in request.regions or ():
        if region not in settings.sweep_regions:
            raise BadRequest(
                f"invalid backfill payload: regions: {region} is not covered by this stack "
                f"(sweep regions: {', '.join(settings.sweep_regions)})"
            )
    return request


def _problems(e: ValidationError) -> str:
    """One readable line, short whatever the payload: keys, values and the number of problems are clipped."""
    out = []
    for err in e.errors():
        loc = ".".join(str(p)[:40] for p in err["loc"] if not isinstance(p, int)) or "payload"
        msg = str(err["msg"]).removeprefix("Value error, ")[:200]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (allowed: actions, regions, image_ids, dry_run)"
        elif err["type"] == "literal_error":
            given = err.get("input")
            shown = repr(given[:40]) if isinstance(given, str) else f"of type {type(given).__name__}"
            msg = f"unknown action {shown} (allowed: tag, replicate, retire)"
        out.append(f"{loc}: {msg}")
    unique = list(dict.fromkeys(out))
    more = f"; and {len(unique) - 5} more" if len(unique) > 5 else ""
    text = "; ".join(unique[:5]) + more
    return text if len(text) <= 850 else text[:849] + "…"
