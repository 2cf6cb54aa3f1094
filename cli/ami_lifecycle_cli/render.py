"""Rendering the report's data for people: tables, the per-image actions, the totals; and keeping
the functions' logs off stdout while they run.

A leaf module: it imports nothing of the CLI's `main` nor of the local AWS, so the demo
(`ami_lifecycle_localaws.demo`) uses it without an import cycle. Everything here reads the report's
data (an image entry's `outcomes`, `Outcome.to_dict` in ami_lifecycle/domain/actions.py); no text is
parsed back into data.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import IO, Any

from ami_lifecycle.domain.report import pairs_of

# What became of an action (domain/actions.py `Status`): done, or (a dry run) would be done.
HAPPENED = frozenset({"done", "planned"})


def table(rows: Sequence[Sequence[str]], headers: Sequence[str], max_width: int = 70) -> str:
    """A plain-text table; cells longer than `max_width` are cut with an ellipsis."""

    def cut(cell: str) -> str:
        cell = " ".join(str(cell).split())
        return cell if len(cell) <= max_width else cell[: max_width - 1] + "…"

    body = [[cut(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in body]
    return "\n".join(lines)


# ---------------------------------------------------------------- outcomes (data) of an image entry


def happened(outcomes: Sequence[Mapping[str, Any]] | None, *kinds: str) -> list[Mapping[str, Any]]:
    """The outcomes of these kinds (all kinds if none given) that were done, or in a dry run would be."""
    return [o for o in outcomes or () if o.get("status") in HAPPENED and (not kinds or o.get("kind") in kinds)]


def tags_written(outcomes: Sequence[Mapping[str, Any]] | None) -> dict[str, str]:
    """The lifecycle tags the tag writes set (or would set), on the image or its snapshots."""
    written: dict[str, str] = {}
    for o in happened(outcomes, "tag"):
        written.update(o.get("tags") or {})
    return written


def deprecation_at(outcomes: Sequence[Mapping[str, Any]] | None) -> str:
    """The deprecation time that was (or would be) set, or ''."""
    return next((str(o.get("at", "")) for o in happened(outcomes, "deprecate")), "")


def copies_requested(outcomes: Sequence[Mapping[str, Any]] | None) -> list[str]:
    """The regions a copy was (or would be) requested to."""
    return [str(o.get("target_region", "?")) for o in happened(outcomes, "request-copy")]


def notes(entry: Mapping[str, Any]) -> list[str]:
    """The entry's notes: what was found rather than done ("copy in us-west-2 exists: ami-…",
    "not copied: expired at …"), to be shown as they are, never read."""
    return [str(n) for n in entry.get("notes") or ()]


def actions_summary(entry: Mapping[str, Any]) -> str:
    """The ACTIONS cell: what was (or would be) done to the image, from its outcomes, then its notes."""
    outcomes = entry.get("outcomes") or ()
    parts: list[str] = []
    tags = tags_written(outcomes)  # on the image or its snapshots (how many snapshots: in --json)
    if tags:
        on_image = any(o.get("on_image") for o in happened(outcomes, "tag"))
        parts.append(f"tag +{len(tags)}" if on_image else "tag snapshots")
    removed = {k for o in happened(outcomes, "untag") for k in o.get("removed") or ()}
    if removed:
        parts.append(f"untag -{len(removed)}")
    for o in outcomes:
        kind, status = str(o.get("kind", "")), str(o.get("status", ""))
        if status in ("failed", "gone"):
            what = f"copy→{o.get('target_region', '?')}" if kind == "request-copy" else kind
            parts.append(f"{what} {status}")
        elif status not in HAPPENED or kind in ("tag", "untag", "retire"):
            continue
        elif kind == "request-copy":
            parts.append(f"copy→{o.get('target_region', '?')}")
        else:
            parts.append(_KIND_WORDS.get(kind, kind))
    return ", ".join(dict.fromkeys(parts + notes(entry)))


_KIND_WORDS = {
    "deprecate": "deprecate",
    "undeprecate": "undeprecate",
    "report-error": "record error",
    "request-usage-report": "usage report",
    "delete-snapshot": "delete snapshot",
}


# ---------------------------------------------------------------- the report


def age(created: str | None, now: datetime) -> str:
    """`314d`, or `5h` under a day; '' when unknown."""
    if not created:
        return ""
    try:
        when = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return ""
    seconds = max(0.0, (now - when).total_seconds())
    return f"{int(seconds // 86400)}d" if seconds >= 86400 else f"{int(seconds // 3600)}h"


def snapshot_gib_freed(report: Mapping[str, Any]) -> float:
    """`notes.snapshot_gib_freed` summed over the regions (domain/cost.py: FullSnapshotSizeInBytes,
    else VolumeSize)."""
    total = float(sum(float((r.get("notes") or {}).get("snapshot_gib_freed", 0)) for _, _, r in pairs_of(report)))
    return int(total) if total.is_integer() else round(total, 2)


def snapshot_usd_freed(report: Mapping[str, Any]) -> float:
    """`notes.snapshot_usd_per_month_freed` summed over the pairs (the region's snapshot price)."""
    notes = ((r.get("notes") or {}) for _, _, r in pairs_of(report))
    return round(sum(float(n.get("snapshot_usd_per_month_freed", 0) or 0) for n in notes), 2)


def freed_cell(e: Mapping[str, Any]) -> str:
    gib = e.get("snapshot_gib_freed")
    if gib is None:
        return ""
    usd = float(e.get("snapshot_usd_per_month_freed") or 0)
    return f"{gib:g} GiB ${usd:.2f}/mo"


def render_report(report: Mapping[str, Any], now: datetime, title: str) -> str:
    """The human-readable report: a table per (account, region) and the totals."""
    lines = [title, ""]
    pairs = pairs_of(report)
    several = len({account for account, _, _ in pairs}) > 1
    for account, region, r in pairs:
        images = r.get("images", [])
        status = "" if r.get("status", "complete") == "complete" else f" [{r.get('status')}: {r.get('error', '')}]"
        where = f"{account} {region}" if several else region
        lines.append(f"{where}: {len(images)} image{'s' if len(images) != 1 else ''}{status}")
        if images:
            rows = []
            for e in images:
                detail = e.get("detail", "")
                if e.get("errors"):
                    detail = "ERROR: " + "; ".join(e["errors"])
                rows.append(
                    [
                        e["image_id"],
                        e.get("name", ""),
                        age(e.get("created"), now),
                        e.get("outcome") or e.get("decision", ""),
                        e.get("reason", ""),
                        actions_summary(e),
                        freed_cell(e),
                        detail,
                    ]
                )
            headers = ["IMAGE", "NAME", "AGE", "OUTCOME", "REASON", "ACTIONS", "FREED", "DETAIL"]
            if not any(row[6] for row in rows):
                headers, rows = headers[:6] + headers[7:], [row[:6] + row[7:] for row in rows]
            block = table(rows, headers, 60)
            lines += ["  " + line for line in block.splitlines()]
        for s in r.get("snapshots", []):
            lines.append(f"  snapshot {s.get('snapshot_id')}: {s.get('outcome')} {s.get('error', '')}".rstrip())
        lines.append("")
    lines.append(render_totals(report))
    return "\n".join(lines)


def render_totals(report: Mapping[str, Any]) -> str:
    t = report.get("totals", {})
    dry = report.get("dry_run", False)
    gib = snapshot_gib_freed(report)
    usd = snapshot_usd_freed(report)
    kept = t.get("kept", {})
    kept_text = ", ".join(f"{reason} {n}" for reason, n in sorted(kept.items(), key=lambda kv: -kv[1]))
    retired = t.get("retired", 0)
    parts = [
        f"{t.get('considered', 0)} images considered",
        f"{'would retire' if dry else 'retired'} {retired}"
        + (
            f" ({t.get('snapshots_deleted', 0)} snapshots, {gib} GiB {'would be ' if dry else ''}freed"
            + (f", about ${usd:.2f} a month" if usd else "")
            + ")"
        ),
        f"kept {sum(kept.values())}" + (f" ({kept_text})" if kept_text else ""),
    ]
    if t.get("tagged"):
        parts.append(f"{'would tag' if dry else 'tagged'} {t['tagged']}")
    if t.get("copies_requested"):
        parts.append(f"{'would request' if dry else 'requested'} {t['copies_requested']} copies")
    if t.get("disabled"):
        parts.append(f"{'would disable' if dry else 'disabled'} {t['disabled']} first (grace period)")
    if t.get("enabled"):
        parts.append(f"{'would re-enable' if dry else 're-enabled'} {t['enabled']}")
    if t.get("deprecations_set"):
        parts.append(f"{'would set' if dry else 'set'} {t['deprecations_set']} deprecation times")
    parts.append(f"{t.get('errors', 0)} errors")
    text = "Totals: " + "; ".join(parts)
    blast = report.get("blast_radius")
    if blast:
        text += (
            f"\nBLAST RADIUS: {blast.get('would_retire')} images due, more than MaxRetirementsPerRun "
            f"({blast.get('limit')}): {'nothing would be' if dry else 'nothing was'} retired past it "
            "(for a deliberate clean-up: --max-retirements N)"
        )
    if report.get("image_ids_not_found"):
        text += "\nNot found in any region: " + ", ".join(report["image_ids_not_found"])
    if dry:
        text += "\n(dry run: nothing was changed)"
    return text


# ---------------------------------------------------------------- the functions' logs


@contextlib.contextmanager
def quiet_functions(verbose: bool, stream: IO[str]) -> Iterator[None]:
    """Keep the functions' JSON logs and metrics (Powertools prints them on stdout) off stdout: logs go to
    `stream` at INFO with --verbose, else only errors are kept out entirely."""
    from ami_lifecycle.runtime.observability import logger, metrics

    handler = logger.registered_handler
    old_stream = getattr(handler, "stream", None)
    old_level = logger.log_level
    sink = stream if verbose else open(os.devnull, "w")  # noqa: SIM115 - closed below
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(sink)
    logger.setLevel("INFO" if verbose else "CRITICAL")
    try:
        with contextlib.redirect_stdout(sink):
            yield
    finally:
        metrics.clear_metrics()
        if isinstance(handler, logging.StreamHandler) and old_stream is not None:
            handler.setStream(old_stream)
        logger.setLevel(old_level)
        if sink is not stream:
            sink.close()
