"""The lifecycle tag contract (PRODUCT.md section 1): keys, parsing and rendering.

Pure functions only: nothing here calls AWS or reads the environment.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TypeVar

# EC2 limits: a tag value is at most 256 Unicode characters, a key 128.
MAX_TAG_VALUE = 256
MAX_TAG_KEY = 128
# Longest retention we accept. Anything longer is almost certainly a typo (e.g. 90000d),
# and EC2 deprecation times cannot be more than 10 years ahead anyway.
MAX_RETENTION_DAYS = 100 * 366
MAX_KEEP_LATEST = 1000

# Tags of other lifecycle managers: images carrying them are never adopted.
FOREIGN_MANAGER_TAGS: dict[str, str | None] = {
    "aws:backup:source-resource": None,  # AWS Backup
    "aws:dlm:lifecycle-policy-id": None,  # Data Lifecycle Manager
    "CreatedBy": "EC2 Image Builder",  # EC2 Image Builder
}


class TagError(ValueError):
    """A tag value the tool cannot understand. The message is short and human-readable: it goes into P:error."""


@dataclass(frozen=True)
class TagKeys:
    """Every lifecycle tag key, derived from the prefix (template parameter TagPrefix).

    Each key is built on first use and then kept on the instance (the engine reads them per image)."""

    prefix: str = "ami-lifecycle"

    def __post_init__(self) -> None:
        validate_prefix(self.prefix)

    def _k(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    @cached_property
    def managed(self) -> str:
        return self._k("managed")

    @cached_property
    def retention(self) -> str:
        return self._k("retention")

    @cached_property
    def expires_at(self) -> str:
        return self._k("expires-at")

    @cached_property
    def expiry_basis(self) -> str:
        """Written by the tool beside the `P:expires-at` it computed: the retention it came from."""
        return self._k("expiry-basis")

    @cached_property
    def hold(self) -> str:
        return self._k("hold")

    @cached_property
    def disabled_at(self) -> str:
        """Written by the tool when it disabled a retirable image (DisableBeforeDeregister)."""
        return self._k("disabled-at")

    @cached_property
    def launch_permissions(self) -> str:
        """Written beside `disabled-at`: who could launch the image before DisableImage removed it
        (EnableImage does not give it back: the tool does, when it re-enables the image)."""
        return self._k("launch-permissions")

    @cached_property
    def family(self) -> str:
        return self._k("family")

    @cached_property
    def keep_latest(self) -> str:
        return self._k("keep-latest")

    @cached_property
    def replicate_to(self) -> str:
        return self._k("replicate-to")

    @cached_property
    def source_image(self) -> str:
        return self._k("source-image")

    @cached_property
    def source_region(self) -> str:
        return self._k("source-region")

    @cached_property
    def error(self) -> str:
        return self._k("error")

    @cached_property
    def copies(self) -> str:
        """Written by the tool on a source image: the state of each of its copies (lineage record)."""
        return self._k("copies")

    def is_lifecycle_key(self, key: str) -> bool:
        return key.startswith(self.prefix + ":")


_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/=+@ ]{0,63}\Z")


def validate_prefix(prefix: str) -> str:
    if not isinstance(prefix, str):
        raise _not_text("tag prefix", prefix)
    if not _PREFIX_RE.match(prefix) or prefix.lower().startswith("aws"):
        raise TagError(
            f"tag prefix {_clip(prefix)!r} is invalid: 1-64 of letters, digits, '_.-/=+@ ', not starting with 'aws'"
        )
    return prefix


# ---------------------------------------------------------------- retention


@dataclass(frozen=True)
class Retention:
    """How long to keep an image after its CreationDate. `forever` has no expiry."""

    years: int = 0
    months: int = 0
    days: int = 0
    seconds: int = 0
    forever: bool = False
    text: str = ""

    def expiry(self, created: datetime) -> datetime | None:
        """CreationDate + retention, with calendar arithmetic for years and months; None for forever.
        Raises TagError when the expiry is not a representable date (after the year 9999)."""
        if self.forever:
            return None
        try:
            months = self.years * 12 + self.months
            return (add_months(created, months) if months else created) + self.delta
        except TagError:
            raise
        except (OverflowError, ValueError):  # datetime arithmetic out of range (years 1 to 9999)
            raise TagError("retention runs past the year 9999") from None

    @cached_property
    def delta(self) -> timedelta:
        """The days and seconds part (years and months are calendar arithmetic, see `expiry`)."""
        return timedelta(days=self.days, seconds=self.seconds)


FOREVER = Retention(forever=True, text="forever")

_SHORT_RE = re.compile(r"^([0-9]{1,7})\s*([hdw])\Z", re.ASCII)
_ISO_RE = re.compile(
    r"^P(?!$)(?:([0-9]+)Y)?(?:([0-9]+)M)?(?:([0-9]+)W)?(?:([0-9]+)D)?"
    r"(?:T(?=[0-9])(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?\Z",
    re.ASCII,
)


# Parsed texts (a fleet states few distinct ones). The values are immutable; bounded.
_RETENTIONS: dict[str, Retention] = {}
_KEEP_LATEST: dict[str, int] = {}
_PARSED_MAX = 4096


def parse_retention(value: str) -> Retention:
    """Parse `<n>h`, `<n>d`, `<n>w`, an ISO-8601 duration (`P30D`, `PT12H`, `P1Y2M`) or `forever`.

    Raises TagError on anything else, including negative, fractional, non-ASCII digits and
    durations over 100 years.
    """
    return _remembered(_RETENTIONS, _parse_retention, value)


def _parse_retention(value: str) -> Retention:
    if not isinstance(value, str):
        raise _not_text("retention", value)
    text = value.strip()
    if not text:
        raise TagError("retention is empty")
    if len(text) > 64:
        raise TagError("retention is too long")
    if text.lower() == "forever":
        return FOREVER
    short = _SHORT_RE.match(text.lower())
    if short:
        n, unit = int(short.group(1)), short.group(2)
        seconds = {"h": 3600, "d": 86400, "w": 7 * 86400}[unit] * n
        ret = Retention(days=seconds // 86400, seconds=seconds % 86400, text=text)
    else:
        iso = _ISO_RE.match(text.upper())
        if not iso:
            raise TagError(f"retention {_clip(text)!r} is not <n>h, <n>d, <n>w, an ISO-8601 duration or 'forever'")
        y, mo, w, d, h, mi, s = (int(g) if g else 0 for g in iso.groups())
        if max(y, mo, w, d, h, mi, s) > 10**7:
            raise TagError(f"retention {_clip(text)!r} is longer than 100 years")
        total_seconds = h * 3600 + mi * 60 + s
        ret = Retention(
            years=y,
            months=mo,
            days=w * 7 + d + total_seconds // 86400,
            seconds=total_seconds % 86400,
            text=text,
        )
    approx_days = ret.years * 366 + ret.months * 31 + ret.days + ret.seconds / 86400
    if approx_days > MAX_RETENTION_DAYS:
        raise TagError(f"retention {_clip(text)!r} is longer than 100 years")
    return ret


def add_months(when: datetime, months: int) -> datetime:
    if not months:
        return when
    index = when.month - 1 + months
    year, month = when.year + index // 12, index % 12 + 1
    if year > 9999:
        raise TagError("retention runs past the year 9999")
    day = min(when.day, calendar.monthrange(year, month)[1])
    return when.replace(year=year, month=month, day=day)


# ---------------------------------------------------------------- instants


def parse_instant(value: str) -> datetime:
    """Parse an ISO-8601 instant. `Z`, offsets and fractional seconds are accepted; a value without
    an offset is taken as UTC; a bare date means midnight UTC. Returns an aware UTC datetime.
    An instant outside the years 0001 to 9999 once converted to UTC is a TagError."""
    if not isinstance(value, str):
        raise _not_text("expires-at", value)
    text = value.strip()
    if not text or len(text) > 40:
        raise TagError(f"expires-at {_clip(text)!r} is not an ISO-8601 UTC instant")
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise TagError(f"expires-at {_clip(text)!r} is not an ISO-8601 UTC instant like 2026-12-24T00:00:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is in the year 10000 UTC
        raise TagError(f"expires-at {_clip(text)!r} is out of range: years 0001 to 9999 UTC") from None


def format_instant(when: datetime) -> str:
    """`2026-12-24T00:00:00Z`: what the tool writes into P:expires-at."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    if when.year < 1000:  # strftime does not pad the year to 4 digits: keep its rendering
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")
    # (%-formatting: about twice as fast as strftime or an f-string with format specs.)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (  # noqa: UP031
        when.year,
        when.month,
        when.day,
        when.hour,
        when.minute,
        when.second,
    )


def parse_aws_time(value: str) -> datetime:
    """CreationDate / DeprecationTime as EC2 returns them (`2026-03-01T17:00:00.000Z`)."""
    return parse_instant(value)


# ---------------------------------------------------------------- other values


def parse_bool(value: str | None) -> bool | None:
    """`true`/`false` (any case, surrounding spaces ignored). None for absent; TagError otherwise."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TagError(f"{_a(value)} is not true or false")
    v = value.strip().lower()
    if v in ("true", "yes", "1"):
        return True
    if v in ("false", "no", "0"):
        return False
    raise TagError(f"{_clip(value)!r} is not true or false")


def parse_keep_latest(value: str) -> int:
    return _remembered(_KEEP_LATEST, _parse_keep_latest, value)


_KEEP_LATEST_RE = re.compile(r"[0-9]{1,4}", re.ASCII)


def _parse_keep_latest(value: str) -> int:
    if not isinstance(value, str):
        raise _not_text("keep-latest", value)
    v = value.strip()
    if not _KEEP_LATEST_RE.fullmatch(v):
        raise TagError(f"keep-latest {_clip(value)!r} is not a whole number from 0 to {MAX_KEEP_LATEST}")
    n = int(v)
    if n > MAX_KEEP_LATEST:
        raise TagError(f"keep-latest {n} is more than {MAX_KEEP_LATEST}")
    return n


_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}\Z", re.ASCII)


def parse_regions(value: str, known: frozenset[str] | None = None) -> list[str]:
    """Comma-separated region names; `none` (or empty) means no regions. Duplicates are dropped,
    order is kept. A name that is not a region, or not one of `known` when given, is a TagError."""
    if not isinstance(value, str):
        raise _not_text("regions", value)
    v = value.strip()
    if not v or v.lower() == "none":
        return []
    regions: dict[str, None] = {}  # ordered, and linear however many names there are
    for raw in v.split(","):
        region = raw.strip().lower()
        if not region:
            continue
        if not _REGION_RE.match(region) or (known is not None and region not in known):
            raise TagError(f"{_clip(raw.strip())!r} is not an AWS region")
        regions[region] = None
    return list(regions)


def is_region_name(value: str) -> bool:
    """Shaped like a region name (`us-east-1`); False for anything else, including a non-string."""
    return isinstance(value, str) and bool(_REGION_RE.match(value))


# ---------------------------------------------------------------- family

_SUFFIX_TOKEN = re.compile(
    r"""(
        v?[0-9]+(\.[0-9]+)+[a-z0-9]*      # versions: v1.4.2, 1.0.3, 2.0.20240131
      | v[0-9]+                            # v7
      | [0-9]+                             # dates, build numbers, epoch seconds
      | [0-9]{8}t[0-9]{4,6}z?              # 20260301t1700z timestamps
      | (build|b|rc|r|release)[0-9]*       # build123, rc1
    )$""",
    re.VERBOSE | re.ASCII | re.IGNORECASE,
)
_SEPARATORS = "-_. :/"


def derive_family(name: str | None, fallback: str) -> str:
    """The image Name with a trailing date, version or build-number suffix removed.

    `web-2026-03-01-17` -> `web`, `api-v1.4.2` -> `api`, `base-ubuntu-22.04-20260301` -> `base-ubuntu`.
    A name that is nothing but a suffix keeps its first token; no name (or not a string) gives
    `fallback`. Always a non-empty string of at most MAX_TAG_VALUE characters.
    """
    if not isinstance(name, str) or not name.strip():
        return (fallback if isinstance(fallback, str) and fallback else "unnamed")[:MAX_TAG_VALUE]
    tokens = re.split(r"([-_. :/]+)", name.strip())
    # tokens alternate: word, separator, word, ...
    words = tokens[0::2]
    while len(words) > 1 and (not words[-1] or _SUFFIX_TOKEN.match(words[-1])):
        words.pop()
    family_tokens = tokens[: 2 * len(words) - 1]
    family = "".join(family_tokens).rstrip(_SEPARATORS) or name.strip()
    return family[:MAX_TAG_VALUE]


def clip(value: str, limit: int = MAX_TAG_VALUE) -> str:
    """Shorten a value to fit in a tag."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _clip(value: str) -> str:
    return clip(value, 40)


def _not_text(what: str, value: object) -> TagError:
    """The refusal of a value that is not a string (a parser's input may come from anywhere)."""
    return TagError(f"{what} is absent" if value is None else f"{what} is {_a(value)}, not text")


def _a(value: object) -> str:
    """`a list`, `an int`: the kind of a value, for messages (never its content: it may be huge)."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


_T = TypeVar("_T")


def _remembered(cache: dict[str, _T], parse: Callable[[str], _T], value: str) -> _T:
    """`parse(value)`, remembered per text (pure parses of immutable results); a refusal raises
    every time and is not remembered; a value that is not text is parsed (and refused) as given."""
    if type(value) is not str:
        return parse(value)
    known = cache.get(value)
    if known is None:
        known = parse(value)  # raises TagError (not remembered)
        if len(cache) >= _PARSED_MAX:
            cache.clear()
        cache[value] = known
    return known
