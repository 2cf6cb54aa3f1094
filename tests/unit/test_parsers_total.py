"""Every parser is total ("fail closed"): whatever it is given, it returns a value or raises its own
refusal error (TagError, BadEvent, BadRequest, ConfigError, ValueError for copy requests), never
another exception. Callers catch exactly that error; anything else would escape a handler.

Each property mixes arbitrary input (any text, any JSON value, non-strings) with near-valid input
built so that every branch of the parser is reached: valid values with one or two fields broken,
ISO instants of every year 0001..9999 with every offset, durations near the 100-year limit.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from typing import Any

import pytest
from ami_lifecycle.aws.regions import known_regions
from ami_lifecycle.domain import requests
from ami_lifecycle.domain.adoption import decide_adoption
from ami_lifecycle.domain.events import DETAIL_TYPE, SOURCE, AmiStateChange, BadEvent, parse_ami_event
from ami_lifecycle.domain.model import Image
from ami_lifecycle.domain.replication import CopyRequest
from ami_lifecycle.domain.retention import expiry_of
from ami_lifecycle.domain.settings import ConfigError, Settings
from ami_lifecycle.domain.tags import (
    MAX_KEEP_LATEST,
    MAX_TAG_VALUE,
    Retention,
    TagError,
    TagKeys,
    derive_family,
    is_region_name,
    parse_aws_time,
    parse_bool,
    parse_instant,
    parse_keep_latest,
    parse_regions,
    parse_retention,
    validate_prefix,
)
from ami_lifecycle.runtime import load_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import ValidationError

FAST = hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
P = "ami-lifecycle"
AMI = "ami-0123456789abcdef0"
EAST, WEST = "us-east-1", "us-west-2"


def parse_sweep(payload: Any, settings: Settings) -> requests.SweepRequest:
    return requests.parse_sweep_request(payload, settings, known_regions())


def parse_backfill(payload: Any, settings: Settings) -> requests.BackfillRequest:
    return requests.parse_backfill_request(payload, settings, known_regions())


STACK = Settings(home_region=EAST, sweep_regions_param=(EAST, WEST))
# A TagError message goes (clipped) into P:error: it must be short whatever the input's size.
MAX_TAG_MESSAGE = 512
MAX_REFUSAL = 1000

# ------------------------------------------------------------------ strategies

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
NOT_TEXT = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.binary(max_size=8) | st.lists(SCALARS, max_size=2)
)
REGIONS = [EAST, WEST, "eu-west-1", "ap-southeast-2", "us-gov-west-1", "cn-north-1"]
REGIONISH = st.sampled_from(REGIONS) | st.from_regex(r"\A[a-zA-Z]{2}(-[a-zA-Z]+){1,3}-\d{1,3}\Z") | st.text(max_size=12)

EDGE_DATETIMES = (
    st.datetimes()  # the whole range, 0001..9999
    | st.datetimes(min_value=datetime(9999, 12, 30))
    | st.datetimes(max_value=datetime(1, 1, 2))
    | st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1))
)
# Fixed offsets as fromisoformat accepts them: up to 23:59:59.999999 either way.
OFFSETS = st.timedeltas(
    min_value=-timedelta(hours=24) + timedelta(microseconds=1),
    max_value=timedelta(hours=24) - timedelta(microseconds=1),
)
# CPython 3.11 reads an offset of microseconds only (`+00:00:00.000001`) as UTC: exact results are
# checked with offsets of whole seconds (what people and EC2 write), totality with any offset.
WHOLE_SECOND_OFFSETS = st.integers(-86_399, 86_399).map(lambda s: timedelta(seconds=s))


def _offset(delta: timedelta) -> str:
    sign, delta = ("-", -delta) if delta < timedelta(0) else ("+", delta)
    minutes, seconds = divmod(delta.seconds, 60)
    text = f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    if seconds or delta.microseconds:
        text += f":{seconds:02d}"
    if delta.microseconds:
        text += f".{delta.microseconds:06d}"
    return text


ISO_INSTANT_RE = (
    r"\A\s?[0-9]{4}-[01][0-9]-[0-3][0-9]([Tt ][0-2][0-9]:[0-6][0-9](:[0-6][0-9](\.[0-9]{1,7})?)?)?"
    r"([Zz]|[+-][0-2][0-9](:?[0-6][0-9](:[0-6][0-9])?)?)?\s?\Z"
)
INSTANTS = (
    st.text()
    | st.from_regex(ISO_INSTANT_RE)
    | st.from_regex(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\Z")  # any Unicode digits
    | st.builds(lambda d, off: d.isoformat() + _offset(off), EDGE_DATETIMES, OFFSETS)
    | st.builds(lambda d, off: d.isoformat(timespec="seconds") + _offset(off), EDGE_DATETIMES, WHOLE_SECOND_OFFSETS)
    | NOT_TEXT
)
RETENTIONS = (
    st.text()
    | st.from_regex(r"\A\s*[0-9]{1,9}\s*[hdwHDWxs]?\s*\Z")
    | st.from_regex(
        r"\A\s*[Pp]([0-9]{1,9}[Yy])?([0-9]{1,9}[Mm])?([0-9]{1,9}[Ww])?([0-9]{1,9}[Dd])?"
        r"([Tt]([0-9]{1,9}[Hh])?([0-9]{1,9}[Mm])?([0-9]{1,9}[Ss])?)?\s*\Z"
    )
    | st.from_regex(r"\A\s*P?\d{1,5}[YMWDHS]?\Z")  # any Unicode digits
    | st.builds(lambda n, u: f"{n}{u}", st.integers(0, 40_000), st.sampled_from("hdw"))  # around 100 years
    | st.builds(lambda y, d: f"P{y}Y{d}D", st.integers(0, 101), st.integers(0, 400))
    | st.sampled_from(["forever", " FOREVER ", "P0D", "PT0S", "0d", "P", "PT", "P1H"])
    | NOT_TEXT
)


def refusal_or_value(parse: Callable[[], Any], error: type[Exception], max_message: int) -> Any:
    """Call `parse`: return its value, or None when it raised `error` (with a short message). Any
    other exception fails the test with it."""
    try:
        return parse()
    except error as e:
        assert str(e) and len(str(e)) <= max_message, str(e)[:200]
        return None


# ------------------------------------------------------------------ tag values


@FAST
@given(INSTANTS)
def test_parse_instant_returns_a_utc_instant_or_a_tag_error(value: Any) -> None:
    for parse in (parse_instant, parse_aws_time):
        when = refusal_or_value(partial(parse, value), TagError, MAX_TAG_MESSAGE)
        if when is not None:
            assert when.tzinfo is UTC and 1 <= when.year <= 9999


@FAST
@given(EDGE_DATETIMES, WHOLE_SECOND_OFFSETS, st.sampled_from(["T", " ", "t"]))
def test_an_instant_with_any_offset_is_that_instant_or_out_of_range(
    when: datetime, offset: timedelta, sep: str
) -> None:
    text = when.isoformat(sep) + _offset(offset)  # at most 35 characters: within parse_instant's 40
    try:
        expected: datetime | None = when.replace(tzinfo=timezone(offset)).astimezone(UTC)
    except OverflowError:
        expected = None
    if expected is None:
        with pytest.raises(TagError, match="out of range"):
            parse_instant(text)
    else:
        assert parse_instant(text) == expected


@FAST
@given(RETENTIONS, EDGE_DATETIMES)
def test_parse_retention_and_expiry_return_a_value_or_a_tag_error(value: Any, created: datetime) -> None:
    retention = refusal_or_value(lambda: parse_retention(value), TagError, MAX_TAG_MESSAGE)
    if retention is None:
        return
    assert isinstance(retention, Retention)
    for when in (created, created.replace(tzinfo=UTC)):
        expiry = refusal_or_value(partial(retention.expiry, when), TagError, MAX_TAG_MESSAGE)
        if expiry is not None:
            assert expiry >= when  # a zero retention expires at creation


@FAST
@given(
    st.builds(
        Retention,
        years=st.integers(0, 10**6),
        months=st.integers(0, 10**6),
        days=st.integers(0, 10**10),
        seconds=st.integers(0, 86_399),
    ),
    EDGE_DATETIMES,
)
def test_retention_expiry_of_any_size_is_a_date_or_a_tag_error(retention: Retention, created: datetime) -> None:
    expiry = refusal_or_value(lambda: retention.expiry(created.replace(tzinfo=UTC)), TagError, MAX_TAG_MESSAGE)
    assert expiry is None or expiry.year <= 9999


@FAST
@given(
    st.text()
    | st.from_regex(re.compile(r"\A\s*(true|false|yes|no|1|0|on|off|t|f|y|n|٣)\s*\Z", re.IGNORECASE))
    | NOT_TEXT
)
def test_parse_bool_returns_true_false_none_or_a_tag_error(value: Any) -> None:
    parsed = refusal_or_value(lambda: parse_bool(value), TagError, MAX_TAG_MESSAGE)
    assert parsed in (True, False, None)
    if value is None:
        assert parsed is None


@FAST
@given(st.text() | st.from_regex(r"\A\s*[+-]?\d{1,6}\s*\Z") | st.integers(0, 2000).map(str) | NOT_TEXT)
def test_parse_keep_latest_returns_0_to_1000_or_a_tag_error(value: Any) -> None:
    n = refusal_or_value(lambda: parse_keep_latest(value), TagError, MAX_TAG_MESSAGE)
    assert n is None or (type(n) is int and 0 <= n <= MAX_KEEP_LATEST)


SEPARATORS = st.sampled_from([",", ", ", " ,", ",,", ";", " ", "\n", "\u3001", "|", ",\u00a0"])


@st.composite
def region_lists(draw: st.DrawFn) -> str:
    names = draw(st.lists(REGIONISH, max_size=5))
    seps = draw(st.lists(SEPARATORS, min_size=len(names), max_size=len(names)))
    return "".join(n + s for n, s in zip(names, seps, strict=True)) + draw(st.sampled_from(["", " ", "none", ","]))


@FAST
@given(
    st.text() | region_lists() | st.sampled_from(["none", " NONE ", "", " , "]) | NOT_TEXT,
    st.none() | st.just(frozenset(REGIONS[:3])),
)
def test_parse_regions_returns_distinct_region_names_or_a_tag_error(value: Any, known: frozenset[str] | None) -> None:
    regions = refusal_or_value(lambda: parse_regions(value, known), TagError, MAX_TAG_MESSAGE)
    if regions is not None:
        assert len(set(regions)) == len(regions)
        assert all(is_region_name(r) and (known is None or r in known) for r in regions)


@FAST
@given(st.text() | REGIONISH | NOT_TEXT | JSON)
def test_is_region_name_is_a_predicate_on_anything(value: Any) -> None:
    assert is_region_name(value) in (True, False)


NAME_TOKENS = st.sampled_from(
    ["web", "api", "base", "v1.4.2", "v7", "2026", "20260301t1700z", "build12", "rc1", "", "ü", "🦄"]
)


@FAST
@given(
    st.text(max_size=600)
    | st.lists(NAME_TOKENS | st.text(max_size=5), max_size=8).flatmap(
        lambda words: st.lists(
            st.sampled_from(list("-_. :/") + ["--", " - "]), min_size=len(words), max_size=len(words)
        ).map(lambda seps: "".join(w + s for w, s in zip(words, seps, strict=True)))
    )
    | NOT_TEXT,
    st.sampled_from(["ami-0123", "", "x" * 300]) | st.text(max_size=10),
)
def test_derive_family_is_a_non_empty_tag_value_for_any_name(name: Any, fallback: str) -> None:
    family = derive_family(name, fallback)
    assert isinstance(family, str) and 0 < len(family) <= MAX_TAG_VALUE


@FAST
@given(
    st.text()
    | st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.\-/=+@ ]{0,70}\Z")
    | st.from_regex(r"\A(aws|AWS|Aws)[a-z:-]{0,5}\Z")
    | NOT_TEXT
)
def test_validate_prefix_returns_a_usable_prefix_or_a_tag_error(prefix: Any) -> None:
    valid = refusal_or_value(lambda: validate_prefix(prefix), TagError, MAX_TAG_MESSAGE)
    if valid is not None:
        assert 1 <= len(valid) <= 64 and TagKeys(valid).managed == f"{valid}:managed"


# ------------------------------------------------------------------ events

VALID_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "7f2c6d1e-0000-4000-8000-000000000000",
    "detail-type": DETAIL_TYPE,
    "source": SOURCE,
    "account": "123456789012",
    "time": "2026-11-25T10:00:00Z",
    "region": EAST,
    "resources": [f"arn:aws:ec2:{EAST}::image/{AMI}"],
    "detail": {"RequestId": "r-1", "ImageId": AMI, "State": "available", "ErrorMessage": ""},
}
EVENT_FIELDS = [k for k in VALID_EVENT if k != "detail"] + [
    "detail",
    "detail.ImageId",
    "detail.State",
    "detail.ErrorMessage",
]
NEAR_VALUES = (
    JSON
    | st.sampled_from(["available", "failed", "Available", "us-east-1 ", AMI.upper(), AMI + "\n", "123456789012 "])
    | st.integers(min_value=10**12, max_value=10**13)
    | st.text(alphabet="0123456789abcdef-ami", max_size=25)
)


@st.composite
def near_valid_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with up to two fields deleted or replaced."""
    event = json.loads(json.dumps(VALID_EVENT))
    for path in draw(st.sets(st.sampled_from(EVENT_FIELDS), max_size=2)):
        # `detail` itself may have been deleted or replaced by an earlier mutation.
        target, key = (event.get("detail"), path.split(".", 1)[1]) if path.startswith("detail.") else (event, path)
        if not isinstance(target, dict):
            continue
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = draw(NEAR_VALUES)
    return event


@FAST
@given(JSON | near_valid_events())
def test_parse_ami_event_returns_a_state_change_or_bad_event(event: Any) -> None:
    change = refusal_or_value(lambda: parse_ami_event(event), BadEvent, MAX_REFUSAL)
    if change is not None:
        assert isinstance(change, AmiStateChange)
        assert all(isinstance(getattr(change, f), str) for f in change.__dataclass_fields__)
        assert len(change.error_message) <= 1000 and len(change.event_id) <= 256


# ------------------------------------------------------------------ copy requests

VALID_COPY: dict[str, Any] = {
    "source_image_id": AMI,
    "source_region": EAST,
    "target_region": WEST,
    "name": "web-1",
    "description": "",
    "tags": {f"{P}:managed": "true", f"{P}:source-image": AMI},
    "encrypted": False,
    "kms_key_id": None,
}
COPY_NEAR_VALUES = (
    JSON
    | st.sampled_from([True, "alias/replicas", "arn:aws:kms:us-west-2:111122223333:key/x", "", " ", "\ud800"])
    | st.dictionaries(st.text(max_size=130), st.text(max_size=260) | JSON, max_size=3)
    | REGIONISH
)


@st.composite
def near_valid_copy_bodies(draw: st.DrawFn) -> str | bytes:
    data = dict(VALID_COPY)
    for key in draw(st.sets(st.sampled_from([*VALID_COPY, "padding"]), max_size=2)):
        if draw(st.booleans()):
            data.pop(key, None)
        else:
            data[key] = draw(COPY_NEAR_VALUES)
    body = json.dumps(data)
    return body.encode() if draw(st.booleans()) else body


@FAST
@given(st.text() | st.binary() | JSON.map(json.dumps) | near_valid_copy_bodies() | NOT_TEXT)
def test_copy_request_from_json_returns_a_request_or_a_value_error(body: Any) -> None:
    request = refusal_or_value(lambda: CopyRequest.from_json(body), ValueError, MAX_REFUSAL)
    if request is not None:
        assert CopyRequest.from_json(request.to_json()) == request
        assert len(request.client_token) <= 64  # hashable: no lone surrogate got through


# ------------------------------------------------------------------ settings

ENV_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "AWS_REGION": REGIONISH,
    "AWS_DEFAULT_REGION": REGIONISH,
    "TAG_PREFIX": st.sampled_from(["acme", "aws", "a" * 65, " ok "]) | st.text(max_size=20),
    "DEFAULT_RETENTION": RETENTIONS.filter(lambda v: isinstance(v, str)),
    "DEFAULT_KEEP_LATEST": st.integers(-5, 2000).map(str) | st.text(max_size=6),
    "REPLICA_REGIONS": region_lists(),
    "REPLICA_KMS_KEYS": st.lists(
        st.tuples(
            REGIONISH, st.sampled_from(["=", "", "= "]), st.sampled_from(["alias/k", "arn:aws:kms:x", "short", ""])
        ),
        max_size=3,
    ).map(lambda parts: ",".join(r + s + k for r, s, k in parts)),
    "SWEEP_REGIONS": region_lists(),
    "DRY_RUN": st.sampled_from(["true", "false", "TRUE", "", "maybe"]) | st.text(max_size=6),
    "MANAGE_NEW_IMAGES": st.sampled_from(["true", "false", "0", "yes"]) | st.text(max_size=6),
    "COPY_QUEUE_URL": st.text(max_size=30),
    "KEEP_IF_LAUNCHED_WITHIN": RETENTIONS.filter(lambda v: isinstance(v, str)),
    "SHARED_IMAGE_CHECK": st.sampled_from(["strict", "managed-accounts", "off", "STRICT"]) | st.text(max_size=8),
    "MAX_COPIES_IN_FLIGHT": st.integers(-1, 200).map(str) | st.text(max_size=6),
}


NEAR_VALID_ENVS = st.fixed_dictionaries({}, optional={k: v | v | st.text() for k, v in ENV_VALUES.items()})
ENVS = (
    NEAR_VALID_ENVS
    | st.builds(lambda env, key, bad: {**env, key: bad}, NEAR_VALID_ENVS, st.sampled_from(list(ENV_VALUES)), NOT_TEXT)
    | st.dictionaries(st.text(max_size=20), st.text(max_size=20))
)


@FAST
@given(ENVS)
def test_settings_from_env_returns_settings_or_a_config_error(env: dict[str, Any]) -> None:
    try:
        settings = load_settings(env)
    except ConfigError as e:
        assert str(e)
        return
    assert settings.keys.prefix == settings.tag_prefix
    assert settings.retention is not None and settings.sweep_regions


# ------------------------------------------------------------------ payloads

PAYLOAD_REGIONS = st.lists(st.sampled_from([*REGIONS, "mars-north-1", "US-EAST-1", "us-east-1\u0000"]), max_size=4)
SWEEP_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "regions": PAYLOAD_REGIONS,
    "dry_run": st.booleans() | st.none(),
    "source": st.sampled_from(["schedule", "manual", "Schedule"]),
    "accounts": st.lists(st.sampled_from(["123456789012", "12345", "x" * 12]), max_size=3),
    "cursor": st.fixed_dictionaries(
        {},
        optional={
            "pairs": st.lists(st.lists(st.sampled_from(["123456789012", "us-east-1", "mars-1"]), max_size=3)) | JSON,
            "iteration": st.integers(-1, 25) | JSON,
        },
    ),
    "retire_at_most": st.integers(-1, 3) | JSON,
}
CURSORS = st.fixed_dictionaries(
    {},
    optional={
        "region_index": st.integers(-1, 3) | JSON,
        "offset": st.integers(-1, 5) | JSON,
        "after": st.sampled_from([AMI, None]) | JSON,
        "chain": st.integers(0, 25) | JSON,
        "run_id": st.text(max_size=70),
        "found": st.lists(st.just(AMI), max_size=2) | JSON,
        "sneaky": JSON,
    },
)
BACKFILL_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "actions": st.lists(st.sampled_from(["tag", "replicate", "retire", "TAG", "x" * 50]), max_size=4),
    "regions": PAYLOAD_REGIONS,
    "image_ids": st.lists(
        st.sampled_from([AMI, AMI.upper(), AMI + "\n", "ami-0123"]) | st.text(max_size=8), max_size=3
    ),
    "dry_run": st.booleans() | st.none(),
    "continuation": CURSORS,
}


def payloads(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    near_valid = st.fixed_dictionaries({}, optional={k: v | v | JSON for k, v in fields.items()})
    with_extra = st.builds(
        lambda p, extra: {**p, **extra}, near_valid, st.dictionaries(st.text(max_size=12), JSON, max_size=2)
    )
    return near_valid | with_extra | JSON


def check_dry_run(payload: Any, request: Any) -> None:
    """An explicit null is never accepted; an accepted dry_run is exactly the one given (or None: absent)."""
    if isinstance(payload, dict) and "dry_run" in payload:
        assert payload["dry_run"] is not None
        assert request.dry_run is payload["dry_run"]
    else:
        assert request.dry_run is None


@FAST
@given(payloads(SWEEP_FIELDS))
def test_sweep_parse_request_returns_a_request_or_bad_request(payload: Any) -> None:
    request = refusal_or_value(lambda: parse_sweep(payload, STACK), requests.BadRequest, MAX_REFUSAL)
    if request is not None:
        check_dry_run(payload, request)
        assert all(r in STACK.sweep_regions for r in request.regions or ())


@FAST
@given(payloads(BACKFILL_FIELDS))
def test_backfill_parse_request_returns_a_request_or_bad_request(payload: Any) -> None:
    request = refusal_or_value(lambda: parse_backfill(payload, STACK), requests.BadRequest, MAX_REFUSAL)
    if request is not None:
        check_dry_run(payload, request)
        assert set(request.ordered_actions()) <= {"tag", "replicate", "retire"}


# ------------------------------------------------------------------ the known failures, as examples


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_an_instant_outside_the_utc_calendar_is_a_tag_error_not_an_overflow(value: str) -> None:
    with pytest.raises(TagError) as err:
        parse_instant(value)
    assert str(err.value) == f"expires-at {value!r} is out of range: years 0001 to 9999 UTC"


def test_the_instants_at_the_edges_of_the_calendar_still_parse() -> None:
    assert parse_instant("9999-12-31T23:59:59Z") == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert parse_instant("9999-12-31T23:59:59+01:00") == datetime(9999, 12, 31, 22, 59, 59, tzinfo=UTC)
    assert parse_instant("0001-01-01T00:00:00Z") == datetime(1, 1, 1, tzinfo=UTC)
    assert parse_instant("0001-01-01T00:00:00-01:00") == datetime(1, 1, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("retention", "created"),
    [
        ("36000d", datetime(9950, 1, 1, tzinfo=UTC)),  # timedelta addition overflowed
        ("PT1S", datetime.max.replace(tzinfo=UTC)),
        ("P99Y", datetime(9950, 1, 1, tzinfo=UTC)),  # calendar months: already a TagError
        ("P1Y1D", datetime(9998, 12, 31, tzinfo=UTC)),
    ],
)
def test_a_retention_running_past_9999_is_a_tag_error(retention: str, created: datetime) -> None:
    with pytest.raises(TagError, match="runs past the year 9999"):
        parse_retention(retention).expiry(created)


def test_a_retention_too_long_for_a_timedelta_is_a_tag_error() -> None:
    with pytest.raises(TagError, match="runs past the year 9999"):
        Retention(days=10**10).expiry(datetime(2026, 1, 1, tzinfo=UTC))


def test_callers_report_a_retention_running_past_9999_as_a_bad_tag() -> None:
    created = datetime(9950, 1, 1, tzinfo=UTC)
    image = Image(AMI, EAST, "web-1", "available", created, tags={f"{P}:retention": "36000d"})
    expiry = expiry_of(image, STACK.keys)
    assert expiry.at is None and expiry.error and "9999" in expiry.error
    adoption = decide_adoption(image, STACK, datetime(2026, 1, 1, tzinfo=UTC))
    assert adoption.expires_at is None and any("9999" in e for e in adoption.errors)


def test_a_zero_retention_expires_at_creation() -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    for value in ("P0D", "PT0S", "0d", "0h"):
        assert parse_retention(value).expiry(created) == created


@pytest.mark.parametrize("parse", [parse_sweep, parse_backfill], ids=["sweep", "backfill"])
def test_a_null_dry_run_is_refused_and_an_absent_one_keeps_its_default(parse: Callable[..., Any]) -> None:
    error = requests.BadRequest if parse is parse_sweep else requests.BadRequest
    with pytest.raises(error, match="dry_run: dry_run must be true or false"):
        parse({"dry_run": None}, STACK)
    with pytest.raises(error, match="dry_run must be true or false"):
        parse({"dry_run": None, "regions": [EAST]}, STACK)
    assert parse({}, STACK).dry_run is None  # the sweep: DryRun; the backfill: a dry run
    assert parse(None, STACK).dry_run is None
    assert parse({"dry_run": False}, STACK).dry_run is False
    assert parse({"dry_run": True}, STACK).dry_run is True


def test_a_backfill_without_dry_run_is_a_dry_run_and_the_model_itself_refuses_null() -> None:
    assert parse_backfill({}, STACK).effective_dry_run(STACK) is True
    assert parse_backfill({"dry_run": False}, STACK).effective_dry_run(STACK) is False
    with pytest.raises(ValidationError, match="dry_run must be true or false"):
        requests.BackfillRequest.model_validate({"dry_run": None})


# ------------------------------------------------------------------ shapes the strategies rarely reach

DEEP: Any = {}
for _ in range(10_000):
    DEEP = {"x": DEEP}
HUGE_INT = 10**5000  # str() of it raises ValueError (Python's int digit limit)


@pytest.mark.parametrize(
    "parse",
    [parse_retention, parse_instant, parse_bool, parse_keep_latest, parse_regions, validate_prefix],
    ids=lambda f: f.__name__,
)
@pytest.mark.parametrize("value", [None, 3, 1.5, True, b"90d", ["90d"], {"v": "90d"}], ids=repr)
def test_a_tag_value_that_is_not_a_string_is_a_tag_error(parse: Callable[[Any], Any], value: Any) -> None:
    if parse is parse_bool and value is None:
        assert parse_bool(None) is None  # absent
        return
    with pytest.raises(TagError):
        parse(value)


@pytest.mark.parametrize(
    "event",
    [
        {**VALID_EVENT, "detail": {**VALID_EVENT["detail"], "State": ["available"]}},  # unhashable: was TypeError
        {**VALID_EVENT, "detail": {**VALID_EVENT["detail"], "State": {"a": 1}}},
        {**VALID_EVENT, "detail": {**VALID_EVENT["detail"], "ImageId": HUGE_INT}},
        {**VALID_EVENT, "detail": {**VALID_EVENT["detail"], "ImageId": DEEP}},
        {**VALID_EVENT, "source": "x" * 1_000_000},
        {**VALID_EVENT, "account": HUGE_INT},
    ],
    ids=["state-list", "state-object", "huge-int-id", "deep-id", "huge-source", "huge-int-account"],
)
def test_absurd_events_are_bad_events_with_short_messages(event: dict[str, Any]) -> None:
    with pytest.raises(BadEvent) as err:
        parse_ami_event(event)
    assert len(str(err.value)) < 300


def test_absurd_informational_event_fields_are_clipped_not_fatal() -> None:
    event = {
        **VALID_EVENT,
        "id": HUGE_INT,
        "time": DEEP,
        "detail": {**VALID_EVENT["detail"], "ErrorMessage": "ü" * 10**6},
    }
    change = parse_ami_event(event)
    assert change.event_id == "<int>" and change.time == "" and len(change.error_message) == 1000


@pytest.mark.parametrize(
    "body",
    [None, 12, ["{}"], "[" * 100_000, '{"a":' * 100_000, b"\xff\xfe", "\ud800", "{" + '"x":1,' * 10 + "}"],
    ids=["none", "int", "list", "deep-array", "deep-object", "bad-utf8", "surrogate", "trailing-comma"],
)
def test_absurd_copy_request_bodies_are_value_errors(body: Any) -> None:
    with pytest.raises(ValueError) as err:
        CopyRequest.from_json(body)
    assert type(err.value) is not RecursionError and len(str(err.value)) < 300


def test_a_copy_request_with_a_lone_surrogate_is_refused_before_any_ec2_call() -> None:
    for field, value in [("name", "web-\ud800"), ("description", "\udfff"), ("kms_key_id", "alias/\ud800")]:
        body = json.dumps({**VALID_COPY, field: value, "encrypted": True})
        with pytest.raises(ValueError, match="not valid Unicode"):
            CopyRequest.from_json(body)
    with pytest.raises(ValueError, match="not valid Unicode"):
        CopyRequest.from_json(json.dumps({**VALID_COPY, "tags": {"k\ud800": "v"}}))


@pytest.mark.parametrize(
    "env",
    [
        {"TAG_PREFIX": None},
        {"DRY_RUN": 1},
        {"AWS_REGION": ["us-east-1"]},
        {"DEFAULT_KEEP_LATEST": "1" * 5000},
        {"DEFAULT_KEEP_LATEST": "٣"},
        {"TAG_PREFIX": "x" * 100_000},
        {"DRY_RUN": "y" * 100_000},
        {"REPLICA_KMS_KEYS": "k" * 100_000},
        {"AWS_REGION": "us-east-1\udcff"},  # os.environ decodes undecodable bytes to lone surrogates
    ],
    ids=["none", "int", "list", "huge-int", "arabic-digit", "huge-prefix", "huge-bool", "huge-kms", "surrogate"],
)
def test_absurd_environments_are_config_errors_with_short_messages(env: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert len(str(err.value)) < 500


@pytest.mark.parametrize("parse", [parse_sweep, parse_backfill], ids=["sweep", "backfill"])
@pytest.mark.parametrize(
    "payload",
    [
        {"x" * 1_000_000: 1},  # the unknown key is named, clipped
        {f"k{i}": i for i in range(1000)},  # a thousand unknown keys
        {1: 1},
        {"regions": [1] * 100_000},
        {"actions": ["x" * 1_000_000]},
        {"actions": [HUGE_INT]},
        {"continuation": DEEP},
    ],
    ids=["huge-key", "many-keys", "int-key", "many-bad-regions", "huge-action", "huge-int-action", "deep"],
)
def test_absurd_payloads_are_bad_requests_with_short_messages(parse: Callable[..., Any], payload: Any) -> None:
    error = requests.BadRequest if parse is parse_sweep else requests.BadRequest
    with pytest.raises(error) as err:
        parse(payload, STACK)
    assert len(str(err.value)) < MAX_REFUSAL


# ------------------------------------------------------------------ no catastrophic backtracking, no quadratic work

N = 100_000
LONG_INPUTS: list[tuple[Callable[[], Any], str]] = [
    (lambda: parse_retention("1" * N + "d"), "retention digits"),
    (lambda: parse_retention(" " * N + "P" + "1Y" * 10), "retention spaces"),
    (lambda: parse_instant("2026-" * (N // 5)), "instant"),
    (lambda: parse_keep_latest("9" * N), "keep-latest"),
    (lambda: parse_bool("t" * N), "bool"),
    (lambda: parse_regions("aa" + "-a" * (N // 2)), "region with many parts"),
    (lambda: parse_regions("aa" + "-a" * (N // 2) + "-"), "region with many parts, failing late"),
    (
        lambda: parse_regions(
            ",".join(f"ab-{i:05d}".translate(str.maketrans("0123456789", "abcdefghij")) + "-1" for i in range(N // 10))
        ),
        "many distinct regions",
    ),
    (lambda: parse_regions("," * N), "commas"),
    (lambda: validate_prefix("a" * N), "prefix"),
    (lambda: validate_prefix("a" + " " * N + "\n"), "prefix of spaces"),
    (lambda: derive_family("1" * N, "ami-0123"), "family of digits"),
    (lambda: derive_family("v1" + ".1" * (N // 2) + "x!", "ami-0123"), "family version"),
    (lambda: derive_family("a-" * (N // 2), "ami-0123"), "family of separators"),
    (lambda: derive_family("20260301t" + "1" * N, "ami-0123"), "family timestamp"),
    (lambda: derive_family("web" + "-1" * (N // 2), "ami-0123"), "family of many suffixes"),
    (lambda: derive_family("web-" + "1" * N + "!", "ami-0123"), "family digits failing late"),
    (lambda: is_region_name("us" + "-us" * (N // 3) + "-"), "region name failing late"),
    (lambda: is_region_name("us-" * (N // 3) + "1"), "region name"),
    (lambda: parse_ami_event({**VALID_EVENT, "detail": {"ImageId": "ami-" + "0" * N, "State": "available"}}), "event"),
    (lambda: CopyRequest.from_json(json.dumps({**VALID_COPY, "source_image_id": "ami-" + "a" * N})), "copy request"),
]


@pytest.mark.parametrize(("parse", "what"), LONG_INPUTS, ids=[w for _, w in LONG_INPUTS])
def test_a_100k_character_input_is_parsed_or_refused_fast(parse: Callable[[], Any], what: str) -> None:
    start = time.perf_counter()
    with contextlib.suppress(ValueError):  # TagError, BadEvent and the copy request's refusals
        parse()
    assert time.perf_counter() - start < 1.0, what


def test_explicit_nulls_never_widen_a_run() -> None:
    """`{"image_ids": null}` must not mean every image, nor `{"actions": null}` every action."""
    from ami_lifecycle.domain.settings import Settings

    BackfillRefused = SweepRefused = requests.BadRequest  # noqa: N806

    settings = Settings(home_region="us-east-1")
    for key in ("image_ids", "actions", "regions"):
        with pytest.raises(BackfillRefused, match=f"{key}: must not be null"):
            parse_backfill({key: None, "dry_run": False}, settings)
    with pytest.raises(SweepRefused, match="regions: must not be null"):
        parse_sweep({"regions": None}, settings)
