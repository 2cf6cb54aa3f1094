"""Which images the tool adopts, and which lifecycle tags they get (PRODUCT.md section 1).

Pure decision logic: a function of the image's facts, the settings and `now`; `plan_tagging`
turns the decision into typed actions (CreateTags, DeleteTags, EnableImageDeprecation, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from .actions import Action, Kind
from .expiry import expiry_of
from .model import Image
from .settings import Settings
from .tags import (
    FOREIGN_MANAGER_TAGS,
    TagError,
    TagKeys,
    clip,
    derive_family,
    parse_bool,
    parse_keep_latest,
    parse_regions,
)

# EnableImageDeprecation accepts times up to 10 years ahead.
MAX_DEPRECATION_AHEAD = timedelta(days=3650)
# EC2 allows at most this many tags on one resource (image or snapshot).
MAX_TAGS = 50


class Verdict(StrEnum):
    """What the adoption rule says of one image."""

    ADOPTED = "adopted"  # it gets P:managed=true now
    ALREADY_MANAGED = "already managed"
    SKIPPED = "skipped"  # not the tool's to manage (the reason says why)
    REFUSED = "refused"  # it cannot take the lifecycle tags (EC2's tag limit)
    MISSING = "missing"  # it no longer exists


class SkipReason(StrEnum):
    """Why an image is not adopted (the same codes the sweep keeps images for, where they exist)."""

    NOT_AVAILABLE = "not-available"
    NOT_OWNED = "not-owned"
    FOREIGN_MANAGER = "foreign-manager"
    BAD_TAG = "bad-tag"
    OPTED_OUT = "opted-out"
    NOT_MANAGED = "not-managed"


def deprecation_due_at(
    expires_at: datetime | None, current: datetime | None, now: datetime, margin: timedelta = timedelta(0)
) -> datetime | None:
    """The deprecation time to set for an expiry, or None: only a future expiry (after `now +
    margin`) at most 10 years ahead, and only when it differs to the minute (EC2 rounds down) from
    the image's current deprecation time."""
    if expires_at is None or not now + margin < expires_at <= now + MAX_DEPRECATION_AHEAD:
        return None
    target = expires_at.replace(second=0, microsecond=0)
    have = current.replace(second=0, microsecond=0) if current else None
    return None if have == target else expires_at


FOREIGN_REASONS = {
    "aws:backup:source-resource": "owned by AWS Backup",
    "aws:dlm:lifecycle-policy-id": "owned by Data Lifecycle Manager",
    "CreatedBy": "owned by EC2 Image Builder",
}


@dataclass(frozen=True)
class Adoption:
    """What to do with one image. `adopt` False means: touch nothing, and `reason` says why."""

    adopt: bool
    reason: str
    verdict: Verdict = Verdict.SKIPPED
    skip: SkipReason | None = None  # why not adopted (adopt False)
    # The tool's P:expires-at no longer follows P:retention (live tags): the writes rewrite it.
    rewrites_expiry: bool = False
    # Lifecycle tags the image lacks: written to the image, never overwriting a user's value.
    image_tags: dict[str, str] = field(default_factory=dict)
    # The full set of P: tags the image will carry: mirrored onto its snapshots.
    snapshot_tags: dict[str, str] = field(default_factory=dict)
    # P: tags to remove from the image and snapshots (a stale P:error once the problem is fixed).
    remove_keys: tuple[str, ...] = ()
    expires_at: datetime | None = None
    deprecate_at: datetime | None = None
    disable_deprecation: bool = False  # DisableImageDeprecation: the retention became forever
    errors: tuple[str, ...] = ()


def foreign_manager(image: Image) -> str | None:
    """The reason an image belongs to another lifecycle manager, or None."""
    for key, value in FOREIGN_MANAGER_TAGS.items():
        if key in image.tags and (value is None or image.tags[key] == value):
            return FOREIGN_REASONS[key]
    return None


def decide_adoption(
    image: Image,
    settings: Settings,
    now: datetime,
    account_id: str | None = None,
    known_regions: frozenset[str] | None = None,
) -> Adoption:
    keys = settings.keys
    tags = image.tags
    if image.state != "available":
        return Adoption(False, f"image is {image.state}, not available", skip=SkipReason.NOT_AVAILABLE)
    if account_id and image.owner_id and image.owner_id != account_id:
        return Adoption(False, f"owned by account {image.owner_id}, not this one", skip=SkipReason.NOT_OWNED)
    foreign = foreign_manager(image)
    if foreign:
        return Adoption(False, foreign, skip=SkipReason.FOREIGN_MANAGER)
    try:
        managed = parse_bool(tags.get(keys.managed))
    except TagError:
        return Adoption(
            False,
            f"{keys.managed} is {clip(tags[keys.managed], 40)!r}, not true or false: not adopting",
            errors=(f"managed: {clip(tags[keys.managed], 40)!r} is not true or false",),
            skip=SkipReason.BAD_TAG,
        )
    if managed is False:
        return Adoption(False, f"opted out ({keys.managed}=false)", skip=SkipReason.OPTED_OUT)
    has_lifecycle_tag = any(keys.is_lifecycle_key(k) for k in tags)
    if managed is None and not settings.manage_new_images and not has_lifecycle_tag:
        return Adoption(
            False, "ManageNewImages is false and the image has no lifecycle tag", skip=SkipReason.NOT_MANAGED
        )

    return _lifecycle_tags(image, settings, keys, now, known_regions)


def _lifecycle_tags(
    image: Image, settings: Settings, keys: TagKeys, now: datetime, known_regions: frozenset[str] | None
) -> Adoption:
    tags = image.tags
    want: dict[str, str] = {keys.managed: "true"}
    errors: list[str] = []

    # Retention: the user's, else the default. A bad one leaves the image unexpiring.
    if keys.retention not in tags:
        want[keys.retention] = settings.default_retention

    # Expiry, live (expiry.py): a user's P:expires-at wins; the tool's follows P:retention, with the
    # basis it came from beside it; nothing for forever.
    expiry = expiry_of(image, keys, settings.retention, settings.retention)
    expires_at = expiry.at
    owned: set[str] = set()  # keys the tool may overwrite on this image
    stale: list[str] = []  # keys the tool removes
    if expiry.error:
        errors.append(expiry.error)
    elif expiry.tool_owned:
        owned = {keys.expires_at, keys.expiry_basis}
        if expiry.expires_at_tag is None:  # the retention became forever: no expiry any more
            stale = [k for k in (keys.expires_at, keys.expiry_basis) if k in tags]
        else:
            want[keys.expires_at] = expiry.expires_at_tag
            if expiry.basis_tag is not None:
                want[keys.expiry_basis] = expiry.basis_tag
    elif expiry.rewrite and keys.expiry_basis in tags:  # the user's P:expires-at: a basis beside it is stale
        stale = [keys.expiry_basis]

    if keys.family not in tags:
        want[keys.family] = derive_family(image.name, image.image_id)
    if keys.keep_latest in tags:
        try:
            parse_keep_latest(tags[keys.keep_latest])
        except TagError as e:
            errors.append(str(e))
    else:
        want[keys.keep_latest] = str(settings.default_keep_latest)
    if keys.hold in tags:
        try:
            parse_bool(tags[keys.hold])
        except TagError:
            errors.append(f"hold {clip(tags[keys.hold], 40)!r} is not true or false")
    if keys.replicate_to in tags:
        try:
            parse_regions(tags[keys.replicate_to], known_regions)
        except TagError as e:
            errors.append(f"replicate-to: {e}")

    remove: tuple[str, ...] = tuple(stale)
    if errors:
        want[keys.error] = clip("; ".join(errors))
    elif keys.error in tags:
        remove = (*remove, keys.error)

    # Users' values are never overwritten, with two exceptions the tool owns: P:error, and P:managed
    # spelled `TRUE`/`yes`/`1`, rewritten to exactly `true` (the sweep's filter and the IAM conditions
    # match that spelling only).
    image_tags = {
        k: v
        for k, v in want.items()
        if tags.get(k) != v and (k in (keys.error, keys.managed) or k in owned or k not in tags)
    }
    # The image's full lifecycle tag set after this change, mirrored onto its snapshots.
    # P:hold stays where the user put it: the tool never writes it (IAM denies it), not onto snapshots.
    full = {k: v for k, v in tags.items() if keys.is_lifecycle_key(k) and k not in remove and k != keys.hold}
    full.update(image_tags)

    # The retention became forever: the deprecation time the tool set goes too.
    disable_deprecation = expiry.tool_owned and expires_at is None and image.deprecation_time is not None
    deprecate_at = deprecation_due_at(expires_at, image.deprecation_time, now)
    verdict = Verdict.ADOPTED if keys.managed in image_tags else Verdict.ALREADY_MANAGED
    return Adoption(
        adopt=True,
        reason=str(verdict),
        verdict=verdict,
        image_tags=image_tags,
        snapshot_tags=full,
        remove_keys=remove,
        expires_at=expires_at,
        deprecate_at=deprecate_at,
        disable_deprecation=disable_deprecation,
        errors=tuple(errors),
        rewrites_expiry=expiry.rewrite and expiry.tool_owned,
    )


def tag_limit_problem(image: Image, adoption: Adoption) -> str | None:
    """Why the image cannot take the tags `adoption` writes (EC2's limit of 50 per resource), or None."""
    after = (set(image.tags) | set(adoption.image_tags)) - set(adoption.remove_keys)
    if len(after) <= MAX_TAGS:
        return None
    needed = len(set(adoption.image_tags) - set(image.tags))
    return (
        f"cannot take {needed} more lifecycle tags: the image has {len(image.tags)} of the {MAX_TAGS} tags "
        "EC2 allows; remove some tags, then run a backfill"
    )


def plan_refusal(image: Image, problem: str, keys: TagKeys) -> list[Action]:
    """An image refused once and for all (no retry can make room): `P:error` alone says why, when
    one more tag still fits and it does not say so already. Nothing else is written."""
    fits = keys.error in image.tags or len(image.tags) < MAX_TAGS
    if not fits or image.tags.get(keys.error) == clip(problem):
        return []
    return [
        Action(
            Kind.REPORT_ERROR,
            image.region,
            image.image_id,
            resources=(image.image_id,),
            tags=((keys.error, clip(problem)),),
        )
    ]


def plan_tagging(
    image: Image, adoption: Adoption, snapshot_tags: Mapping[str, Mapping[str, str]] | None
) -> list[Action]:
    """The writes that carry out an adoption: one CreateTags for the image and its snapshots
    together in the common case, DeleteTags of stale keys, the deprecation time.

    `snapshot_tags`: the snapshots' current tags (by id) when known; without them, and when the
    image itself changes, every snapshot gets the image's full lifecycle set; when only the
    snapshots may lack tags and their tags are unknown, the caller reads them first."""
    if not adoption.adopt:
        return []
    actions: list[Action] = []
    region, image_id = image.region, image.image_id
    why = "the expiry (P:retention changed)" if adoption.rewrites_expiry else ""
    snapshots = _snapshots_needing_tags(image, adoption, snapshot_tags)
    if adoption.image_tags == adoption.snapshot_tags or not adoption.image_tags:
        # The common case: a new image without lifecycle tags. One call for image and snapshots.
        ids = ([image_id] if adoption.image_tags else []) + snapshots
        tags = adoption.snapshot_tags if snapshots else adoption.image_tags
        if ids and tags:
            actions.append(
                Action(Kind.TAG, region, image_id, tuple(ids), tuple(tags.items()), why=why, snapshots=len(snapshots))
            )
    else:
        # The user set some lifecycle tags on the image: add only the missing ones there, and
        # mirror the full set onto the snapshots.
        actions.append(Action(Kind.TAG, region, image_id, (image_id,), tuple(adoption.image_tags.items()), why=why))
        if snapshots and adoption.snapshot_tags:
            actions.append(
                Action(
                    Kind.TAG,
                    region,
                    image_id,
                    tuple(snapshots),
                    tuple(adoption.snapshot_tags.items()),
                    snapshots=len(snapshots),
                )
            )
    if adoption.remove_keys:
        actions.append(
            Action(
                Kind.UNTAG, region, image_id, (image_id, *image.snapshot_ids), keys=tuple(adoption.remove_keys), why=why
            )
        )
    if adoption.deprecate_at is not None:
        actions.append(Action(Kind.DEPRECATE, region, image_id, at=adoption.deprecate_at))
    elif adoption.disable_deprecation:
        actions.append(Action(Kind.UNDEPRECATE, region, image_id))
    return actions


def needs_snapshot_tags(image: Image, adoption: Adoption) -> bool:
    """Whether planning needs the snapshots' current tags: nothing changes on the image, so only
    snapshots lacking the image's lifecycle tags are tagged."""
    return bool(
        adoption.adopt
        and image.snapshot_ids
        and adoption.snapshot_tags
        and not adoption.image_tags
        and not adoption.remove_keys
    )


def _snapshots_needing_tags(
    image: Image, adoption: Adoption, known: Mapping[str, Mapping[str, str]] | None
) -> list[str]:
    if not image.snapshot_ids or not adoption.snapshot_tags:
        return []
    if not needs_snapshot_tags(image, adoption):
        # The image's tags change: its snapshots get the same change in the same call.
        return list(image.snapshot_ids)
    known = known or {}
    return [
        sid
        for sid in image.snapshot_ids
        if sid in known and any(known[sid].get(k) != v for k, v in adoption.snapshot_tags.items())
    ]


def tagged(image: Image, adoption: Adoption) -> Image:
    """The image with the tags and deprecation time `adoption` gives it (what a dry run assumes)."""
    if not adoption.adopt:
        return image
    tags = {k: v for k, v in image.tags.items() if k not in adoption.remove_keys}
    tags.update(adoption.image_tags)
    if adoption.deprecate_at is not None:
        deprecation = adoption.deprecate_at
    elif adoption.disable_deprecation:
        deprecation = None
    else:
        deprecation = image.deprecation_time
    return replace(image, tags=tags, deprecation_time=deprecation)
