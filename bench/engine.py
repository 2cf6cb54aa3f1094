"""Section engine: the pure retention engine (rank + decide) and the adoption decision per second, no AWS.

Target: rank + decide (retention.decide_all) at least 100,000 images/s on one core (the engine is
single-threaded pure Python; one run over 200,000 images in memory).

    .venv/bin/python bench/engine.py          # this section alone
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import seed
from harness import HOME, Run, Section, check_min, fmt_n, fmt_s

KEY = "engine"
TITLE = "Decision engine throughput (pure CPU)"
TARGET_PER_S = 100_000


def images(n: int, now: datetime) -> list[Any]:
    """n managed images in one region, families of 1 to 150, ~10% expired, 3% held."""
    from ami_lifecycle.domain.model import Image

    rng = random.Random(11)
    out = []
    for i, p in enumerate(seed.plan(HOME, n, now, rng)):
        tags = p.tags or {
            f"{seed.PREFIX}:managed": "true",
            f"{seed.PREFIX}:retention": "90d",
            f"{seed.PREFIX}:family": p.family,
        }
        out.append(
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
    return out


def best_rate(fn: Callable[[], Any], n: int, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    best = min(times)
    return n / best, best


def profile_top(fn: Callable[[], Any], k: int) -> str:
    """The k functions with the most self time under cProfile, as shares of the total."""
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


def run(sec: Section, ctx: Run) -> None:
    from ami_lifecycle.domain import retention
    from ami_lifecycle.domain.adoption import decide_adoption
    from ami_lifecycle.domain.evidence import checked_unused
    from ami_lifecycle.domain.settings import Settings

    account = seed.ACCOUNT
    n = 20_000 if ctx.opts.quick else 200_000
    repeat = 1  # one run over 200,000 images is long enough to average itself
    now = datetime.now(UTC)
    settings = Settings(home_region=HOME)
    t0 = time.perf_counter()
    fleet = images(n, now)
    ctx.say(f"engine: built {n:,} images in memory ({time.perf_counter() - t0:.1f} s)")
    families = len({i.tags.get(f"{settings.tag_prefix}:family") for i in fleet})
    refs = {fleet[k].image_id: checked_unused() for k in range(0, n, 97)}

    t0 = time.perf_counter()
    decisions = retention.decide_all(fleet, settings, now, refs, account)
    took = time.perf_counter() - t0
    rate = n / took
    sec.row(
        "decisions/s: rank + decide (decide_all)",
        f"{fmt_n(rate)} images/s ({n:,} in {fmt_s(took)}, {families:,} families)",
        f">= {fmt_n(TARGET_PER_S)}/s, one core",
        check_min(rate, TARGET_PER_S, fmt_n),
        note=f"{n:,} images in {families:,} families",
    )
    r_rate, _ = best_rate(lambda: retention.rank_families(fleet, settings, account), n, repeat)
    d_rate = n / max(1e-9, n / rate - n / r_rate)
    sec.row("  of which rank_families alone", f"{fmt_n(r_rate)} images/s")
    sec.row("  of which decide (the rest)", f"{fmt_n(d_rate)} images/s")
    retire = sum(1 for d in decisions.values() if d.retire)
    sec.row("  decisions", f"{retire:,} retire, {n - retire:,} keep")

    hot = profile_top(lambda: retention.decide_all(fleet[:20_000], settings, now, refs, account), 5)
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
        for i in fleet[:m]
    ]
    a_rate, _ = best_rate(lambda: [decide_adoption(i, settings, now, account) for i in untagged], m, repeat)
    sec.row("adoption: decide_adoption, new images", f"{fmt_n(a_rate)} images/s", note="untagged: tags computed")
    t_rate, _ = best_rate(lambda: [decide_adoption(i, settings, now, account) for i in fleet[:m]], m, repeat)
    sec.row("adoption: decide_adoption, tagged images", f"{fmt_n(t_rate)} images/s", note="already managed")
    sec.data.update(
        {
            "images": n,
            "families": families,
            "decide_all_per_s": rate,
            "target_per_s": TARGET_PER_S,
            "rank_per_s": r_rate,
            "decide_per_s": d_rate,
            "adoption_new_per_s": a_rate,
            "adoption_tagged_per_s": t_rate,
        }
    )


if __name__ == "__main__":
    import run as bench

    sys.exit(bench.standalone(KEY))
