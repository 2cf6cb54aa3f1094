"""What a run frees (domain/cost.py): snapshot sizes from FullSnapshotSizeInBytes, else VolumeSize,
and the monthly saving at the region's standard snapshot price."""

from __future__ import annotations

import math
import re

from ami_lifecycle.domain.cost import (
    DEFAULT_USD_PER_GB_MONTH,
    GIB,
    NOTHING,
    SNAPSHOT_PRICES_AS_OF,
    SNAPSHOT_PRICES_SOURCE,
    SNAPSHOT_USD_PER_GB_MONTH,
    Freed,
    freed,
    snapshot_price,
)
from ami_lifecycle.domain.tags import is_region_name
from hypothesis import given
from hypothesis import strategies as st

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
    nothing = {"snapshot_gib_freed": 0, "snapshot_usd_per_month_freed": 0}
    assert freed([], SNAPSHOTS).to_notes() == nothing
    assert freed(["snap-gone"], SNAPSHOTS, region="sa-east-1").to_notes() == nothing


def test_notes_keep_their_keys_and_add_the_monthly_saving() -> None:
    # Given 15 GiB freed in us-east-1 (USD 0.05 per GB-month) and in São Paulo (USD 0.068)
    east = freed(["snap-old"], SNAPSHOTS, region="us-east-1")
    brazil = freed(["snap-old"], SNAPSHOTS, region="sa-east-1")
    # Then the notes are those of before, plus the saving
    assert east.to_notes() == {
        "snapshot_gib_freed": 15,
        "snapshot_size_basis": "VolumeSize",
        "snapshot_usd_per_month_freed": 0.75,
    }
    assert brazil.usd_per_month == 1.02


def test_a_region_without_a_price_and_no_region_cost_the_default() -> None:
    assert snapshot_price("us-east-1") == 0.05 and snapshot_price("eu-north-1") == 0.0475
    for region in ("il-central-1", "mars-north-1", "", None):
        assert snapshot_price(region) == DEFAULT_USD_PER_GB_MONTH == 0.05
    assert freed(["snap-full"], SNAPSHOTS).usd_per_month == 0.075  # signature of before: default price


def test_the_price_table_is_documented_and_sane() -> None:
    assert SNAPSHOT_PRICES_SOURCE.startswith("https://aws.amazon.com/ebs/pricing/")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", SNAPSHOT_PRICES_AS_OF)
    assert SNAPSHOT_USD_PER_GB_MONTH["us-east-1"] == DEFAULT_USD_PER_GB_MONTH
    for region, price in SNAPSHOT_USD_PER_GB_MONTH.items():
        assert is_region_name(region), region
        assert 0.04 <= price <= 0.1, (region, price)


def test_figures_add_up_over_regions() -> None:
    east = freed(["snap-old"], SNAPSHOTS, region="us-east-1")
    brazil = freed(["snap-full"], SNAPSHOTS, region="sa-east-1")
    both = Freed.total([east, brazil, NOTHING])
    assert (both.gib, both.basis, both.usd_per_month) == (16.5, "mixed", 0.852)
    assert Freed.total([]) == NOTHING and NOTHING + east == east == east + NOTHING


# ---------------------------------------------------------------- properties

REGIONS = st.sampled_from([*SNAPSHOT_USD_PER_GB_MONTH, "il-central-1"])
SNAPSHOT = st.fixed_dictionaries(
    {"VolumeSize": st.integers(-5, 16384)},
    optional={
        "FullSnapshotSizeInBytes": st.one_of(
            st.integers(-1, 16384 * GIB), st.none(), st.text(max_size=3), st.booleans(), st.floats()
        )
    },
)
FLEETS = st.dictionaries(st.from_regex(r"snap-[0-9a-f]{4}", fullmatch=True), SNAPSHOT, max_size=30)


@given(FLEETS, st.data(), REGIONS)
def test_freed_is_never_negative_and_costs_gib_times_the_price(
    snapshots: dict[str, dict[str, object]], data: st.DataObject, region: str
) -> None:
    ids = data.draw(st.lists(st.sampled_from(sorted(snapshots)) if snapshots else st.just("snap-none")))
    result = freed(ids, snapshots, region=region)
    assert result.gib >= 0 and result.usd_per_month >= 0
    assert math.isclose(result.usd_per_month, result.gib * snapshot_price(region), abs_tol=0.01)
    assert (result.basis == "") == (not set(ids) & set(snapshots))


@given(FLEETS, st.data(), REGIONS)
def test_freed_is_additive_over_disjoint_sets_of_snapshots(
    snapshots: dict[str, dict[str, object]], data: st.DataObject, region: str
) -> None:
    ids = sorted(snapshots)
    cut = data.draw(st.integers(0, len(ids)))
    first, second = freed(ids[:cut], snapshots, region=region), freed(ids[cut:], snapshots, region=region)
    whole = freed(ids, snapshots, region=region)
    assert math.isclose((first + second).gib, whole.gib, abs_tol=0.02)
    assert math.isclose((first + second).usd_per_month, whole.usd_per_month, abs_tol=0.001)
    assert (first + second).basis == whole.basis
