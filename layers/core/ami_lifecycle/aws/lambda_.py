"""The Lambda API gateway: a follow-up invocation of a function, asynchronously."""

from __future__ import annotations

import json
from typing import Any


def invoke_async(aws: Any, region: str, function: str, payload: dict[str, Any]) -> None:
    """Invoke `function` with `payload`, InvocationType Event. Raises the client's errors."""
    aws.client("lambda", region).invoke(
        FunctionName=function, InvocationType="Event", Payload=json.dumps(payload).encode()
    )
