"""Staged retirement (DisableBeforeDeregister, PRODUCT.md section 10): what happens to an image the
rule has just decided on, when retirement goes through a grace period.

- Grace 0: a retirable image is deregistered at once (`DEREGISTER`).
- A retirable image the tool has not disabled yet: `DISABLE` (DisableImage, and `P:disabled-at`
  = now written first, with the launch permissions DisableImage removes in `P:launch-permissions`).
- A retirable image disabled by the tool: `WAIT` until `P:disabled-at` + grace, then
  `DEREGISTER`, only if it is still retirable by every rule then (the decision is made afresh at
  each sweep: a hold, a new reference, a new retention keep it).
- An image the tool disabled that is no longer retirable: `ENABLE` (EnableImage, its launch
  permissions given back, `P:disabled-at` removed).
- An unreadable `P:disabled-at` starts the grace period again (`DISABLE`: the tag is rewritten);
  an image someone re-enabled during its grace period is disabled again, with a new grace period
  (a `P:hold` is how a user keeps it).

Pure: the image, the decision's verdict, the grace and the time are given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from .evidence import LaunchPermissions
from .model import Image
from .tags import MAX_TAG_VALUE, TagError, TagKeys, format_instant, parse_instant


class Stage(StrEnum):
    DEREGISTER = "deregister"
    DISABLE = "disable"
    WAIT = "wait"  # disabled, in its grace period
    ENABLE = "enable"
    NONE = "none"


@dataclass(frozen=True)
class Staged:
    stage: Stage
    until: datetime | None = None  # DISABLE, WAIT: the end of the grace period
    why: str = ""

    @property
    def destructive(self) -> bool:
        """What counts against MaxRetirementsPerRun: disabling starts a retirement."""
        return self.stage in (Stage.DEREGISTER, Stage.DISABLE)


def disabled_at(image: Image, keys: TagKeys) -> datetime | None:
    value = image.tags.get(keys.disabled_at)
    if value is None:
        return None
    try:
        return parse_instant(value)
    except TagError:
        return None


def stage(image: Image, retire: bool, grace: timedelta, keys: TagKeys, now: datetime) -> Staged:
    """The stage of one decided image."""
    marked = keys.disabled_at in image.tags
    since = disabled_at(image, keys)
    if not retire:
        if marked:
            return Staged(Stage.ENABLE, why="no longer retirable: re-enabled")
        return Staged(Stage.NONE)
    if grace <= timedelta(0):
        return Staged(Stage.DEREGISTER)
    if since is None or image.state != "disabled":
        why = "unreadable P:disabled-at: grace period started again" if marked and since is None else ""
        if marked and since is not None:
            why = "re-enabled during its grace period: disabled again"
        return Staged(Stage.DISABLE, until=now + grace, why=why)
    until = since + grace
    if now >= until:
        return Staged(Stage.DEREGISTER, why=f"disabled since {format_instant(since)}, grace period over")
    return Staged(Stage.WAIT, until=until, why=f"disabled (grace until {format_instant(until)})")


# ---------------------------------------------------------------- the launch permissions, in one tag


def render_permissions(p: LaunchPermissions, owner: str | None = None) -> str | None:
    """`P:launch-permissions`: `public`, `a:111122223333`, `o:<org arn>`, `u:<ou arn>`, space
    separated; "" when the image is not shared; None when it does not fit in a tag value (then
    the image is not disabled: its sharing could not be given back)."""
    parts = ["public"] if p.public else []
    parts += [f"a:{a}" for a in p.accounts if a != owner]
    parts += [f"o:{o}" for o in p.organizations]
    parts += [f"u:{u}" for u in p.organizational_units]
    text = " ".join(parts)
    return text if len(text) <= MAX_TAG_VALUE else None


def parse_permissions(value: str) -> LaunchPermissions:
    """The inverse of `render_permissions` (unknown parts are ignored)."""
    accounts, orgs, units, public = [], [], [], False
    for part in value.split():
        if part == "public":
            public = True
        elif part.startswith("a:"):
            accounts.append(part[2:])
        elif part.startswith("o:"):
            orgs.append(part[2:])
        elif part.startswith("u:"):
            units.append(part[2:])
    return LaunchPermissions(tuple(accounts), tuple(orgs), tuple(units), public)
