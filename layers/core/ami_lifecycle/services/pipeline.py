"""One flow for every (account, region) pair: inventory -> plan -> execute -> report.

- `read_inventory`: every image of the account in the region (disabled and deprecated included)
  and every snapshot it owns, read once (ceil(n/1000) calls each).
- The stages of `RegionWork` run the pure planners of domain/ (adoption and tagging, replication,
  retirement) over the inventory, hand their typed actions to the executor, and record each
  outcome in the image's one report entry (`ImageEntry`) and the region's totals, as it happens.
- The event path, the sweep and the backfill are compositions of these stages: the sweep adopts
  what events missed, requests missing copies and retires; the backfill tags, replicates and
  retires a selection of images. No stage imitates another, and nothing is fixed up afterwards.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..aws.ec2 import Ec2, RegionGateways
from ..aws.errors import describe_error
from ..aws.rbin import retention_rules
from ..domain.actions import DELETED_CODES, Action, Kind, Outcome, SnapshotResult, Status, copy_actions
from ..domain.adoption import SkipReason, Verdict, decide_adoption, foreign_manager
from ..domain.cost import freed as freed_size
from ..domain.evidence import checked_unused, usage_of
from ..domain.expiry import expiry_of
from ..domain.model import Image
from ..domain.recycle_bin import restorable
from ..domain.replication import CopyRequest, is_copy, plan_copies, recorded_copies
from ..domain.report import ImageEntry, RegionReport
from ..domain.retention import Decision, Reason, decide, deprecation_due, is_managed, rank_families
from ..domain.staging import Stage, Staged, parse_permissions, render_permissions, stage
from ..domain.tags import TagKeys, format_instant
from ..runtime import Deps
from ..runtime.observability import count, logger
from .evidence import InUseWay, check_sharing, gather_evidence
from .executor import Executor
from .orphans import reconcile_orphan_snapshots
from .tagging import Tagging, tag_image

# The reason code of an image the sweep adopted in this run: never retired in that run.
ADOPTED_THIS_RUN = "adopted-this-run"
# The reason code of a retirable image the blast-radius cap kept.
BLAST_RADIUS = "blast-radius"
# The reason code of a retirable image disabled by the tool, in its grace period (DisableBeforeDeregister).
DISABLED = "disabled"


class Inventory:
    """What one (account, region) holds, read once: every image (in listing order) and snapshot."""

    def __init__(self, region: str, images: Iterable[Image], snapshots: dict[str, dict[str, Any]]) -> None:
        self.region = region
        self._images = {image.image_id: image for image in images}
        self.snapshots = snapshots

    @property
    def images(self) -> list[Image]:
        return list(self._images.values())

    def get(self, image_id: str) -> Image | None:
        return self._images.get(image_id)

    def snapshot_tags(self) -> dict[str, dict[str, str]]:
        return {sid: {t["Key"]: t.get("Value", "") for t in s.get("Tags") or []} for sid, s in self.snapshots.items()}

    def replace(self, image: Image) -> None:
        """The image as a stage left it (tags written, deprecation set)."""
        self._images[image.image_id] = image


def read_inventory(ec2: Ec2) -> Inventory:
    images = list(ec2.iter_images())
    snapshots = {s["SnapshotId"]: s for s in ec2.iter_snapshots()}
    return Inventory(ec2.region, images, snapshots)


class Copies:
    """Which copies of which sources exist, per target region: from the inventories read in this run,
    else listed once per region (DescribeImages with `tag-key` = `P:source-image`)."""

    def __init__(self, ec2_of: Callable[[str], Ec2], keys: TagKeys) -> None:
        self._ec2_of = ec2_of
        self._key = keys.source_image
        self._region_key = keys.source_region
        self._by_region: dict[str, dict[tuple[str, str], Image]] = {}
        self._failed: dict[str, BaseException] = {}

    def add(self, region: str, images: Iterable[Image]) -> None:
        self._by_region[region] = self._index(images)

    def of(self, region: str, source: Image) -> Image | None:
        """The copy of `source` in `region`, or None. Raises the listing's error (once listed in
        vain, the same error again, without another call)."""
        if region in self._failed:
            raise self._failed[region]
        if region not in self._by_region:
            try:
                listed = self._ec2_of(region).iter_images(filters=[{"Name": "tag-key", "Values": [self._key]}])
                self._by_region[region] = self._index(listed)
            except (ClientError, BotoCoreError) as e:
                self._failed[region] = e
                raise
        return self._by_region[region].get((source.region, source.image_id))

    def _index(self, images: Iterable[Image]) -> dict[tuple[str, str], Image]:
        """{(source region, source image id): copy}; a live copy wins over a failed one."""
        found: dict[tuple[str, str], Image] = {}
        ordered = sorted(
            (i for i in images if self._key in i.tags), key=lambda i: (i.state == "failed", i.creation_date)
        )
        for copy in ordered:
            region = copy.tags.get(self._region_key) or copy.source_region or ""
            found.setdefault((region, copy.tags[self._key]), copy)
        return found


def entry_of(image: Image) -> ImageEntry:
    return ImageEntry(image_id=image.image_id, name=image.name, created=format_instant(image.creation_date))


@dataclass
class RegionWork:
    """One (account, region) pair being worked on: its inventory, executor, report and entries."""

    deps: Deps
    gw: RegionGateways
    out: RegionReport
    executor: Executor
    inventory: Inventory
    copies: Copies | None = None
    entries: dict[str, ImageEntry] = field(default_factory=dict)
    # What the stages did, by image id (typed facts; the entries' texts are for people).
    tagged: set[str] = field(default_factory=set)
    copied: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)
    freed: set[str] = field(default_factory=set)  # snapshots deleted (a dry run: that would be)
    _published: set[str] = field(default_factory=set, repr=False)
    _snapshot_tags: dict[str, dict[str, str]] | None = field(default=None, repr=False)

    @property
    def dry_run(self) -> bool:
        return self.executor.dry_run

    @property
    def now(self) -> datetime:
        return self.deps.clock()

    def entry(self, image: Image) -> ImageEntry:
        if image.image_id not in self.entries:
            self.entries[image.image_id] = entry_of(image)
        return self.entries[image.image_id]

    def publish(self, images: Iterable[Image]) -> None:
        """Add the entries of these images to the region report, oldest first, once each."""
        for image in sorted(images, key=lambda i: (i.creation_date, i.image_id)):
            e = self.entries.get(image.image_id)
            if e is not None and image.image_id not in self._published:
                self._published.add(image.image_id)
                self.out.add(e)

    # ------------------------------------------------------------ recording outcomes

    def record(self, entry: ImageEntry, outcomes: Iterable[Outcome]) -> None:
        """Each outcome into the entry (data and text) and the region's totals."""
        totals = self.out.totals
        for o in outcomes:
            if o.status is Status.SKIPPED:
                continue
            entry.outcomes.append(o.to_dict())
            kind = o.action.kind
            if o.status is Status.FAILED:
                entry.errors.append(f"{_step(kind)}: {o.error}")
                totals.errors += 1
                continue
            if o.status is Status.GONE:
                continue
            entry.actions.append(o.describe())
            if kind is Kind.DEPRECATE:
                totals.deprecations_set += 1
            elif kind is Kind.REQUEST_COPY:
                totals.copies_requested += 1
            elif kind is Kind.DISABLE:
                totals.disabled += 1
            elif kind is Kind.ENABLE:
                totals.enabled += 1

    def note(self, entry: ImageEntry, text: str) -> None:
        """Something found rather than done: in the entry's actions (for humans) and notes (as data)."""
        entry.actions.append(text)
        entry.notes.append(text)

    # ------------------------------------------------------------ stage: adopt and tag

    def adopt(self, image: Image) -> Tagging:
        """Adopt and tag one image; the inventory then holds it as tagged."""
        entry = self.entry(image)
        if self._snapshot_tags is None:
            self._snapshot_tags = self.inventory.snapshot_tags()
        result = tag_image(self.executor, image, self.deps, snapshot_tags=self._snapshot_tags)
        self.record(entry, result.outcomes)
        entry.errors.extend(f"tag: {problem}" for problem in result.problems)
        self.out.totals.errors += len(result.problems)
        if result.after is not None and result.after is not image:
            self.inventory.replace(result.after)
        if result.wrote:
            self.out.totals.tagged += 1
            self.tagged.add(image.image_id)
        if result.verdict is Verdict.MISSING:
            self.gone.add(image.image_id)
        return result

    # ------------------------------------------------------------ stage: replicate

    def replicate(self, image: Image, ranks: Mapping[str, Any], *, retry_failed: bool) -> list[CopyRequest]:
        """Request the copies an image lacks (planner: domain/replication.plan_copies), skipping the
        target regions where a copy exists. An expired image is copied only when it is kept for a
        reason its copy shares (among the newest of its family, held). `retry_failed`: a region the
        source records as failed is requested again (the backfill); the sweep leaves it."""
        settings, keys = self.deps.settings, self.deps.settings.keys
        entry = self.entry(image)
        if not is_managed(image, keys) or image.state != "available" or foreign_manager(image):
            adoption = decide_adoption(image, settings, self.now, self.deps.account_id, self.deps.known_regions)
            _explain(entry, str(adoption.skip or SkipReason.NOT_MANAGED), "not managed: not replicated")
            return []
        if is_copy(image, keys):
            _explain(entry, "copy", "a copy made by ami-lifecycle: copies are not replicated")
            return []
        expiry = expiry_of(image, keys, tool_default=settings.retention)
        if expiry.at is not None and expiry.at <= self.now:
            d = decide(image, ranks.get(image.image_id), checked_unused(), settings, self.now, self.deps.account_id)
            if not {Reason.KEEP_LATEST, Reason.HOLD} & {b.reason for b in d.blockers}:
                self.note(entry, f"not copied: expired at {format_instant(expiry.at)}")
                return []
        lifecycle = {k: v for k, v in image.tags.items() if keys.is_lifecycle_key(k)}
        plan = plan_copies(image, settings, lifecycle, self.deps.known_regions, account=self.deps.account_id or "")
        if plan.error:
            entry.errors.append(plan.error)
            self.out.totals.errors += 1
            return []
        recorded = recorded_copies(image, keys)
        wanted: list[CopyRequest] = []
        for request in plan.requests:
            target = request.target_region
            if not retry_failed and recorded.get(target) == "failed":
                self.note(entry, f"copy to {target} failed earlier (see {keys.error}): a backfill retries it")
                continue
            assert self.copies is not None
            try:
                copy = self.copies.of(target, image)
            except (ClientError, BotoCoreError) as exc:
                entry.errors.append(f"replicate: listing copies in {target}: {describe_error(exc)}")
                self.out.totals.errors += 1
                continue
            if copy is not None:
                state = "" if copy.state == "available" else f" ({copy.state})"
                self.note(entry, f"copy in {target} exists: {copy.image_id}{state}")
                continue
            wanted.append(request)
        if not wanted:
            if not plan.requests and not plan.skipped:
                _explain(entry, "up-to-date", "no replica regions")
            return []
        outcomes = self.executor.run(copy_actions(image.region, image.image_id, wanted))
        self.record(entry, outcomes)
        done = [o.action.copy for o in outcomes if o.happened and o.action.copy is not None]
        if done and not self.dry_run:
            count("CopiesRequested", len(done))
        if done:
            self.copied.add(image.image_id)
            targets = ", ".join(r.target_region for r in done)
            _explain(entry, "not-replicated", f"no copy in {targets} yet")
        return done

    # ------------------------------------------------------------ stage: decide, then retire

    def decide(self, managed: Sequence[Image], selected: Sequence[Image], in_use_way: InUseWay) -> dict[str, Decision]:
        """Rank every managed image of the region, decide the selected ones, and gather the evidence
        of non-use for those that pass every other condition."""
        settings, now, account = self.deps.settings, self.now, self.deps.account_id
        ranks = rank_families(managed, settings, account)
        by_id = {image.image_id: image for image in selected}
        decisions = {i.image_id: decide(i, ranks.get(i.image_id), None, settings, now, account) for i in selected}
        candidates = [image_id for image_id, d in decisions.items() if d.awaits_reference_check]
        if candidates:
            self.deps.budget.check()
            evidence, self.out.notes["in_use_check"] = gather_evidence(self.gw, candidates, in_use_way)
            sharing = check_sharing(
                self.executor,
                [by_id[i] for i in candidates],
                decisions,
                settings,
                now,
                self.out,
                dry_run=self.dry_run,
                account_id=account,
                deps=self.deps,
            )
            for image_id in candidates:
                usage = usage_of(image_id, evidence, sharing[image_id])
                decisions[image_id] = decide(by_id[image_id], ranks.get(image_id), usage, settings, now, account)
        else:
            self.out.notes["in_use_check"] = {"way": "none", "candidates": 0}
        for image in selected:
            d = decisions[image.image_id]
            e = self.entry(image)
            e.decision, e.reason, e.detail = d.action, str(d.reason), d.detail
            e.reasons = list(d.reasons) if len(d.blockers) > 1 else []
            e.family = d.family
            e.expires_at = format_instant(d.expires_at) if d.expires_at else None
            e.references = [str(r) for r in d.references]
            if not d.retire:
                e.outcome = "kept"
                self.out.totals.count_kept(d.reason)
                logger.info(
                    "image kept",
                    image_id=image.image_id,
                    region=self.out.region,
                    reason=str(d.reason),
                    detail=d.detail,
                    reasons=list(d.reasons),
                )
        return decisions

    def spare(self, image: Image, reason: str, detail: str) -> None:
        """A retirable image kept for a reason of this run (adopted in it, the blast-radius cap)."""
        e = self.entry(image)
        e.decision, e.reason, e.detail, e.outcome = "keep", reason, detail, "kept"
        self.out.totals.count_kept(reason)

    def staged(self, image: Image) -> Staged:
        """What retiring this retirable image means now (domain/staging.py: deregister, disable first,
        or wait out its grace period)."""
        settings = self.deps.settings
        return stage(image, True, settings.disable_grace, settings.keys, self.now)

    def retire(self, images: Sequence[Image]) -> set[str]:
        """Retire these retirable images: deregister each with its snapshots or, with
        DisableBeforeDeregister, disable it first and deregister it once its grace period is over.
        Returns the ids of the images that are gone."""
        now_gone: list[Image] = []
        for image in images:
            s = self.staged(image)
            if s.stage is Stage.DEREGISTER:
                if s.why:
                    self.note(self.entry(image), s.why)
                now_gone.append(image)
            elif s.stage is Stage.DISABLE:
                self._disable(image, s)
            else:  # WAIT: kept, disabled, until its grace period is over
                self.spare(image, DISABLED, s.why)
        return self._deregister(now_gone)

    def _disable(self, image: Image, s: Staged) -> None:
        keys, e = self.deps.settings.keys, self.entry(image)
        shared = self.gw.ec2.launch_permissions(image)
        permissions = render_permissions(shared, owner=self.deps.account_id)
        if permissions is None:
            e.decision, e.reason, e.outcome = "keep", "failed", "failed"
            e.errors.append(
                "not disabled: its launch permissions do not fit in one tag (256 characters) and DisableImage "
                "would lose them; share it more narrowly, or set DisableBeforeDeregister to 0d"
            )
            self.out.totals.errors += 1
            return
        tags = {keys.disabled_at: format_instant(self.now)}
        if permissions:
            tags[keys.launch_permissions] = permissions
        action = Action(
            Kind.DISABLE,
            image.region,
            image.image_id,
            resources=(image.image_id,),
            tags=tuple(tags.items()),
            at=s.until,
        )
        (outcome,) = self.executor.run([action])
        self.record(e, [outcome])
        if outcome.status is Status.GONE:
            e.outcome, e.detail = "gone", "already deregistered"
            self.gone.add(image.image_id)
        elif outcome.status is Status.FAILED:
            e.outcome = "failed"
            logger.error("image not disabled", image_id=image.image_id, region=self.out.region, error=outcome.error)
        else:
            until = format_instant(s.until) if s.until else "?"
            e.outcome = "would disable" if self.dry_run else "disabled"
            e.detail = f"disabled (grace until {until})" + (f"; {s.why}" if s.why else "")
            logger.info("image disabled", image_id=image.image_id, region=self.out.region, until=until)

    def _enable(self, image: Image) -> None:
        """An image the tool disabled that is no longer retirable: re-enabled, its sharing given back."""
        keys = self.deps.settings.keys
        permissions = parse_permissions(image.tags.get(keys.launch_permissions, ""))
        action = Action(
            Kind.ENABLE,
            image.region,
            image.image_id,
            resources=(image.image_id,),
            keys=tuple(k for k in (keys.disabled_at, keys.launch_permissions) if k in image.tags),
            permissions=permissions if permissions.consumers() else None,
            why=f"kept: {self.entry(image).reason}",
        )
        if image.state != "disabled":  # re-enabled by someone else: only the record goes
            action = Action(Kind.UNTAG, image.region, image.image_id, resources=(image.image_id,), keys=action.keys)
        self.record(self.entry(image), self.executor.run([action]))

    def _deregister(self, images: Sequence[Image]) -> set[str]:
        """Deregister each image with its snapshots. Returns the ids of the images that are gone."""
        users = Counter(s for image in self.inventory.images for s in image.snapshot_ids)
        actions = []
        for image in images:
            expect = tuple(
                SnapshotResult(s, "would-skip" if users[s] > 1 else "would-delete") for s in image.snapshot_ids
            )
            users.subtract(image.snapshot_ids)
            actions.append(
                Action(Kind.RETIRE, image.region, image.image_id, resources=image.snapshot_ids, expect=expect)
            )
        gone: set[str] = set()
        for image, action in zip(images, actions, strict=True):
            outcome = self.executor.run([action])[0]
            e = self.entry(image)
            if outcome.status is Status.GONE:
                e.outcome, e.detail = "gone", "already deregistered"
                logger.info("image already gone", image_id=image.image_id, region=self.out.region)
                gone.add(image.image_id)
                continue
            if outcome.status is Status.FAILED:
                e.outcome = "failed"
                e.errors.append(f"DeregisterImage: {outcome.error}")
                self.out.totals.errors += 1
                logger.error("image not retired", image_id=image.image_id, region=self.out.region, error=outcome.error)
                continue
            e.outcome = "would retire" if self.dry_run else "retired"
            e.snapshots = [s.to_dict() for s in outcome.snapshots]
            e.outcomes.append(outcome.to_dict())
            self.out.totals.retired += 1
            self.out.totals.snapshots_deleted += outcome.snapshots_deleted
            deleted = [s.snapshot_id for s in outcome.snapshots if s.code in DELETED_CODES]
            self.freed.update(deleted)
            if deleted:
                size = freed_size(deleted, self.inventory.snapshots, region=self.out.region)
                e.snapshot_gib_freed, e.snapshot_usd_per_month_freed = size.gib, size.usd_per_month
            for s in outcome.snapshot_errors:
                e.errors.append(f"snapshot {s.snapshot_id} not deleted: {s.code}")
                self.out.totals.errors += 1
            if not self.dry_run:
                gone.add(image.image_id)
            log = logger.error if e.errors else logger.info
            log(
                "image retired",
                image_id=image.image_id,
                region=self.out.region,
                snapshots=e.snapshots,
                dry_run=self.dry_run,
            )
        self._note_recycle_bin([i for i in images if self.entry(i).outcome in ("retired", "would retire")])
        return gone

    def _note_recycle_bin(self, retired: Sequence[Image]) -> None:
        """Until when each retired image can be restored from the Recycle Bin (its rules read once
        per pair, only when something was retired)."""
        if not retired:
            return
        try:
            rules = retention_rules(self.deps.aws.client("rbin", self.out.region))
        except (ClientError, BotoCoreError) as exc:
            self.out.notes["recycle_bin"] = f"rules not read: {describe_error(exc)}"
            return
        self.out.notes["recycle_bin"] = {"rules": len(rules)}
        if not rules:
            return
        snapshots = self.inventory.snapshots
        for image in retired:
            snapshot_tags = [
                {t["Key"]: t["Value"] for t in (snapshots.get(s) or {}).get("Tags") or []}
                for s in image.snapshot_ids
                if s in snapshots
            ]
            verdict = restorable(rules, image.tags, snapshot_tags, self.now)
            e = self.entry(image)
            e.restorable_until = format_instant(verdict.until) if verdict.until else None
            self.note(e, verdict.detail)

    # ------------------------------------------------------------ stage: reconcile what is kept

    def reconcile_kept(self, images: Sequence[Image], decisions: Mapping[str, Decision]) -> None:
        """Live tags and deprecation times of the kept managed images: a tool's P:expires-at that no
        longer follows P:retention is rewritten (the whole adoption is replanned); else a missing or
        stale native deprecation time is set (how copies in replica regions get theirs)."""
        settings = self.deps.settings
        for image in images:
            if decisions[image.image_id].retire:
                continue
            if settings.keys.disabled_at in image.tags:
                self.deps.budget.check()
                self._enable(image)
            if expiry_of(image, settings.keys, tool_default=settings.retention).rewrite:
                self.deps.budget.check()
                self.adopt(image)
                continue
            at = deprecation_due(image, settings, self.now, self.deps.account_id)
            if at is not None:
                self.deps.budget.check()
                self.record(
                    self.entry(image), self.executor.run([Action(Kind.DEPRECATE, image.region, image.image_id, at=at)])
                )

    def reconcile_orphans(self, gone: set[str]) -> None:
        self.deps.budget.check()
        managed = [
            s for s in self.inventory.snapshots.values() if _managed_snapshot(s, self.deps.settings.keys.managed)
        ]
        self.freed |= reconcile_orphan_snapshots(
            self.executor,
            self.inventory.images,
            gone,
            self.deps.settings,
            self.now,
            self.out,
            managed,
            budget=self.deps.budget,
        )

    def note_freed(self) -> None:
        """The region's `notes.snapshot_gib_freed` and `snapshot_size_basis` (domain/cost.py)."""
        self.out.notes.update(freed_size(self.freed, self.inventory.snapshots, region=self.out.region).to_notes())


def _managed_snapshot(snapshot: Mapping[str, Any], key: str) -> bool:
    return any(t.get("Key") == key and t.get("Value") == "true" for t in snapshot.get("Tags") or [])


def _step(kind: Kind) -> str:
    return {Kind.REQUEST_COPY: "replicate: copy request not queued", Kind.RETIRE: "DeregisterImage"}.get(
        kind, str(kind)
    )


def _explain(entry: ImageEntry, reason: str, detail: str) -> None:
    """Give an entry a reason when no step has given it one."""
    if not entry.reason:
        entry.reason, entry.detail = reason, detail
