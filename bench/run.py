"""ami-lifecycle benchmarks: API calls, throughput and cold start, measured against their targets.

    .venv/bin/python bench/run.py            # everything, the table on stdout (4-5 minutes on 2 cores)
    .venv/bin/python bench/run.py --quick    # small fleets, fewer repetitions: a smoke run (1-2 minutes)
    .venv/bin/python bench/run.py --json     # the results as JSON on stdout (the table goes to stderr)
    .venv/bin/python bench/run.py --only engine,cold_start
    .venv/bin/python bench/run.py --full-scale   # also the 20,000-image sweep whatever the time budget
    .venv/bin/python bench/engine.py         # one section alone (any section module; exits 1 on a miss)

--budget SECONDS (default 300) bounds the run: the one optional measurement (the 20,000-image sweep)
is skipped, and said so, when it would not fit. BENCH_STRICT=1 (or --strict) makes a missed target
exit 1.

One module per measurement (each one fails soft: a "not available: <reason>" row, never a crash):

- engine.py (engine): the pure retention engine, rank + decide, per second (target >= 100,000/s on
  one core), and the adoption decision; no AWS.
- cold_start.py (cold_start): importing each handler as Lambda does, in fresh interpreters, median of
  several runs, against `import boto3` in the same run (target <= 1.3x).
- package_size.py (package): `sam build`, unzipped and zipped sizes against the Lambda limits.
- event_path.py (event_path): ImageEventsFunction per `available` event, routed by the template's rule.
- sweep_calls.py (sweep_calls): a retention sweep (RetentionSweepFunction, fired as its schedule fires
  it) over a seeded fleet of 10,000 images in 3 regions, API calls against the floor (floor.py).
- accounts.py (accounts): a sweep over 3 accounts x 2 regions (hub and spokes: spoke.yaml deployed in
  every pair), API calls per pair against the floor, AssumeRole counted (one per spoke account per run).
- execution.py (execution): an organization-shaped sweep through SweepStateMachine (6 accounts x 3
  regions x 500 images), API calls against the floor, invocations per pair, task result sizes; and a
  model of the wall time for 50 accounts x 17 regions x 2,000 images at concurrency 10 and 40.
- scale.py (scale): one-region sweeps of growing fleets, our CPU apart from moto's, and the largest
  fleet one 900 s invocation can sweep.

The local AWS is the one of the tests and the demo (ami_lifecycle_localaws: EmbeddedAws, LocalStack,
motoext's call counter), with the bench's CPU meter on top (local.py); fleets are seeded through
moto's backend (seed.py). Results also go to .bench/last-run.txt and .bench/last-run.json. Not part
of the test suite.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accounts  # noqa: E402
import cold_start  # noqa: E402
import engine  # noqa: E402
import event_path  # noqa: E402
import execution  # noqa: E402
import harness  # noqa: E402
import package_size  # noqa: E402
import scale  # noqa: E402
import sweep_calls  # noqa: E402
from harness import ROOT, Progress, Run, Section  # noqa: E402

# In the order they run: the quick, AWS-free ones first.
SECTIONS: list[ModuleType] = [engine, cold_start, package_size, event_path, sweep_calls, accounts, execution, scale]
KEYS = [m.KEY for m in SECTIONS]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/run.py",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="sections (--only):\n" + "\n".join(f"  {m.KEY:<12} {m.__name__}.py: {m.TITLE}" for m in SECTIONS),
    )
    p.add_argument("--quick", action="store_true", help="small fleets, fewer repetitions (smoke run)")
    p.add_argument("--json", action="store_true", help="print the results as JSON (the table goes to stderr)")
    p.add_argument("--only", help="comma-separated sections: " + ", ".join(KEYS))
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument(
        "--budget",
        type=float,
        default=300.0,
        help="seconds for the whole run: optional extra points past it are skipped (default 300)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed (as BENCH_STRICT=1)")
    for m in SECTIONS:
        if hasattr(m, "add_options"):
            m.add_options(p)
    return p


def run_sections(sections: list[ModuleType], ctx: Run) -> list[Section]:
    done: list[Section] = []
    try:
        for module in sections:
            sec = Section(module.KEY, module.TITLE)
            ctx.say(f"{module.KEY} ...")
            t0 = time.perf_counter()
            try:
                module.run(sec, ctx)
            except Exception as e:  # a section fails soft: one row says why
                sec.unavailable(f"{type(e).__name__}: {str(e)[:160]}")
                traceback.print_exc(file=sys.stderr)
            sec.seconds = time.perf_counter() - t0
            done.append(sec)
    finally:
        ctx.close()
    return done


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    only = [k.strip() for k in args.only.split(",") if k.strip()] if args.only else None
    if only and set(only) - set(KEYS):
        p.error(f"unknown sections: {', '.join(sorted(set(only) - set(KEYS)))} (known: {', '.join(KEYS)})")
    chosen = [m for m in SECTIONS if not only or m.KEY in only]
    ctx = Run(args, Progress(not args.quiet))
    t_start = time.perf_counter()
    done = run_sections(chosen, ctx)
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
        "sections": [s.key for s in done],
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
    strict = args.strict or bool(os.environ.get("BENCH_STRICT"))
    return 1 if strict and harness.missed(done) else 0


def standalone(key: str, argv: list[str] | None = None) -> int:
    """`python bench/<section>.py [options]`: that section alone, exit 1 on a missed target."""
    rest = sys.argv[1:] if argv is None else argv
    return main(["--only", key, "--strict", *rest])


if __name__ == "__main__":
    sys.exit(main())
