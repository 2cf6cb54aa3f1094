"""Staged retirement (domain/staging.py): what it never does, whatever the image's tags and state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ami_lifecycle.domain.evidence import LaunchPermissions
from ami_lifecycle.domain.model import Image
from ami_lifecycle.domain.staging import Stage, parse_permissions, render_permissions, stage
from ami_lifecycle.domain.tags import TagKeys, format_instant
from hypothesis import given
from hypothesis import strategies as st

KEYS = TagKeys()
NOW = datetime(2026, 12, 2, tzinfo=UTC)


def image(state: str = "available", **tags: str) -> Image:
    return Image("ami-0123456789abcdef0", "us-east-1", "web", state, NOW - timedelta(days=100), tags=tags)


DISABLED_AT = st.one_of(
    st.none(),
    st.just("not a time"),
    st.integers(-20, 20).map(lambda d: format_instant(NOW - timedelta(days=d))),
)


@given(
    retire=st.booleans(),
    grace_days=st.integers(0, 30),
    state=st.sampled_from(["available", "disabled"]),
    since=DISABLED_AT,
)
def test_never_deregisters_inside_the_grace_period_nor_what_the_rule_keeps(
    retire: bool, grace_days: int, state: str, since: str | None
) -> None:
    tags = {KEYS.disabled_at: since} if since is not None else {}
    grace = timedelta(days=grace_days)
    s = stage(image(state, **tags), retire, grace, KEYS, NOW)
    if not retire:
        assert s.stage in (Stage.ENABLE, Stage.NONE)
        assert (s.stage is Stage.ENABLE) == (since is not None)
        return
    if s.stage is Stage.DEREGISTER and grace:
        # Only a disabled image whose recorded grace period is over.
        assert state == "disabled" and since is not None and since != "not a time"
        assert datetime.fromisoformat(since.replace("Z", "+00:00")) + grace <= NOW
    if grace and since is None:
        assert s.stage is Stage.DISABLE and s.until == NOW + grace
    if not grace:
        assert s.stage is Stage.DEREGISTER


def test_an_image_re_enabled_by_someone_during_its_grace_period_starts_over() -> None:
    s = stage(
        image("available", **{KEYS.disabled_at: format_instant(NOW - timedelta(days=30))}),
        True,
        timedelta(days=7),
        KEYS,
        NOW,
    )
    assert s.stage is Stage.DISABLE and "disabled again" in s.why


@given(
    accounts=st.lists(st.from_regex(r"\A[0-9]{12}\Z"), max_size=5, unique=True),
    public=st.booleans(),
)
def test_launch_permissions_round_trip(accounts: list[str], public: bool) -> None:
    p = LaunchPermissions(tuple(accounts), ("arn:aws:organizations::111122223333:organization/o-abc",), (), public)
    text = render_permissions(p)
    assert text is not None and parse_permissions(text) == p


def test_launch_permissions_that_do_not_fit_are_not_recorded() -> None:
    many = LaunchPermissions(tuple(f"{n:012d}" for n in range(30)))
    assert render_permissions(many) is None
    assert render_permissions(LaunchPermissions(("111122223333",)), owner="111122223333") == ""
