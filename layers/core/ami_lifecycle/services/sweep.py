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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import single_metric
from botocore.exceptions import BotoCoreError, ClientError

from ..aws.ec2 import Ec2, RegionGateways
from ..aws.errors import describe_error as _describe_error
from ..aws.sqs import CopyQueue
from ..domain.adoption import Verdict
from ..domain.report import Report
from ..domain.requests import MAX_CHAIN, BadRequest, SweepRequest, parse_sweep_request
from ..domain.retention import Decision, is_managed, rank_families
from ..runtime import Deps
from ..runtime.budget import OutOfTime
from ..runtime.observability import MetricUnit, count, logger, metrics
from .evidence import InUseWay
from .executor import Executor
from .payloads import clip_payload
from .pipeline import ADOPTED_THIS_RUN, BLAST_RADIUS, Copies, RegionWork, read_inventory

# Per-image entries returned in the report, over all regions (the Lambda response is at most 6 MB).
MAX_REPORT_IMAGES = 10_000
MISSED = (
    "no EC2 AMI State Change event adopted it (the event was missed, or the image is older than the "
    "stack): adopted by the sweep, and not retired before the next sweep"
)


@dataclass
class _Region:
    """One region's state between the two phases."""

    work: RegionWork
    decided: list[Any]  # the managed images decided (not those adopted in this run)
    decisions: dict[str, Decision]
    retirable: list[Any]


def sweep(
    deps: Deps,
    *,
    regions: Sequence[str] | None = None,
    dry_run: bool | None = None,
    in_use_way: InUseWay = "auto",
    max_retirements: int | None = None,
) -> Report:
    """Sweep each region, in two phases. Phase 1, every region: read the inventory; adopt the
    images no event adopted (ManageNewImages) and request the copies managed images lack; decide
    every managed image and gather the evidence of non-use. Phase 2, when the images to retire
    are within MaxRetirementsPerRun over all regions (`max_retirements` overrides it; 0: no limit):
    retire them (else none: report.blast_radius); reconcile the kept ones' live tags and
    deprecation times; delete orphaned managed snapshots. A region that fails is reported and the
    next one is swept; when time runs out, `report.continuation["remaining_regions"]` lists what is
    left (the region in progress first)."""
    settings = deps.settings
    regions = list(dict.fromkeys(regions or settings.sweep_regions))
    dry_run = settings.dry_run if dry_run is None else dry_run
    cap = settings.max_retirements_per_run if max_retirements is None else max_retirements
    report = Report("sweep", dry_run, started_at=deps.clock())
    queue = CopyQueue.of(deps.aws, settings.copy_queue_url, settings.home_region) if settings.copy_queue_url else None
    copies = Copies(lambda region: Ec2(deps.aws.ec2(region), region), settings.keys)
    works: dict[str, RegionWork] = {}

    # Phase 1a: the inventories (the copies of one region are sources' evidence in another).
    for index, region in enumerate(regions):
        if deps.budget.exhausted():
            report.continuation = {"remaining_regions": regions[index:]}
            break

        def read(region: str = region) -> None:
            gw = RegionGateways.of(deps.aws, region)
            executor = Executor(gw.ec2, dry_run=dry_run, queue=queue, budget=deps.budget)
            works[region] = RegionWork(deps, gw, report.region(region), executor, read_inventory(gw.ec2), copies)
            copies.add(region, works[region].inventory.images)

        if _run_region(report, regions, index, read):
            break
    # Phase 1b: adopt, replicate, decide.
    planned: dict[str, _Region] = {}
    if not report.continuation:
        for index, region in enumerate(regions):
            if region not in works:
                continue

            def plan(region: str = region) -> None:
                planned[region] = _plan_region(works[region], in_use_way)

            if _run_region(report, regions, index, plan):
                break
    if report.continuation:
        # Out of time before anything was retired: the regions decided so far are swept again
        # (in a follow-up), their decisions are not acted on half-way.
        first = next((i for i, r in enumerate(regions) if r in works), None)
        for region in works:
            if report.region(region).status != "failed":
                report.region(region).status = "incomplete"
        if first is not None:
            report.continuation = {"remaining_regions": regions[first:]}
        planned = {}
    would_retire = sum(len(p.retirable) for p in planned.values())
    allowed = not cap or would_retire <= cap
    if not allowed:
        report.blast_radius = {"would_retire": would_retire, "limit": cap}
        logger.error(
            "blast radius: more retirements than MaxRetirementsPerRun, none done", would_retire=would_retire, limit=cap
        )
    # Phase 2: retire (if allowed), reconcile the kept images, clean up orphaned snapshots.
    for index, region in enumerate(regions):
        if region not in planned or report.continuation:
            continue

        def execute(p: _Region = planned[region]) -> None:
            _execute_region(p, allowed)

        if _run_region(report, regions, index, execute):
            break
    for work in works.values():
        work.publish(work.inventory.images)
    report.finished_at = deps.clock()
    return report


def _plan_region(work: RegionWork, in_use_way: InUseWay) -> _Region:
    settings, keys = work.deps.settings, work.deps.settings.keys
    inventory = work.inventory
    adopted: set[str] = set()
    # Missed events: every image not (exactly) P:managed=true gets the adoption rule.
    for image in list(inventory.images):
        if image.tags.get(keys.managed) == "true" or image.state != "available":
            continue
        result = work.adopt(image)
        e = work.entry(image)
        if result.verdict is Verdict.ADOPTED and result.wrote:
            adopted.add(image.image_id)
            e.detail = MISSED
        elif result.verdict is Verdict.REFUSED:
            e.decision, e.reason, e.detail, e.outcome = "skip", "refused", result.reason, "refused"
        elif e.errors:  # the adoption was refused by AWS: reported, and it stays unmanaged
            e.decision, e.reason, e.detail, e.outcome = "adopt", "failed", result.reason, "failed"
        else:
            work.entries.pop(image.image_id, None)  # not the tool's: not reported
    if adopted:
        work.out.notes["adopted"] = {"images": len(adopted), "why": MISSED}
        if not work.dry_run:
            count("ImagesAdoptedBySweep", len(adopted))
        logger.warning("sweep adopted images no event adopted", region=work.out.region, images=sorted(adopted))
    managed = [i for i in inventory.images if is_managed(i, keys) and i.tags.get(keys.managed) == "true"]
    # Missing copies (only with a copy queue: the stack always has one).
    if settings.copy_queue_url:
        ranks = rank_families(managed, settings, work.deps.account_id)
        for image in managed:
            if image.state == "available":
                work.replicate(image, ranks, retry_failed=False)
    # The images adopted in this run are neither decided nor ranked yet: a family's keep-latest
    # does not move in the run that first sees its new member (the next sweep ranks it).
    selected = [i for i in managed if i.image_id not in adopted]
    decisions = work.decide(selected, selected, in_use_way)
    for image in managed:
        if image.image_id in adopted:
            work.spare(image, ADOPTED_THIS_RUN, MISSED)
            work.entry(image).outcome = "would adopt" if work.dry_run else "adopted"
    retirable = [i for i in selected if decisions[i.image_id].retire]
    work.out.notes["retirable"] = len(retirable)
    return _Region(work, selected, decisions, retirable)


def _execute_region(p: _Region, allowed: bool) -> None:
    work = p.work
    retire = p.retirable
    if not allowed:
        for image in retire:
            work.spare(
                image,
                BLAST_RADIUS,
                "retirable, but this run would retire more images than MaxRetirementsPerRun: none retired",
            )
        retire = []
    gone = work.retire(sorted(retire, key=lambda i: (i.creation_date, i.image_id)))
    work.reconcile_kept(p.decided, p.decisions)
    work.reconcile_orphans(gone)
    work.note_freed()


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


# ---------------------------------------------------------------- the Lambda around it


def continue_sweep(deps: Deps, request: SweepRequest, remaining: Sequence[str], dry_run: bool) -> dict[str, Any]:
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
    if deps.invoke is None:
        info["error"] = "no follow-up invocation possible here: run the sweep again for the regions left"
        logger.error("sweep follow-up not invoked", error=info["error"], remaining_regions=list(remaining))
        return info
    try:
        deps.invoke(payload)
    except (ClientError, BotoCoreError) as e:
        info["error"] = f"could not invoke the follow-up: {_describe_error(e)}"
        logger.error("sweep follow-up not invoked", error=info["error"], remaining_regions=list(remaining))
        return info
    info["requested"] = True
    logger.info("sweep continues in a follow-up invocation", payload=payload)
    return info


def handle(event: Any, deps: Deps) -> dict[str, Any]:
    """What RetentionSweepFunction does with one invocation (the handler is a thin shell around it)."""
    settings = deps.settings
    try:
        request = parse_sweep_request(event, settings, deps.known_regions)
    except BadRequest as e:
        logger.error("sweep payload refused", error=str(e), payload=clip_payload(event))
        count("SweepRefused")
        return {"status": "refused", "error": str(e)}
    dry_run = settings.dry_run if request.dry_run is None else request.dry_run
    regions = request.regions or list(settings.sweep_regions)
    logger.info(
        "sweep started", regions=regions, dry_run=dry_run, source=request.source, continuation=request.continuation
    )
    report = sweep(deps, regions=regions, dry_run=dry_run)
    remaining = (report.continuation or {}).get("remaining_regions") or []
    if remaining:
        report.continuation = continue_sweep(deps, request, remaining, dry_run)
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
