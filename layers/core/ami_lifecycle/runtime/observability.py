"""Powertools Logger, Tracer and Metrics, set up once for every function.

The service name comes from POWERTOOLS_SERVICE_NAME and the namespace from
POWERTOOLS_METRICS_NAMESPACE (both set in template.yaml's Globals).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
# Patch only what we call: patching every supported library imports requests, asyncio and more
# at cold start for nothing.
tracer = Tracer(patch_modules=["boto3", "botocore"])
metrics = Metrics()

__all__ = ["logger", "tracer", "metrics", "MetricUnit", "count"]


def count(name: str, value: float = 1) -> None:
    """Add one business metric (unit Count)."""
    if value:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
