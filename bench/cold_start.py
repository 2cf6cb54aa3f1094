"""Section cold_start: importing each handler as Lambda does, in a fresh interpreter, against `import boto3`.

Each import runs in a new subprocess with the layer first on sys.path, the handler loaded by file
path, and the environment LocalStack gives the function (template.yaml, parameters at their
defaults) plus what the Lambda runtime sets. Runs are interleaved (boto3, then every handler, N
times) and the median is kept. Target: each handler's import at most 1.3x `import boto3` measured in
the same run.

    .venv/bin/python bench/cold_start.py      # this section alone
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import local
from harness import HOME, ROOT, Run, Section, check_max, fmt_s, fmt_x, median, median_counter

KEY = "cold_start"
TITLE = "Cold start: handler import vs import boto3"
LAYER_DIR = ROOT / "layers" / "core"
TARGET_RATIO = 1.30
BASELINE_ENV_OF = "ImageEventsFunction"  # `import boto3` runs in this function's environment
FUNCTION_MEMORY_MB = 512
CPU_SLOWDOWN = 1769 / FUNCTION_MEMORY_MB  # one full vCPU at 1,769 MB

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

# What the Lambda runtime sets besides the function's own variables. Tracing is Active in the
# template, and AWS_LAMBDA_FUNCTION_NAME is set, as in Lambda.
_RUNTIME_ENV = {
    "LANG": "C.UTF-8",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(FUNCTION_MEMORY_MB),
    "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
    "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
}


class Importer:
    """Imports in fresh interpreters, each with its function's environment."""

    def __init__(self, ctx: Run, pycache: Path) -> None:
        # The environment the template gives each function, resolved by LocalStack (the queue URLs
        # point at the local AWS; nothing is called at import time).
        self.stack = local.stack(ctx, {}, "ami-lifecycle")
        self.pycache = pycache  # PYTHONPYCACHEPREFIX: bytecode goes there, not into the source tree

    def handler_file(self, logical_id: str) -> Path:
        spec = self.stack.functions[logical_id]
        return ROOT / spec.code_uri / f"{spec.handler.partition('.')[0]}.py"

    def env(self, logical_id: str | None, **extra: str) -> dict[str, str]:
        lid = logical_id or BASELINE_ENV_OF
        spec = self.stack.functions[lid]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **_RUNTIME_ENV}
        env.update(self.stack.environment(lid))
        env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = HOME
        env["_HANDLER"] = spec.handler
        env["LAMBDA_TASK_ROOT"] = str(ROOT / spec.code_uri)
        env["PYTHONPYCACHEPREFIX"] = str(self.pycache)
        env.update(extra)
        return env

    def once(self, logical_id: str | None, *flags: str, **extra_env: str) -> tuple[float, str]:
        """(seconds, stderr) of one import: `import boto3` when logical_id is None, else the handler."""
        target = "boto3" if logical_id is None else str(self.handler_file(logical_id))
        cwd = self.pycache.parent if logical_id is None else self.handler_file(logical_id).parent
        code = _IMPORT_SNIPPET.format(layer=str(LAYER_DIR), target=target)
        proc = subprocess.run(
            [sys.executable, *flags, "-c", code],
            env=self.env(logical_id, **extra_env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"import failed: {last}")
        return float(proc.stdout.strip().splitlines()[-1]), proc.stderr


def importtime_by_package(stderr: str) -> Counter[str]:
    """Self time (µs) from `python -X importtime`: per top-level package, except our own package,
    per module (its self time includes what its module body does, e.g. building Powertools' Logger)."""
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


def run(sec: Section, ctx: Run) -> None:
    quick = ctx.opts.quick
    runs = 3 if quick else 7
    with tempfile.TemporaryDirectory() as tmp:
        imp = Importer(ctx, Path(tmp) / "pycache")
        targets: list[str] = []
        failed: dict[str, str] = {}
        # Warm-up: compiles the bytecode into the private cache, and finds the handlers that import at all.
        imp.once(None)
        for lid in imp.stack.functions:
            if not imp.handler_file(lid).exists():
                failed[lid] = f"{imp.handler_file(lid).relative_to(ROOT)} does not exist"
                continue
            try:
                imp.once(lid)
                targets.append(lid)
            except RuntimeError as e:
                failed[lid] = str(e)[:160]
        samples: dict[str, list[float]] = {"boto3": [], **{lid: [] for lid in targets}}
        for _ in range(runs):  # interleaved, so that drift hits every target alike
            samples["boto3"].append(imp.once(None)[0])
            for lid in targets:
                samples[lid].append(imp.once(lid)[0])
        base = median(samples["boto3"])
        sec.row("import boto3 alone", f"{fmt_s(base)} (median of {runs})", note=f"median of {runs}")
        ratios: dict[str, float] = {}
        for lid in imp.stack.functions:
            if lid in failed:
                sec.row(f"import {lid}", "-", f"<= {fmt_x(TARGET_RATIO)} boto3", f"not available: {failed[lid]}")
                continue
            t = median(samples[lid])
            ratios[lid] = t / base
            sec.row(
                f"import {lid}",
                f"{fmt_s(t)} = {fmt_x(t / base)} boto3",
                f"<= {fmt_x(TARGET_RATIO)} boto3",
                check_max(t / base, TARGET_RATIO, fmt_x),
            )

        # Why: the extra import time over boto3, by package (median of -X importtime runs).
        it_runs = 1 if quick else 2

        def profile(lid: str | None) -> Counter[str]:
            return median_counter([importtime_by_package(imp.once(lid, "-X", "importtime")[1]) for _ in range(it_runs)])

        base_pk = profile(None)
        extras: dict[str, Counter[str]] = {}
        for lid in targets:
            pk = profile(lid)
            extra = Counter({k: v - base_pk.get(k, 0) for k, v in pk.items() if v - base_pk.get(k, 0) > 3000})
            extras[lid] = extra
            top = ", ".join(f"{k} {v / 1000:.0f} ms" for k, v in extra.most_common(6))
            sec.row(f"  extra over boto3, {lid}", top or "-", note="-X importtime self time by package")
        # As the layer ships: its Makefile strips every __pycache__ and /opt is read-only in Lambda, so
        # each cold start compiles the layer's boto3, botocore, powertools... from source.
        if not quick:
            empty = Path(tmp) / "empty-pycache"
            empty.mkdir()
            nopyc = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(empty)}  # a cache that stays empty
            nb = imp.once(None, **nopyc)[0]
            sec.row("no .pyc (as the layer ships): import boto3", fmt_s(nb), note="one run each")
            samples["nopyc:boto3"] = [nb]
            for lid in targets:
                t = imp.once(lid, **nopyc)[0]
                sec.row(f"no .pyc: import {lid}", f"{fmt_s(t)} = {fmt_x(t / base)} boto3 with .pyc")
                samples[f"nopyc:{lid}"] = [t]
    sec.data.update(
        {
            "samples_s": samples,
            "ratios": ratios,
            "target_ratio": TARGET_RATIO,
            "failed": failed,
            "extra_us_by_package": {k: dict(v) for k, v in extras.items()},
        }
    )
    sec.notes.append(
        "Cold start: each import runs in a fresh interpreter (subprocess) with the layer package first on "
        "sys.path, the handler loaded by file path as Lambda does, and the environment LocalStack gives the "
        "function from the template (parameters at their defaults; AWS_LAMBDA_FUNCTION_NAME set, as in "
        "Lambda; tracing is Lambda's own, no X-Ray SDK). Times are perf_counter around the import, on this machine's "
        f"CPU; a {FUNCTION_MEMORY_MB} MB function gets about {FUNCTION_MEMORY_MB / 1769:.2f} of a vCPU, so "
        f"multiply by ~{CPU_SLOWDOWN:.1f} for Lambda."
    )
    sec.notes.append(
        "The built layer ships no bytecode: layers/core/Makefile removes every __pycache__ after pip (and pip, "
        "run by the build machine's Python, would have written pycs for that Python, not 3.13). /opt is "
        "read-only in Lambda, so every cold start compiles the layer's boto3/botocore/powertools from "
        "source: see the 'no .pyc' rows. Fix: compile with a python3.13 during the build (python3.13 -m "
        "compileall -q python/ with --invalidation-mode unchecked-hash) instead of deleting __pycache__."
    )


if __name__ == "__main__":
    import run as bench

    sys.exit(bench.standalone(KEY))
