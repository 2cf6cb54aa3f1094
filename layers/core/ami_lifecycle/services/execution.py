"""The sweep's steps on Step Functions that are not the sweep of a pair (PRODUCT.md section 9).

SweepStateMachine (statemachines/sweep.asl.yaml) invokes RetentionSweepFunction for each
(account, region) pair with an ordinary sweep payload, and for four small steps with
`{"operation": ...}`, which `sweep.handle` hands to :func:`handle_operation`:

- ``pairs``: the run. The execution's input (the schedule's `{"source": "schedule"}`, or a manual
  `{"accounts": [...], "regions": [...], "dry_run": ...}`), validated as a sweep payload is
  (`BadRequest` fails the execution: it cannot run at all), becomes the covered pairs and the phase:
  ``plan`` when the run is real, covers more than one pair and MaxRetirementsPerRun is not 0 (every
  pair is first swept as a dry run, so the cap can be applied to all pairs together), else
  ``apply``.
- ``record``: one pair's last report made small for the Map's result (a Map's whole result, like
  any state, is at most 256 KiB): its status, error, totals without the zero counters, cost notes,
  and as many of its image entries as the pair's share of the budget holds (retired, disabled and
  failed ones first: a small organization gets every entry, a large one what changed); in the plan
  phase, what it would retire.
- ``check``: after the plan phase, the cap over all pairs. Within it, each pair may retire what it
  planned plus a share of the slack (images that expire between the plan and the real run); over
  it, no pair may retire anything (`retire_at_most` 0) and the run reports ``blast_radius``. The
  shares never add up to more than MaxRetirementsPerRun.
- ``summarize``: the execution's output, the report shape of PRODUCT.md section 4 keyed by account
  then region (per pair: status, error, invocations, totals), the pairs the Catch recorded
  included with their error, those missing from the Map's result (a child execution Step Functions
  could not run) counted under ``missing``; emits ``SweepPairsFailed``, logs one line per
  pair (``sweep pair result``: the dashboard's table), publishes the run's digest.

All four return plain JSON data; every key the state machine's paths read is always present
(JSONPath fails on a missing key, it has no default).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ..domain.report import COUNTERS, pairs_of
from ..domain.requests import BadRequest, parse_sweep_request
from ..runtime import Deps
from ..runtime.observability import count, logger
from .digest import publish_digest

OPERATIONS = ("pairs", "record", "check", "summarize")
# What one state may hold (Step Functions: 256 KiB), less room for the keys around it.
STATE_BUDGET = 200_000
# A record's base (account, region, status, invocations, totals) is at most about this many bytes;
# its cost notes and image entries are kept only within the pair's share of STATE_BUDGET beyond it.
# (850 pairs, 50 accounts x 17 regions: about 170 KB of records, no notes, no entries.)
RECORD_BASE = 250
# Image outcomes a record keeps first (the digest lists them): what changed, and what failed.
NOTABLE_OUTCOMES = ("retired", "would retire", "disabled", "would disable", "enabled", "failed")
NOTES_KEPT = ("snapshot_gib_freed", "snapshot_size_basis", "snapshot_usd_per_month_freed")
MAX_ERROR = 500


def handle_operation(event: Mapping[str, Any], deps: Deps) -> dict[str, Any]:
    """One step of the state machine (`event["operation"]`). Raises BadRequest for an unknown
    operation or a refused run input."""
    operation = event.get("operation")
    if operation == "pairs":
        return list_pairs(event.get("request"), deps)
    if operation == "record":
        return record(event)
    if operation == "check":
        return check(_mapping(event.get("run")))
    if operation == "summarize":
        return summarize(_mapping(event.get("run")), deps, execution=str(event.get("execution") or ""))
    raise BadRequest(f"unknown operation {str(operation)[:40]!r} (one of: {', '.join(OPERATIONS)})")


# ---------------------------------------------------------------- pairs


def list_pairs(request_payload: Any, deps: Deps) -> dict[str, Any]:
    """The run: its pairs, its phase, whether it is a dry run (module docstring)."""
    settings = deps.settings
    payload = dict(request_payload) if isinstance(request_payload, Mapping) else request_payload
    if isinstance(payload, dict):
        payload.setdefault("source", "manual")
        if payload.get("cursor") is not None or payload.get("retire_at_most") is not None:
            raise BadRequest("invalid sweep execution input: cursor and retire_at_most are the state machine's own")
    request = parse_sweep_request(payload, settings, deps.known_regions)
    deps.accounts.refresh()  # a new run: the organization listed again, refused roles retried
    managed = deps.accounts.managed()
    unmanaged = [a for a in request.accounts or () if a not in managed]
    if unmanaged:
        raise BadRequest(
            f"invalid sweep execution input: accounts: {', '.join(unmanaged[:5])} not managed by this stack "
            f"(managed: {len(managed)} accounts)"
        )
    pairs = deps.pairs(request.accounts, request.regions)
    dry_run = settings.dry_run if request.dry_run is None else request.dry_run
    cap = settings.max_retirements_per_run
    plan = not dry_run and cap > 0 and len(pairs) > 1
    logger.info("sweep execution started", pairs=len(pairs), dry_run=dry_run, plan=plan, source=request.source)
    return {
        "phase": "plan" if plan else "apply",
        # The plan phase is a dry run of every pair; check() makes the run real afterwards.
        "dry_run": True if plan else dry_run,
        "source": request.source or "manual",
        "max_retirements": cap,
        "pair_count": len(pairs),
        "pairs": [{"account": a, "region": r, "retire_at_most": None} for a, r in pairs],
        "plan": None,
        "blast_radius": None,
    }


# ---------------------------------------------------------------- record


def record(event: Mapping[str, Any]) -> dict[str, Any]:
    """One pair's report, small (module docstring). `event`: phase, account, region, iterations
    (invocations of the pair), report (the pair's last report, as RetentionSweepFunction returned
    it), pair_count (the pairs of the run: the record's share of the budget)."""
    account, region = str(event.get("account", "")), str(event.get("region", ""))
    report = _mapping(event.get("report"))
    # Every byte counts for an organization: "status" is left out when "complete", "iterations" when 1.
    out: dict[str, Any] = {"account": account, "region": region}
    iterations = int(event.get("iterations") or 1)
    if iterations > 1:
        out["iterations"] = iterations
    pair = _pair_report(report, account, region)
    if report.get("status") == "refused":
        out["status"], out["error"] = "failed", _clip(f"refused: {report.get('error', '')}")
    elif pair is None:
        out["status"], out["error"] = "failed", "the function's report does not cover this pair"
    else:
        if (pair.get("status") or "complete") != "complete":
            out["status"] = str(pair["status"])
        if pair.get("error"):
            out["error"] = _clip(str(pair["error"]))
    totals = (pair or {}).get("totals") or report.get("totals") or {}
    blast = report.get("blast_radius")
    if event.get("phase") == "plan":
        # What a real run would retire here. Over MaxRetirementsPerRun on its own, the dry run
        # retires none and says how many in blast_radius.
        out["would_retire"] = (
            int(blast["would_retire"]) if isinstance(blast, Mapping) else int(totals.get("retired", 0))
        )
        return out
    out["totals"] = _nonzero(totals)
    if isinstance(blast, Mapping):
        out["blast_radius"] = dict(blast)
    # Beyond the base, the pair's share of the Map's result: the cost notes, then image entries.
    budget = max(0, STATE_BUDGET // max(1, int(event.get("pair_count") or 1)) - RECORD_BASE)
    notes = {k: v for k, v in ((pair or {}).get("notes") or {}).items() if k in NOTES_KEPT and v}
    if notes and len(json.dumps(notes)) <= budget:
        out["notes"] = notes
        budget -= len(json.dumps(notes))
    entries = [e for e in (pair or {}).get("images") or [] if isinstance(e, Mapping)]
    images = [dict(e) for e in sorted(entries, key=lambda e: not _notable(e))]
    kept, used = [], 0
    for image in images:
        size = len(json.dumps(image))
        if used + size > budget:
            break
        kept.append(image)
        used += size
    if kept:
        out["images"] = kept
    omitted = len(images) - len(kept) + int((pair or {}).get("images_omitted") or 0)
    if kept and omitted:
        out["images_omitted"] = omitted
    return out


def _pair_report(report: Mapping[str, Any], account: str, region: str) -> dict[str, Any] | None:
    for a, r, pair in pairs_of(dict(report)):
        if a == account and r == region:
            return pair
    return None


def _notable(entry: Mapping[str, Any]) -> bool:
    return entry.get("outcome") in NOTABLE_OUTCOMES or bool(entry.get("errors"))


# ---------------------------------------------------------------- check


def check(run: Mapping[str, Any]) -> dict[str, Any]:
    """The plan phase's records -> the real run: each pair's retire_at_most (module docstring)."""
    cap = int(run.get("max_retirements") or 0)
    records = _records(run.get("pairs"))  # the plan phase's records replaced the pairs
    pairs = list(records)
    expected = int(run.get("pair_count") or len(pairs))
    planned: dict[tuple[str, str], int] = {}
    unplanned: set[tuple[str, str]] = set()
    # A pair whose child execution failed outright has no record: it is not swept for real in this
    # run (Summarize reports it missing).
    failed = max(0, expected - len(pairs))
    for pair in pairs:
        rec = records[pair]
        if (rec.get("status") or "complete") == "failed" or "failure" in rec:
            # Not planned (it failed): nothing may be retired there in this run.
            failed += 1
            planned[pair] = 0
            unplanned.add(pair)
        else:
            planned[pair] = max(0, int(rec.get("would_retire") or 0))
    would_retire = sum(planned.values())
    allowed = cap == 0 or would_retire <= cap
    shares = _shares(planned, cap - would_retire, unplanned) if allowed and cap else dict.fromkeys(planned, 0)
    blast = None if allowed else {"would_retire": would_retire, "limit": cap}
    if blast:
        logger.error(
            "blast radius: the pairs together would retire more than allowed, none will",
            would_retire=would_retire,
            limit=cap,
        )
    logger.info("sweep plan checked", would_retire=would_retire, limit=cap, allowed=allowed, pairs_failed=failed)
    return {
        "phase": "apply",
        "dry_run": False,
        "source": run.get("source") or "manual",
        "max_retirements": cap,
        "pair_count": len(pairs),
        "pairs": [{"account": a, "region": r, "retire_at_most": shares[(a, r)] if cap else None} for a, r in pairs],
        "plan": {"would_retire": would_retire, "pairs": expected, "pairs_failed": failed},
        "blast_radius": blast,
    }


def _shares(
    planned: Mapping[tuple[str, str], int], slack: int, unplanned: set[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """Each pair's planned count, plus the slack shared among the pairs that plan retirements (the
    ones where more are likely to expire before the real run), else among all that were planned;
    none to a pair that could not be planned; never more in total than planned + slack."""
    out = dict(planned)
    takers = [p for p, n in planned.items() if n > 0] or [p for p in planned if p not in unplanned]
    if not takers or slack <= 0:
        return out
    each, extra = divmod(slack, len(takers))
    for i, pair in enumerate(takers):
        out[pair] += each + (1 if i < extra else 0)
    return out


# ---------------------------------------------------------------- summarize


def summarize(run: Mapping[str, Any], deps: Deps, *, execution: str = "") -> dict[str, Any]:
    """The execution's output (module docstring)."""
    records = _records(run.get("pairs"))  # the apply phase's records replaced the pairs
    missing = max(0, int(run.get("pair_count") or 0) - len(records))
    accounts: dict[str, dict[str, Any]] = {}
    total: dict[str, Any] = {}
    counts = {"complete": 0, "incomplete": 0, "failed": missing}
    for (account, region), rec in records.items():
        pair = _summary_pair(rec)
        counts[pair["status"] if pair["status"] in counts else "failed"] += 1
        a = accounts.setdefault(account, {"totals": {}, "regions": {}})
        a["regions"][region] = pair
        _add(a["totals"], pair["totals"])
        _add(total, pair["totals"])
        logger.info(
            "sweep pair result",
            execution=execution,
            account=account,
            region=region,
            status=pair["status"],
            error=pair.get("error"),
            iterations=pair.get("iterations"),
            retired=pair["totals"].get("retired", 0),
            kept=sum((pair["totals"].get("kept") or {}).values()),
            errors=pair["totals"].get("errors", 0),
        )
    for a in accounts.values():
        a["totals"] = _full(a["totals"])
    blast = run.get("blast_radius")
    dry_run = bool(run.get("dry_run"))
    if dry_run and not blast:
        cap = int(run.get("max_retirements") or 0)
        would = sum(_would_retire(r) for r in records.values())
        if cap and would > cap:
            blast = {"would_retire": would, "limit": cap}
    out: dict[str, Any] = {
        "kind": "sweep",
        "execution": execution,
        "dry_run": dry_run,
        "source": run.get("source") or "manual",
        "status": "partial" if counts["failed"] else ("incomplete" if counts["incomplete"] else "complete"),
        "pairs": {"total": len(records) + missing, **counts},
        "totals": _full(total),
        "accounts": accounts,
    }
    if missing:
        _add(total, {"errors": missing})
        out["totals"] = _full(total)
        out["missing"] = {
            "pairs": missing,
            "why": "their child executions failed (Step Functions could not run them): see the execution's Map Run",
        }
        logger.error("sweep pairs without a result", execution=execution, pairs=missing)
    if run.get("plan"):
        out["plan"] = run["plan"]
    if blast:
        out["blast_radius"] = blast
    out = _fit(out)
    count("SweepPairsFailed", counts["failed"])
    logger.info(
        "sweep execution summary",
        execution=execution,
        status=out["status"],
        pairs=out["pairs"],
        totals=out["totals"],
        blast_radius=blast,
    )
    publish_digest(deps, out)
    return out


def _summary_pair(rec: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"status": str(rec.get("status") or "complete"), "iterations": rec.get("iterations", 1)}
    failure = rec.get("failure")
    if isinstance(failure, Mapping):
        out["status"] = "failed"
        out["error"] = _failure_text(failure)
    elif rec.get("error"):
        out["error"] = str(rec["error"])
    totals = dict(rec.get("totals") or {})
    if out["status"] == "failed" and not totals.get("errors"):
        totals["errors"] = 1
    out["totals"] = _full(totals)
    for key in ("blast_radius", "notes", "images", "images_omitted"):
        if rec.get(key):
            out[key] = rec[key]
    return out


def _failure_text(failure: Mapping[str, Any]) -> str:
    """`Error: message` of a Catch's {"Error", "Cause"} (a Lambda error's Cause is its JSON payload)."""
    error, cause = str(failure.get("Error") or "Error"), failure.get("Cause") or ""
    message = cause
    if isinstance(cause, str) and cause.startswith("{"):
        try:
            message = json.loads(cause).get("errorMessage") or cause
        except (ValueError, AttributeError):
            message = cause
    return _clip(f"{error}: {message}" if message else error)


def _would_retire(rec: Mapping[str, Any]) -> int:
    blast = rec.get("blast_radius")
    if isinstance(blast, Mapping) and "would_retire" in blast:
        return int(blast["would_retire"])
    return int((rec.get("totals") or {}).get("retired", 0) or 0)


def _fit(out: dict[str, Any]) -> dict[str, Any]:
    """Within one state's budget: image lists go first, then the per-pair zero counters."""
    if len(json.dumps(out)) <= STATE_BUDGET:
        return out
    for a in out["accounts"].values():
        for pair in a["regions"].values():
            n = len(pair.pop("images", []) or [])
            if n:
                pair["images_omitted"] = int(pair.get("images_omitted", 0)) + n
    if len(json.dumps(out)) <= STATE_BUDGET:
        return out
    for a in out["accounts"].values():
        for pair in a["regions"].values():
            pair["totals"] = _nonzero(pair["totals"])
    out["note"] = "per-pair totals leave out counters that are 0 (the output would exceed 256 KiB)"
    return out


# ---------------------------------------------------------------- totals


def _nonzero(totals: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in totals.items():
        if isinstance(v, Mapping):
            sub = {r: n for r, n in v.items() if n}
            if sub:
                out[k] = sub
        elif v:
            out[k] = v
    return out


def _full(totals: Mapping[str, Any]) -> dict[str, Any]:
    """Section 4's counters, 0 where absent, and kept by reason; whatever else the function counts."""
    out: dict[str, Any] = dict.fromkeys(COUNTERS, 0)
    out["kept"] = {}
    for k, v in totals.items():
        out[k] = dict(sorted(v.items())) if isinstance(v, Mapping) else v
    return out


def _add(into: dict[str, Any], totals: Mapping[str, Any]) -> None:
    for k, v in totals.items():
        if isinstance(v, Mapping):
            sub = into.setdefault(k, {})
            for r, n in v.items():
                sub[r] = _num(sub.get(r, 0)) + _num(n)
        elif isinstance(v, int | float) and not isinstance(v, bool):
            into[k] = _num(into.get(k, 0)) + v
            if isinstance(into[k], float):
                into[k] = round(into[k], 6)


def _num(v: Any) -> int | float:
    return v if isinstance(v, int | float) and not isinstance(v, bool) else 0


# ---------------------------------------------------------------- helpers


def _records(results: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """The Map's result: one record per pair (a record or a caught failure); anything else ignored."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in results if isinstance(results, Iterable) and not isinstance(results, str | Mapping) else ():
        if isinstance(rec, Mapping) and rec.get("account") and rec.get("region"):
            out[(str(rec["account"]), str(rec["region"]))] = dict(rec)
    return out


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"
