"""What a run frees: the size of the snapshots it deletes (or, in a dry run, would delete), and what
keeping them cost per month.

EBS snapshots are incremental and EC2 reports, per snapshot, the bytes of the blocks written
(`FullSnapshotSizeInBytes`); where it does not, the provisioned `VolumeSize` (GiB) is the upper
bound used. The figure says which it is. The monthly saving is those GiB times the region's
standard snapshot storage price (`SNAPSHOT_USD_PER_GB_MONTH`, `DEFAULT_USD_PER_GB_MONTH` where the
table has no price). It is an estimate: an incremental snapshot may share blocks with others of the
same volume, which stay billed. Pure: the snapshots are given as DescribeSnapshots returns them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

GIB = 2**30

# Standard-tier EBS snapshot storage, USD per GB-month, by region: the "Snapshots" table (Standard)
# of the Amazon EBS pricing page, https://aws.amazon.com/ebs/pricing/ , as of 2026-12-02
# (`SNAPSHOT_PRICES_AS_OF`). AWS bills snapshot storage per GB-month of 2**30 bytes, so the price
# applies to GiB as reported. Prices change rarely; update the table and the date together. A region
# missing here (newer regions, and China's, billed in CNY) uses DEFAULT_USD_PER_GB_MONTH.
SNAPSHOT_PRICES_SOURCE = "https://aws.amazon.com/ebs/pricing/ (Snapshots, Standard tier)"
SNAPSHOT_PRICES_AS_OF = "2026-12-02"
DEFAULT_USD_PER_GB_MONTH = 0.05
SNAPSHOT_USD_PER_GB_MONTH: Mapping[str, float] = MappingProxyType(
    {
        "us-east-1": 0.05,  # N. Virginia
        "us-east-2": 0.05,  # Ohio
        "us-west-1": 0.055,  # N. California
        "us-west-2": 0.05,  # Oregon
        "ca-central-1": 0.055,  # Canada (Central)
        "sa-east-1": 0.068,  # São Paulo
        "eu-west-1": 0.05,  # Ireland
        "eu-west-2": 0.053,  # London
        "eu-west-3": 0.053,  # Paris
        "eu-central-1": 0.054,  # Frankfurt
        "eu-north-1": 0.0475,  # Stockholm
        "ap-east-1": 0.055,  # Hong Kong
        "ap-south-1": 0.05,  # Mumbai
        "ap-northeast-1": 0.05,  # Tokyo
        "ap-northeast-2": 0.05,  # Seoul
        "ap-northeast-3": 0.05,  # Osaka
        "ap-southeast-1": 0.05,  # Singapore
        "ap-southeast-2": 0.055,  # Sydney
        "me-south-1": 0.055,  # Bahrain
        "us-gov-east-1": 0.066,  # GovCloud (US-East)
        "us-gov-west-1": 0.066,  # GovCloud (US-West)
    }
)
# Figures in a report: GiB to 2 decimals, USD to 4 (a hundredth of a cent).
GIB_DIGITS = 2
USD_DIGITS = 4


def snapshot_price(region: str | None) -> float:
    """USD per GB-month of standard snapshot storage in `region` (the default where unknown)."""
    return SNAPSHOT_USD_PER_GB_MONTH.get(region or "", DEFAULT_USD_PER_GB_MONTH)


def _combined_basis(a: str, b: str) -> str:
    if not a or a == b:
        return b
    return a if not b else "mixed"


@dataclass(frozen=True)
class Freed:
    gib: float
    # "FullSnapshotSizeInBytes", "VolumeSize" (an upper bound) or "mixed"; "" when nothing is freed.
    basis: str
    # The estimated monthly saving: gib x the region's snapshot price (domain/cost.py's table).
    usd_per_month: float = 0.0

    def to_notes(self) -> dict[str, Any]:
        """A report's notes: `snapshot_gib_freed`, `snapshot_size_basis` (when something is freed) and
        `snapshot_usd_per_month_freed`."""
        notes: dict[str, Any] = (
            {"snapshot_gib_freed": self.gib, "snapshot_size_basis": self.basis}
            if self.basis
            else {"snapshot_gib_freed": 0}
        )
        notes["snapshot_usd_per_month_freed"] = self.usd_per_month if self.basis else 0
        return notes

    def __add__(self, other: Freed) -> Freed:
        """Two figures together (regions or pairs of a run: each priced in its own region)."""
        return Freed(
            round(self.gib + other.gib, GIB_DIGITS),
            _combined_basis(self.basis, other.basis),
            round(self.usd_per_month + other.usd_per_month, USD_DIGITS),
        )

    @classmethod
    def total(cls, parts: Iterable[Freed]) -> Freed:
        out = NOTHING
        for part in parts:
            out = out + part
        return out


NOTHING = Freed(0.0, "", 0.0)


def freed(
    snapshot_ids: Iterable[str], snapshots: Mapping[str, Mapping[str, Any]], *, region: str | None = None
) -> Freed:
    """The GiB of these snapshots (unknown ids count nothing) and what they cost per month in
    `region` (None: at the default price)."""
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
            total += max(0, _int(snapshot.get("VolumeSize")))
            bases.add("VolumeSize")
    basis = "" if not bases else (bases.pop() if len(bases) == 1 else "mixed")
    return Freed(round(total, GIB_DIGITS), basis, round(total * snapshot_price(region), USD_DIGITS))


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
