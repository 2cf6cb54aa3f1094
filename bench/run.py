"""ami-lifecycle benchmarks: API calls, throughput and cold start, measured against their limits.

    .venv/bin/python bench/run.py            # everything, the table on stdout (3-5 minutes on 2 cores)
    .venv/bin/python bench/run.py --quick    # small fleets, fewer repetitions: a smoke run (1-2 minutes)
    .venv/bin/python bench/run.py --json     # the results as JSON on stdout (the table goes to stderr)
    .venv/bin/python bench/run.py --only engine,cold_start
    .venv/bin/python bench/run.py --full-scale   # also the 20,000-image sweep whatever the time budget

--budget SECONDS (default 330) bounds the run: the one optional measurement (the 20,000-image sweep)
is skipped, and said so, when it would not fit. BENCH_STRICT=1 makes a missed target exit 1.

Sections (each one fails soft: a "not available: <reason>" row, never a crash):

- sweep_calls: a retention sweep (RetentionSweepFunction, fired as its schedule fires it) over a
  seeded fleet of 10,000 images in 3 regions, API calls counted by the local AWS, against the floor.
- event_path: ImageEventsFunction per `available` event, routed by the template's rule.
- engine: the pure retention engine (and the adoption decision) per second, no AWS.
- cold_start: importing each handler as Lambda does, in a fresh interpreter, against `import boto3`.
- package: `sam build`, unzipped and zipped sizes against the Lambda limits.
- scale: one-region sweeps of growing fleets, what moto measures (the CPU of our code) apart from
  what AWS adds (latency, rate limits), and the largest fleet one 900 s invocation can sweep.

The local AWS is moto (ThreadedMotoServer on 127.0.0.1, random port) with the project's documented
extension (ami_lifecycle_localaws.motoext); fleets are seeded through moto's backend (bench/seed.py).
Results also go to .bench/last-run.txt and .bench/last-run.json. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import (  # noqa: E402
    ROOT,
    Measured,
    Progress,
    Section,
    calls_text,
    check_max,
    check_min,
    fmt_mb,
    fmt_n,
    fmt_s,
    measure,
    median,
)

SAM = ROOT / ".venv-sam" / "bin" / "sam"
LAYER_DIR = ROOT / "layers" / "core"
HOME = "us-east-1"
FLEET_REGIONS = ("us-east-1", "us-west-2", "eu-west-1")
SCALE_REGIONS = ("ap-southeast-1", "ap-southeast-2", "ap-northeast-1", "ca-central-1")
REPLICAS = ("us-west-2", "eu-west-1")
ROUTING_ACTIONS = frozenset({"TestEventPattern"})  # the local runner's routing, not the product's calls
SQS_ACTIONS = frozenset({"SendMessage", "SendMessageBatch"})

# Lambda limits (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
LAMBDA_TIMEOUT_S = 900
UNZIPPED_LIMIT = 250 * 1024 * 1024  # function + all its layers
ZIPPED_LIMIT = 50 * 1024 * 1024  # direct upload of one .zip
# Lambda gives a function CPU in proportion to its memory: one full vCPU at 1,769 MB.
FUNCTION_MEMORY_MB = 512
CPU_SLOWDOWN = 1769 / FUNCTION_MEMORY_MB

# Assumed real-AWS latencies (seconds per call) for the 900 s calculation: (optimistic, pessimistic).
LAT_PAGE = (1.0, 2.0)  # DescribeImages, page of 1000 images with tags
LAT_DEREGISTER = (0.10, 0.30)  # DeregisterImage with DeleteAssociatedSnapshots
LAT_OTHER = (0.15, 0.50)  # DescribeImageReferences (10 ids), DescribeSnapshots page, listings
# EC2's default request-rate bucket for mutating actions (DeregisterImage): 200 tokens, +5 per second.
MUTATING_BURST, MUTATING_REFILL = 200, 5.0


@dataclass
class Options:
    quick: bool
    json: bool
    only: set[str] | None
    budget_s: float = 330.0  # the whole run; optional extra measurements are skipped past it
    full_scale: bool = False


# ================================================================ shared local AWS


class Lazy:
    """The local AWS and the LocalStack-s, started on first use, shared by the sections."""

    def __init__(self, say: Progress) -> None:
        self.say = say
        self.aws: harness.LocalAws | None = None
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def local_aws(self) -> harness.LocalAws:
        if self.aws is None:
            self.aws = harness.start_local_aws()
            self.say(f"local AWS (moto) at {self.aws.endpoint}")
        return self.aws

    def stop(self) -> None:
        if self.aws is not None:
            self.aws.stop()


def _session() -> Any:
    import boto3

    return boto3.Session(region_name=HOME)


def _stack(parameters: dict[str, str], stack_name: str) -> Any:
    from ami_lifecycle_localaws.stack import LocalStack

    class TimedStack(LocalStack):
        """LocalStack that also times each handler invocation (put_event includes the routing)."""

        handler_seconds: list[float]

        def invoke(self, logical_id: str, event: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return super().invoke(logical_id, event)
            finally:
                self.__dict__.setdefault("handler_seconds", []).append(time.perf_counter() - t0)

    return TimedStack(region=HOME, parameters=parameters, stack_name=stack_name, session=_session())


# ================================================================ sweep: floor and checks


@dataclass
class RegionPlan:
    """What an ideal sweep of one seeded region must do, from the engine's expected decisions."""

    region: str
    images: int
    managed: int
    expected_retired: set[str]
    candidates: int
    floor: Counter[str]
    snapshots_after: int


def floor_for(fleet: Any, now: datetime) -> RegionPlan:
    """The floor of one region's sweep: ceil(listed/1000) DescribeImages (the managed images: the
    sweep lists by tag), the cheapest reference check for the candidates, one DeregisterImage per
    retired image, nothing per snapshot (DeregisterImage deletes them)."""
    import seed
    from ami_lifecycle.domain.evidence import checked_unused
    from ami_lifecycle.domain.model import Reference
    from ami_lifecycle.domain.retention import decide_all
    from ami_lifecycle.domain.settings import Settings

    settings = Settings(home_region=HOME)
    images = seed.as_images(fleet)
    pending = decide_all(images, settings, now, None, seed.ACCOUNT)
    candidates = [i for i, d in pending.items() if d.awaits_reference_check]
    refs = {i: checked_unused([Reference("bench", r) for r in fleet.references.get(i, [])]) for i in candidates}
    final = decide_all(images, settings, now, refs, seed.ACCOUNT)
    retired = {i for i, d in final.items() if d.retire}
    floor: Counter[str] = Counter()
    floor["DescribeImages"] = math.ceil(len(images) / 1000)
    if candidates:
        by_references = math.ceil(len(candidates) / 10)
        # Listing covers the same sources as DescribeImageReferences: instances, every launch template
        # version, SSM parameters (aws:ec2:image; the fleet has none: one empty page) and Image Builder
        # recipes (one empty page of image recipes and one of container recipes).
        by_listing = (
            math.ceil(max(1, fleet.instances) / 1000)
            + math.ceil(max(1, fleet.launch_templates) / 200)
            + fleet.launch_templates
            + 1  # DescribeParameters
            + 2  # ListImageRecipes, ListContainerRecipes
        )
        if by_references <= by_listing:
            floor["DescribeImageReferences"] = by_references
        else:
            floor["DescribeInstances"] = math.ceil(max(1, fleet.instances) / 1000)
            floor["DescribeLaunchTemplates"] = math.ceil(max(1, fleet.launch_templates) / 200)
            floor["DescribeLaunchTemplateVersions"] = fleet.launch_templates
            floor["DescribeParameters"] = 1
            floor["ListImageRecipes"] = 1
            floor["ListContainerRecipes"] = 1
        # Launch configurations are not covered by DescribeImageReferences: one listing either way.
        floor["DescribeLaunchConfigurations"] = math.ceil(max(1, fleet.launch_configurations) / 100)
        # Launch permissions of every candidate that can be shared (a disabled image cannot).
        floor["DescribeImageAttribute"] = sum(1 for i in images if i.image_id in candidates and i.state == "available")
    floor["DeregisterImage"] = len(retired)
    return RegionPlan(
        region=fleet.region,
        images=len(fleet.images),
        managed=len(images),
        expected_retired=retired,
        candidates=len(candidates),
        floor=floor,
        snapshots_after=len(images) - len(retired),
    )


def _freeze_heap() -> None:
    """Move everything alive (moto's seeded fleet above all) out of the cyclic GC's reach: in Lambda
    the heap holds only our objects, and the collector walking moto's would be charged to our CPU."""
    import gc

    gc.collect()
    gc.freeze()


def _safety(plan: RegionPlan, fleet: Any) -> tuple[int, int]:
    """(kept images that must still exist but are gone, expected retirements still registered)."""
    import seed

    all_ids = [p.image_id for p in fleet.images]
    alive = seed.still_registered(plan.region, all_ids)
    wrongly_gone = [i for i in all_ids if i not in plan.expected_retired and i not in alive]
    not_retired = [i for i in plan.expected_retired if i in alive]
    return len(wrongly_gone), len(not_retired)


def _moto_snapshot_pages(calls: Counter[str], plans: list[RegionPlan]) -> tuple[int, int]:
    """moto answers DescribeSnapshots in one page whatever MaxResults says; real EC2 pages by 1000."""
    moto = calls.get("DescribeSnapshots", 0)
    real = sum(max(1, math.ceil(p.snapshots_after / 1000)) for p in plans) if moto else 0
    return moto, real


# ================================================================ section: API calls of a sweep


def section_sweep_calls(sec: Section, opts: Options, lazy: Lazy) -> None:
    import seed

    lazy.local_aws()
    total = 1_000 if opts.quick else 10_000
    now = datetime.now(UTC)
    session = _session()
    fleets, plans = [], []
    t0 = time.perf_counter()
    for i, region in enumerate(FLEET_REGIONS):
        n = total // len(FLEET_REGIONS) + (1 if i < total % len(FLEET_REGIONS) else 0)
        fleet = seed.seed_fleet(region, n, now, session)
        fleets.append(fleet)
        plans.append(floor_for(fleet, now))
    lazy.say(f"sweep_calls: seeded {total:,} images in {len(FLEET_REGIONS)} regions ({time.perf_counter() - t0:.1f} s)")
    # A deliberate large clean-up: no blast-radius cap (MaxRetirementsPerRun=0).
    stack = _stack({"SweepRegions": ",".join(FLEET_REGIONS), "MaxRetirementsPerRun": "0"}, "bench-sweep")
    _freeze_heap()

    with harness.stdout_to_devnull():
        m = measure(lambda: stack.fire_schedule("RetentionSweepFunction"))
    report = m.result if isinstance(m.result, dict) else {}
    lazy.say(f"sweep_calls: swept in {m.wall:.1f} s, {m.total_calls:,} calls")

    floor: Counter[str] = Counter()
    for p in plans:
        floor.update(p.floor)
    floor_total = sum(floor.values())
    managed = sum(p.managed for p in plans)
    expired = sum(len(f.expired) for f in fleets)
    in_use = sum(len(f.references) for f in fleets)
    sec.row(
        "fleet",
        f"{total:,} images, {len(FLEET_REGIONS)} regions ({managed:,} managed, {expired:,} expired, "
        f"{in_use} used by instances/LTs/LCs)",
    )
    expected_retired = sum(len(p.expected_retired) for p in plans)
    retired = report.get("totals", {}).get("retired")
    sec.row(
        "status / retired",
        f"{report.get('status', '?')} / {retired} retired",
        f"{expected_retired:,} (engine's expectation)",
        "ok" if retired == expected_retired and report.get("status") == "complete" else "MISSED: differs",
    )
    limit = floor_total * 1.10
    new_sources = ("DescribeParameters", "ListImageRecipes", "ListContainerRecipes", "DescribeImageAttribute")
    sec.row(
        "floor: with the fail-closed sources / without",
        f"{fmt_n(floor_total)} / {fmt_n(floor_total - sum(floor[a] for a in new_sources))}",
        "SSM, Image Builder listing and launch permissions of candidates counted",
        "-",
    )
    sec.row(
        "API calls, total",
        fmt_n(m.total_calls),
        f"<= {fmt_n(limit)} (floor {fmt_n(floor_total)} + 10%)",
        check_max(m.total_calls, limit, fmt_n),
    )
    moto_ds, real_ds = _moto_snapshot_pages(m.calls, plans)
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
    over = m.calls - floor
    sec.row("API calls, by action", calls_text(m.calls, 10))
    sec.row("floor, by action", calls_text(floor, 10))
    sec.row("above the floor", calls_text(over, 10) or "nothing")
    for p in plans:
        region_calls = m.calls_by_region.get(p.region, Counter())
        sec.row(
            f"  {p.region}",
            f"{sum(region_calls.values()):,} calls ({p.managed:,} managed, {p.candidates} candidates)",
            f"floor {sum(p.floor.values()):,}",
            check_max(sum(region_calls.values()), sum(p.floor.values()) * 1.10, fmt_n),
        )
    gone, left = 0, 0
    for p, f in zip(plans, fleets, strict=True):
        g, lft = _safety(p, f)
        gone, left = gone + g, left + lft
    sec.row(
        "safety: kept images deregistered",
        str(gone),
        "0",
        "ok" if gone == 0 else f"MISSED: {gone} images that had to be kept are gone",
    )
    sec.row("expected retirements still registered", str(left), "0", "ok" if left == 0 else "MISSED")
    sec.row(
        "time (wall; our CPU; moto CPU)",
        f"{fmt_s(m.wall)}; {fmt_s(m.client_cpu)}; {fmt_s(m.server_cpu)}",
        note="local, not AWS latency",
    )
    sec.row(
        "moto CPU by action",
        ", ".join(f"{a} {fmt_s(t)}" for a, t in m.server_by_action.most_common(4)),
    )
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
            "in_use_check": {r: v.get("notes", {}).get("in_use_check") for r, v in report.get("regions", {}).items()},
        }
    )
    sec.notes.append(
        "Floor: per region ceil(managed/1000) DescribeImages + the cheaper of ceil(candidates/10) "
        "DescribeImageReferences or listing instances and every launch template version, + one "
        "DescribeLaunchConfigurations listing, + one DeregisterImage per retired image; nothing per snapshot "
        "(DeregisterImage deletes them). Expected retirements come from the pure engine over the seeded facts."
    )


# ================================================================ section: the event path


def _load_handler(logical_id: str) -> Callable[[Any, Any], Any]:
    """A handler loaded by file path, as Lambda loads it (a module of its own, not LocalStack's)."""
    import importlib.util

    from ami_lifecycle_localaws.stack import functions, load_template

    spec = functions(load_template())[logical_id]
    module_file, _, attr = spec.handler.partition(".")
    path = ROOT / spec.code_uri / f"{module_file}.py"
    mod_spec = importlib.util.spec_from_file_location(f"_bench_{logical_id}", path)
    assert mod_spec is not None and mod_spec.loader is not None
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[mod_spec.name] = module
    mod_spec.loader.exec_module(module)
    return getattr(module, attr)  # type: ignore[no-any-return]


def section_event_path(sec: Section, opts: Options, lazy: Lazy) -> None:
    import seed
    from ami_lifecycle_localaws.stack import LocalContext

    lazy.local_aws()
    n, n_warm = (5, 10) if opts.quick else (10, 30)
    now = datetime.now(UTC)
    planned = [
        seed.Planned(
            image_id="",
            name=f"web-2026-11-25-{i:03d}",
            family="web",
            created=(now - timedelta(minutes=5)).replace(microsecond=0),
            kind="unmanaged",
            tags={},
            expired=False,
        )
        for i in range(n + 1 + n_warm)
    ]
    seed.seed_images(HOME, planned)
    routed_images, warm_images = planned[: n + 1], planned[n + 1 :]
    stack = _stack({"ReplicaRegions": ",".join(REPLICAS)}, "bench-events")
    template = json.loads((ROOT / "events" / "ami_available.json").read_text())

    def event_for(image_id: str) -> dict[str, Any]:
        e = json.loads(json.dumps(template))
        e["detail"]["ImageId"] = image_id
        e["region"] = HOME
        e["resources"] = [f"arn:aws:ec2:{HOME}::image/{image_id}"]
        return e

    # 1. Through the template's wiring: LocalStack.put_event routes each event by the rule's pattern.
    #    LocalStack resets the runtime around each invocation: new settings and boto3 clients each time.
    runs: list[Measured] = []
    with harness.stdout_to_devnull():
        for p in routed_images:
            runs.append(measure(lambda p=p: stack.put_event(event_for(p.image_id)), exclude_actions=ROUTING_ACTIONS))
    # 2. Warm, as Lambda runs a warm execution environment: the handler module, settings and clients
    #    are kept between events (the environment is the one the template gives the function).
    env = stack.environment("ImageEventsFunction")
    warm_runs: list[Measured] = []
    with stack.function_env("ImageEventsFunction"):
        handler = _load_handler("ImageEventsFunction")
        context = LocalContext(
            function_name=env["AWS_LAMBDA_FUNCTION_NAME"],
            invoked_function_arn=f"arn:aws:lambda:{HOME}:{harness.ACCOUNT}:function:{env['AWS_LAMBDA_FUNCTION_NAME']}",
            timeout_ms=60_000,
        )
        with harness.stdout_to_devnull():
            handler(event_for(planned[0].image_id), context)  # a repeat: warms clients, writes nothing
            for p in warm_images:
                warm_runs.append(measure(lambda p=p: handler(event_for(p.image_id), context)))

    first, warm = runs[0], runs[1:]
    handler_times = stack.__dict__.get("handler_seconds", [])[1:]
    everything = warm + warm_runs
    ec2_calls = [Counter({a: c for a, c in r.calls.items() if a not in SQS_ACTIONS}) for r in everything]
    sqs_calls = [Counter({a: c for a, c in r.calls.items() if a in SQS_ACTIONS}) for r in everything]
    routed = all(len(r.result) == 1 and r.result[0].function == "ImageEventsFunction" for r in runs)
    results = [r.result[0].result for r in runs if r.result] + [r.result for r in warm_runs]
    events = len(results)
    tagged = sum(1 for r in results if r.get("status") == "tagged")
    copies = Counter(len(r.get("copies_requested", [])) for r in results)
    worst_ec2 = max((sum(c.values()) for c in ec2_calls), default=0)
    worst_sqs = max((sum(c.values()) for c in sqs_calls), default=0)
    same = all(c == ec2_calls[0] for c in ec2_calls) and all(c == sqs_calls[0] for c in sqs_calls)

    sqs = _session().client("sqs", region_name=HOME)
    attrs = sqs.get_queue_attributes(
        QueueUrl=stack.queue_url("CopyQueue"), AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    queued = int(attrs.get("ApproximateNumberOfMessages", 0))
    expect_queued = len(REPLICAS) * (events + 1)  # + the warm-up repeat, which queues its copies again

    sec.row(
        "events", f"{events} `available` events ({n + 1} routed, {n_warm} warm), ReplicaRegions={','.join(REPLICAS)}"
    )
    sec.row(
        "routed / tagged / copies per event",
        f"{'yes' if routed else 'NO'} / {tagged} of {events} / {dict(copies)}",
        f"yes / {events} / {{{len(REPLICAS)}: {events}}}",
        "ok" if routed and tagged == events and copies == Counter({len(REPLICAS): events}) else "MISSED: differs",
    )
    sec.row(
        "EC2 calls per event",
        f"{worst_ec2} ({calls_text(ec2_calls[0]) if ec2_calls else '-'})",
        "3",
        check_max(worst_ec2, 3, fmt_n),
    )
    sec.row(
        "SQS calls per event",
        f"{worst_sqs} ({calls_text(sqs_calls[0]) if sqs_calls else '-'}), {queued} messages queued",
        f"1 SendMessageBatch ({expect_queued} msgs)",
        check_max(worst_sqs, 1, fmt_n) if queued == expect_queued else f"MISSED: {queued} messages queued",
    )
    sec.row("same calls for every event", "yes" if same else "no", "yes", "ok" if same else "MISSED")
    sec.row(
        "warm handler: wall per event, median",
        fmt_s(median([r.wall for r in warm_runs])),
        note="clients and settings kept, as in a warm Lambda",
    )
    sec.rows[-1].value += (
        f" (our CPU {fmt_s(median([r.client_cpu for r in warm_runs]))}, "
        f"moto CPU {fmt_s(median([r.server_cpu for r in warm_runs]))})"
    )
    sec.row(
        "via put_event: wall per event, median",
        f"{fmt_s(median([r.wall for r in warm]))} (handler {fmt_s(median(handler_times))})",
        note="LocalStack re-creates settings and boto3 clients on every invocation",
    )
    sec.row("via put_event: first event", fmt_s(first.wall), note="+ importing the handler module")
    sec.data.update(
        {
            "events": events,
            "ec2_calls_per_event": dict(ec2_calls[0]) if ec2_calls else {},
            "sqs_calls_per_event": dict(sqs_calls[0]) if sqs_calls else {},
            "messages_queued": queued,
            "warm_median_wall_s": median([r.wall for r in warm_runs]),
            "warm_median_client_cpu_s": median([r.client_cpu for r in warm_runs]),
            "put_event_median_wall_s": median([r.wall for r in warm]),
            "put_event_median_handler_s": median(handler_times),
            "first_event_s": first.wall,
        }
    )
    sec.notes.append(
        "Event path: put_event asks EventBridge's matcher (TestEventPattern, one call per rule in the template) "
        "where to route each event; those calls are the local runner's, not the product's, and are not counted. "
        "LocalStack resets the function's runtime around every invocation, so its per-event time includes "
        "creating the settings and two boto3 clients (cold-ish); the warm rows call the same handler the way a "
        "warm Lambda does."
    )


# ================================================================ section: the decision engine


def _engine_images(n: int, now: datetime) -> list[Any]:
    """n managed images in one region, families of 1 to 150, ~10% expired, 3% held."""
    import seed
    from ami_lifecycle.domain.model import Image

    rng = random.Random(11)
    images = []
    for i, p in enumerate(seed.plan(HOME, n, now, rng)):
        tags = p.tags or {
            f"{seed.PREFIX}:managed": "true",
            f"{seed.PREFIX}:retention": "90d",
            f"{seed.PREFIX}:family": p.family,
        }
        images.append(
            Image(
                image_id=f"ami-{i:017x}",
                region=HOME,
                name=p.name,
                state="available",
                creation_date=p.created,
                owner_id=seed.ACCOUNT,
                tags=tags,
                snapshot_ids=(f"snap-{i:017x}",),
                deregistration_protection="disabled",
            )
        )
    return images


def _best_rate(fn: Callable[[], Any], n: int, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    best = min(times)
    return n / best, best


def _profile_top(fn: Callable[[], Any], k: int) -> str:
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    fn()
    profile.disable()
    stats = pstats.Stats(profile)
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])  # type: ignore[attr-defined]
    total = sum(v[2] for _, v in rows) or 1.0

    def name(func: tuple[str, int, str]) -> str:
        label = func[2]
        if label.startswith("<") and "'" in label:  # "<method 'strftime' of 'datetime.date' objects>"
            label = label.split("'")[1]
        return label

    return ", ".join(f"{name(func)} {100 * v[2] / total:.0f}%" for func, v in rows[:k])


def section_engine(sec: Section, opts: Options, lazy: Lazy) -> None:
    from ami_lifecycle.domain import retention
    from ami_lifecycle.domain.adoption import decide_adoption
    from ami_lifecycle.domain.evidence import checked_unused
    from ami_lifecycle.domain.settings import Settings

    n = 20_000 if opts.quick else 200_000
    repeat = 1  # one run over 200,000 images is long enough to average itself
    now = datetime.now(UTC)
    settings = Settings(home_region=HOME)
    t0 = time.perf_counter()
    images = _engine_images(n, now)
    lazy.say(f"engine: built {n:,} images in memory ({time.perf_counter() - t0:.1f} s)")
    families = len({i.tags.get(f"{settings.tag_prefix}:family") for i in images})
    refs = {images[k].image_id: checked_unused() for k in range(0, n, 97)}

    t0 = time.perf_counter()
    decisions = retention.decide_all(images, settings, now, refs, harness.ACCOUNT)
    best = time.perf_counter() - t0
    rate = n / best
    sec.row(
        "retention: rank + decide (decide_all)",
        f"{fmt_n(rate)} images/s",
        "> 100,000/s",
        check_min(rate, 100_000, fmt_n),
        note=f"{n:,} images in {families:,} families",
    )
    sec.rows[-1].value += f" ({n:,} in {fmt_s(best)}, {families:,} families)"
    r_rate, _ = _best_rate(lambda: retention.rank_families(images, settings, harness.ACCOUNT), n, repeat)
    d_rate = n / max(1e-9, n / rate - n / r_rate)
    sec.row("  of which rank_families alone", f"{fmt_n(r_rate)} images/s")
    sec.row("  of which decide (the rest)", f"{fmt_n(d_rate)} images/s")
    retire = sum(1 for d in decisions.values() if d.retire)
    sec.row("  decisions", f"{retire:,} retire, {n - retire:,} keep")

    hot = _profile_top(lambda: retention.decide_all(images[:20_000], settings, now, refs, harness.ACCOUNT), 5)
    sec.row("  where the time goes (cProfile, 20k)", hot, note="self time, share of the total")

    m = min(n, 50_000)
    untagged = [
        type(i)(
            image_id=i.image_id,
            region=i.region,
            name=i.name,
            state="available",
            creation_date=i.creation_date,
            owner_id=i.owner_id,
            snapshot_ids=i.snapshot_ids,
        )
        for i in images[:m]
    ]
    a_rate, _ = _best_rate(lambda: [decide_adoption(i, settings, now, harness.ACCOUNT) for i in untagged], m, repeat)
    sec.row("adoption: decide_adoption, new images", f"{fmt_n(a_rate)} images/s", note="untagged: tags computed")
    t_rate, _ = _best_rate(lambda: [decide_adoption(i, settings, now, harness.ACCOUNT) for i in images[:m]], m, repeat)
    sec.row("adoption: decide_adoption, tagged images", f"{fmt_n(t_rate)} images/s", note="already managed")
    sec.data.update(
        {
            "images": n,
            "families": families,
            "decide_all_per_s": rate,
            "rank_per_s": r_rate,
            "decide_per_s": d_rate,
            "adoption_new_per_s": a_rate,
            "adoption_tagged_per_s": t_rate,
        }
    )


# ================================================================ section: cold start

_IMPORT_SNIPPET = """
import importlib.util, json, sys, time
sys.path.insert(0, {layer!r})
target = {target!r}
t0 = time.perf_counter()
if target == "boto3":
    import boto3
else:
    spec = importlib.util.spec_from_file_location("app", target)
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module
    spec.loader.exec_module(module)
print(json.dumps(time.perf_counter() - t0))
"""


_PYCACHE: dict[str, str] = {}  # PYTHONPYCACHEPREFIX for the subprocesses: bytecode goes there, not into the tree


def _lambda_env(logical_id: str | None) -> dict[str, str]:
    """The environment Lambda gives the function: the template's variables (parameters at their
    defaults), plus what the runtime sets. Tracing is Active in the template, so the tracer is on."""
    from ami_lifecycle_localaws.stack import functions, load_template

    template = load_template()
    params = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "AWS_REGION": HOME,
        "AWS_DEFAULT_REGION": HOME,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(FUNCTION_MEMORY_MB),
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
    }
    specs = functions(template)
    spec = specs.get(logical_id or "ImageEventsFunction") or next(iter(specs.values()))
    for key, value in spec.environment.items():
        if isinstance(value, dict) and "Ref" in value:
            ref = value["Ref"]
            value = params.get(ref, f"https://sqs.{HOME}.amazonaws.com/{harness.ACCOUNT}/ami-lifecycle-{ref}")
        env[key] = str(value)
    env["AWS_LAMBDA_FUNCTION_NAME"] = f"ami-lifecycle-{spec.logical_id}"
    env["_HANDLER"] = spec.handler
    env["LAMBDA_TASK_ROOT"] = str(ROOT / spec.code_uri)
    env.update(_PYCACHE)
    return env


def _import_once(target: str, env: dict[str, str], cwd: Path, extra: tuple[str, ...] = ()) -> tuple[float, str]:
    code = _IMPORT_SNIPPET.format(layer=str(LAYER_DIR), target=target)
    proc = subprocess.run(
        [sys.executable, *extra, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise RuntimeError(f"import of {target} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return float(proc.stdout.strip().splitlines()[-1]), proc.stderr


def _importtime_by_package(stderr: str) -> Counter[str]:
    """Self time (µs) from `python -X importtime`: per top-level package, except our own package,
    per module (its self time includes what its module body does, e.g. building Powertools' Tracer)."""
    out: Counter[str] = Counter()
    for line in stderr.splitlines():
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3 or "self [us]" in line:
            continue
        self_us = parts[0].split(":", 1)[1].strip()
        name = parts[2].strip()
        if self_us.isdigit():
            out[name if name.startswith("ami_lifecycle") else name.split(".")[0]] += int(self_us)
    return out


def _median_counter(counters: list[Counter[str]]) -> Counter[str]:
    keys = {k for c in counters for k in c}
    return Counter({k: int(median([c.get(k, 0) for c in counters])) for k in keys})


def section_cold_start(sec: Section, opts: Options, lazy: Lazy) -> None:
    from ami_lifecycle_localaws.stack import functions, load_template

    runs = 3 if opts.quick else 7
    specs = functions(load_template())
    targets: dict[str, str] = {}
    for lid, spec in specs.items():
        path = ROOT / spec.code_uri / f"{spec.handler.partition('.')[0]}.py"
        if path.exists():
            targets[lid] = str(path)
        else:
            sec.row(f"{lid}", "-", "", f"not available: {path.relative_to(ROOT)} does not exist yet")
    samples: dict[str, list[float]] = {"boto3": [], **{lid: [] for lid in targets}}
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        # Bytecode in a private cache (nothing written into the source tree), compiled by a warm-up run.
        _PYCACHE["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        _import_once("boto3", _lambda_env(None), cwd)
        for lid, path in targets.items():
            _import_once(path, _lambda_env(lid), Path(path).parent)
        for _ in range(runs):  # interleaved, so that drift hits every target alike
            samples["boto3"].append(_import_once("boto3", _lambda_env(None), cwd)[0])
            for lid, path in targets.items():
                samples[lid].append(_import_once(path, _lambda_env(lid), Path(path).parent)[0])
        base = median(samples["boto3"])
        sec.row("import boto3 alone", fmt_s(base), note=f"median of {runs}")
        sec.rows[-1].value += f" (median of {runs})"
        for lid in targets:
            t = median(samples[lid])
            sec.row(
                f"import {lid}",
                f"{fmt_s(t)} = {t / base:.2f}x boto3",
                "<= 1.30x boto3",
                check_max(t / base, 1.30, lambda x: f"{x:.2f}x"),
            )

        # Why: the extra import time over boto3, by package (median of -X importtime runs).
        it_runs = 1 if opts.quick else 2
        importtime = ("-X", "importtime")

        def profile(target: str, lid: str | None, where: Path) -> Counter[str]:
            runs_ = [_importtime_by_package(_import_once(target, _lambda_env(lid), where, importtime)[1])]
            runs_ += [
                _importtime_by_package(_import_once(target, _lambda_env(lid), where, importtime)[1])
                for _ in range(it_runs - 1)
            ]
            return _median_counter(runs_)

        base_pk = profile("boto3", None, cwd)
        extras: dict[str, Counter[str]] = {}
        for lid, path in targets.items():
            pk = profile(path, lid, Path(path).parent)
            extra = Counter({k: v - base_pk.get(k, 0) for k, v in pk.items() if v - base_pk.get(k, 0) > 3000})
            extras[lid] = extra
            top = ", ".join(f"{k} {v / 1000:.0f} ms" for k, v in extra.most_common(6))
            sec.row(f"  extra over boto3, {lid}", top or "-", note="-X importtime self time by package")
        # As the layer ships: its Makefile strips every __pycache__ and /opt is read-only in Lambda, so
        # each cold start compiles the layer's boto3, botocore, pydantic, powertools... from source.
        if not opts.quick:
            cache = Path(tmp) / "empty-pycache"
            cache.mkdir()

            def nopyc_env(lid: str | None) -> dict[str, str]:  # an empty cache that stays empty
                return _lambda_env(lid) | {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(cache)}

            nb = _import_once("boto3", nopyc_env(None), cwd)[0]
            sec.row("no .pyc (as the layer ships): import boto3", fmt_s(nb), note="one run each")
            samples["nopyc:boto3"] = [nb]
            for lid, path in targets.items():
                t = _import_once(path, nopyc_env(lid), Path(path).parent)[0]
                sec.row(f"no .pyc: import {lid}", f"{fmt_s(t)} = {t / base:.2f}x boto3 with .pyc")
                samples[f"nopyc:{lid}"] = [t]
        _PYCACHE.clear()
    sec.data.update({"samples_s": samples, "extra_us_by_package": {k: dict(v) for k, v in extras.items()}})
    sec.notes.append(
        "Cold start: each import runs in a fresh interpreter (subprocess) with the layer package first on "
        "sys.path, the handler loaded by file path as Lambda does, and the environment the template gives the "
        "function (parameters at their defaults; AWS_LAMBDA_FUNCTION_NAME set, so Powertools' Tracer is on, as "
        "with Tracing: Active). Times are perf_counter around the import, on this machine's CPU; a 512 MB "
        f"function gets about {FUNCTION_MEMORY_MB / 1769:.2f} of a vCPU, so multiply by ~{CPU_SLOWDOWN:.1f} "
        "for Lambda."
    )
    sec.notes.append(
        "The built layer ships no bytecode: layers/core/Makefile removes every __pycache__ after pip (and pip, "
        "run by the build machine's Python, would have written pycs for that Python, not 3.13). /opt is "
        "read-only in Lambda, so every cold start compiles the layer's boto3/botocore/pydantic/powertools from "
        "source: see the 'no .pyc' rows. Fix: compile with a python3.13 during the build (python3.13 -m "
        "compileall -q python/ with --invalidation-mode unchecked-hash) instead of deleting __pycache__."
    )


# ================================================================ section: package size


def _dir_size(path: Path) -> tuple[int, int]:
    total, files = 0, 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
            files += 1
    return total, files


def _zip_size(path: Path, out: Path) -> int:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        for p in sorted(path.rglob("*")):
            if p.is_file() and not p.is_symlink():
                z.write(p, p.relative_to(path))
    return out.stat().st_size


def section_package(sec: Section, opts: Options, lazy: Lazy) -> None:
    if not SAM.exists():
        sec.unavailable("skipped: SAM CLI not installed — run `make .venv-sam/bin/sam`")
        return
    with tempfile.TemporaryDirectory() as tmp:
        build = Path(tmp) / "build"
        env = os.environ | {"SAM_CLI_TELEMETRY": "0"}
        env.pop("AWS_ENDPOINT_URL", None)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [str(SAM), "build", "--region", HOME, "--build-dir", str(build), "--cache-dir", str(Path(tmp) / "cache")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        took = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            sec.unavailable(f"sam build failed: {' | '.join(tail)}")
            return
        lazy.say(f"package: sam build in {took:.1f} s")
        sec.row("sam build", f"ok in {took:.1f} s", note="into a temporary --build-dir")
        layer_size, layer_files = _dir_size(build / "CoreLayer")
        layer_zip = _zip_size(build / "CoreLayer", Path(tmp) / "CoreLayer.zip")
        sec.row(
            "CoreLayer",
            f"{fmt_mb(layer_size)} unzipped ({layer_files:,} files), {fmt_mb(layer_zip)} zipped",
            f"zip <= {fmt_mb(ZIPPED_LIMIT)}",
            check_max(layer_zip, ZIPPED_LIMIT, fmt_mb),
        )
        data: dict[str, Any] = {"CoreLayer": {"unzipped": layer_size, "zipped": layer_zip}, "build_s": took}
        for fn_dir in sorted(p for p in build.iterdir() if p.is_dir() and p.name != "CoreLayer"):
            size, files = _dir_size(fn_dir)
            zipped = _zip_size(fn_dir, Path(tmp) / f"{fn_dir.name}.zip")
            with_layer = size + layer_size
            verdict = check_max(with_layer, UNZIPPED_LIMIT, fmt_mb)
            if verdict == "ok":
                verdict = check_max(zipped, ZIPPED_LIMIT, fmt_mb)
            sec.row(
                fn_dir.name,
                f"{size / 1024:.1f} KB ({files} files), {zipped / 1024:.1f} KB zipped; with layer {fmt_mb(with_layer)}",
                f"<= {fmt_mb(UNZIPPED_LIMIT)} with layers",
                verdict,
            )
            data[fn_dir.name] = {"unzipped": size, "zipped": zipped, "with_layers": with_layer, "files": files}
        biggest = sorted(
            ((p.name, _dir_size(p)[0]) for p in (build / "CoreLayer" / "python").iterdir() if p.is_dir()),
            key=lambda kv: -kv[1],
        )[:4]
        sec.row("  biggest in the layer", ", ".join(f"{n} {fmt_mb(s)}" for n, s in biggest))
        sec.data.update(data)
    sec.notes.append(
        "Limits: 250 MB unzipped for a function with all its layers; 50 MB for a .zip uploaded directly "
        "(sam deploy uploads through S3, where the unzipped limit is the one that binds)."
    )


# ================================================================ section: scale and the 900 s limit


@dataclass
class ScalePoint:
    n: int
    managed: int
    retired: int
    candidates: int
    real: Measured  # the first sweep: retires the expired images
    again: Measured | None  # the same sweep right after: nothing left to retire


def _sweep_point(n: int, region: str, lazy: Lazy, now: datetime, *, twice: bool) -> ScalePoint:
    import seed

    fleet = seed.seed_fleet(region, n, now, _session())
    plan = floor_for(fleet, now)
    stack = _stack({"SweepRegions": region, "MaxRetirementsPerRun": "0"}, f"bench-scale-{n}")
    _freeze_heap()
    payload = {"regions": [region], "dry_run": False}
    again = None
    with harness.stdout_to_devnull():
        stack.invoke("RetentionSweepFunction", {"regions": "not a list"})  # refused: loads the handler module
        real = measure(lambda: stack.invoke("RetentionSweepFunction", payload))
        if twice:
            again = measure(lambda: stack.invoke("RetentionSweepFunction", payload))
    retired = real.result.get("totals", {}).get("retired", 0) if isinstance(real.result, dict) else 0
    lazy.say(
        f"scale: {n:,} images: {real.wall:.1f} s, {real.total_calls:,} calls"
        + (f"; again {again.wall:.1f} s, {again.total_calls:,} calls" if again else "")
    )
    return ScalePoint(n, plan.managed, retired, plan.candidates, real, again)


def _fit_costs(samples: list[tuple[int, int, float]]) -> tuple[float, float, float]:
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


def _seconds_for(n: int, retire_fraction: float, costs: dict[str, float], scenario: int) -> float:
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


def _largest(retire_fraction: float, costs: dict[str, float], scenario: int, budget_s: float) -> int:
    lo, hi = 0, 20_000_000
    while hi - lo > 100:
        mid = (lo + hi) // 2
        if _seconds_for(mid, retire_fraction, costs, scenario) <= budget_s:
            lo = mid
        else:
            hi = mid
    return lo


def section_scale(sec: Section, opts: Options, lazy: Lazy) -> None:
    from ami_lifecycle.services.sweep import SAFETY_MARGIN_MS

    lazy.local_aws()
    now = datetime.now(UTC)
    small, mid, big = (300, 2_000, 0) if opts.quick else (1_000, 10_000, 50_000)
    regions = iter(SCALE_REGIONS)
    points = [
        _sweep_point(small, next(regions), lazy, now, twice=True),
        _sweep_point(mid, next(regions), lazy, now, twice=True),
    ]
    extrapolated, skipped = False, ""
    if big:
        # Predict the big point from the mid one: a sweep's wall time here grows faster than n (moto filters
        # every image of the region for each page, and its DeregisterImage scans them all too).
        p = points[-1]

        def predict(size: int) -> float:
            k = size / p.n
            return p.real.wall * k**1.75 + 0.3 * k  # + seeding; measured: 10k -> 20k took 2.2x .. 3.4x

        lazy.say(f"scale: {big:,} images predicted at ~{predict(big):.0f} s in moto")
        if predict(big) <= 90:
            points.append(_sweep_point(big, next(regions), lazy, now, twice=False))
        else:
            extrapolated = True
            fits = lazy.elapsed() + predict(2 * mid) <= opts.budget_s
            if fits or opts.full_scale:
                points.append(_sweep_point(2 * mid, next(regions), lazy, now, twice=False))
            else:
                skipped = (
                    f"{2 * mid:,} images not measured: ~{predict(2 * mid):.0f} s more would take the run past its "
                    f"{opts.budget_s:.0f} s budget (--budget, or --full-scale to force it)"
                )
                lazy.say(f"scale: {skipped}")
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
    fixed, image_cpu, retire_cpu = _fit_costs(samples)
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
                *(_seconds_for(int(big * last.managed / last.n), last.retired / last.managed, costs, s) for s in (0, 1))
            ),
            note="not measured: over ~90 s in moto",
        )
    budget = LAMBDA_TIMEOUT_S - SAFETY_MARGIN_MS / 1000
    results: dict[str, Any] = {}
    for label, fraction in (
        ("10% to retire", 0.10),
        ("1.1% to retire (a daily sweep, 90d)", 1 / 90),
        ("nothing to retire", 0.0),
    ):
        best = _largest(fraction, costs, 0, budget)
        worst = _largest(fraction, costs, 1, budget)
        sec.row(f"largest fleet in one 900 s invocation, {label}", f"{fmt_n(worst)} .. {fmt_n(best)} images")
        results[label] = {"pessimistic": worst, "optimistic": best}
    at_10k = [_seconds_for(10_000, 0.10, costs, s) for s in (0, 1)]
    sec.row(
        "10,000 images, 10% to retire, on AWS (modelled)",
        f"{at_10k[0]:.0f} .. {at_10k[1]:.0f} s",
        f"<= {budget:.0f} s",
        check_max(at_10k[1], budget, lambda s: f"{s:.0f} s"),
    )

    def measured(m: Measured | None) -> dict[str, Any] | None:
        if m is None:
            return None
        return {"wall_s": m.wall, "client_cpu_s": m.client_cpu, "moto_cpu_s": m.server_cpu, "calls": dict(m.calls)}

    sec.data.update(
        {
            "points": [
                {
                    "n": p.n,
                    "managed": p.managed,
                    "retired": p.retired,
                    "candidates": p.candidates,
                    "first_sweep": measured(p.real),
                    "second_sweep": measured(p.again),
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
        f"{SAFETY_MARGIN_MS / 1000:.0f} s safety margin. Our CPU is this process's CPU minus moto's (metered per "
        f"request); a {FUNCTION_MEMORY_MB} MB function gets ~{FUNCTION_MEMORY_MB / 1769:.2f} vCPU, hence x"
        f"{CPU_SLOWDOWN:.1f}."
    )
    sec.notes.append(
        "Past one invocation the sweep stops cleanly and continues in a follow-up invocation (up to "
        "sweep.MAX_CHAIN in a row); retired images are gone on the next pass, so a backlog drains "
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


# ================================================================ main

SECTIONS: list[tuple[str, str, Callable[[Section, Options, Lazy], None]]] = [
    ("engine", "Decision engine throughput (pure CPU)", section_engine),
    ("cold_start", "Cold start: handler import vs import boto3", section_cold_start),
    ("package", "Package size (sam build)", section_package),
    ("event_path", "Event path: ImageEventsFunction per available event", section_event_path),
    ("sweep_calls", "API calls of a sweep: 10,000 images, 3 regions", section_sweep_calls),
    ("scale", "Scale: one-region sweeps and the 900 s limit", section_scale),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small fleets, fewer repetitions (smoke run)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON (the table goes to stderr)")
    parser.add_argument("--only", help="comma-separated sections: " + ", ".join(k for k, _, _ in SECTIONS))
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--budget",
        type=float,
        default=300.0,
        help="seconds for the whole run: optional extra points past it are skipped",
    )
    parser.add_argument("--full-scale", action="store_true", help="measure the 20,000-image point whatever the budget")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    if only and only - {k for k, _, _ in SECTIONS}:
        parser.error(f"unknown sections: {', '.join(sorted(only - {k for k, _, _ in SECTIONS}))}")
    opts = Options(quick=args.quick, json=args.json, only=only, budget_s=args.budget, full_scale=args.full_scale)
    say = Progress(not args.quiet)
    harness.prepare_env()
    if args.quick:
        SECTIONS[4] = ("sweep_calls", "API calls of a sweep: 1,000 images, 3 regions (--quick)", section_sweep_calls)

    lazy = Lazy(say)
    done: list[Section] = []
    t_start = time.perf_counter()
    try:
        for key, title, fn in SECTIONS:
            if only and key not in only:
                continue
            sec = Section(key, title)
            say(f"{key} ...")
            t0 = time.perf_counter()
            try:
                fn(sec, opts, lazy)
            except Exception as e:  # a section fails soft: one row says why
                sec.unavailable(f"{type(e).__name__}: {str(e)[:160]}")
                traceback.print_exc(file=sys.stderr)
            sec.seconds = time.perf_counter() - t0
            done.append(sec)
    finally:
        lazy.stop()
    total = time.perf_counter() - t_start

    import boto3
    import moto

    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "boto3": boto3.__version__,
        "moto": moto.__version__,
        "quick": args.quick,
        "seconds": round(total, 1),
    }
    header = (
        f"ami-lifecycle benchmarks{' (--quick)' if args.quick else ''}: {meta['date']}, Python {meta['python']}, "
        f"{meta['machine']}, boto3 {meta['boto3']}, moto {meta['moto']}; {total:.0f} s"
    )
    table = harness.render(done, header)
    out_dir = ROOT / ".bench"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "last-run.txt").write_text(table + "\n")
    (out_dir / "last-run.json").write_text(harness.to_json(done, meta) + "\n")
    if args.json:
        print(table, file=sys.stderr)
        print(harness.to_json(done, meta))
    else:
        print(table)
    missed = [r for s in done for r in s.rows if r.verdict.startswith("MISSED")]
    return 1 if missed and os.environ.get("BENCH_STRICT") else 0


if __name__ == "__main__":
    sys.exit(main())
