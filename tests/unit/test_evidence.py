"""Evidence of non-use (pure): unanswered sources and unverified sharing always keep an image."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ami_lifecycle.domain.evidence import (
    ALL_SOURCES,
    NOT_SHARED,
    USAGE_REPORT_MAX_AGE,
    ConsumerCheck,
    Evidence,
    LaunchPermissions,
    ShareState,
    Sharing,
    Source,
    SourceAnswer,
    Usage,
    UsageEntry,
    UsageReport,
    assess_sharing,
    report_request_failed,
    report_requested,
    usage_of,
)
from ami_lifecycle.domain.model import Image, Reference
from ami_lifecycle.domain.retention import Reason, decide
from ami_lifecycle.domain.settings import Settings
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
EXPIRED = NOW - timedelta(days=1)
ACCOUNT = "123456789012"
P = "ami-lifecycle"
SETTINGS = Settings(home_region="us-east-1")


def image(state: str = "available", **kw: object) -> Image:
    data: dict[str, object] = {
        "image_id": "ami-0123456789abcdef0",
        "region": "us-east-1",
        "name": "web-1",
        "state": state,
        "creation_date": NOW - timedelta(days=100),
        "owner_id": ACCOUNT,
        "tags": {
            f"{P}:managed": "true",
            f"{P}:expires-at": "2026-11-24T10:00:00Z",
            f"{P}:keep-latest": "0",
        },
    }
    data.update(kw)
    return Image(**data)  # type: ignore[arg-type]


def complete() -> Evidence:
    e = Evidence()
    for s in ALL_SOURCES:
        e.record(SourceAnswer(s, "test", True))
    return e


def decision(usage: Usage, img: Image | None = None) -> object:
    from ami_lifecycle.domain.retention import rank_families

    img = img or image()
    return decide(img, rank_families([img], SETTINGS, ACCOUNT).get(img.image_id), usage, SETTINGS, NOW, ACCOUNT)


# ---------------------------------------------------------------- sources


def test_every_source_answering_with_no_reference_retires() -> None:
    d = decision(usage_of("ami-0123456789abcdef0", complete(), NOT_SHARED))
    assert d.retire  # type: ignore[attr-defined]


def test_a_source_that_never_answered_keeps_the_image_as_unverified() -> None:
    e = complete()
    del e.answers[Source.IMAGE_BUILDER_RECIPES]
    d = decision(usage_of("ami-0123456789abcdef0", e, NOT_SHARED))
    assert not d.retire and d.reason == Reason.UNVERIFIED  # type: ignore[attr-defined]
    assert "image-builder-recipes (not checked)" in d.detail  # type: ignore[attr-defined]


def test_a_failed_way_then_a_successful_one_is_an_answer_and_says_both() -> None:
    e = Evidence()
    e.record(SourceAnswer(Source.SSM_PARAMETERS, "DescribeImageReferences", False, "UnauthorizedOperation: no"))
    e.record(SourceAnswer(Source.SSM_PARAMETERS, "DescribeParameters", True))
    answer = e.answers[Source.SSM_PARAMETERS]
    assert answer.answered and answer.by == "DescribeImageReferences, then DescribeParameters"


def test_two_failed_ways_keep_both_errors() -> None:
    e = Evidence()
    e.record(SourceAnswer(Source.SSM_PARAMETERS, "DescribeImageReferences", False, "A"))
    e.record(SourceAnswer(Source.SSM_PARAMETERS, "DescribeParameters", False, "B"))
    assert e.answers[Source.SSM_PARAMETERS].error == "A; then B"
    assert Source.SSM_PARAMETERS in e.missing()


@hsettings(max_examples=300, deadline=None)
@given(
    answered=st.sets(st.sampled_from(ALL_SOURCES)),
    refs=st.lists(st.sampled_from(["ec2:Instance", "ssm:Parameter"]), max_size=2),
    share=st.sampled_from(list(ShareState)),
)
def test_property_retired_only_when_every_source_answered_nothing_and_no_consumer_blocks(
    answered: set[Source], refs: list[str], share: ShareState
) -> None:
    e = Evidence()
    for s in ALL_SOURCES:
        e.record(SourceAnswer(s, "test", s in answered, "" if s in answered else "denied"))
    e.add({"ami-0123456789abcdef0": [Reference(r, "x") for r in refs]})
    d = decision(usage_of("ami-0123456789abcdef0", e, Sharing(share, "detail")))
    proven = answered == set(ALL_SOURCES) and not refs and share not in (ShareState.IN_USE, ShareState.UNVERIFIED)
    assert d.retire == proven  # type: ignore[attr-defined]


# ---------------------------------------------------------------- recently launched


def test_a_recent_launch_keeps_and_an_old_one_does_not() -> None:
    recent = decision(
        usage_of("ami-0123456789abcdef0", complete(), NOT_SHARED), image(last_launched_time=NOW - timedelta(days=6))
    )
    old = decision(
        usage_of("ami-0123456789abcdef0", complete(), NOT_SHARED), image(last_launched_time=NOW - timedelta(days=8))
    )
    assert recent.reason == Reason.RECENTLY_LAUNCHED and "2026-11-19" in recent.detail  # type: ignore[attr-defined]
    assert old.retire  # type: ignore[attr-defined]


# ---------------------------------------------------------------- sharing

SHARED = LaunchPermissions(accounts=("222222222222",))


def assess(**kw: object) -> Sharing:
    args: dict[str, object] = {"mode": "strict", "owner": ACCOUNT, "permissions": SHARED}
    args.update(kw)
    return assess_sharing(image(), EXPIRED, NOW, **args)  # type: ignore[arg-type]


def report(state: str, created: datetime, report_id: str = "amiur-1", accounts: tuple[str, ...] = ()) -> UsageReport:
    return UsageReport(report_id, "ami-0123456789abcdef0", state, created, accounts)


def test_unshared_and_disabled_images_need_no_report() -> None:
    assert assess(permissions=LaunchPermissions()) == NOT_SHARED
    assert assess_sharing(image("disabled"), EXPIRED, NOW, mode="strict", owner=ACCOUNT, permissions=None) == NOT_SHARED
    assert assess(mode="off", permissions=None) == NOT_SHARED


def test_unreadable_launch_permissions_keep_the_image() -> None:
    s = assess(permissions=None, permissions_error="UnauthorizedOperation: denied")
    assert s.state is ShareState.UNVERIFIED and "UnauthorizedOperation" in s.detail


def test_no_report_requests_one_and_a_dry_run_does_not() -> None:
    real, dry = assess(reports=[]), assess(reports=[], dry_run=True)
    assert real.state is dry.state is ShareState.UNVERIFIED
    assert real.request_report and not dry.request_report
    assert "222222222222" in real.detail


def test_a_report_made_before_the_expiry_or_too_old_does_not_count() -> None:
    before = report("available", EXPIRED - timedelta(hours=1))
    stale = report("available", NOW - USAGE_REPORT_MAX_AGE - timedelta(minutes=1))
    for r in (before, stale):
        s = assess(reports=[r], entries={r.report_id: []})
        assert s.state is ShareState.UNVERIFIED and s.request_report


def test_a_report_limited_to_some_accounts_does_not_count() -> None:
    r = report("available", NOW - timedelta(hours=1), accounts=("222222222222",))
    assert assess(reports=[r], entries={r.report_id: []}).request_report


def test_a_pending_report_keeps_without_requesting_another() -> None:
    s = assess(reports=[report("pending", NOW - timedelta(hours=1))])
    assert s.state is ShareState.UNVERIFIED and "pending" in s.detail and not s.request_report


def test_an_available_report_decides() -> None:
    r = report("available", NOW - timedelta(hours=1))
    used = UsageEntry(r.report_id, "ami-0123456789abcdef0", "222222222222", "ec2:Instance", 3)
    idle = UsageEntry(r.report_id, "ami-0123456789abcdef0", "222222222222", "ec2:LaunchTemplate", 0)
    assert assess(reports=[r], entries={r.report_id: [idle]}).state is ShareState.UNUSED
    in_use = assess(reports=[r], entries={r.report_id: [used, idle]})
    assert in_use.state is ShareState.IN_USE and "account 222222222222: 3 ec2:Instance" in in_use.detail
    unread = assess(reports=[r], entries=None, entries_error="Throttling")
    assert unread.state is ShareState.UNVERIFIED and "Throttling" in unread.detail


def test_managed_accounts_mode_does_not_check_outside_consumers() -> None:
    s = assess(mode="managed-accounts")
    assert s.state is ShareState.NOT_CHECKED and not s.blocks


def test_public_images_name_the_public() -> None:
    s = assess(permissions=LaunchPermissions(public=True), reports=[])
    assert "the public" in s.detail


def test_an_unreadable_creation_date_is_listed_and_kept_not_a_failed_region() -> None:
    data = {
        "ImageId": "ami-0123456789abcdef0",
        "CreationDate": "not a date",
        "State": "available",
        "OwnerId": ACCOUNT,
        "Tags": [{"Key": f"{P}:managed", "Value": "true"}, {"Key": f"{P}:expires-at", "Value": "2020-01-01T00:00:00Z"}],
    }
    img = Image.from_api(data, "us-east-1")
    d = decision(usage_of(img.image_id, complete(), NOT_SHARED), img)
    assert not d.retire and d.reason == Reason.BAD_TAG and "CreationDate" in d.detail  # type: ignore[attr-defined]


# ---------------------------------------------------------------- managed consumers, checked directly

SPOKE, OTHER_SPOKE, STRANGER = "222222222222", "333333333333", "444444444444"
INSTANCE = Reference("ec2:Instance", "arn:aws:ec2:us-east-1:222222222222:instance/i-0123456789abcdef0")


def checked(account: str = SPOKE, **kw: object) -> ConsumerCheck:
    return ConsumerCheck(account, "us-east-1", **kw)  # type: ignore[arg-type]


def test_a_managed_consumer_using_the_image_keeps_it_naming_the_account_and_the_reference() -> None:
    s = assess(managed={SPOKE: checked(references=(INSTANCE,))})
    assert s.state is ShareState.IN_USE and not s.request_report
    assert s.detail == f"used in managed account {SPOKE} (us-east-1) by {INSTANCE}"
    d = decision(usage_of("ami-0123456789abcdef0", complete(), s))
    assert d.reason == Reason.SHARED_IN_USE and SPOKE in d.detail and "i-0123456789abcdef0" in d.detail  # type: ignore[attr-defined]


def test_a_managed_consumer_that_could_not_be_checked_keeps_it_naming_it_and_why() -> None:
    unreachable = assess(managed={SPOKE: checked(error="cannot assume arn:...: AccessDenied: denied")})
    silent = assess(managed={SPOKE: checked(unverified=("instances (DescribeInstances: Throttling)",))})
    for s in (unreachable, silent):
        assert s.state is ShareState.UNVERIFIED and s.blocks and SPOKE in s.detail and not s.request_report
    assert "AccessDenied" in unreachable.detail and "Throttling" in silent.detail
    d = decision(usage_of("ami-0123456789abcdef0", complete(), unreachable))
    assert d.reason == Reason.SHARED_UNVERIFIED  # type: ignore[attr-defined]


def test_a_managed_consumer_proven_unused_no_longer_keeps_it() -> None:
    s = assess(managed={SPOKE: checked()})  # no usage report asked for, none read
    assert s.state is ShareState.UNUSED and not s.blocks and not s.request_report
    assert decision(usage_of("ami-0123456789abcdef0", complete(), s)).retire  # type: ignore[attr-defined]


def test_the_other_consumers_still_need_a_usage_report() -> None:
    both = LaunchPermissions(accounts=(SPOKE, STRANGER))
    s = assess(permissions=both, reports=[], managed={SPOKE: checked()})
    assert s.state is ShareState.UNVERIFIED and s.request_report
    assert s.report_for == (f"account {STRANGER}",) and SPOKE not in s.detail
    assert f"account {STRANGER}" in report_requested(s, "amiur-9").detail
    # What the direct checks found stays in the verdict once the report is requested (or fails).
    s = assess(
        permissions=LaunchPermissions(accounts=(SPOKE, STRANGER), public=True),
        reports=[],
        managed={SPOKE: checked(error="AccessDenied")},
    )
    assert s.request_report and s.also == (f"managed account {SPOKE} (us-east-1) could not be checked: AccessDenied",)
    for after in (report_requested(s, "amiur-9"), report_request_failed(s, "Throttling")):
        assert after.state is ShareState.UNVERIFIED and SPOKE in after.detail and "the public" in after.detail


def test_a_direct_use_wins_over_a_report_not_read_yet_and_asks_for_none() -> None:
    both = LaunchPermissions(accounts=(SPOKE, STRANGER))
    s = assess(permissions=both, reports=[], managed={SPOKE: checked(references=(INSTANCE,))})
    assert s.state is ShareState.IN_USE and not s.request_report


def test_the_report_entries_of_a_directly_checked_account_are_left_out() -> None:
    r = report("available", NOW - timedelta(hours=1))
    old_use = UsageEntry(r.report_id, "ami-0123456789abcdef0", SPOKE, "ec2:Instance", 2)  # before it stopped
    both = LaunchPermissions(accounts=(SPOKE, STRANGER))
    s = assess(permissions=both, reports=[r], entries={r.report_id: [old_use]}, managed={SPOKE: checked()})
    assert s.state is ShareState.UNUSED
    stranger_use = UsageEntry(r.report_id, "ami-0123456789abcdef0", STRANGER, "ec2:Instance", 1)
    s = assess(
        permissions=both, reports=[r], entries={r.report_id: [old_use, stranger_use]}, managed={SPOKE: checked()}
    )
    assert s.state is ShareState.IN_USE and STRANGER in s.detail and SPOKE not in s.detail


def test_in_managed_accounts_mode_only_the_managed_consumers_decide() -> None:
    both = LaunchPermissions(accounts=(SPOKE, STRANGER))
    unused = assess(mode="managed-accounts", permissions=both, managed={SPOKE: checked()})
    assert unused.state is ShareState.NOT_CHECKED and not unused.blocks and STRANGER in unused.detail
    used = assess(mode="managed-accounts", permissions=both, managed={SPOKE: checked(references=(INSTANCE,))})
    assert used.state is ShareState.IN_USE
    lost = assess(mode="managed-accounts", permissions=both, managed={SPOKE: checked(error="AccessDenied")})
    assert lost.state is ShareState.UNVERIFIED
    assert assess(mode="off", managed={SPOKE: checked(references=(INSTANCE,))}) == NOT_SHARED


def test_every_managed_consumer_is_named_and_the_owner_is_never_one() -> None:
    accounts = LaunchPermissions(accounts=(SPOKE, OTHER_SPOKE))
    s = assess(
        permissions=accounts,
        managed={SPOKE: checked(references=(INSTANCE,)), OTHER_SPOKE: checked(OTHER_SPOKE, error="AccessDenied")},
    )
    assert s.state is ShareState.IN_USE and SPOKE in s.detail
    s = assess(permissions=accounts, managed={SPOKE: checked(), OTHER_SPOKE: checked(OTHER_SPOKE, error="denied")})
    assert s.state is ShareState.UNVERIFIED and OTHER_SPOKE in s.detail and SPOKE not in s.detail
    # A check given for the owner (or an account the image is not shared with) does not count.
    mine = assess(permissions=LaunchPermissions(accounts=(SPOKE,)), reports=[], managed={ACCOUNT: checked(ACCOUNT)})
    assert mine.request_report and mine.report_for == ()
