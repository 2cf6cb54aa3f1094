"""Section execution: an organization-shaped sweep through SweepStateMachine (PRODUCT.md section 9),
API calls against the floor and invocations per pair; and a model of the wall time at AWS scale.

Measured: the hub (template.yaml, in moto's default account) manages 5 more accounts; spoke.yaml is
deployed in every (account, region) pair (6 accounts x 3 regions = 18 pairs), each seeded with a
fleet (bench/seed.py, 500 images per pair by default: 9,000 in all). The state machine is created in
moto from the template's own definition file and executed by moto's interpreter, its Lambda tasks
run in-process (ami_lifecycle_localaws/stepfunctions.py), with MaxRetirementsPerRun=0 (a deliberate
clean-up: no plan phase, so the calls compare with the floor). A second execution then runs with the
default cap (100) over the swept fleet: the plan phase's dry run of every pair is the price of an
execution-wide cap, and it shows. Calls are counted per account, region and action (accounts.py's
counter); Step Functions' own API calls (the bench starting and polling the execution) are left out.

Targets: every pair's calls at most its floor (floor.py) + 10%, plus one AssumeRole per spoke pair
invocation at most (each pair is its own invocation now, possibly in another container); the
engine's expected retirements retired in every pair and nothing else; every task result under
Step Functions' 256 KiB.

Modelled: the wall time of 50 accounts x 17 regions x 2,000 images at SweepConcurrency 10 and 40 (see
`model` and the section notes for every figure and its source).

    .venv/bin/python bench/execution.py [--execution-images N] [--execution-accounts A]   # alone
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import local
import seed
from accounts import _InAccount, counted
from ami_lifecycle_localaws import stepfunctions as sf
from floor import NOTE, RegionPlan, floor_for
from harness import MET, Run, Section, calls_text, check_max, fmt_n, fmt_s, stdout_to_devnull

KEY = "execution"
TITLE = "Sweep through SweepStateMachine"
HUB = local.ACCOUNT
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")
SLACK = 1.10
Pair = tuple[str, str]
# Once per execution, not per pair: the digest (SNS Publish, by the summary step).
PER_EXECUTION = frozenset({"Publish"})
# Step Functions' own API (the bench starting and polling executions), not the sweep's.
SFN_ACTIONS = frozenset(
    {"CreateStateMachine", "StartExecution", "DescribeExecution", "DescribeStateMachine", "GetExecutionHistory"}
)

# ------------------------------------------------------------------ the model's figures
#
# Documented (AWS):
# - EC2 throttles per account and per region, token buckets per API; mutating actions (DeregisterImage)
#   200 tokens, refill 5/s; non-mutating 100, refill 20/s. Pairs never share a bucket, so fanning out
#   over pairs adds no EC2 throttling. https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html
# - Step Functions Standard: StateTransition bucket 5,000, refill 1,500/s (us-east-1, us-west-2,
#   eu-west-1; 800 and 500 elsewhere); StartExecution 1,300 and 300/s; 25,000 history events per
#   execution. https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html
# - Distributed Map: up to 10,000 concurrent child executions (inline Map: 40), each child its own
#   history. https://docs.aws.amazon.com/step-functions/latest/dg/state-map-distributed.html
# - Lambda: 1,000 concurrent executions per region by default, 900 s timeout.
#   https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
# - Standard workflows cost USD 0.025 per 1,000 state transitions (us-east-1).
#   https://aws.amazon.com/step-functions/pricing/
# Assumed (AWS publishes no latency figures; the same per-call figures as bench/scale.py), as
# (optimistic, pessimistic) seconds:
LAT_PAGE = (1.0, 2.0)  # DescribeImages, a page of 1,000 images with their tags
LAT_MUTATING = (0.10, 0.30)  # DeregisterImage (with DeleteAssociatedSnapshots), CreateTags, ...
LAT_OTHER = (0.15, 0.50)  # DescribeImageReferences, DescribeImageAttribute, listings, AssumeRole
LAT_TRANSITION = (0.02, 0.10)  # one state transition of a Standard workflow
LAT_CHILD_START = (0.2, 1.0)  # a Distributed Map child execution starting
LAT_INVOKE = (0.03, 0.10)  # Lambda's own overhead per synchronous invocation, warm
COLD_START = (0.6, 1.5)  # a new execution environment (bench cold_start: imports; plus Lambda's init)
MUTATING_BURST, MUTATING_REFILL = 200, 5.0
LAMBDA_BUDGET_S = 900 - 60  # the function stops with a cursor 60 s before its timeout
TRANSITIONS_PER_PAIR = 9  # SweepPair, MoreOfThePair, RecordThePair (+ entered/exited), per invocation 3 more
MUTATING = frozenset(
    {"DeregisterImage", "CreateTags", "DeleteTags", "EnableImageDeprecation", "DisableImage", "DeleteSnapshot"}
)
# Calls whose number grows with the pair's images (the rest are a few listings per pair).
PER_IMAGE = frozenset(
    {
        "DescribeImageAttribute",
        "DescribeImageReferences",
        "DescribeSnapshotAttribute",
        "DeregisterImage",
        "CreateTags",
        "EnableImageDeprecation",
        "SendMessage",
        "SendMessageBatch",
    }
)


def add_options(parser: Any) -> None:
    group = parser.add_argument_group("execution")
    group.add_argument(
        "--execution-images", dest="execution_images", type=int, help="images per pair (default 500; 100 with --quick)"
    )
    group.add_argument(
        "--execution-accounts",
        dest="execution_accounts",
        type=int,
        help="accounts, the hub's included (default 6; 3 with --quick)",
    )


def run(sec: Section, ctx: Run) -> None:
    opts = ctx.opts
    per_pair = getattr(opts, "execution_images", None) or (100 if opts.quick else 500)
    n_accounts = getattr(opts, "execution_accounts", None) or (3 if opts.quick else 6)
    spokes = tuple(f"{i:012d}" for i in range(222222222222, 222222222222 + (n_accounts - 1)))
    accounts = (HUB, *spokes)
    pairs: list[Pair] = [(a, r) for a in accounts for r in REGIONS]
    sec.title = f"{TITLE}: {len(accounts)} accounts x {len(REGIONS)} regions x {per_pair:,} images" + (
        " (--quick)" if opts.quick else ""
    )
    local.local_aws(ctx).reset()  # a fresh moto: the sections before seeded the same accounts
    now = datetime.now(UTC)
    parameters = {
        "SweepRegions": ",".join(REGIONS),
        "MaxRetirementsPerRun": "0",
        "ManagedAccounts": ",".join(spokes),
        "SweepConcurrency": "10",
    }
    t0 = time.perf_counter()
    stack = local.stack(ctx, parameters, "bench-execution")  # hub + spoke.yaml in every pair
    fleets: dict[Pair, seed.Fleet] = {}
    plans: dict[Pair, RegionPlan] = {}
    for account, region in pairs:
        fleet = seed.seed_fleet(region, per_pair, now, _InAccount(stack, account), account=account)
        fleets[(account, region)] = fleet
        plans[(account, region)] = floor_for(fleet, now)
    ctx.say(
        f"execution: deployed and seeded {per_pair * len(pairs):,} images in {len(pairs)} pairs "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    arn = stack.create_state_machine("SweepStateMachine")
    client = stack.client("stepfunctions")
    local.freeze_heap()

    sf.reset_calls()
    with counted() as counter, stdout_to_devnull():
        m = local.measure(lambda: sf.run(client, arn, {"source": "schedule"}, timeout_s=3600, poll_s=0.2))
        first = Counter(counter.calls)
        tasks = sf.calls()
        largest = sf.largest_result()
        counter.reset()
        sf.reset_calls()
        stack.parameters["MaxRetirementsPerRun"] = "100"  # read by the functions at each invocation
        capped = local.measure(lambda: sf.run(client, arn, {"source": "manual"}, timeout_s=3600, poll_s=0.2))
        second = Counter(counter.calls)
        second_tasks = sf.calls()
    execution = m.result if isinstance(m.result, dict) else {}
    out = execution.get("output") or {}
    ctx.say(f"execution: {execution.get('status')} in {m.wall:.1f} s, {len(tasks)} tasks")

    by_pair: dict[Pair, Counter[str]] = {p: Counter() for p in pairs}
    elsewhere: Counter[str] = Counter()
    assume = 0
    for (account, region, action), n in first.items():
        if action in SFN_ACTIONS:
            continue
        if action == "AssumeRole":
            assume += n
        elif (account, region) in by_pair and action not in PER_EXECUTION:
            by_pair[(account, region)][action] += n
        else:
            elsewhere[action] += n
    floor: Counter[str] = Counter()
    for p in pairs:
        floor.update(pair_floor(plans[p]))
    sweeps = [t for t in tasks if isinstance(t.payload, dict) and "operation" not in t.payload]
    spoke_invocations = sum(1 for t in sweeps if t.payload.get("accounts") != [HUB])
    floor["AssumeRole"] = spoke_invocations  # at most one per invocation in a spoke account
    floor_total = sum(floor.values())
    measured_total = sum(n for (_a, _r, action), n in first.items() if action not in SFN_ACTIONS)

    sec.row("deployment", f"hub {HUB}/{REGIONS[0]}; spoke.yaml in {len(stack.spokes)} pairs; SweepConcurrency 10")
    sec.row(
        "fleet",
        f"{per_pair * len(pairs):,} images in {len(pairs)} pairs ({sum(p.managed for p in plans.values()):,} managed)",
    )
    pairs_out = out.get("pairs", {})
    expected = {p: plan.expected_retired for p, plan in plans.items()}
    wrong = []
    for p in pairs:
        left = seed.still_registered(p[1], sorted(expected[p]), p[0])
        region_out = out.get("accounts", {}).get(p[0], {}).get("regions", {}).get(p[1], {})
        if left or region_out.get("status", "complete") != "complete":
            wrong.append(p)
    sec.row(
        "execution / pairs complete",
        f"{execution.get('status')} / {pairs_out.get('complete', 0)} of {pairs_out.get('total', 0)}",
        f"SUCCEEDED / {len(pairs)} of {len(pairs)}",
        MET if execution.get("status") == "SUCCEEDED" and pairs_out.get("complete") == len(pairs) else "MISSED",
    )
    expected_n = sum(len(v) for v in expected.values())
    retired = (out.get("totals") or {}).get("retired", 0)
    sec.row(
        "retired, every pair",
        f"{retired:,}",
        f"{expected_n:,} (the engine's expectation, pair by pair)",
        MET if not wrong and retired == expected_n else f"MISSED: {wrong[:4]}",
    )
    iterations = Counter(
        int(r.get("iterations", 1)) for a in (out.get("accounts") or {}).values() for r in a["regions"].values()
    )
    sec.row(
        "invocations per pair",
        ", ".join(f"{k}: {v} pairs" for k, v in sorted(iterations.items())),
        note=f"{len(sweeps)} sweep invocations, {len(tasks) - len(sweeps)} steps (pairs, record, summarize)",
    )
    limit = floor_total * SLACK
    sec.row(
        "API calls, total (cap 0: no plan phase)",
        fmt_n(measured_total),
        f"<= {fmt_n(limit)} (floor {fmt_n(floor_total)} + 10%)",
        check_max(measured_total, limit, fmt_n),
    )
    sec.row(
        "AssumeRole",
        str(assume),
        f"<= {spoke_invocations} (one per spoke-pair invocation)",
        MET if assume <= spoke_invocations else "MISSED",
    )
    worst = max(pairs, key=lambda p: sum(by_pair[p].values()) / max(1, sum(pair_floor(plans[p]).values())))
    worst_calls, worst_floor = sum(by_pair[worst].values()), sum(pair_floor(plans[worst]).values())
    sec.row(
        "worst pair against its floor",
        f"{worst[0]} {worst[1]}: {worst_calls:,} calls",
        f"<= {fmt_n(worst_floor * SLACK)} (floor {worst_floor:,} + 10%)",
        check_max(worst_calls, worst_floor * SLACK, fmt_n),
    )
    above: Counter[str] = Counter()
    for p in pairs:
        above.update(by_pair[p])
    sec.row("above the floor", calls_text(above - floor, 8) or "nothing")
    sec.row("calls outside the pairs", calls_text(elsewhere, 6) or "none")
    sec.row(
        "largest task result",
        f"{largest:,} bytes",
        f"< {sf.PAYLOAD_LIMIT:,} (Step Functions' 256 KiB)",
        check_max(largest, sf.PAYLOAD_LIMIT - 1, fmt_n),
    )
    sweep_results = [t.size for t in sweeps]
    # The function keeps at most STATE_MACHINE_IMAGES entries per pair for the state machine (the
    # rest are counted in the totals): past that, a pair's result does not grow with its images.
    # (Imported here: the layer's Powertools objects must be built in the functions' environment.)
    from ami_lifecycle.services.sweep import STATE_MACHINE_IMAGES

    growth = min(2_000, STATE_MACHINE_IMAGES) / min(per_pair, STATE_MACHINE_IMAGES)
    at_2000 = max(sweep_results, default=0) * growth
    sec.row(
        "a pair's sweep result at 2,000 images (extrapolated)",
        f"{fmt_n(at_2000)} bytes",
        f"< {sf.PAYLOAD_LIMIT:,}",
        check_max(at_2000, sf.PAYLOAD_LIMIT - 1, fmt_n),
        note=(
            "invoked by the state machine, the function keeps at most sweep.STATE_MACHINE_IMAGES entries per "
            "pair (retirements and errors first; the totals count every image): over 256 KiB AWS would fail "
            "the pair's child execution (States.DataLimitExceeded, not caught by States.ALL)"
        ),
    )
    sec.row(
        "time (wall; our CPU; moto CPU)",
        f"{fmt_s(m.wall)}; {fmt_s(m.client_cpu)}; {fmt_s(m.server_cpu)}",
        note="local, one handler at a time (moto's interpreter; the router serializes): not AWS latency",
    )
    second_total = sum(n for (_a, _r, action), n in second.items() if action not in SFN_ACTIONS)
    second_sweeps = [t for t in second_tasks if isinstance(t.payload, dict) and "operation" not in t.payload]
    second_out = (capped.result or {}).get("output") or {}
    sec.row(
        "again, MaxRetirementsPerRun 100: calls / sweep invocations",
        f"{fmt_n(second_total)} / {len(second_sweeps)} ({(second_out.get('plan') or {}).get('would_retire', '?')} "
        "would retire)",
        note="the plan phase: a dry run of every pair before the real one (the cap counts all pairs together)",
    )

    per_image_cpu = m.client_cpu / max(1, per_pair * len(pairs))
    per_pair_calls = _per_pair_calls(by_pair, per_pair)
    for concurrency in (10, 40):
        for cap_label, plan_phase in (("cap 0", False), ("cap 100", True)):
            best, worst_s = (
                model(50, 17, 2_000, concurrency, per_pair_calls, per_image_cpu, s, plan_phase) for s in (0, 1)
            )
            sec.row(
                f"model: 50 x 17 x 2,000, concurrency {concurrency}, {cap_label}",
                f"{_hours(best['wall_s'])} to {_hours(worst_s['wall_s'])}",
                note=(
                    f"per pair {fmt_s(best['pair_s'])}-{fmt_s(worst_s['pair_s'])}, "
                    f"{worst_s['invocations']} invocation(s); {worst_s['transitions']:,} transitions "
                    f"(~USD {worst_s['transitions'] * 0.025 / 1000:.2f})"
                ),
            )
    sec.data.update(
        {
            "accounts": len(accounts),
            "regions": list(REGIONS),
            "images_per_pair": per_pair,
            "status": execution.get("status"),
            "calls_total": measured_total,
            "floor_total": floor_total,
            "calls_by_pair": {f"{a}/{r}": dict(c) for (a, r), c in by_pair.items()},
            "invocations_per_pair": dict(iterations),
            "largest_task_result_bytes": largest,
            "wall_s": m.wall,
            "capped_calls_total": second_total,
            "model_per_pair_calls_2000": per_pair_calls(2_000),
        }
    )
    sec.notes.append(
        "Floor per pair: floor.py's, plus one DescribeSnapshots page per 1,000 snapshots (orphans) and one "
        "Recycle Bin ListRules per resource type (image, snapshot) when the pair retires something, plus at "
        "most one AssumeRole per invocation in a spoke account (each pair is its own invocation, which may "
        "land in a container whose credentials are cached); the digest's SNS Publish is once per execution. " + NOTE
    )
    sec.notes.append(
        "Model: per pair, the calls measured here scaled to 2,000 images (DescribeImages one per 1,000; the "
        "per-candidate and per-retirement calls in proportion; the listings as measured), one at a time at the "
        "assumed latencies (optimistic to pessimistic: DescribeImages page 1-2 s, mutating 0.1-0.3 s, others "
        "0.15-0.5 s, as bench/scale.py), DeregisterImage past EC2's burst of 200 at its refill of 5/s, our CPU "
        "as measured (x 1769/512 for a 512 MB function), plus Step Functions' overhead per pair (a child "
        "execution start 0.2-1 s, 9 transitions at 0.02-0.1 s, Lambda's 0.03-0.1 s per invocation, a cold "
        "start of 0.6-1.5 s per concurrent environment); invocations = ceil(pair time / 840 s). Wall = "
        "ceil(850 / concurrency) waves per phase (uniform pairs), a plan phase doubling the reads when the "
        "cap is on. Not limits: StateTransition refill 1,500/s, StartExecution 300/s, Lambda 1,000 concurrent, "
        "EC2 buckets per account and region (sources in bench/execution.py)."
    )


def pair_floor(plan: RegionPlan) -> Counter[str]:
    """floor.py's floor of a pair, plus what every correct sweep of it now reads: its snapshots
    (orphaned ones are deleted: one DescribeSnapshots page per 1,000, as real EC2 pages) and, when it
    retires something, the Recycle Bin's rules of images and of snapshots (the report says until when
    each is restorable)."""
    floor = Counter(plan.floor)
    floor["DescribeSnapshots"] += max(1, math.ceil(plan.snapshots_after / 1000))
    if plan.expected_retired:
        floor["ListRules"] += 2  # one per resource type: the image, and its snapshots
    return floor


def _per_pair_calls(by_pair: dict[Pair, Counter[str]], per_pair: int) -> Any:
    """calls(n): the average pair's calls scaled to n images (see the section notes)."""
    total: Counter[str] = Counter()
    for c in by_pair.values():
        total.update(c)
    avg = {a: v / max(1, len(by_pair)) for a, v in total.items()}

    def calls(n: int) -> dict[str, float]:
        out: dict[str, float] = {}
        for action, v in avg.items():
            if action == "DescribeImages":
                out[action] = max(v, math.ceil(n / 1000))
            elif action in PER_IMAGE:
                out[action] = v * n / per_pair
            else:
                out[action] = v
        return out

    return calls


def model(
    accounts: int,
    regions: int,
    images: int,
    concurrency: int,
    calls_for: Any,
    image_cpu: float,
    scenario: int,
    plan_phase: bool,
) -> dict[str, Any]:
    """The modelled wall time of one execution (section notes)."""
    pairs = accounts * regions
    calls = calls_for(images)

    def pair_seconds(real: bool) -> float:
        s = 0.0
        for action, n in calls.items():
            if action == "DescribeImages":
                s += n * LAT_PAGE[scenario]
            elif action in MUTATING:
                if not real:
                    continue  # a dry run writes nothing
                burst = min(n, MUTATING_BURST)
                s += burst * LAT_MUTATING[scenario] + (n - burst) * max(LAT_MUTATING[scenario], 1 / MUTATING_REFILL)
            else:
                s += n * LAT_OTHER[scenario]
        s += LAT_OTHER[scenario]  # AssumeRole
        s += images * image_cpu * (1769 / 512)
        return s

    sweep_s = pair_seconds(True)
    invocations = max(1, math.ceil(sweep_s / LAMBDA_BUDGET_S))
    overhead = (
        LAT_CHILD_START[scenario]
        + (TRANSITIONS_PER_PAIR + 3 * (invocations - 1)) * LAT_TRANSITION[scenario]
        + (invocations + 1) * LAT_INVOKE[scenario]
    )
    pair_s = sweep_s + overhead
    waves = math.ceil(pairs / concurrency)
    wall = waves * pair_s + min(concurrency, pairs) / concurrency * COLD_START[scenario] + 3 * LAT_INVOKE[scenario]
    transitions = pairs * (TRANSITIONS_PER_PAIR + 3 * (invocations - 1)) + 8
    if plan_phase:
        plan_s = pair_seconds(False) + overhead
        wall += waves * plan_s
        transitions *= 2
    return {"wall_s": wall, "pair_s": pair_s, "invocations": invocations, "transitions": transitions}


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


if __name__ == "__main__":
    import run as bench

    sys.exit(bench.standalone(KEY))
