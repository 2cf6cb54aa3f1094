"""Benchmark plumbing: result rows and the table, the embedded local AWS, timers, output hygiene.

Nothing here knows what is measured; `run.py` holds the sections.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "123456789012"  # moto's default account, and LocalStack's

# ---------------------------------------------------------------- results


@dataclass
class Row:
    """One line of the table. `verdict` is "ok", "MISSED ...", "info" or "not available"."""

    metric: str
    value: str
    target: str = ""
    verdict: str = "info"
    note: str = ""


@dataclass
class Section:
    key: str
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def row(self, metric: str, value: str, target: str = "", verdict: str = "info", note: str = "") -> Row:
        r = Row(metric, value, target, verdict, note)
        self.rows.append(r)
        return r

    def unavailable(self, reason: str) -> None:
        self.rows.append(Row("section", "-", "", f"not available: {reason}"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "seconds": round(self.seconds, 2),
            "rows": [asdict(r) for r in self.rows],
            "notes": self.notes,
            "data": self.data,
        }


def check_max(measured: float, limit: float, fmt: Callable[[float], str] = str) -> str:
    """ "ok" when measured <= limit, else MISSED with the margin."""
    if measured <= limit:
        return "ok"
    over = (measured / limit - 1) * 100 if limit else float("inf")
    return f"MISSED by {fmt(measured - limit)} (+{over:.0f}%)"


def check_min(measured: float, floor: float, fmt: Callable[[float], str] = str) -> str:
    if measured >= floor:
        return "ok"
    under = (1 - measured / floor) * 100 if floor else 100.0
    return f"MISSED by {fmt(floor - measured)} (-{under:.0f}%)"


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
    """Plain-text, aligned: one block per section (long values wrap onto continuation lines), then
    the notes."""
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
    notes = [(s.title, n) for s in sections for n in s.notes]
    if notes:
        lines.append("")
        lines.append("Notes")
        for title, n in notes:
            lines.append(f"- [{title}] {n}")
    return "\n".join(lines)


def to_json(sections: Sequence[Section], meta: dict[str, Any]) -> str:
    return json.dumps({"meta": meta, "sections": {s.key: s.to_dict() for s in sections}}, indent=2, default=str)


# ---------------------------------------------------------------- formatting


def fmt_s(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_n(n: float) -> str:
    return f"{n:,.0f}"


def fmt_mb(n_bytes: float) -> str:
    """Megabytes as Lambda's limits count them (2^20 bytes)."""
    return f"{n_bytes / 2**20:.2f} MB"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


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


# ---------------------------------------------------------------- the embedded local AWS


class ServerCpu:
    """CPU seconds spent by moto serving requests, measured in the server's threads, so that the
    client's share (our code + boto3/botocore) can be told apart from moto's. `total` covers whole
    requests (the WSGI app: routing, parsing, the action, the response) when the server allows it,
    else the actions alone; `by_action` always covers the actions alone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0.0
        self.by_action: Counter[str] = Counter()
        self.whole_requests = False

    def add(self, action: str, seconds: float) -> None:
        with self._lock:
            if not self.whole_requests:
                self.total += seconds
            self.by_action[action] += seconds

    def add_request(self, seconds: float) -> None:
        with self._lock:
            self.total += seconds

    def snapshot(self) -> tuple[float, Counter[str]]:
        with self._lock:
            return self.total, Counter(self.by_action)


SERVER_CPU = ServerCpu()


def prepare_env(endpoint: str | None = None) -> None:
    """Fake credentials, no real profile, moto without its public AMIs: set before the server starts
    and before any boto3 client is made."""
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(var, None)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(ROOT / "tests" / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(ROOT / "tests" / "no-aws-credentials"),
            "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
            "POWERTOOLS_SERVICE_NAME": "ami-lifecycle",
            "POWERTOOLS_METRICS_NAMESPACE": "AmiLifecycle",
            # No X-Ray daemon here: the in-process tracer would only fail to emit segments.
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    if endpoint:
        os.environ["AWS_ENDPOINT_URL"] = endpoint


@dataclass
class LocalAws:
    endpoint: str
    server: Any

    def stop(self) -> None:
        self.server.stop()


def speed_up_moto_tags() -> None:
    """Bench-only speed-up of moto, same answers: moto's ``TaggedEC2Resource.get_tags`` finds a
    resource's tags by scanning every tag of the region (``describe_tags`` with a ``resource-id``
    filter, an anchored regex per resource), and DescribeImages/DescribeSnapshots call it once per
    image to filter on ``tag:...`` and again to serialize ``Tags``: O(images x tags), minutes for a
    10,000-image region. This replaces it with the equivalent lookup in the same dict
    (``backend.tags[resource_id]``), same entries, same order. It changes moto's CPU only, which the
    benchmark meters apart from ours anyway; it changes no call and no response."""
    from moto.ec2.models.core import TaggedEC2Resource
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

    if getattr(TaggedEC2Resource.get_tags, "_bench_fast", False):
        return

    def get_tags(self: Any) -> list[dict[str, str]]:
        resource_id = getattr(self, "id", None)
        if not resource_id:
            return []
        tags = self.ec2_backend.tags.get(resource_id)
        if not tags:
            return []
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
        return [{"resource_id": resource_id, "key": k, "value": v, "resource_type": kind} for k, v in tags.items()]

    get_tags._bench_fast = True  # type: ignore[attr-defined]
    TaggedEC2Resource.get_tags = get_tags  # type: ignore[method-assign]


def start_local_aws() -> LocalAws:
    """moto as `ThreadedMotoServer(ip_address="127.0.0.1", port=0)` plus our documented extension,
    with `AWS_ENDPOINT_URL` pointing at it, and a per-request CPU meter around every action."""
    prepare_env()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per request
    from ami_lifecycle_localaws import motoext
    from moto.core.responses import BaseResponse
    from moto.server import ThreadedMotoServer

    motoext.install()
    motoext.clear_faults()
    speed_up_moto_tags()
    if not getattr(BaseResponse.call_action, "_bench_timed", False):
        inner = BaseResponse.call_action

        def timed(self: Any) -> Any:
            t0 = time.thread_time()
            try:
                return inner(self)
            finally:
                SERVER_CPU.add(self._get_action() or "?", time.thread_time() - t0)

        timed._bench_timed = True  # type: ignore[attr-defined]
        BaseResponse.call_action = timed  # type: ignore[method-assign]

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    wsgi = getattr(getattr(server, "_server", None), "app", None)  # werkzeug's server: one thread per request
    if wsgi is not None:

        def metered(environ: Any, start_response: Any) -> Any:
            t0 = time.thread_time()
            try:
                return list(wsgi(environ, start_response))
            finally:
                SERVER_CPU.add_request(time.thread_time() - t0)

        server._server.app = metered
        SERVER_CPU.whole_requests = True
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    prepare_env(endpoint)
    return LocalAws(endpoint, server)


@dataclass
class Measured:
    """Wall time, and CPU split between the client (our code + boto3) and moto, of one run."""

    wall: float
    client_cpu: float
    server_cpu: float
    calls: Counter[str]
    calls_by_region: dict[str, Counter[str]]
    server_by_action: Counter[str]
    result: Any = None

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


def measure(fn: Callable[[], Any], exclude_actions: frozenset[str] = frozenset()) -> Measured:
    """Run `fn` once against the local AWS: wall time, API calls (counted by moto), and CPU."""
    from ami_lifecycle_localaws import motoext

    motoext.reset_calls()
    s0, a0 = SERVER_CPU.snapshot()
    c0, w0 = time.process_time(), time.perf_counter()
    result = fn()
    w1, c1 = time.perf_counter(), time.process_time()
    s1, a1 = SERVER_CPU.snapshot()
    by_region = {
        region: Counter({a: n for a, n in counter.items() if a not in exclude_actions})
        for region, counter in motoext.calls_by_region().items()
    }
    by_region = {r: c for r, c in by_region.items() if c}
    calls: Counter[str] = Counter()
    for counter in by_region.values():
        calls.update(counter)
    server = s1 - s0
    return Measured(
        wall=w1 - w0,
        client_cpu=max(0.0, (c1 - c0) - server),
        server_cpu=server,
        calls=calls,
        calls_by_region=by_region,
        server_by_action=a1 - a0,
        result=result,
    )
