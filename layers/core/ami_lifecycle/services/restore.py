"""Undo a retirement that can still be undone (PRODUCT.md section 10, `ami-lifecycle restore`).

- An image that is `disabled` (DisableBeforeDeregister, or by hand): held, then EnableImage, its
  launch permissions given back (those the tool recorded in `P:launch-permissions` when it
  disabled it), `P:disabled-at` and `P:launch-permissions` removed.
- An image in the Recycle Bin (deregistered while a retention rule covered it): held, then its
  snapshots restored (those the bin names after it first, then those its BlockDeviceMappings name
  once it is back), then RestoreImageFromRecycleBin; an image that comes back disabled is then
  re-enabled as above.
- Anything else is refused, nothing changed: an available image ("nothing to restore"), an image
  of another owner, an unknown one ("not found, not in the Recycle Bin of <region>").

The restored image and its snapshots get `P:hold` = `true`, written *first* where it can be: if a
later step fails, the image is already held, so no sweep retires it (and a sweep re-enables a held
image the tool disabled). The reason of the hold is in the result only (it is no tag of the
contract). A rerun finishes a restore that stopped part way: an available image whose snapshots
are still in the bin, or that still carries `P:disabled-at`, is finished, not refused.

An AWS error (throttling past the retries, AccessDenied, ...) stops at the step that failed: the
result is `failed`, says what was done before and what was not, and is never reported as restored.

Calls: DescribeImages, ListImagesInRecycleBin, ListSnapshotsInRecycleBin, RestoreSnapshotFromRecycleBin,
RestoreImageFromRecycleBin, DescribeSnapshots, CreateTags, EnableImage, ModifyImageAttribute, DeleteTags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..aws.ec2 import Ec2
from ..aws.errors import describe_error, error_code, is_throttle
from ..aws.recycle_bin import RecycleBin
from ..domain.ids import image_ids_in, is_image_id
from ..domain.model import Image
from ..domain.staging import parse_permissions
from ..domain.tags import format_instant
from ..runtime import Deps
from ..runtime.observability import count, logger

DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthFailure", "OptInRequired"}
)


class Status(StrEnum):
    RESTORED = "restored"  # the image is launchable again and held
    REFUSED = "refused"  # nothing could be restored: nothing was changed
    FAILED = "failed"  # AWS refused a step, or a snapshot is gone: see `done` and `error`


class Source(StrEnum):
    DISABLED = "disabled"
    RECYCLE_BIN = "recycle-bin"
    RESUMED = "resumed"  # a restore that stopped part way, finished
    NONE = ""


@dataclass
class Restore:
    """What `restore` did to one image."""

    image_id: str
    region: str
    account_id: str | None
    status: Status = Status.REFUSED
    source: Source = Source.NONE
    message: str = ""
    # Why the image is held (in the report only: `P:hold` carries no reason).
    hold_reason: str = ""
    snapshots: list[str] = field(default_factory=list)  # the image's snapshots
    snapshots_restored: list[str] = field(default_factory=list)  # from the Recycle Bin
    snapshots_missing: list[str] = field(default_factory=list)  # neither there nor in the bin
    done: list[str] = field(default_factory=list)  # the steps carried out, in order
    held: bool = False  # P:hold=true was written on the image
    error: str = ""  # `Code: message` of the AWS error that stopped it
    error_code: str = ""
    # When the Recycle Bin would have deleted the image for good (a restore from the bin).
    recycle_bin_exit_time: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is Status.RESTORED

    @property
    def changed(self) -> bool:
        return bool(self.done)

    @property
    def denied(self) -> bool:
        """AWS refused the credentials or a permission (the CLI's exit code 3)."""
        return self.error_code in DENIED_CODES

    def line(self) -> str:
        """One human-readable line."""
        where = f"{self.image_id} ({self.region})"
        if self.status is Status.RESTORED:
            return f"restored {where}: {self.message}"
        if self.status is Status.REFUSED:
            return f"not restored {where}: {self.message}"
        return f"restore of {where} FAILED: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "restore",
            "image_id": self.image_id,
            "region": self.region,
            "account_id": self.account_id,
            "status": str(self.status),
            "source": str(self.source),
            "message": self.message,
            "held": self.held,
            "hold_reason": self.hold_reason,
            "snapshots": list(self.snapshots),
            "snapshots_restored": list(self.snapshots_restored),
            "snapshots_missing": list(self.snapshots_missing),
            "recycle_bin_exit_time": self.recycle_bin_exit_time,
            "done": list(self.done),
            "error": self.error,
            "error_code": self.error_code,
        }


class _Stop(Exception):
    """A step failed: the result says which, and what was done before it."""


class _Restorer:
    def __init__(self, deps: Deps, image_id: str, region: str, reason: str | None) -> None:
        self.deps = deps
        self.keys = deps.settings.keys
        client = deps.aws.ec2(region)
        self.ec2 = Ec2(client, region)
        self.bin = RecycleBin(client, region)
        self.result = Restore(image_id, region, deps.account_id)
        self.reason = reason

    # ------------------------------------------------------------ steps

    def call(self, what: str, action: str, fn: Any, *args: Any) -> Any:
        """One AWS call; on an error, stop with a message naming the step (`action`: the API)."""
        try:
            value = fn(*args)
        except (ClientError, BotoCoreError) as e:
            r = self.result
            r.status, r.error, r.error_code = Status.FAILED, describe_error(e), error_code(e)
            if is_throttle(e):
                why = f"AWS throttled {action} past the retries ({r.error}): try again in a minute"
            elif r.error_code in DENIED_CODES:
                why = f"not allowed to call {action} ({r.error}): the caller needs ec2:{action}"
            else:
                why = f"{action} failed: {r.error}"
            r.message = f"{why}; {self._so_far()}"
            raise _Stop from e
        if what:
            self.result.done.append(what)
        return value

    def _so_far(self) -> str:
        r = self.result
        if not r.done:
            return "nothing was changed"
        tail = (
            "the image is held, so no sweep retires it; run the command again to finish"
            if r.held
            else "run the command again to finish"
        )
        return f"done before the failure: {'; '.join(r.done)}; {tail}"

    def refuse(self, message: str) -> Restore:
        self.result.status, self.result.message = Status.REFUSED, message
        logger.info("restore refused", image_id=self.result.image_id, region=self.result.region, reason=message)
        return self.result

    # ------------------------------------------------------------ the flow

    def run(self) -> Restore:
        r = self.result
        if not is_image_id(r.image_id):
            return self.refuse(f"{r.image_id[:40]!r} is not an AMI id")
        if r.region not in self.deps.known_regions:
            return self.refuse(f"{r.region[:40]!r} is not an AWS region")
        try:
            image = self.call("", "DescribeImages", self.ec2.describe_image, r.image_id)
            if image is not None:
                return self._existing(image)
            return self._from_recycle_bin()
        except _Stop:
            logger.warning("restore failed", image_id=r.image_id, region=r.region, error=r.error, done=r.done)
            count("RestoreFailures")
            return r

    def _existing(self, image: Image) -> Restore:
        r = self.result
        owner = self.deps.account_id
        if owner and image.owner_id and image.owner_id != owner:
            return self.refuse(f"owned by account {image.owner_id}, not {owner}: only its owner can restore it")
        r.snapshots = list(image.snapshot_ids)
        if image.state == "disabled":
            since = image.tags.get(self.keys.disabled_at)
            r.source = Source.DISABLED
            self.hold_reason(f"re-enabled (disabled{f' since {since}' if since else ''})")
            return self._finish(image)
        if image.state != "available":
            return self.refuse(f"it is {image.state}: nothing to restore")
        binned = self.call("", "ListSnapshotsInRecycleBin", self.bin.snapshots, r.snapshots)
        if binned or self.keys.disabled_at in image.tags:
            r.source = Source.RESUMED
            self.hold_reason("restore finished (an earlier one stopped part way)")
            return self._finish(image)
        held = image.tags.get(self.keys.hold) == "true"
        return self.refuse(
            f"nothing to restore: it is available{' and held' if held else ''}"
            + ("" if held else f" (tag {self.keys.hold}=true to keep it from the sweeps)")
        )

    def _from_recycle_bin(self) -> Restore:
        r = self.result
        binned = self.call("", "ListImagesInRecycleBin", self.bin.image, r.image_id)
        if binned is None:
            return self.refuse(f"not found, not in the Recycle Bin of {r.region}")
        r.source = Source.RECYCLE_BIN
        exit_time = binned.get("RecycleBinExitTime")
        r.recycle_bin_exit_time = format_instant(exit_time) if exit_time is not None else None
        self.hold_reason(
            "restored from the Recycle Bin"
            + (f" (it would have been deleted for good at {r.recycle_bin_exit_time})" if exit_time else "")
        )
        hold = {self.keys.hold: "true"}
        self.call("held the image in the bin", "CreateTags", self.ec2.create_tags, [r.image_id], hold)
        r.held = True
        # Snapshots the bin names after the image (CreateImage's and CopyImage's descriptions do)
        # first: EC2 asks for an image's snapshots to be restored before the image.
        in_bin = self.call("", "ListSnapshotsInRecycleBin", self.bin.snapshots, None)
        for snapshot in in_bin:
            if r.image_id in image_ids_in(str(snapshot.get("Description") or "")):
                self._restore_snapshot(str(snapshot["SnapshotId"]))
        self.call(
            "restored the image from the Recycle Bin", "RestoreImageFromRecycleBin", self.bin.restore_image, r.image_id
        )
        image = self.call("", "DescribeImages", self.ec2.describe_image, r.image_id)
        if image is None:
            r.status = Status.FAILED
            r.message = f"RestoreImageFromRecycleBin succeeded but the image is not listed yet; {self._so_far()}"
            raise _Stop
        r.snapshots = list(image.snapshot_ids)
        return self._finish(image)

    def _restore_snapshot(self, snapshot_id: str) -> None:
        self.call(
            f"restored snapshot {snapshot_id}",
            "RestoreSnapshotFromRecycleBin",
            self.bin.restore_snapshot,
            snapshot_id,
        )
        self.result.snapshots_restored.append(snapshot_id)

    def _finish(self, image: Image) -> Restore:
        """Snapshots still in the bin restored, image and snapshots held, the image enabled with
        its sharing given back, the tool's disable marks removed."""
        r, keys = self.result, self.keys
        for snapshot in self.call("", "ListSnapshotsInRecycleBin", self.bin.snapshots, r.snapshots):
            if snapshot["SnapshotId"] not in r.snapshots_restored:
                self._restore_snapshot(str(snapshot["SnapshotId"]))
        present = self._present(r.snapshots)
        r.snapshots_missing = [s for s in r.snapshots if s not in present]
        hold = {keys.hold: "true"}
        resources = [r.image_id, *[s for s in r.snapshots if s in present]]
        self.call(
            f"held {', '.join(resources)} ({keys.hold}=true)", "CreateTags", self.ec2.create_tags, resources, hold
        )
        r.held = True
        if image.state == "disabled":
            self.call("enabled the image", "EnableImage", self.ec2.enable_image, r.image_id)
        recorded = image.tags.get(keys.launch_permissions)
        if recorded:  # (adding a permission the image already has changes nothing: a rerun may)
            permissions = parse_permissions(recorded)
            self.call(
                f"gave back its launch permissions ({recorded})",
                "ModifyImageAttribute",
                self.ec2.add_launch_permissions,
                r.image_id,
                permissions,
            )
        marks = [k for k in (keys.disabled_at, keys.launch_permissions) if k in image.tags]
        if marks:
            self.call(f"removed {', '.join(marks)}", "DeleteTags", self.ec2.delete_tags, resources, marks)
        if r.snapshots_missing:
            r.status = Status.FAILED
            r.message = (
                f"the image is back and held, but its snapshot(s) {', '.join(r.snapshots_missing)} are gone "
                f"(not in the Recycle Bin of {r.region}): it cannot launch"
            )
            count("RestoreFailures")
            return r
        r.status = Status.RESTORED
        how = {
            Source.DISABLED: "re-enabled",
            Source.RECYCLE_BIN: "restored from the Recycle Bin",
            Source.RESUMED: "restore finished",
            Source.NONE: "",
        }[r.source]
        restored = f", {len(r.snapshots_restored)} snapshot(s) restored" if r.snapshots_restored else ""
        r.message = f"{how}{restored}; held with {keys.hold}=true ({r.hold_reason})"
        logger.info("image restored", image_id=r.image_id, region=r.region, source=str(r.source), done=r.done)
        count("ImagesRestored")
        return r

    def _present(self, snapshot_ids: list[str]) -> set[str]:
        """Which of these snapshots exist (DescribeSnapshots answers NotFound for the whole call when
        one is missing: then they are asked one by one)."""
        found = {s["SnapshotId"] for s in self.call("", "DescribeSnapshots", self.ec2.snapshots, snapshot_ids)}
        if len(found) == len(set(snapshot_ids)):
            return found
        return {
            s["SnapshotId"]
            for sid in snapshot_ids
            for s in self.call("", "DescribeSnapshots", self.ec2.snapshots, [sid])
        }

    def hold_reason(self, how: str) -> None:
        now = format_instant(self.deps.clock())
        given = f": {self.reason}" if self.reason else ""
        self.result.hold_reason = f"held by ami-lifecycle restore at {now}, {how}{given}"


def restore(deps: Deps, image_id: str, region: str, *, reason: str | None = None) -> Restore:
    """Re-enable a disabled image, or restore a deregistered one and its snapshots from the Recycle
    Bin, in `deps`' account and `region`; hold it. `reason`: the operator's words, added to the
    hold's reason in the result. Never raises for AWS errors: the result says what happened."""
    return _Restorer(deps, image_id, region, reason).run()
