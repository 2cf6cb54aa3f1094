"""Which images the tool adopts, and which lifecycle tags they get (PRODUCT.md section 1).

Pure decision logic: a function of the image's facts, the settings and `now`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

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
        return Adoption(False, f"image is {image.state}, not available")
    if account_id and image.owner_id and image.owner_id != account_id:
        return Adoption(False, f"owned by account {image.owner_id}, not this one")
    foreign = foreign_manager(image)
    if foreign:
        return Adoption(False, foreign)
    try:
        managed = parse_bool(tags.get(keys.managed))
    except TagError:
        return Adoption(
            False,
            f"{keys.managed} is {clip(tags[keys.managed], 40)!r}, not true or false: not adopting",
            errors=(f"managed: {clip(tags[keys.managed], 40)!r} is not true or false",),
        )
    if managed is False:
        return Adoption(False, f"opted out ({keys.managed}=false)")
    has_lifecycle_tag = any(keys.is_lifecycle_key(k) for k in tags)
    if managed is None and not settings.manage_new_images and not has_lifecycle_tag:
        return Adoption(False, "ManageNewImages is false and the image has no lifecycle tag")

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

    deprecate_at = None
    # The retention became forever: the deprecation time the tool set goes too.
    disable_deprecation = expiry.tool_owned and expires_at is None and image.deprecation_time is not None
    if expires_at is not None and now < expires_at <= now + MAX_DEPRECATION_AHEAD:
        target = expires_at.replace(second=0, microsecond=0)
        current = image.deprecation_time.replace(second=0, microsecond=0) if image.deprecation_time else None
        if current != target:
            deprecate_at = expires_at
    return Adoption(
        adopt=True,
        reason="adopted" if keys.managed in image_tags else "already managed",
        image_tags=image_tags,
        snapshot_tags=full,
        remove_keys=remove,
        expires_at=expires_at,
        deprecate_at=deprecate_at,
        disable_deprecation=disable_deprecation,
        errors=tuple(errors),
    )
