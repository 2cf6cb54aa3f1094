"""What ImageEventsFunction does with one `EC2 AMI State Change` event.

available -> adopt and tag the image (tagging.py), then put its copy requests on the queue.
failed    -> log and count it; a failed copy of ours is recorded on its source image.
others    -> log and count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..aws.clients import Aws
from ..aws.ec2 import Ec2
from ..aws.regions import known_regions
from ..domain.events import AmiStateChange, BadEvent, parse_ami_event
from ..domain.replication import plan_copies, send_copy_requests
from ..domain.settings import Settings
from ..runtime.observability import count, logger
from .tagging import tag_image_by_id


@dataclass
class EventOutcome:
    status: str  # "tagged", "skipped", "missing", "refused", "recorded"
    reason: str
    image_id: str | None = None
    region: str | None = None
    tagging: dict[str, Any] | None = None
    copies_requested: list[str] = field(default_factory=list)
    copy_notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [], {})}


def handle_event(
    event: Any, settings: Settings, aws: Aws, now: datetime, account_id: str | None = None
) -> EventOutcome:
    try:
        change = parse_ami_event(event)
    except BadEvent as e:
        logger.warning("event refused", reason=str(e), event=_clip_event(event))
        count("EventsRefused")
        return EventOutcome("refused", str(e))
    if account_id and change.account != account_id:
        reason = f"event is for account {change.account}, this function runs in {account_id}"
        logger.warning("event refused", reason=reason, image_id=change.image_id)
        count("EventsRefused")
        return EventOutcome("refused", reason, change.image_id, change.region)
    if change.region not in settings.sweep_regions:
        reason = (
            f"event is from {change.region}, a region this stack does not cover ({', '.join(settings.sweep_regions)})"
        )
        logger.warning("event refused", reason=reason, image_id=change.image_id)
        count("EventsRefused")
        return EventOutcome("refused", reason, change.image_id, change.region)
    logger.append_keys(image_id=change.image_id, region=change.region, state=change.state)
    count("EventsProcessed")
    try:
        if change.state == "available":
            return _on_available(change, settings, aws, now, account_id)
        if change.state == "failed":
            return _on_failed(change, settings, aws)
        logger.info("image state change noted", error_message=change.error_message or None)
        count(f"Images{change.state.capitalize()}")
        return EventOutcome("recorded", f"image is {change.state}", change.image_id, change.region)
    finally:
        logger.remove_keys(["image_id", "region", "state"])


def _on_available(
    change: AmiStateChange, settings: Settings, aws: Aws, now: datetime, account_id: str | None
) -> EventOutcome:
    ec2 = Ec2(aws.ec2(change.region), change.region)
    result = tag_image_by_id(ec2, change.image_id, settings, now, account_id)
    outcome = EventOutcome(
        "tagged" if result.decision in ("adopted", "already managed") else result.decision,
        result.reason,
        change.image_id,
        change.region,
        tagging=result.to_dict(),
    )
    if result.image is None or result.decision not in ("adopted", "already managed"):
        return outcome
    lifecycle = {k: v for k, v in result.image.tags.items() if settings.keys.is_lifecycle_key(k)}
    lifecycle.update(result.tags_written)
    plan = plan_copies(result.image, settings, lifecycle, known_regions())
    outcome.copy_notes = list(plan.skipped)
    if plan.error:
        outcome.copy_notes.append(plan.error)
        logger.warning("copies refused", reason=plan.error)
    if plan.requests:
        if not settings.copy_queue_url:
            outcome.copy_notes.append("COPY_QUEUE_URL is not set: no copies requested")
            logger.error("no copy queue configured", targets=[r.target_region for r in plan.requests])
            return outcome
        sqs = aws.client("sqs", settings.home_region)
        failures = send_copy_requests(sqs, settings.copy_queue_url, plan.requests)
        if failures:
            # Raise so that the event is retried (and lands in the DLQ after the retries): the tag
            # step is idempotent and the copy requests carry deterministic ClientTokens.
            raise RuntimeError(f"could not queue copy requests: {'; '.join(failures)}")
        outcome.copies_requested = [r.target_region for r in plan.requests]
        count("CopiesRequested", len(plan.requests))
        logger.info("copies requested", targets=outcome.copies_requested)
    return outcome


def _on_failed(change: AmiStateChange, settings: Settings, aws: Aws) -> EventOutcome:
    logger.warning("image creation failed", error_message=change.error_message)
    count("ImagesFailed")
    from .replicator import record_failed_copy  # local import: only failed events need it

    note = record_failed_copy(aws, settings, change.region, change.image_id, change.error_message)
    return EventOutcome("recorded", note or f"image failed: {change.error_message}", change.image_id, change.region)


def _clip_event(event: Any) -> Any:
    text = repr(event)
    return event if len(text) <= 2000 else text[:2000] + "…"
