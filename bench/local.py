"""The local AWS of the benchmarks: the one the tests and the demo use, and only what a benchmark
adds on top of it.

- the server is ``ami_lifecycle_localaws.server.EmbeddedAws`` (moto on 127.0.0.1, a free port, with
  ``motoext``; it sets and restores the environment that points boto3 at it), started once per run
  on first use and stopped when the run ends;
- the functions are ``ami_lifecycle_localaws.stack.LocalStack``: template.yaml's wiring, its
  environment, its handlers loaded as Lambda loads them; API calls are counted by ``motoext``.

Added here, for measuring only (no call and no response changes):

- a CPU meter in the server's threads (``ServerCpu``), so that the client's share (our code +
  boto3) can be told apart from moto's;
- ``speed_up_moto_tags``: moto's tag lookup made O(1) (see there);
- ``warm``: LocalStack invocations that keep settings and clients, as a warm Lambda does.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ami_lifecycle_localaws import motoext
from ami_lifecycle_localaws.server import ACCOUNT_ID, EmbeddedAws
from ami_lifecycle_localaws.stack import LocalStack
from harness import HOME, Run

ACCOUNT = ACCOUNT_ID

# ---------------------------------------------------------------- moto's CPU, metered in its threads


class ServerCpu:
    """CPU seconds spent by moto serving requests, measured in the server's request threads: `total`
    covers whole requests (werkzeug's request handling: parsing, routing, the action, the response),
    `by_action` the actions alone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total: float = 0.0
        self.by_action: Counter[str] = Counter()

    def add_action(self, action: str, seconds: float) -> None:
        with self._lock:
            self.by_action[action] += seconds  # type: ignore[assignment]  # float seconds in a Counter

    def add_request(self, seconds: float) -> None:
        with self._lock:
            self.total += seconds

    def snapshot(self) -> tuple[float, Counter[str]]:
        with self._lock:
            return self.total, Counter(self.by_action)


SERVER_CPU = ServerCpu()


@contextlib.contextmanager
def metered() -> Iterator[None]:
    """Time every request (werkzeug's ``WSGIRequestHandler.run_wsgi``, which the server runs on one
    thread per request) and every action (moto's ``BaseResponse.call_action``, around motoext's
    counter) in thread CPU time. Undone on leaving."""
    from moto.core.responses import BaseResponse
    from werkzeug.serving import WSGIRequestHandler

    motoext.install()  # first, so that the timer wraps the extension's call_action
    call_action = BaseResponse.call_action
    run_wsgi = WSGIRequestHandler.run_wsgi

    def timed_action(self: Any) -> Any:
        t0 = time.thread_time()
        try:
            return call_action(self)
        finally:
            SERVER_CPU.add_action(self._get_action() or "?", time.thread_time() - t0)

    def timed_request(self: Any) -> None:
        t0 = time.thread_time()
        try:
            run_wsgi(self)
        finally:
            SERVER_CPU.add_request(time.thread_time() - t0)

    BaseResponse.call_action = timed_action  # type: ignore[method-assign]
    WSGIRequestHandler.run_wsgi = timed_request  # type: ignore[method-assign]
    try:
        yield
    finally:
        BaseResponse.call_action = call_action  # type: ignore[method-assign]
        WSGIRequestHandler.run_wsgi = run_wsgi  # type: ignore[method-assign]


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


def local_aws(ctx: Run) -> EmbeddedAws:
    """The run's EmbeddedAws, started (metered) on first use, stopped when the run ends."""
    aws = ctx.shared.get("aws")
    if aws is None:
        speed_up_moto_tags()
        ctx.cleanup.enter_context(metered())
        aws = ctx.cleanup.enter_context(EmbeddedAws(region=HOME))
        ctx.shared["aws"] = aws
        ctx.say(f"local AWS (EmbeddedAws, moto) at {aws.url}")
    return aws


def session() -> Any:
    import boto3

    return boto3.Session(region_name=HOME)


# ---------------------------------------------------------------- the stack


class TimedStack(LocalStack):
    """LocalStack that also times each handler invocation (put_event's time includes the routing)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.handler_seconds: list[float] = []
        super().__init__(*args, **kwargs)

    def invoke(self, logical_id: str, event: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return super().invoke(logical_id, event)
        finally:
            self.handler_seconds.append(time.perf_counter() - t0)


def stack(ctx: Run, parameters: Mapping[str, str], stack_name: str) -> TimedStack:
    """template.yaml deployed onto the run's local AWS."""
    local_aws(ctx)
    return TimedStack(region=HOME, parameters=dict(parameters), stack_name=stack_name, session=session())


@contextlib.contextmanager
def warm() -> Iterator[None]:
    """LocalStack.invoke as a warm Lambda runs: LocalStack resets the runtime (cached settings and
    boto3 clients) around every invocation, like a cold start; inside, the reset does nothing, so
    settings and clients are kept from one invocation to the next. The runtime is reset on leaving."""
    from ami_lifecycle import runtime

    reset = runtime.reset
    runtime.reset = lambda: None
    try:
        yield
    finally:
        runtime.reset = reset
        reset()


# ---------------------------------------------------------------- one measured run


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "wall_s": self.wall,
            "client_cpu_s": self.client_cpu,
            "moto_cpu_s": self.server_cpu,
            "calls": dict(self.calls),
        }


def measure(fn: Callable[[], Any], exclude_actions: frozenset[str] = frozenset()) -> Measured:
    """Run `fn` once against the local AWS: wall time, API calls (counted by motoext), and CPU."""
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


def freeze_heap() -> None:
    """Move everything alive (moto's seeded fleet above all) out of the cyclic GC's reach: in Lambda
    the heap holds only our objects, and the collector walking moto's would be charged to our CPU."""
    gc.collect()
    gc.freeze()
