"""What a service needs at run time (`Deps`), built once per execution environment: the validated
settings, the AWS clients, the clock, the account and the time budget, and the managed accounts
(`accounts`: the clients of each; `in_account(a)` is the Deps of one of them). Every service has one
signature, `handle(event, deps)`; the Lambda shells call `deps(context)`, the CLI and the tests
build `Deps.create(...)` themselves."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from ..aws.accounts import Accounts
from ..aws.clients import Aws, default_aws
from ..aws.regions import known_regions
from ..domain.settings import Settings
from .budget import SAFETY_MARGIN_MS, Budget


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


def function_name(context: Any) -> str:
    return str(getattr(context, "function_name", "") or "")


@lru_cache(maxsize=1)
def _accounts(hub: str | None, function: str) -> Accounts:
    """One per execution environment: the assumed roles' credentials outlive an invocation."""
    return Accounts(aws(), settings(), hub, function=function)


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
    # The managed accounts and their clients (None: built from `aws` on first use).
    accounts_: Accounts | None = None

    @property
    def accounts(self) -> Accounts:
        if self.accounts_ is None:
            object.__setattr__(self, "accounts_", Accounts(self.aws, self.settings, self.account_id))
        assert self.accounts_ is not None
        return self.accounts_

    @property
    def hub_account(self) -> str:
        return self.accounts.hub

    def pairs(
        self, accounts: Sequence[str] | None = None, regions: Sequence[str] | None = None
    ) -> list[tuple[str, str]]:
        """The covered (account, region) pairs, account by account: every managed account (or
        `accounts`) times the sweep regions (or `regions`)."""
        chosen = list(dict.fromkeys(accounts)) if accounts else list(self.accounts.managed())
        where = list(dict.fromkeys(regions or self.settings.sweep_regions))
        return [(account, region) for account in chosen for region in where]

    def in_account(self, account: str) -> Deps:
        """The same dependencies acting in `account` (its clients: the spoke role's unless it is the
        hub's). Raises accounts.NotManaged or accounts.AccountUnreachable."""
        accounts = self.accounts
        if account == self.account_id:
            return self
        return replace(self, aws=accounts.aws_for(account), account_id=account, accounts_=accounts)

    @classmethod
    def create(
        cls,
        settings: Settings,
        aws: Aws,
        now: datetime | Callable[[], datetime] | None = None,
        account_id: str | None = None,
        *,
        context: Any = None,
        margin_ms: int = SAFETY_MARGIN_MS,
        accounts: Accounts | None = None,
    ) -> Deps:
        """`now`: a fixed instant (tests), a clock, or None for the real clock."""
        if now is None:
            clock: Callable[[], datetime] = _now
        elif isinstance(now, datetime):
            fixed = now
            clock = lambda: fixed  # noqa: E731
        else:
            clock = now
        if accounts is None:
            accounts = Accounts(aws, settings, account_id, function=function_name(context) or "cli")
        return cls(settings, aws, clock, account_id, Budget.of(context, margin_ms), known_regions(), accounts)

    def with_margin(self, margin_ms: int) -> Deps:
        return replace(self, budget=Budget(self.budget.remaining_ms, margin_ms))


def _now() -> datetime:
    return now()  # looked up at each call: tests may replace runtime.now


def deps(context: Any, *, margin_ms: int = SAFETY_MARGIN_MS) -> Deps:
    """The dependencies of one Lambda invocation."""
    current = settings()
    hub = account_id(context)
    return Deps(
        current,
        aws(),
        _now,
        hub,
        Budget.of(context, margin_ms),
        known_regions(),
        _accounts(hub, function_name(context)),
    )


def reset() -> None:
    """Forget cached settings and clients (tests, and the local runner between stacks)."""
    settings.cache_clear()
    default_aws.cache_clear()
    _accounts.cache_clear()
