"""The state machine's own steps (services/execution.py): record, check, summarize. Pure data in,
data out; the sizes are checked against Step Functions' 256 KiB for an organization's 850 pairs."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from ami_lifecycle.domain.requests import BadRequest
from ami_lifecycle.services import execution
from hypothesis import given
from hypothesis import strategies as st

QUOTA = 256 * 1024
A, B = "111111111111", "222222222222"
DEPS: Any = SimpleNamespace(settings=SimpleNamespace(digest_topic_arn=None))


def report(account: str, region: str, *, status: str = "complete", error: str | None = None, **totals: Any) -> dict:
    """A one-pair report as RetentionSweepFunction returns it (domain/report.py's shape)."""
    pair_totals = {
        "considered": 10,
        "tagged": 0,
        "copies_requested": 0,
        "retired": 0,
        "errors": 0,
        "snapshots_deleted": 0,
        "deprecations_set": 0,
        "kept": {},
        **totals,
    }
    region_report: dict[str, Any] = {"account": account, "region": region, "status": status, "totals": pair_totals}
    if error:
        region_report["error"] = error
    region_report["images"] = [
        {"image_id": f"ami-{i:08x}", "decision": "keep", "reason": "not-expired", "outcome": "kept"} for i in range(3)
    ] + [{"image_id": f"ami-{i:08x}", "decision": "retire", "outcome": "retired"} for i in range(10, 12)]
    return {
        "kind": "sweep",
        "dry_run": False,
        "status": "partial" if status == "failed" else status,
        "totals": pair_totals,
        "accounts": {account: {"totals": pair_totals, "regions": {region: region_report}}},
    }


def record(phase: str, rep: dict, account: str | None = None, region: str | None = None, **extra: Any) -> dict:
    """The record of `rep`'s pair (or of `account`, `region`: a report that may not cover them)."""
    ((own_account, a),) = rep.get("accounts", {A: {"regions": {"us-east-1": {}}}}).items()
    ((own_region, _),) = a["regions"].items()
    event = {
        "phase": phase,
        "account": account or own_account,
        "region": region or own_region,
        "iterations": 1,
        "report": rep,
        **extra,
    }
    return execution.record(event)


# ------------------------------------------------------------------ record


def test_a_plan_record_says_what_the_pair_would_retire() -> None:
    assert record("plan", report(A, "us-east-1", retired=4))["would_retire"] == 4
    # Over MaxRetirementsPerRun on its own, the dry run retires none and says how many in blast_radius.
    over = report(A, "us-east-1") | {"blast_radius": {"would_retire": 250, "limit": 100}}
    assert record("plan", over)["would_retire"] == 250


def test_a_refused_or_foreign_report_is_a_failed_pair() -> None:
    refused = record("apply", {"status": "refused", "error": "invalid sweep payload: regions: x"}, A, "us-east-1")
    assert refused["status"] == "failed" and refused["error"].startswith("refused: invalid sweep payload")
    other = record("apply", report(B, "us-east-1"), A, "us-east-1")
    assert other["status"] == "failed" and "does not cover this pair" in other["error"]


def test_a_failed_pair_keeps_its_error() -> None:
    rec = record("apply", report(A, "us-east-1", status="failed", error="account A: cannot assume role", errors=1))
    assert rec["status"] == "failed" and rec["error"] == "account A: cannot assume role"
    assert rec["totals"] == {"considered": 10, "errors": 1}  # zero counters left out
    ok = record("apply", report(A, "us-east-1"), pair_count=850)
    assert ok == {"account": A, "region": "us-east-1", "totals": {"considered": 10}}  # complete, 1 invocation


def test_image_entries_are_kept_within_the_pairs_share_of_the_budget_changes_first() -> None:
    one = record("apply", report(A, "us-east-1", retired=2), pair_count=1)
    assert [e["outcome"] for e in one["images"]] == ["retired", "retired", "kept", "kept", "kept"]
    many = record("apply", report(A, "us-east-1", retired=2), pair_count=850)
    assert "images" not in many and "images_omitted" not in many  # at that scale: totals only


# ------------------------------------------------------------------ check


def plan_run(would: dict[tuple[str, str], int | None], cap: int, count: int | None = None) -> dict[str, Any]:
    records = []
    for (account, region), n in would.items():
        if n is None:
            records.append({"account": account, "region": region, "status": "failed", "failure": {"Error": "X"}})
        else:
            records.append({"account": account, "region": region, "status": "complete", "would_retire": n})
    return {
        "phase": "plan",
        "dry_run": True,
        "source": "schedule",
        "max_retirements": cap,
        "pair_count": len(would) if count is None else count,
        "pairs": records,
        "plan": None,
        "blast_radius": None,
    }


def test_within_the_cap_each_pair_may_retire_its_plan_and_a_share_of_the_slack() -> None:
    out = execution.check(plan_run({(A, "e"): 3, (A, "w"): 0, (B, "e"): 2}, cap=10))
    at_most = {(p["account"], p["region"]): p["retire_at_most"] for p in out["pairs"]}
    assert at_most == {(A, "e"): 6, (A, "w"): 0, (B, "e"): 4}  # 5 planned + 5 slack, to the pairs that retire
    assert out["phase"] == "apply" and out["dry_run"] is False and out["blast_radius"] is None
    assert out["plan"] == {"would_retire": 5, "pairs": 3, "pairs_failed": 0}


def test_over_the_cap_no_pair_may_retire_anything() -> None:
    out = execution.check(plan_run({(A, "e"): 60, (B, "e"): 50}, cap=100))
    assert {p["retire_at_most"] for p in out["pairs"]} == {0}
    assert out["blast_radius"] == {"would_retire": 110, "limit": 100}


def test_a_pair_that_could_not_be_planned_retires_nothing_and_a_missing_one_is_counted() -> None:
    out = execution.check(plan_run({(A, "e"): None, (B, "e"): 1}, cap=10, count=3))
    at_most = {(p["account"], p["region"]): p["retire_at_most"] for p in out["pairs"]}
    assert at_most[(A, "e")] == 0 and at_most[(B, "e")] == 10
    assert out["plan"] == {"would_retire": 1, "pairs": 3, "pairs_failed": 2}


@given(
    st.lists(st.one_of(st.none(), st.integers(0, 500)), min_size=1, max_size=60),
    st.integers(1, 2_000),
)
def test_the_shares_never_add_up_to_more_than_the_cap(would: list[int | None], cap: int) -> None:
    pairs = {(f"{i:012d}", "us-east-1"): n for i, n in enumerate(would)}
    out = execution.check(plan_run(pairs, cap))
    shares = [p["retire_at_most"] for p in out["pairs"]]
    assert sum(shares) <= cap
    planned = sum(n or 0 for n in would)
    if planned > cap:
        assert set(shares) == {0} and out["blast_radius"] == {"would_retire": planned, "limit": cap}
    else:
        for p, n in zip(out["pairs"], would, strict=True):
            assert p["retire_at_most"] >= (n or 0)
            if n is None:
                assert p["retire_at_most"] == 0


# ------------------------------------------------------------------ summarize


def apply_run(records: list[dict[str, Any]], count: int | None = None, **run: Any) -> dict[str, Any]:
    return {
        "phase": "apply",
        "dry_run": False,
        "source": "schedule",
        "max_retirements": 100,
        "pair_count": len(records) if count is None else count,
        "pairs": records,
        "plan": None,
        "blast_radius": None,
        **run,
    }


def test_the_summary_is_keyed_by_account_then_region_with_every_pair_and_its_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ok = record("apply", report(A, "us-east-1", retired=2, kept={"not-expired": 8}))
    caught = {
        "account": A,
        "region": "us-west-2",
        "status": "failed",
        "iterations": 1,
        "failure": {
            "Error": "RuntimeError",
            "Cause": json.dumps({"errorType": "RuntimeError", "errorMessage": "boom"}),
        },
    }
    denied = record("apply", report(B, "us-east-1", status="failed", error="cannot assume", errors=1))
    out = execution.summarize(apply_run([ok, caught, denied], count=4), DEPS, execution="run-1")
    assert out["execution"] == "run-1" and out["status"] == "partial"
    assert out["pairs"] == {"total": 4, "complete": 1, "incomplete": 0, "failed": 3}
    assert out["missing"]["pairs"] == 1
    regions = out["accounts"][A]["regions"]
    assert regions["us-west-2"] == {
        "status": "failed",
        "iterations": 1,
        "error": "RuntimeError: boom",
        "totals": {**dict.fromkeys(execution.COUNTERS, 0), "errors": 1, "kept": {}},
    }
    assert regions["us-east-1"]["totals"]["retired"] == 2 and regions["us-east-1"]["totals"]["kept"] == {
        "not-expired": 8
    }
    assert out["accounts"][B]["regions"]["us-east-1"]["error"] == "cannot assume"
    assert out["totals"]["retired"] == 2 and out["totals"]["errors"] == 3  # two reported, one missing
    assert out["accounts"][A]["totals"]["considered"] == 10
    logged = [r for r in caplog.records if r.getMessage() == "sweep pair result"]
    assert {(r.account, r.region, r.status) for r in logged} == {  # type: ignore[attr-defined]
        (A, "us-east-1", "complete"),
        (A, "us-west-2", "failed"),
        (B, "us-east-1", "failed"),
    }


def test_a_dry_run_summary_reports_the_blast_radius_a_real_run_would_hit() -> None:
    records = [record("apply", report(f"{i:012d}", "us-east-1", retired=30)) for i in range(4)]
    out = execution.summarize(apply_run(records, dry_run=True), DEPS)
    assert out["blast_radius"] == {"would_retire": 120, "limit": 100}


def test_unknown_operations_are_refused() -> None:
    with pytest.raises(BadRequest, match="unknown operation"):
        execution.handle_operation({"operation": "reboot"}, DEPS)


# ------------------------------------------------------------------ an organization within 256 KiB


def org_records(accounts: int = 50, regions: int = 17) -> list[dict[str, Any]]:
    names = [f"xx-region-{r}" for r in range(regions)]
    out = []
    for a in range(accounts):
        for region in names:
            rep = report(
                f"{a:012d}",
                region,
                considered=2000,
                retired=12,
                snapshots_deleted=12,
                deprecations_set=3,
                kept={"not-expired": 1900, "keep-latest": 80, "in-use": 8},
            )
            out.append(record("apply", rep, account=f"{a:012d}", region=region, pair_count=accounts * regions))
    return out


def test_an_organizations_records_and_summary_fit_in_a_state() -> None:
    records = org_records()
    run = apply_run(records)
    assert len(json.dumps(run)) < QUOTA * 0.75  # the Map's result, in the state Summarize gets
    out = execution.summarize(run, DEPS)
    assert len(json.dumps(out)) <= execution.STATE_BUDGET < QUOTA
    assert out["pairs"]["total"] == 850 and out["totals"]["retired"] == 850 * 12
