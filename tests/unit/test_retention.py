"""The retirement rule (PRODUCT.md section 2): pure, no AWS.

Every rule on its own, combinations, and property tests: an image that fails any condition is
never retired whatever else is true, and keep-latest always leaves the N newest of a family.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ami_lifecycle.domain.evidence import checked_unused
from ami_lifecycle.domain.model import Image, Reference
from ami_lifecycle.domain.retention import (
    KEEP_PRIORITY,
    FamilyRank,
    Reason,
    decide,
    decide_all,
    deprecation_due,
    expiry_of,
    family_of,
    rank_families,
)
from ami_lifecycle.domain.settings import Settings
from ami_lifecycle.domain.tags import TagError, format_instant, parse_bool, parse_instant, parse_keep_latest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
ACCOUNT = "123456789012"
P = "ami-lifecycle"
SETTINGS = Settings(home_region="us-east-1")
PAST = format_instant(NOW - timedelta(days=1))
FUTURE = format_instant(NOW + timedelta(days=1))
LONE = FamilyRank("web", position=5, size=6, keep_latest=1)  # far from the newest: keep-latest does not apply

_counter = iter(range(10**9))


def image(tags: dict[str, str | None] | None = None, *, managed: bool = True, **kw: Any) -> Image:
    base: dict[str, str | None] = {f"{P}:managed": "true", f"{P}:expires-at": PAST} if managed else {}
    base.update(tags or {})
    data: dict[str, Any] = {
        "image_id": f"ami-{next(_counter):017x}",
        "region": "us-east-1",
        "name": "web-2026-01-01",
        "state": "available",
        "creation_date": NOW - timedelta(days=100),
        "owner_id": ACCOUNT,
        "tags": {k: v for k, v in base.items() if v is not None},
        "snapshot_ids": ("snap-0123456789abcdef0",),
    }
    data.update(kw)
    return Image(**data)


def run(img: Image, rank: FamilyRank | None = LONE, refs: list[Reference] | None = None, **kw: Any) -> Any:
    return decide(img, rank, checked_unused([] if refs is None else refs), kw.pop("settings", SETTINGS), NOW, ACCOUNT)


# ---------------------------------------------------------------- the rule, condition by condition


def test_an_expired_managed_unused_image_outside_keep_latest_is_retired() -> None:
    d = run(image())
    assert d.retire and d.action == "retire" and d.reason == Reason.EXPIRED
    assert d.blockers == () and d.expires_at == NOW - timedelta(days=1)
    assert "expired at" in d.detail


def test_expiry_exactly_now_is_expired() -> None:
    assert run(image({f"{P}:expires-at": format_instant(NOW)})).retire


def test_expiry_a_second_after_now_is_not_expired() -> None:
    d = run(image({f"{P}:expires-at": "2026-11-25T10:00:01Z"}))
    assert not d.retire and d.reason == Reason.NOT_EXPIRED and "2026-11-25T10:00:01Z" in d.detail


def test_without_expires_at_the_expiry_is_creation_plus_retention() -> None:
    created = NOW - timedelta(days=10)
    expired = image({f"{P}:expires-at": None, f"{P}:retention": "10d"}, creation_date=created)
    assert run(expired).retire  # exactly at CreationDate + 10d
    fresh = image({f"{P}:expires-at": None, f"{P}:retention": "11d"}, creation_date=created)
    d = run(fresh)
    assert d.reason == Reason.NOT_EXPIRED and d.expires_at == created + timedelta(days=11)


def test_a_users_expires_at_wins_over_retention() -> None:
    assert run(image({f"{P}:retention": "3650d", f"{P}:expires-at": PAST})).retire
    d = run(image({f"{P}:retention": "1h", f"{P}:expires-at": FUTURE}))
    assert d.reason == Reason.NOT_EXPIRED


def test_no_expiry_information_means_not_expired() -> None:
    d = run(image({f"{P}:expires-at": None}))
    assert d.reason == Reason.NOT_EXPIRED and "not tagged" in d.detail


def test_forever_never_expires() -> None:
    d = run(image({f"{P}:expires-at": None, f"{P}:retention": "forever"}))
    assert d.reason == Reason.NOT_EXPIRED and "forever" in d.detail


def test_forever_with_an_expires_at_is_a_conflict_and_kept() -> None:
    d = run(image({f"{P}:retention": "forever", f"{P}:expires-at": PAST}))
    assert not d.retire and d.reason == Reason.BAD_TAG and "conflicting" in d.detail


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("expires-at", "yesterday"),
        ("expires-at", "2026-13-01T00:00:00Z"),
        ("retention", "ninety days"),
        ("hold", "maybe"),
        ("keep-latest", "3O"),
        ("keep-latest", "-1"),
    ],
)
def test_an_unparseable_tag_keeps_the_image(key: str, value: str) -> None:
    d = run(image({f"{P}:{key}": value}))
    assert not d.retire and Reason.BAD_TAG in {b.reason for b in d.blockers}


def test_hold_keeps_an_expired_image() -> None:
    d = run(image({f"{P}:hold": "true"}))
    assert not d.retire and d.reason == Reason.HOLD
    assert run(image({f"{P}:hold": "TRUE "})).reason == Reason.HOLD
    assert run(image({f"{P}:hold": "false"})).retire


@pytest.mark.parametrize("state", ["enabled", "enabled-with-cooldown", "disabled-until-2026-11-26T10:00:00.000Z"])
def test_deregistration_protection_keeps_the_image(state: str) -> None:
    d = run(image(deregistration_protection=state))
    assert not d.retire and d.reason == Reason.PROTECTED and state in d.detail


@pytest.mark.parametrize("state", ["disabled", None])
def test_no_deregistration_protection(state: str | None) -> None:
    assert run(image(deregistration_protection=state)).retire


def test_in_use_names_the_resources() -> None:
    refs = [Reference("ec2:Instance", "i-0abc"), Reference("autoscaling:LaunchConfiguration", "web-lc")]
    d = run(image(), refs=refs)
    assert not d.retire and d.reason == Reason.IN_USE
    assert "ec2:Instance i-0abc" in d.detail and "autoscaling:LaunchConfiguration web-lc" in d.detail
    assert d.references == tuple(refs)


def test_many_references_are_summarised() -> None:
    refs = [Reference("ec2:Instance", f"i-{n}") for n in range(8)]
    assert "and 3 more" in run(image(), refs=refs).detail


def test_an_unchecked_image_is_never_retired() -> None:
    d = decide(image(), LONE, None, SETTINGS, NOW, ACCOUNT)
    assert not d.retire and d.reason == Reason.UNCHECKED and d.awaits_reference_check
    # With another blocker, the in-use check is not awaited: the image is kept anyway.
    held = decide(image({f"{P}:hold": "true"}), LONE, None, SETTINGS, NOW, ACCOUNT)
    assert not held.awaits_reference_check and held.reasons == ("hold",)


@pytest.mark.parametrize(("value", "detail"), [(None, "absent"), ("false", "'false'"), ("yes please", "'yes please'")])
def test_an_unmanaged_image_is_kept(value: str | None, detail: str) -> None:
    d = run(image({f"{P}:managed": value}))
    assert d.reason == Reason.NOT_MANAGED and detail in d.detail


@pytest.mark.parametrize(
    ("tag", "value", "who"),
    [
        ("aws:backup:source-resource", "arn:aws:ec2:...:instance/i-1", "AWS Backup"),
        ("aws:dlm:lifecycle-policy-id", "policy-0123", "Data Lifecycle Manager"),
        ("CreatedBy", "EC2 Image Builder", "EC2 Image Builder"),
    ],
)
def test_an_image_of_another_lifecycle_manager_is_kept_even_if_tagged_managed(tag: str, value: str, who: str) -> None:
    d = run(image({tag: value}))
    assert d.reason == Reason.FOREIGN_MANAGER and who in d.detail


def test_created_by_someone_else_is_not_foreign() -> None:
    assert run(image({"CreatedBy": "packer"})).retire


def test_an_image_of_another_account_is_kept() -> None:
    d = run(image(owner_id="210987654321"))
    assert d.reason == Reason.NOT_OWNED


@pytest.mark.parametrize("state", ["pending", "failed", "error", "deregistered"])
def test_only_available_or_disabled_images_are_candidates(state: str) -> None:
    assert run(image(state=state)).reason == Reason.NOT_AVAILABLE


def test_a_disabled_expired_image_is_retired() -> None:
    assert run(image(state="disabled")).retire


def test_every_failing_condition_is_reported_and_the_most_telling_first() -> None:
    refs = [Reference("ec2:Instance", "i-1")]
    d = run(
        image({f"{P}:hold": "true"}, deregistration_protection="enabled"),
        rank=FamilyRank("web", 0, 1, 1, ("x",)),
        refs=refs,
    )
    assert set(d.reasons) == {"hold", "keep-latest", "protected", "in-use"}
    assert d.reason == Reason.HOLD
    assert list(d.reasons) == sorted(d.reasons, key=lambda r: KEEP_PRIORITY.index(Reason(r)))


# ---------------------------------------------------------------- keep-latest and families


def family(n: int, **tags: str) -> list[Image]:
    """n managed, expired images of family `web`, newest first."""
    return [
        image({f"{P}:family": "web", **tags}, creation_date=NOW - timedelta(days=10 + i), name=f"web-{i}")
        for i in range(n)
    ]


def retired(images: list[Image], settings: Settings = SETTINGS) -> set[str]:
    decisions = decide_all(
        images, settings, NOW, usage={i.image_id: checked_unused() for i in images}, account_id=ACCOUNT
    )
    return {i for i, d in decisions.items() if d.retire}


def test_the_newest_of_a_family_is_kept_by_default() -> None:
    imgs = family(3)
    decisions = decide_all(imgs, SETTINGS, NOW, usage={i.image_id: checked_unused() for i in imgs}, account_id=ACCOUNT)
    assert decisions[imgs[0].image_id].reason == Reason.KEEP_LATEST
    assert "#1 newest of the 3 images of family 'web'" in decisions[imgs[0].image_id].detail
    assert retired(imgs) == {imgs[1].image_id, imgs[2].image_id}


def test_keep_latest_n_and_zero() -> None:
    imgs = family(4, **{f"{P}:keep-latest": "2"})
    assert retired(imgs) == {imgs[2].image_id, imgs[3].image_id}
    imgs = family(2, **{f"{P}:keep-latest": "0"})
    assert retired(imgs) == {i.image_id for i in imgs}
    imgs = family(3)
    assert retired(imgs, Settings(home_region="us-east-1", default_keep_latest=0)) == {i.image_id for i in imgs}


def test_default_keep_latest_comes_from_the_settings() -> None:
    imgs = family(3)
    assert retired(imgs, Settings(home_region="us-east-1", default_keep_latest=2)) == {imgs[2].image_id}


def test_held_and_never_expiring_images_count_among_the_newest() -> None:
    newest = image({f"{P}:family": "web", f"{P}:hold": "true"}, creation_date=NOW - timedelta(days=1))
    forever = image(
        {f"{P}:family": "web", f"{P}:retention": "forever", f"{P}:expires-at": None},
        creation_date=NOW - timedelta(days=2),
    )
    old = family(2)
    imgs = [newest, forever, *old]
    # keep-latest 2: the held and the forever image are the two newest, so both expired ones go.
    s = Settings(home_region="us-east-1", default_keep_latest=2)
    assert retired(imgs, s) == {old[0].image_id, old[1].image_id}


def test_when_a_family_disagrees_the_largest_n_applies() -> None:
    imgs = family(5)
    imgs[4] = image({f"{P}:family": "web", f"{P}:keep-latest": "3"}, creation_date=imgs[4].creation_date, name="web-4")
    ranks = rank_families(imgs, SETTINGS, ACCOUNT)
    assert {r.keep_latest for r in ranks.values()} == {3}
    # The oldest image says 3: the three newest are kept, and so (being 5th) it is not.
    assert retired(imgs) == {imgs[3].image_id, imgs[4].image_id}


def test_an_unparseable_keep_latest_keeps_the_whole_family() -> None:
    imgs = family(3)
    imgs[2] = image({f"{P}:family": "web", f"{P}:keep-latest": "three"}, creation_date=imgs[2].creation_date)
    decisions = decide_all(imgs, SETTINGS, NOW, usage={i.image_id: checked_unused() for i in imgs}, account_id=ACCOUNT)
    assert not any(d.retire for d in decisions.values())
    assert decisions[imgs[1].image_id].reason == Reason.BAD_TAG
    assert imgs[2].image_id in decisions[imgs[1].image_id].detail


def test_families_are_per_region_and_per_family() -> None:
    east = family(2)
    west = [image({f"{P}:family": "web"}, region="us-west-2", creation_date=NOW - timedelta(days=50))]
    api = [image({f"{P}:family": "api"}, creation_date=NOW - timedelta(days=60))]
    assert retired([*east, *west, *api]) == {east[1].image_id}


def test_the_family_is_derived_from_the_name_when_untagged() -> None:
    a = image(name="web-2026-03-01-17", creation_date=NOW - timedelta(days=20))
    b = image(name="web-2026-02-01-17", creation_date=NOW - timedelta(days=30))
    assert family_of(a, SETTINGS.keys) == "web"
    assert retired([a, b]) == {b.image_id}


def test_unmanaged_foreign_and_pending_images_do_not_count_in_the_family() -> None:
    old = family(1)[0]
    newer_unmanaged = image({f"{P}:family": "web", f"{P}:managed": "false"}, creation_date=NOW)
    newer_foreign = image({f"{P}:family": "web", "aws:dlm:lifecycle-policy-id": "p"}, creation_date=NOW)
    newer_pending = image({f"{P}:family": "web"}, state="pending", creation_date=NOW)
    newer_other_account = image({f"{P}:family": "web"}, owner_id="210987654321", creation_date=NOW)
    imgs = [old, newer_unmanaged, newer_foreign, newer_pending, newer_other_account]
    decisions = decide_all(imgs, SETTINGS, NOW, usage={i.image_id: checked_unused() for i in imgs}, account_id=ACCOUNT)
    assert decisions[old.image_id].reason == Reason.KEEP_LATEST
    assert not any(d.retire for d in decisions.values())


def test_disabled_images_count_in_the_family() -> None:
    disabled_newest = image({f"{P}:family": "web"}, state="disabled", creation_date=NOW - timedelta(days=1))
    old = family(1)[0]
    assert retired([disabled_newest, old]) == {old.image_id}


def test_ties_in_creation_date_are_ranked_deterministically() -> None:
    same = NOW - timedelta(days=10)
    a = image({f"{P}:family": "web"}, image_id="ami-00000000000000001", creation_date=same)
    b = image({f"{P}:family": "web"}, image_id="ami-00000000000000002", creation_date=same)
    assert retired([a, b]) == retired([b, a]) == {a.image_id}


def test_an_unranked_managed_image_is_kept() -> None:
    d = decide(image(), None, checked_unused(), SETTINGS, NOW, ACCOUNT)
    assert d.reason == Reason.KEEP_LATEST and "not been ranked" in d.detail


# ---------------------------------------------------------------- expiry and deprecation


def test_expiry_sources() -> None:
    keys = SETTINGS.keys
    assert expiry_of(image({f"{P}:expires-at": "2026-12-24T00:00:00Z"}), keys).source == "expires-at"
    # CreationDate 2026-08-17T10:00Z + P1Y2M, with calendar arithmetic.
    by_retention = expiry_of(image({f"{P}:expires-at": None, f"{P}:retention": "P1Y2M"}), keys)
    assert by_retention.source == "retention" and by_retention.at == datetime(2027, 10, 17, 10, 0, tzinfo=UTC)
    assert expiry_of(image({f"{P}:expires-at": None}), keys).source == "untagged"


def test_deprecation_is_due_when_missing_or_different() -> None:
    img = image({f"{P}:expires-at": "2027-01-01T00:00:30Z"})
    assert deprecation_due(img, SETTINGS, NOW) == datetime(2027, 1, 1, 0, 0, 30, tzinfo=UTC)
    same = image({f"{P}:expires-at": "2027-01-01T00:00:30Z"}, deprecation_time=datetime(2027, 1, 1, tzinfo=UTC))
    assert deprecation_due(same, SETTINGS, NOW) is None
    other = image({f"{P}:expires-at": "2027-01-01T00:00:00Z"}, deprecation_time=datetime(2026, 12, 1, tzinfo=UTC))
    assert deprecation_due(other, SETTINGS, NOW) == datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("tags", "kw"),
    [
        ({f"{P}:expires-at": PAST}, {}),  # already expired: EC2 refuses a past time
        ({f"{P}:expires-at": "2040-01-01T00:00:00Z"}, {}),  # more than 10 years ahead
        ({f"{P}:expires-at": None, f"{P}:retention": "forever"}, {}),
        ({f"{P}:expires-at": "soon"}, {}),
        ({f"{P}:expires-at": FUTURE, f"{P}:managed": "false"}, {}),
        ({f"{P}:expires-at": FUTURE, "aws:backup:source-resource": "x"}, {}),
        ({f"{P}:expires-at": FUTURE}, {"state": "disabled"}),
        ({f"{P}:expires-at": format_instant(NOW + timedelta(seconds=30))}, {}),  # rounds into the past
    ],
)
def test_deprecation_is_not_due(tags: dict[str, str | None], kw: dict[str, Any]) -> None:
    assert deprecation_due(image(tags, **kw), SETTINGS, NOW) is None


# ---------------------------------------------------------------- properties


def mostly(good: Any, *bad: Any, weight: int = 15) -> st.SearchStrategy[Any]:
    """`good` most of the time, so that every combination, retiring ones included, is explored."""
    return st.sampled_from([good] * weight + list(bad))


TAG_VALUES = {
    "managed": mostly("true", None, "True", "false", "yes", "garbage", weight=25),
    "hold": mostly(None, "true", "false", "TRUE", "maybe", ""),
    "expires-at": st.one_of(
        *[st.integers(-400, 0).map(lambda d: format_instant(NOW + timedelta(days=d)))] * 6,
        st.none(),
        st.sampled_from(["garbage", "2026-02-30T00:00:00Z", format_instant(NOW)]),
        st.integers(1, 400).map(lambda d: format_instant(NOW + timedelta(days=d))),
    ),
    "retention": mostly(None, "1d", "90d", "forever", "P1Y", "12h", "lots", weight=20),
    "keep-latest": mostly(None, "0", "1", "3", "x", "-2", weight=20),
}
FOREIGN = mostly(
    {}, {"aws:backup:source-resource": "r"}, {"aws:dlm:lifecycle-policy-id": "p"}, {"CreatedBy": "EC2 Image Builder"}
)


@st.composite
def any_image(draw: st.DrawFn, region: str = "us-east-1") -> Image:
    tags: dict[str, str] = {}
    for key, values in TAG_VALUES.items():
        value = draw(values)
        if value is not None:
            tags[f"{P}:{key}"] = value
    tags[f"{P}:family"] = draw(st.sampled_from(["web", "api"]))
    tags.update(draw(FOREIGN))
    return Image(
        image_id=f"ami-{draw(st.integers(0, 16**17 - 1)):017x}",
        region=region,
        name="x",
        state=draw(mostly("available", "disabled", "pending", "failed", weight=10)),
        creation_date=NOW - timedelta(hours=draw(st.integers(0, 24 * 800))),
        owner_id=draw(mostly(ACCOUNT, "210987654321")),
        tags=tags,
        deregistration_protection=draw(mostly(None, "disabled", "enabled", "enabled-with-cooldown", weight=10)),
    )


REFS = st.lists(
    st.builds(Reference, st.sampled_from(["ec2:Instance", "ec2:LaunchTemplate"]), st.text(min_size=1)), max_size=3
)
RANKS = st.one_of(
    st.builds(
        FamilyRank,
        family=st.just("web"),
        position=st.integers(0, 5),
        size=st.just(6),
        keep_latest=st.one_of(*[st.integers(0, 4)] * 8, st.none()),
    ),
    st.none(),
)


def _true(value: str | None) -> bool:
    try:
        return parse_bool(value) is True
    except TagError:
        return False


def _expired(img: Image) -> bool:
    """The oracle: the expiry is known, parseable and at or before now."""
    tags = img.tags
    try:
        if f"{P}:expires-at" in tags:
            return tags.get(f"{P}:retention", "").lower() != "forever" and parse_instant(tags[f"{P}:expires-at"]) <= NOW
    except TagError:
        return False
    return expiry_of(img, SETTINGS.keys).at is not None and expiry_of(img, SETTINGS.keys).at <= NOW  # type: ignore[operator]


@hsettings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(img=any_image(), refs=st.one_of(REFS, st.none()), rank=RANKS)
def test_property_an_image_failing_any_condition_is_never_retired(
    img: Image, refs: list[Reference] | None, rank: FamilyRank | None
) -> None:
    d = decide(img, rank, None if refs is None else checked_unused(refs), SETTINGS, NOW, ACCOUNT)
    tags = img.tags
    held = _true(tags.get(f"{P}:hold"))
    in_use = bool(refs)
    unchecked = refs is None
    protected = img.protected
    unmanaged = not _true(tags.get(f"{P}:managed"))
    foreign = any(k in tags for k in ("aws:backup:source-resource", "aws:dlm:lifecycle-policy-id")) or (
        tags.get("CreatedBy") == "EC2 Image Builder"
    )
    not_owned = img.owner_id != ACCOUNT
    not_candidate = img.state not in ("available", "disabled")
    latest = rank is None or rank.keep_latest is None or rank.position < rank.keep_latest
    bad_tag = False
    for key, parse in (("hold", parse_bool), ("keep-latest", parse_keep_latest)):
        if f"{P}:{key}" in tags:
            try:
                parse(tags[f"{P}:{key}"])
            except TagError:
                bad_tag = True
    if any((held, in_use, unchecked, protected, unmanaged, foreign, not_owned, not_candidate, latest, bad_tag)):
        assert not d.retire, d
    if not _expired(img):
        assert not d.retire, d
    if d.retire:
        assert d.blockers == () and d.reason == Reason.EXPIRED
    else:
        assert d.blockers and d.reason == d.blockers[0].reason


@st.composite
def a_family(draw: st.DrawFn) -> list[Image]:
    n = draw(st.integers(1, 12))
    images = []
    for i in range(n):
        tags = {f"{P}:managed": "true", f"{P}:family": "web"}
        tags[f"{P}:expires-at"] = format_instant(NOW + timedelta(days=draw(st.integers(-30, 5))))
        if draw(st.booleans()):
            tags[f"{P}:keep-latest"] = str(draw(st.integers(0, 5)))
        if draw(st.integers(0, 5)) == 0:
            tags[f"{P}:hold"] = "true"
        images.append(
            Image(
                image_id=f"ami-{i:017x}",
                region="us-east-1",
                name="web",
                state=draw(st.sampled_from(["available", "available", "disabled"])),
                creation_date=NOW - timedelta(days=draw(st.integers(0, 60))),
                owner_id=ACCOUNT,
                tags=tags,
            )
        )
    return images


@hsettings(max_examples=300, deadline=None)
@given(images=a_family(), default_n=st.integers(0, 3))
def test_property_keep_latest_never_leaves_fewer_than_n_newest(images: list[Image], default_n: int) -> None:
    s = Settings(home_region="us-east-1", default_keep_latest=default_n)
    survivors = {i.image_id for i in images} - retired(images, s)
    newest_first = sorted(images, key=lambda i: (i.creation_date, i.image_id), reverse=True)
    for img in images:
        value = img.tags.get(f"{P}:keep-latest")
        n = default_n if value is None else int(value)
        # Whatever N any image states, the N newest of the family survive.
        assert {i.image_id for i in newest_first[:n]} <= survivors


# ---------------------------------------------------------------- the fast engine is the rule


def _fields(d: Any) -> tuple[Any, ...]:
    blockers = tuple((b.reason, b.detail) for b in d.blockers)
    return (d.image_id, d.retire, d.reason, d.detail, blockers, d.family, d.expires_at, d.references, d.reasons)


def _mixed_fleet() -> list[Image]:
    """Families with newest members, held, protected, expired and not, foreign, unmanaged, badly tagged."""
    imgs = []
    for i in range(40):
        created = NOW - timedelta(days=80 + i, seconds=i)
        tags: dict[str, str | None] = {
            f"{P}:retention": "90d",
            f"{P}:expires-at": format_instant(created + timedelta(days=90)) if i % 3 else None,
            f"{P}:family": ["web", "api", "db"][i % 3],
            f"{P}:keep-latest": ["1", "2", None, "x" if i == 7 else "0"][i % 4],
            f"{P}:hold": "true" if i % 11 == 0 else None,
            f"{P}:expiry-basis": "30d" if i % 13 == 0 else None,
        }
        if i % 17 == 0:
            tags["aws:backup:source-resource"] = "arn"
        imgs.append(
            image(
                tags,
                managed=i % 19 != 0,
                creation_date=created,
                state="pending" if i % 23 == 0 else "available",
                deregistration_protection="enabled" if i % 29 == 0 else "disabled",
                owner_id=ACCOUNT if i % 31 else "210987654321",
            )
        )
    return imgs


def test_decide_all_is_rank_families_then_decide() -> None:
    imgs = _mixed_fleet()
    for usage in (None, {i.image_id: checked_unused() for i in imgs[::2]}):
        decisions = decide_all(imgs, SETTINGS, NOW, usage, ACCOUNT)
        ranks = rank_families(imgs, SETTINGS, ACCOUNT)
        assert list(decisions) == [i.image_id for i in imgs]
        for img in imgs:
            one = decide(
                img, ranks.get(img.image_id), None if usage is None else usage.get(img.image_id), SETTINGS, NOW, ACCOUNT
            )
            assert _fields(decisions[img.image_id]) == _fields(one)
            assert decisions[img.image_id] == one and hash(decisions[img.image_id]) == hash(one)


def test_decide_all_with_an_id_twice_decides_as_rank_families_then_decide() -> None:
    from dataclasses import replace

    a, b = image({f"{P}:family": "web"}), image({f"{P}:family": "web", f"{P}:hold": "true"})
    twin = replace(b, image_id=a.image_id)
    imgs = [a, b, twin]
    ranks = rank_families(imgs, SETTINGS, ACCOUNT)
    decisions = decide_all(imgs, SETTINGS, NOW, None, ACCOUNT)
    assert list(decisions) == [a.image_id, b.image_id]
    for img in (b, twin):  # the last image of an id is the one decided
        assert _fields(decisions[img.image_id]) == _fields(
            decide(img, ranks.get(img.image_id), None, SETTINGS, NOW, ACCOUNT)
        )


def test_decide_all_fails_as_ranking_then_deciding_on_an_unreadable_image() -> None:
    broken = image({f"{P}:family": None})
    broken.tags[f"{P}:family"] = None  # type: ignore[assignment]  # (not text: unreadable)
    imgs = [image({f"{P}:retention": 5}), broken]  # type: ignore[dict-item]
    with pytest.raises(AttributeError):  # family_of, ranking, before any decision
        rank_families(imgs, SETTINGS, ACCOUNT)
    with pytest.raises(AttributeError):
        decide_all(imgs, SETTINGS, NOW, None, ACCOUNT)


def test_results_read_as_plain_dataclasses() -> None:
    import copy
    import pickle
    from dataclasses import asdict, replace

    from ami_lifecycle.domain.retention import Blocker, Decision

    imgs = _mixed_fleet()
    for d in decide_all(imgs, SETTINGS, NOW, {i.image_id: checked_unused() for i in imgs}, ACCOUNT).values():
        built = Decision(
            d.image_id,
            d.retire,
            d.reason,
            d.detail,
            tuple(Blocker(b.reason, b.detail) for b in d.blockers),
            d.family,
            d.expires_at,
            d.references,
        )
        assert d == built and hash(d) == hash(built) and repr(d) == repr(built)
        assert type(d.detail) is str and all(type(b.detail) is str for b in d.blockers)
        assert pickle.loads(pickle.dumps(d)) == d and copy.deepcopy(d) == d
        assert replace(d, family="other").family == "other" and asdict(d)["detail"] == d.detail
    # Whichever is read first, the blockers or the detail.
    for first in ("blockers", "detail"):
        for d in decide_all(imgs, SETTINGS, NOW, None, ACCOUNT).values():
            getattr(d, first)
            assert d.reason == (d.blockers[0].reason if d.blockers else Reason.EXPIRED)
            assert d.detail == (d.blockers[0].detail if d.blockers else d.detail)
    with pytest.raises(AttributeError):
        d.retire = True  # type: ignore[misc]  # still frozen


def test_ranks_read_as_plain_dataclasses() -> None:
    ranks = rank_families(_mixed_fleet(), SETTINGS, ACCOUNT)
    for r in ranks.values():
        built = FamilyRank(r.family, r.position, r.size, r.keep_latest, r.newest, r.bad_members)
        assert r == built and hash(r) == hash(built) and repr(r) == repr(built)
        assert r.within_keep_latest == (r.keep_latest is not None and r.position < r.keep_latest)


@pytest.mark.parametrize(
    "expires_at",
    [
        "2026-11-25T10:00:00Z",  # = CreationDate + 90d: the tool's
        "2026-11-25T10:00:01Z",  # the user's
        "2026-11-25T10:00:00.5Z",
        "2026-11-25T12:00:00+02:00",
        "2026-11-25T10:00:00z",
        " 2026-11-25T10:00:00Z",
        "2026-11-25",
        "2026-W48-3T10:00:00Z",
        "garbage",
        None,
    ],
)
@pytest.mark.parametrize("retention", ["90d", "2160h", "P90D", "P3M", "forever", "bad", None])
@pytest.mark.parametrize("basis", [None, "90d", "30d"])
def test_the_engine_reads_the_expiry_as_expiry_of(
    expires_at: str | None, retention: str | None, basis: str | None
) -> None:
    created = datetime(2026, 8, 27, 10, 0, tzinfo=UTC)
    tags = {f"{P}:expires-at": expires_at, f"{P}:retention": retention, f"{P}:expiry-basis": basis}
    img = image(tags, creation_date=created)
    expiry = expiry_of(img, SETTINGS.keys, tool_default=SETTINGS.retention)
    for now in (NOW - timedelta(seconds=1), NOW, NOW + timedelta(days=400)):
        d = decide(img, LONE, checked_unused(), SETTINGS, now, ACCOUNT)
        assert d.expires_at == expiry.at
        assert d.retire == (expiry.error is None and expiry.at is not None and expiry.at <= now)
        if expiry.error:
            assert (Reason.BAD_TAG, expiry.error) in {(b.reason, b.detail) for b in d.blockers}
