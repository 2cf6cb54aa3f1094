"""What a run frees (domain/cost.py): snapshot sizes from FullSnapshotSizeInBytes, else VolumeSize."""

from __future__ import annotations

from ami_lifecycle.domain.cost import GIB, freed

SNAPSHOTS = {
    "snap-full": {"SnapshotId": "snap-full", "VolumeSize": 100, "FullSnapshotSizeInBytes": 3 * GIB // 2},
    "snap-zero": {"SnapshotId": "snap-zero", "VolumeSize": 8, "FullSnapshotSizeInBytes": 0},
    "snap-old": {"SnapshotId": "snap-old", "VolumeSize": 15},
    "snap-odd": {"SnapshotId": "snap-odd", "VolumeSize": 20, "FullSnapshotSizeInBytes": "lots"},
}


def test_the_bytes_ec2_reports_win_over_the_provisioned_size() -> None:
    # Given snapshots with FullSnapshotSizeInBytes (1.5 GiB of a 100 GiB volume, and an empty one)
    # When they are freed
    result = freed(["snap-full", "snap-zero"], SNAPSHOTS)
    # Then the written bytes count, and the figure says so
    assert (result.gib, result.basis) == (1.5, "FullSnapshotSizeInBytes")


def test_without_the_bytes_the_volume_size_is_the_upper_bound_and_a_mix_says_mixed() -> None:
    assert (freed(["snap-old"], SNAPSHOTS).gib, freed(["snap-old"], SNAPSHOTS).basis) == (15, "VolumeSize")
    # An unreadable byte count is not trusted: the volume size stands in for it.
    assert freed(["snap-odd"], SNAPSHOTS).basis == "VolumeSize"
    mixed = freed(["snap-full", "snap-old", "snap-full"], SNAPSHOTS)  # a repeated id counts once
    assert (mixed.gib, mixed.basis) == (16.5, "mixed")


def test_nothing_freed_and_unknown_snapshots_count_nothing() -> None:
    assert freed([], SNAPSHOTS).to_notes() == {"snapshot_gib_freed": 0}
    assert freed(["snap-gone"], SNAPSHOTS).to_notes() == {"snapshot_gib_freed": 0}
    assert freed(["snap-old"], SNAPSHOTS).to_notes() == {"snapshot_gib_freed": 15, "snapshot_size_basis": "VolumeSize"}
