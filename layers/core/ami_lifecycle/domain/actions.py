"""Typed actions and outcomes: what the planners ask for and what the executor reports.

A planner (adoption, replication, retention, orphaned snapshots) returns `Action`s; the executor
(services/executor.py) performs each one through a gateway and returns an `Outcome`; the report is
built from the outcomes (`Outcome.to_dict`, `Outcome.describe`). Nothing here calls AWS, reads the
environment or the clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .replication import CopyRequest
from .tags import format_instant

if TYPE_CHECKING:  # the sweep's types: the event path does not import them
    from .evidence import LaunchPermissions


class Kind(StrEnum):
    """What an action does, one AWS write each (CreateTags, DeregisterImage, ...)."""

    TAG = "tag"  # CreateTags: the image's lifecycle tags (and its snapshots')
    UNTAG = "untag"  # DeleteTags: stale lifecycle keys (a fixed P:error, a stale basis)
    DEPRECATE = "deprecate"  # EnableImageDeprecation
    UNDEPRECATE = "undeprecate"  # DisableImageDeprecation (the retention became forever)
    REPORT_ERROR = "report-error"  # CreateTags of P:error alone: the image is refused (tag limit)
    REQUEST_COPY = "request-copy"  # SendMessageBatch of a CopyRequest
    REQUEST_USAGE_REPORT = "request-usage-report"  # CreateImageUsageReport of a shared image
    RETIRE = "retire"  # DeregisterImage(DeleteAssociatedSnapshots=True)
    DISABLE = "disable"  # CreateTags (P:disabled-at, P:launch-permissions), then DisableImage
    ENABLE = "enable"  # EnableImage, the launch permissions given back, DeleteTags of `keys`
    DELETE_SNAPSHOT = "delete-snapshot"  # DeleteSnapshot of an orphaned managed snapshot


class Status(StrEnum):
    """What became of an action."""

    DONE = "done"
    PLANNED = "planned"  # a dry run: it would have been done
    GONE = "gone"  # its image or snapshot no longer exists: nothing to do
    FAILED = "failed"  # AWS refused it (`error` says why); it is reported, nothing else changes
    SKIPPED = "skipped"  # not attempted: an earlier action of the same image made it moot


@dataclass(frozen=True)
class SnapshotResult:
    """DeregisterImage(DeleteAssociatedSnapshots) per snapshot: `success`, `skipped` (another image
    uses it), `missing-permissions`, ...; in a dry run `would-delete` / `would-skip`; `unreported`
    when EC2 did not mention it."""

    snapshot_id: str
    code: str

    def to_dict(self) -> dict[str, str]:
        return {"SnapshotId": self.snapshot_id, "ReturnCode": self.code}


@dataclass(frozen=True)
class Action:
    """One write to AWS. `image_id` is the image the action is about (for snapshot-only writes, the
    image whose snapshots they are); `resources` the ids a tag write goes to."""

    kind: Kind
    region: str
    image_id: str = ""
    resources: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    keys: tuple[str, ...] = ()
    at: datetime | None = None
    copy: CopyRequest | None = None
    snapshot_id: str = ""
    # Why the planner asks for it, for the report ("expired at ...", "P:retention changed").
    why: str = ""
    # TAG: how many of `resources` are snapshots (the report says "+2 snapshots").
    snapshots: int = 0
    # USAGE REPORT: the client token, deterministic per image and day.
    token: str = ""
    # RETIRE: what EC2 is expected to do with each snapshot (what a dry run reports).
    expect: tuple[SnapshotResult, ...] = ()
    # ENABLE: the launch permissions to give back (DisableImage removed them).
    permissions: LaunchPermissions | None = None

    @property
    def tag_map(self) -> dict[str, str]:
        return dict(self.tags)


DELETED_CODES = frozenset({"success", "would-delete"})
# Codes that are not a problem: the snapshot is still used by another image, or was not reported.
HARMLESS_CODES = frozenset({"skipped", "would-skip", "unreported", *DELETED_CODES})


@dataclass(frozen=True)
class Outcome:
    action: Action
    status: Status
    error: str = ""  # `Code: message` when FAILED
    code: str = ""  # the AWS error code when FAILED (TagLimitExceeded, InvalidSnapshot.InUse, ...)
    snapshots: tuple[SnapshotResult, ...] = ()  # RETIRE
    report_id: str = ""  # REQUEST_USAGE_REPORT

    @property
    def happened(self) -> bool:
        """Done, or (dry run) would be done."""
        return self.status in (Status.DONE, Status.PLANNED)

    @property
    def snapshots_deleted(self) -> int:
        return sum(1 for s in self.snapshots if s.code in DELETED_CODES)

    @property
    def snapshot_errors(self) -> tuple[SnapshotResult, ...]:
        return tuple(s for s in self.snapshots if s.code not in HARMLESS_CODES)

    def to_dict(self) -> dict[str, Any]:
        """The outcome as report data (what the CLI and the demo render; never parsed back from text)."""
        a = self.action
        data: dict[str, Any] = {"kind": str(a.kind), "status": str(self.status)}
        if a.tags:
            data["tags"] = dict(a.tags)
        if a.keys:
            data["removed"] = list(a.keys)
        if a.kind in (Kind.TAG, Kind.UNTAG):
            data["on_image"] = a.image_id in a.resources
            if a.snapshots:
                data["snapshots"] = a.snapshots
        if a.at is not None:
            data["at"] = format_instant(a.at)
        if a.copy is not None:
            data["target_region"] = a.copy.target_region
        if a.snapshot_id:
            data["snapshot_id"] = a.snapshot_id
        if self.report_id:
            data["report_id"] = self.report_id
        if self.error:
            data["error"] = self.error
        return data

    def describe(self) -> str:
        """One line for humans: `tagged image: k=v (+2 snapshots)`, `would request a copy to us-west-2`."""
        a, dry = self.action, self.status is Status.PLANNED
        if self.status is Status.FAILED:
            return f"{a.kind} failed: {self.error}"
        if self.status is Status.GONE:
            return f"{a.kind}: the {'snapshot' if a.kind is Kind.DELETE_SNAPSHOT else 'image'} no longer exists"
        if self.status is Status.SKIPPED:
            return f"{a.kind}: skipped"
        if a.kind in (Kind.TAG, Kind.UNTAG):
            parts = [f"{k}={v}" for k, v in a.tags] + [f"-{k}" for k in a.keys]
            on_image = a.image_id in a.resources
            if a.why and on_image:
                return f"{'would rewrite' if dry else 'rewrote'} {a.why}: {', '.join(parts)}"
            text = (
                f"{'would tag' if dry else 'tagged'} image: {', '.join(parts)}"
                if on_image
                else f"{'would tag' if dry else 'tagged'} snapshots only"
            )
            if a.snapshots:
                text += f" (+{a.snapshots} snapshot{'s' if a.snapshots > 1 else ''})"
            return text
        if a.kind is Kind.DEPRECATE:
            return f"{'would set' if dry else 'set'} deprecation time to {format_instant(a.at) if a.at else '?'}"
        if a.kind is Kind.UNDEPRECATE:
            return f"{'would remove' if dry else 'removed'} the deprecation time (retention forever)"
        if a.kind is Kind.REPORT_ERROR:
            return f"{'would record' if dry else 'recorded'} the refusal in P:error"
        if a.kind is Kind.REQUEST_COPY:
            target = a.copy.target_region if a.copy else "?"
            return f"{'would request' if dry else 'requested'} a copy to {target}"
        if a.kind is Kind.REQUEST_USAGE_REPORT:
            return f"{'would request' if dry else 'requested'} an AMI usage report {self.report_id}".rstrip()
        if a.kind is Kind.DISABLE:
            until = f" (grace until {format_instant(a.at)})" if a.at else ""
            return f"{'would disable' if dry else 'disabled'}{until}"
        if a.kind is Kind.ENABLE:
            shared = " and shared again" if a.permissions and a.permissions.consumers() else ""
            return f"{'would re-enable' if dry else 're-enabled'}{shared} ({a.why})" if a.why else "re-enabled"
        if a.kind is Kind.RETIRE:
            return (
                f"{'would retire' if dry else 'retired'} ({a.why})" if a.why else ("would retire" if dry else "retired")
            )
        return f"{'would delete' if dry else 'deleted'} snapshot {a.snapshot_id}"


@dataclass
class Plan:
    """The actions of one (account, region) pair, in the order they run."""

    region: str
    actions: list[Action] = field(default_factory=list)

    def add(self, *actions: Action) -> None:
        self.actions.extend(actions)

    def of_kind(self, *kinds: Kind) -> list[Action]:
        return [a for a in self.actions if a.kind in kinds]


def copy_actions(region: str, image_id: str, requests: Iterable[CopyRequest]) -> list[Action]:
    """One REQUEST_COPY action per copy request of one image (sent together in one batch)."""
    return [Action(Kind.REQUEST_COPY, region, image_id, copy=r) for r in requests]
