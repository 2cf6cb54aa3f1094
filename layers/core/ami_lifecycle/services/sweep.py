"""The retention sweep (RetentionSweepFunction): retire expired images per PRODUCT.md section 2.

Per region, independently (one region failing never stops the others):

1. List the managed images: DescribeImages, Owners=self, `tag:P:managed=true`, disabled and
   deprecated included, pages of 1000 (ceil(n/1000) calls). Deregistration protection comes with
   them (`DeregistrationProtection`): no extra call.
2. Rank the families and decide the pure part of the rule (`retention.decide`).
3. Only for the images that pass every other condition (the candidates), gather the evidence of
   non-use (`gather_evidence`): every `evidence.Source` must answer, by DescribeImageReferences
   (ceil(candidates/10) calls) or by listing when that is cheaper; launch configurations are
   listed either way. A source that cannot answer keeps every candidate (`unverified`). Then the
   shared-image check (`check_sharing`): launch permissions, usage reports.
   Steps 1-3 run for every region before any image is retired: the blast-radius cap
   (MaxRetirementsPerRun) counts all regions together, and over it nothing is retired.
4. Retire: DeregisterImage(DeleteAssociatedSnapshots=True), one call per image; EC2 deletes the
   snapshots no other image uses in the same call and reports each one.
5. Reconcile: rewrite the tool's P:expires-at where P:retention changed (live tags), set the
   native deprecation time of managed images that lack it (copies in replica regions get theirs
   here), and delete orphaned managed snapshots (`reconcile_orphan_snapshots` says which).

Dry-run changes nothing and reports the same decisions. Time budget: when the Lambda has less than
a safety margin left, the sweep stops cleanly and returns the regions still to do (a half-done
region is simply re-swept: retired images are gone, so listing again is idempotent); the handler
continues in a new asynchronous invocation, at most MAX_CHAIN times in a row.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aws_lambda_powertools.metrics import single_metric
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from ..aws.clients import Aws
from ..aws.ec2 import NOT_FOUND_CODES, REFERENCES_BATCH, Ec2, RegionGateways, error_code, is_throttle
from ..aws.regions import known_regions, service_regions
from ..domain.evidence import (
    IMAGE_REFERENCES_SOURCES,
    NOT_SHARED,
    Evidence,
    LaunchPermissions,
    Sharing,
    Source,
    SourceAnswer,
    Usage,
    UsageEntry,
    UsageReport,
    assess_sharing,
    can_be_shared,
    report_request_failed,
    report_requested,
    usable_report,
    usage_of,
)
from ..domain.expiry import expiry_of
from ..domain.model import Image, Reference
from ..domain.report import ImageEntry, RegionReport, Report
from ..domain.retention import Decision, decide, deprecation_due, rank_families
from ..domain.settings import Settings
from ..domain.tags import TagError, TagKeys, format_instant, is_region_name, parse_bool, parse_instant, parse_retention
from ..runtime.observability import MetricUnit, count, logger, metrics
from .tagging import tag_image

# Stop when less than this is left of the Lambda's time: enough to finish the call in flight,
# write the report and invoke the follow-up.
SAFETY_MARGIN_MS = 60_000
# At most this many follow-up invocations in a row (each up to 15 minutes).
MAX_CHAIN = 20
# A managed snapshot must be at least this old before it can be deleted as an orphan: images
# being created or copied register their snapshots first.
ORPHAN_MIN_AGE = timedelta(hours=6)
# Per-image entries returned in the report, over all regions (the Lambda response is at most 6 MB).
MAX_REPORT_IMAGES = 10_000

InUseWay = Literal["auto", "image-references", "resource-listing"]
_AMI_ID = re.compile(r"\bami-[0-9a-f]{8,17}\b", re.ASCII)


class BadRequest(ValueError):
    """The invocation payload is not one the sweep accepts; the message says why."""


class OutOfTime(Exception):
    """Raised inside a region when the time budget is spent: the region is re-swept later."""


# ---------------------------------------------------------------- the payload


class SweepRequest(BaseModel):
    """`{"regions": [...], "dry_run": bool}`, all optional; the schedule sends `{"source": "schedule"}`
    and a follow-up invocation adds `continuation`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    regions: list[str] | None = Field(default=None, min_length=1, max_length=50)
    # None: absent, i.e. the stack's DryRun. An explicit `"dry_run": null` is refused by parse_request.
    dry_run: StrictBool | None = None
    source: Literal["schedule", "manual"] | None = None
    continuation: int = Field(default=0, ge=0, le=MAX_CHAIN)


def parse_request(event: Any, settings: Settings) -> SweepRequest:
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
        if not is_region_name(region) or region not in known_regions():
            raise BadRequest(f"invalid sweep payload: regions: {region[:40]!r} is not an AWS region")
        raise BadRequest(
            f"invalid sweep payload: regions: {region} is not swept by this stack "
            f"(sweep regions: {', '.join(settings.sweep_regions)})"
        )
    return request


# ---------------------------------------------------------------- time budget


@dataclass
class Budget:
    """The Lambda's remaining time; `None` means unlimited (the CLI, tests)."""

    remaining_ms: Callable[[], int] | None = None
    margin_ms: int = SAFETY_MARGIN_MS

    @classmethod
    def of(cls, context: Any, margin_ms: int = SAFETY_MARGIN_MS) -> Budget:
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        return cls(remaining if callable(remaining) else None, margin_ms)

    def exhausted(self) -> bool:
        return self.remaining_ms is not None and self.remaining_ms() < self.margin_ms

    def check(self) -> None:
        if self.exhausted():
            raise OutOfTime()


# ---------------------------------------------------------------- the sweep


def sweep(
    settings: Settings,
    aws: Aws,
    now: datetime,
    *,
    regions: Sequence[str] | None = None,
    dry_run: bool | None = None,
    account_id: str | None = None,
    budget: Budget | None = None,
    in_use_way: InUseWay = "auto",
    max_retirements: int | None = None,
) -> Report:
    """Sweep each region in turn, in two phases: every region is decided first; then, when the
    images to retire are within MaxRetirementsPerRun (`max_retirements` overrides it; 0: no limit),
    they are retired, else none is (report.blast_radius). A region that fails is reported and the
    next one is swept; when time runs out, `report.continuation["remaining_regions"]` lists what
    is left (the region in progress first)."""
    regions = list(dict.fromkeys(regions or settings.sweep_regions))
    dry_run = settings.dry_run if dry_run is None else dry_run
    budget = budget or Budget()
    cap = settings.max_retirements_per_run if max_retirements is None else max_retirements
    report = Report("sweep", dry_run, started_at=now)
    # Phase 1, every region: list, decide, check the evidence. Nothing is retired yet.
    planned: list[tuple[int, str, Generator[int, bool, None]]] = []
    would_retire = 0
    for index, region in enumerate(regions):
        if budget.exhausted():
            report.continuation = {"remaining_regions": regions[index:]}
            break
        out = report.region(region)
        steps = _region_steps(
            RegionGateways.of(aws, region),
            settings,
            now,
            out,
            dry_run=dry_run,
            account_id=account_id,
            budget=budget,
            in_use_way=in_use_way,
        )
        if _run_region(report, regions, index, lambda steps=steps: next(steps, None)):  # type: ignore[misc]
            break
        would_retire += out.notes.get("retirable", 0)
        planned.append((index, region, steps))
    if report.continuation and planned:
        # Out of time before anything was retired: the regions decided so far are swept again
        # (in a follow-up), their decisions are not acted on half-way.
        first = planned[0][0]
        for _, region, steps in planned:
            steps.close()
            report.region(region).status = "incomplete"
        report.continuation = {"remaining_regions": regions[first:]}
        planned = []
    # The blast-radius cap: all regions together, before anything is retired.
    allowed = not cap or would_retire <= cap
    if not allowed:
        report.blast_radius = {"would_retire": would_retire, "limit": cap}
        logger.error(
            "blast radius: more retirements than MaxRetirementsPerRun, none done",
            would_retire=would_retire,
            limit=cap,
        )
    # Phase 2: retire (if allowed), set deprecation times, clean up orphaned snapshots.
    for position, (index, _region, steps) in enumerate(planned):
        if report.continuation:
            steps.close()
            continue

        def execute(steps: Generator[int, bool, None] = steps) -> None:
            with contextlib.suppress(StopIteration):
                steps.send(allowed)

        if _run_region(report, regions, index, execute):
            for _, _, rest in planned[position + 1 :]:
                rest.close()
            break
    report.finished_at = datetime.now(UTC)
    return report


def _run_region(report: Report, regions: Sequence[str], index: int, step: Callable[[], object]) -> bool:
    """Run one step of a region; a failure is reported and the others go on. True when time ran out."""
    region = regions[index]
    out = report.region(region)
    if out.status == "failed":
        return False
    try:
        step()
    except OutOfTime:
        out.status = "incomplete"
        report.continuation = {"remaining_regions": regions[index:]}
        logger.warning("sweep out of time", region=region, remaining_regions=regions[index:])
        return True
    except Exception as e:  # one region's failure never stops the others
        out.fail(_describe_error(e))
        logger.exception("region sweep failed", region=region, error=out.error)
    return False


def sweep_region(
    gw: RegionGateways,
    settings: Settings,
    now: datetime,
    out: RegionReport,
    **kw: Any,
) -> None:
    """Sweep one region at once (decide, then act): `_region_steps` run to the end."""
    steps = _region_steps(gw, settings, now, out, **kw)
    if next(steps, None) is not None:
        with contextlib.suppress(StopIteration):
            steps.send(True)


def _region_steps(
    gw: RegionGateways,
    settings: Settings,
    now: datetime,
    out: RegionReport,
    *,
    dry_run: bool,
    account_id: str | None = None,
    budget: Budget | None = None,
    in_use_way: InUseWay = "auto",
    listing: Sequence[Image] | None = None,
    only: Collection[str] | None = None,
    snapshots: Sequence[dict[str, Any]] | None = None,
) -> Generator[int, bool, None]:
    """Sweep one region into `out` (filled as the work is done, so a failure keeps what was done).

    Two steps: the first decides and yields how many images it would retire; the value sent back
    says whether they may be retired (False: the blast-radius cap stopped the run; they are kept).

    A caller that has already listed the region (the backfill) passes `listing` (every image of the
    account there) and `snapshots` (its snapshots), and the sweep lists nothing again. `only`
    restricts what is decided, retired and deprecated to those image ids; every managed image still
    counts in its family's keep-latest ranking, and orphaned snapshots are then left alone.
    """
    budget = budget or Budget()
    ec2 = gw.ec2
    keys = settings.keys
    if listing is None:
        images = list(ec2.iter_images(filters=[{"Name": f"tag:{keys.managed}", "Values": ["true"]}]))
    else:
        images = [image for image in listing if image.tags.get(keys.managed) == "true"]
    ranks = rank_families(images, settings, account_id)
    if only is not None:
        images = [image for image in images if image.image_id in only]
    by_id = {image.image_id: image for image in images}

    def decide_one(image: Image, usage: Usage | None) -> Decision:
        return decide(image, ranks.get(image.image_id), usage, settings, now, account_id)

    decisions = {image.image_id: decide_one(image, None) for image in images}
    candidates = [image_id for image_id, d in decisions.items() if d.awaits_reference_check]
    if candidates:
        budget.check()
        evidence, out.notes["in_use_check"] = gather_evidence(gw, candidates, in_use_way)
        sharing = check_sharing(
            ec2, [by_id[i] for i in candidates], decisions, settings, now, out, dry_run=dry_run, account_id=account_id
        )
        for image_id in candidates:
            decisions[image_id] = decide_one(by_id[image_id], usage_of(image_id, evidence, sharing[image_id]))
    else:
        out.notes["in_use_check"] = {"way": "none", "candidates": 0}

    entries: dict[str, ImageEntry] = {}
    to_retire: list[Image] = []
    for image in sorted(images, key=lambda i: (i.creation_date, i.image_id)):
        d = decisions[image.image_id]
        entries[image.image_id] = out.add(_entry(image, d))
        if d.retire:
            to_retire.append(image)
        else:
            out.totals.count_kept(d.reason)
            logger.info(
                "image kept",
                image_id=image.image_id,
                region=ec2.region,
                reason=str(d.reason),
                detail=d.detail,
                reasons=list(d.reasons),
            )

    out.notes["retirable"] = len(to_retire)
    allowed = yield len(to_retire)
    if not allowed:
        for image in to_retire:
            e = entries[image.image_id]
            e.decision, e.reason, e.outcome = "keep", "blast-radius", "kept"
            e.detail = "retirable, but this run would retire more images than MaxRetirementsPerRun: none retired"
            out.totals.count_kept("blast-radius")
        to_retire = []

    # Dry run: to predict which snapshots EC2 would skip (still used by another image, managed or
    # not), look at every image of the account in the region. A real run lets EC2 decide.
    everything = (list(listing) if listing is not None else list(ec2.iter_images())) if dry_run and to_retire else None
    users = Counter(snapshot for image in everything or () for snapshot in image.snapshot_ids)
    gone: set[str] = set()
    for image in to_retire:
        budget.check()
        if _retire(ec2, image, entries[image.image_id], users, out, dry_run=dry_run):
            gone.add(image.image_id)

    for image in images:
        if decisions[image.image_id].retire:
            continue
        if expiry_of(image, keys, tool_default=settings.retention).rewrite:
            budget.check()
            _retag(ec2, image, settings, now, entries[image.image_id], out, dry_run=dry_run, account_id=account_id)
            continue
        at = deprecation_due(image, settings, now, account_id)
        if at is not None:
            budget.check()
            _deprecate(ec2, image, at, entries[image.image_id], out, dry_run=dry_run)

    if only is not None:
        return
    budget.check()
    reconcile_orphan_snapshots(
        ec2,
        images,
        gone,
        settings,
        now,
        out,
        dry_run=dry_run,
        budget=budget,
        everything=everything if everything is not None else listing,
        snapshots=snapshots,
    )


def _entry(image: Image, d: Decision) -> ImageEntry:
    return ImageEntry(
        image_id=image.image_id,
        name=image.name,
        decision=d.action,
        reason=str(d.reason),
        detail=d.detail,
        outcome="" if d.retire else "kept",
        reasons=list(d.reasons) if len(d.blockers) > 1 else [],
        family=d.family,
        created=format_instant(image.creation_date),
        expires_at=format_instant(d.expires_at) if d.expires_at else None,
        references=[str(r) for r in d.references],
    )


# ---------------------------------------------------------------- in use?

# The fewest calls listing every source can take: DescribeInstances, DescribeLaunchTemplates,
# DescribeParameters, ListImageRecipes, ListContainerRecipes (one page each, no template versions).
LISTING_MIN_CALLS = 5


def gather_evidence(
    gw: RegionGateways, image_ids: Sequence[str], way: InUseWay = "auto"
) -> tuple[Evidence, dict[str, Any]]:
    """What references each candidate, which sources answered, and a note on how.

    Two ways cover the same sources (evidence.Source):
    - "image-references": DescribeImageReferences (ceil(n/10) calls) answers for instances, every
      launch template version, SSM parameters and Image Builder recipes;
    - "resource-listing": DescribeInstances (1 call per 1000 instances), DescribeLaunchTemplates (1
      per 200) + DescribeLaunchTemplateVersions (1 per template), DescribeParameters of data type
      aws:ec2:image (1 per 50) + GetParameters (1 per 10), ListImageRecipes + ListContainerRecipes.
    Launch configurations are listed either way (DescribeLaunchConfigurations). "auto" takes
    DescribeImageReferences unless listing is cheaper (counted from the launch templates, whose
    listing is then reused). When DescribeImageReferences fails (refused, throttled past retries),
    each of its sources is listed instead; a source whose listing fails too has not answered, and
    every candidate is then kept as `unverified` (evidence.Evidence.unverified).
    """
    ec2 = gw.ec2
    ordered = list(dict.fromkeys(image_ids))
    wanted = set(ordered)
    reference_calls = math.ceil(len(wanted) / REFERENCES_BATCH)
    note: dict[str, Any] = {"candidates": len(wanted), "image_references_calls": reference_calls}
    evidence = Evidence()
    templates: list[str] | None = None
    chosen = way
    if way == "auto":
        chosen = "image-references"
        if reference_calls > LISTING_MIN_CALLS:
            try:
                templates = ec2.launch_template_ids()
            except (ClientError, BotoCoreError) as e:  # DescribeImageReferences will tell
                note["templates_not_listed"] = _describe_error(e)
            else:
                # DescribeInstances, the template listing (spent), one call per template, SSM, Image Builder.
                listing_calls = LISTING_MIN_CALLS + len(templates)
                note["listing_calls_estimate"] = listing_calls
                if listing_calls - 1 < reference_calls:
                    chosen = "resource-listing"

    if chosen == "image-references":
        try:
            found = ec2.image_references(ordered)
        except (ClientError, BotoCoreError) as e:
            error = _describe_error(e)
            note["fallback"] = f"DescribeImageReferences failed ({error}): listed each source instead"
            logger.warning(
                "DescribeImageReferences failed: listing each source instead", region=ec2.region, error=error
            )
            for source in IMAGE_REFERENCES_SOURCES:
                evidence.record(SourceAnswer(source, "DescribeImageReferences", False, error))
            chosen = "resource-listing"
        else:
            evidence.add(found, wanted)
            for source in IMAGE_REFERENCES_SOURCES:
                evidence.record(SourceAnswer(source, "DescribeImageReferences", True))
    if chosen == "resource-listing":

        def template_versions() -> Mapping[str, Sequence[Reference]]:
            ids = ec2.launch_template_ids() if templates is None else templates
            return ec2.launch_template_versions_image_ids(ids)

        _listed(evidence, wanted, Source.INSTANCES, "DescribeInstances", ec2.instance_image_ids)
        _listed(
            evidence,
            wanted,
            Source.LAUNCH_TEMPLATES,
            "DescribeLaunchTemplates+DescribeLaunchTemplateVersions",
            template_versions,
        )
        _listed(evidence, wanted, Source.SSM_PARAMETERS, "DescribeParameters+GetParameters", gw.ssm.image_parameters)
        _listed(
            evidence,
            wanted,
            Source.IMAGE_BUILDER_RECIPES,
            "ListImageRecipes+ListContainerRecipes",
            gw.imagebuilder.recipe_image_ids,
            absent_service="imagebuilder",
            region=gw.region,
        )
    _listed(
        evidence,
        wanted,
        Source.LAUNCH_CONFIGURATIONS,
        "DescribeLaunchConfigurations",
        gw.autoscaling.launch_configuration_image_ids,
    )
    note["way"] = chosen
    note["sources"] = evidence.note()
    missing = evidence.missing()
    if missing:
        note["unverified_sources"] = [str(s) for s in missing]
        logger.warning(
            "in-use check incomplete: candidates kept as unverified",
            region=ec2.region,
            sources=evidence.unverified(),
        )
    logger.info("in-use check", region=ec2.region, **note, in_use=len(evidence.references))
    return evidence, note


def _listed(
    evidence: Evidence,
    wanted: set[str],
    source: Source,
    by: str,
    listing: Callable[[], Mapping[str, Sequence[Reference]]],
    *,
    absent_service: str | None = None,
    region: str = "",
) -> None:
    """Ask one source by listing it; record its answer (or why it gave none)."""
    try:
        found = listing()
    except (ClientError, BotoCoreError) as e:
        if absent_service and isinstance(e, EndpointConnectionError) and region not in service_regions(absent_service):
            # The service is not offered in this region: nothing of it can reference the image.
            evidence.record(SourceAnswer(source, f"{by} (not offered in {region})", True))
            return
        evidence.record(SourceAnswer(source, by, False, _describe_error(e)))
        return
    evidence.add(found, wanted)
    evidence.record(SourceAnswer(source, by, True))


# ---------------------------------------------------------------- shared images


def check_sharing(
    ec2: Ec2,
    candidates: Sequence[Image],
    decisions: Mapping[str, Decision],
    settings: Settings,
    now: datetime,
    out: RegionReport,
    *,
    dry_run: bool,
    account_id: str | None,
) -> dict[str, Sharing]:
    """The shared-image check of the candidates (PRODUCT.md section 8): their launch permissions
    (DescribeImageAttribute, one call per candidate that can be shared), then, for the shared ones,
    their usage reports (DescribeImageUsageReports, 200 images per call), the entries of the
    reports that can decide (DescribeImageUsageReportEntries), and a new report where none can
    (CreateImageUsageReport; never in a dry run). Whatever cannot be read keeps the image."""
    mode = settings.shared_image_check
    verdicts: dict[str, Sharing] = {}
    shareable = [image for image in candidates if mode != "off" and can_be_shared(image)]
    for image in candidates:
        verdicts[image.image_id] = NOT_SHARED
    if not shareable:
        out.notes["shared_check"] = {"mode": mode, "launch_permissions_read": 0}
        return verdicts

    permissions: dict[str, LaunchPermissions | None] = {}
    errors: dict[str, str] = {}
    for image in shareable:
        try:
            permissions[image.image_id] = ec2.launch_permissions(image)
        except (ClientError, BotoCoreError) as e:
            permissions[image.image_id] = None
            errors[image.image_id] = _describe_error(e)
    shared = [
        image
        for image in shareable
        if permissions[image.image_id] is None or permissions[image.image_id].consumers(account_id)  # type: ignore[union-attr]
    ]
    reports: list[UsageReport] | None = []
    reports_error = ""
    needs_reports = [i for i in shared if permissions[i.image_id] is not None] if mode == "strict" else []
    if needs_reports:
        try:
            reports = ec2.usage_reports([i.image_id for i in needs_reports])
        except (ClientError, BotoCoreError) as e:
            reports, reports_error = None, _describe_error(e)
    by_image: dict[str, list[UsageReport]] = defaultdict(list)
    for r in reports or ():
        by_image[r.image_id].append(r)
    # The reports that can decide: per image, the newest available one made since it expired.
    deciding = {}
    for image in needs_reports:
        expires_at = decisions[image.image_id].expires_at or now
        chosen = usable_report(by_image[image.image_id], expires_at, now, "available")
        if chosen is not None:
            deciding[image.image_id] = chosen.report_id
    entries: dict[str, list[UsageEntry]] | None = {}
    entries_error = ""
    if deciding:
        try:
            entries = ec2.usage_report_entries(sorted(set(deciding.values())))
        except (ClientError, BotoCoreError) as e:
            entries, entries_error = None, _describe_error(e)

    requested: list[str] = []
    for image in shareable:
        image_id = image.image_id
        verdict = assess_sharing(
            image,
            decisions[image_id].expires_at or now,
            now,
            mode=mode,
            owner=account_id,
            permissions=permissions[image_id],
            permissions_error=errors.get(image_id, ""),
            reports=None if reports is None else by_image[image_id],
            reports_error=reports_error,
            entries=entries,
            entries_error=entries_error,
            dry_run=dry_run,
        )
        if verdict.request_report:
            token = f"ami-lifecycle-{image_id}-{now:%Y%m%d}"
            try:
                report_id = ec2.create_usage_report(image_id, token)
            except (ClientError, BotoCoreError) as e:
                verdict = report_request_failed(verdict, _describe_error(e))
            else:
                requested.append(report_id)
                verdict = report_requested(verdict, report_id)
        verdicts[image_id] = verdict
    out.notes["shared_check"] = {
        "mode": mode,
        "launch_permissions_read": len(shareable),
        "shared": len(shared),
        "usage_reports_requested": requested,
    }
    if errors or reports_error or entries_error:
        out.notes["shared_check"]["errors"] = {
            **({"launch_permissions": errors} if errors else {}),
            **({"usage_reports": reports_error} if reports_error else {}),
            **({"usage_report_entries": entries_error} if entries_error else {}),
        }
    return verdicts


# ---------------------------------------------------------------- retire


def _retire(
    ec2: Ec2, image: Image, entry: ImageEntry, users: Counter[str], out: RegionReport, *, dry_run: bool
) -> bool:
    """Deregister one image and its snapshots. Returns whether the image is gone."""
    if dry_run:
        # What EC2 will do: delete each snapshot no other image uses, skip the others.
        entry.snapshots = [
            {"SnapshotId": s, "ReturnCode": "would-skip" if users[s] > 1 else "would-delete"}
            for s in image.snapshot_ids
        ]
        users.subtract(image.snapshot_ids)
        entry.outcome = "would retire"
        out.totals.retired += 1
        out.totals.snapshots_deleted += sum(1 for s in entry.snapshots if s["ReturnCode"] == "would-delete")
        logger.info(
            "image would be retired (dry run)", image_id=image.image_id, region=ec2.region, snapshots=entry.snapshots
        )
        return False
    try:
        results = ec2.deregister(image.image_id, delete_snapshots=True)
    except ClientError as e:
        if is_throttle(e):
            raise
        if error_code(e) in NOT_FOUND_CODES:
            entry.outcome, entry.detail = "gone", "already deregistered"
            logger.info("image already gone", image_id=image.image_id, region=ec2.region)
            return True
        entry.outcome = "failed"
        entry.errors.append(f"DeregisterImage: {_describe_error(e)}")
        out.totals.errors += 1
        logger.error("image not retired", image_id=image.image_id, region=ec2.region, error=entry.errors[-1])
        return False

    users.subtract(image.snapshot_ids)
    entry.outcome = "retired"
    entry.snapshots = results
    out.totals.retired += 1
    reported = {r["SnapshotId"] for r in results}
    for result in results:
        code = result["ReturnCode"]
        if code == "success":
            out.totals.snapshots_deleted += 1
        elif code != "skipped":  # skipped: still used by another image, as expected
            entry.errors.append(f"snapshot {result['SnapshotId']} not deleted: {code}")
            out.totals.errors += 1
    for snapshot in image.snapshot_ids:
        if snapshot not in reported:
            # Deleted later by the orphan reconciliation if no image uses it.
            entry.snapshots.append({"SnapshotId": snapshot, "ReturnCode": "unreported"})
    log = logger.error if entry.errors else logger.info
    log("image retired", image_id=image.image_id, region=ec2.region, snapshots=entry.snapshots, errors=entry.errors)
    return True


def _retag(
    ec2: Ec2,
    image: Image,
    settings: Settings,
    now: datetime,
    entry: ImageEntry,
    out: RegionReport,
    *,
    dry_run: bool,
    account_id: str | None,
) -> None:
    """Live tags: the tool's P:expires-at no longer follows P:retention (or lacks its basis). The
    decision above already used the live expiry; this brings the tags and deprecation time in line."""
    try:
        result = tag_image(ec2, image, settings, now, account_id, dry_run=dry_run)
    except ClientError as e:
        if is_throttle(e):
            raise
        entry.errors.append(f"rewriting the expiry: {_describe_error(e)}")
        out.totals.errors += 1
        return
    verb = "would rewrite" if dry_run else "rewrote"
    changed = [f"{k}={v}" for k, v in result.tags_written.items()] + [f"-{k}" for k in result.removed_keys]
    if changed:
        entry.actions.append(f"{verb} the expiry (P:retention changed): {', '.join(changed)}")
        out.totals.tagged += 1
    if result.deprecate_at:
        entry.actions.append(f"{'would set' if dry_run else 'set'} deprecation time to {result.deprecate_at}")
        out.totals.deprecations_set += 1
    if result.deprecation_removed:
        entry.actions.append(f"{'would remove' if dry_run else 'removed'} the deprecation time (retention forever)")


def _deprecate(ec2: Ec2, image: Image, at: datetime, entry: ImageEntry, out: RegionReport, *, dry_run: bool) -> None:
    when = format_instant(at)
    if not dry_run:
        try:
            ec2.enable_deprecation(image.image_id, at)
        except ClientError as e:
            if is_throttle(e):
                raise
            if error_code(e) in NOT_FOUND_CODES:
                return
            entry.errors.append(f"EnableImageDeprecation: {_describe_error(e)}")
            out.totals.errors += 1
            logger.error("deprecation not set", image_id=image.image_id, region=ec2.region, error=entry.errors[-1])
            return
    entry.actions.append(f"{'would set' if dry_run else 'set'} deprecation time to {when}")
    out.totals.deprecations_set += 1
    logger.info("deprecation time set", image_id=image.image_id, region=ec2.region, deprecate_at=when, dry_run=dry_run)


# ---------------------------------------------------------------- orphaned snapshots


def reconcile_orphan_snapshots(
    ec2: Ec2,
    images: Sequence[Image],
    gone: set[str],
    settings: Settings,
    now: datetime,
    out: RegionReport,
    *,
    dry_run: bool,
    budget: Budget | None = None,
    everything: Sequence[Image] | None = None,
    snapshots: Sequence[dict[str, Any]] | None = None,
) -> None:
    """Delete snapshots tagged `P:managed=true` whose image no longer exists (`snapshots`: the
    region's snapshots when the caller has listed them already).

    A snapshot is deleted only when all hold: it is owned by this account and tagged
    `P:managed=true`; it carries no `P:hold` other than false (an unreadable one keeps it), and no
    `P:expires-at`/`P:retention` that keeps it (a future or unreadable expiry, `forever`); it is
    completed and older than ORPHAN_MIN_AGE; its Description names at least one image id (as
    CreateImage/CopyImage/RegisterImage write it) and none of those images exists in the region, in
    any state (pending, available, disabled, failed), nor in the Recycle Bin; no image of the
    account in the region, in any state, uses it; and it is not shared (no createVolumePermission:
    another account may have registered an image on it). One DescribeSnapshots call per 1000 managed
    snapshots; all images are listed, the Recycle Bin and the sharing checked, only when there is a
    candidate. Anything that cannot be checked leaves the snapshot in place.
    """
    budget = budget or Budget()
    keys = settings.keys
    live = [image for image in images if image.image_id not in gone]
    registered = {image.image_id for image in live}
    used = {snapshot for image in live for snapshot in image.snapshot_ids}
    candidates: list[tuple[str, set[str]]] = []
    listed = (
        snapshots
        if snapshots is not None
        else ec2.iter_snapshots(filters=[{"Name": f"tag:{keys.managed}", "Values": ["true"]}])
    )
    for snapshot in listed:
        sid = snapshot["SnapshotId"]
        tags = {t["Key"]: t.get("Value", "") for t in snapshot.get("Tags") or []}
        started = snapshot.get("StartTime")
        named = set(_AMI_ID.findall(snapshot.get("Description") or ""))
        if (
            tags.get(keys.managed) != "true"
            or snapshot_kept_by_tags(tags, keys, now, started if isinstance(started, datetime) else None)
            or sid in used
            or snapshot.get("State") != "completed"
            or not isinstance(started, datetime)
            or now - started < ORPHAN_MIN_AGE
            or not named
            or named & registered
        ):
            continue
        candidates.append((sid, named))
    out.notes["orphan_snapshot_candidates"] = len(candidates)
    if not candidates:
        return

    # Confirm against every image of the account in the region, unmanaged ones included.
    budget.check()
    if everything is None:
        everything = list(ec2.iter_images())
    registered_all = {image.image_id for image in everything} - gone
    used_all = {s for image in everything if image.image_id not in gone for s in image.snapshot_ids}
    confirmed = [(sid, named) for sid, named in candidates if sid not in used_all and not named & registered_all]
    if not confirmed:
        return
    # An image in the Recycle Bin can be restored only with its snapshots: leave those alone. If the
    # bin cannot be checked, delete nothing (this is a clean-up: it can wait for the next sweep).
    try:
        in_bin = ec2.images_in_recycle_bin(sorted(set().union(*(named for _, named in confirmed))))
    except Exception as e:
        if is_throttle(e):
            raise
        out.notes["orphan_snapshots_left"] = (
            f"{len(confirmed)} orphaned snapshots left in place: the Recycle Bin could not be checked "
            f"({_describe_error(e)})"
        )
        logger.warning("orphaned snapshots left in place", region=ec2.region, reason=out.notes["orphan_snapshots_left"])
        return
    for sid, named in confirmed:
        budget.check()
        record = {"snapshot_id": sid, "images": ",".join(sorted(named))}
        try:
            shared = ec2.snapshot_shared(sid)
        except (ClientError, BotoCoreError) as e:
            record["outcome"] = f"kept: its sharing could not be checked ({_describe_error(e)})"
            out.snapshots.append(record)
            continue
        if named & in_bin:
            record["outcome"] = "kept: its image is in the Recycle Bin"
        elif shared:
            record["outcome"] = "kept: shared with another account (createVolumePermission)"
        elif dry_run:
            record["outcome"] = "would delete (orphaned)"
            out.totals.snapshots_deleted += 1
        else:
            try:
                ec2.delete_snapshot(sid)
                record["outcome"] = "deleted (orphaned)"
                out.totals.snapshots_deleted += 1
            except ClientError as e:
                if is_throttle(e):
                    raise
                if error_code(e) == "InvalidSnapshot.NotFound":
                    continue
                record["outcome"] = "not deleted"
                record["error"] = _describe_error(e)
                if error_code(e) != "InvalidSnapshot.InUse":
                    out.totals.errors += 1
        out.snapshots.append(record)
        log = logger.warning if "error" in record else logger.info
        log("orphaned snapshot", region=ec2.region, dry_run=dry_run, snapshot=record)


def snapshot_kept_by_tags(tags: Mapping[str, str], keys: TagKeys, now: datetime, started: datetime | None) -> bool:
    """Whether a snapshot's own lifecycle tags keep it: a hold (or an unreadable one), or an expiry
    that is in the future, never comes, or cannot be read."""
    try:
        if parse_bool(tags.get(keys.hold)) is not False and keys.hold in tags:
            return True
    except TagError:
        return True
    if keys.expires_at not in tags and keys.retention not in tags:
        return False
    try:
        if keys.expires_at in tags:
            return parse_instant(tags[keys.expires_at]) > now
        retention = parse_retention(tags[keys.retention])
        if retention.forever or started is None:
            return True
        expiry = retention.expiry(started)
        return expiry is None or expiry > now
    except (TagError, OverflowError):
        return True


# ---------------------------------------------------------------- the Lambda around it


def continue_sweep(
    lambda_client: Any, function_arn: str, request: SweepRequest, remaining: Sequence[str], dry_run: bool
) -> dict[str, Any]:
    """Invoke this function again, asynchronously, for the regions left. Capped at MAX_CHAIN."""
    following = request.continuation + 1
    info: dict[str, Any] = {
        "remaining_regions": list(remaining),
        "next": following,
        "requested": False,
        "capped": False,
    }
    if following > MAX_CHAIN:
        info["capped"] = True
        logger.error(
            "sweep chain capped: regions left for the next scheduled sweep",
            remaining_regions=list(remaining),
            max_chain=MAX_CHAIN,
        )
        return info
    payload = {"regions": list(remaining), "dry_run": dry_run, "continuation": following}
    try:
        lambda_client.invoke(FunctionName=function_arn, InvocationType="Event", Payload=json.dumps(payload).encode())
    except (ClientError, BotoCoreError) as e:
        info["error"] = f"could not invoke the follow-up: {_describe_error(e)}"
        logger.error("sweep follow-up not invoked", error=info["error"], remaining_regions=list(remaining))
        return info
    info["requested"] = True
    logger.info("sweep continues in a follow-up invocation", payload=payload)
    return info


def handle(
    event: Any, context: Any, settings: Settings, aws: Aws, now: datetime, account_id: str | None = None
) -> dict[str, Any]:
    """What RetentionSweepFunction does with one invocation (the handler is a thin shell around it)."""
    try:
        request = parse_request(event, settings)
    except BadRequest as e:
        logger.error("sweep payload refused", error=str(e), payload=_clip(event))
        count("SweepRefused")
        return {"status": "refused", "error": str(e)}
    dry_run = settings.dry_run if request.dry_run is None else request.dry_run
    regions = request.regions or list(settings.sweep_regions)
    logger.info(
        "sweep started", regions=regions, dry_run=dry_run, source=request.source, continuation=request.continuation
    )
    budget = Budget.of(context)
    report = sweep(settings, aws, now, regions=regions, dry_run=dry_run, account_id=account_id, budget=budget)
    remaining = (report.continuation or {}).get("remaining_regions") or []
    if remaining:
        function_arn = getattr(context, "invoked_function_arn", "")
        lambda_client = aws.client("lambda", settings.home_region)
        report.continuation = continue_sweep(lambda_client, function_arn, request, remaining, dry_run)
    logger.info("sweep report", report=report.summary())
    emit_metrics(report)
    return report.to_dict(max_images_per_region=max(100, MAX_REPORT_IMAGES // max(1, len(regions))))


def emit_metrics(report: Report) -> None:
    """ImagesRetired, ImagesKept (total, and per reason with a Reason dimension), SnapshotsDeleted,
    SweepErrors, SweepRegionsFailed, DeprecationsSet, and SweepCompleted (1 when the whole sweep,
    follow-ups included, has run: the "sweep not run" alarm watches it). Dry runs count
    ImagesRetirable instead of ImagesRetired and SnapshotsDeleted."""
    totals = report.totals
    if report.dry_run:
        count("ImagesRetirable", totals.retired)
    else:
        count("ImagesRetired", totals.retired)
        count("SnapshotsDeleted", totals.snapshots_deleted)
        count("DeprecationsSet", totals.deprecations_set)
    count("ImagesKept", sum(totals.kept.values()))
    count("SweepErrors", totals.errors)
    count("SweepRegionsFailed", sum(1 for r in report.regions.values() if r.status == "failed"))
    if report.blast_radius and not report.dry_run:
        count("SweepBlastRadius")
    continuation = report.continuation or {}
    if continuation.get("requested"):
        count("SweepContinued")
    if continuation.get("capped") or continuation.get("error"):
        count("SweepErrors")
    if not continuation.get("remaining_regions"):
        metrics.add_metric(name="SweepCompleted", unit=MetricUnit.Count, value=1)
    for reason, n in sorted(totals.kept.items()):
        with single_metric(name="ImagesKept", unit=MetricUnit.Count, value=n) as metric:
            metric.add_dimension(name="Reason", value=reason)


def _describe_error(e: BaseException) -> str:
    if isinstance(e, ClientError):
        message = str(e.response.get("Error", {}).get("Message", ""))
        return f"{error_code(e)}: {message}"[:500]
    return f"{type(e).__name__}: {e}"[:500]


def _clip(event: Any) -> Any:
    text = repr(event)
    return event if len(text) <= 2000 else text[:2000] + "…"
