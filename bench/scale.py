"""Section scale: one-region sweeps of growing fleets, and the largest fleet one 900 s invocation can sweep.

Each point seeds one region (bench/seed.py) and invokes RetentionSweepFunction through LocalStack
with `{"regions": [region], "dry_run": false}` (MaxRetirementsPerRun=0), twice for the smaller
points (the second sweep has nothing left to retire, which separates the per-image from the
per-retirement CPU). What moto measures (the CPU of our code, metered apart from moto's) is kept
apart from what AWS adds (latency, rate limits): a model with assumed latencies gives the largest
fleet one invocation can sweep. The 20,000-image point is skipped, and said so, when it would not
fit the run's --budget (--full-scale forces it).

    .venv/bin/python bench/scale.py [--full-scale]    # this section alone
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import local
import seed
from floor import floor_for
from harness import Run, Section, check_max, fmt_n, fmt_s, stdout_to_devnull
from local import Measured

KEY = "scale"
TITLE = "Scale: one-region sweeps and the 900 s limit"
FUNCTION = "RetentionSweepFunction"
REGIONS = ("ap-southeast-1", "ap-southeast-2", "ap-northeast-1", "ca-central-1")

# Lambda limits (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
LAMBDA_TIMEOUT_S = 900
# Lambda gives a function CPU in proportion to its memory: one full vCPU at 1,769 MB.
FUNCTION_MEMORY_MB = 512
CPU_SLOWDOWN = 1769 / FUNCTION_MEMORY_MB

# Assumed real-AWS latencies (seconds per call) for the 900 s calculation: (optimistic, pessimistic).
LAT_PAGE = (1.0, 2.0)  # DescribeImages, page of 1000 images with tags
LAT_DEREGISTER = (0.10, 0.30)  # DeregisterImage with DeleteAssociatedSnapshots
LAT_OTHER = (0.15, 0.50)  # DescribeImageReferences (10 ids), DescribeSnapshots page, listings
# EC2's default request-rate bucket for mutating actions (DeregisterImage): 200 tokens, +5 per second.
MUTATING_BURST, MUTATING_REFILL = 200, 5.0


def add_options(parser: Any) -> None:
    group = parser.add_argument_group("scale")
    group.add_argument("--full-scale", action="store_true", help="measure the 20,000-image point whatever the budget")


def safety_margin_ms() -> int:
    """The sweep's stop-early margin before the Lambda timeout (runtime.budget; services.sweep before)."""
    try:
        from ami_lifecycle.runtime.budget import SAFETY_MARGIN_MS
    except ImportError:
        from ami_lifecycle.services.sweep import SAFETY_MARGIN_MS
    return int(SAFETY_MARGIN_MS)


@dataclass
class ScalePoint:
    n: int
    managed: int
    retired: int
    candidates: int
    real: Measured  # the first sweep: retires the expired images
    again: Measured | None  # the same sweep right after: nothing left to retire


def sweep_point(n: int, region: str, ctx: Run, now: datetime, *, twice: bool) -> ScalePoint:
    fleet = seed.seed_fleet(region, n, now, local.session())
    plan = floor_for(fleet, now)
    stack = local.stack(ctx, {"SweepRegions": region, "MaxRetirementsPerRun": "0"}, f"bench-scale-{n}")
    local.freeze_heap()
    payload = {"regions": [region], "dry_run": False}
    again = None
    with stdout_to_devnull():
        stack.invoke(FUNCTION, {"regions": "not a list"})  # refused: loads the handler module
        real = local.measure(lambda: stack.invoke(FUNCTION, payload))
        if twice:
            again = local.measure(lambda: stack.invoke(FUNCTION, payload))
    retired = real.result.get("totals", {}).get("retired", 0) if isinstance(real.result, dict) else 0
    ctx.say(
        f"scale: {n:,} images: {real.wall:.1f} s, {real.total_calls:,} calls"
        + (f"; again {again.wall:.1f} s, {again.total_calls:,} calls" if again else "")
    )
    return ScalePoint(n, plan.managed, retired, plan.candidates, real, again)


def fit_costs(samples: list[tuple[int, int, float]]) -> tuple[float, float, float]:
    """Least squares for cpu = fixed + a x images + b x retired (normal equations, 3x3)."""
    rows = [(1.0, float(n), float(r)) for n, r, _ in samples]
    ys = [y for _, _, y in samples]
    m = [[sum(x[i] * x[j] for x in rows) for j in range(3)] for i in range(3)]
    v = [sum(x[i] * y for x, y in zip(rows, ys, strict=True)) for i in range(3)]
    for col in range(3):  # Gauss-Jordan with partial pivoting
        pivot = max(range(col, 3), key=lambda r: abs(m[r][col]))
        m[col], m[pivot], v[col], v[pivot] = m[pivot], m[col], v[pivot], v[col]
        if abs(m[col][col]) < 1e-12:
            return (0.0, 0.0, 0.0)
        for r in range(3):
            if r != col:
                f = m[r][col] / m[col][col]
                m[r] = [a - f * b for a, b in zip(m[r], m[col], strict=True)]
                v[r] -= f * v[col]
    return (v[0] / m[0][0], v[1] / m[1][1], v[2] / m[2][2])


def seconds_for(n: int, retire_fraction: float, costs: dict[str, float], scenario: int) -> float:
    """Modelled real-AWS time of a one-region sweep of n managed images (see the section notes)."""
    pages = math.ceil(n / 1000)
    retire = int(n * retire_fraction)
    candidates = retire * 1.1  # some candidates turn out to be in use
    other_calls = math.ceil(candidates / 10) + pages + 3  # references + snapshot pages + listings
    burst = min(retire, MUTATING_BURST)
    per_dereg = LAT_DEREGISTER[scenario] + costs["retire_cpu"] * CPU_SLOWDOWN
    # One call at a time at its latency, but past the bucket's burst no faster than its refill.
    dereg_time = burst * per_dereg + (retire - burst) * max(per_dereg, 1 / MUTATING_REFILL)
    cpu = (costs["fixed_cpu"] + n * costs["image_cpu"]) * CPU_SLOWDOWN
    return pages * LAT_PAGE[scenario] + other_calls * LAT_OTHER[scenario] + dereg_time + cpu


def largest(retire_fraction: float, costs: dict[str, float], scenario: int, budget_s: float) -> int:
    lo, hi = 0, 20_000_000
    while hi - lo > 100:
        mid = (lo + hi) // 2
        if seconds_for(mid, retire_fraction, costs, scenario) <= budget_s:
            lo = mid
        else:
            hi = mid
    return lo


def run(sec: Section, ctx: Run) -> None:
    opts = ctx.opts
    margin_ms = safety_margin_ms()
    local.local_aws(ctx)
    now = datetime.now(UTC)
    small, mid, big = (300, 2_000, 0) if opts.quick else (1_000, 10_000, 50_000)
    regions = iter(REGIONS)
    points = [
        sweep_point(small, next(regions), ctx, now, twice=True),
        sweep_point(mid, next(regions), ctx, now, twice=True),
    ]
    extrapolated, skipped = False, ""
    if big:
        # Predict the big point from the mid one: a sweep's wall time here grows faster than n (moto filters
        # every image of the region for each page, and its DeregisterImage scans them all too).
        p = points[-1]

        def predict(size: int) -> float:
            k = size / p.n
            return p.real.wall * k**1.75 + 0.3 * k  # + seeding; measured: 10k -> 20k took 2.2x .. 3.4x

        ctx.say(f"scale: {big:,} images predicted at ~{predict(big):.0f} s in moto")
        if predict(big) <= 90:
            points.append(sweep_point(big, next(regions), ctx, now, twice=False))
        else:
            extrapolated = True
            fits = ctx.elapsed() + predict(2 * mid) <= opts.budget
            if fits or opts.full_scale:
                points.append(sweep_point(2 * mid, next(regions), ctx, now, twice=False))
            else:
                skipped = (
                    f"{2 * mid:,} images not measured: ~{predict(2 * mid):.0f} s more would take the run past its "
                    f"{opts.budget:.0f} s budget (--budget, or --full-scale to force it)"
                )
                ctx.say(f"scale: {skipped}")
    for p in points:
        value = (
            f"{fmt_s(p.real.wall)} wall, {p.real.total_calls:,} calls, {p.retired:,} retired; "
            f"our CPU {fmt_s(p.real.client_cpu)}, moto CPU {fmt_s(p.real.server_cpu)}"
        )
        sec.row(f"{p.n:,} images ({p.managed:,} managed)", value)
        if p.again:
            sec.row(
                "  the same sweep again (nothing to retire)",
                f"{fmt_s(p.again.wall)} wall, {p.again.total_calls:,} calls; our CPU {fmt_s(p.again.client_cpu)}, "
                f"moto CPU {fmt_s(p.again.server_cpu)}",
            )

    # Our CPU (this process minus moto) = fixed + per image listed x images + per retirement x retired,
    # fitted by least squares over every sweep measured (the second sweeps retire nothing, which
    # separates the per-image from the per-retirement cost).
    samples = [(p.managed, p.retired, p.real.client_cpu) for p in points]
    samples += [(p.managed - p.retired, 0, p.again.client_cpu) for p in points if p.again]
    fixed, image_cpu, retire_cpu = fit_costs(samples)
    costs = {"fixed_cpu": max(0.0, fixed), "image_cpu": max(0.0, image_cpu), "retire_cpu": max(0.0, retire_cpu)}
    sec.row(
        "our CPU: per image / per retirement / fixed",
        f"{fmt_s(costs['image_cpu'])} / {fmt_s(costs['retire_cpu'])} / {fmt_s(costs['fixed_cpu'])}",
        note=f"x{CPU_SLOWDOWN:.1f} at {FUNCTION_MEMORY_MB} MB",
    )
    sec.rows[-1].value += f" (this machine; x{CPU_SLOWDOWN:.1f} on a {FUNCTION_MEMORY_MB} MB Lambda)"
    if skipped:
        sec.row(f"{2 * mid:,} images", "skipped", note=skipped)
        sec.rows[-1].value = f"skipped: {skipped}"
    if extrapolated:
        last = points[-1]
        k = big / last.n
        sec.row(
            f"{big:,} images (extrapolated from {last.n:,})",
            f"~{fmt_n(last.real.total_calls * k)} calls, our CPU ~{fmt_s(last.real.client_cpu * k)} (linear)"
            + "; modelled on AWS {:,.0f} .. {:,.0f} s".format(
                *(seconds_for(int(big * last.managed / last.n), last.retired / last.managed, costs, s) for s in (0, 1))
            ),
            note="not measured: over ~90 s in moto",
        )
    budget = LAMBDA_TIMEOUT_S - margin_ms / 1000
    results: dict[str, Any] = {}
    for label, fraction in (
        ("10% to retire", 0.10),
        ("1.1% to retire (a daily sweep, 90d)", 1 / 90),
        ("nothing to retire", 0.0),
    ):
        best = largest(fraction, costs, 0, budget)
        worst = largest(fraction, costs, 1, budget)
        sec.row(f"largest fleet in one 900 s invocation, {label}", f"{fmt_n(worst)} .. {fmt_n(best)} images")
        results[label] = {"pessimistic": worst, "optimistic": best}
    at_10k = [seconds_for(10_000, 0.10, costs, s) for s in (0, 1)]
    sec.row(
        "10,000 images, 10% to retire, on AWS (modelled)",
        f"{at_10k[0]:.0f} .. {at_10k[1]:.0f} s",
        f"<= {budget:.0f} s",
        check_max(at_10k[1], budget, lambda s: f"{s:.0f} s"),
    )

    sec.data.update(
        {
            "points": [
                {
                    "n": p.n,
                    "managed": p.managed,
                    "retired": p.retired,
                    "candidates": p.candidates,
                    "first_sweep": p.real.to_dict(),
                    "second_sweep": p.again.to_dict() if p.again else None,
                }
                for p in points
            ],
            "extrapolated_to": big if extrapolated else None,
            "costs_s": costs,
            "largest_fleet": results,
            "modelled_10k_s": at_10k,
            "assumptions": {
                "latency_page_s": LAT_PAGE,
                "latency_deregister_s": LAT_DEREGISTER,
                "latency_other_s": LAT_OTHER,
                "mutating_burst": MUTATING_BURST,
                "mutating_refill_per_s": MUTATING_REFILL,
                "cpu_slowdown": CPU_SLOWDOWN,
                "budget_s": budget,
            },
        }
    )
    sec.notes.append(
        "900 s model (one region; the sweep makes its calls one at a time): T(n) = pages x L_page + "
        "(ceil(1.1 x retired / 10) + pages + 3) x L_other + retired x (L_dereg + our CPU per retirement) + "
        f"(fixed + n x per-image) CPU x {CPU_SLOWDOWN:.1f}, pages = ceil(n/1000); past EC2's burst of "
        f"{MUTATING_BURST} mutating calls, DeregisterImage goes no faster than the bucket's refill of "
        f"{MUTATING_REFILL:.0f}/s (assumed default request-rate bucket for mutating actions; the adaptive retry "
        "mode slows the client to it). Latencies assumed, optimistic .. pessimistic: DescribeImages page of 1000 "
        f"{LAT_PAGE[0]:g}..{LAT_PAGE[1]:g} s, DeregisterImage {LAT_DEREGISTER[0]:g}..{LAT_DEREGISTER[1]:g} s, "
        f"other calls {LAT_OTHER[0]:g}..{LAT_OTHER[1]:g} s. Budget: 900 s minus the sweep's "
        f"{margin_ms / 1000:.0f} s safety margin. Our CPU is this process's CPU minus moto's (metered per "
        f"request); a {FUNCTION_MEMORY_MB} MB function gets ~{FUNCTION_MEMORY_MB / 1769:.2f} vCPU, hence x"
        f"{CPU_SLOWDOWN:.1f}."
    )
    sec.notes.append(
        "Past one invocation the sweep stops cleanly and returns a cursor; the state machine invokes it "
        "again with it (up to sweep.MAX_CHAIN times); retired images are gone on the next pass, so a backlog drains "
        "over several invocations. What cannot be split is listing and deciding one region: the 'nothing to "
        "retire' row is that hard limit."
    )
    if extrapolated:
        sec.notes.append(
            f"{big:,} images in one region were not measured: moto alone would take several minutes (it "
            "serializes ~1,000 images per second, and its DeregisterImage scans every image of the region), "
            f"so {points[-1].n:,} was measured and the rest is extrapolated linearly for our side (calls and "
            "our CPU are linear in n; moto's time is not ours)."
        )


if __name__ == "__main__":
    import run as bench

    sys.exit(bench.standalone(KEY))
