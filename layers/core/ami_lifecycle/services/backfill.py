"""The backfill (BackfillFunction, `ami-lifecycle backfill` and `plan`): tagging, replication and
retirement applied to images that already exist (PRODUCT.md section 4).

Payload, every key optional::

    {"actions": ["tag", "replicate", "retire"], "regions": ["us-east-1"],
     "image_ids": ["ami-..."], "dry_run": true}

Defaults: all three actions, the sweep regions, and a **dry run** (`dry_run` defaults to true for
backfills; the DryRun parameter forces it). An unknown key or action, a region that is not one
the stack sweeps, or a malformed image id refuses the whole request before any AWS call.

Per region, in that order (one region failing never stops the others):

1. List: DescribeImages Owners=self, disabled and deprecated included, pages of 1000; and, for
   tagging, the snapshot tags of the whole region in one paginated DescribeSnapshots(OwnerIds=self)
   (instead of one call per image). The images worked on are every listed image, or those of
   `image_ids`, in image-id order.
2. tag: `tagging.tag_image` per image (adopt, write the lifecycle tags on the image and its
   snapshots, set the deprecation time).
3. replicate: for managed images that are not copies, the requests of `plan_copies` for the
   target regions without a copy yet (each target region's copies are listed once:
   DescribeImages with `tag-key` = `P:source-image`), sent with `send_copy_requests`. An expired
   image is not copied (its copy would carry the same expiry) unless it is kept for a reason the
   copy shares: among the newest of its family, or held.
4. retire: the retention sweep of the region (`sweep.sweep_region`), over the images as the
   tag step leaves them; with `image_ids`, retirement is restricted to those images while the
   keep-latest ranking still runs over whole families.

Dry run changes nothing and reports what a real run would do: the tag step's tags are projected
onto the listing (pure, `adoption.decide_adoption`), so the retire step decides on the tags a
real run would have written first.

Report: `report.Report` (kind "backfill"), the same shape as the sweep's. Every image worked on
is an `ImageEntry`: with the retire action its decision is the sweep's `retire` / `keep` (and the
reason code); otherwise `tag` (tags to write), `copy` (copies to request), `skip` (not the tool's
to manage: the reason says why) or `none` (nothing to do). `actions` lists what was (or would be)
done to it, `outcome` sums it up. Totals: tagged, copies_requested, retired, kept by reason,
errors, snapshots_deleted, deprecations_set; per region `notes.snapshot_gib_freed`.

Large fleets: when the Lambda's remaining time runs low, the run stops between two images,
reports `continued: true` and where (`continuation`: region index, image offset and the last
image id done), and the handler invokes the function again asynchronously with that cursor.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, ValidationInfo, field_validator

from ..aws.clients import Aws
from ..aws.ec2 import Ec2, RegionGateways
from ..domain.adoption import Adoption, decide_adoption, foreign_manager
from ..domain.evidence import checked_unused
from ..domain.model import Image
from ..domain.replication import CopyRequest, is_copy, plan_copies, send_copy_requests
from ..domain.report import ImageEntry, RegionReport, Report, Totals
from ..domain.retention import decide, expiry_of, is_managed, rank_families
from ..domain.settings import Settings
from ..domain.tags import TagError, format_instant, is_region_name, parse_bool
from ..runtime.observability import count, logger
from .sweep import Budget, OutOfTime, known_regions, sweep_region
from .tagging import tag_image

Action = Literal["tag", "replicate", "retire"]
ACTIONS: tuple[Action, ...] = ("tag", "replicate", "retire")
MAX_IMAGE_IDS = 1000
# At most this many follow-up invocations in a row (each up to 15 minutes).
MAX_CHAIN = 20
# Stop when less than this is left of the Lambda's time (the sweep of one region runs after it).
SAFETY_MARGIN_MS = 120_000
# Progress is reported every this many images.
PROGRESS_EVERY = 250
# Per-image entries returned by the Lambda, over all regions (a response is at most 6 MB).
MAX_REPORT_IMAGES = 10_000
_IMAGE_ID = re.compile(r"^ami-[0-9a-f]{8,17}$", re.ASCII)

Progress = Callable[[str], None]


class BadRequest(ValueError):
    """The payload is not one the backfill accepts; the message says why."""


# ---------------------------------------------------------------- the payload


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
    def _regions(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        for region in v:
            if not is_region_name(region) or region not in known_regions():
                raise ValueError(f"{region[:40]!r} is not an AWS region")
        return list(dict.fromkeys(v))

    @field_validator("image_ids")
    @classmethod
    def _image_ids(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        for image_id in v:
            if not _IMAGE_ID.fullmatch(image_id):
                raise ValueError(f"{image_id[:40]!r} is not an AMI id (ami- and 8 or 17 hex digits)")
        return list(dict.fromkeys(v))

    def ordered_actions(self) -> tuple[Action, ...]:
        """The requested actions in the order they run: tag, replicate, retire."""
        wanted = set(self.actions or ACTIONS)
        return tuple(a for a in ACTIONS if a in wanted)


def parse_request(event: Any, settings: Settings) -> BackfillRequest:
    """Validate a payload. Raises BadRequest (one readable line) for unknown keys or actions, wrong
    types, regions that are not AWS regions or not swept by this stack, and malformed image ids."""
    if event is None:
        event = {}
    if not isinstance(event, Mapping):
        raise BadRequest(f"payload is a {type(event).__name__}, not a JSON object")
    try:
        request = BackfillRequest.model_validate(dict(event))
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


# ---------------------------------------------------------------- pure helpers


@dataclass(frozen=True)
class Projection:
    """An image as the tag step leaves it (what a dry run assumes a real run writes)."""

    image: Image
    adoption: Adoption | None  # None: not tagged by this run


def project(image: Image, settings: Settings, now: datetime, account_id: str | None, tag: bool) -> Projection:
    """The image with the tags and deprecation time the tag step gives it. Pure."""
    if not tag:
        return Projection(image, None)
    adoption = decide_adoption(image, settings, now, account_id)
    if not adoption.adopt:
        return Projection(image, adoption)
    tags = {k: v for k, v in image.tags.items() if k not in adoption.remove_keys}
    tags.update(adoption.image_tags)
    deprecation = adoption.deprecate_at if adoption.deprecate_at is not None else image.deprecation_time
    return Projection(replace(image, tags=tags, deprecation_time=deprecation), adoption)


def skip_reason(image: Image, settings: Settings, account_id: str | None) -> str:
    """The reason code of an image the tool does not adopt (the same codes the sweep keeps for)."""
    keys = settings.keys
    if image.state != "available":
        return "not-available"
    if account_id and image.owner_id and image.owner_id != account_id:
        return "not-owned"
    if foreign_manager(image):
        return "foreign-manager"
    try:
        managed = parse_bool(image.tags.get(keys.managed))
    except TagError:
        return "bad-tag"
    return "opted-out" if managed is False else "not-managed"


def lifecycle_tags(image: Image, settings: Settings) -> dict[str, str]:
    return {k: v for k, v in image.tags.items() if settings.keys.is_lifecycle_key(k)}


def existing_copies(copies: Sequence[Image], settings: Settings) -> dict[tuple[str, str], Image]:
    """Copies listed in one region -> {(source region, source image id): copy}; a live copy wins over
    a failed one."""
    keys = settings.keys
    found: dict[tuple[str, str], Image] = {}
    for copy in sorted(copies, key=lambda i: (i.state == "failed", i.creation_date)):
        source = copy.tags.get(keys.source_image)
        region = copy.tags.get(keys.source_region) or copy.source_region or ""
        if source:
            found.setdefault((region, source), copy)
    return found


def resume_index(selected: Sequence[Image], after: str | None) -> int:
    """Where to resume in the image-id ordered list: the first image after `after`."""
    if after is None:
        return 0
    for i, image in enumerate(selected):
        if image.image_id > after:
            return i
    return len(selected)


def _describe_error(e: BaseException) -> str:
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        return f"{err.get('Code', 'ClientError')}: {err.get('Message', '')}"[:500]
    return f"{type(e).__name__}: {e}"[:500]


# ---------------------------------------------------------------- the run


@dataclass
class _Work:
    """One image being worked on."""

    image: Image  # as listed
    projection: Projection
    entry: ImageEntry
    tagged: bool = False
    copies: list[CopyRequest] = field(default_factory=list)


class Backfill:
    """One backfill run (one invocation): `run(request)` returns the report."""

    def __init__(
        self,
        settings: Settings,
        aws: Aws,
        now: datetime,
        *,
        account_id: str | None = None,
        budget: Budget | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.settings = settings
        self.aws = aws
        self.now = now
        self.account_id = account_id
        self.budget = budget or Budget()
        self.progress = progress or (lambda _message: None)
        self._copies: dict[str, dict[tuple[str, str], Image]] = {}
        self.not_found: list[str] = []

    def dry_run_of(self, request: BackfillRequest) -> bool:
        return True if self.settings.dry_run else (True if request.dry_run is None else request.dry_run)

    def run(self, request: BackfillRequest) -> Report:
        actions = request.ordered_actions()
        dry_run = self.dry_run_of(request)
        regions = list(request.regions or self.settings.sweep_regions)
        cursor = request.continuation
        run_id = cursor.run_id if cursor and cursor.run_id else uuid.uuid4().hex[:12]
        wanted = set(request.image_ids) if request.image_ids else None
        found: set[str] = set(cursor.found) if cursor else set()
        report = Report("backfill", dry_run, started_at=self.now)
        report.continuation = None
        logger.info(
            "backfill started",
            run_id=run_id,
            actions=list(actions),
            regions=regions,
            image_ids=len(wanted) if wanted else None,
            dry_run=dry_run,
            cursor=cursor.model_dump() if cursor else None,
        )
        start = cursor.region_index if cursor else 0
        for index in range(start, len(regions)):
            region = regions[index]
            after = cursor.after if cursor and index == cursor.region_index else None
            offset = cursor.offset if cursor and index == cursor.region_index else 0
            if self.budget.exhausted():
                report.continuation = self._cursor(regions, index, offset, after, cursor, run_id, found)
                break
            out = report.region(region)
            self.progress(f"{region}: listing images")
            try:
                stop = self._region(index, region, actions, wanted, dry_run, out, after, offset, found)
            except Exception as e:  # one region's failure never stops the others
                out.fail(_describe_error(e))
                logger.exception("backfill of a region failed", region=region, error=out.error)
                self.progress(f"{region}: failed: {out.error}")
                continue
            if stop is not None:
                done_offset, done_after = stop
                out.status = "incomplete"
                report.continuation = self._cursor(regions, index, done_offset, done_after, cursor, run_id, found)
                break
        self.not_found = []
        if report.continuation is None and wanted:
            self.not_found = sorted(wanted - found)
            if self.not_found:
                logger.error("image ids not found in any region", image_ids=self.not_found, regions=regions)
        report.finished_at = datetime.now(UTC)
        return report

    def render(self, report: Report, max_images_per_region: int | None = None) -> dict[str, Any]:
        """The report as JSON data: `Report.to_dict()`, plus `continued` and `image_ids_not_found`
        (each an error)."""
        out = report.to_dict(max_images_per_region)
        out["continued"] = bool(report.continuation)
        if self.not_found:
            out["image_ids_not_found"] = list(self.not_found)
            out["totals"]["errors"] += len(self.not_found)
            if out["status"] == "complete":
                out["status"] = "partial"
        return out

    def _cursor(
        self,
        regions: Sequence[str],
        index: int,
        offset: int,
        after: str | None,
        previous: Cursor | None,
        run_id: str,
        found: set[str],
    ) -> dict[str, Any]:
        chain = (previous.chain + 1) if previous else 1
        info: dict[str, Any] = {
            "continued": True,
            "region": regions[index],
            "region_index": index,
            "offset": offset,
            "after": after,
            "remaining_regions": list(regions[index:]),
            "cursor": Cursor(
                region_index=index,
                offset=offset,
                after=after,
                chain=min(chain, MAX_CHAIN),
                run_id=run_id,
                found=sorted(found),
            ).model_dump(),
        }
        if chain > MAX_CHAIN:
            info["capped"] = True
        logger.warning("backfill out of time", **{k: v for k, v in info.items() if k != "cursor"})
        self.progress(f"{regions[index]}: out of time after {offset} images: continuing in a follow-up")
        return info

    # ------------------------------------------------------------ one region

    def _region(
        self,
        index: int,
        region: str,
        actions: tuple[Action, ...],
        wanted: set[str] | None,
        dry_run: bool,
        out: RegionReport,
        after: str | None,
        offset: int,
        found: set[str],
    ) -> tuple[int, str | None] | None:
        """Work on one region. Returns None when done, else (offset, last image id done) to resume at."""
        ec2 = Ec2(self.aws.ec2(region), region)
        listed = list(ec2.iter_images())
        snapshots: dict[str, dict[str, Any]] = {}
        if "tag" in actions or "retire" in actions:
            snapshots = {s["SnapshotId"]: s for s in ec2.iter_snapshots()}
        selected = sorted((i for i in listed if wanted is None or i.image_id in wanted), key=lambda i: i.image_id)
        found.update(i.image_id for i in selected)
        work = {
            i.image_id: _Work(i, project(i, self.settings, self.now, self.account_id, "tag" in actions), _entry(i))
            for i in selected
        }
        projected = [work[i.image_id].projection.image if i.image_id in work else i for i in listed]
        out.notes["images_listed"] = len(listed)
        if wanted is not None:
            out.notes["images_selected"] = len(selected)
        self.progress(f"{region}: {len(listed)} images, {len(selected)} to work on")

        first = resume_index(selected, after)
        if first:
            out.notes["resumed_after"] = selected[first - 1].image_id
        if "tag" in actions or "replicate" in actions:
            ranks = rank_families(projected, self.settings, self.account_id)
            snapshot_tags = {
                sid: {t["Key"]: t.get("Value", "") for t in s.get("Tags") or []} for sid, s in snapshots.items()
            }
            for n, image in enumerate(selected[first:], start=first):
                if self.budget.exhausted():
                    self._finish_entries(out, [work[i.image_id] for i in selected[first:n]], actions)
                    return offset + (n - first), selected[n - 1].image_id if n else after
                w = work[image.image_id]
                if "tag" in actions:
                    self._tag(ec2, w, snapshot_tags, dry_run, out)
                if "replicate" in actions:
                    self._replicate(w, ranks, dry_run, out)
                if (n + 1) % PROGRESS_EVERY == 0:
                    self.progress(f"{region}: {n + 1}/{len(selected)} images done")

        done = [work[i.image_id] for i in selected[first:]]
        if "retire" not in actions:
            self._finish_entries(out, done, actions)
            return None
        if self.budget.exhausted():
            self._finish_entries(out, done, actions)
            return offset + len(done), selected[-1].image_id if selected else after
        self.progress(f"{region}: retention sweep ({'dry run' if dry_run else 'for real'})")
        if not dry_run and "tag" in actions:
            # Retire from what EC2 holds, never from the tags this run meant to write: an image whose
            # tagging failed (refused, throttled, too many tags) is not managed and is not retired.
            try:
                projected = list(ec2.iter_images())
            except (ClientError, BotoCoreError) as exc:
                out.fail(f"re-reading the images after tagging: {_describe_error(exc)}")
                self._finish_entries(out, done, actions)
                return None
            out.notes["reread_after_tagging"] = len(projected)
        try:
            self._retire(ec2, region, projected, work, wanted, dry_run, out, snapshots)
        except OutOfTime:  # the entries so far are merged; the follow-up sweeps the region again
            return offset + len(done), selected[-1].image_id if selected else after
        t = out.totals
        self.progress(
            f"{region}: done: {t.tagged} tagged, {t.copies_requested} copies requested, {t.retired} retired, "
            f"{sum(t.kept.values())} kept, {t.errors} errors"
        )
        return None

    def _finish_entries(self, out: RegionReport, done: Sequence[_Work], actions: tuple[Action, ...]) -> None:
        """Entries of a run without the retire step (or cut short before it)."""
        for w in sorted(done, key=lambda w: (w.image.creation_date, w.image.image_id)):
            e = w.entry
            if not e.decision:
                if w.tagged:
                    e.decision, e.outcome = "tag", e.outcome or "tagged"
                elif w.copies:
                    e.decision = "copy"
                elif e.errors:
                    e.decision, e.outcome = "none", "failed"
                else:
                    e.decision, e.outcome = "none", e.outcome or "nothing to do"
                    e.reason = e.reason or "up-to-date"
            out.add(e)

    # ------------------------------------------------------------ tag

    def _tag(
        self,
        ec2: Ec2,
        w: _Work,
        snapshot_tags: Mapping[str, Mapping[str, str]],
        dry_run: bool,
        out: RegionReport,
    ) -> None:
        adoption = w.projection.adoption
        e = w.entry
        if adoption is not None and not adoption.adopt:
            e.decision, e.reason, e.detail = (
                "skip",
                skip_reason(w.image, self.settings, self.account_id),
                adoption.reason,
            )
            e.outcome = "skipped"
            return
        try:
            result = tag_image(
                ec2,
                w.image,
                self.settings,
                self.now,
                self.account_id,
                dry_run=dry_run,
                known_snapshot_tags=snapshot_tags,
            )
        except (ClientError, BotoCoreError) as exc:
            e.errors.append(f"tag: {_describe_error(exc)}")
            out.totals.errors += 1
            logger.error("image not tagged", image_id=w.image.image_id, region=ec2.region, error=e.errors[-1])
            return
        if result.decision == "missing":
            e.decision, e.reason, e.detail, e.outcome = "none", "gone", result.reason, "gone"
            return
        removed = adoption.remove_keys if adoption else ()
        e.errors.extend(f"tag: {err}" for err in result.errors)
        out.totals.errors += len(result.errors)
        if result.tags_written or result.snapshots_tagged or removed:
            w.tagged = True
            out.totals.tagged += 1
            verb = "would tag" if dry_run else "tagged"
            parts = [f"{k}={v}" for k, v in result.tags_written.items()]
            parts += [f"-{k}" for k in removed]
            text = f"{verb} image: {', '.join(parts)}" if parts else f"{verb} snapshots only"
            if result.snapshots_tagged:
                text += f" (+{len(result.snapshots_tagged)} snapshot{'s' if len(result.snapshots_tagged) > 1 else ''})"
            e.actions.append(text)
            e.reason = e.reason or ("adopted" if result.decision == "adopted" else "tags-missing")
            e.detail = e.detail or result.reason
            e.outcome = "would tag" if dry_run else "tagged"
        if result.deprecate_at:
            out.totals.deprecations_set += 1
            e.actions.append(f"{'would set' if dry_run else 'set'} deprecation time to {result.deprecate_at}")

    # ------------------------------------------------------------ replicate

    def _replicate(self, w: _Work, ranks: Mapping[str, Any], dry_run: bool, out: RegionReport) -> None:
        image = w.projection.image
        e = w.entry
        keys = self.settings.keys
        if not is_managed(image, keys) or image.state != "available" or foreign_manager(image):
            _explain(e, skip_reason(image, self.settings, self.account_id), "not managed: not replicated")
            return
        if is_copy(image, keys):
            _explain(e, "copy", "a copy made by ami-lifecycle: copies are not replicated")
            return
        expiry = expiry_of(image, keys, tool_default=self.settings.retention)
        if expiry.at is not None and expiry.at <= self.now:
            # A copy carries the same expiry: copy an expired image only when it is kept for a reason a
            # copy shares (the newest of its family, a hold), never one the sweep retires or keeps for
            # a local reason (in use here, protected here).
            d = decide(image, ranks.get(image.image_id), checked_unused(), self.settings, self.now, self.account_id)
            if not {"keep-latest", "hold"} & {str(b.reason) for b in d.blockers}:
                e.actions.append(f"not copied: expired at {format_instant(expiry.at)}")
                return
        plan = plan_copies(image, self.settings, lifecycle_tags(image, self.settings), known_regions())
        if plan.error:
            e.errors.append(plan.error)
            out.totals.errors += 1
            return
        requests: list[CopyRequest] = []
        for request in plan.requests:
            try:
                copy = self._copies_in(request.target_region).get((image.region, image.image_id))
            except (ClientError, BotoCoreError) as exc:
                e.errors.append(f"replicate: listing copies in {request.target_region}: {_describe_error(exc)}")
                out.totals.errors += 1
                continue
            if copy is not None:
                state = "" if copy.state == "available" else f" ({copy.state})"
                e.actions.append(f"copy in {request.target_region} exists: {copy.image_id}{state}")
                continue
            requests.append(request)
        if not requests:
            if not plan.requests and not plan.skipped:
                _explain(e, "up-to-date", "no replica regions")
            return
        targets = ", ".join(r.target_region for r in requests)
        if not self.settings.copy_queue_url:
            e.errors.append(f"replicate: COPY_QUEUE_URL is not set: no copies to {targets} requested")
            out.totals.errors += 1
            return
        if not dry_run:
            try:
                failures = send_copy_requests(self._sqs(), self.settings.copy_queue_url, requests)
            except (ClientError, BotoCoreError) as exc:
                failures = [f"{targets}: {_describe_error(exc)}"]
            if failures:
                e.errors.extend(f"replicate: copy request not queued: {f}" for f in failures)
                out.totals.errors += len(failures)
                logger.error("copy requests not queued", image_id=image.image_id, failures=failures)
                return
            count("CopiesRequested", len(requests))
        w.copies = requests
        out.totals.copies_requested += len(requests)
        for request in requests:
            e.actions.append(f"{'would request' if dry_run else 'requested'} a copy to {request.target_region}")
        if not e.outcome or e.outcome in ("nothing to do",):
            e.outcome = "would request copies" if dry_run else "copies requested"
        e.reason = e.reason or "not-replicated"
        e.detail = e.detail or f"no copy in {targets} yet"

    def _copies_in(self, region: str) -> dict[tuple[str, str], Image]:
        if region not in self._copies:
            ec2 = Ec2(self.aws.ec2(region), region)
            listed = ec2.iter_images(filters=[{"Name": "tag-key", "Values": [self.settings.keys.source_image]}])
            self._copies[region] = existing_copies(list(listed), self.settings)
        return self._copies[region]

    def _sqs(self) -> Any:
        return self.aws.client("sqs", queue_region(self.settings.copy_queue_url or "", self.settings.home_region))

    # ------------------------------------------------------------ retire

    def _retire(
        self,
        ec2: Ec2,
        region: str,
        projected: Sequence[Image],
        work: Mapping[str, _Work],
        wanted: set[str] | None,
        dry_run: bool,
        out: RegionReport,
        snapshots: Mapping[str, dict[str, Any]],
    ) -> None:
        """The sweep of the region over the projected images, merged into the backfill's entries."""
        swept = RegionReport(region)
        try:
            sweep_region(
                RegionGateways.of(self.aws, region),
                self.settings,
                self.now,
                swept,
                dry_run=dry_run,
                account_id=self.account_id,
                budget=self.budget,
                listing=projected,
                only=wanted,
                snapshots=list(snapshots.values()),
            )
        finally:
            self._merge(swept, work, out, snapshots, {image.image_id: image for image in projected})

    def _merge(
        self,
        swept: RegionReport,
        work: Mapping[str, _Work],
        out: RegionReport,
        snapshots: Mapping[str, Mapping[str, Any]],
        decided_on: Mapping[str, Image],
    ) -> None:
        """Fold the sweep's entries and totals into the backfill's: one entry per image worked on.
        `decided_on`: the images as the retire step saw them (re-read from EC2 after a real tag step)."""
        sweep_totals = swept.totals
        by_id = {e.image_id: e for e in swept.images}
        mine = out.totals  # tagged, copies requested, deprecations set and errors of the tag/replicate steps
        out.totals = Totals()
        for w in sorted(work.values(), key=lambda w: (w.image.creation_date, w.image.image_id)):
            swept_entry = by_id.get(w.image.image_id)
            if swept_entry is None:
                # Not managed, even after tagging: the sweep never looks at it. Say why it is kept.
                seen = decided_on.get(w.image.image_id, w.projection.image)
                d = decide(seen, None, checked_unused(), self.settings, self.now, self.account_id)
                entry = w.entry
                entry.decision, entry.reason, entry.detail = d.action, str(d.reason), d.detail
                entry.outcome = "failed" if entry.errors else "kept"
                out.totals.count_kept(str(d.reason))
            else:
                entry = swept_entry
                entry.actions = w.entry.actions + entry.actions
                entry.errors = w.entry.errors + entry.errors
            out.add(entry)
        sweep_totals.considered = sweep_totals.tagged = sweep_totals.copies_requested = 0
        mine.considered = 0
        out.totals.add(sweep_totals)
        out.totals.add(mine)
        out.snapshots.extend(swept.snapshots)
        out.notes.update({k: v for k, v in swept.notes.items() if k not in out.notes})
        out.notes["snapshot_gib_freed"] = snapshot_gib_freed(out, snapshots)


def snapshot_gib_freed(out: RegionReport, snapshots: Mapping[str, Mapping[str, Any]]) -> int:
    """GiB of the snapshots the report deletes (or would delete), by their VolumeSize."""
    deleted = {
        s["SnapshotId"] for e in out.images for s in e.snapshots if s.get("ReturnCode") in ("success", "would-delete")
    }
    deleted |= {
        r["snapshot_id"] for r in out.snapshots if str(r.get("outcome", "")).startswith(("deleted", "would delete"))
    }
    return sum(int(snapshots.get(sid, {}).get("VolumeSize") or 0) for sid in deleted)


def queue_region(url: str, default: str) -> str:
    """The region of an SQS queue URL (`https://sqs.<region>.amazonaws.com/...`), else `default`."""
    match = re.match(r"^https?://sqs\.([a-z0-9-]+)\.amazonaws\.com", url)
    return match.group(1) if match and is_region_name(match.group(1)) else default


def _explain(entry: ImageEntry, reason: str, detail: str) -> None:
    """Give an entry a reason when no step has given it one."""
    if not entry.reason:
        entry.reason, entry.detail = reason, detail


def _entry(image: Image) -> ImageEntry:
    return ImageEntry(
        image_id=image.image_id,
        name=image.name,
        created=format_instant(image.creation_date),
    )


# ---------------------------------------------------------------- the Lambda around it

Invoker = Callable[[dict[str, Any]], None]


def refused(error: str, dry_run: bool = True) -> dict[str, Any]:
    """The report of a refused request: nothing was done."""
    return {
        "kind": "backfill",
        "dry_run": dry_run,
        "status": "refused",
        "error": error,
        "continued": False,
        "totals": Totals().to_dict(),
        "regions": {},
    }


def follow_up_payload(
    request: BackfillRequest, settings: Settings, dry_run: bool, cursor: Mapping[str, Any]
) -> dict[str, Any]:
    """The payload of the follow-up invocation: the same request, pinned, plus the cursor."""
    payload: dict[str, Any] = {
        "actions": list(request.ordered_actions()),
        "regions": list(request.regions or settings.sweep_regions),
        "dry_run": dry_run,
        "continuation": dict(cursor),
    }
    if request.image_ids:
        payload["image_ids"] = list(request.image_ids)
    return payload


def handle(
    event: Any,
    context: Any,
    settings: Settings,
    aws: Aws,
    now: datetime,
    account_id: str | None = None,
    *,
    invoke: Invoker | None = None,
    margin_ms: int = SAFETY_MARGIN_MS,
) -> dict[str, Any]:
    """What BackfillFunction does with one invocation. `invoke` starts the follow-up invocation
    (default: this function again, asynchronously, through the Lambda API)."""
    try:
        request = parse_request(event, settings)
    except BadRequest as e:
        logger.error("backfill payload refused", error=str(e), payload=_clip(event))
        count("BackfillRefused")
        return refused(str(e))
    backfill = Backfill(settings, aws, now, account_id=account_id, budget=Budget.of(context, margin_ms))
    dry_run = backfill.dry_run_of(request)
    report = backfill.run(request)
    out = backfill.render(report, max(100, MAX_REPORT_IMAGES // max(1, len(report.regions))))
    if settings.dry_run and request.dry_run is False:
        out["note"] = "the DryRun parameter is true: this backfill only reports"
    out["continued"] = False
    if report.continuation:
        info = dict(report.continuation)
        payload = follow_up_payload(request, settings, dry_run, info.pop("cursor"))
        if info.get("capped"):
            info["error"] = f"more than {MAX_CHAIN} follow-up invocations: start a new backfill from here"
            logger.error("backfill chain capped", **info)
        else:
            try:
                (invoke or _lambda_invoker(aws, settings, context))(payload)
                out["continued"] = True
                info["requested"] = True
                logger.info("backfill continues in a follow-up invocation", payload=payload)
            except (ClientError, BotoCoreError) as e:
                info["error"] = f"could not invoke the follow-up: {_describe_error(e)}"
                logger.error("backfill follow-up not invoked", error=info["error"], payload=payload)
        out["continuation"] = info | {"payload": payload}
    logger.info("backfill report", report=report.summary())
    emit_metrics(report)
    return out


def _lambda_invoker(aws: Aws, settings: Settings, context: Any) -> Invoker:
    function = getattr(context, "invoked_function_arn", "") or getattr(context, "function_name", "")

    def invoke(payload: dict[str, Any]) -> None:
        client = aws.client("lambda", settings.home_region)
        client.invoke(FunctionName=function, InvocationType="Event", Payload=json.dumps(payload).encode())

    return invoke


def emit_metrics(report: Report) -> None:
    totals = report.totals
    if report.dry_run:
        count("BackfillImagesRetirable", totals.retired)
        return
    count("ImagesTagged", totals.tagged)
    count("ImagesRetired", totals.retired)
    count("SnapshotsDeleted", totals.snapshots_deleted)
    count("BackfillErrors", totals.errors)


def _clip(event: Any) -> Any:
    text = repr(event)
    return event if len(text) <= 2000 else text[:2000] + "…"
