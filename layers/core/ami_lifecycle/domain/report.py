"""The JSON report a sweep or a backfill returns (PRODUCT.md section 4).

Keyed by account, then region (PRODUCT.md section 7). Per (account, region) pair: each image
considered, with its decision and the reason, plus the pair's totals; per account and over all
pairs: tagged, copies requested, retired, kept by reason, errors, snapshots deleted. Plain
dataclasses; `to_dict()` gives JSON-serializable data, empty fields left out.

Shape of `Report.to_dict()`::

    {"kind": "sweep", "dry_run": false, "started_at": "...Z", "finished_at": "...Z",
     "status": "complete" | "incomplete" | "partial",
     "totals": {"considered": 12, "tagged": 0, "copies_requested": 0, "retired": 3,
                "kept": {"not-expired": 5, "in-use": 2, ...}, "errors": 0,
                "snapshots_deleted": 3, "deprecations_set": 1},
     "accounts": {"111111111111": {"totals": {...}, "regions": {
       "us-east-1": {"account": "111111111111", "region": "us-east-1",
                               "status": "complete" | "incomplete" | "failed",
                               "error": "...", "totals": {...}, "notes": {...},
                               "notes": {"in_use_check": {"way": "image-references", "candidates": 10,
                                                          "sources": {"instances": {"answered": true,
                                                                                    "by": "DescribeImageReferences"},
                                                                      "ssm-parameters": {...}, ...}},
                                         "shared_check": {"mode": "strict", "launch_permissions_read": 10, ...},
                                         "orphan_snapshot_candidates": 0},
                               "images": [{"image_id": "ami-...", "name": "...", "decision": "retire" | "keep",
                                           "reason": "expired" | "hold" | ..., "detail": "human text",
                                           "outcome": "retired" | "would retire" | "kept" | "failed" | "gone",
                                           "reasons": [...every condition that kept it, when several...],
                                           "family": "web", "created": "...Z", "expires_at": "...Z",
                                           "references": ["ec2:Instance arn:..."],
                                           "snapshots": [{"SnapshotId": "snap-...", "ReturnCode": "success"}],
                                           "actions": ["set deprecation time to ...Z"], "errors": [...]}],
                               "snapshots": [{"snapshot_id": "snap-...", "images": "ami-...",
                                              "outcome": "deleted (orphaned)"}],
                               "images_omitted": 0}}}},
     "cursor": {...}}   # present when the run stopped early: invoke again with it

Empty fields are left out of image entries and region reports; `totals` and `images` are always there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .tags import format_instant


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v not in (None, "", [], {})}


@dataclass
class ImageEntry:
    """One image considered: what the rule decided, why, and what was done."""

    image_id: str
    name: str = ""
    decision: str = ""  # what the rule says: "retire", "keep", "tag", "skip", ...
    reason: str = ""  # the reason code ("expired", "hold", "in-use", ...)
    detail: str = ""  # the same, for humans
    outcome: str = ""  # what happened: "retired", "would retire", "kept", "failed", "gone", ...
    reasons: list[str] = field(default_factory=list)  # every condition that kept it
    family: str | None = None
    created: str | None = None
    expires_at: str | None = None
    references: list[str] = field(default_factory=list)
    snapshots: list[dict[str, str]] = field(default_factory=list)
    # What retiring it frees (domain/cost.py; the region's notes say on which basis).
    snapshot_gib_freed: float | None = None
    snapshot_usd_per_month_freed: float | None = None
    # A retired image a Recycle Bin rule keeps (with its snapshots): restorable until then.
    restorable_until: str | None = None
    actions: list[str] = field(default_factory=list)  # e.g. "deprecation set to ...", "tagged", "copy requested"
    # The same, as data (actions.Outcome.to_dict: kind, status, tags, target_region, ...): what the
    # CLI and the demo render.
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    # What was found rather than done ("copy in us-west-2 exists: ami-…", "not copied: expired at …"),
    # also among `actions`: shown as it is.
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _compact(dict(self.__dict__))


COUNTERS = (
    "considered",
    "tagged",
    "copies_requested",
    "retired",
    "disabled",
    "enabled",
    "errors",
    "snapshots_deleted",
    "deprecations_set",
)


@dataclass
class Totals:
    considered: int = 0
    tagged: int = 0
    copies_requested: int = 0
    retired: int = 0
    disabled: int = 0  # DisableBeforeDeregister: disabled first (their grace period started)
    enabled: int = 0  # disabled by the tool, then no longer retirable: re-enabled
    kept: dict[str, int] = field(default_factory=dict)  # by reason code
    errors: int = 0
    snapshots_deleted: int = 0
    deprecations_set: int = 0

    def count_kept(self, reason: str, n: int = 1) -> None:
        reason = str(reason)
        self.kept[reason] = self.kept.get(reason, 0) + n

    def add(self, other: Totals) -> None:
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, n in other.kept.items():
            self.count_kept(reason, n)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["kept"] = dict(sorted(self.kept.items()))
        return d


@dataclass
class RegionReport:
    """One (account, region) pair."""

    region: str
    account: str = ""
    status: str = "complete"  # "complete", "incomplete" (out of time: to be re-run), "failed"
    error: str | None = None
    images: list[ImageEntry] = field(default_factory=list)
    snapshots: list[dict[str, str]] = field(default_factory=list)  # snapshot-level work (orphans)
    notes: dict[str, Any] = field(default_factory=dict)
    totals: Totals = field(default_factory=Totals)

    def add(self, entry: ImageEntry) -> ImageEntry:
        self.images.append(entry)
        self.totals.considered += 1
        return entry

    def fail(self, error: str) -> None:
        self.status, self.error = "failed", error
        self.totals.errors += 1

    def to_dict(self, max_images: int | None = None) -> dict[str, Any]:
        images = self.images
        omitted = 0
        if max_images is not None and len(images) > max_images:
            # Keep what matters most: retirements and errors first, then the kept images.
            ranked = sorted(images, key=lambda e: e.decision != "retire" and not e.errors)
            images, omitted = ranked[:max_images], len(images) - max_images
        d: dict[str, Any] = {
            "account": self.account,
            "region": self.region,
            "status": self.status,
            "error": self.error,
            "totals": self.totals.to_dict(),
            "notes": self.notes,
            "images": [e.to_dict() for e in images],
            "snapshots": self.snapshots,
        }
        if omitted:
            d["images_omitted"] = omitted
        return _compact(d) | {"totals": d["totals"], "images": d["images"]}


@dataclass
class Report:
    kind: str  # "sweep" or "backfill"
    dry_run: bool
    started_at: datetime
    finished_at: datetime | None = None
    # (account, region) -> the pair's report, in the order the pairs were worked on.
    pairs: dict[tuple[str, str], RegionReport] = field(default_factory=dict)
    # Where the next invocation starts when this one stopped early (None: done).
    cursor: dict[str, Any] | None = None
    # MaxRetirementsPerRun stopped the run: {"would_retire": n, "limit": cap}; nothing was retired.
    blast_radius: dict[str, int] | None = None

    def region(self, name: str, account: str) -> RegionReport:
        key = (account, name)
        if key not in self.pairs:
            self.pairs[key] = RegionReport(name, account)
        return self.pairs[key]

    @property
    def regions(self) -> list[RegionReport]:
        return list(self.pairs.values())

    def accounts(self) -> dict[str, dict[str, RegionReport]]:
        out: dict[str, dict[str, RegionReport]] = {}
        for (account, region), r in self.pairs.items():
            out.setdefault(account, {})[region] = r
        return out

    @property
    def totals(self) -> Totals:
        total = Totals()
        for region in self.pairs.values():
            total.add(region.totals)
        return total

    @property
    def status(self) -> str:
        """complete: every pair done; incomplete: some left for the next invocation (`cursor`);
        partial: some failed."""
        statuses = {r.status for r in self.pairs.values()}
        if "incomplete" in statuses or self.cursor:
            return "incomplete"
        return "partial" if "failed" in statuses else "complete"

    def summary(self) -> dict[str, Any]:
        """Everything but the per-image lists: small enough for one log line."""
        return {
            "kind": self.kind,
            "dry_run": self.dry_run,
            "status": self.status,
            "totals": self.totals.to_dict(),
            "accounts": {
                account: {
                    name: _compact(
                        {"status": r.status, "error": r.error, "totals": r.totals.to_dict(), "notes": r.notes}
                    )
                    for name, r in regions.items()
                }
                for account, regions in self.accounts().items()
            },
            "cursor": self.cursor,
            "blast_radius": self.blast_radius,
        }

    def to_dict(self, max_images_per_region: int | None = None) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dry_run": self.dry_run,
            "started_at": format_instant(self.started_at),
            "finished_at": format_instant(self.finished_at) if self.finished_at else None,
            "status": self.status,
            "totals": self.totals.to_dict(),
            "accounts": {
                account: {
                    "totals": _sum(regions.values()).to_dict(),
                    "regions": {name: r.to_dict(max_images_per_region) for name, r in regions.items()},
                }
                for account, regions in self.accounts().items()
            },
            **({"cursor": self.cursor} if self.cursor else {}),
            **({"blast_radius": self.blast_radius} if self.blast_radius else {}),
        }


def _sum(regions: Any) -> Totals:
    total = Totals()
    for r in regions:
        total.add(r.totals)
    return total


def pairs_of(report: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """(account, region, pair report) of a report as `Report.to_dict()` gives it (what the CLI,
    the demo and the state machine's summary read)."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    if not isinstance(report, dict):
        return out
    for account, a in (report.get("accounts") or {}).items():
        for region, r in ((a or {}).get("regions") or {}).items():
            out.append((account, region, r))
    return out
