"""Bad input through the functions as template.yaml wires them (the local runner, on moto): every
refusal is clear (the response says what is wrong), logged, counted, and touches nothing.

Complements the handler-level tests of each function (test_sweep, test_backfill, test_replicator,
test_image_events): manual payloads of absurd shapes and sizes, copy-request bodies that can never
succeed (they must reach the dead-letter queue the template declares, without a single EC2 call),
events from elsewhere, and absurd lifecycle tag values, first through tagging, then through the
retention sweep.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from ami_lifecycle import runtime
from ami_lifecycle_localaws import motoext
from ami_lifecycle_localaws.fleet import create_image, tags_of
from ami_lifecycle_localaws.stack import LocalStack, load_template

from tests.conftest import LocalAws, regions

P = "ami-lifecycle"
EAST, WEST = "us-east-1", "us-west-2"
AMI = "ami-0123456789abcdef0"
Event = Callable[..., dict[str, Any]]  # the `available_event` fixture (tests/conftest.py)


@pytest.fixture
def stack(moto_aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> LocalStack:
    monkeypatch.setattr(runtime, "aws", moto_aws.aws)
    return LocalStack(region=EAST, parameters={"SweepRegions": f"{EAST},{WEST}"}, session=moto_aws.session)


def emitted_metric(output: str, name: str) -> float:
    total = 0.0
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            value = json.loads(line).get(name)
            if value is not None:
                total += sum(value) if isinstance(value, list) else float(value)
    return total


def refusals(caplog: Any, message: str) -> list[Any]:
    return [r for r in caplog.records if r.getMessage() == message and r.levelname == "ERROR"]


# ------------------------------------------------------------------ manual payloads


HUGE = "x" * 1_000_000
SWEEP_PAYLOADS: list[tuple[Any, str]] = [
    ({"regions": EAST}, "regions"),  # a string, not a list
    ({"regions": [1]}, "regions"),
    ({"regions": ["US-EAST-1"]}, "is not an AWS region"),
    ({"regions": ["us-east-1\u0000"]}, "is not an AWS region"),
    ({"regions": ["üs-east-1"]}, "is not an AWS region"),
    ({"regions": [EAST] * 51}, "regions"),
    ({"dry_run": 1}, "dry_run"),
    ({"dry_run": "true"}, "dry_run"),
    ({"continuation": -1}, "continuation"),
    ({"cursor": {"pairs": [], "iteration": 1}}, "cursor.pairs"),
    ({"cursor": {"pairs": [["1", "us-east-1"]]}}, "cursor.pairs"),
    ({"cursor": {"pairs": [["123456789012", "us-east-1"]], "iteration": 10**9}}, "cursor.iteration"),
    ({"accounts": ["12345678901x"]}, "accounts"),
    ({"accounts": None}, "accounts"),
    ({"Regions": [EAST]}, "Regions"),  # keys are case-sensitive
    ({"unknown": {"nested": [1, 2]}}, "unknown"),
    ({"padding": HUGE}, "padding"),
    ("sweep", "not a JSON object"),
    (12345, "not a JSON object"),
    ([{"regions": [EAST]}], "not a JSON object"),
]
BACKFILL_PAYLOADS: list[tuple[Any, str]] = [
    ({"actions": "tag"}, "actions"),
    ({"actions": ["TAG"]}, "unknown action 'TAG'"),
    ({"actions": ["tag", "replicate", "retire", "tag"]}, "actions"),
    ({"image_ids": [AMI] * 1001}, "image_ids"),
    ({"image_ids": ["AMI-0123456789ABCDEF0"]}, "is not an AMI id"),
    ({"image_ids": "ami-0123456789abcdef0"}, "image_ids"),
    ({"regions": []}, "regions"),
    ({"dry_run": "no"}, "dry_run"),
    ({"dry_run": None, "extra": True}, "extra: unknown key"),
    ({"continuation": "resume"}, "continuation"),
    ({"continuation": {"region_index": 0, "chain": 99}}, "continuation.chain"),
    ({"continuation": {"region_index": 0, "run_id": "x" * 65}}, "continuation.run_id"),
    ({"continuation": {"region_index": 0, "sneaky": 1}}, "continuation.sneaky"),
    ({"padding": HUGE}, "padding: unknown key"),
    ("apply", "not a JSON object"),
]


@pytest.mark.parametrize(
    ("function", "payload", "fragment"),
    [("RetentionSweepFunction", p, f) for p, f in SWEEP_PAYLOADS]
    + [("BackfillFunction", p, f) for p, f in BACKFILL_PAYLOADS],
    ids=[f"sweep-{i}" for i in range(len(SWEEP_PAYLOADS))] + [f"backfill-{i}" for i in range(len(BACKFILL_PAYLOADS))],
)
def test_a_bad_manual_payload_is_refused_clearly_logged_counted_and_touches_nothing(
    stack: LocalStack, function: str, payload: Any, fragment: str, caplog: Any, capsys: Any, moto_aws: LocalAws
) -> None:
    image_id = create_image(moto_aws.ec2(EAST), "web-1", created=datetime(2024, 1, 1, tzinfo=UTC))
    motoext.reset_calls()
    out = stack.invoke(function, copy.deepcopy(payload))

    assert out["status"] == "refused" and fragment in out["error"], out["error"]
    assert len(out["error"]) < 1000 and len(json.dumps(out)) < 5000  # the huge input is not echoed back
    assert motoext.calls() == {}  # not one AWS call
    assert tags_of(moto_aws.ec2(EAST), image_id) == {}
    kind = "sweep" if function == "RetentionSweepFunction" else "backfill"
    (record,) = refusals(caplog, f"{kind} payload refused")
    assert len(str(record.__dict__.get("payload", ""))) <= 2001  # the log line is clipped too
    assert emitted_metric(capsys.readouterr().out, "SweepRefused" if kind == "sweep" else "BackfillRefused") == 1


# ------------------------------------------------------------------ copy-request bodies


def valid_request(source_id: str) -> dict[str, Any]:
    return {
        "source_image_id": source_id,
        "source_region": EAST,
        "target_region": WEST,
        "name": "web-1",
        "description": "",
        "tags": {f"{P}:managed": "true", f"{P}:source-image": source_id, f"{P}:source-region": EAST},
        "encrypted": False,
        "kms_key_id": None,
    }


def malformed_bodies() -> dict[str, str]:
    good = valid_request(AMI)
    variants: dict[str, Any] = {
        "not JSON": "{not json",
        "a JSON array": "[]",
        "JSON null": "null",
        "a JSON string": '"copy please"',
        "an empty object": "{}",
        "an unknown key": {**good, "priority": "high"},
        "a missing target": {k: v for k, v in good.items() if k != "target_region"},
        "an instance id": {**good, "source_image_id": "i-0123456789abcdef0"},
        "a made-up region": {**good, "target_region": "mars-north-1"},
        "a tag key of 129 characters": {**good, "tags": {"k" * 129: "v"}},
        "a tag value of 257 characters": {**good, "tags": {f"{P}:family": "v" * 257}},
        "a tag value that is a number": {**good, "tags": {f"{P}:keep-latest": 3}},
        "tags as a list": {**good, "tags": [["k", "v"]]},
        "encrypted as a string": {**good, "encrypted": "yes"},
        "a key without encryption": {**good, "kms_key_id": "arn:aws:kms:us-west-2:111122223333:key/x"},
        "a blank name": {**good, "name": "   "},
        "200 KB of padding": {**good, "padding": "x" * 200_000},
    }
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in variants.items()}


def test_copy_requests_that_can_never_succeed_reach_the_dead_letter_queue_without_an_ec2_call(
    stack: LocalStack, caplog: Any, capsys: Any, moto_aws: LocalAws
) -> None:
    ec2 = moto_aws.ec2(EAST)
    source = create_image(ec2, "web-1")
    sqs = moto_aws.client("sqs", EAST)
    bodies = malformed_bodies()
    for body in [*bodies.values(), json.dumps(valid_request(source))]:
        sqs.send_message(QueueUrl=stack.queue_url("CopyQueue"), MessageBody=body)
    motoext.reset_calls()

    stack.drain_queue("CopyQueue")

    # The good request in the same batches was carried out: exactly one CopyImage in all.
    assert motoext.calls()["CopyImage"] == 1
    copies = moto_aws.ec2(WEST).describe_images(Owners=["self"])["Images"]
    assert [c["Name"] for c in copies] == ["web-1"]
    # Every malformed body is in the dead-letter queue, after the template's maxReceiveCount receives.
    max_receives = load_template()["Resources"]["CopyQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"]
    dead: list[str] = []
    while True:
        got = sqs.receive_message(QueueUrl=stack.queue_url("CopyDeadLetterQueue"), MaxNumberOfMessages=10)
        if not got.get("Messages"):
            break
        dead += [m["Body"] for m in got["Messages"]]
    assert sorted(dead) == sorted(bodies.values())
    # Clear, logged, counted: one ERROR line per receive, with the reason.
    malformed = [r for r in caplog.records if r.getMessage().startswith("copy request malformed")]
    assert len(malformed) == len(bodies) * max_receives
    reasons = {str(r.__dict__.get("reason", "")) for r in malformed}
    assert all(reason and len(reason) <= 200 for reason in reasons)
    assert emitted_metric(capsys.readouterr().out, "CopyRequestsMalformed") == len(bodies) * max_receives


# ------------------------------------------------------------------ events


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e["detail"].update(ImageId=e["detail"]["ImageId"].upper()),
        lambda e: e.update(detail=[e["detail"]]),
        lambda e: e.update(account=int(e["account"])),
        lambda e: e.update(region="us-east-1 "),
        lambda e: e["detail"].update(State="Available"),
        lambda e: e.update({"detail-type": "EC2 AMI State Change "}),
    ],
    ids=["uppercase-id", "detail-list", "account-number", "region-space", "state-case", "detail-type-space"],
)
def test_malformed_events_are_refused_through_the_templates_wiring(
    stack: LocalStack, mutate: Any, caplog: Any, capsys: Any, moto_aws: LocalAws, available_event: Event
) -> None:
    image_id = create_image(moto_aws.ec2(EAST), "web-1")
    event = available_event(image_id)
    mutate(event)
    motoext.reset_calls()
    out = stack.invoke("ImageEventsFunction", event)
    assert out["status"] == "refused" and out["reason"]
    assert motoext.calls() == {}
    assert [r for r in caplog.records if r.getMessage() == "event refused" and r.levelname == "WARNING"]
    assert emitted_metric(capsys.readouterr().out, "EventsRefused") == 1
    assert tags_of(moto_aws.ec2(EAST), image_id) == {}


def test_unknown_keys_in_an_event_are_ignored_not_refused(
    stack: LocalStack, moto_aws: LocalAws, available_event: Event
) -> None:
    """EventBridge adds fields over time: an event with keys we do not know is still handled."""
    image_id = create_image(moto_aws.ec2(EAST), "web-1")
    event = available_event(image_id)
    event["replay-name"] = "replay-1"
    event["detail"]["Future"] = {"field": True}
    assert stack.invoke("ImageEventsFunction", event)["status"] == "tagged"


def test_a_failed_events_huge_error_message_is_clipped(
    stack: LocalStack, caplog: Any, moto_aws: LocalAws, available_event: Event
) -> None:
    image_id = create_image(moto_aws.ec2(EAST), "web-1")
    event = available_event(image_id, State="failed", ErrorMessage="ü" * 100_000)
    out = stack.invoke("ImageEventsFunction", event)
    assert out["status"] == "recorded" and len(out["reason"]) < 2000


def test_an_event_from_a_region_the_stack_does_not_cover_is_refused(
    stack: LocalStack, moto_aws: LocalAws, available_event: Event
) -> None:
    elsewhere = "eu-central-1"
    image_id = create_image(moto_aws.ec2(elsewhere), "web-1")
    out = stack.invoke("ImageEventsFunction", available_event(image_id, elsewhere))
    assert out["status"] == "refused"
    assert tags_of(moto_aws.ec2(elsewhere), image_id) == {}


def test_an_image_id_with_a_trailing_newline_is_refused_by_the_backfill(stack: LocalStack, moto_aws: LocalAws) -> None:
    image_id = create_image(moto_aws.ec2(EAST), "web-1")
    assert stack.invoke("BackfillFunction", {"image_ids": [image_id + "\n"]})["status"] == "refused"


def test_an_event_image_id_with_a_trailing_newline_is_refused(
    stack: LocalStack, moto_aws: LocalAws, available_event: Event
) -> None:
    image_id = create_image(moto_aws.ec2(EAST), "web-1")
    event = available_event(image_id)
    event["detail"]["ImageId"] = image_id + "\n"
    assert stack.invoke("ImageEventsFunction", event)["status"] == "refused"


# ------------------------------------------------------------------ absurd tag values

# (tag, value, what the sweep decides for an image created in 2024 whose family has a newer,
# never-expiring image: only the tag under test can keep it).
RETIRE, BAD = "retire", "bad-tag"
ABSURD: list[tuple[str, str, str]] = [
    ("retention", "-5d", BAD),
    ("retention", "99999999d", BAD),
    ("retention", "P1000Y", BAD),
    ("retention", "١٠d", BAD),  # Arabic-Indic digits
    ("retention", "", BAD),
    ("retention", "   ", BAD),
    ("retention", "x" * 256, BAD),
    ("retention", "🦄", BAD),
    ("retention", "1.5d", BAD),
    ("keep-latest", "-1", BAD),
    ("keep-latest", "1e3", BAD),
    ("keep-latest", "99999", BAD),
    ("keep-latest", "", BAD),
    ("keep-latest", "１", BAD),  # a fullwidth digit
    ("hold", "maybe", BAD),
    ("hold", "", BAD),
    ("hold", "y" * 256, BAD),
    ("expires-at", "yesterday", BAD),
    ("expires-at", "2026-02-30T00:00:00Z", BAD),
    ("expires-at", "z" * 256, BAD),
    ("expires-at", "9999-12-31T23:59:59Z", "not-expired"),  # valid, only very far
    ("replicate-to", "mars-north-1", RETIRE),  # unusable, but not a condition of the rule
    ("replicate-to", "r" * 256, RETIRE),
    ("family", "f" * 256, RETIRE),  # odd but valid
    ("family", "🦄 family ✨", RETIRE),
]


@pytest.fixture
def absurd_fleet(stack: LocalStack, moto_aws: LocalAws) -> Iterator[dict[str, tuple[str, str, str, str]]]:
    """One expired image per case, with a newer never-expiring sibling in the same family."""
    ec2 = moto_aws.ec2(EAST)
    cases: dict[str, tuple[str, str, str, str]] = {}
    for i, (key, value, expect) in enumerate(ABSURD):
        family = value if key == "family" else f"case{i}"
        image_id = create_image(
            ec2,
            f"case{i}-1",
            tags={f"{P}:{key}": value, **({} if key == "family" else {f"{P}:family": family})},
            created=datetime(2024, 1, 1, tzinfo=UTC),
        )
        create_image(
            ec2,
            f"case{i}-2",
            tags={f"{P}:retention": "forever", f"{P}:family": family},
            created=datetime(2024, 2, 1, tzinfo=UTC),
        )
        cases[image_id] = (key, value, expect, f"case{i}-1")
    yield cases


def test_absurd_tag_values_are_reported_by_tagging_and_never_retire_anything_by_mistake(
    stack: LocalStack,
    absurd_fleet: dict[str, tuple[str, str, str, str]],
    caplog: Any,
    capsys: Any,
    moto_aws: LocalAws,
    available_event: Event,
) -> None:
    ec2 = moto_aws.ec2(EAST)
    everything = ec2.describe_images(Owners=["self"])["Images"]
    for image in everything:
        stack.put_event(available_event(image["ImageId"]))
    stack.drain_queue("CopyQueue")

    # Tagging: each unusable value is named in P:error (short), the rest of the tags are written,
    # nothing is copied on a bad replicate-to, and no written value exceeds EC2's 256 characters.
    bad = 0
    for image_id, (key, _value, expect, name) in absurd_fleet.items():
        tags = tags_of(ec2, image_id)
        assert tags[f"{P}:managed"] == "true", name
        assert all(len(v) <= 256 for v in tags.values()), name
        if expect == BAD or key == "replicate-to":
            bad += 1
            assert key.split("-")[0] in tags[f"{P}:error"], (name, tags[f"{P}:error"])
            assert len(tags[f"{P}:error"]) <= 256
        else:
            assert f"{P}:error" not in tags, (name, tags.get(f"{P}:error"))
        if key == "retention":
            assert f"{P}:expires-at" not in tags, name  # a bad retention never gets an expiry
    assert not moto_aws.ec2(WEST).describe_images(Owners=["self"])["Images"]
    warned = [r for r in caplog.records if r.getMessage() == "image has unusable lifecycle tags"]
    assert len(warned) == bad
    assert emitted_metric(capsys.readouterr().out, "TagErrors") == bad

    # The sweep: an image is retired only when the tag under test is not a condition of the rule.
    report = stack.invoke("RetentionSweepFunction", {"source": "manual"})  # one invocation, every image reported
    assert report["status"] == "complete" and report["totals"]["errors"] == 0
    decided = {e["image_id"]: e for e in regions(report)[EAST]["images"]}
    registered = {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
    for image_id, (_key, _value, expect, name) in absurd_fleet.items():
        entry = decided[image_id]
        if expect == RETIRE:
            assert entry["outcome"] == "retired" and image_id not in registered, (name, entry)
        else:
            assert entry["decision"] == "keep" and entry["reason"] == expect, (name, entry)
            assert image_id in registered, name
    # Every never-expiring sibling is still there.
    siblings = {i["Name"] for i in ec2.describe_images(Owners=["self"])["Images"] if i["Name"].endswith("-2")}
    assert len(siblings) == len(ABSURD)


@pytest.mark.parametrize("value", ["maybe", "m" * 256, "🦄", ""])
def test_an_absurd_managed_value_is_neither_adopted_nor_swept(
    stack: LocalStack, value: str, caplog: Any, moto_aws: LocalAws, available_event: Event
) -> None:
    ec2 = moto_aws.ec2(EAST)
    image_id = create_image(ec2, "odd-1", tags={f"{P}:managed": value}, created=datetime(2024, 1, 1, tzinfo=UTC))
    create_image(ec2, "odd-2", created=datetime(2024, 2, 1, tzinfo=UTC))
    out = stack.invoke("ImageEventsFunction", available_event(image_id))
    assert out["status"] == "skipped" and out["reason"]
    assert tags_of(ec2, image_id) == {f"{P}:managed": value}
    report = stack.invoke("RetentionSweepFunction", {"source": "manual"})
    assert image_id not in {e["image_id"] for e in regions(report)[EAST]["images"]}
    assert image_id in {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
