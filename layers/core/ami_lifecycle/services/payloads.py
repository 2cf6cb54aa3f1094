"""What the services share about the payloads they receive."""

from __future__ import annotations

from typing import Any

# A refused payload is logged with at most this many characters of it (it may be megabytes).
MAX_LOGGED_PAYLOAD = 2000


def clip_payload(event: Any) -> Any:
    """The payload for a log line: as it is when short, else the start of its repr."""
    text = repr(event)
    return event if len(text) <= MAX_LOGGED_PAYLOAD else text[:MAX_LOGGED_PAYLOAD] + "…"
