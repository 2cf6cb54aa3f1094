"""The JSON report a sweep or a backfill returns (PRODUCT.md section 4).

Per region: each image considered, with its decision and the reason, plus region totals; and
totals over all regions: tagged, copies requested, retired, kept by reason, errors, snapshots
deleted. Plain dataclasses; `to_dict()` gives JSON-serializable data, empty fields left out.

Shape of `Report.to_dict()`::

    {"kind": "sweep", "dry_run": false, "started_at": "...Z", "finished_at": "...Z",
     "status": "complete" | "incomplete" | "partial",
     "totals": {"considered": 12, "tagged": 0, "copies_requested": 0, "retired": 3,
                "kept": {"not-expired": 5, "in-use": 2, ...}, "errors": 0,
                "snapshots_deleted": 3, "deprecations_set": 1},
     "regions": {"us-east-1": {"region": "us-east-1", "status": "complete" | "incomplete" | "failed",
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
                               "images_omitted": 0}},
     "continuation": {"remaining_regions": [...], "next": 1, "requested": true, "capped": false}}

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


COUNTERS = ("considered", "tagged", "copies_requested", "retired", "errors", "snapshots_deleted", "deprecations_set")


@dataclass
class Totals:
    considered: int = 0
    tagged: int = 0
    copies_requested: int = 0
    retired: int = 0
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
    region: str
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
    regions: dict[str, RegionReport] = field(default_factory=dict)
    continuation: dict[str, Any] | None = None
    # MaxRetirementsPerRun stopped the run: {"would_retire": n, "limit": cap}; nothing was retired.
    blast_radius: dict[str, int] | None = None

    def region(self, name: str) -> RegionReport:
        if name not in self.regions:
            self.regions[name] = RegionReport(name)
        return self.regions[name]

    @property
    def totals(self) -> Totals:
        total = Totals()
        for region in self.regions.values():
            total.add(region.totals)
        return total

    @property
    def status(self) -> str:
        """complete: every region done; incomplete: some left for a follow-up; partial: some failed."""
        statuses = {r.status for r in self.regions.values()}
        if "incomplete" in statuses or (self.continuation or {}).get("remaining_regions"):
            return "incomplete"
        return "partial" if "failed" in statuses else "complete"

    def summary(self) -> dict[str, Any]:
        """Everything but the per-image lists: small enough for one log line."""
        return {
            "kind": self.kind,
            "dry_run": self.dry_run,
            "status": self.status,
            "totals": self.totals.to_dict(),
            "regions": {
                name: _compact({"status": r.status, "error": r.error, "totals": r.totals.to_dict(), "notes": r.notes})
                for name, r in self.regions.items()
            },
            "continuation": self.continuation,
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
            "regions": {name: r.to_dict(max_images_per_region) for name, r in self.regions.items()},
            "continuation": self.continuation,
            **({"blast_radius": self.blast_radius} if self.blast_radius else {}),
        }
