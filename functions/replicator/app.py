"""ReplicatorFunction: SQS copy requests -> AMI copies, within the per-region concurrency limit,
with partial batch failures (deferred and failed requests stay on the queue)."""

from typing import Any

from ami_lifecycle import runtime
from ami_lifecycle.runtime.observability import logger, metrics
from ami_lifecycle.services.replicator import handle
from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, runtime.deps(context))
