"""The SQS gateway: the copy queue (SendMessageBatch of copy requests, ChangeMessageVisibility)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..domain.replication import CopyRequest
from ..domain.tags import is_region_name

# SendMessageBatch takes at most 10 messages.
SQS_BATCH = 10


def queue_region(url: str, default: str) -> str:
    """The region of an SQS queue URL (`https://sqs.<region>.amazonaws.com/...`), else `default`."""
    match = re.match(r"^https?://sqs\.([a-z0-9-]+)\.amazonaws\.com", url)
    return match.group(1) if match and is_region_name(match.group(1)) else default


class CopyQueue:
    """The queue ReplicatorFunction consumes."""

    def __init__(self, client: Any, url: str) -> None:
        self.client = client
        self.url = url

    @classmethod
    def of(cls, aws: Any, url: str, home_region: str) -> CopyQueue:
        return cls(aws.client("sqs", queue_region(url, home_region)), url)

    def send(self, requests: Sequence[CopyRequest]) -> list[tuple[CopyRequest, str]]:
        """SendMessageBatch, 10 at a time. Returns the requests SQS refused, each with `Code: message`;
        raises on a call error."""
        failures: list[tuple[CopyRequest, str]] = []
        for start in range(0, len(requests), SQS_BATCH):
            batch = requests[start : start + SQS_BATCH]
            resp = self.client.send_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(i), "MessageBody": r.to_json()} for i, r in enumerate(batch)],
            )
            for fail in resp.get("Failed", []):
                req = batch[int(fail["Id"])]
                failures.append((req, f"{fail.get('Code')}: {fail.get('Message', '')}"))
        return failures

    def change_visibility(self, receipt: str, seconds: int) -> None:
        self.client.change_message_visibility(QueueUrl=self.url, ReceiptHandle=receipt, VisibilityTimeout=seconds)
