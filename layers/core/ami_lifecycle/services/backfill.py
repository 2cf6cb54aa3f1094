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
4. retire: the retirement stages of the pipeline (services/pipeline.py, the sweep's own), over
   the inventory as the tag step's outcomes left it (an image whose tagging failed is not
   managed, so not retired); with `image_ids`, only those images are decided and retired while
   the keep-latest ranking still runs over whole families, and orphaned snapshots are left to
   the sweep.

Dry run changes nothing and reports what a real run would do: the planned tag writes are applied
to the inventory (`adoption.tagged`), so the retire step decides on the tags a real run writes.

Report: `report.Report` (kind "backfill"), the same shape as the sweep's. Every image worked on
is an `ImageEntry`: with the retire action its decision is the sweep's `retire` / `keep` (and the
reason code); otherwise `tag` (tags to write), `copy` (copies to request), `skip` (not the tool's
to manage: the reason says why) or `none` (nothing to do). `actions` lists what was (or would be)
done to it, `outcome` sums it up. Totals: tagged, copies_requested, retired, kept by reason,
errors, snapshots_deleted, deprecations_set; per region `notes.snapshot_gib_freed` (domain/cost.py).

Every covered (account, region) pair, account by account (`accounts`: default every managed
account); the report is keyed by account, then region. An account whose role cannot be assumed
fails its pairs, reported, and the others go on.

Large fleets: when the Lambda's remaining time runs low, the run stops between two images and
reports `continued: true` and where (`continuation`: the pair, the image offset and the last
image id done, and `payload`: the request to invoke the function with next). The function never
invokes itself: the caller (the CLI follows it) sends `payload` back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..aws.ec2 import Ec2, RegionGateways
from ..aws.errors import describe_error
from ..aws.sqs import CopyQueue
from ..domain.adoption import Verdict, decide_adoption, tagged
from ..domain.evidence import checked_unused
from ..domain.report import RegionReport, Report, Totals
from ..domain.requests import MAX_CHAIN, Action, BackfillRequest, BadRequest, Cursor, parse_backfill_request
from ..domain.retention import decide, is_managed, rank_families
from ..domain.settings import Settings
from ..runtime import Deps
from ..runtime.budget import OutOfTime
from ..runtime.observability import count, logger
from .executor import Executor
from .payloads import clip_payload
from .pipeline import BLAST_RADIUS, Copies, RegionWork, read_inventory

# Stop when less than this is left of the Lambda's time (the retire step of one region runs after it).
SAFETY_MARGIN_MS = 120_000
# Progress is reported every this many images.
PROGRESS_EVERY = 250
# Per-image entries returned by the Lambda, over all regions (a response is at most 6 MB).
MAX_REPORT_IMAGES = 10_000

Progress = Callable[[str], None]


def resume_index(selected: Sequence[Any], after: str | None) -> int:
    """Where to resume in the image-id ordered list: the first image after `after`."""
    if after is None:
        return 0
    for i, image in enumerate(selected):
        if image.image_id > after:
            return i
    return len(selected)


class Backfill:
    """One backfill run (one invocation): `run(request)` returns the report."""

    def __init__(self, deps: Deps, *, progress: Progress | None = None, max_retirements: int | None = None) -> None:
        self.deps = deps
        # MaxRetirementsPerRun over the whole backfill (every pair, every invocation); 0: no limit.
        self.cap = deps.settings.max_retirements_per_run if max_retirements is None else max_retirements
        self.retired = 0  # retired or disabled first so far, in this run
        self.blast_radius: dict[str, int] | None = None
        self.settings = deps.settings
        self.budget = deps.budget
        self.progress = progress or (lambda _message: None)
        self.copies: dict[str, Copies] = {}
        self.not_found: list[str] = []
        self._queue: CopyQueue | None = None

    def run(self, request: BackfillRequest) -> Report:
        actions = request.ordered_actions()
        dry_run = request.effective_dry_run(self.settings)
        regions = list(request.regions or self.settings.sweep_regions)
        pairs = self.deps.pairs(request.accounts, regions)
        cursor = request.continuation
        run_id = cursor.run_id if cursor and cursor.run_id else uuid.uuid4().hex[:12]
        wanted = set(request.image_ids) if request.image_ids else None
        found: set[str] = set(cursor.found) if cursor else set()
        report = Report("backfill", dry_run, started_at=self.deps.clock())
        self.retired = cursor.retired if cursor else 0
        self.blast_radius = {"would_retire": self.retired, "limit": self.cap} if cursor and cursor.blocked else None
        logger.info(
            "backfill started",
            run_id=run_id,
            actions=list(actions),
            pairs=len(pairs),
            regions=regions,
            image_ids=len(wanted) if wanted else None,
            dry_run=dry_run,
            cursor=cursor.model_dump() if cursor else None,
        )
        start = cursor.region_index if cursor else 0
        for index in range(start, len(pairs)):
            account, region = pairs[index]
            after = cursor.after if cursor and index == cursor.region_index else None
            offset = cursor.offset if cursor and index == cursor.region_index else 0
            if self.budget.exhausted():
                report.cursor = self._cursor(pairs, index, offset, after, cursor, run_id, found)
                break
            out = report.region(region, account)
            where = region if account == self.deps.account_id else f"{account} {region}"
            self.progress(f"{where}: listing images")
            try:
                stop = self._region(account, region, actions, wanted, dry_run, out, after, offset, found)
            except Exception as e:  # one pair's failure (its role missing, say) never stops the others
                out.fail(describe_error(e))
                logger.exception("backfill of a pair failed", account=account, region=region, error=out.error)
                self.progress(f"{where}: failed: {out.error}")
                continue
            if stop is not None:
                done_offset, done_after = stop
                out.status = "incomplete"
                report.cursor = self._cursor(pairs, index, done_offset, done_after, cursor, run_id, found)
                break
        self.not_found = []
        if report.cursor is None and wanted:
            self.not_found = sorted(wanted - found)
            if self.not_found:
                logger.error("image ids not found in any pair", image_ids=self.not_found, regions=regions)
        report.blast_radius = self.blast_radius
        report.finished_at = self.deps.clock()
        return report

    def render(self, report: Report, max_images_per_region: int | None = None) -> dict[str, Any]:
        """The report as JSON data: `Report.to_dict()`, plus `continued` and `image_ids_not_found`
        (each an error)."""
        out = report.to_dict(max_images_per_region)
        out["continued"] = bool(report.cursor)
        if self.not_found:
            out["image_ids_not_found"] = list(self.not_found)
            out["totals"]["errors"] += len(self.not_found)
            if out["status"] == "complete":
                out["status"] = "partial"
        return out

    def _cursor(
        self,
        pairs: Sequence[tuple[str, str]],
        index: int,
        offset: int,
        after: str | None,
        previous: Cursor | None,
        run_id: str,
        found: set[str],
    ) -> dict[str, Any]:
        chain = (previous.chain + 1) if previous else 1
        account, region = pairs[index]
        info: dict[str, Any] = {
            "continued": True,
            "account": account,
            "region": region,
            "region_index": index,
            "offset": offset,
            "after": after,
            "cursor": Cursor(
                region_index=index,
                offset=offset,
                after=after,
                chain=min(chain, MAX_CHAIN),
                run_id=run_id,
                found=sorted(found),
                retired=self.retired,
                blocked=self.blast_radius is not None,
            ).model_dump(),
        }
        if chain > MAX_CHAIN:
            info["capped"] = True
        logger.warning("backfill out of time", **{k: v for k, v in info.items() if k != "cursor"})
        self.progress(f"{account} {region}: out of time after {offset} images: to be continued")
        return info

    # ------------------------------------------------------------ one region

    def _region(
        self,
        account: str,
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
        deps = self.deps.in_account(account)
        gw = RegionGateways.of(deps.aws, region)
        ec2 = gw.ec2
        queue = self._copy_queue() if "replicate" in actions else None
        # The backfill stops between two images (its cursor), never inside one image's writes.
        executor = Executor(ec2, dry_run=dry_run, queue=queue)
        inventory = read_inventory(ec2)
        if account not in self.copies:
            aws = deps.aws
            self.copies[account] = Copies(lambda r: Ec2(aws.ec2(r), r), deps.settings.keys)
        work = RegionWork(deps, gw, out, executor, inventory, self.copies[account])
        listed = list(inventory.images)
        selected = sorted((i for i in listed if wanted is None or i.image_id in wanted), key=lambda i: i.image_id)
        found.update(i.image_id for i in selected)
        for image in selected:
            work.entry(image)
        out.notes["images_listed"] = len(listed)
        if wanted is not None:
            out.notes["images_selected"] = len(selected)
        self.progress(f"{region}: {len(listed)} images, {len(selected)} to work on")

        first = resume_index(selected, after)
        if first:
            out.notes["resumed_after"] = selected[first - 1].image_id
        todo = selected[first:]
        if "tag" in actions or "replicate" in actions:
            ranks = self._ranks(work, "tag" in actions) if "replicate" in actions else {}
            for n, image in enumerate(todo):
                if self.budget.exhausted():
                    self._finish(work, todo[:n])
                    return offset + n, todo[n - 1].image_id if n else after
                current = self._current(work, image.image_id)
                if "tag" in actions:
                    self._tag(work, current)
                if "replicate" in actions:
                    work.replicate(self._current(work, image.image_id), ranks, retry_failed=True)
                if (first + n + 1) % PROGRESS_EVERY == 0:
                    self.progress(f"{region}: {first + n + 1}/{len(selected)} images done")
        if "retire" not in actions:
            self._finish(work, todo)
            return None
        if self.budget.exhausted():
            self._finish(work, todo)
            return offset + len(todo), selected[-1].image_id if selected else after
        self.progress(f"{region}: retention sweep ({'dry run' if dry_run else 'for real'})")
        try:
            self._retire(work, {i.image_id for i in selected}, whole_region=wanted is None)
        except OutOfTime:  # the entries so far stay; the follow-up does the region again
            return offset + len(todo), selected[-1].image_id if selected else after
        finally:  # what was done is reported, also when the region fails half-way
            self._publish(work, selected)
        work.note_freed()
        t = out.totals
        self.progress(
            f"{region}: done: {t.tagged} tagged, {t.copies_requested} copies requested, {t.retired} retired, "
            f"{sum(t.kept.values())} kept, {t.errors} errors"
        )
        return None

    def _current(self, work: RegionWork, image_id: str) -> Any:
        return work.inventory.get(image_id)

    def _ranks(self, work: RegionWork, tag: bool) -> Mapping[str, Any]:
        """The family ranking the replicate step uses: over the region's images as the tag step
        leaves them (projected, pure: `adoption.tagged`), computed once per region."""
        deps = work.deps
        images = work.inventory.images
        if tag:
            now = deps.clock()
            images = [
                tagged(i, decide_adoption(i, self.settings, now, deps.account_id, deps.known_regions)) for i in images
            ]
        managed = [i for i in images if is_managed(i, self.settings.keys)]
        return rank_families(managed, self.settings, deps.account_id)

    def _tag(self, work: RegionWork, image: Any) -> None:
        e = work.entry(image)
        try:
            result = work.adopt(image)
        except (ClientError, BotoCoreError) as exc:
            e.errors.append(f"tag: {describe_error(exc)}")
            work.out.totals.errors += 1
            logger.error("image not tagged", image_id=image.image_id, region=work.out.region, error=e.errors[-1])
            return
        adoption = result.adoption
        if adoption is not None and not adoption.adopt:
            e.decision, e.reason, e.detail = "skip", str(adoption.skip), adoption.reason
            e.outcome = "skipped"
            return
        if result.verdict is Verdict.MISSING:
            e.decision, e.reason, e.detail, e.outcome = "none", "gone", result.reason, "gone"
            return
        if result.wrote:
            e.reason = e.reason or ("adopted" if result.verdict is Verdict.ADOPTED else "tags-missing")
            e.detail = e.detail or result.reason
            e.outcome = "would tag" if work.dry_run else "tagged"

    def _retire(self, work: RegionWork, ids: set[str], *, whole_region: bool) -> None:
        """The retirement stages over the inventory as tagging left it: decide the images worked
        on (ranked over every managed image of the region), retire, reconcile the kept ones; the
        orphaned snapshots only when the whole region is worked on."""
        keys = self.settings.keys
        managed = [i for i in work.inventory.images if i.tags.get(keys.managed) == "true"]
        selected = [i for i in managed if i.image_id in ids]
        decisions = work.decide(managed, selected, "auto")
        # What the sweep never looks at (not managed, even after tagging): say why it is kept.
        for image in work.inventory.images:
            if image.image_id in ids and image.image_id not in decisions:
                e = work.entry(image)
                if image.image_id in work.gone:
                    continue
                d = decide(image, None, checked_unused(), self.settings, work.now, work.deps.account_id)
                e.decision, e.reason, e.detail = d.action, str(d.reason), d.detail
                e.outcome = "failed" if e.errors else "kept"
                work.out.totals.count_kept(str(d.reason))
        retirable = sorted(
            (i for i in selected if decisions[i.image_id].retire), key=lambda i: (i.creation_date, i.image_id)
        )
        destructive = [i for i in retirable if work.staged(i).destructive]
        if self.blast_radius is not None or (self.cap and self.retired + len(destructive) > self.cap):
            # MaxRetirementsPerRun over the backfill: this pair, and every pair after it, retires none
            # (the pairs before stayed within it). The plan (a dry run) shows it the same way.
            if self.blast_radius is None:
                self.blast_radius = {"would_retire": self.retired + len(destructive), "limit": self.cap}
                logger.error(
                    "backfill blast radius: no more retirements in this run",
                    would_retire=self.blast_radius["would_retire"],
                    limit=self.cap,
                )
            for image in destructive:
                work.spare(
                    image,
                    BLAST_RADIUS,
                    "retirable, but this backfill would retire more images than MaxRetirementsPerRun: "
                    "none retired from here on",
                )
            retirable = [i for i in retirable if i not in destructive]
        else:
            self.retired += len(destructive)
        gone = work.retire(retirable)
        work.reconcile_kept(selected, decisions)
        if whole_region:
            work.reconcile_orphans(gone)

    def _finish(self, work: RegionWork, done: Sequence[Any]) -> None:
        """Entries of a run without the retire step (or cut short before it)."""
        for image in done:
            e = work.entry(image)
            if not e.decision:
                if image.image_id in work.tagged:
                    e.decision = "tag"
                elif image.image_id in work.copied:
                    e.decision = "copy"
                    e.outcome = e.outcome or ("would request copies" if work.dry_run else "copies requested")
                elif e.errors:
                    e.decision, e.outcome = "none", "failed"
                else:
                    e.decision, e.outcome = "none", e.outcome or "nothing to do"
                    e.reason = e.reason or "up-to-date"
        self._publish(work, done)

    def _publish(self, work: RegionWork, done: Sequence[Any]) -> None:
        ids = {d.image_id for d in done}
        work.publish([i for i in work.inventory.images if i.image_id in ids])

    def _copy_queue(self) -> CopyQueue | None:
        url = self.settings.copy_queue_url
        if url and self._queue is None:
            self._queue = CopyQueue.of(self.deps.accounts.hub_aws, url, self.settings.home_region)
        return self._queue


# ---------------------------------------------------------------- the Lambda around it


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
    """The payload of the next invocation: the same request, pinned, plus the cursor."""
    payload: dict[str, Any] = {
        "actions": list(request.ordered_actions()),
        "regions": list(request.regions or settings.sweep_regions),
        "dry_run": dry_run,
        "continuation": dict(cursor),
    }
    if request.accounts:
        payload["accounts"] = list(request.accounts)
    if request.image_ids:
        payload["image_ids"] = list(request.image_ids)
    return payload


def handle(event: Any, deps: Deps) -> dict[str, Any]:
    """What BackfillFunction does with one invocation. Out of time, it returns `continuation`
    with the `payload` of the next invocation (the caller sends it; nothing invokes itself)."""
    settings = deps.settings
    try:
        request = parse_backfill_request(event, settings, deps.known_regions)
        if request.continuation is None:
            deps.accounts.refresh()
        managed = deps.accounts.managed()
        unmanaged = [a for a in request.accounts or () if a not in managed]
        if unmanaged:
            raise BadRequest(
                f"invalid backfill payload: accounts: {', '.join(unmanaged[:5])} not managed by this stack"
            )
    except BadRequest as e:
        logger.error("backfill payload refused", error=str(e), payload=clip_payload(event))
        count("BackfillRefused")
        return refused(str(e))
    deps = deps.with_margin(max(deps.budget.margin_ms, SAFETY_MARGIN_MS))
    backfill = Backfill(deps)
    dry_run = request.effective_dry_run(settings)
    report = backfill.run(request)
    out = backfill.render(report, max(100, MAX_REPORT_IMAGES // max(1, len(report.pairs))))
    if settings.dry_run and request.dry_run is False:
        out["note"] = "the DryRun parameter is true: this backfill only reports"
    out.pop("cursor", None)
    if report.cursor:
        info = dict(report.cursor)
        payload = follow_up_payload(request, settings, dry_run, info.pop("cursor"))
        if info.get("capped"):
            info["error"] = f"more than {MAX_CHAIN} invocations: start a new backfill from here"
            logger.error("backfill chain capped", **info)
        out["continuation"] = info | {"payload": payload}
    logger.info("backfill report", report=report.summary())
    emit_metrics(report)
    return out


def emit_metrics(report: Report) -> None:
    totals = report.totals
    if report.dry_run:
        count("BackfillImagesRetirable", totals.retired)
        return
    count("ImagesTagged", totals.tagged)
    count("ImagesRetired", totals.retired)
    count("SnapshotsDeleted", totals.snapshots_deleted)
    count("BackfillErrors", totals.errors)
    if report.blast_radius:
        count("SweepBlastRadius")  # BlastRadiusAlarm: the cap stopped a run, sweep or backfill
