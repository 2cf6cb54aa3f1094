"""The retention sweep (RetentionSweepFunction): retire expired images per PRODUCT.md section 2,
in every covered (account, region) pair (section 7).

Per pair, independently (one pair failing, or one account whose role cannot be assumed, never
stops the others; an account's role is assumed once per run, see aws/accounts.py):

1. List the managed images: DescribeImages, Owners=self, `tag:P:managed=true`, disabled and
   deprecated included, pages of 1000 (ceil(n/1000) calls). Deregistration protection comes with
   them (`DeregistrationProtection`): no extra call.
2. Rank the families and decide the pure part of the rule (`retention.decide`).
3. Only for the images that pass every other condition (the candidates), gather the evidence of
   non-use (`gather_evidence`): every `evidence.Source` must answer, by DescribeImageReferences
   (ceil(candidates/10) calls) or by listing when that is cheaper; launch configurations are
   listed either way. A source that cannot answer keeps every candidate (`unverified`). Then the
   shared-image check (`check_sharing`): launch permissions, the managed consumers' references
   through their spoke role, usage reports for the others.
   Steps 1-3 run for every pair before any image is retired: the blast-radius cap
   (MaxRetirementsPerRun, or the state machine's `retire_at_most`) counts all pairs together,
   and over it nothing is retired.
4. Retire: DeregisterImage(DeleteAssociatedSnapshots=True), one call per image; EC2 deletes the
   snapshots no other image uses in the same call and reports each one.
5. Reconcile: rewrite the tool's P:expires-at where P:retention changed (live tags), set the
   native deprecation time of managed images that lack it (copies in replica regions get theirs
   here), and delete orphaned managed snapshots (`reconcile_orphan_snapshots` says which).

Dry-run changes nothing and reports the same decisions. Time budget: when the Lambda has less than
a safety margin left, the sweep stops cleanly and returns a `cursor`: the pairs still to do, the
one in progress first (a half-done pair is simply swept again: retired images are gone, so listing
again is idempotent). The caller invokes the function again with it (the state machine's loop, or
the CLI); the function never invokes itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import single_metric

from ..aws.ec2 import Ec2, RegionGateways
from ..aws.errors import describe_error as _describe_error
from ..aws.sqs import CopyQueue
from ..domain.adoption import Verdict
from ..domain.report import Report
from ..domain.requests import MAX_CHAIN, BadRequest, parse_sweep_request
from ..domain.retention import Decision, is_managed, rank_families
from ..runtime import Deps
from ..runtime.budget import OutOfTime
from ..runtime.observability import MetricUnit, count, logger, metrics
from . import execution
from .digest import publish_digest
from .evidence import InUseWay
from .executor import Executor
from .payloads import clip_payload
from .pipeline import ADOPTED_THIS_RUN, BLAST_RADIUS, Copies, RegionWork, read_inventory

# Per-image entries returned in the report, over all pairs (the Lambda response is at most 6 MB).
MAX_REPORT_IMAGES = 10_000
# ... and to the state machine, per pair (a task result is at most 256 KiB: ~300 bytes an entry).
STATE_MACHINE_IMAGES = 100
MISSED = (
    "no EC2 AMI State Change event adopted it (the event was missed, or the image is older than the "
    "stack): adopted by the sweep, and not retired before the next sweep"
)

Pair = tuple[str, str]  # (account, region)


@dataclass
class _Region:
    """One pair's state between the two phases."""

    work: RegionWork
    decided: list[Any]  # the managed images decided (not those adopted in this run)
    decisions: dict[str, Decision]
    retirable: list[Any]
    # What counts against the cap: those to deregister or to disable (not those in a grace period).
    destructive: list[Any]


def sweep(
    deps: Deps,
    *,
    pairs: Sequence[Pair] | None = None,
    regions: Sequence[str] | None = None,
    dry_run: bool | None = None,
    in_use_way: InUseWay = "auto",
    max_retirements: int | None = None,
    retire_at_most: int | None = None,
    iteration: int = 1,
) -> Report:
    """Sweep each (account, region) pair, in two phases (`pairs`, else every managed account times
    `regions` or the sweep regions). Phase 1, every pair: read the inventory; adopt the images no
    event adopted (ManageNewImages) and request the copies managed images lack; decide every
    managed image and gather the evidence of non-use. Phase 2, when the images to retire are within
    MaxRetirementsPerRun over all pairs (`max_retirements` overrides it; 0: no limit) and within
    `retire_at_most` (the state machine's share; 0: none): retire them (else none:
    report.blast_radius); reconcile the kept ones' live tags and deprecation times; delete
    orphaned managed snapshots. A pair that fails is reported and the next one is swept; when time
    runs out, `report.cursor` holds the pairs left (the one in progress first)."""
    settings = deps.settings
    todo = list(dict.fromkeys(pairs if pairs is not None else deps.pairs(regions=regions)))
    dry_run = settings.dry_run if dry_run is None else dry_run
    cap = settings.max_retirements_per_run if max_retirements is None else max_retirements
    report = Report("sweep", dry_run, started_at=deps.clock())
    # The copy queue is the hub's, whichever account the image is in.
    queue = (
        CopyQueue.of(deps.accounts.hub_aws, settings.copy_queue_url, settings.home_region)
        if settings.copy_queue_url
        else None
    )
    copies: dict[str, Copies] = {}
    works: dict[Pair, RegionWork] = {}

    def stop(index: int) -> None:
        report.cursor = {"pairs": [list(p) for p in todo[index:]], "iteration": iteration + 1}

    # Phase 1a: the inventories (the copies of one region are sources' evidence in another).
    for index, (account, region) in enumerate(todo):
        if deps.budget.exhausted():
            stop(index)
            break

        def read(account: str = account, region: str = region) -> None:
            here = deps.in_account(account)
            gw = RegionGateways.of(here.aws, region)
            executor = Executor(gw.ec2, dry_run=dry_run, queue=queue, budget=deps.budget)
            if account not in copies:
                copies[account] = Copies(_ec2_in(here.aws), settings.keys)
            out = report.region(region, account)
            work = RegionWork(here, gw, out, executor, read_inventory(gw.ec2), copies[account])
            works[(account, region)] = work
            copies[account].add(region, work.inventory.images)

        if _run_pair(report, todo, index, read, stop):
            break
    # Phase 1b: adopt, replicate, decide.
    planned: dict[Pair, _Region] = {}
    if not report.cursor:
        for index, pair in enumerate(todo):
            if pair not in works:
                continue

            def plan(pair: Pair = pair) -> None:
                planned[pair] = _plan_region(works[pair], in_use_way)

            if _run_pair(report, todo, index, plan, stop):
                break
    if report.cursor:
        # Out of time before anything was retired: the pairs decided so far are swept again (by the
        # next invocation), their decisions are not acted on half-way.
        first = next((i for i, p in enumerate(todo) if p in works), None)
        for pair in works:
            out = report.region(pair[1], pair[0])
            if out.status != "failed":
                out.status = "incomplete"
        if first is not None:
            stop(first)
        planned = {}
    would_retire = sum(len(p.destructive) for p in planned.values())
    allowed, limit = True, 0
    if cap and would_retire > cap:
        allowed, limit = False, cap
    if retire_at_most is not None and would_retire > retire_at_most:
        allowed, limit = False, retire_at_most
    if not allowed:
        report.blast_radius = {"would_retire": would_retire, "limit": limit}
        logger.error(
            "blast radius: more retirements than allowed in this run, none done", would_retire=would_retire, limit=limit
        )
    # Phase 2: retire (if allowed), reconcile the kept images, clean up orphaned snapshots.
    for index, pair in enumerate(todo):
        if pair not in planned or report.cursor:
            continue

        def execute(p: _Region = planned[pair]) -> None:
            _execute_region(p, allowed)

        if _run_pair(report, todo, index, execute, stop):
            break
    for work in works.values():
        work.publish(work.inventory.images)
    report.finished_at = deps.clock()
    return report


def _ec2_in(aws: Any) -> Callable[[str], Ec2]:
    return lambda region: Ec2(aws.ec2(region), region)


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
    return _Region(work, selected, decisions, retirable, [i for i in retirable if work.staged(i).destructive])


def _execute_region(p: _Region, allowed: bool) -> None:
    work = p.work
    retire = p.retirable
    if not allowed:
        for image in p.destructive:
            work.spare(
                image,
                BLAST_RADIUS,
                "retirable, but this run would retire more images than MaxRetirementsPerRun: none retired",
            )
        retire = [i for i in retire if i not in p.destructive]
    gone = work.retire(sorted(retire, key=lambda i: (i.creation_date, i.image_id)))
    work.reconcile_kept(p.decided, p.decisions)
    work.reconcile_orphans(gone)
    work.note_freed()


def _run_pair(
    report: Report, pairs: Sequence[Pair], index: int, step: Callable[[], object], stop: Callable[[int], None]
) -> bool:
    """Run one step of a pair; a failure is reported and the others go on. True when time ran out."""
    account, region = pairs[index]
    out = report.region(region, account)
    if out.status == "failed":
        return False
    try:
        step()
    except OutOfTime:
        out.status = "incomplete"
        stop(index)
        logger.warning("sweep out of time", account=account, region=region, pairs_left=len(pairs) - index)
        return True
    except Exception as e:  # one pair's failure (its role missing, say) never stops the others
        out.fail(_describe_error(e))
        logger.exception("pair sweep failed", account=account, region=region, error=out.error)
    return False


# ---------------------------------------------------------------- the Lambda around it


def handle(event: Any, deps: Deps) -> dict[str, Any]:
    """What RetentionSweepFunction does with one invocation (the handler is a thin shell around it).
    Refused payloads (and accounts this stack does not manage) return `status: refused`; a sweep
    that ran out of time returns `cursor`, to be sent back in the next invocation."""
    if isinstance(event, dict) and "operation" in event:  # a step of SweepStateMachine, not a sweep
        return execution.handle_operation(event, deps)
    settings = deps.settings
    try:
        request = parse_sweep_request(event, settings, deps.known_regions)
        if request.cursor is None:
            deps.accounts.refresh()  # a new run: the organization listed again, refused roles retried
        managed = deps.accounts.managed()
        asked = [a for a, _ in request.cursor.pairs] if request.cursor else (request.accounts or [])
        unmanaged = [a for a in dict.fromkeys(asked) if a not in managed]
        if unmanaged:
            raise BadRequest(
                f"invalid sweep payload: accounts: {', '.join(unmanaged[:5])} not managed by this stack "
                f"(managed: {len(managed)} accounts)"
            )
    except BadRequest as e:
        logger.error("sweep payload refused", error=str(e), payload=clip_payload(event))
        count("SweepRefused")
        return {"status": "refused", "error": str(e)}
    dry_run = settings.dry_run if request.dry_run is None else request.dry_run
    if request.cursor:
        pairs: list[Pair] = [(a, r) for a, r in request.cursor.pairs]
        iteration = request.cursor.iteration
    else:
        pairs, iteration = deps.pairs(request.accounts, request.regions), 1
    logger.info("sweep started", pairs=len(pairs), dry_run=dry_run, source=request.source, iteration=iteration)
    before = request.cursor.retired if request.cursor else 0
    # The state machine's share of MaxRetirementsPerRun spans the pair's invocations.
    allowed = None if request.retire_at_most is None else max(0, request.retire_at_most - before)
    report = sweep(deps, pairs=pairs, dry_run=dry_run, retire_at_most=allowed, iteration=iteration)
    if report.cursor is not None:
        report.cursor["retired"] = before + report.totals.retired
    if report.cursor and report.cursor["iteration"] > MAX_CHAIN:
        # The same sweep has run MAX_CHAIN times: give up on what is left (the next run does it).
        left = report.cursor["pairs"]
        for account, region in left:
            pair = report.region(region, account)
            if pair.status != "failed":
                pair.fail(f"not finished after {MAX_CHAIN} invocations: left for the next sweep")
        logger.error("sweep gave up: pairs left for the next scheduled sweep", pairs=left, max_chain=MAX_CHAIN)
        report.cursor = None
    logger.info("sweep report", report=report.summary())
    # With the state machine, its executions say whether the sweep ran (SweepNotRunAlarm).
    emit_metrics(report, completed=request.source != "state-machine")
    # A state machine task result is at most 256 KiB: its pair report keeps the entries that matter
    # most (retirements and errors first), the totals say everything.
    per_pair = STATE_MACHINE_IMAGES if request.source == "state-machine" else MAX_REPORT_IMAGES
    out = report.to_dict(max_images_per_region=max(min(per_pair, 100), per_pair // max(1, len(report.pairs))))
    if request.source != "state-machine" and not report.cursor:
        # One digest per run: the state machine publishes the execution's (services/execution.py).
        publish_digest(deps, out)
    return out


def emit_metrics(report: Report, *, completed: bool = True) -> None:
    """ImagesRetired, ImagesDisabled, ImagesReEnabled, SnapshotGiBFreed, SnapshotUsdPerMonthFreed,
    ImagesKept (total, and per reason with a Reason dimension), SnapshotsDeleted,
    SweepErrors, SweepRegionsFailed (failed pairs), DeprecationsSet, and SweepCompleted (1 when
    the invocation finished its pairs: no cursor). Dry runs count ImagesRetirable instead of
    ImagesRetired and SnapshotsDeleted."""
    totals = report.totals
    if report.dry_run:
        count("ImagesRetirable", totals.retired)
    else:
        count("ImagesRetired", totals.retired)
        count("SnapshotsDeleted", totals.snapshots_deleted)
        count("DeprecationsSet", totals.deprecations_set)
        count("ImagesDisabled", totals.disabled)
        count("ImagesReEnabled", totals.enabled)
        notes = [r.notes for r in report.regions]
        gib = round(sum(float(n.get("snapshot_gib_freed", 0) or 0) for n in notes), 2)
        if gib:
            metrics.add_metric(name="SnapshotGiBFreed", unit=MetricUnit.Gigabytes, value=gib)
        usd = sum(float(n.get("snapshot_usd_per_month_freed", 0) or 0) for n in notes)
        count("SnapshotUsdPerMonthFreed", round(usd, 4))
    count("ImagesKept", sum(totals.kept.values()))
    count("SweepErrors", totals.errors)
    count("SweepRegionsFailed", sum(1 for r in report.regions if r.status == "failed"))
    if report.blast_radius and not report.dry_run:
        count("SweepBlastRadius")
    if report.cursor:
        count("SweepContinued")
    elif completed:
        metrics.add_metric(name="SweepCompleted", unit=MetricUnit.Count, value=1)
    for reason, n in sorted(totals.kept.items()):
        with single_metric(name="ImagesKept", unit=MetricUnit.Count, value=n) as metric:
            metric.add_dimension(name="Reason", value=reason)
