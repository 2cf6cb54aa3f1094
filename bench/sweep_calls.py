"""Section sweep_calls: the API calls of one retention sweep, next to the floor (floor.py).

A seeded fleet (bench/seed.py: 10,000 images in 3 regions, about 10% expired, some of those in use by
instances, launch templates and launch configurations) is swept by RetentionSweepFunction in one
invocation with the manual payload (the whole sweep at once; the state machine's per-pair run is
bench/execution.py's), with MaxRetirementsPerRun=0 (a deliberate large clean-up); motoext counts
the calls. Target: at most the floor + 10%, per region and in total, the
engine's expected retirements retired, and nothing else.

    .venv/bin/python bench/sweep_calls.py [--images N] [--expired-ratio R] [--seed S]   # this section alone
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import local
import seed
from ami_lifecycle.domain.report import pairs_of
from floor import FAIL_CLOSED_SOURCES, NOTE, RegionPlan, floor_for, moto_snapshot_pages, safety
from harness import MET, Run, Section, calls_text, check_max, fmt_n, fmt_s, stdout_to_devnull

KEY = "sweep_calls"
TITLE = "API calls of a sweep"
REGIONS = ("us-east-1", "us-west-2", "eu-west-1")
SLACK = 1.10  # the target: the floor + 10%


def add_options(parser: Any) -> None:
    group = parser.add_argument_group("sweep_calls")
    group.add_argument(
        "--sweep-images",
        "--images",
        dest="sweep_images",
        type=int,
        help="images in the swept fleet, over 3 regions (default 10,000; 1,000 with --quick)",
    )
    group.add_argument("--expired-ratio", type=float, help="share of images past their retention (default: about 0.10)")
    group.add_argument("--seed", type=int, default=7, help="the fleet's random seed (default 7)")


def run(sec: Section, ctx: Run) -> None:
    opts = ctx.opts
    total = opts.sweep_images or (1_000 if opts.quick else 10_000)
    sec.title = f"{TITLE}: {total:,} images, {len(REGIONS)} regions" + (" (--quick)" if opts.quick else "")
    local.local_aws(ctx)
    now = datetime.now(UTC)
    session = local.session()
    fleets: list[seed.Fleet] = []
    plans: list[RegionPlan] = []
    t0 = time.perf_counter()
    for i, region in enumerate(REGIONS):
        n = total // len(REGIONS) + (1 if i < total % len(REGIONS) else 0)
        fleet = seed.seed_fleet(region, n, now, session, seed=opts.seed, expired_ratio=opts.expired_ratio)
        fleets.append(fleet)
        plans.append(floor_for(fleet, now))
    ctx.say(f"sweep_calls: seeded {total:,} images in {len(REGIONS)} regions ({time.perf_counter() - t0:.1f} s)")
    stack = local.stack(ctx, {"SweepRegions": ",".join(REGIONS), "MaxRetirementsPerRun": "0"}, "bench-sweep")
    local.freeze_heap()

    with stdout_to_devnull():
        m = local.measure(lambda: stack.invoke("RetentionSweepFunction", {"source": "manual"}))
    report = m.result if isinstance(m.result, dict) else {}
    ctx.say(f"sweep_calls: swept in {m.wall:.1f} s, {m.total_calls:,} calls")

    floor: Counter[str] = Counter()
    for p in plans:
        floor.update(p.floor)
    floor_total = sum(floor.values())
    managed = sum(p.managed for p in plans)
    expired = sum(len(f.expired) for f in fleets)
    in_use = sum(len(f.references) for f in fleets)
    sec.row(
        "fleet",
        f"{total:,} images, {len(REGIONS)} regions ({managed:,} managed, {expired:,} expired, "
        f"{in_use} used by instances/LTs/LCs)",
    )
    expected_retired = sum(len(p.expected_retired) for p in plans)
    retired = report.get("totals", {}).get("retired")
    status = report.get("status", "?")
    sec.row(
        "status / retired",
        f"{status} / {retired} retired" + (f" ({report.get('error')})" if report.get("error") else ""),
        f"complete / {expected_retired:,} (engine's expectation)",
        MET if retired == expected_retired and status == "complete" else "MISSED: differs",
    )
    limit = floor_total * SLACK
    sec.row(
        "floor: with the fail-closed sources / without",
        f"{fmt_n(floor_total)} / {fmt_n(floor_total - sum(floor[a] for a in FAIL_CLOSED_SOURCES))}",
        "SSM, Image Builder listing and launch permissions of candidates counted",
        "-",
    )
    sec.row(
        "API calls, total",
        fmt_n(m.total_calls),
        f"<= {fmt_n(limit)} (floor {fmt_n(floor_total)} + 10%)",
        check_max(m.total_calls, limit, fmt_n),
    )
    moto_ds, real_ds = moto_snapshot_pages(m.calls, plans)
    if moto_ds != real_ds:
        real_total = m.total_calls - moto_ds + real_ds
        sec.row(
            "API calls, real-EC2 paging",
            fmt_n(real_total),
            f"<= {fmt_n(limit)}",
            check_max(real_total, limit, fmt_n),
            note="moto returns DescribeSnapshots in one page",
        )
        sec.notes.append(
            f"moto answers DescribeSnapshots in a single page whatever MaxResults says; real EC2 pages by 1000, "
            f"so the sweep's orphan-snapshot listing would cost {real_ds} calls instead of {moto_ds}: "
            "the 'real-EC2 paging' row adds them."
        )
    sec.row("API calls, by action", calls_text(m.calls, 10))
    sec.row("floor, by action", calls_text(floor, 10))
    sec.row("above the floor", calls_text(m.calls - floor, 10) or "nothing")
    for p in plans:
        region_calls = sum(m.calls_by_region.get(p.region, Counter()).values())
        region_floor = sum(p.floor.values())
        sec.row(
            f"  {p.region}",
            f"{region_calls:,} calls ({p.managed:,} managed, {p.candidates} candidates)",
            f"<= {fmt_n(region_floor * SLACK)} (floor {region_floor:,} + 10%)",
            check_max(region_calls, region_floor * SLACK, fmt_n),
        )
    gone, left = 0, 0
    for p, f in zip(plans, fleets, strict=True):
        g, lft = safety(p, f)
        gone, left = gone + g, left + lft
    sec.row(
        "safety: kept images deregistered",
        str(gone),
        "0",
        MET if gone == 0 else f"MISSED: {gone} images that had to be kept are gone",
    )
    sec.row("expected retirements still registered", str(left), "0", MET if left == 0 else "MISSED")
    sec.row(
        "time (wall; our CPU; moto CPU)",
        f"{fmt_s(m.wall)}; {fmt_s(m.client_cpu)}; {fmt_s(m.server_cpu)}",
        note="local, not AWS latency",
    )
    sec.row("moto CPU by action", ", ".join(f"{a} {fmt_s(t)}" for a, t in m.server_by_action.most_common(4)))
    sec.data.update(
        {
            "images": total,
            "managed": managed,
            "expired": expired,
            "expected_retired": expected_retired,
            "retired": retired,
            "calls": dict(m.calls),
            "calls_by_region": {r: dict(c) for r, c in m.calls_by_region.items()},
            "floor": dict(floor),
            "floor_total": floor_total,
            "real_ec2_snapshot_pages": real_ds,
            "wall_s": m.wall,
            "client_cpu_s": m.client_cpu,
            "moto_cpu_s": m.server_cpu,
            "in_use_check": {r: v.get("notes", {}).get("in_use_check") for _, r, v in pairs_of(report)},
        }
    )
    sec.notes.append(NOTE)


if __name__ == "__main__":
    import run as bench

    sys.exit(bench.standalone(KEY))
