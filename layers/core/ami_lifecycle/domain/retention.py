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

Speed: `decide_all` decides a region's whole fleet, 100,000 images a second or more. One pass over
the images ranks the families and decides each image (then the newest N of each family again,
with their rank); the tag keys and settings are read once per `Settings` (`_Context`); the tags
the tool writes are read without the general parsers (`_decide`, with `_expiry` for anything
else); parsed tag texts are remembered (tags.py); the human-readable texts of "expires at" and
"expired at" are formatted when first read, and a decision's blockers made when first read
(`_Detail`, `_Blockers`): they read as ever. Fewer objects per image also means less work for
Python's garbage collector, which traces every object again and again while they accumulate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import chain
from operator import attrgetter
from typing import Any

from .adoption import deprecation_due_at, foreign_manager
from .evidence import ShareState, Usage
from .expiry import _expiry, expiry_of
from .model import Image, Reference
from .settings import Settings
from .tags import _KEEP_LATEST as _KEEP_LATEST_PARSED  # parse_keep_latest's memory of the texts it accepted
from .tags import (
    FOREIGN_MANAGER_TAGS,
    TagError,
    TagKeys,
    clip,
    derive_family,
    format_instant,
    parse_bool,
    parse_keep_latest,
    parse_retention,
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
_PRIORITY: dict[Reason, int] = {reason: i for i, reason in enumerate(KEEP_PRIORITY)}


# ---------------------------------------------------------------- texts formatted when read


class _Lazy:
    """Base of the results with a `detail` text formatted when first read: the `detail` slot holds
    the text (a str), or what `_render` formats it from."""

    __slots__ = ("_render",)
    _render: Callable[[Any], str] | None


class _Detail:
    """The `detail` field of a `_Lazy` dataclass: reading it always gives the text (formatted on
    first read, then kept), so equality, hashing, `repr`, `asdict`, `replace` and pickling all see
    the string."""

    __slots__ = ("slot",)

    def __init__(self, slot: Any) -> None:
        self.slot = slot  # the member descriptor of the `detail` slot

    def __get__(self, obj: _Lazy | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        raw = self.slot.__get__(obj)
        if type(raw) is str:
            return raw
        render = obj._render
        if render is None:  # (not a str, as given)
            return raw
        # (`_render` stays: a thread reading meanwhile formats the same text.)
        text = render(raw)
        self.slot.__set__(obj, text)
        return text

    def __set__(self, obj: _Lazy, value: str) -> None:
        self.slot.__set__(obj, value)
        _set(obj, "_render", None)


_new = object.__new__
_set = object.__setattr__


@dataclass(frozen=True, slots=True)
class Blocker(_Lazy):
    """One condition of the rule that the image fails, with a human-readable explanation."""

    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class Decision(_Lazy):
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


# `detail` as read: the text, formatted from the raw slot on first read (see `_Detail`).
setattr(Blocker, "detail", _Detail(Blocker.__dict__["detail"]))  # noqa: B010 (mypy: the field stays a str)
setattr(Decision, "detail", _Detail(Decision.__dict__["detail"]))  # noqa: B010

# A decision kept for one blocker only need not hold it: it is the decision's reason and detail.
_ONE_BLOCKER: Any = object()


class _Packed(tuple):
    """The blockers of a decision, until first read: (reason, detail, render) of each, in order.
    One object where a tuple of Blockers is an object per blocker more: fewer objects for Python's
    garbage collector to trace again and again while a region's decisions accumulate."""

    __slots__ = ()


class _Blockers:
    """The `blockers` field of Decision: a tuple of Blockers, or until first read `_ONE_BLOCKER`
    (the one blocker is the decision's reason and detail) or `_Packed`. Reading it always gives the
    tuple, so equality, hashing, `repr`, `asdict`, `replace` and pickling see it."""

    __slots__ = ("slot",)

    def __init__(self, slot: Any) -> None:
        self.slot = slot  # the member descriptor of the `blockers` slot

    def __get__(self, obj: Decision | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        found = self.slot.__get__(obj)
        if found is _ONE_BLOCKER:
            found = (_blocker(obj.reason, _DECISION_DETAIL_SLOT.__get__(obj), obj._render),)
            self.slot.__set__(obj, found)
        elif type(found) is _Packed:
            found = tuple([_blocker(found[i], found[i + 1], found[i + 2]) for i in range(0, len(found), 3)])
            self.slot.__set__(obj, found)
        return found

    def __set__(self, obj: Decision, value: tuple[Blocker, ...]) -> None:
        self.slot.__set__(obj, value)


setattr(Decision, "blockers", _Blockers(Decision.__dict__["blockers"]))  # noqa: B010

Render = Callable[[Any], str]


# The engine builds a result per image. A frozen dataclass refuses plain assignment (each field
# costs an object.__setattr__ call), so `_blocker` and `_decide` fill an instance of a class with
# the same slots and no frozen __setattr__, then make it the frozen class (the same memory layout:
# `__class__` assignment is allowed). Every slot is set; the result is a Blocker/Decision like any.


class _BlockerSlots(_Lazy):
    __slots__ = Blocker.__slots__
    reason: Reason
    detail: Any


class _DecisionSlots(_Lazy):
    __slots__ = Decision.__slots__
    image_id: str
    retire: bool
    reason: Reason
    detail: Any
    blockers: tuple[Blocker, ...]
    family: str | None
    expires_at: datetime | None
    references: tuple[Reference, ...]


def _blocker(reason: Reason, detail: Any, render: Render | None = None) -> Blocker:
    """Blocker(reason, detail), or with the text to be `render(detail)` when first read."""
    b = _new(_BlockerSlots)
    b.reason = reason
    b.detail = detail
    b._render = render
    b.__class__ = Blocker  # type: ignore[assignment]
    return b  # type: ignore[return-value]


def _raw_detail(b: Blocker) -> Any:
    """What a blocker's text is (or will be) formatted from, without formatting it."""
    return _BLOCKER_DETAIL_SLOT.__get__(b)


_BLOCKER_DETAIL_SLOT: Any = Blocker.__dict__["detail"].slot
_DECISION_DETAIL_SLOT: Any = Decision.__dict__["detail"].slot


@dataclass(frozen=True, slots=True)
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


class _FamilyRankSlots:
    __slots__ = FamilyRank.__slots__
    family: str
    position: int
    size: int
    keep_latest: int | None
    newest: tuple[str, ...]
    bad_members: tuple[str, ...]


def _family_rank(
    family: str, position: int, size: int, keep_latest: int | None, newest: tuple[str, ...], bad: tuple[str, ...]
) -> FamilyRank:
    """FamilyRank(...), built as `_blocker` builds a Blocker."""
    rank = _new(_FamilyRankSlots)
    rank.family = family
    rank.position = position
    rank.size = size
    rank.keep_latest = keep_latest
    rank.newest = newest
    rank.bad_members = bad
    rank.__class__ = FamilyRank  # type: ignore[assignment]
    return rank  # type: ignore[return-value]


# ---------------------------------------------------------------- what the rule reads of the settings


class _Context:
    """What `decide` and `rank_families` read of one `Settings`, read once (the keys are f-strings)."""

    __slots__ = (
        "default_keep_latest",
        "expires_at",
        "expiry_basis",
        "family",
        "forever",
        "held",
        "hold",
        "keep_latest",
        "keys",
        "managed",
        "retention",
        "settings",
        "tool_default",
        "untagged",
        "window",
        "window_text",
    )

    def __init__(self, settings: Settings) -> None:
        keys = settings.keys
        self.settings = settings
        self.keys = keys
        self.managed = keys.managed
        self.retention = keys.retention
        self.expires_at = keys.expires_at
        self.expiry_basis = keys.expiry_basis
        self.hold = keys.hold
        self.family = keys.family
        self.keep_latest = keys.keep_latest
        self.default_keep_latest = settings.default_keep_latest
        self.tool_default = settings.retention
        self.window = settings.launched_within
        self.window_text = settings.keep_if_launched_within
        # The blockers whose text depends on the settings only (immutable: shared by the decisions).
        self.forever = Blocker(Reason.NOT_EXPIRED, f"{keys.retention} is forever: never expires")
        self.untagged = Blocker(
            Reason.NOT_EXPIRED, f"no {keys.expires_at} or {keys.retention}: the tool has not tagged it yet"
        )
        self.held = Blocker(Reason.HOLD, f"{keys.hold} is true")


# Blockers with a fixed text (immutable: shared by the decisions).
_UNCHECKED = Blocker(Reason.UNCHECKED, "not yet checked for use by instances, launch templates or configurations")
_ONLY_UNCHECKED = (_UNCHECKED,)
_UNRANKED = Blocker(Reason.KEEP_LATEST, "its family has not been ranked: kept")

_last_context: tuple[Settings | None, _Context | None] = (None, None)


def _context(settings: Settings) -> _Context:
    """The context of `settings` (frozen: it cannot change), remembered for the last one used."""
    global _last_context
    last, context = _last_context
    if last is settings and context is not None:
        return context
    context = _Context(settings)
    _last_context = (settings, context)
    return context


# ---------------------------------------------------------------- facts from tags


def is_managed(image: Image, keys: TagKeys) -> bool:
    """`P:managed` is `true` (an unparseable value is not managed)."""
    value = image.tags.get(keys.managed)
    if value == "true":
        return True
    try:
        return parse_bool(value) is True
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
    return _counts(image, _context(settings), account_id)


# The tag keys of the other lifecycle managers: an image with none of them is not foreign. (Checked
# as `tags.keys().isdisjoint(_FOREIGN_KEYS)`: a lookup of each of these in the tags.)
_FOREIGN_KEYS = frozenset(FOREIGN_MANAGER_TAGS)


def _counts(image: Image, ctx: _Context, account_id: str | None) -> bool:
    """`counts_in_family`: managed, owned, not foreign, available or disabled."""
    tags = image.tags
    return (
        (tags.get(ctx.managed) == "true" or is_managed(image, ctx.keys))
        and not (account_id and image.owner_id and image.owner_id != account_id)
        and (tags.keys().isdisjoint(_FOREIGN_KEYS) or foreign_manager(image) is None)
        and image.state in RETIRABLE_STATES
    )


# ---------------------------------------------------------------- ranking

_NEWEST_FIRST = attrgetter("creation_date", "image_id")  # sorted in reverse
_IMAGE_ID = attrgetter("image_id")
# A ranked family: its name, its members newest first, its N (None: unknown: a member's
# P:keep-latest is unparseable), the members with an unparseable P:keep-latest.
_Family = tuple[str, list[Image], int | None, tuple[str, ...]]
# Deciding an image in `_families`' pass, before its family is ranked: it counts (the facts of
# `_decide`: size 0, N 0, no bad member, counted), no keep-latest blocker from its position.
_NOT_RANKED_YET: _Facts = (0, 0, (), True)


def _families(
    images: Iterable[Image],
    ctx: _Context,
    account_id: str | None,
    decide: tuple[dict[str, Decision], Callable[[str], Usage | None] | None, datetime] | None = None,
) -> Iterator[_Family]:
    """Every family (one region) of the images that count, ranked (see the module docstring), in
    the order in which their first images come.

    With `decide` (decisions, usage by id, now), for `decide_all`: each image is also decided in
    this pass, while its facts are at hand, as if it were not among the newest of its family
    (unknown yet); `decide_all` decides those again once the families are ranked."""
    # region -> family -> members (and the largest N they state); (region, family) in the order
    # first seen; the families with an unparseable N. (Nested maps: no key object per image.)
    groups: dict[str, dict[str, list[Image]]] = {}
    stated_max: dict[str, dict[str, int]] = {}
    order: list[tuple[str, str]] = []
    bad_keys: set[tuple[str, str]] = set()
    managed_key, family_key, keys = ctx.managed, ctx.family, ctx.keys
    keep_latest_key, default = ctx.keep_latest, ctx.default_keep_latest
    parsed = _KEEP_LATEST_PARSED
    decisions, usage_of, now = decide if decide is not None else (None, None, None)
    region: Any = _UNKNOWN
    of_region: dict[str, list[Image]] = {}
    max_of_region: dict[str, int] = {}
    for image in images:
        tags = image.tags
        # _counts, inline: this loop runs over every image of the region.
        if (
            (tags.get(managed_key) == "true" or is_managed(image, keys))
            and not (account_id and image.owner_id and image.owner_id != account_id)
            and (tags.keys().isdisjoint(_FOREIGN_KEYS) or foreign_manager(image) is None)
            and image.state in RETIRABLE_STATES
        ):
            if image.region != region or region is _UNKNOWN:
                region = image.region
                of_region = groups.setdefault(region, {})
                max_of_region = stated_max.setdefault(region, {})
            family = tags.get(family_key, "").strip() or derive_family(image.name, image.image_id)
            # keep_latest_of, inline (read here, while the image's tags are at hand).
            value = tags.get(keep_latest_key)
            stated: int | None
            if value is None:
                stated = default
            else:
                stated = parsed.get(value) if type(value) is str else None
                if stated is None:
                    try:
                        stated = parse_keep_latest(value)
                    except TagError:
                        stated = default
                        bad_keys.add((region, family))
            members = of_region.get(family)
            if members is None:
                of_region[family] = [image]
                max_of_region[family] = stated
                order.append((region, family))
            else:
                members.append(image)
                if stated > max_of_region[family]:
                    max_of_region[family] = stated
            if decisions is not None:
                image_id = image.image_id
                usage = None if usage_of is None else usage_of(image_id)
                decisions[image_id] = _decide(image, family, _NOT_RANKED_YET, 0, usage, ctx, now, account_id)  # type: ignore[arg-type]
        elif decisions is not None:
            image_id = image.image_id
            usage = None if usage_of is None else usage_of(image_id)
            decisions[image_id] = _decide(image, None, None, 0, usage, ctx, now, account_id)  # type: ignore[arg-type]

    for region, family in order:
        members = groups[region][family]
        if len(members) > 1:
            members.sort(key=_NEWEST_FIRST, reverse=True)
        if bad_keys and (region, family) in bad_keys:  # N unknown: which members say what, newest first
            bad = []
            for image in members:
                try:
                    _keep_latest_value(image.tags.get(keep_latest_key), default)
                except TagError:
                    bad.append(image.image_id)
            yield family, members, None, tuple(bad)
        else:
            yield family, members, stated_max[region][family], ()


def _keep_latest_value(value: str | None, default: int) -> int:
    """`keep_latest_of` for a `P:keep-latest` value (None: absent). Raises TagError."""
    return default if value is None else parse_keep_latest(value)


def rank_families(images: Iterable[Image], settings: Settings, account_id: str | None = None) -> dict[str, FamilyRank]:
    """Rank every managed image within its family and region (see the module docstring).

    Images that do not count (unmanaged, foreign, not owned, pending, failed) get no entry.
    """
    ranks: dict[str, FamilyRank] = {}
    for family, members, n, bad in _families(images, _context(settings), account_id):
        size = len(members)
        newest = () if n is None else tuple(map(_IMAGE_ID, members[:n]))
        for position, image in enumerate(members):
            ranks[image.image_id] = _family_rank(family, position, size, n, newest, bad)
    return ranks


# ---------------------------------------------------------------- the rule

# What `_decide` reads of a rank, besides the family and the position: (size, N, members with a
# bad keep-latest, counted). `counted`: the image is known to count in its family (`_families`
# ranked it, in this pass, with these settings and account): managed, owned, not foreign,
# available or disabled.
_Facts = tuple[int, int | None, tuple[str, ...], bool]
# Reasons read per image (an enum member read through its class is a lookup each time).
_NOT_EXPIRED = Reason.NOT_EXPIRED
_KEEP_LATEST_REASON = Reason.KEEP_LATEST
_EXPIRED = Reason.EXPIRED


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
    if rank is None:
        return _decide(image, None, None, 0, usage, _context(settings), now, account_id)
    facts = (rank.size, rank.keep_latest, rank.bad_members, False)
    return _decide(image, rank.family, facts, rank.position, usage, _context(settings), now, account_id)


def _expires_at_text(at: datetime) -> str:
    return f"expires at {format_instant(at)}"


def _expired_at_text(at: datetime) -> str:
    return f"expired at {format_instant(at)}"


def _keep_latest_text(position: int, size: int, family: str | None, region: str, n: int) -> str:
    return f"#{position + 1} newest of the {size} images of family {family!r} in {region}; the {n} newest are kept"


def _by_priority(blocker: Blocker) -> int:
    return _PRIORITY[blocker.reason]


# P:retention texts that are a whole number of days/hours/seconds (no years, months or forever):
# their timedelta, None for any other text (bad ones included). Bounded.
_DAYS: dict[str, timedelta | None] = {}
_UNKNOWN: Any = object()


def _days_of(text: str) -> timedelta | None:
    try:
        retention = parse_retention(text)
    except TagError:
        delta = None
    else:
        delta = None if retention.forever or retention.years or retention.months else retention.delta
    if len(_DAYS) >= 4096:
        _DAYS.clear()
    _DAYS[text] = delta
    return delta


_fromisoformat = datetime.fromisoformat


def _decide(
    image: Image,
    family: str | None,
    rank: _Facts | None,
    position: int,
    usage: Usage | None,
    ctx: _Context,
    now: datetime,
    account_id: str | None,
) -> Decision:
    """`decide` (every condition is evaluated, in the order of the module docstring)."""
    tags = image.tags
    blockers: list[Blocker] = []
    keep = blockers.append

    # An image that counts in its family passes these four (that is what counting is).
    counted = rank is not None and rank[3]
    if not counted:
        owner = image.owner_id
        if account_id and owner and owner != account_id:
            keep(_blocker(Reason.NOT_OWNED, f"owned by account {owner}, not {account_id}"))
        if not tags.keys().isdisjoint(_FOREIGN_KEYS):  # else no manager's tag: not foreign
            foreign = foreign_manager(image)
            if foreign:
                keep(_blocker(Reason.FOREIGN_MANAGER, f"{foreign}: another lifecycle manager retires it"))
        managed_key = ctx.managed
        if tags.get(managed_key) != "true" and not is_managed(image, ctx.keys):
            value = tags.get(managed_key)
            keep(
                _blocker(
                    Reason.NOT_MANAGED,
                    f"{managed_key} is absent" if value is None else f"{managed_key} is {clip(value, 40)!r}, not true",
                )
            )
        if image.state not in RETIRABLE_STATES:
            keep(
                _blocker(Reason.NOT_AVAILABLE, f"image is {image.state}: only available or disabled images are retired")
            )

    # The expiry (expiry.py). The tags the tool writes are read here: a P:retention of whole days
    # without P:expiry-basis, and either no P:expires-at or one as the tool writes it
    # (`2026-12-24T00:00:00Z`) equal to CreationDate + P:retention (the tool's, unchanged). For
    # these `_expiry` gives the same; anything else, or any doubt, is left to `_expiry`.
    creation_error = image.creation_error
    not_expired = False
    at: datetime | None = None
    source = ""
    known = False
    text = tags.get(ctx.retention)
    if type(text) is str and not creation_error and ctx.expiry_basis not in tags:
        delta = _DAYS.get(text, _UNKNOWN)
        if delta is _UNKNOWN:
            delta = _days_of(text)
        if delta is not None:
            expires_at = tags.get(ctx.expires_at)
            try:
                if expires_at is None:
                    if ctx.expires_at not in tags:
                        at, source, known = image.creation_date + delta, "retention", True
                elif type(expires_at) is str and len(expires_at) == 20 and expires_at[19] == "Z":
                    at = _fromisoformat(expires_at)
                    if image.creation_date + delta == at:  # (never equal if either is naive)
                        source, known = "retention", True
            except (ValueError, OverflowError, TypeError):
                known = False
    if known:
        error = None
    else:
        at, source, error, _, _, _, _ = _expiry(
            image, ctx.retention, ctx.expires_at, ctx.expiry_basis, None, ctx.tool_default, False
        )
    if creation_error:
        keep(_blocker(Reason.BAD_TAG, creation_error))
    if error:
        keep(_blocker(Reason.BAD_TAG, error))
    elif at is None:
        keep(ctx.forever if source == "forever" else ctx.untagged)
    elif at > now:
        # A UTC instant formats without fail: when read. Any other now (its conversion may fail here).
        if at.tzinfo is UTC:
            # Its blocker is made at the end, if it is not the only one (then the decision states it).
            not_expired = True
        else:
            keep(_blocker(_NOT_EXPIRED, _expires_at_text(at)))

    hold_key = ctx.hold
    hold = tags.get(hold_key)
    if hold is not None and hold != "false":
        try:
            if hold == "true" or parse_bool(hold):
                keep(ctx.held)
        except TagError:
            keep(_blocker(Reason.BAD_TAG, f"{hold_key} is {clip(tags[hold_key], 40)!r}, not true or false"))

    keep_latest_key = ctx.keep_latest
    stated = tags.get(keep_latest_key, _UNKNOWN)
    if stated is not _UNKNOWN and (type(stated) is not str or stated not in _KEEP_LATEST_PARSED):
        try:
            parse_keep_latest(stated)
        except TagError as e:
            keep(_blocker(Reason.BAD_TAG, str(e)))
    if rank is not None:
        size, n, bad, _counted = rank
        if n is None:
            keep(
                _blocker(
                    Reason.BAD_TAG,
                    f"keep-latest of family {family!r} is unknown: unparseable {keep_latest_key} on "
                    + ", ".join(bad[:NAMED_REFERENCES]),
                )
            )
        elif position < n:
            # (Formatted now: a string is no object for the garbage collector to trace, a
            # deferred text would be; there are few of these, one or so per family.)
            keep(_blocker(_KEEP_LATEST_REASON, _keep_latest_text(position, size, family, image.region, n)))
    elif _counts(image, ctx, account_id):
        keep(_UNRANKED)

    protection = image.deregistration_protection
    if protection and protection != "disabled" and image.protected:  # (None, "" and "disabled": not protected)
        keep(_blocker(Reason.PROTECTED, f"deregistration protection is {protection}"))

    # Only a recently-launched blocker can follow: "no blocker yet" is "every blocker is recently-launched".
    none_yet = not blockers and not not_expired
    launched = image.last_launched_time
    window = ctx.window
    if window and launched is not None and now - launched < window:
        keep(
            _blocker(
                Reason.RECENTLY_LAUNCHED,
                f"last launched at {format_instant(launched)}, within {ctx.window_text}",
            )
        )

    references: Sequence[Reference] = ()
    if usage is None:
        if none_yet:
            keep(_UNCHECKED)
    else:
        references = usage.references
        if references:
            keep(_blocker(Reason.IN_USE, "used by " + describe_references(references)))
        if usage.unverified:
            keep(_blocker(Reason.UNVERIFIED, "not proven unused: no answer from " + "; ".join(usage.unverified)))
        sharing = usage.sharing
        if sharing.state is ShareState.IN_USE:
            keep(_blocker(Reason.SHARED_IN_USE, sharing.detail))
        elif sharing.state is ShareState.UNVERIFIED:
            keep(_blocker(Reason.SHARED_UNVERIFIED, sharing.detail))

    # The Decision, built as `_blocker` builds a Blocker (inline: once per image).
    d = _new(_DecisionSlots)
    d.image_id = image.image_id
    d.family = family
    d.expires_at = at
    if not_expired:
        if not blockers:  # kept for this one only: the decision states it
            d.retire = False
            d.reason = _NOT_EXPIRED
            d.detail = at
            d._render = _expires_at_text
            d.blockers = _ONE_BLOCKER
            d.references = tuple(references)
            d.__class__ = Decision  # type: ignore[assignment]
            return d  # type: ignore[return-value]
        keep(_blocker(_NOT_EXPIRED, at, _expires_at_text))
    if not blockers:
        assert at is not None  # every condition holds, so the expiry is known and past
        d.retire = True
        d.reason = _EXPIRED
        if at.tzinfo is UTC:  # (as above)
            d.detail = at
            d._render = _expired_at_text
        else:
            d.detail = _expired_at_text(at)
            d._render = None
        d.blockers = ()
        d.references = ()
    else:
        if len(blockers) > 1:
            blockers.sort(key=_by_priority)
            first = blockers[0]
            packed: list[Any] = []
            for b in blockers:
                packed += (b.reason, _raw_detail(b), b._render)
            d.blockers = _Packed(packed)
        else:
            first = blockers[0]
            # (A shared blocker is kept as it is; any other is remade from the decision when read.)
            d.blockers = _ONLY_UNCHECKED if first is _UNCHECKED else _ONE_BLOCKER
        d.retire = False
        d.reason = first.reason
        d.detail = _raw_detail(first)  # the same text (formatted when read)
        d._render = first._render
        d.references = tuple(references)
    d.__class__ = Decision  # type: ignore[assignment]
    return d  # type: ignore[return-value]


def decide_all(
    images: Sequence[Image],
    settings: Settings,
    now: datetime,
    usage: Mapping[str, Usage] | None = None,
    account_id: str | None = None,
) -> dict[str, Decision]:
    """Rank and decide every image of one region. `usage` (by image id) None: not checked; an image
    missing from a given mapping has not been checked either."""
    ctx = _context(settings)
    usage_of = None if usage is None else usage.get
    # One pass ranks the families and decides every image (in the order of `images`) as if it
    # were not among the newest of its family; then the newest N of each family, and every
    # member of a family whose N is unknown, are decided again with their rank.
    decisions: dict[str, Decision] = {}
    families = _families(images, ctx, account_id, (decisions, usage_of, now))
    try:
        first = next(families, None)  # (the pass over the images is done)
        replay = len(decisions) != len(images)  # an id more than once
        if not replay and first is not None:
            for family, members, n, bad in chain((first,), families):
                if n == 0:
                    continue
                facts = (len(members), n, bad, True)
                for position, image in enumerate(members if n is None else members[:n]):
                    image_id = image.image_id
                    usage_of_image = None if usage_of is None else usage_of(image_id)
                    decisions[image_id] = _decide(image, family, facts, position, usage_of_image, ctx, now, account_id)
    except Exception:
        # An image the rule cannot read at all (a tag that is no text, ...): fail as ranking every
        # image, then deciding each in turn, always has (the same error, from the same image).
        replay = True
    if replay:
        return _decide_all_by_id(images, list(_families(images, ctx, account_id)), ctx, now, usage_of, account_id)
    return decisions


def _decide_all_by_id(
    images: Sequence[Image],
    families: list[_Family],
    ctx: _Context,
    now: datetime,
    usage_of: Callable[[str], Usage | None] | None,
    account_id: str | None,
) -> dict[str, Decision]:
    """`decide_all` as `rank_families`, then `decide` for each image in turn: each image with the
    rank (and usage) of its id, the last one decided for an id kept. For an id that occurs more
    than once, or an image that fails."""
    rank_of_id: dict[str, tuple[str, _Facts, int]] = {}
    for family, members, n, bad in families:
        facts = (len(members), n, bad, True)
        for position, image in enumerate(members):
            rank_of_id[image.image_id] = (family, facts, position)
    decisions: dict[str, Decision] = {}
    for image in images:
        image_id = image.image_id
        usage = None if usage_of is None else usage_of(image_id)
        rank = rank_of_id.get(image_id)
        if rank is None:
            decisions[image_id] = _decide(image, None, None, 0, usage, ctx, now, account_id)
        else:
            decisions[image_id] = _decide(image, rank[0], rank[1], rank[2], usage, ctx, now, account_id)
    return decisions


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
    if expiry.error:
        return None
    # EC2 rounds the time down to the minute and refuses one in the past: leave a margin.
    return deprecation_due_at(expiry.at, image.deprecation_time, now, DEPRECATION_MARGIN)
