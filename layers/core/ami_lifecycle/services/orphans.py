"""Orphaned managed snapshots: found, confirmed and deleted (PRODUCT.md section 2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..aws.errors import describe_error as _describe_error
from ..aws.errors import is_throttle
from ..domain.actions import Action, Kind, Status
from ..domain.ids import image_ids_in
from ..domain.model import Image
from ..domain.report import RegionReport
from ..domain.settings import Settings
from ..domain.tags import TagError, TagKeys, parse_bool, parse_instant, parse_retention
from ..runtime.budget import Budget
from ..runtime.observability import logger
from .executor import Executor

# A managed snapshot must be at least this old before it can be deleted as an orphan: images
# being created or copied register their snapshots first.
ORPHAN_MIN_AGE = timedelta(hours=6)


def reconcile_orphan_snapshots(
    executor: Executor,
    everything: Sequence[Image],
    gone: set[str],
    settings: Settings,
    now: datetime,
    out: RegionReport,
    snapshots: Sequence[Mapping[str, Any]],
    budget: Budget | None = None,
) -> set[str]:
    """Delete snapshots tagged `P:managed=true` whose image no longer exists; returns the ids deleted
    (in a dry run: that would be). `everything`: every
    image of the account in the region (any state); `snapshots`: the region's snapshots; `gone`: the
    images retired in this run.

    A snapshot is deleted only when all hold: it is owned by this account and tagged
    `P:managed=true`; it carries no `P:hold` other than false (an unreadable one keeps it), and no
    `P:expires-at`/`P:retention` that keeps it (a future or unreadable expiry, `forever`); it is
    completed and older than ORPHAN_MIN_AGE; its Description names at least one image id (as
    CreateImage/CopyImage/RegisterImage write it) and none of those images exists in the region, in
    any state (pending, available, disabled, failed), nor in the Recycle Bin; no image of the
    account in the region, in any state, uses it; and it is not shared (no createVolumePermission:
    another account may have registered an image on it). No call of its own but for a candidate: the
    Recycle Bin and the sharing are checked only then (the images and snapshots come from the
    inventory). Anything that cannot be checked leaves the snapshot in place.
    """
    budget = budget or Budget()
    ec2, dry_run = executor.ec2, executor.dry_run
    keys = settings.keys
    live = [image for image in everything if image.image_id not in gone]
    registered = {image.image_id for image in live}
    used = {snapshot for image in live for snapshot in image.snapshot_ids}
    candidates: list[tuple[str, set[str]]] = []
    deleted: set[str] = set()
    for snapshot in snapshots:
        sid = snapshot["SnapshotId"]
        tags = {t["Key"]: t.get("Value", "") for t in snapshot.get("Tags") or []}
        started = snapshot.get("StartTime")
        named = image_ids_in(str(snapshot.get("Description") or ""))
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
        return deleted

    confirmed = candidates  # checked above against every image of the account, unmanaged ones included
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
        return deleted
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
        else:
            done = executor.one(Action(Kind.DELETE_SNAPSHOT, ec2.region, snapshot_id=sid))
            if done.status is Status.GONE:
                continue
            if done.happened:
                record["outcome"] = "would delete (orphaned)" if dry_run else "deleted (orphaned)"
                out.totals.snapshots_deleted += 1
                deleted.add(sid)
            else:
                record["outcome"] = "not deleted"
                record["error"] = done.error
                if done.code != "InvalidSnapshot.InUse":
                    out.totals.errors += 1
        out.snapshots.append(record)
        log = logger.warning if "error" in record else logger.info
        log("orphaned snapshot", region=ec2.region, dry_run=dry_run, snapshot=record)
    return deleted


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
