"""What every section shares: result rows and the table, the run's context, formatting, output hygiene.

Nothing here knows what is measured (one module per measurement: engine.py, cold_start.py, ...) nor
how the local AWS is started (local.py, on top of ami_lifecycle_localaws).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HOME = "us-east-1"

MET = "met"
INFO = "info"

# ---------------------------------------------------------------- results


@dataclass
class Row:
    """One line of the table. `verdict` is "met", "MISSED ...", "info" or "not available: ..."."""

    metric: str
    value: str
    target: str = ""
    verdict: str = INFO
    note: str = ""


@dataclass
class Section:
    key: str
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def row(self, metric: str, value: str, target: str = "", verdict: str = INFO, note: str = "") -> Row:
        r = Row(metric, value, target, verdict, note)
        self.rows.append(r)
        return r

    def unavailable(self, reason: str, metric: str = "section") -> None:
        self.rows.append(Row(metric, "-", "", f"not available: {reason}"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "seconds": round(self.seconds, 2),
            "rows": [asdict(r) for r in self.rows],
            "notes": self.notes,
            "data": self.data,
        }


def check_max(measured: float, limit: float, fmt: Callable[[float], str] = str) -> str:
    """ "met" when measured <= limit, else MISSED with the margin."""
    if measured <= limit:
        return MET
    over = (measured / limit - 1) * 100 if limit else float("inf")
    return f"MISSED by {fmt(measured - limit)} (+{over:.0f}%)"


def check_min(measured: float, floor: float, fmt: Callable[[float], str] = str) -> str:
    """ "met" when measured >= floor, else MISSED with the margin."""
    if measured >= floor:
        return MET
    under = (1 - measured / floor) * 100 if floor else 100.0
    return f"MISSED by {fmt(floor - measured)} (-{under:.0f}%)"


def missed(sections: Sequence[Section]) -> list[tuple[Section, Row]]:
    return [(s, r) for s in sections for r in s.rows if r.verdict.startswith("MISSED")]


# ---------------------------------------------------------------- the table

MAX_VALUE = 76


def _wrap(text: str, width: int) -> list[str]:
    """Split a long value at ", " boundaries (call lists), else hard."""
    if len(text) <= width:
        return [text]
    out, line = [], ""
    for part in text.split(", "):
        candidate = f"{line}, {part}" if line else part
        if len(candidate) <= width:
            line = candidate
        else:
            if line:
                out.append(line + ",")
            while len(part) > width:
                out.append(part[:width])
                part = part[width:]
            line = part
    if line:
        out.append(line)
    return out


def render(sections: Sequence[Section], header: str = "") -> str:
    """Plain-text, aligned: one block per section (long values wrap onto continuation lines), the
    targets met and missed, then the notes."""
    cols = ("metric", "measured", "target", "verdict")
    table: list[tuple[str, ...] | str] = []
    for s in sections:
        table.append(f"== {s.title} ({s.seconds:.1f} s)")
        for r in s.rows:
            values = _wrap(r.value, MAX_VALUE)
            table.append((f"  {r.metric}", values[0], r.target, r.verdict))
            table.extend(("", v, "", "") for v in values[1:])
    rows = [t for t in table if isinstance(t, tuple)]
    widths = [max(len(c), *(len(t[i]) for t in rows)) if rows else len(c) for i, c in enumerate(cols)]
    sep = "  "
    lines = [header] if header else []
    lines.append(sep.join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    lines.append(sep.join("-" * w for w in widths))
    for t in table:
        if isinstance(t, str):
            lines.append(t)
        else:
            lines.append(sep.join(v.ljust(w) for v, w in zip(t, widths, strict=True)).rstrip())
    judged = [r for s in sections for r in s.rows if r.verdict == MET or r.verdict.startswith("MISSED")]
    if judged:
        bad = missed(sections)
        lines.append("")
        lines.append(f"Targets: {len(judged) - len(bad)} met, {len(bad)} missed")
        lines.extend(f"- MISSED [{s.key}] {r.metric.strip()}: {r.value} (target {r.target})" for s, r in bad)
    notes = [(s.title, n) for s in sections for n in s.notes]
    if notes:
        lines.append("")
        lines.append("Notes")
        for title, n in notes:
            lines.append(f"- [{title}] {n}")
    return "\n".join(lines)


def to_json(sections: Sequence[Section], meta: dict[str, Any]) -> str:
    return json.dumps({"meta": meta, "sections": {s.key: s.to_dict() for s in sections}}, indent=2, default=str)


# ---------------------------------------------------------------- the run


class Run:
    """What a section gets besides its Section: the options, progress output, the run's clock (for
    the time budget), and resources shared by the sections and closed when the run ends."""

    def __init__(self, opts: argparse.Namespace, say: Progress) -> None:
        self.opts = opts
        self.say = say
        self.t0 = time.perf_counter()
        self.shared: dict[str, Any] = {}
        self.cleanup = contextlib.ExitStack()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def close(self) -> None:
        self.cleanup.close()


# ---------------------------------------------------------------- formatting


def fmt_s(seconds: float) -> str:
    if seconds != seconds:  # nan: nothing measured
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_n(n: float) -> str:
    return f"{n:,.0f}"


def fmt_x(ratio: float) -> str:
    return f"{ratio:.2f}x"


def fmt_mb(n_bytes: float) -> str:
    """Megabytes as Lambda's limits count them (2^20 bytes)."""
    return f"{n_bytes / 2**20:.2f} MB"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def median_counter(counters: Sequence[Counter[str]]) -> Counter[str]:
    keys = {k for c in counters for k in c}
    return Counter({k: int(median([c.get(k, 0) for c in counters])) for k in keys})


def calls_text(counter: Counter[str] | dict[str, int], limit: int = 8) -> str:
    items = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{k} {v}" for k, v in items[:limit])
    return text + (f", +{len(items) - limit} more" if len(items) > limit else "")


# ---------------------------------------------------------------- output hygiene


class Progress:
    """Progress lines on stderr (the table goes to stdout at the end)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.t0 = time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(f"[bench {time.perf_counter() - self.t0:6.1f}s] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def stdout_to_devnull() -> Iterator[None]:
    """Send fd 1 to /dev/null while the product logs (Powertools writes one JSON line per image to
    stdout, as in Lambda). The logging still happens, so its CPU cost is measured; only the bytes go."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
