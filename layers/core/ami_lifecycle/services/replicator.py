"""Replication, copy side: what ReplicatorFunction does with each copy request from the queue, and
what ImageEventsFunction does when one of our copies fails.

Per request (one SQS message, a `CopyRequest`), in the destination region of the request's
account (`CopyRequest.account`, "" = the hub's): a copy never leaves the account of its source
(PRODUCT.md section 7). The replicator acts there through `Deps.in_account` (the spoke role's
clients; the hub's own for the hub account); the queue is always the hub's.

1. existence: a copy of ours (`tag:P:source-image` = the source) that is available, pending or
   disabled means the work is done: it is recorded on the source and the message is deleted;
   a copy that is `failed` is recorded as failed and the message fails (see below);
2. concurrency: when `max_copies_in_flight` copies of ours are already `pending` in the region,
   the request is deferred;
3. CopyImage with the request's deterministic ClientToken, the lifecycle tags on the image and its
   snapshots (TagSpecifications, so tag-on-create policies are satisfied), and the encryption of
   the request: `ReplicaKmsKeys` for the region, else (an encrypted source) `Encrypted=True`
   without a key, which EC2 resolves to the region's default EBS key;
4. the source image (and its snapshots) record the copy: `P:copies` = `us-west-2=ami-0abc,...`.

Outcomes and what happens to the message:

- started / already present / skipped (the source is gone, or the target is the source's own
  region, or the source is itself a copy): success, the message is deleted;
- deferred (too many copies in flight, `ResourceLimitExceeded`, throttling), or unconfirmed (the
  new copy is not listed yet): the message's visibility becomes an exponential back-off on its
  receive count and it is reported as a batch item failure, so it comes back later;
- failed (a KMS key that does not exist or is not usable, a duplicate AMI name, missing
  permissions, ...): recorded on the source (`region=failed` in `P:copies`, the reason in
  `P:error`) and reported as a failure, retried after `FAILED_RETRY_SECONDS` until SQS moves it to
  the dead-letter queue after the queue's maxReceiveCount;
- refused (the target is not an AWS region): recorded on the source as a failure, and the message
  is deleted: no retry can succeed;
- refused (the request's account is not managed by this stack): nothing is done in it (nothing
  may be), the refusal is logged and counted, and the message is deleted;
- unreachable (the spoke role of the request's managed account cannot be assumed): counted
  (`AccountsUnreachable`) and returned to the queue with the back-off, like a deferral: the role
  may be deployed in the meantime, else the dead-letter queue keeps the request;
- a malformed body can never succeed: it is logged, made visible again at once and reaches the
  dead-letter queue after maxReceiveCount receives;
- any other error is logged and re-raised: the message comes back after the queue's visibility
  timeout and reaches the dead-letter queue after maxReceiveCount receives.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from ..aws.accounts import AccountUnreachable, NotManaged
from ..aws.clients import Aws
from ..aws.ec2 import Ec2
from ..aws.errors import COPY_LIMIT_CODES, error_code, is_throttle
from ..aws.errors import describe_error as _describe_error
from ..aws.sqs import CopyQueue
from ..domain.adoption import deprecation_due_at
from ..domain.model import Image
from ..domain.replication import CopyRequest, merge_copies, parse_copies
from ..domain.tags import MAX_TAG_VALUE, TagError, clip, is_region_name, parse_instant
from ..runtime import Deps
from ..runtime.observability import count, logger

# Back-off of a deferred request: min(BACKOFF_CAP, BACKOFF_BASE * 2**(receives-1)) seconds, of which
# the second half is random ("equal jitter"), so deferred requests do not come back in lock step.
BACKOFF_BASE = 30
BACKOFF_CAP = 900
# A request that failed for good is retried this much later (cheaply: the failed copy is found by
# the existence check), until the queue's maxReceiveCount moves it to the dead-letter queue.
FAILED_RETRY_SECONDS = 60
# A malformed body never succeeds: it comes back at once and reaches the dead-letter queue quickly.
MALFORMED_RETRY_SECONDS = 0
# Longest reason kept in a log line or in P:error.
MAX_REASON = 200
# Copies in these states count as present (nothing to do); `failed` ones are reported.
LIVE_STATES = frozenset({"available", "pending", "disabled"})
# Errors of CopyImage that another attempt with the same request cannot fix.
PERMANENT_CODES = frozenset(
    {
        "AuthFailure",
        "IdempotentParameterMismatch",
        "InvalidAMIName.Duplicate",
        "InvalidAMIName.Malformed",
        "InvalidParameter",
        "InvalidParameterCombination",
        "InvalidParameterDependency",
        "InvalidParameterValue",
        "InvalidRegion",
        "OptInRequired",
        "UnauthorizedOperation",
        "UnsupportedOperation",
    }
)
# CopyImage: the source does not exist (any more). Not worth retrying.
SOURCE_GONE_CODES = frozenset({"InvalidAMIID.NotFound", "InvalidAMIID.Malformed"})


@dataclass(frozen=True)
class SqsMessage:
    """One record of an SQS event, as Lambda's event source mapping delivers it (`Records[i]`)."""

    message_id: str
    body: str
    receive_count: int
    receipt_handle: str
    region: str
    queue_url: str | None

    @classmethod
    def of(cls, record: Any) -> SqsMessage:
        record = record if isinstance(record, Mapping) else {}
        attributes = record.get("attributes") if isinstance(record.get("attributes"), Mapping) else {}
        return cls(
            message_id=str(record.get("messageId") or ""),
            body=record.get("body") if isinstance(record.get("body"), str) else "",
            receive_count=_int(attributes.get("ApproximateReceiveCount"), 1),
            receipt_handle=str(record.get("receiptHandle") or ""),
            region=str(record.get("awsRegion") or ""),
            queue_url=_queue_url(str(record.get("eventSourceARN") or "")),
        )


class CopyNotDone(Exception):
    """The request stays on the queue: raised from the record handler, so that the batch processor
    reports the message as a batch item failure."""


# ------------------------------------------------------------------ pure helpers


def backoff_seconds(receive_count: int, rand: Callable[[], float] = random.random) -> int:
    """Visibility timeout of a deferred request received `receive_count` times (1 = first time):
    30 s, 60 s, 120 s, ... up to 900 s, the upper half of each step random."""
    n = max(1, receive_count)
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(n - 1, 16))
    return max(1, int(ceiling / 2 + rand() * ceiling / 2))


def is_permanent(exc: BaseException) -> bool:
    """A CopyImage error that retrying the same request cannot fix (bad or unusable KMS key,
    duplicate name, missing permissions, region not enabled, ...)."""
    code = error_code(exc)
    if code in COPY_LIMIT_CODES or is_throttle(exc):
        return False
    if code in PERMANENT_CODES or "kms" in code.lower():
        return True
    message = exc.response.get("Error", {}).get("Message", "") if isinstance(exc, ClientError) else str(exc)
    return "kms" in str(message).lower()


def describe_error(exc: BaseException) -> str:
    """`Code: message`, short, for logs and P:error."""
    return _describe_error(exc, MAX_REASON)


# ------------------------------------------------------------------ outcomes


class CopyStatus(StrEnum):
    STARTED = "started"
    ALREADY_PRESENT = "already present"
    SKIPPED = "skipped"
    DEFERRED = "deferred"
    UNCONFIRMED = "unconfirmed"
    FAILED = "failed"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"


# The message returns to the queue (back-off) for these.
RETRY_LATER = frozenset({CopyStatus.DEFERRED, CopyStatus.UNCONFIRMED, CopyStatus.UNREACHABLE})


@dataclass
class CopyOutcome:
    """What became of one copy request."""

    status: CopyStatus
    reason: str
    source_image_id: str
    source_region: str
    target_region: str
    copy_image_id: str | None = None
    account: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if k == "status" else v for k, v in self.__dict__.items() if v is not None}


# ------------------------------------------------------------------ the replicator


class Replicator:
    """Carries out copy requests. One instance per invocation (batch): it remembers, for that
    batch, how many copies are in flight per (account, region) and what it recorded on each
    source, so that ten requests for one region cost one DescribeImages for the count, and so that
    tags it just wrote are not lost to an eventually consistent read of the source."""

    def __init__(self, deps: Deps, rand: Callable[[], float] = random.random) -> None:
        self.deps = deps
        self.settings = deps.settings
        # The hub's clients: the copy queue is the hub's (EC2 is reached per account, `_aws_of`).
        self.aws = deps.accounts.hub_aws
        self.now: Callable[[], datetime] = deps.clock
        self.rand = rand
        self._in_flight: dict[tuple[str, str], int] = {}
        self._recorded: dict[tuple[str, str, str], dict[str, str]] = {}

    def account_of(self, request: CopyRequest) -> str:
        """The account the request acts in ("" in a request: the hub's)."""
        return request.account or self.deps.accounts.hub

    def _aws_of(self, request: CopyRequest) -> Aws:
        """The clients of the request's account. Raises NotManaged or AccountUnreachable."""
        return self.deps.in_account(self.account_of(request)).aws

    # -------------------------------------------------------------- one request

    def replicate(self, request: CopyRequest) -> CopyOutcome:
        """Carry out one request. Never raises for an expected outcome (see the module docstring);
        unexpected errors (an unknown CopyImage error, DescribeImages failing, ...) propagate."""

        account = self.account_of(request)

        def outcome(status: CopyStatus, reason: str, copy_id: str | None = None) -> CopyOutcome:
            return CopyOutcome(
                status, reason, request.source_image_id, request.source_region, request.target_region, copy_id, account
            )

        target = request.target_region
        try:
            if not self.deps.accounts.is_managed(account):
                raise NotManaged(f"account {account} is not managed by this stack")
            aws = self._aws_of(request)
        except NotManaged as e:
            # It can never succeed, and nothing may be done in that account (not even recording
            # the refusal on the source): logged, counted, and the message is deleted.
            reason = f"{e}: no copy made"
            logger.warning("copy refused: account not managed", account=account, reason=reason)
            count("CopiesRefused")
            return outcome(CopyStatus.REFUSED, reason)
        except AccountUnreachable as e:
            reason = f"cannot act in account {account}: {e.reason}"
            logger.error("copy not made: the account's role cannot be assumed", role_arn=e.role_arn, reason=reason)
            count("AccountsUnreachable")
            return outcome(CopyStatus.UNREACHABLE, reason)
        if target == request.source_region:
            logger.info("copy skipped: the image's own region")
            count("CopiesSkipped")
            return outcome(CopyStatus.SKIPPED, "the target is the image's own region: an image is never copied into it")
        if target not in self.deps.known_regions:
            # It can never succeed: recorded as failed on the source (reason in P:error), and the
            # message is deleted instead of being retried into the dead-letter queue.
            refused = self._failed(request, f"{target} is not an AWS region: no copy made")
            count("CopiesRefused")
            return replace(refused, status=CopyStatus.REFUSED)
        dst = Ec2(aws.ec2(target), target)

        # 1. Existence: is there a copy of this source in the target region already?
        existing = self._existing_copies(dst, request)
        live = [(img, r) for img, r in existing if img.state in LIVE_STATES]
        if live:
            copy = sorted(live, key=lambda pair: (pair[0].state != "available", pair[0].creation_date))[0][0]
            self._record(request, {target: copy.image_id})
            self._deprecate(dst, copy.image_id, request, copy)
            logger.info("copy already present", copy_image_id=copy.image_id, copy_state=copy.state)
            count("CopiesAlreadyPresent")
            return outcome(CopyStatus.ALREADY_PRESENT, f"copy {copy.image_id} is {copy.state}", copy.image_id)
        if existing:
            failed, reason = existing[0]
            return self._failed(request, f"copy {failed.image_id} failed: {reason}", failed.image_id)

        # 2. Concurrency: how many copies of ours are in flight in the target region?
        in_flight = self._count_in_flight(dst, account)
        limit = self.settings.max_copies_in_flight
        if in_flight >= limit:
            reason = f"{in_flight} copies in flight in {target} (limit {limit})"
            logger.info("copy deferred", reason=reason)
            count("CopiesDeferred")
            return outcome(CopyStatus.DEFERRED, reason)

        # 3. The copy.
        try:
            copy_id = dst.copy_image(
                source_image_id=request.source_image_id,
                source_region=request.source_region,
                name=request.name,
                description=request.description,
                client_token=request.client_token,
                tags=request.tags,
                encrypted=request.encrypted,
                kms_key_id=request.kms_key_id,
            )
        except ClientError as e:
            code = error_code(e)
            if code in COPY_LIMIT_CODES or is_throttle(e):
                # No more copies into this (account, region) in this batch.
                self._in_flight[(account, target)] = max(self._in_flight.get((account, target), 0), limit)
                reason = f"CopyImage in {target}: {describe_error(e)}"
                logger.info("copy deferred", reason=reason, error_code=code)
                count("CopiesDeferred")
                return outcome(CopyStatus.DEFERRED, reason)
            if code in SOURCE_GONE_CODES:
                logger.info("copy skipped: the source image no longer exists", error_code=code)
                count("CopiesSkipped")
                return outcome(CopyStatus.SKIPPED, f"the source image no longer exists ({code}): nothing to copy")
            if is_permanent(e):
                return self._failed(request, describe_error(e))
            raise
        self._in_flight[(account, target)] = in_flight + 1

        count("CopiesStarted")
        logger.info(
            "copy started",
            copy_image_id=copy_id,
            encrypted=request.encrypted,
            kms_key_id=request.kms_key_id,
            in_flight=in_flight + 1,
        )

        # EC2 checks the KMS key after answering: a copy can already be `failed` (moto: at once).
        copy_state, state_reason = self._copy_state(dst, copy_id)
        if copy_state == "failed":
            return self._failed(request, f"copy {copy_id} failed: {state_reason}", copy_id)
        if copy_state == "unknown":
            # Not listed yet (eventual consistency), or EC2 answered the ClientToken with a copy
            # that is gone. Only a copy that exists is recorded: the request comes back shortly,
            # and its existence check (or the same ClientToken) settles it.
            reason = f"copy {copy_id} is not listed in {target} yet: {state_reason or 'not found'}"
            logger.info("copy not confirmed yet", copy_image_id=copy_id, reason=reason)
            return outcome(CopyStatus.UNCONFIRMED, reason, copy_id)

        # 4. Record the copy on the source.
        self._record(request, {target: copy_id})
        self._deprecate(dst, copy_id, request, None)
        return outcome(CopyStatus.STARTED, f"copy {copy_id} started", copy_id)

    def _failed(self, request: CopyRequest, reason: str, copy_id: str | None = None) -> CopyOutcome:
        reason = clip(reason, MAX_REASON)
        if request.kms_key_id and "kms" in reason.lower() and request.kms_key_id not in reason:
            reason = clip(
                f"{reason} (ReplicaKmsKeys key for {request.target_region}: {request.kms_key_id})", MAX_REASON
            )
        error = clip(f"copy to {request.target_region} failed: {reason}")
        if self._record(request, {request.target_region: "failed"}, error=error):
            logger.error("copy failed", reason=reason, copy_image_id=copy_id)
            count("CopiesFailed")
        else:  # a redelivery of a failure already recorded (and counted)
            logger.warning("copy still failed", reason=reason, copy_image_id=copy_id)
        return CopyOutcome(
            CopyStatus.FAILED,
            reason,
            request.source_image_id,
            request.source_region,
            request.target_region,
            copy_id,
            self.account_of(request),
        )

    # -------------------------------------------------------------- EC2 reads

    def _existing_copies(self, dst: Ec2, request: CopyRequest) -> list[tuple[Image, str]]:
        """Our copies of the request's source in the target region, with their StateReason."""
        keys = self.settings.keys
        filters = [
            {"Name": f"tag:{keys.source_image}", "Values": [request.source_image_id]},
            {"Name": f"tag:{keys.source_region}", "Values": [request.source_region]},
        ]
        return dst.images_with_reasons(filters=filters)

    def _count_in_flight(self, dst: Ec2, account: str) -> int:
        """Copies of ours pending in `dst`'s region of `account` (counted up to the limit, once a batch)."""
        key = (account, dst.region)
        if key not in self._in_flight:
            limit = self.settings.max_copies_in_flight
            n = 0
            for _ in dst.iter_images(
                filters=[
                    {"Name": "state", "Values": ["pending"]},
                    {"Name": "tag-key", "Values": [self.settings.keys.source_image]},
                ]
            ):
                n += 1
                if n >= limit:
                    break
            self._in_flight[key] = n
        return self._in_flight[key]

    def _copy_state(self, dst: Ec2, copy_id: str) -> tuple[str, str]:
        """The new copy's state and StateReason; `unknown` while EC2 does not list it."""
        try:
            found = dst.images_with_reasons(image_ids=[copy_id])
        except ClientError as e:
            return "unknown", describe_error(e)
        if not found:
            return "unknown", ""
        return found[0][0].state, found[0][1]

    # -------------------------------------------------------------- writes

    def _record(self, request: CopyRequest, updates: Mapping[str, str], error: str | None = None) -> bool:
        """Merge `updates` into the source's `P:copies` (and set `P:error`), on the source image
        and its snapshots, in one CreateTags call; nothing when the tags already say so.
        Returns True when `updates` changed the record."""
        key = (self.account_of(request), request.source_region, request.source_image_id)
        src = Ec2(self._aws_of(request).ec2(request.source_region), request.source_region)
        image = src.describe_image(request.source_image_id)
        if image is None:
            logger.info("source image no longer exists: copy not recorded on it")
            return False
        earlier = self._recorded.get(key, {})
        before = {**parse_copies(image.tags.get(self.settings.keys.copies, "")), **earlier}
        merged = record_on_source(src, image, self.settings, {**earlier, **updates}, error=error)
        self._recorded[key] = merged
        return any(before.get(region) != state for region, state in updates.items())

    def _deprecate(self, dst: Ec2, copy_id: str, request: CopyRequest, copy: Image | None) -> None:
        """Best effort: give the copy the source's expiry as its deprecation time (as tagging does
        for every image it adopts). A failure only logs: the retention sweep reconciles."""
        value = request.tags.get(self.settings.keys.expires_at)
        if not value or (copy is not None and copy.deprecation_time is not None):
            return
        try:
            when = parse_instant(value)
        except TagError:
            return
        if deprecation_due_at(when, None, self.now()) is None:
            return
        try:
            dst.enable_deprecation(copy_id, when)
        except ClientError as e:
            logger.warning("could not set the copy's deprecation time", copy_image_id=copy_id, error=describe_error(e))

    # -------------------------------------------------------------- SQS

    def process_record(self, record: SqsMessage) -> dict[str, Any]:
        """One message: returns on success, raises CopyNotDone (or the unexpected error) to report
        the message as a batch item failure."""
        receive_count = record.receive_count
        try:
            request = CopyRequest.from_json(record.body)
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            logger.error(
                "copy request malformed: it can never succeed and goes to the dead-letter queue "
                "after the queue's maxReceiveCount receives",
                message_id=record.message_id,
                receive_count=receive_count,
                reason=clip(str(e), MAX_REASON),
                body=clip(record.body or "", 500),
            )
            count("CopyRequestsMalformed")
            self._set_visibility(record, MALFORMED_RETRY_SECONDS)
            raise CopyNotDone(f"malformed copy request: {clip(str(e), MAX_REASON)}") from None

        context = {
            "message_id": record.message_id,
            "account": self.account_of(request),
            "receive_count": receive_count,
            "source_image_id": request.source_image_id,
            "source_region": request.source_region,
            "target_region": request.target_region,
        }
        logger.append_keys(**context)
        try:
            try:
                outcome = self.replicate(request)
            except Exception as e:
                logger.exception("copy request failed: it will be retried", error=describe_error(e))
                raise
            if outcome.status in RETRY_LATER:
                delay = backoff_seconds(receive_count, self.rand)
                self._set_visibility(record, delay)
                logger.info("copy request returned to the queue", delay_seconds=delay, reason=outcome.reason)
                raise CopyNotDone(f"deferred for {delay} s: {outcome.reason}")
            if outcome.status is CopyStatus.FAILED:
                self._set_visibility(record, FAILED_RETRY_SECONDS)
                raise CopyNotDone(f"copy failed: {outcome.reason}")
            return outcome.to_dict()
        finally:
            logger.remove_keys(list(context))

    def _set_visibility(self, record: SqsMessage, seconds: int) -> None:
        """ChangeMessageVisibility of the received message. Best effort: when it cannot be changed,
        the queue's visibility timeout applies, which only delays the retry."""
        queue_url = self.settings.copy_queue_url or record.queue_url
        receipt = record.receipt_handle
        if not queue_url or not receipt:
            logger.warning("cannot change the message's visibility: no queue URL or receipt handle")
            return
        region = record.region or self.settings.home_region
        try:
            CopyQueue(self.aws.client("sqs", region), queue_url).change_visibility(receipt, seconds)
        except ClientError as e:
            logger.warning(
                "could not change the message's visibility", message_id=record.message_id, error=describe_error(e)
            )


def handle(event: Mapping[str, Any], deps: Deps) -> dict[str, Any]:
    """ReplicatorFunction: every copy request of an SQS batch, with partial batch failures
    (`{"batchItemFailures": [{"itemIdentifier": <messageId>}, ...]}`, the event source mapping's
    ReportBatchItemFailures contract). A loop of its own rather than Powertools' BatchProcessor,
    whose import (every event data class, asyncio) cost a quarter of `import boto3` at cold start."""
    replicator = Replicator(deps)
    records = event.get("Records") if isinstance(event, Mapping) else None
    failures: list[dict[str, str]] = []
    for raw in records if isinstance(records, list) else ():
        message = SqsMessage.of(raw)
        try:
            replicator.process_record(message)
        except Exception as e:  # the message stays on the queue; process_record logged why
            logger.debug("batch item failure", message_id=message.message_id, error=describe_error(e))
            failures.append({"itemIdentifier": message.message_id})
    return {"batchItemFailures": failures}


# ------------------------------------------------------------------ failed copies (ImageEventsFunction)


def record_failed_copy(deps: Deps, region: str, image_id: str, error_message: str) -> str | None:
    """On a `failed` AMI event: when the failed image is one of our copies, record `<region>=failed`
    in its source's `P:copies` and the reason in `P:error`, and count `CopiesFailed`. Returns a
    human note, or None when the image cannot be described or is not a copy of ours."""
    aws, settings = deps.aws, deps.settings
    keys = settings.keys
    ec2 = Ec2(aws.ec2(region), region)
    try:
        found = ec2.images_with_reasons(image_ids=[image_id])
    except ClientError as e:
        logger.warning("failed image cannot be described", image_id=image_id, error=describe_error(e))
        return None
    if not found:
        return None
    image, state_reason = found[0]
    source_id = image.tags.get(keys.source_image)
    source_region = image.tags.get(keys.source_region) or image.source_region
    if not source_id or not source_region or not is_region_name(source_region):
        return None
    reason = clip((error_message or state_reason or "no reason given").strip(), MAX_REASON)
    note = f"copy {image_id} of {source_id} ({source_region}) failed: {reason}"
    count("CopiesFailed")

    src = Ec2(aws.ec2(source_region), source_region)
    source = src.describe_image(source_id)
    if source is None:
        logger.error("copy failed; its source no longer exists", copy_image_id=image_id, source_image_id=source_id)
        return f"{note}; the source no longer exists"
    recorded = parse_copies(source.tags.get(keys.copies, "")).get(region)
    if recorded and recorded.startswith("ami-") and recorded != image_id:
        logger.warning(
            "copy failed; the source records another copy for the region, left as is",
            copy_image_id=image_id,
            source_image_id=source_id,
            recorded=recorded,
            reason=reason,
        )
        return f"{note}; the source records copy {recorded} for {region}, left as is"
    record_on_source(src, source, settings, {region: "failed"}, error=clip(f"copy to {region} failed: {reason}"))
    logger.error(
        "copy failed", copy_image_id=image_id, source_image_id=source_id, source_region=source_region, reason=reason
    )
    return f"{note}; recorded on the source as {region}=failed"


# ------------------------------------------------------------------ shared


def record_on_source(
    src: Ec2, image: Image, settings: Any, updates: Mapping[str, str], error: str | None = None
) -> dict[str, str]:
    """Merge `updates` into `image`'s `P:copies` (and set `P:error` when given) on the image and its
    snapshots, in one CreateTags call, only when something changes. Returns the merged record."""
    keys = settings.keys
    current = image.tags.get(keys.copies, "")
    value, dropped = merge_copies(current, updates)
    if dropped:
        logger.warning(
            f"{keys.copies} would exceed {MAX_TAG_VALUE} characters: oldest entries left out",
            source_image_id=image.image_id,
            dropped=dropped,
        )
    tags: dict[str, str] = {}
    if value != current:
        tags[keys.copies] = value
    if error is not None and image.tags.get(keys.error) != error:
        tags[keys.error] = error
    if tags:
        src.create_tags([image.image_id, *image.snapshot_ids], tags)
        logger.info("copies recorded on the source", source_image_id=image.image_id, tags=tags)
    return parse_copies(value)


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _queue_url(arn: str) -> str | None:
    """The queue URL of an SQS queue ARN (arn:aws:sqs:region:account:name), or None."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        return None
    return f"https://sqs.{parts[3]}.amazonaws.com/{parts[4]}/{parts[5]}"
