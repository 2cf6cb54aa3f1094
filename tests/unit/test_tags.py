"""The tag contract: retention formats, instants, family derivation, and bad values."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from ami_lifecycle.domain.tags import (
    TagError,
    TagKeys,
    derive_family,
    format_instant,
    parse_bool,
    parse_instant,
    parse_keep_latest,
    parse_regions,
    parse_retention,
)
from hypothesis import given
from hypothesis import strategies as st

CREATED = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12h", datetime(2026, 2, 1, 0, 0, tzinfo=UTC)),
        ("90d", datetime(2026, 5, 1, 12, 0, tzinfo=UTC)),
        ("2w", datetime(2026, 2, 14, 12, 0, tzinfo=UTC)),
        ("0d", CREATED),
        (" 7D ", datetime(2026, 2, 7, 12, 0, tzinfo=UTC)),
        ("P30D", datetime(2026, 3, 2, 12, 0, tzinfo=UTC)),
        ("PT12H", datetime(2026, 2, 1, 0, 0, tzinfo=UTC)),
        ("PT90M", datetime(2026, 1, 31, 13, 30, tzinfo=UTC)),
        ("P1W", datetime(2026, 2, 7, 12, 0, tzinfo=UTC)),
        # Calendar months: Jan 31 + 1 month is the last day of February.
        ("P1M", datetime(2026, 2, 28, 12, 0, tzinfo=UTC)),
        ("P1Y", datetime(2027, 1, 31, 12, 0, tzinfo=UTC)),
        ("P1DT1H", datetime(2026, 2, 1, 13, 0, tzinfo=UTC)),
        ("p2d", datetime(2026, 2, 2, 12, 0, tzinfo=UTC)),
    ],
)
def test_retention_formats(value: str, expected: datetime) -> None:
    assert parse_retention(value).expiry(CREATED) == expected


@pytest.mark.parametrize("value", ["forever", "FOREVER", " Forever "])
def test_forever_never_expires(value: str) -> None:
    assert parse_retention(value).expiry(CREATED) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "-3d",
        "1.5d",
        "3",
        "d",
        "3x",
        "3 days",
        "P",
        "PT",
        "P1H",
        "P-1D",
        "٣d",
        "never",
        "1e3d",
        "99999999d",
        "P200Y",
        "x" * 300,
        "30d;rm -rf",
    ],
)
def test_bad_retention_is_refused_with_a_readable_message(value: str) -> None:
    with pytest.raises(TagError) as err:
        parse_retention(value)
    assert len(str(err.value)) < 200


def test_instants() -> None:
    assert parse_instant("2026-12-24T00:00:00Z") == datetime(2026, 12, 24, tzinfo=UTC)
    assert parse_instant("2026-12-24T01:00:00+01:00") == datetime(2026, 12, 24, tzinfo=UTC)
    assert parse_instant("2026-12-24") == datetime(2026, 12, 24, tzinfo=UTC)
    assert parse_instant("2026-12-24T00:00:00.123Z").microsecond == 123000
    assert format_instant(datetime(2026, 12, 24, tzinfo=UTC)) == "2026-12-24T00:00:00Z"
    for bad in ["tomorrow", "2026-13-01", "", "24/12/2026", "x" * 100]:
        with pytest.raises(TagError):
            parse_instant(bad)


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.just(UTC)))
def test_instants_round_trip_to_the_second(when: datetime) -> None:
    when = when.replace(microsecond=0)
    assert parse_instant(format_instant(when)) == when


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("web-2026-03-01-17", "web"),
        ("api-v1.4.2", "api"),
        ("base-ubuntu-22.04-20260301", "base-ubuntu"),
        ("packer_1700000000", "packer"),
        ("app-build123", "app"),
        ("app-rc2", "app"),
        ("worker", "worker"),
        ("2024", "2024"),
        ("web-2026.03.01", "web"),
        ("web 20260301T1700Z", "web"),
    ],
)
def test_family_strips_date_version_and_build_suffixes(name: str, family: str) -> None:
    assert derive_family(name, "ami-0123") == family


def test_family_without_name_falls_back_to_image_id() -> None:
    assert derive_family(None, "ami-0123") == "ami-0123"
    assert derive_family("   ", "ami-0123") == "ami-0123"


@given(st.text(max_size=400))
def test_family_is_never_empty_and_fits_a_tag(name: str) -> None:
    family = derive_family(name, "ami-0123")
    assert family and len(family) <= 256


def test_small_values() -> None:
    assert parse_bool("TRUE") is True and parse_bool(" false ") is False and parse_bool(None) is None
    with pytest.raises(TagError):
        parse_bool("maybe")
    assert parse_keep_latest("3") == 3 and parse_keep_latest("0") == 0
    for bad in ["-1", "1.5", "1001", "three", "", "٣"]:
        with pytest.raises(TagError):
            parse_keep_latest(bad)
    assert parse_regions("us-west-2, eu-west-1,us-west-2") == ["us-west-2", "eu-west-1"]
    assert parse_regions("none") == [] and parse_regions("") == []
    with pytest.raises(TagError):
        parse_regions("us-west-2,mars-north-1", frozenset({"us-west-2"}))
    with pytest.raises(TagError):
        parse_regions("not a region")


def test_keys_follow_the_prefix() -> None:
    keys = TagKeys("acme")
    assert (keys.managed, keys.expires_at, keys.keep_latest) == (
        "acme:managed",
        "acme:expires-at",
        "acme:keep-latest",
    )
    assert keys.is_lifecycle_key("acme:hold") and not keys.is_lifecycle_key("acmex:hold")
    for bad in ["", "aws", "aws-stuff", "a" * 65, "bad\nprefix"]:
        with pytest.raises(TagError):
            TagKeys(bad)


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.sampled_from([None, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))]),
)
def test_format_instant_renders_as_strftime(when: datetime, tz: timezone | None) -> None:
    when = when.replace(tzinfo=tz)
    as_utc = (when if tz is not None else when.replace(tzinfo=UTC)).astimezone(UTC)
    assert format_instant(when) == as_utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_format_instant_of_a_year_before_1000_is_as_strftime_renders_it() -> None:
    when = datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert format_instant(when) == when.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_remembered_parses_give_the_same_answers() -> None:
    for _ in range(3):
        assert parse_retention(" 7D ") == parse_retention(" 7D ") and parse_retention(" 7D ").text == "7D"
        assert parse_keep_latest(" 3 ") == 3
        for bad in ("-3d", "lots"):
            with pytest.raises(TagError):
                parse_retention(bad)
        with pytest.raises(TagError):
            parse_keep_latest("x")
        with pytest.raises(TagError):
            parse_keep_latest(None)  # type: ignore[arg-type]
    assert parse_retention("P1M").expiry(CREATED) == datetime(2026, 2, 28, 12, 0, tzinfo=UTC)
    assert parse_retention("90d").delta == timedelta(days=90)


def test_tag_keys_are_the_prefixed_names_each_time() -> None:
    keys = TagKeys("acme")
    for _ in range(2):
        assert (keys.managed, keys.retention, keys.expires_at, keys.expiry_basis) == (
            "acme:managed",
            "acme:retention",
            "acme:expires-at",
            "acme:expiry-basis",
        )
        assert (keys.hold, keys.family, keys.keep_latest, keys.copies) == (
            "acme:hold",
            "acme:family",
            "acme:keep-latest",
            "acme:copies",
        )
    assert keys == TagKeys("acme") and hash(keys) == hash(TagKeys("acme"))
