"""The Lambda's time budget: how long an invocation may still work before it must stop cleanly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Stop when less than this is left of the Lambda's time: enough to finish the call in flight,
# write the report and return the cursor (or invoke the follow-up).
SAFETY_MARGIN_MS = 60_000


class OutOfTime(Exception):
    """Raised inside a region when the time budget is spent: the region is done again later."""


@dataclass
class Budget:
    """The Lambda's remaining time; `remaining_ms` None means unlimited (the CLI, tests)."""

    remaining_ms: Callable[[], int] | None = None
    margin_ms: int = SAFETY_MARGIN_MS

    @classmethod
    def of(cls, context: Any, margin_ms: int = SAFETY_MARGIN_MS) -> Budget:
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        return cls(remaining if callable(remaining) else None, margin_ms)

    def exhausted(self) -> bool:
        return self.remaining_ms is not None and self.remaining_ms() < self.margin_ms

    def check(self) -> None:
        if self.exhausted():
            raise OutOfTime()
