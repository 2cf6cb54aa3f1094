"""Which images the tool adopts, and which lifecycle tags they get (PRODUCT.md section 1).

Pure decision logic: a function of the image's facts, the settings and `now`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .model import Image
from .settings import Settings
from .tags import (
    FOREIGN_MANAGER_TAGS,
    TagError,
    TagKeys,
    clip,
    derive_family,
    format_instant,
    parse_bool,
    parse_instant,
    parse_keep_latest,
    parse_regions,
    parse_retention,
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
    retention = settings.retention
    retention_ok = True
    if keys.retention in tags:
        try:
            retention = parse_retention(tags[keys.retention])
        except TagError as e:
            errors.append(str(e))
            retention_ok = False
    else:
        want[keys.retention] = settings.default_retention

    # Expiry: a user's P:expires-at wins; otherwise CreationDate + retention.
    expires_at: datetime | None = None
    if keys.expires_at in tags:
        try:
            expires_at = parse_instant(tags[keys.expires_at])
        except TagError as e:
            errors.append(str(e))
    elif retention_ok:
        try:
            expires_at = retention.expiry(image.creation_date)
        except (TagError, OverflowError):
            errors.append(f"retention {retention.text!r} runs past the year 9999")
        if expires_at is not None:
            want[keys.expires_at] = format_instant(expires_at)

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

    remove: tuple[str, ...] = ()
    if errors:
        want[keys.error] = clip("; ".join(errors))
    elif keys.error in tags:
        remove = (keys.error,)

    # Users' values are never overwritten, with two exceptions the tool owns: P:error, and P:managed
    # spelled `TRUE`/`yes`/`1`, rewritten to exactly `true` (the sweep's filter and the IAM conditions
    # match that spelling only).
    image_tags = {
        k: v for k, v in want.items() if tags.get(k) != v and (k in (keys.error, keys.managed) or k not in tags)
    }
    # The image's full lifecycle tag set after this change, mirrored onto its snapshots.
    # P:hold stays where the user put it: the tool never writes it (IAM denies it), not onto snapshots.
    full = {k: v for k, v in tags.items() if keys.is_lifecycle_key(k) and k not in remove and k != keys.hold}
    full.update(image_tags)

    deprecate_at = None
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
        errors=tuple(errors),
    )
