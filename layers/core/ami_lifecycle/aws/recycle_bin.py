"""EC2's Recycle Bin of one region: which images and snapshots are in it, and restoring them
(ListImagesInRecycleBin, ListSnapshotsInRecycleBin, RestoreImageFromRecycleBin,
RestoreSnapshotFromRecycleBin). The retention rules themselves are `aws/rbin.py`'s.

Each method is one real API (paginated where EC2 pages); no decisions are made here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# ListSnapshotsInRecycleBin pages hold 5..1000 snapshots.
SNAPSHOT_PAGE = 1000


class RecycleBin:
    def __init__(self, client: Any, region: str) -> None:
        self.client = client  # an EC2 client of `region`
        self.region = region

    def image(self, image_id: str) -> dict[str, Any] | None:
        """The image as the bin lists it (ImageId, Name, Description, RecycleBinEnterTime,
        RecycleBinExitTime), or None when it is not in the bin."""
        images = self.client.list_images_in_recycle_bin(ImageIds=[image_id]).get("Images", [])
        return next((dict(i) for i in images if i.get("ImageId") == image_id), None)

    def snapshots(self, snapshot_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The snapshots in the bin (SnapshotId, Description, VolumeId, RecycleBinEnterTime,
        RecycleBinExitTime): these ids only (an empty list asks for none), or all with None."""
        if snapshot_ids is not None and not snapshot_ids:
            return []
        kwargs: dict[str, Any] = {"PaginationConfig": {"PageSize": SNAPSHOT_PAGE}}
        if snapshot_ids:
            kwargs["SnapshotIds"] = list(dict.fromkeys(snapshot_ids))
        out: list[dict[str, Any]] = []
        for page in self.client.get_paginator("list_snapshots_in_recycle_bin").paginate(**kwargs):
            out.extend(dict(s) for s in page.get("Snapshots", []))
        return out

    def restore_image(self, image_id: str) -> None:
        self.client.restore_image_from_recycle_bin(ImageId=image_id)

    def restore_snapshot(self, snapshot_id: str) -> None:
        self.client.restore_snapshot_from_recycle_bin(SnapshotId=snapshot_id)
