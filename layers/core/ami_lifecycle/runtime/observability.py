"""Powertools Logger and Metrics, set up once for every function.

The service name comes from POWERTOOLS_SERVICE_NAME and the namespace from
POWERTOOLS_METRICS_NAMESPACE (both set in template.yaml's Globals).

Tracing is Lambda's own (template.yaml `Tracing: Active`): every invocation is traced, with its
Initialization, Invocation and Overhead segments, and each log line carries the `xray_trace_id`
(Powertools' Logger reads it from the environment). There is no Powertools Tracer: it needs the
X-Ray SDK, whose import, recorder and patching added ~17 ms to every cold start (12% of
`import boto3`), for subsegments around the handler and each AWS call. Those subsegments are what
was given up.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
metrics = Metrics()

__all__ = ["logger", "metrics", "MetricUnit", "count"]


def count(name: str, value: float = 1) -> None:
    """Add one business metric (unit Count)."""
    if value:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
