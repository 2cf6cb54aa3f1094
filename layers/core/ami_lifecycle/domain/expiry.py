"""When an image expires: live tags (PRODUCT.md section 1). Pure: no AWS, environment or clock.

`P:expires-at` is either the tool's or the user's, and EC2 cannot say who wrote a tag. So beside
every `P:expires-at` it computes, the tool writes the basis it computed it from,
`P:expiry-basis` = the retention (`90d`). A `P:expires-at` is the tool's when that basis is present
**and** the value still equals `CreationDate + basis`; anything else is the user's, and the user's
always wins. When the tool's value is stale (the user changed `P:retention` since), the expiry is
recomputed from the new retention, or there is none for `forever`; the tags are rewritten by
whoever may tag (events, backfill, sweep) and the deprecation time follows.

Images adopted before the basis existed carry no `P:expiry-basis`: their `P:expires-at` is taken
as the tool's when it equals, to the second, `CreationDate + P:retention` or `CreationDate +
DefaultRetention` (the values the tool writes); the basis is written when the value next changes.
A legacy image whose custom retention was changed before the basis existed cannot be told from a
user's value: its `P:expires-at` stays (the safe side).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from .model import Image
from .tags import Retention, TagError, TagKeys, clip, format_instant, parse_instant, parse_retention


@dataclass(frozen=True)
class Expiry:
    """When an image expires. `at` None: never, or unknown (`error` says why it is unusable).

    `tool_owned`: `P:expires-at` is (or would be) the tool's. `rewrite`: the tags do not say what
    the live rule says (stale or missing basis): `P:expires-at`/`P:expiry-basis` should become
    `expires_at_tag`/`basis_tag` (None: removed)."""

    at: datetime | None
    source: str  # "expires-at" (the user's), "retention", "forever", "untagged"
    error: str | None = None
    tool_owned: bool = False
    rewrite: bool = False
    expires_at_tag: str | None = None
    basis_tag: str | None = None


def _same_duration(a: Retention, b: Retention) -> bool:
    return a is b or (a.years, a.months, a.days, a.seconds, a.forever) == (
        b.years,
        b.months,
        b.days,
        b.seconds,
        b.forever,
    )


def _computed(image: Image, retention: Retention) -> datetime | None:
    """CreationDate + retention; None when it cannot be computed (past year 9999, or unknown date)."""
    if image.creation_error:
        return None
    try:
        return retention.expiry(image.creation_date)
    except (TagError, OverflowError):
        return None


def _same_second(a: datetime, b: datetime) -> bool:
    """`format_instant(a) == format_instant(b)`, without formatting in the usual case (both UTC, whole seconds)."""
    if a.tzinfo is UTC and b.tzinfo is UTC and not a.microsecond and not b.microsecond:
        return a == b
    return format_instant(a) == format_instant(b)


# What `_expiry` returns: the fields of `Expiry`, in order.
_Parts = tuple[datetime | None, str, str | None, bool, bool, str | None, str | None]


def expiry_of(
    image: Image, keys: TagKeys, default: Retention | None = None, tool_default: Retention | None = None
) -> Expiry:
    """The live expiry of an image (see the module docstring). `default`: the retention the tool
    gives an image without `P:retention` (adoption). `tool_default`: DefaultRetention, which the tool
    may have computed a legacy `P:expires-at` (one without a basis) from."""
    return Expiry(*_expiry(image, keys.retention, keys.expires_at, keys.expiry_basis, default, tool_default, True))


def _expiry(
    image: Image,
    retention_key: str,
    expires_at_key: str,
    basis_key: str,
    default: Retention | None,
    tool_default: Retention | None,
    tag_texts: bool,
) -> _Parts:
    """`expiry_of` as a tuple of the fields of `Expiry`. `tag_texts` False: the retention engine
    needs no `expires_at_tag` for an image without `P:expires-at` (it is not formatted, None)."""
    tags = image.tags
    retention: Retention | None = default
    if retention_key in tags:
        try:
            retention = parse_retention(tags[retention_key])
        except TagError as e:
            return (None, "retention", str(e), False, False, None, None)
    if expires_at_key in tags:
        expires_at_text = tags[expires_at_key]
        try:
            at = parse_instant(expires_at_text)
        except TagError as e:
            return (None, "expires-at", str(e), False, False, None, None)
        basis_text = tags.get(basis_key)
        basis: Retention | None = None
        from_basis: datetime | None = None  # CreationDate + basis
        if basis_text is not None:
            try:
                basis = parse_retention(basis_text)
            except TagError:
                basis = None
            if basis is not None and not basis.forever:
                from_basis = _computed(image, basis)
        else:
            # Adopted before the basis existed: the tool's if it is the value the tool would have
            # written, from the retention the image states now or from DefaultRetention.
            for candidate in (retention, tool_default or default):
                if candidate is not None and not candidate.forever:
                    legacy = _computed(image, candidate)
                    if legacy is not None and _same_second(legacy, at):
                        basis, from_basis = candidate, legacy
                        break
        tool_owned = from_basis is not None and _same_second(from_basis, at)
        if tool_owned and retention is not None and basis is not None:
            if retention.forever:
                return (None, "forever", None, True, True, None, None)
            # (A legacy image whose retention is unchanged is left as it is: no mass re-tagging on upgrade.)
            if not _same_duration(retention, basis):
                new = _computed(image, retention)
                if new is None:
                    return (None, "retention", _past_9999(retention), False, False, None, None)
                return (new, "retention", None, True, True, format_instant(new), retention.text)
            return (at, "retention", None, True, False, expires_at_text, basis_text)
        if retention is not None and retention.forever:
            # The user's P:expires-at beside forever: a contradiction. Keep, and say so.
            return (
                None,
                "expires-at",
                f"{retention_key} is forever but {expires_at_key} is {format_instant(at)}: "
                "conflicting tags (remove one)",
                False,
                False,
                None,
                None,
            )
        # The user's value wins; a basis left beside it is stale and goes.
        return (at, "expires-at", None, False, basis_text is not None, expires_at_text, None)
    if retention is None:
        return (None, "untagged", None, False, False, None, None)
    if retention.forever:
        return (None, "forever", None, False, False, None, None)
    new = _computed(image, retention)
    if new is None:
        return (None, "retention", _past_9999(retention), False, False, None, None)
    return (new, "retention", None, True, False, format_instant(new) if tag_texts else None, retention.text)


def _past_9999(retention: Retention) -> str:
    return f"retention {clip(retention.text, 40)!r} runs past the year 9999"
