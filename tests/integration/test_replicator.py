"""ReplicatorFunction on moto (with the documented extension): copies land in every region with
their tags and lineage, exactly once; the concurrency limit, ResourceLimitExceeded and throttling
defer a request (visibility back-off) without losing it; KMS failures are recorded on the source;
failed copies reported by ImageEventsFunction; and the whole flow from an image event to copies."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ami_lifecycle.aws.clients import Aws
from ami_lifecycle.aws.ec2 import Ec2
from ami_lifecycle.aws.sqs import CopyQueue
from ami_lifecycle.domain.replication import CopyRequest, plan_copies
from ami_lifecycle.domain.settings import Settings
from ami_lifecycle.domain.tags import format_instant
from ami_lifecycle.runtime import Deps
from ami_lifecycle.runtime.observability import metrics
from ami_lifecycle.services.image_events import handle_event
from ami_lifecycle.services.replicator import FAILED_RETRY_SECONDS, Replicator, handle, record_failed_copy
from ami_lifecycle_localaws import motoext
from ami_lifecycle_localaws.fleet import create_image, snapshot_ids, tags_of
from botocore.config import Config

from tests.conftest import ACCOUNT_ID, LocalAws

P = "ami-lifecycle"
HOME, WEST, EU = "us-east-1", "us-west-2", "eu-west-1"
EXPIRES = format_instant(datetime.now(UTC) + timedelta(days=90))
LIFECYCLE = {
    f"{P}:managed": "true",
    f"{P}:retention": "90d",
    f"{P}:expires-at": EXPIRES,
    f"{P}:family": "web",
    f"{P}:keep-latest": "1",
}
MAX_RECEIVES = 3  # the test queue's maxReceiveCount (template: 30)
Event = Callable[..., dict[str, Any]]  # the `available_event` fixture (tests/conftest.py)


@dataclass
class Queue:
    """A copy queue with a dead-letter queue in moto, and a poller that behaves like Lambda's SQS
    event source with ReportBatchItemFailures: failed items stay, the others are deleted."""

    sqs: Any
    url: str
    dlq_url: str
    visibility_changes: list[dict[str, Any]] = field(default_factory=list)
    last_event: dict[str, Any] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return f"arn:aws:sqs:{HOME}:{ACCOUNT_ID}:{self.url.rsplit('/', 1)[1]}"

    def receive(self) -> list[dict[str, Any]]:
        resp = self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
        )
        return list(resp.get("Messages", []))

    def event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": dict(m.get("Attributes", {})),
                    "messageAttributes": m.get("MessageAttributes", {}),
                    "md5OfBody": m.get("MD5OfBody", ""),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.arn,
                    "awsRegion": HOME,
                }
                for m in messages
            ]
        }

    def deliver(self, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any] | None:
        """One poll: receive up to 10 messages, invoke, delete the successful ones."""
        messages = self.receive()
        if not messages:
            return None
        self.last_event = self.event(messages)
        result = handler(self.last_event)
        failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        return result

    def time_passes(self) -> None:
        """Make the messages of the last delivery visible again (their back-off has elapsed)."""
        for record in self.last_event.get("Records", []):
            self.sqs.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
            )

    def depth(self, url: str | None = None) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url or self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture
def aws(moto_aws: LocalAws) -> Aws:
    """No botocore retries: the tests see every fault they inject."""
    return moto_aws.aws(Config(retries={"mode": "standard", "total_max_attempts": 1}))


@pytest.fixture
def queue(aws: Aws, moto_aws: LocalAws) -> Queue:
    sqs = moto_aws.client("sqs", HOME)
    dlq_url = sqs.create_queue(QueueName="copy-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName="copy-queue",
        Attributes={
            "VisibilityTimeout": "360",
            "RedrivePolicy": f'{{"deadLetterTargetArn": "{dlq_arn}", "maxReceiveCount": "{MAX_RECEIVES}"}}',
        },
    )["QueueUrl"]
    q = Queue(sqs, url, dlq_url)

    def spy(params: dict[str, Any], **_: Any) -> None:
        q.visibility_changes.append(dict(params))

    # What the replicator asks of SQS (the test's own calls go through another client).
    aws.client("sqs", HOME).meta.events.register("provide-client-params.sqs.ChangeMessageVisibility", spy)
    return q


@pytest.fixture
def settings_for(queue: Queue, make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        data: dict[str, Any] = {"replica_regions": (WEST, EU), "copy_queue_url": queue.url}
        data.update(overrides)
        return make_settings(**data)

    return make


@pytest.fixture
def east(aws: Aws) -> Any:
    return aws.ec2(HOME)


def new_source(east: Any, name: str = "web-2026-11-25-10", *, encrypted: bool = False) -> str:
    image_id = create_image(east, name, tags=LIFECYCLE)
    # Snapshots behind a managed image carry its lifecycle tags (as tagging leaves them).
    east.create_tags(
        Resources=snapshot_ids(east, image_id), Tags=[{"Key": k, "Value": v} for k, v in LIFECYCLE.items()]
    )
    return image_id


def encrypted(backend: Any, image_id: str) -> str:
    """The image, its snapshot made encrypted (straight into moto's backend: `ec2_backend(region)`)."""
    backend.amis[image_id].ebs_snapshot.encrypted = True
    return image_id


def copy_with_lineage(dst: Any, source: str) -> str:
    """A copy of a home-region image made in dst's region, tagged with its lineage (as the replicator tags it)."""
    lineage = [{"Key": f"{P}:source-image", "Value": source}, {"Key": f"{P}:source-region", "Value": HOME}]
    return str(
        dst.copy_image(
            SourceImageId=source,
            SourceRegion=HOME,
            Name="web-1",
            TagSpecifications=[{"ResourceType": "image", "Tags": lineage}],
        )["ImageId"]
    )


def request_copies(aws: Aws, settings: Settings, queue: Queue, image_id: str) -> list[CopyRequest]:
    """What ImageEventsFunction does after tagging: plan the copies and queue them."""
    image = Ec2(aws.ec2(HOME), HOME).describe_image(image_id)
    assert image is not None
    lifecycle = {k: v for k, v in image.tags.items() if settings.keys.is_lifecycle_key(k)}
    plan = plan_copies(image, settings, lifecycle)
    assert plan.error is None
    assert CopyQueue(queue.sqs, queue.url).send(plan.requests) == []
    return list(plan.requests)


def copies_in(aws: Aws, region: str, source_id: str) -> list[dict[str, Any]]:
    return list(
        aws.ec2(region).describe_images(
            Owners=["self"], Filters=[{"Name": f"tag:{P}:source-image", "Values": [source_id]}]
        )["Images"]
    )


def metric(name: str) -> float:
    data = metrics.metric_set.get(name)
    return sum(data["Value"]) if data else 0


def run(settings: Settings, aws: Aws) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda event: handle(event, Deps.create(settings, aws))


# ------------------------------------------------------------------ copies land, tagged, once


def test_copies_land_in_every_region_with_tags_on_image_and_snapshots_and_lineage(
    aws: Aws, queue: Queue, settings_for: Any, east: Any
) -> None:
    settings = settings_for()
    source = new_source(east)
    request_copies(aws, settings, queue, source)

    assert queue.deliver(run(settings, aws)) == {"batchItemFailures": []}
    assert queue.depth() == 0

    expected = {**LIFECYCLE, f"{P}:source-image": source, f"{P}:source-region": HOME}
    copy_ids = {}
    for region in (WEST, EU):
        (copy_image,) = copies_in(aws, region, source)
        copy_ids[region] = copy_image["ImageId"]
        ec2 = aws.ec2(region)
        assert tags_of(ec2, copy_image["ImageId"]) == expected
        for snap in snapshot_ids(ec2, copy_image["ImageId"]):
            assert tags_of(ec2, snap) == expected
        assert copy_image["SourceImageId"] == source and copy_image["SourceImageRegion"] == HOME
        assert copy_image["Name"] == "web-2026-11-25-10"
        assert copy_image["DeprecationTime"][:16] == EXPIRES[:16]  # the copy expires with its source
    assert not copies_in(aws, HOME, source)  # never copied into its own region

    record = f"{WEST}={copy_ids[WEST]},{EU}={copy_ids[EU]}"
    assert tags_of(east, source)[f"{P}:copies"] == record
    assert tags_of(east, snapshot_ids(east, source)[0])[f"{P}:copies"] == record
    assert f"{P}:error" not in tags_of(east, source)
    assert metric("CopiesStarted") == 2


def test_a_duplicated_event_and_a_redelivered_message_make_exactly_one_copy_per_region(
    aws: Aws, queue: Queue, settings_for: Any, east: Any
) -> None:
    settings = settings_for()
    source = new_source(east)
    requests = request_copies(aws, settings, queue, source)
    request_copies(aws, settings, queue, source)  # the AMI event delivered twice

    assert queue.deliver(run(settings, aws)) == {"batchItemFailures": []}
    assert {r: motoext.calls_by_region()[r]["CopyImage"] for r in (WEST, EU)} == {WEST: 1, EU: 1}
    assert metric("CopiesStarted") == 2 and metric("CopiesAlreadyPresent") == 2
    first = {r: [i["ImageId"] for i in copies_in(aws, r, source)] for r in (WEST, EU)}
    assert all(len(ids) == 1 for ids in first.values())
    record = f"{WEST}={first[WEST][0]},{EU}={first[EU][0]}"
    assert tags_of(east, source)[f"{P}:copies"] == record
    # Once recorded, the request side asks for no more copies.
    assert request_copies(aws, settings, queue, source) == []

    # A message redelivered (the function timed out after copying): the existence check finds the copy.
    assert CopyQueue(queue.sqs, queue.url).send(requests) == []
    motoext.reset_calls()
    assert queue.deliver(run(settings, aws)) == {"batchItemFailures": []}
    assert motoext.calls()["CopyImage"] == 0 and metric("CopiesAlreadyPresent") == 4

    # And were the existence check to miss it (eventual consistency), the ClientToken holds.
    replicator = Replicator(Deps.create(settings, aws))
    replicator._existing_copies = lambda dst, request: []  # type: ignore[method-assign]
    for req in requests:
        outcome = replicator.replicate(req)
        assert outcome.status == "started" and outcome.copy_image_id == first[req.target_region][0]
    assert motoext.calls()["CopyImage"] == 2
    assert {r: [i["ImageId"] for i in copies_in(aws, r, source)] for r in (WEST, EU)} == first
    assert tags_of(east, source)[f"{P}:copies"] == record


def test_a_copy_request_for_the_images_own_region_is_dropped(
    aws: Aws, queue: Queue, settings_for: Any, east: Any
) -> None:
    settings = settings_for()
    source = new_source(east)
    req = CopyRequest(source, HOME, HOME, "web-1", tags=LIFECYCLE)
    queue.sqs.send_message(QueueUrl=queue.url, MessageBody=req.to_json())
    assert queue.deliver(run(settings, aws)) == {"batchItemFailures": []}
    assert motoext.calls()["CopyImage"] == 0 and queue.depth() == 0


# ------------------------------------------------------------------ deferral: concurrency, limits, throttling


def test_the_concurrency_limit_defers_the_request_then_it_succeeds(
    aws: Aws, queue: Queue, settings_for: Any, east: Any, ec2_backend: Any
) -> None:
    settings = settings_for(replica_regions=(WEST,), max_copies_in_flight=2)
    west = aws.ec2(WEST)
    # Two copies of ours already in flight in us-west-2 (and one pending image that is not ours).
    pending = []
    for i in range(2):
        other = new_source(east, f"other-{i}")
        copy_id = west.copy_image(SourceImageId=other, SourceRegion=HOME, Name=f"other-{i}")["ImageId"]
        west.create_tags(Resources=[copy_id], Tags=[{"Key": f"{P}:source-image", "Value": other}])
        pending.append(copy_id)
    foreign = create_image(west, "not-ours")
    for image_id in (*pending, foreign):
        ec2_backend(WEST).amis[image_id].state = "pending"

    source = new_source(east)
    request_copies(aws, settings, queue, source)
    motoext.reset_calls()
    result = queue.deliver(run(settings, aws))
    assert result is not None and len(result["batchItemFailures"]) == 1
    assert motoext.calls()["CopyImage"] == 0 and not copies_in(aws, WEST, source)
    (change,) = queue.visibility_changes
    assert 15 <= change["VisibilityTimeout"] <= 30 and change["QueueUrl"] == queue.url
    assert queue.receive() == [] and queue.depth() == 1  # returned to the queue, invisible for now
    assert metric("CopiesDeferred") == 1 and f"{P}:copies" not in tags_of(east, source)

    for image_id in pending:  # the copies in flight complete
        ec2_backend(WEST).amis[image_id].state = "available"
    queue.time_passes()
    assert queue.deliver(run(settings, aws)) == {"batchItemFailures": []}
    assert queue.last_event["Records"][0]["attributes"]["ApproximateReceiveCount"] == "2"
    (copy_image,) = copies_in(aws, WEST, source)
    assert tags_of(east, source)[f"{P}:copies"] == f"{WEST}={copy_image['ImageId']}"
    assert queue.depth() == 0


@pytest.mark.parametrize(
    ("code", "status"),
    [("ResourceLimitExceeded", 400), ("SnapshotCopyLimitExceeded", 400), ("RequestLimitExceeded", 503)],
)
def test_copy_limit_and_throttling_errors_defer_the_request_then_it_succeeds(
    aws: Aws, queue: Queue, settings_for: Any, east: Any, code: str, status: int
) -> None:
    settings = settings_for(replica_regions=(WEST,))
    first, second = new_source(east, "web-1"), new_source(east, "api-1")
    request_copies(aws, settings, queue, first)
    request_copies(aws, settings, queue, second)
    motoext.inject_error("CopyImage", code, "Too many snapshot copies in progress.", status=status, region=WEST)
    motoext.reset_calls()

    result = queue.deliver(run(settings, aws))
    assert result is not None and len(result["batchItemFailures"]) == 2
    # The region is full for the rest of the batch: one CopyImage call, not one per request.
    assert motoext.calls()["CopyImage"] == 1
    assert len(queue.visibility_changes) == 2 and queue.depth() == 2
    assert all(15 <= c["VisibilityTimeout"] <= 30 for c in queue.visibility_changes)
    assert metric("CopiesDeferred") == 2

    queue.time_passes()
    assert queue.deliver(run(settings, aws)) == {"batchItemFailures": []}
    assert len(copies_in(aws, WEST, first)) == 1 and len(copies_in(aws, WEST, second)) == 1
    assert queue.depth() == 0


def test_the_backoff_grows_with_the_receive_count(aws: Aws, queue: Queue, settings_for: Any, east: Any) -> None:
    settings = settings_for(replica_regions=(WEST,))
    request_copies(aws, settings, queue, new_source(east))
    for _ in range(2):
        motoext.inject_error("CopyImage", "ResourceLimitExceeded", "limit", region=WEST)
        queue.deliver(run(settings, aws))
        queue.time_passes()
    first, second = (c["VisibilityTimeout"] for c in queue.visibility_changes[:2])
    assert 15 <= first <= 30 and 30 <= second <= 60


def test_a_copy_not_listed_yet_is_not_recorded_and_the_request_comes_back(
    aws: Aws, queue: Queue, settings_for: Any, east: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(replica_regions=(WEST,))
    source = new_source(east)
    request_copies(aws, settings, queue, source)
    monkeypatch.setattr(Replicator, "_copy_state", lambda self, dst, copy_id: ("unknown", ""))
    result = queue.deliver(run(settings, aws))
    assert result is not None and len(result["batchItemFailures"]) == 1
    assert f"{P}:copies" not in tags_of(east, source)
    assert 15 <= queue.visibility_changes[-1]["VisibilityTimeout"] <= 30

    monkeypatch.undo()
    queue.time_passes()
    assert queue.deliver(run(settings, aws)) == {"batchItemFailures": []}
    (copy_image,) = copies_in(aws, WEST, source)
    assert tags_of(east, source)[f"{P}:copies"] == f"{WEST}={copy_image['ImageId']}"
    assert metric("CopiesStarted") == 1 and metric("CopiesAlreadyPresent") == 1


# ------------------------------------------------------------------ encryption


def test_a_missing_kms_key_is_a_clear_failure_recorded_on_the_source_and_ends_in_the_dlq(
    aws: Aws, queue: Queue, settings_for: Any, east: Any, ec2_backend: Any
) -> None:
    missing = f"arn:aws:kms:{WEST}:{ACCOUNT_ID}:key/00000000-0000-0000-0000-000000000000"
    settings = settings_for(replica_regions=(WEST,), replica_kms_keys={WEST: missing})
    source = encrypted(ec2_backend(HOME), new_source(east))
    (req,) = request_copies(aws, settings, queue, source)
    assert req.encrypted and req.kms_key_id == missing

    result = queue.deliver(run(settings, aws))
    assert result is not None and len(result["batchItemFailures"]) == 1
    assert queue.visibility_changes[-1]["VisibilityTimeout"] == FAILED_RETRY_SECONDS
    tags = tags_of(east, source)
    assert tags[f"{P}:copies"] == f"{WEST}=failed"
    error = tags[f"{P}:error"]
    assert error.startswith(f"copy to {WEST} failed:") and "KMS" in error and len(error) <= 256
    assert tags_of(east, snapshot_ids(east, source)[0])[f"{P}:copies"] == f"{WEST}=failed"
    assert metric("CopiesFailed") == 1

    # Redelivered until maxReceiveCount: no second copy, then the dead-letter queue.
    motoext.reset_calls()
    for _ in range(MAX_RECEIVES):
        queue.time_passes()
        queue.deliver(run(settings, aws))
    assert motoext.calls()["CopyImage"] == 0
    assert len(copies_in(aws, WEST, source)) == 1
    assert queue.depth() == 0 and queue.depth(queue.dlq_url) == 1
    assert metric("CopiesFailed") == 1  # counted once, not once per receive


def test_the_regions_kms_key_encrypts_the_copy(aws: Aws, queue: Queue, settings_for: Any, east: Any) -> None:
    key = aws.client("kms", WEST).create_key(Description="replicas")["KeyMetadata"]["Arn"]
    settings = settings_for(replica_regions=(WEST,), replica_kms_keys={WEST: key})
    source = new_source(east)
    request_copies(aws, settings, queue, source)
    assert queue.deliver(run(settings, aws)) == {"batchItemFailures": []}
    (copy_image,) = copies_in(aws, WEST, source)
    assert copy_image["State"] == "available"
    (snap,) = aws.ec2(WEST).describe_snapshots(SnapshotIds=snapshot_ids(aws.ec2(WEST), copy_image["ImageId"]))[
        "Snapshots"
    ]
    assert snap["Encrypted"] is True and snap["KmsKeyId"] == key


def test_an_encrypted_source_without_a_key_for_the_region_uses_the_default_ebs_key(
    aws: Aws, queue: Queue, settings_for: Any, east: Any, ec2_backend: Any
) -> None:
    settings = settings_for(replica_regions=(WEST,))
    source = encrypted(ec2_backend(HOME), new_source(east))
    sent: list[dict[str, Any]] = []
    aws.ec2(WEST).meta.events.register(
        "provide-client-params.ec2.CopyImage", lambda params, **_: sent.append(dict(params))
    )
    request_copies(aws, settings, queue, source)
    assert queue.deliver(run(settings, aws)) == {"batchItemFailures": []}
    (params,) = sent
    assert params["Encrypted"] is True and "KmsKeyId" not in params
    assert {s["ResourceType"] for s in params["TagSpecifications"]} == {"image", "snapshot"}
    (copy_image,) = copies_in(aws, WEST, source)
    assert copy_image["State"] == "available"
    assert all(b["Ebs"]["Encrypted"] for b in copy_image["BlockDeviceMappings"])


# ------------------------------------------------------------------ dropped and malformed requests


def test_a_deregistered_source_is_dropped_as_done(aws: Aws, queue: Queue, settings_for: Any, east: Any) -> None:
    settings = settings_for()
    source = new_source(east)
    request_copies(aws, settings, queue, source)
    east.deregister_image(ImageId=source)
    assert queue.deliver(run(settings, aws)) == {"batchItemFailures": []}
    assert queue.depth() == 0 and not copies_in(aws, WEST, source) and not copies_in(aws, EU, source)
    assert metric("CopiesSkipped") == 2 and metric("CopiesFailed") == 0


def test_a_malformed_message_fails_alone_and_reaches_the_dlq(
    aws: Aws, queue: Queue, settings_for: Any, east: Any
) -> None:
    settings = settings_for(replica_regions=(WEST,))
    queue.sqs.send_message(QueueUrl=queue.url, MessageBody='{"source_image_id": "ami-0123456789abcdef0"}')
    source = new_source(east)
    request_copies(aws, settings, queue, source)

    result = queue.deliver(run(settings, aws))
    assert result is not None and len(result["batchItemFailures"]) == 1
    assert len(copies_in(aws, WEST, source)) == 1  # the good request in the same batch went through
    assert queue.visibility_changes[-1]["VisibilityTimeout"] == 0  # back at once, to reach the DLQ fast
    for _ in range(MAX_RECEIVES):
        queue.deliver(run(settings, aws))
    assert queue.depth() == 0 and queue.depth(queue.dlq_url) == 1
    assert metric("CopyRequestsMalformed") == MAX_RECEIVES


# ------------------------------------------------------------------ failed copies (ImageEventsFunction)


def test_a_failed_copy_event_is_recorded_on_the_source(
    aws: Aws, settings_for: Any, east: Any, available_event: Event, ec2_backend: Any
) -> None:
    settings = settings_for()
    source = new_source(east)
    east.create_tags(Resources=[source], Tags=[{"Key": f"{P}:copies", "Value": f"{EU}=ami-0aaaaaaaaaaaaaaa1"}])
    copy_id = copy_with_lineage(aws.ec2(WEST), source)
    ec2_backend(WEST).amis[copy_id].state = "failed"

    message = "Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state"
    outcome = handle_event(
        available_event(copy_id, WEST, sample="ami_failed_copy.json", ErrorMessage=message),
        Deps.create(settings, aws, datetime.now(UTC), ACCOUNT_ID),
    )
    assert outcome.status == "recorded"
    assert outcome.reason.startswith(f"copy {copy_id} of {source} ({HOME}) failed: Client.InvalidKMSKey")
    assert outcome.reason.endswith(f"recorded on the source as {WEST}=failed")
    tags = tags_of(east, source)
    assert tags[f"{P}:copies"] == f"{EU}=ami-0aaaaaaaaaaaaaaa1,{WEST}=failed"
    assert tags[f"{P}:error"] == f"copy to {WEST} failed: {message}"
    assert metric("CopiesFailed") == 1


def test_a_failed_image_that_is_not_our_copy_is_only_noted(aws: Aws, settings_for: Any, available_event: Event) -> None:
    settings = settings_for()
    west = aws.ec2(WEST)
    image_id = create_image(west, "built-here")
    assert record_failed_copy(Deps.create(settings, aws), WEST, image_id, "boom") is None
    assert record_failed_copy(Deps.create(settings, aws), WEST, "ami-0123456789abcdef0", "boom") is None  # unknown
    outcome = handle_event(
        available_event(image_id, WEST, sample="ami_failed_copy.json", ErrorMessage="boom"),
        Deps.create(settings, aws, datetime.now(UTC), ACCOUNT_ID),
    )
    assert outcome.reason == "image failed: boom" and metric("CopiesFailed") == 0


def test_a_failed_copy_does_not_overwrite_a_newer_copy_recorded_for_its_region(
    aws: Aws, settings_for: Any, east: Any
) -> None:
    settings = settings_for()
    source = new_source(east)
    old = copy_with_lineage(aws.ec2(WEST), source)
    east.create_tags(Resources=[source], Tags=[{"Key": f"{P}:copies", "Value": f"{WEST}=ami-0bbbbbbbbbbbbbbb2"}])
    note = record_failed_copy(Deps.create(settings, aws), WEST, old, "boom")
    assert note is not None and "left as is" in note
    assert tags_of(east, source)[f"{P}:copies"] == f"{WEST}=ami-0bbbbbbbbbbbbbbb2"


# ------------------------------------------------------------------ end to end through both handlers


def test_new_image_to_copies_through_image_events_and_replicator_handlers(
    aws: Aws, queue: Queue, east: Any, available_event: Event, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.image_events.app import lambda_handler as image_events
    from functions.replicator.app import lambda_handler as replicator

    monkeypatch.setenv("REPLICA_REGIONS", f"{WEST},{EU}")
    monkeypatch.setenv("COPY_QUEUE_URL", queue.url)
    image_id = create_image(east, "web-2026-11-25-10")

    out = image_events(available_event(image_id, HOME), lambda_context)
    assert out["status"] == "tagged" and out["copies_requested"] == [WEST, EU]

    messages = queue.receive()
    assert len(messages) == 2
    result = replicator(queue.event(messages), lambda_context)
    assert result == {"batchItemFailures": []}

    source_tags = tags_of(east, image_id)
    assert source_tags[f"{P}:managed"] == "true"
    for region in (WEST, EU):
        (copy_image,) = copies_in(aws, region, image_id)
        copy_tags = tags_of(aws.ec2(region), copy_image["ImageId"])
        assert copy_tags == {
            **{k: v for k, v in source_tags.items() if k != f"{P}:copies"},
            f"{P}:source-image": image_id,
            f"{P}:source-region": HOME,
        }
        assert copy_image["SourceImageId"] == image_id
        for snap in snapshot_ids(aws.ec2(region), copy_image["ImageId"]):
            assert tags_of(aws.ec2(region), snap) == copy_tags

        # The copy's own `available` event: tagged already, and never replicated again.
        copy_out = image_events(available_event(copy_image["ImageId"], region), lambda_context)
        assert copy_out["status"] == "tagged" and "copies_requested" not in copy_out
        assert any("copies are not replicated" in note for note in copy_out["copy_notes"])
    assert sorted(source_tags[f"{P}:copies"].split(",")) == sorted(
        f"{r}={copies_in(aws, r, image_id)[0]['ImageId']}" for r in (WEST, EU)
    )
    assert queue.receive() == []


def test_the_sample_sqs_event_runs_through_the_handler(
    aws: Aws, queue: Queue, east: Any, event: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """events/copy_request_sqs.json, as `sam local invoke ReplicatorFunction -e` would send it,
    with the source id swapped for a real image."""
    from functions.replicator.app import lambda_handler as replicator

    monkeypatch.setenv("COPY_QUEUE_URL", queue.url)
    source = new_source(east)
    sample = copy.deepcopy(event("copy_request_sqs.json"))
    record = sample["Records"][0]
    record["body"] = record["body"].replace("ami-0123456789abcdef0", source)
    assert replicator(sample, lambda_context) == {"batchItemFailures": []}
    assert len(copies_in(aws, WEST, source)) == 1
