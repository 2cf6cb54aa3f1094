"""What a run frees: the size of the snapshots it deletes (or, in a dry run, would delete).

EBS snapshots are incremental and EC2 reports, per snapshot, the bytes of the blocks written
(`FullSnapshotSizeInBytes`); where it does not, the provisioned `VolumeSize` (GiB) is the upper
bound used. The figure says which it is. Pure: the snapshots are given as DescribeSnapshots
returns them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GIB = 2**30


@dataclass(frozen=True)
class Freed:
    gib: float
    # "FullSnapshotSizeInBytes", "VolumeSize" (an upper bound) or "mixed"; "" when nothing is freed.
    basis: str

    def to_notes(self) -> dict[str, Any]:
        return (
            {"snapshot_gib_freed": self.gib, "snapshot_size_basis": self.basis}
            if self.basis
            else {"snapshot_gib_freed": 0}
        )


def freed(snapshot_ids: Iterable[str], snapshots: Mapping[str, Mapping[str, Any]]) -> Freed:
    """The GiB of these snapshots (unknown ids count nothing)."""
    total = 0.0
    bases: set[str] = set()
    for sid in set(snapshot_ids):
        snapshot = snapshots.get(sid)
        if snapshot is None:
            continue
        full = snapshot.get("FullSnapshotSizeInBytes")
        if isinstance(full, int) and not isinstance(full, bool) and full >= 0:
            total += full / GIB
            bases.add("FullSnapshotSizeInBytes")
        else:
            total += int(snapshot.get("VolumeSize") or 0)
            bases.add("VolumeSize")
    basis = "" if not bases else (bases.pop() if len(bases) == 1 else "mixed")
    return Freed(round(total, 2), basis)
