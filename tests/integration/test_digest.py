"""Each sweep publishes one digest to DIGEST_TOPIC_ARN when something happened, and none otherwise."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ami_lifecycle.domain.settings import Settings
from ami_lifecycle.runtime import Deps
from ami_lifecycle.services import sweep as sweep_module

from tests.conftest import ACCOUNT_ID, LocalAws


def subscribed_queue(local: LocalAws) -> tuple[str, Any, str]:
    sns, sqs = (
        local.session.client("sns", region_name="us-east-1"),
        local.session.client("sqs", region_name="us-east-1"),
    )
    topic = sns.create_topic(Name="digest")["TopicArn"]
    url = sqs.create_queue(QueueName="digest-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return topic, sqs, url


def messages(sqs: Any, url: str) -> list[dict[str, Any]]:
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in got]


def test_one_digest_per_sweep_that_did_something_and_none_for_a_quiet_one(
    moto_aws: LocalAws, ec2: Any, make_settings: Callable[..., Settings], now: datetime, managed: Callable[..., str]
) -> None:
    topic, sqs, url = subscribed_queue(moto_aws)
    settings = make_settings(digest_topic_arn=topic, manage_new_images=False)
    image_id = managed(ec2, "web-1", now)
    sweep_module.handle({"regions": ["us-east-1"]}, Deps.create(settings, moto_aws.aws(), now, ACCOUNT_ID))
    (digest,) = messages(sqs, url)
    assert digest["Subject"].startswith("ami-lifecycle sweep done: 1 retired") and image_id in digest["Message"]
    # Nothing left to do: no message
    sweep_module.handle({"regions": ["us-east-1"]}, Deps.create(settings, moto_aws.aws(), now, ACCOUNT_ID))
    assert messages(sqs, url) == []
