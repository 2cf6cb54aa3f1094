"""The retirement rule (PRODUCT.md section 2) as a pure decision engine.

Nothing here calls AWS, reads the environment or the clock: every function is a function of an
image's facts (`Image`), its family ranking, what references it, the `Settings` and `now`.

Safety does not depend on the order of the checks. `decide` evaluates *every* condition and
collects each one that fails as a `Blocker`; an image is retired only when the list is empty.
The reported reason is the most telling blocker (`KEEP_PRIORITY`), and all of them are kept.

The conditions, each a reason code an image can be kept for:

- ``not-owned``: owned by another account.
- ``foreign-manager``: tagged by AWS Backup, Data Lifecycle Manager or EC2 Image Builder.
- ``not-managed``: ``P:managed`` is not ``true``.
- ``not-available``: state is neither ``available`` nor ``disabled`` (pending and failed images
  are not candidates; a disabled image may be retired).
- ``bad-tag``: a tag the rule reads cannot be parsed (``P:expires-at``, ``P:retention``,
  ``P:hold``, ``P:keep-latest``, also on another image of the family), or ``P:retention`` is
  ``forever`` while ``P:expires-at`` is set. Never retire what we cannot read.
- ``not-expired``: the expiry is after ``now``, never comes (``forever``), or is unknown (neither
  ``P:expires-at`` nor ``P:retention``: the tool has not tagged the image yet).
- ``hold``: ``P:hold`` = ``true``.
- ``keep-latest``: among the newest managed images of its family in its region.
- ``protected``: deregistration protection is on (or in its cooldown).
- ``in-use``: an instance, launch template version, launch configuration, SSM parameter or
  Image Builder recipe references it (the references are named).
- ``recently-launched``: someone launched an instance from it within ``KeepIfLaunchedWithin``
  (``LastLaunchedTime`` from DescribeImages).
- ``unverified``: a source that could reference it (instances, launch templates, launch
  configurations, SSM parameters, Image Builder recipes) did not answer in this run (failed,
  throttled past its retries, not permitted): "could not check" is never "unused".
- ``shared-in-use``: a consumer account the image is shared with uses it.
- ``shared-unverified``: it is shared and a consumer could not be checked (yet): a usage report is
  pending or was just requested, or launch permissions could not be read.
- ``unchecked``: nothing has checked yet whether it is in use: never retired on that basis.

Expiry (expiry.py: live tags). A user's ``P:expires-at`` decides when present; the tool's
(``P:expiry-basis`` beside it) follows a changed ``P:retention``; otherwise ``CreationDate +
P:retention``. Expiry exactly equal to ``now`` counts as expired
("at or before now").

keep-latest. The images ranked in a family are the *managed* images (``P:managed`` = ``true``,
owned, not foreign) that exist (``available`` or ``disabled``) in one region, newest
``CreationDate`` first (ties broken by image id). Held, never-expiring and badly-tagged images
count among them. Each image states an N (its ``P:keep-latest``, else ``DefaultKeepLatest``);
when the images of a family disagree, **the family keeps the largest N any of its images
states**: every image's statement "the N newest of my family are never retired" is honoured.
A lowered N therefore takes effect once the images that stated the larger N have dropped out of
the newest N (or are re-tagged). If any image of the family has an unparseable
``P:keep-latest``, the family's N is unknown and every image of the family is kept (``bad-tag``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from .adoption import MAX_DEPRECATION_AHEAD, foreign_manager
from .evidence import ShareState, Usage
from .expiry import expiry_of
from .model import Image, Reference
from .settings import Settings
from .tags import (
    TagError,
    TagKeys,
    clip,
    derive_family,
    format_instant,
    parse_bool,
    parse_keep_latest,
)

# States an image may be retired from. A disabled image is still registered (and counts toward
# the AMI quota); pending and failed images are not candidates.
RETIRABLE_STATES = frozenset({"available", "disabled"})
# How many references a human-readable reason names before "and N more".
NAMED_REFERENCES = 5
DEPRECATION_MARGIN = timedelta(minutes=2)


class Reason(StrEnum):
    EXPIRED = "expired"  # the reason an image is retired
    NOT_OWNED = "not-owned"
    FOREIGN_MANAGER = "foreign-manager"
    NOT_MANAGED = "not-managed"
    NOT_AVAILABLE = "not-available"
    BAD_TAG = "bad-tag"
    NOT_EXPIRED = "not-expired"
    HOLD = "hold"
    KEEP_LATEST = "keep-latest"
    PROTECTED = "protected"
    IN_USE = "in-use"
    RECENTLY_LAUNCHED = "recently-launched"
    SHARED_IN_USE = "shared-in-use"
    UNVERIFIED = "unverified"
    SHARED_UNVERIFIED = "shared-unverified"
    UNCHECKED = "unchecked"


# Which blocker is reported as *the* reason when several hold (all of them are reported).
KEEP_PRIORITY: tuple[Reason, ...] = (
    Reason.NOT_OWNED,
    Reason.FOREIGN_MANAGER,
    Reason.NOT_MANAGED,
    Reason.NOT_AVAILABLE,
    Reason.BAD_TAG,
    Reason.NOT_EXPIRED,
    Reason.HOLD,
    Reason.KEEP_LATEST,
    Reason.PROTECTED,
    Reason.IN_USE,
    Reason.SHARED_IN_USE,
    Reason.RECENTLY_LAUNCHED,
    Reason.UNVERIFIED,
    Reason.SHARED_UNVERIFIED,
    Reason.UNCHECKED,
)


@dataclass(frozen=True)
class Blocker:
    """One condition of the rule that the image fails, with a human-readable explanation."""

    reason: Reason
    detail: str


@dataclass(frozen=True)
class Decision:
    image_id: str
    retire: bool
    reason: Reason  # EXPIRED when retired, else the first blocker in KEEP_PRIORITY
    detail: str
    blockers: tuple[Blocker, ...] = ()
    family: str | None = None
    expires_at: datetime | None = None
    references: tuple[Reference, ...] = ()

    @property
    def action(self) -> str:
        return "retire" if self.retire else "keep"

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(str(b.reason) for b in self.blockers)

    @property
    def awaits_reference_check(self) -> bool:
        """Every other condition holds: only the in-use check is missing."""
        reasons = {b.reason for b in self.blockers}
        # A recently launched image is checked too: "in use by i-0abc" says more than a launch time.
        return (
            not self.retire and Reason.UNCHECKED in reasons and reasons <= {Reason.UNCHECKED, Reason.RECENTLY_LAUNCHED}
        )


@dataclass(frozen=True)
class FamilyRank:
    """An image's place in its family (one region): position 0 is the newest."""

    family: str
    position: int
    size: int
    # The family's N (the largest any of its images states); None when unknown (bad tag).
    keep_latest: int | None
    newest: tuple[str, ...] = ()  # ids of the N newest: never retired
    bad_members: tuple[str, ...] = field(default=(), repr=False)

    @property
    def within_keep_latest(self) -> bool:
        return self.keep_latest is not None and self.position < self.keep_latest


# ---------------------------------------------------------------- facts from tags


def is_managed(image: Image, keys: TagKeys) -> bool:
    """`P:managed` is `true` (an unparseable value is not managed)."""
    try:
        return parse_bool(image.tags.get(keys.managed)) is True
    except TagError:
        return False


def is_owned(image: Image, account_id: str | None) -> bool:
    return not (account_id and image.owner_id and image.owner_id != account_id)


def family_of(image: Image, keys: TagKeys) -> str:
    """`P:family`, else the image Name without its date/version/build suffix (as adoption derives it)."""
    value = image.tags.get(keys.family, "").strip()
    return value or derive_family(image.name, image.image_id)


def keep_latest_of(image: Image, settings: Settings) -> int:
    """The N this image states: `P:keep-latest`, else DefaultKeepLatest. Raises TagError."""
    value = image.tags.get(settings.keys.keep_latest)
    return settings.default_keep_latest if value is None else parse_keep_latest(value)


def counts_in_family(image: Image, settings: Settings, account_id: str | None = None) -> bool:
    """Whether the image is one of the managed images ranked for keep-latest."""
    return (
        is_managed(image, settings.keys)
        and is_owned(image, account_id)
        and foreign_manager(image) is None
        and image.state in RETIRABLE_STATES
    )


# ---------------------------------------------------------------- ranking


def rank_families(images: Iterable[Image], settings: Settings, account_id: str | None = None) -> dict[str, FamilyRank]:
    """Rank every managed image within its family and region (see the module docstring).

    Images that do not count (unmanaged, foreign, not owned, pending, failed) get no entry.
    """
    groups: dict[tuple[str, str], list[Image]] = defaultdict(list)
    for image in images:
        if counts_in_family(image, settings, account_id):
            groups[(image.region, family_of(image, settings.keys))].append(image)

    ranks: dict[str, FamilyRank] = {}
    for (_region, family), members in groups.items():
        members.sort(key=lambda i: (i.creation_date, i.image_id), reverse=True)
        stated: list[int] = []
        bad: list[str] = []
        for image in members:
            try:
                stated.append(keep_latest_of(image, settings))
            except TagError:
                bad.append(image.image_id)
        n = None if bad else max(stated, default=settings.default_keep_latest)
        newest = tuple(i.image_id for i in members[:n]) if n is not None else ()
        for position, image in enumerate(members):
            ranks[image.image_id] = FamilyRank(family, position, len(members), n, newest, tuple(bad))
    return ranks


# ---------------------------------------------------------------- the rule


def decide(
    image: Image,
    rank: FamilyRank | None,
    usage: Usage | None,
    settings: Settings,
    now: datetime,
    account_id: str | None = None,
) -> Decision:
    """Retire or keep one image. `rank` comes from `rank_families` over every image of the region;
    `usage` None means the in-use check has not been made (the image is then never retired); a
    `Usage` with unanswered sources or an unverified sharing keeps it too."""
    keys = settings.keys
    tags = image.tags
    blockers: list[Blocker] = []

    def keep(reason: Reason, detail: str) -> None:
        blockers.append(Blocker(reason, detail))

    if not is_owned(image, account_id):
        keep(Reason.NOT_OWNED, f"owned by account {image.owner_id}, not {account_id}")
    foreign = foreign_manager(image)
    if foreign:
        keep(Reason.FOREIGN_MANAGER, f"{foreign}: another lifecycle manager retires it")
    if not is_managed(image, keys):
        value = tags.get(keys.managed)
        keep(
            Reason.NOT_MANAGED,
            f"{keys.managed} is absent" if value is None else f"{keys.managed} is {clip(value, 40)!r}, not true",
        )
    if image.state not in RETIRABLE_STATES:
        keep(Reason.NOT_AVAILABLE, f"image is {image.state}: only available or disabled images are retired")

    expiry = expiry_of(image, keys, tool_default=settings.retention)
    if image.creation_error:
        keep(Reason.BAD_TAG, image.creation_error)
    if expiry.error:
        keep(Reason.BAD_TAG, expiry.error)
    elif expiry.at is None:
        keep(
            Reason.NOT_EXPIRED,
            f"{keys.retention} is forever: never expires"
            if expiry.source == "forever"
            else f"no {keys.expires_at} or {keys.retention}: the tool has not tagged it yet",
        )
    elif expiry.at > now:
        keep(Reason.NOT_EXPIRED, f"expires at {format_instant(expiry.at)}")

    try:
        if parse_bool(tags.get(keys.hold)):
            keep(Reason.HOLD, f"{keys.hold} is true")
    except TagError:
        keep(Reason.BAD_TAG, f"{keys.hold} is {clip(tags[keys.hold], 40)!r}, not true or false")

    if keys.keep_latest in tags:
        try:
            parse_keep_latest(tags[keys.keep_latest])
        except TagError as e:
            keep(Reason.BAD_TAG, str(e))
    if rank is not None:
        if rank.keep_latest is None:
            keep(
                Reason.BAD_TAG,
                f"keep-latest of family {rank.family!r} is unknown: unparseable {keys.keep_latest} on "
                + ", ".join(rank.bad_members[:NAMED_REFERENCES]),
            )
        elif rank.within_keep_latest:
            keep(
                Reason.KEEP_LATEST,
                f"#{rank.position + 1} newest of the {rank.size} images of family {rank.family!r} "
                f"in {image.region}; the {rank.keep_latest} newest are kept",
            )
    elif counts_in_family(image, settings, account_id):
        keep(Reason.KEEP_LATEST, "its family has not been ranked: kept")

    if image.protected:
        keep(Reason.PROTECTED, f"deregistration protection is {image.deregistration_protection}")

    launched = image.last_launched_time
    window = settings.launched_within
    if window and launched is not None and now - launched < window:
        keep(
            Reason.RECENTLY_LAUNCHED,
            f"last launched at {format_instant(launched)}, within {settings.keep_if_launched_within}",
        )

    references: Sequence[Reference] = ()
    if usage is None:
        if all(b.reason is Reason.RECENTLY_LAUNCHED for b in blockers):
            keep(Reason.UNCHECKED, "not yet checked for use by instances, launch templates or configurations")
    else:
        references = usage.references
        if references:
            keep(Reason.IN_USE, "used by " + describe_references(references))
        if usage.unverified:
            keep(Reason.UNVERIFIED, "not proven unused: no answer from " + "; ".join(usage.unverified))
        if usage.sharing.state is ShareState.IN_USE:
            keep(Reason.SHARED_IN_USE, usage.sharing.detail)
        elif usage.sharing.state is ShareState.UNVERIFIED:
            keep(Reason.SHARED_UNVERIFIED, usage.sharing.detail)

    family = rank.family if rank is not None else None
    if not blockers:
        assert expiry.at is not None  # every condition holds, so the expiry is known and past
        return Decision(
            image.image_id,
            True,
            Reason.EXPIRED,
            f"expired at {format_instant(expiry.at)}",
            family=family,
            expires_at=expiry.at,
        )
    blockers.sort(key=lambda b: KEEP_PRIORITY.index(b.reason))
    return Decision(
        image.image_id,
        False,
        blockers[0].reason,
        blockers[0].detail,
        tuple(blockers),
        family=family,
        expires_at=expiry.at,
        references=tuple(references),
    )


def decide_all(
    images: Sequence[Image],
    settings: Settings,
    now: datetime,
    usage: Mapping[str, Usage] | None = None,
    account_id: str | None = None,
) -> dict[str, Decision]:
    """Rank and decide every image of one region. `usage` (by image id) None: not checked; an image
    missing from a given mapping has not been checked either."""
    ranks = rank_families(images, settings, account_id)
    return {
        image.image_id: decide(
            image,
            ranks.get(image.image_id),
            None if usage is None else usage.get(image.image_id),
            settings,
            now,
            account_id,
        )
        for image in images
    }


def describe_references(references: Sequence[Reference]) -> str:
    named = ", ".join(str(r) for r in references[:NAMED_REFERENCES])
    more = len(references) - NAMED_REFERENCES
    return named + (f" and {more} more" if more > 0 else "")


# ---------------------------------------------------------------- deprecation


def deprecation_due(image: Image, settings: Settings, now: datetime, account_id: str | None = None) -> datetime | None:
    """The deprecation time to set on a managed image whose native deprecation time is missing or
    differs (to the minute) from its future expiry; None when nothing is to be done. This is how
    copies in replica regions get theirs: their tagging events fire in other regions."""
    if not counts_in_family(image, settings, account_id) or image.state != "available":
        return None
    expiry = expiry_of(image, settings.keys, tool_default=settings.retention)
    # EC2 rounds the time down to the minute and refuses one in the past: leave a margin.
    if expiry.error or expiry.at is None or not now + DEPRECATION_MARGIN < expiry.at <= now + MAX_DEPRECATION_AHEAD:
        return None
    target = expiry.at.replace(second=0, microsecond=0)
    current = image.deprecation_time.replace(second=0, microsecond=0) if image.deprecation_time else None
    return None if current == target else expiry.at
