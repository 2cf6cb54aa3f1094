"""Section package: `sam build`, the layer and each function unzipped and zipped, against the Lambda limits.

Limits (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html): 250 MB unzipped for
a function with all its layers; 50 MB for a .zip uploaded directly. Needs the SAM CLI (.venv-sam).

    .venv/bin/python bench/package_size.py    # this section alone
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from harness import HOME, ROOT, Run, Section, check_max, fmt_mb

KEY = "package"
TITLE = "Package size (sam build)"
SAM = ROOT / ".venv-sam" / "bin" / "sam"
UNZIPPED_LIMIT = 250 * 1024 * 1024  # function + all its layers
ZIPPED_LIMIT = 50 * 1024 * 1024  # direct upload of one .zip


def dir_size(path: Path) -> tuple[int, int]:
    total, files = 0, 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
            files += 1
    return total, files


def zip_size(path: Path, out: Path) -> int:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        for p in sorted(path.rglob("*")):
            if p.is_file() and not p.is_symlink():
                z.write(p, p.relative_to(path))
    return out.stat().st_size


def run(sec: Section, ctx: Run) -> None:
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
        ctx.say(f"package: sam build in {took:.1f} s")
        sec.row("sam build", f"ok in {took:.1f} s", note="into a temporary --build-dir")
        layer_size, layer_files = dir_size(build / "CoreLayer")
        layer_zip = zip_size(build / "CoreLayer", Path(tmp) / "CoreLayer.zip")
        sec.row(
            "CoreLayer",
            f"{fmt_mb(layer_size)} unzipped ({layer_files:,} files), {fmt_mb(layer_zip)} zipped",
            f"zip <= {fmt_mb(ZIPPED_LIMIT)}",
            check_max(layer_zip, ZIPPED_LIMIT, fmt_mb),
        )
        data: dict[str, Any] = {"CoreLayer": {"unzipped": layer_size, "zipped": layer_zip}, "build_s": took}
        for fn_dir in sorted(p for p in build.iterdir() if p.is_dir() and p.name != "CoreLayer"):
            size, files = dir_size(fn_dir)
            zipped = zip_size(fn_dir, Path(tmp) / f"{fn_dir.name}.zip")
            with_layer = size + layer_size
            verdict = check_max(with_layer, UNZIPPED_LIMIT, fmt_mb)
            if not verdict.startswith("MISSED"):
                verdict = check_max(zipped, ZIPPED_LIMIT, fmt_mb)
            sec.row(
                fn_dir.name,
                f"{size / 1024:.1f} KB ({files} files), {zipped / 1024:.1f} KB zipped; with layer {fmt_mb(with_layer)}",
                f"<= {fmt_mb(UNZIPPED_LIMIT)} with layers",
                verdict,
            )
            data[fn_dir.name] = {"unzipped": size, "zipped": zipped, "with_layers": with_layer, "files": files}
        biggest = sorted(
            ((p.name, dir_size(p)[0]) for p in (build / "CoreLayer" / "python").iterdir() if p.is_dir()),
            key=lambda kv: -kv[1],
        )[:4]
        sec.row("  biggest in the layer", ", ".join(f"{n} {fmt_mb(s)}" for n, s in biggest))
        sec.data.update(data)
    sec.notes.append(
        "Limits: 250 MB unzipped for a function with all its layers; 50 MB for a .zip uploaded directly "
        "(sam deploy uploads through S3, where the unzipped limit is the one that binds)."
    )


if __name__ == "__main__":
    import run as bench

    sys.exit(bench.standalone(KEY))
