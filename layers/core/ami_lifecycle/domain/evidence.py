"""Evidence of non-use: what must be proven before an image is retired (PRODUCT.md sections 2 and 8).

Pure data and decisions: nothing here calls AWS, reads the environment or the clock.

The rule is fail-closed. An image is retired only when every source that could reference it has
*answered* in this run, and answered "no reference":

- the resource sources of its own account and region (`Source`): instances, every launch template
  version, launch configurations, SSM parameters of data type `aws:ec2:image`, Image Builder image
  and container recipes. Each region's check records, per source, which API answered
  (`SourceAnswer`). A source that failed, was throttled past its retries or was not permitted has
  not answered: every candidate of the region is then kept as ``unverified`` naming that source.
- when the image is shared (launch permissions name an account, an OU, an organization, or it is
  public), its consumers (`Sharing`, `assess_sharing`): a consumer that is a managed account is
  checked at once in that account and the image's region, through its spoke role (its references,
  as for the owner: `ConsumerCheck`); every other consumer goes through an EC2 AMI usage report,
  requested by one sweep and read by a later one.

"Could not check" is never "unused".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from .model import Image, Reference
from .tags import format_instant

# A usage report is trusted only when it was created after the image expired and at most this long
# ago: consumers launch new instances all the time, and a daily sweep requests a fresh one anyway.
USAGE_REPORT_MAX_AGE = timedelta(days=7)
# How many consumers or usage entries a reason names before "and N more".
NAMED = 5


class Source(StrEnum):
    """A kind of resource, in the image's own account and region, that can reference an image."""

    INSTANCES = "instances"
    LAUNCH_TEMPLATES = "launch-templates"
    LAUNCH_CONFIGURATIONS = "launch-configurations"
    SSM_PARAMETERS = "ssm-parameters"
    IMAGE_BUILDER_RECIPES = "image-builder-recipes"


ALL_SOURCES: tuple[Source, ...] = tuple(Source)
# The sources DescribeImageReferences covers (launch configurations it does not).
IMAGE_REFERENCES_SOURCES: tuple[Source, ...] = (
    Source.INSTANCES,
    Source.LAUNCH_TEMPLATES,
    Source.SSM_PARAMETERS,
    Source.IMAGE_BUILDER_RECIPES,
)


@dataclass(frozen=True)
class SourceAnswer:
    """How one source was checked in one region: `by` the API(s) that answered (or were tried)."""

    source: Source
    by: str
    answered: bool
    error: str = ""

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"answered": self.answered, "by": self.by}
        if self.error:
            data["error"] = self.error
        return data

    def why_not(self) -> str:
        return f"{self.source} ({self.by}: {self.error or 'not checked'})"


@dataclass
class Evidence:
    """The in-use check of one region: references by image id, and each source's answer."""

    references: dict[str, list[Reference]] = field(default_factory=dict)
    answers: dict[Source, SourceAnswer] = field(default_factory=dict)

    def record(self, answer: SourceAnswer) -> None:
        """A source's answer; a later way of asking it is recorded after the one that failed."""
        current = self.answers.get(answer.source)
        if current is None:
            self.answers[answer.source] = answer
        elif not current.answered:
            by = f"{current.by}, then {answer.by}"
            error = answer.error if answer.answered else f"{current.error}; then {answer.error}"
            self.answers[answer.source] = SourceAnswer(
                answer.source, by, answer.answered, "" if answer.answered else error
            )

    def add(self, references: Mapping[str, Sequence[Reference]], wanted: set[str] | None = None) -> None:
        for image_id, refs in references.items():
            if wanted is None or image_id in wanted:
                self.references.setdefault(image_id, []).extend(refs)

    def missing(self) -> list[Source]:
        """The sources that have not answered (they keep every candidate of the region)."""
        return [s for s in ALL_SOURCES if not (s in self.answers and self.answers[s].answered)]

    def unverified(self) -> tuple[str, ...]:
        """One line per source that has not answered: which one, through what, and why."""
        return tuple(self.answers[s].why_not() if s in self.answers else f"{s} (not checked)" for s in self.missing())

    def note(self) -> dict[str, dict[str, object]]:
        """Per source, in a fixed order: whether it answered, by what, and the error if not."""
        return {
            str(s): self.answers[s].to_dict()
            if s in self.answers
            else {"answered": False, "by": "", "error": "not checked"}
            for s in ALL_SOURCES
        }


# ---------------------------------------------------------------- shared images


class ShareState(StrEnum):
    NOT_SHARED = "not-shared"  # no launch permission names anyone else, not public (or not applicable)
    UNUSED = "unused"  # shared, and every consumer checked shows no use
    NOT_CHECKED = "not-checked"  # shared, consumers deliberately not checked (SharedImageCheck)
    IN_USE = "in-use"  # a consumer uses it
    UNVERIFIED = "unverified"  # a consumer could not be checked (yet)


@dataclass(frozen=True)
class Sharing:
    """What the shared-image check established about one image."""

    state: ShareState
    detail: str = ""
    consumers: tuple[str, ...] = ()
    request_report: bool = False  # the executor should request a usage report for it
    # With request_report: whom the report is for (empty: every consumer), and what else was found
    # (the direct checks of managed consumers), kept in the verdict once the report is requested.
    report_for: tuple[str, ...] = ()
    also: tuple[str, ...] = ()

    @property
    def blocks(self) -> bool:
        return self.state in (ShareState.IN_USE, ShareState.UNVERIFIED)


NOT_SHARED = Sharing(ShareState.NOT_SHARED)


@dataclass(frozen=True)
class LaunchPermissions:
    """DescribeImageAttribute(launchPermission), plus `Public` from DescribeImages."""

    accounts: tuple[str, ...] = ()
    organizations: tuple[str, ...] = ()
    organizational_units: tuple[str, ...] = ()
    public: bool = False

    def without(self, accounts: Iterable[str]) -> LaunchPermissions:
        """These permissions less the given accounts (those checked another way)."""
        gone = set(accounts)
        return replace(self, accounts=tuple(a for a in self.accounts if a not in gone))

    def consumers(self, owner: str | None = None) -> tuple[str, ...]:
        named = [f"account {a}" for a in self.accounts if a != owner]
        named += [f"organization {o}" for o in self.organizations]
        named += [f"OU {u}" for u in self.organizational_units]
        if self.public:
            named.append("the public")
        return tuple(named)


@dataclass(frozen=True)
class UsageReport:
    report_id: str
    image_id: str
    state: str  # "pending", "available", "error"
    created: datetime | None
    account_ids: tuple[str, ...] = ()  # empty: every account
    state_reason: str = ""


@dataclass(frozen=True)
class UsageEntry:
    report_id: str
    image_id: str
    account_id: str
    resource_type: str
    usage_count: int

    def __str__(self) -> str:
        return f"account {self.account_id}: {self.usage_count} {self.resource_type}"


@dataclass(frozen=True)
class ConsumerCheck:
    """A consumer account that is a managed account, checked directly (PRODUCT.md section 8): its
    references to the image in the image's region, read through its spoke role as the owner's are
    read (every `Source` must answer). `error`: the account could not be reached at all (role
    missing or untrusted, AssumeRole denied or throttled)."""

    account: str
    region: str
    references: tuple[Reference, ...] = ()
    unverified: tuple[str, ...] = ()  # the sources there that did not answer, one line each
    error: str = ""

    @property
    def in_use(self) -> bool:
        return bool(self.references)

    @property
    def proven_unused(self) -> bool:
        return not self.references and not self.unverified and not self.error

    def describe(self) -> str:
        where = f"managed account {self.account} ({self.region})"
        if self.references:
            refs = [str(r) for r in self.references]
            return f"used in {where} by {_named(refs)}"
        if self.error:
            return f"{where} could not be checked: {self.error}"
        if self.unverified:
            return f"{where} not proven unused: no answer from {'; '.join(self.unverified)}"
        return f"{where}: no reference"


def can_be_shared(image: Image) -> bool:
    """A disabled image is not shared (EC2 removes its launch permissions when disabling it)."""
    return image.state == "available"


def _named(items: Sequence[str]) -> str:
    more = len(items) - NAMED
    return ", ".join(items[:NAMED]) + (f" and {more} more" if more > 0 else "")


def usable_report(
    reports: Sequence[UsageReport], expires_at: datetime, now: datetime, state: str
) -> UsageReport | None:
    """The newest report in `state` that covers every account, was created at or after the expiry
    and is at most USAGE_REPORT_MAX_AGE old."""
    fitting = [
        r
        for r in reports
        if r.state == state
        and not r.account_ids
        and r.created is not None
        and r.created >= expires_at
        and now - r.created <= USAGE_REPORT_MAX_AGE
    ]
    return max(fitting, key=lambda r: (r.created, r.report_id)) if fitting else None


def assess_sharing(
    image: Image,
    expires_at: datetime,
    now: datetime,
    *,
    mode: str,
    owner: str | None,
    permissions: LaunchPermissions | None,
    permissions_error: str = "",
    reports: Sequence[UsageReport] | None = None,
    reports_error: str = "",
    entries: Mapping[str, Sequence[UsageEntry]] | None = None,
    entries_error: str = "",
    dry_run: bool = False,
    managed: Mapping[str, ConsumerCheck] | None = None,
) -> Sharing:
    """Decide whether a shared image's consumers are proven not to use it (PRODUCT.md section 8).

    `permissions` None means they could not be read (`permissions_error` says why). `managed`: the
    direct checks of the consumer accounts that are managed accounts, by account (those accounts
    need no usage report, and a report's entries for them are not read: the direct check is the
    newer word). The other consumers go through the usage reports: `reports` are the image's
    (None: not read); `entries` the entries of the report chosen, by report id. With `mode`
    "managed-accounts" only the managed consumers are checked. Returns the verdict, and whether a
    new usage report should be requested.

    Combined: any use (a managed account's reference, a report's entry) keeps the image as in use;
    else any consumer that could not be checked keeps it as unverified; else it is unused (or, for
    consumers deliberately not checked, not checked).
    """
    if mode == "off" or not can_be_shared(image):
        return NOT_SHARED
    if permissions is None:
        return Sharing(ShareState.UNVERIFIED, f"launch permissions could not be read ({permissions_error})")
    consumers = permissions.consumers(owner)
    if not consumers:
        return NOT_SHARED
    checks = [managed[a] for a in dict.fromkeys(permissions.accounts) if managed and a != owner and a in managed]
    others = permissions.without(c.account for c in checks).consumers(owner)
    rest = (
        _by_usage_report(
            others,
            expires_at,
            now,
            mode=mode,
            reports=reports,
            reports_error=reports_error,
            entries=entries,
            entries_error=entries_error,
            dry_run=dry_run,
            checked={c.account for c in checks},
        )
        if others
        else None
    )
    if not checks:
        assert rest is not None
        return replace(rest, consumers=consumers)
    in_use = [c.describe() for c in checks if c.in_use]
    unverified = [c.describe() for c in checks if not c.in_use and not c.proven_unused]
    unused = [c.describe() for c in checks if c.proven_unused]
    if rest is not None and rest.state is ShareState.IN_USE:
        in_use.append(rest.detail)
    if in_use:
        return Sharing(ShareState.IN_USE, "; ".join(in_use), consumers)
    if rest is not None and rest.state is ShareState.UNVERIFIED:
        unverified.append(rest.detail)
    if unverified:
        if rest is not None and rest.request_report:
            return Sharing(
                ShareState.UNVERIFIED,
                "; ".join(unverified),
                consumers,
                request_report=True,
                report_for=others,
                also=tuple(unverified[:-1]),
            )
        return Sharing(ShareState.UNVERIFIED, "; ".join(unverified), consumers)
    detail = "; ".join([*unused, *([rest.detail] if rest is not None else [])])
    state = ShareState.NOT_CHECKED if rest is not None and rest.state is ShareState.NOT_CHECKED else ShareState.UNUSED
    return Sharing(state, detail, consumers)


def _by_usage_report(
    consumers: Sequence[str],
    expires_at: datetime,
    now: datetime,
    *,
    mode: str,
    reports: Sequence[UsageReport] | None,
    reports_error: str,
    entries: Mapping[str, Sequence[UsageEntry]] | None,
    entries_error: str,
    dry_run: bool,
    checked: set[str],
) -> Sharing:
    """The verdict on `consumers` (the ones not checked directly) from the image's usage reports;
    the entries of the accounts in `checked` are left out."""
    who = _named(consumers)
    if mode == "managed-accounts":
        return Sharing(
            ShareState.NOT_CHECKED,
            f"shared with {who}: not checked (SharedImageCheck=managed-accounts)",
            tuple(consumers),
        )
    if reports is None:
        return Sharing(
            ShareState.UNVERIFIED,
            f"shared with {who}: usage reports could not be read ({reports_error})",
            tuple(consumers),
        )
    done = usable_report(reports, expires_at, now, "available")
    if done is not None:
        if entries is None or done.report_id not in entries:
            return Sharing(
                ShareState.UNVERIFIED,
                f"shared with {who}: usage report {done.report_id} could not be read ({entries_error or 'not read'})",
                tuple(consumers),
            )
        used = [e for e in entries[done.report_id] if e.usage_count > 0 and e.account_id not in checked]
        if used:
            return Sharing(
                ShareState.IN_USE,
                f"used by {_named([str(e) for e in used])} (usage report {done.report_id} of "
                f"{format_instant(done.created or now)})",
                tuple(consumers),
            )
        return Sharing(
            ShareState.UNUSED,
            f"shared with {who}: usage report {done.report_id} of {format_instant(done.created or now)} shows no use",
            tuple(consumers),
        )
    pending = usable_report(reports, expires_at, now, "pending")
    if pending is not None:
        return Sharing(
            ShareState.UNVERIFIED,
            f"shared with {who}: usage report {pending.report_id} requested at "
            f"{format_instant(pending.created or now)} is pending; a later sweep reads it",
            tuple(consumers),
        )
    verb = "a real sweep would request" if dry_run else "requesting"
    return Sharing(
        ShareState.UNVERIFIED,
        f"shared with {who}: no usage report since it expired; {verb} one, read by a later sweep",
        tuple(consumers),
        request_report=not dry_run,
    )


def report_requested(sharing: Sharing, report_id: str) -> Sharing:
    """The verdict once the usage report `assess_sharing` asked for was requested: still kept."""
    who = _named(sharing.report_for or sharing.consumers)
    text = f"shared with {who}: no usage report since it expired; requested {report_id}, read by a later sweep"
    return Sharing(ShareState.UNVERIFIED, "; ".join([*sharing.also, text]), sharing.consumers)


def report_request_failed(sharing: Sharing, error: str) -> Sharing:
    """The verdict when requesting that usage report failed: kept, and why."""
    who = _named(sharing.report_for or sharing.consumers)
    text = f"shared with {who}: no usage report since it expired, and requesting one failed ({error})"
    return Sharing(ShareState.UNVERIFIED, "; ".join([*sharing.also, text]), sharing.consumers)


@dataclass(frozen=True)
class Usage:
    """Everything the in-use check established about one image: its references, the sources that
    could not answer, and its consumers in other accounts."""

    references: tuple[Reference, ...]
    unverified: tuple[str, ...]
    sharing: Sharing


def usage_of(image_id: str, evidence: Evidence, sharing: Sharing) -> Usage:
    return Usage(tuple(evidence.references.get(image_id, ())), evidence.unverified(), sharing)


def checked_unused(references: Sequence[Reference] = ()) -> Usage:
    """Every source answered, with these references; not shared. For callers that have proven it."""
    return Usage(tuple(references), (), NOT_SHARED)
