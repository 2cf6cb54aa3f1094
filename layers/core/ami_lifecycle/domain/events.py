"""The `EC2 AMI State Change` event (PRODUCT.md section 5): validated into a small value object.

A malformed event is refused with BadEvent, whose message says what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .ids import is_account_id, is_image_id
from .tags import is_region_name

SOURCE = "aws.ec2"
DETAIL_TYPE = "EC2 AMI State Change"
STATES = frozenset({"available", "failed", "deregistered", "disabled"})


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
    source, detail_type = eb.get("source"), eb.get("detail-type")
    if source != SOURCE or detail_type != DETAIL_TYPE:
        raise BadEvent(f"not an EC2 AMI State Change event (source={_show(source)}, detail-type={_show(detail_type)})")
    detail = eb.get("detail")
    if not isinstance(detail, Mapping):
        raise BadEvent("event has no detail object")
    image_id, state = detail.get("ImageId"), detail.get("State")
    if not isinstance(image_id, str) or not is_image_id(image_id):
        raise BadEvent(f"detail.ImageId {_show(image_id)} is not an AMI id")
    if not isinstance(state, str) or state not in STATES:  # a list or object is not hashable: check the type first
        raise BadEvent(f"detail.State {_show(state)} is not one of {', '.join(sorted(STATES))}")
    region = eb.get("region")
    if not isinstance(region, str) or not is_region_name(region):
        raise BadEvent(f"region {_show(region)} is not an AWS region")
    account = eb.get("account")
    if not isinstance(account, str) or not is_account_id(account):
        raise BadEvent(f"account {_show(account)} is not an AWS account id")
    return AmiStateChange(
        event_id=_text(eb.get("id"), 256),
        account=account,
        region=region,
        time=_text(eb.get("time"), 256),
        image_id=image_id,
        state=state,
        error_message=_text(detail.get("ErrorMessage"), 1000),
    )


def _show(value: Any) -> str:
    """A field's value for a message: short, and never raises (the value may be anything, of any size)."""
    if isinstance(value, str):
        return repr(value[:40])
    if value is None or isinstance(value, bool | float) or (isinstance(value, int) and abs(value) < 10**40):
        return repr(value)
    return f"<{type(value).__name__}>"  # a container, or an int too long to print (str() would raise)


def _text(value: Any, limit: int) -> str:
    """An informational text field, at most `limit` characters: a string, a number as text, else empty."""
    if isinstance(value, str):
        return value[:limit]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ""
    return _show(value)[:limit]
