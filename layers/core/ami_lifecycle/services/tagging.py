"""Adopt one image: write its lifecycle tags (image and snapshots) and its deprecation time.

Calls: one DescribeImages (unless the caller already has the image), one CreateTags for the
image and its snapshots together, one EnableImageDeprecation. A second run over the same image
writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from ..aws.ec2 import NOT_FOUND_CODES, Ec2, error_code
from ..aws.regions import known_regions
from ..domain.adoption import Adoption, decide_adoption
from ..domain.model import Image
from ..domain.settings import Settings
from ..domain.tags import clip, format_instant
from ..runtime.observability import count, logger

# EC2 allows at most this many tags on one resource (image or snapshot).
MAX_TAGS = 50


@dataclass
class TagResult:
    image_id: str
    region: str
    decision: str  # "adopted", "already managed", "skipped", "missing", "refused"
    reason: str
    tags_written: dict[str, str] = field(default_factory=dict)
    snapshots_tagged: list[str] = field(default_factory=list)
    deprecate_at: str | None = None
    deprecation_removed: bool = False  # the retention became forever: the deprecation time is gone
    removed_keys: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dry_run: bool = False
    image: Image | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("image", None)
        return d


def tag_image_by_id(
    ec2: Ec2,
    image_id: str,
    settings: Settings,
    now: datetime,
    account_id: str | None = None,
    *,
    dry_run: bool = False,
) -> TagResult:
    image = ec2.describe_image(image_id)
    if image is None:
        logger.info("image not found: nothing to tag", image_id=image_id, region=ec2.region)
        count("ImagesMissing")
        return TagResult(image_id, ec2.region, "missing", "the image no longer exists", dry_run=dry_run)
    return tag_image(ec2, image, settings, now, account_id, dry_run=dry_run)


def tag_image(
    ec2: Ec2,
    image: Image,
    settings: Settings,
    now: datetime,
    account_id: str | None = None,
    *,
    dry_run: bool = False,
    known_snapshot_tags: Mapping[str, Mapping[str, str]] | None = None,
) -> TagResult:
    decision = decide_adoption(image, settings, now, account_id, known_regions())
    result = TagResult(image.image_id, ec2.region, "skipped", decision.reason, dry_run=dry_run, image=image)
    if not decision.adopt:
        logger.info("image not adopted", image_id=image.image_id, region=ec2.region, reason=decision.reason)
        count("ImagesSkipped")
        return result
    too_many = tag_limit_problem(image, decision)
    if too_many:
        return _refuse_for_tag_limit(ec2, image, settings, result, too_many, dry_run=dry_run)
    result.decision = decision.reason
    result.errors = list(decision.errors)
    if decision.errors:
        logger.warning(
            "image has unusable lifecycle tags",
            image_id=image.image_id,
            region=ec2.region,
            errors=decision.errors,
        )
        count("TagErrors")

    snapshots_to_tag = _snapshots_needing_tags(ec2, image, decision, known_snapshot_tags)
    try:
        if not dry_run:
            _write_tags(ec2, image, decision, snapshots_to_tag)
        result.tags_written = dict(decision.image_tags)
        result.removed_keys = list(decision.remove_keys)
        result.snapshots_tagged = snapshots_to_tag
        if decision.deprecate_at is not None:
            if not dry_run:
                ec2.enable_deprecation(image.image_id, decision.deprecate_at)
            result.deprecate_at = format_instant(decision.deprecate_at)
        elif decision.disable_deprecation:
            if not dry_run:
                ec2.disable_deprecation(image.image_id)
            result.deprecation_removed = True
    except ClientError as e:
        if error_code(e) in NOT_FOUND_CODES:
            logger.info("image vanished while tagging", image_id=image.image_id, region=ec2.region)
            result.decision, result.reason = "missing", "the image was deregistered while being tagged"
            return result
        if error_code(e) == "TagLimitExceeded":
            # A snapshot (whose tags were not read) had no room: EC2 wrote nothing in that call.
            problem = f"an image or snapshot cannot take the lifecycle tags (EC2 allows {MAX_TAGS} per resource)"
            return _refuse_for_tag_limit(ec2, image, settings, result, problem, dry_run=dry_run)
        raise

    if decision.reason == "adopted":
        count("ImagesAdopted")
    logger.info(
        "image tagged",
        image_id=image.image_id,
        region=ec2.region,
        decision=result.decision,
        tags=result.tags_written,
        snapshots=result.snapshots_tagged,
        deprecate_at=result.deprecate_at,
        dry_run=dry_run,
    )
    return result


def _snapshots_needing_tags(
    ec2: Ec2, image: Image, decision: Adoption, known: Mapping[str, Mapping[str, str]] | None
) -> list[str]:
    if not image.snapshot_ids or not decision.snapshot_tags:
        return []
    if decision.image_tags or decision.remove_keys:
        # The image's tags change: its snapshots get the same change in the same call.
        return list(image.snapshot_ids)
    # Nothing to change on the image (a repeated event, or an image the user tagged fully):
    # look at the snapshots once, and tag only those that lack the image's lifecycle tags.
    if known is None:
        known = {
            s["SnapshotId"]: {t["Key"]: t.get("Value", "") for t in s.get("Tags", [])}
            for s in ec2.snapshots(list(image.snapshot_ids))
        }
    return [
        sid
        for sid in image.snapshot_ids
        if sid in known and any(known[sid].get(k) != v for k, v in decision.snapshot_tags.items())
    ]


def _write_tags(ec2: Ec2, image: Image, decision: Adoption, snapshots: list[str]) -> None:
    if decision.image_tags == decision.snapshot_tags or not decision.image_tags:
        # The common case: a new image without lifecycle tags. One call for image and snapshots.
        ids = ([image.image_id] if decision.image_tags else []) + snapshots
        ec2.create_tags(ids, decision.snapshot_tags if snapshots else decision.image_tags)
    else:
        # The user set some lifecycle tags on the image: add only the missing ones there, and
        # mirror the full set onto the snapshots.
        ec2.create_tags([image.image_id], decision.image_tags)
        ec2.create_tags(snapshots, decision.snapshot_tags)
    if decision.remove_keys:
        ec2.delete_tags([image.image_id, *image.snapshot_ids], decision.remove_keys)


def tag_limit_problem(image: Image, decision: Adoption) -> str | None:
    """Why the image cannot take the tags `decision` writes (EC2's limit of 50 per resource), or None."""
    after = (set(image.tags) | set(decision.image_tags)) - set(decision.remove_keys)
    if len(after) <= MAX_TAGS:
        return None
    needed = len(set(decision.image_tags) - set(image.tags))
    return (
        f"cannot take {needed} more lifecycle tags: the image has {len(image.tags)} of the {MAX_TAGS} tags "
        "EC2 allows; remove some tags, then run a backfill"
    )


def _refuse_for_tag_limit(
    ec2: Ec2, image: Image, settings: Settings, result: TagResult, problem: str, *, dry_run: bool
) -> TagResult:
    """Refuse, once and for all (no retry can make room): log, count, and say so in `P:error` when
    one more tag still fits. Nothing else is written, so the image stays unmanaged (never retired)."""
    keys = settings.keys
    result.decision, result.reason, result.errors = "refused", problem, [problem]
    result.tags_written, result.snapshots_tagged, result.deprecate_at = {}, [], None
    logger.warning("image not adopted: tag limit", image_id=image.image_id, region=ec2.region, reason=problem)
    count("TagLimitExceeded")
    fits = keys.error in image.tags or len(image.tags) < MAX_TAGS
    if dry_run or not fits or image.tags.get(keys.error) == clip(problem):
        return result
    try:
        ec2.create_tags([image.image_id], {keys.error: clip(problem)})
        result.tags_written = {keys.error: clip(problem)}
    except ClientError as e:
        logger.warning("P:error not written", image_id=image.image_id, region=ec2.region, error=str(e))
    return result
