"""The digest of one run (PRODUCT.md section 10 and issue 14): one message per sweep to the
digest topic users subscribe to (email, chat), saying what was retired, disabled or re-enabled,
what was kept because its use could not be checked or because it is shared and used, whether
the blast-radius cap stopped the run, the snapshot storage freed, and the errors; and nothing at
all when nothing happened and nothing was blocked. Pure: composed from the report's data
(`Report.to_dict()`), however many accounts and regions it covers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .report import pairs_of

# Kept for a reason a reader of the digest wants to know about (the rest is routine).
NOTABLE_KEPT = ("shared-in-use", "shared-unverified", "unverified", "recently-launched")
MAX_LINES = 200  # SNS takes 256 KB; an email of more lines is not read


@dataclass(frozen=True)
class Digest:
    subject: str  # at most 100 characters (SNS)
    message: str


def compose(report: Mapping[str, Any], stack: str = "ami-lifecycle") -> Digest | None:
    """The digest of a sweep report, or None when there is nothing to say."""
    totals = report.get("totals") or {}
    kept = totals.get("kept") or {}
    blast = report.get("blast_radius")
    pairs = pairs_of(dict(report))
    failed = [(a, r, p.get("error", "")) for a, r, p in pairs if p.get("status") == "failed"]
    notable = {k: kept[k] for k in NOTABLE_KEPT if kept.get(k)}
    happened = any(totals.get(k) for k in ("retired", "disabled", "enabled", "errors")) or notable or blast or failed
    if not happened:
        return None
    dry = bool(report.get("dry_run"))
    verb = "would retire" if dry else "retired"
    gib = sum(float((p.get("notes") or {}).get("snapshot_gib_freed", 0) or 0) for _, _, p in pairs)
    usd = sum(float((p.get("notes") or {}).get("snapshot_usd_per_month_freed", 0) or 0) for _, _, p in pairs)
    head = [
        f"{stack}: {verb} {totals.get('retired', 0)} images, deleted {totals.get('snapshots_deleted', 0)} snapshots"
        + (" (dry run: nothing changed)" if dry else ""),
    ]
    if totals.get("disabled") or totals.get("enabled"):
        head.append(
            f"disabled first (grace period started): {totals.get('disabled', 0)}; "
            f"re-enabled (no longer retirable): {totals.get('enabled', 0)}"
        )
    if gib:
        head.append(f"snapshot storage freed: {round(gib, 2)} GiB, about {round(usd, 2)} USD per month")
    if blast:
        head.append(
            f"BLAST RADIUS: {blast.get('would_retire')} images were due, more than the limit of "
            f"{blast.get('limit')} (MaxRetirementsPerRun): none retired"
        )
    if notable:
        head.append("kept, worth a look: " + ", ".join(f"{k} {n}" for k, n in notable.items()))
    if totals.get("errors"):
        head.append(f"errors: {totals['errors']}")
    lines = [*head, ""]
    for account, region, error in failed:
        lines.append(f"FAILED {account} {region}: {error}")
    for account, region, p in pairs:
        for e in p.get("images") or []:
            outcome, reason = e.get("outcome", ""), e.get("reason", "")
            if (
                outcome in ("retired", "would retire", "disabled", "would disable")
                or reason in NOTABLE_KEPT
                or e.get("errors")
            ):
                detail = "; ".join(e.get("errors") or []) or e.get("detail", "")
                what = f"{outcome or reason} ({reason}) {detail}".rstrip()
                lines.append(f"{account} {region} {e.get('image_id')} {e.get('name', '')}: {what}")
    if len(lines) > MAX_LINES:
        lines = [*lines[:MAX_LINES], f"... and {len(lines) - MAX_LINES} more lines (the sweep's report has them all)"]
    status = "BLOCKED" if blast else ("errors" if totals.get("errors") or failed else ("dry run" if dry else "done"))
    subject = f"{stack} sweep {status}: {totals.get('retired', 0)} {verb}, {totals.get('errors', 0)} errors"
    return Digest(subject[:100], "\n".join(lines))
