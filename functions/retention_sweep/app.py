"""RetentionSweepFunction: EventBridge Scheduler or manual invoke -> retire expired images.

Payload (all keys optional): `{"regions": ["us-east-1"], "dry_run": true}`; the schedule sends
`{"source": "schedule"}`; a follow-up invocation (time budget) adds `"continuation": n`.
Returns the sweep report (ami_lifecycle.domain.report), or `{"status": "refused", "error": ...}`.
"""

from typing import Any

from ami_lifecycle import runtime
from ami_lifecycle.runtime.observability import logger, metrics
from ami_lifecycle.services.sweep import handle
from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, runtime.deps(context))
