"""Publishes the digest of a run (domain/digest.py) to the digest topic (DIGEST_TOPIC_ARN). A
failure to publish is logged and counted, never fails the run (the report has everything)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..aws.errors import describe_error
from ..domain.digest import compose
from ..runtime import Deps
from ..runtime.observability import count, logger


def publish_digest(deps: Deps, report: Mapping[str, Any]) -> bool:
    """True when a digest was published."""
    topic = deps.settings.digest_topic_arn
    if not topic:
        return False
    digest = compose(report)
    if digest is None:
        return False
    region = topic.split(":")[3] if topic.count(":") >= 5 else deps.settings.home_region
    try:
        deps.accounts.hub_aws.client("sns", region).publish(
            TopicArn=topic, Subject=digest.subject, Message=digest.message
        )
    except (ClientError, BotoCoreError) as e:
        logger.error("digest not published", topic=topic, error=describe_error(e))
        count("DigestErrors")
        return False
    count("DigestsPublished")
    return True
