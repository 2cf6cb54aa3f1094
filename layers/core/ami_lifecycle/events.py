"""The `EC2 AMI State Change` event (PRODUCT.md section 5): validated into a small value object.

A malformed event is refused with BadEvent, whose message says what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .tags import is_region_name

SOURCE = "aws.ec2"
DETAIL_TYPE = "EC2 AMI State Change"
STATES = frozenset({"available", "failed", "deregistered", "disabled"})
_IMAGE_ID = re.compile(r"^ami-[0-9a-f]{8,17}\Z", re.ASCII)
_ACCOUNT = re.compile(r"^[0-9]{12}\Z", re.ASCII)


class BadEvent(ValueError):
    """The event is not an EC2 AMI State Change we can act on."""


@dataclass(frozen=True)
class AmiStateChange:
    event_id: str
    account: str
    region: str
    time: str
    image_id: str
    state: str
    error_message: str


def parse_ami_event(event: Any) -> AmiStateChange:
    if not isinstance(event, Mapping):
        raise BadEvent(f"event is a {type(event).__name__}, not a JSON object")
    # A plain mapping, not Powertools' EventBridgeEvent: importing the data classes package costs
    # ~70 ms of cold start for two dictionary look-ups.
    eb = event
    if eb.get("source") != SOURCE or eb.get("detail-type") != DETAIL_TYPE:
        raise BadEvent(
            f"not an EC2 AMI State Change event (source={eb.get('source')!r}, detail-type={eb.get('detail-type')!r})"
        )
    detail = eb.get("detail")
    if not isinstance(detail, Mapping):
        raise BadEvent("event has no detail object")
    image_id, state = detail.get("ImageId"), detail.get("State")
    if not isinstance(image_id, str) or not _IMAGE_ID.match(image_id):
        raise BadEvent(f"detail.ImageId {str(image_id)[:40]!r} is not an AMI id")
    if state not in STATES:
        raise BadEvent(f"detail.State {str(state)[:40]!r} is not one of {', '.join(sorted(STATES))}")
    region = eb.get("region")
    if not isinstance(region, str) or not is_region_name(region):
        raise BadEvent(f"region {str(region)[:40]!r} is not an AWS region")
    account = eb.get("account")
    if not isinstance(account, str) or not _ACCOUNT.match(account):
        raise BadEvent(f"account {str(account)[:40]!r} is not an AWS account id")
    return AmiStateChange(
        event_id=str(eb.get("id") or ""),
        account=account,
        region=region,
        time=str(eb.get("time") or ""),
        image_id=image_id,
        state=state,
        error_message=str(detail.get("ErrorMessage") or "")[:1000],
    )
