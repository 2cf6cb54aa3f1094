"""What a service needs at run time (`Deps`), built once per execution environment: the validated
settings, the AWS clients, the clock, the account and the time budget. Every service has one
signature, `handle(event, deps)`; the Lambda shells call `deps(context)`, the CLI and the tests
build `Deps.create(...)` themselves."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from ..aws.clients import Aws, default_aws
from ..aws.regions import known_regions
from ..domain.settings import Settings
from .budget import SAFETY_MARGIN_MS, Budget

# A follow-up invocation of the same function: the payload to send (see services/*.py).
Invoker = Callable[[dict[str, Any]], None]


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The settings from the process environment (or `env`), region names checked against
    botocore's region list. Raises ConfigError naming the bad variable."""
    return Settings.from_env(os.environ if env is None else env, known_regions())


@lru_cache(maxsize=1)
def settings() -> Settings:
    """Validated once at cold start; a bad parameter fails every invocation with ConfigError."""
    return load_settings()


def aws() -> Aws:
    return default_aws()


def now() -> datetime:
    return datetime.now(UTC)


def account_id(context: Any) -> str | None:
    """The account the function runs in, from its ARN (arn:aws:lambda:region:account:function:name)."""
    arn = getattr(context, "invoked_function_arn", "") or ""
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 and parts[4].isdigit() else None


@dataclass(frozen=True)
class Deps:
    """Everything a service touches besides its event."""

    settings: Settings
    aws: Aws
    clock: Callable[[], datetime]
    account_id: str | None = None
    budget: Budget = field(default_factory=Budget)
    known_regions: frozenset[str] = field(default_factory=known_regions)
    # Starts a follow-up invocation (the Lambda shells: this function again, asynchronously).
    invoke: Invoker | None = None

    @classmethod
    def create(
        cls,
        settings: Settings,
        aws: Aws,
        now: datetime | Callable[[], datetime] | None = None,
        account_id: str | None = None,
        *,
        context: Any = None,
        invoke: Invoker | None = None,
        margin_ms: int = SAFETY_MARGIN_MS,
    ) -> Deps:
        """`now`: a fixed instant (tests), a clock, or None for the real clock."""
        if now is None:
            clock: Callable[[], datetime] = _now
        elif isinstance(now, datetime):
            fixed = now
            clock = lambda: fixed  # noqa: E731
        else:
            clock = now
        function = getattr(context, "invoked_function_arn", "") or getattr(context, "function_name", "")
        if invoke is None and function:
            invoke = _lambda_invoker(aws, settings, function)
        return cls(settings, aws, clock, account_id, Budget.of(context, margin_ms), known_regions(), invoke)

    def with_margin(self, margin_ms: int) -> Deps:
        return Deps(
            self.settings,
            self.aws,
            self.clock,
            self.account_id,
            Budget(self.budget.remaining_ms, margin_ms),
            self.known_regions,
            self.invoke,
        )


def _now() -> datetime:
    return now()  # looked up at each call: tests may replace runtime.now


def deps(context: Any, *, margin_ms: int = SAFETY_MARGIN_MS) -> Deps:
    """The dependencies of one Lambda invocation."""
    current = settings()
    function = getattr(context, "invoked_function_arn", "") or getattr(context, "function_name", "")
    return Deps(
        current,
        aws(),
        _now,
        account_id(context),
        Budget.of(context, margin_ms),
        known_regions(),
        _lambda_invoker(aws(), current, function) if function else None,
    )


def _lambda_invoker(clients: Aws, settings: Settings, function: str) -> Invoker:
    """This function again, asynchronously (the one self-invocation: sweep and backfill use it)."""
    from ..aws.lambda_ import invoke_async

    def invoke(payload: dict[str, Any]) -> None:
        invoke_async(clients, settings.home_region, function, payload)

    return invoke


def reset() -> None:
    """Forget cached settings and clients (tests, and the local runner between stacks)."""
    settings.cache_clear()
    default_aws.cache_clear()
