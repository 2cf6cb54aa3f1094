"""BackfillFunction: manual invoke -> tagging, replication and retirement of existing images.

Payload (all keys optional): `{"actions": ["tag", "replicate", "retire"], "regions": ["us-east-1"],
"image_ids": ["ami-..."], "dry_run": true}`; `dry_run` defaults to true. A follow-up invocation
(time budget) adds `"continuation": {...}`. Returns the backfill report (ami_lifecycle.domain.report), or
`{"status": "refused", "error": ...}`.
"""

from typing import Any

from ami_lifecycle import runtime
from ami_lifecycle.runtime.observability import logger, metrics
from ami_lifecycle.services.backfill import handle
from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, runtime.deps(context))
