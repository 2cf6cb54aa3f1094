"""Hub and spokes on moto, the event path and the copies (PRODUCT.md section 7): an image event acts
in the event's own account and region through the spoke role; events of unmanaged accounts and
uncovered regions are refused for good; a managed account whose role is missing fails the event
(retried, then the DLQ). Copies stay inside the image's account; the copy queue is the hub's."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from ami_lifecycle.aws.accounts import AccountUnreachable
from ami_lifecycle.aws.clients import Aws
from ami_lifecycle.domain.replication import CopyRequest
from ami_lifecycle.domain.settings import Settings
from ami_lifecycle.runtime import Deps
from ami_lifecycle.runtime.observability import metrics
from ami_lifecycle.services.image_events import handle_event
from ami_lifecycle.services.replicator import handle as replicate
from ami_lifecycle_localaws import motoext
from ami_lifecycle_localaws.fleet import create_image, snapshot_ids, tags_of
from botocore.config import Config

from tests.conftest import ACCOUNT_ID, LocalAws

P = "ami-lifecycle"
HUB = ACCOUNT_ID
SPOKE = "222222222222"  # managed, its spoke role deployed
NO_ROLE = "333333333333"  # managed, its spoke role missing
STRANGER = "444444444444"  # not managed
EAST, WEST, SOUTH = "us-east-1", "us-west-2", "ap-south-1"
ROLE = "ami-lifecycle-spoke"
Event = Callable[..., dict[str, Any]]  # the `available_event` fixture (tests/conftest.py)


def deploy_spoke_role(moto_aws: LocalAws, account: str) -> None:
    """The role spoke.yaml creates in a managed account: only the hub may assume it."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{HUB}:root"}, "Action": "sts:AssumeRole"}
        ],
    }
    moto_aws.client("iam", account=account).create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(trust))


def metric(name: str) -> float:
    data = metrics.metric_set.get(name)
    return sum(data["Value"]) if data else 0


def refusals_by_reason(output: str) -> dict[str, float]:
    """The `EventsRefusedByReason` values printed (EMF, one line per single metric), by Reason."""
    found: dict[str, float] = {}
    for line in output.splitlines():
        if line.startswith("{") and '"EventsRefusedByReason"' in line:
            data = json.loads(line)
            value = data["EventsRefusedByReason"]
            found[data["Reason"]] = found.get(data["Reason"], 0) + sum(value if isinstance(value, list) else [value])
    return found


@pytest.fixture
def aws(moto_aws: LocalAws) -> Aws:
    """The hub's clients, no botocore retries (the tests see every fault)."""
    return moto_aws.aws(Config(retries={"mode": "standard", "total_max_attempts": 1}))


@pytest.fixture
def queue_url(moto_aws: LocalAws) -> str:
    """The copy queue, in the hub account and region."""
    return str(moto_aws.client("sqs", EAST).create_queue(QueueName="copy-queue")["QueueUrl"])


@pytest.fixture
def settings(make_settings: Callable[..., Settings], queue_url: str) -> Settings:
    return make_settings(
        managed_accounts_param=(SPOKE, NO_ROLE),
        sweep_regions_param=(EAST, WEST),
        replica_regions=(WEST,),
        copy_queue_url=queue_url,
    )


@pytest.fixture
def deps(settings: Settings, aws: Aws, moto_aws: LocalAws) -> Deps:
    deploy_spoke_role(moto_aws, SPOKE)
    return Deps.create(settings, aws, datetime.now(UTC), HUB)


@pytest.fixture
def spoke_east(moto_aws: LocalAws) -> Any:
    return moto_aws.ec2(EAST, account=SPOKE)


def queued(moto_aws: LocalAws, queue_url: str) -> list[dict[str, Any]]:
    """The copy requests waiting on the hub's queue (received, then made visible again)."""
    sqs = moto_aws.client("sqs", EAST)
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]).get(
        "Messages", []
    )
    for m in messages:
        sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    return list(messages)


def sqs_event(messages: list[dict[str, Any]], queue_url: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": dict(m.get("Attributes", {})),
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{EAST}:{HUB}:{queue_url.rsplit('/', 1)[1]}",
                "awsRegion": EAST,
            }
            for m in messages
        ]
    }


def copies_in(ec2: Any, source_id: str) -> list[dict[str, Any]]:
    return list(
        ec2.describe_images(Owners=["self"], Filters=[{"Name": f"tag:{P}:source-image", "Values": [source_id]}])[
            "Images"
        ]
    )


# ------------------------------------------------------------------ events act in their own account


def test_an_event_from_a_spoke_tags_the_image_in_the_spoke_account(
    deps: Deps, moto_aws: LocalAws, spoke_east: Any, available_event: Event, queue_url: str
) -> None:
    image_id = create_image(spoke_east, "web-2026-11-25-10")
    outcome = handle_event(available_event(image_id, EAST, account=SPOKE), deps)

    assert outcome.status == "tagged" and outcome.account == SPOKE
    tags = tags_of(spoke_east, image_id)
    assert tags[f"{P}:managed"] == "true" and tags[f"{P}:family"] == "web"
    for snap in snapshot_ids(spoke_east, image_id):
        assert tags_of(spoke_east, snap)[f"{P}:managed"] == "true"
    assert tags_of(moto_aws.ec2(EAST), image_id) == {}  # nothing written in the hub
    assert deps.accounts.assumed == 1  # through the spoke role, once

    # Its copy request is on the hub's queue, and names the image's account.
    (message,) = queued(moto_aws, queue_url)
    request = CopyRequest.from_json(message["Body"])
    assert (request.account, request.source_image_id, request.target_region) == (SPOKE, image_id, WEST)
    assert outcome.copies_requested == [WEST]


def test_an_event_of_the_hub_account_acts_with_the_hubs_own_clients(
    deps: Deps, moto_aws: LocalAws, available_event: Event, queue_url: str
) -> None:
    hub_east = moto_aws.ec2(EAST)
    image_id = create_image(hub_east, "api-v1.4.2")
    assert handle_event(available_event(image_id, EAST, account=HUB), deps).status == "tagged"
    assert tags_of(hub_east, image_id)[f"{P}:managed"] == "true"
    assert deps.accounts.assumed == 0
    (message,) = queued(moto_aws, queue_url)
    assert CopyRequest.from_json(message["Body"]).account == HUB


def test_an_event_from_an_unmanaged_account_changes_nothing_and_is_refused(
    deps: Deps, moto_aws: LocalAws, available_event: Event, queue_url: str, capsys: Any
) -> None:
    stranger = moto_aws.ec2(EAST, account=STRANGER)
    image_id = create_image(stranger, "web-1")
    motoext.reset_calls()

    outcome = handle_event(available_event(image_id, EAST, account=STRANGER), deps)  # no exception: final

    assert outcome.status == "refused" and STRANGER in outcome.reason and "does not manage" in outcome.reason
    assert motoext.calls() == {}  # not even a look at the image
    assert tags_of(stranger, image_id) == {} and queued(moto_aws, queue_url) == []
    assert metric("EventsRefused") == 1
    assert refusals_by_reason(capsys.readouterr().out) == {"unmanaged-account": 1}


def test_an_event_from_a_region_that_is_not_covered_changes_nothing_and_is_refused(
    deps: Deps, moto_aws: LocalAws, available_event: Event, queue_url: str, capsys: Any
) -> None:
    spoke_south = moto_aws.ec2(SOUTH, account=SPOKE)
    image_id = create_image(spoke_south, "web-1")
    motoext.reset_calls()

    outcome = handle_event(available_event(image_id, SOUTH, account=SPOKE), deps)

    assert outcome.status == "refused" and "does not cover" in outcome.reason
    assert motoext.calls() == {} and deps.accounts.assumed == 0
    assert tags_of(spoke_south, image_id) == {} and queued(moto_aws, queue_url) == []
    assert refusals_by_reason(capsys.readouterr().out) == {"uncovered-region": 1}


def test_a_malformed_event_is_refused_by_reason(deps: Deps, available_event: Event, capsys: Any) -> None:
    event = available_event("ami-0123456789abcdef0", EAST, account=SPOKE)
    event["detail"]["State"] = "exploded"
    assert handle_event(event, deps).status == "refused"
    assert refusals_by_reason(capsys.readouterr().out) == {"malformed": 1}


def test_an_event_from_a_managed_account_whose_role_is_missing_fails_to_be_retried(
    deps: Deps, moto_aws: LocalAws, available_event: Event, queue_url: str
) -> None:
    no_role = moto_aws.ec2(EAST, account=NO_ROLE)
    image_id = create_image(no_role, "web-1")

    with pytest.raises(AccountUnreachable) as e:
        handle_event(available_event(image_id, EAST, account=NO_ROLE), deps)

    assert e.value.account == NO_ROLE and "AccessDenied" in e.value.reason
    assert e.value.role_arn == f"arn:aws:iam::{NO_ROLE}:role/{ROLE}"
    assert tags_of(no_role, image_id) == {} and queued(moto_aws, queue_url) == []
    assert metric("AccountsUnreachable") == 1 and metric("EventsRefused") == 0


@pytest.fixture
def function(
    monkeypatch: pytest.MonkeyPatch, lambda_context: Any, moto_aws: LocalAws, queue_url: str
) -> Iterator[Callable[[dict[str, Any]], dict[str, Any]]]:
    """ImageEventsFunction as deployed: settings from its environment, its account from its ARN."""
    deploy_spoke_role(moto_aws, SPOKE)
    monkeypatch.setenv("MANAGED_ACCOUNTS", f"{SPOKE},{NO_ROLE}")
    monkeypatch.setenv("SPOKE_ROLE_NAME", ROLE)
    monkeypatch.setenv("SWEEP_REGIONS", f"{EAST},{WEST}")
    monkeypatch.setenv("REPLICA_REGIONS", WEST)
    monkeypatch.setenv("COPY_QUEUE_URL", queue_url)
    from functions.image_events.app import lambda_handler

    yield lambda event: lambda_handler(event, lambda_context)


def test_the_function_tags_a_spoke_image_and_raises_for_an_unreachable_account(
    function: Any, moto_aws: LocalAws, spoke_east: Any, available_event: Event
) -> None:
    image_id = create_image(spoke_east, "web-1")
    out = function(available_event(image_id, EAST, account=SPOKE))
    assert out["status"] == "tagged" and out["account"] == SPOKE
    assert tags_of(spoke_east, image_id)[f"{P}:managed"] == "true"

    stuck = create_image(moto_aws.ec2(WEST, account=NO_ROLE), "web-2")
    with pytest.raises(AccountUnreachable):  # Lambda retries the event, then its DLQ keeps it
        function(available_event(stuck, WEST, account=NO_ROLE))
    assert function(available_event(stuck, WEST, account=STRANGER))["status"] == "refused"


# ------------------------------------------------------------------ copies stay in the image's account


def test_a_spoke_images_copy_lands_in_the_spoke_accounts_target_region_with_lineage(
    deps: Deps, moto_aws: LocalAws, spoke_east: Any, available_event: Event, queue_url: str, aws: Aws
) -> None:
    image_id = create_image(spoke_east, "web-2026-11-25-10")
    handle_event(available_event(image_id, EAST, account=SPOKE), deps)
    messages = queued(moto_aws, queue_url)

    result = replicate(sqs_event(messages, queue_url), Deps.create(deps.settings, aws, datetime.now(UTC), HUB))

    assert result == {"batchItemFailures": []}
    spoke_west = moto_aws.ec2(WEST, account=SPOKE)
    (copy,) = copies_in(spoke_west, image_id)
    tags = tags_of(spoke_west, copy["ImageId"])
    assert tags[f"{P}:source-image"] == image_id and tags[f"{P}:source-region"] == EAST
    assert tags[f"{P}:managed"] == "true" and copy["SourceImageId"] == image_id
    assert copies_in(moto_aws.ec2(WEST), image_id) == []  # none in the hub account
    assert tags_of(spoke_east, image_id)[f"{P}:copies"] == f"{WEST}={copy['ImageId']}"


def test_the_in_flight_limit_is_counted_per_account(
    deps: Deps,
    moto_aws: LocalAws,
    spoke_east: Any,
    aws: Aws,
    ec2_backend: Any,
    queue_url: str,
    make_settings: Callable[..., Settings],
) -> None:
    """The hub's us-west-2 is full; the spoke's us-west-2 is not: in one batch, the hub's request
    is deferred and the spoke's copy made."""
    settings = make_settings(
        managed_accounts_param=(SPOKE,),
        sweep_regions_param=(EAST, WEST),
        copy_queue_url=queue_url,
        max_copies_in_flight=1,
    )
    hub_east, hub_west = moto_aws.ec2(EAST), moto_aws.ec2(WEST)
    other = create_image(hub_east, "busy")
    busy = hub_west.copy_image(SourceImageId=other, SourceRegion=EAST, Name="busy")["ImageId"]
    hub_west.create_tags(Resources=[busy], Tags=[{"Key": f"{P}:source-image", "Value": other}])
    ec2_backend(WEST).amis[busy].state = "pending"  # a copy of ours in flight in the hub's us-west-2
    hub_image, spoke_image = create_image(hub_east, "web-1"), create_image(spoke_east, "web-1")
    sqs = moto_aws.client("sqs", EAST)
    for account, source in (("", hub_image), (SPOKE, spoke_image)):
        lineage = {f"{P}:managed": "true", f"{P}:source-image": source, f"{P}:source-region": EAST}
        request = CopyRequest(source, EAST, WEST, "web-1", tags=lineage, account=account)
        sqs.send_message(QueueUrl=queue_url, MessageBody=request.to_json())

    messages = queued(moto_aws, queue_url)
    by_source = {CopyRequest.from_json(m["Body"]).source_image_id: m["MessageId"] for m in messages}
    result = replicate(sqs_event(messages, queue_url), Deps.create(settings, aws, datetime.now(UTC), HUB))

    assert result == {"batchItemFailures": [{"itemIdentifier": by_source[hub_image]}]}  # deferred
    assert copies_in(hub_west, hub_image) == []
    assert len(copies_in(moto_aws.ec2(WEST, account=SPOKE), spoke_image)) == 1


def test_a_copy_request_for_an_unmanaged_account_is_refused_and_deleted(
    deps: Deps, moto_aws: LocalAws, aws: Aws, queue_url: str
) -> None:
    stranger_east = moto_aws.ec2(EAST, account=STRANGER)
    source = create_image(stranger_east, "web-1")
    request = CopyRequest(source, EAST, WEST, "web-1", tags={f"{P}:managed": "true"}, account=STRANGER)
    moto_aws.client("sqs", EAST).send_message(QueueUrl=queue_url, MessageBody=request.to_json())
    messages = queued(moto_aws, queue_url)
    motoext.reset_calls()

    result = replicate(sqs_event(messages, queue_url), deps)

    assert result == {"batchItemFailures": []}  # it can never succeed: the message is deleted
    assert "CopyImage" not in motoext.calls() and "CreateTags" not in motoext.calls()
    assert copies_in(moto_aws.ec2(WEST, account=STRANGER), source) == []
    assert tags_of(stranger_east, source) == {}
    assert metric("CopiesRefused") == 1


def test_a_copy_request_for_an_account_whose_role_is_missing_stays_on_the_queue(
    deps: Deps, moto_aws: LocalAws, aws: Aws, queue_url: str
) -> None:
    source = create_image(moto_aws.ec2(EAST, account=NO_ROLE), "web-1")
    request = CopyRequest(source, EAST, WEST, "web-1", tags={f"{P}:managed": "true"}, account=NO_ROLE)
    moto_aws.client("sqs", EAST).send_message(QueueUrl=queue_url, MessageBody=request.to_json())
    messages = queued(moto_aws, queue_url)
    changes: list[dict[str, Any]] = []
    aws.client("sqs", EAST).meta.events.register(
        "provide-client-params.sqs.ChangeMessageVisibility", lambda params, **_: changes.append(dict(params))
    )

    result = replicate(sqs_event(messages, queue_url), deps)

    assert result == {"batchItemFailures": [{"itemIdentifier": messages[0]["MessageId"]}]}
    (change,) = changes  # back on the hub's queue after a back-off: the role may come
    assert change["QueueUrl"] == queue_url and 15 <= change["VisibilityTimeout"] <= 30
    assert copies_in(moto_aws.ec2(WEST, account=NO_ROLE), source) == []
    assert metric("AccountsUnreachable") == 1
