"""RetentionSweepFunction: SweepStateMachine's steps, or a manual invoke -> retire expired images.

Payload (all keys optional): `{"accounts": ["222222222222"], "regions": ["us-east-1"], "dry_run": true}`;
the state machine adds `source`, `retire_at_most` and, while a pair needs more invocations, the
`cursor` the previous one returned; its other steps send `{"operation": ...}`
(services/execution.py). Returns the sweep report (ami_lifecycle.domain.report), or
`{"status": "refused", "error": ...}`.
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
