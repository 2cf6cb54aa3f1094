"""What a Lambda handler needs at run time, created once per execution environment and lazily:
the validated settings, the AWS client factory, the clock and the account id."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from ..aws.clients import Aws, default_aws
from ..domain.settings import Settings


@lru_cache(maxsize=1)
def settings() -> Settings:
    """Validated once at cold start; a bad parameter fails every invocation with ConfigError."""
    return Settings.from_env()


def aws() -> Aws:
    return default_aws()


def now() -> datetime:
    return datetime.now(UTC)


def account_id(context: Any) -> str | None:
    """The account the function runs in, from its ARN (arn:aws:lambda:region:account:function:name)."""
    arn = getattr(context, "invoked_function_arn", "") or ""
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 and parts[4].isdigit() else None


def reset() -> None:
    """Forget cached settings and clients (tests, and the local runner between stacks)."""
    settings.cache_clear()
    default_aws.cache_clear()
