"""What ImageEventsFunction does with one `EC2 AMI State Change` event.

The function hears its own default bus and the hub's bus (where the spokes forward theirs): an
event acts in the event's own account and region (PRODUCT.md section 7), through that account's
clients (`Deps.in_account`: the spoke role's, the hub's own for the hub account).

available -> adopt and tag the image (tagging.py), then put its copy requests on the hub's queue.
failed    -> log and count it; a failed copy of ours is recorded on its source image.
others    -> log and count.

Refused, logged and counted (`EventsRefused`, and `EventsRefusedByReason` by `Reason`), nothing
done and no retry (a refusal is final): a malformed event, an event from an account that is not
managed, or from a region that is not covered. An event from a managed account whose spoke role
cannot be assumed raises (`AccountsUnreachable` counted): EventBridge and Lambda retry it, then
the dead-letter queue keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aws_lambda_powertools.metrics import single_metric

from ..aws.accounts import AccountUnreachable, NotManaged
from ..aws.clients import Aws
from ..aws.ec2 import Ec2
from ..aws.sqs import CopyQueue
from ..domain.actions import Status as ActionStatus
from ..domain.actions import copy_actions
from ..domain.adoption import Verdict
from ..domain.events import AmiStateChange, BadEvent, parse_ami_event
from ..domain.replication import plan_copies
from ..runtime import Deps
from ..runtime.observability import MetricUnit, count, logger
from .executor import Executor
from .payloads import clip_payload
from .tagging import tag_image_by_id


class Refusal(StrEnum):
    """Why an event is refused (the `Reason` dimension of `EventsRefusedByReason`)."""

    MALFORMED = "malformed"
    UNMANAGED_ACCOUNT = "unmanaged-account"
    UNCOVERED_REGION = "uncovered-region"


class Status(StrEnum):
    TAGGED = "tagged"
    SKIPPED = "skipped"
    MISSING = "missing"
    REFUSED = "refused"
    RECORDED = "recorded"


@dataclass
class EventOutcome:
    status: Status
    reason: str
    image_id: str | None = None
    region: str | None = None
    account: str | None = None
    tagging: dict[str, Any] | None = None
    copies_requested: list[str] = field(default_factory=list)
    copy_notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if v not in (None, [], {})}
        data["status"] = str(self.status)
        return data


def handle(event: Any, deps: Deps) -> dict[str, Any]:
    """What ImageEventsFunction does with one event (the handler is a thin shell around it)."""
    return handle_event(event, deps).to_dict()


def handle_event(event: Any, deps: Deps) -> EventOutcome:
    settings = deps.settings
    try:
        change = parse_ami_event(event)
    except BadEvent as e:
        return _refuse(Refusal.MALFORMED, str(e), event=clip_payload(event))
    where = (change.image_id, change.region, change.account)
    if not deps.accounts.is_managed(change.account):
        reason = f"event is for account {change.account}, which this stack does not manage"
        return _refuse(Refusal.UNMANAGED_ACCOUNT, reason, *where)
    if change.region not in settings.sweep_regions:
        reason = (
            f"event is from {change.region}, a region this stack does not cover ({', '.join(settings.sweep_regions)})"
        )
        return _refuse(Refusal.UNCOVERED_REGION, reason, *where)
    try:
        here = deps.in_account(change.account)
    except NotManaged as e:  # (the organization's list changed in between)
        return _refuse(Refusal.UNMANAGED_ACCOUNT, str(e), *where)
    except AccountUnreachable as e:
        # Not a refusal: the role may not be deployed yet. Raise, so that the event is retried and
        # then kept by the dead-letter queue: nothing is lost.
        logger.error(
            "event not handled: the account's role cannot be assumed",
            image_id=change.image_id,
            region=change.region,
            account=change.account,
            role_arn=e.role_arn,
            reason=e.reason,
        )
        count("AccountsUnreachable")
        raise
    logger.append_keys(image_id=change.image_id, region=change.region, account=change.account, state=change.state)
    count("EventsProcessed")
    try:
        if change.state == "available":
            return _on_available(change, here, deps.accounts.hub_aws)
        if change.state == "failed":
            return _on_failed(change, here)
        logger.info("image state change noted", error_message=change.error_message or None)
        count(f"Images{change.state.capitalize()}")
        return EventOutcome(Status.RECORDED, f"image is {change.state}", *where)
    finally:
        logger.remove_keys(["image_id", "region", "account", "state"])


def _refuse(
    why: Refusal,
    reason: str,
    image_id: str | None = None,
    region: str | None = None,
    account: str | None = None,
    **extra: Any,
) -> EventOutcome:
    """Refused for good: logged, counted (in total and by reason), nothing done, no retry."""
    logger.warning("event refused", reason=reason, refusal=str(why), image_id=image_id, account=account, **extra)
    count("EventsRefused")
    with single_metric(name="EventsRefusedByReason", unit=MetricUnit.Count, value=1) as metric:
        metric.add_dimension(name="Reason", value=str(why))
    return EventOutcome(Status.REFUSED, reason, image_id, region, account)


_BY_VERDICT = {Verdict.MISSING: Status.MISSING, Verdict.REFUSED: Status.REFUSED, Verdict.SKIPPED: Status.SKIPPED}


def _on_available(change: AmiStateChange, deps: Deps, hub_aws: Aws) -> EventOutcome:
    """`deps` act in the image's account; the copy queue is the hub's (`hub_aws`)."""
    settings = deps.settings
    ec2 = Ec2(deps.aws.ec2(change.region), change.region)
    queue = CopyQueue.of(hub_aws, settings.copy_queue_url, settings.home_region) if settings.copy_queue_url else None
    executor = Executor(ec2, dry_run=False, queue=queue)
    result = tag_image_by_id(executor, change.image_id, deps)
    if result.failures:
        # Raise so that the event is retried (and lands in the DLQ after the retries): nothing of an
        # adoption AWS refused is lost, and the writes are idempotent.
        refused = "; ".join(f"{o.action.kind}: {o.error}" for o in result.failures)
        logger.error("image not tagged: AWS refused a write", image_id=change.image_id, errors=refused)
        raise RuntimeError(f"could not tag {change.image_id}: {refused}")
    status = Status.TAGGED if result.adopted else _BY_VERDICT[result.verdict]
    outcome = EventOutcome(
        status, result.reason, change.image_id, change.region, change.account, tagging=result.to_dict()
    )
    if not result.adopted or result.after is None:
        return outcome
    after = result.after
    lifecycle = {k: v for k, v in after.tags.items() if settings.keys.is_lifecycle_key(k)}
    plan = plan_copies(after, settings, lifecycle, deps.known_regions, account=change.account)
    outcome.copy_notes = list(plan.skipped)
    if plan.error:
        outcome.copy_notes.append(plan.error)
        logger.warning("copies refused", reason=plan.error)
    if plan.requests:
        if queue is None:
            outcome.copy_notes.append("COPY_QUEUE_URL is not set: no copies requested")
            logger.error("no copy queue configured", targets=[r.target_region for r in plan.requests])
            return outcome
        outcomes = executor.run(copy_actions(after.region, after.image_id, plan.requests))
        failures = [
            f"{o.action.copy.target_region if o.action.copy else '?'}: {o.error}"
            for o in outcomes
            if o.status is ActionStatus.FAILED
        ]
        if failures:
            # Raise so that the event is retried (and lands in the DLQ after the retries): the tag
            # step is idempotent and the copy requests carry deterministic ClientTokens.
            raise RuntimeError(f"could not queue copy requests: {'; '.join(failures)}")
        outcome.copies_requested = [r.target_region for r in plan.requests]
        count("CopiesRequested", len(plan.requests))
        logger.info("copies requested", targets=outcome.copies_requested)
    return outcome


def _on_failed(change: AmiStateChange, deps: Deps) -> EventOutcome:
    logger.warning("image creation failed", error_message=change.error_message)
    count("ImagesFailed")
    from .replicator import record_failed_copy  # local import: only failed events need it

    note = record_failed_copy(deps, change.region, change.image_id, change.error_message)
    return EventOutcome(
        Status.RECORDED,
        note or f"image failed: {change.error_message}",
        change.image_id,
        change.region,
        change.account,
    )
