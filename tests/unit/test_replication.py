"""Replication, the pure parts: which copies an image gets (plan_copies), the copy request on the
wire (CopyRequest), the P:copies record, the back-off and the error classification."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from ami_lifecycle.aws.sqs import CopyQueue
from ami_lifecycle.domain.model import Image
from ami_lifecycle.domain.replication import (
    CopyRequest,
    merge_copies,
    parse_copies,
    plan_copies,
    recorded_copies,
    render_copies,
)
from ami_lifecycle.domain.tags import MAX_TAG_VALUE, TagKeys
from ami_lifecycle.services.replicator import BACKOFF_CAP, backoff_seconds, is_permanent
from botocore.exceptions import ClientError

P = "ami-lifecycle"
KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/0b6f4b5e-1111-2222-3333-444455556666"


def image(tags: dict[str, str] | None = None, *, region: str = "us-east-1", encrypted: bool = False) -> Image:
    return Image(
        image_id="ami-0123456789abcdef0",
        region=region,
        name="web-2026-11-25-10",
        state="available",
        creation_date=datetime(2026, 11, 25, 10, tzinfo=UTC),
        description="web image",
        tags=dict(tags or {}),
        snapshot_ids=("snap-0123456789abcdef0",),
        encrypted=encrypted,
    )


LIFECYCLE = {
    f"{P}:managed": "true",
    f"{P}:retention": "90d",
    f"{P}:expires-at": "2027-02-23T10:00:00Z",
    f"{P}:family": "web",
    f"{P}:keep-latest": "1",
}


# ------------------------------------------------------------------ plan_copies


def test_plan_copies_to_every_replica_region_with_lineage_tags(make_settings: Any) -> None:
    settings = make_settings(replica_regions=("us-west-2", "eu-west-1"))
    plan = plan_copies(image(), settings, LIFECYCLE)
    assert plan.error is None and plan.skipped == ()
    assert [r.target_region for r in plan.requests] == ["us-west-2", "eu-west-1"]
    for req in plan.requests:
        assert req.source_image_id == "ami-0123456789abcdef0" and req.source_region == "us-east-1"
        assert req.name == "web-2026-11-25-10" and req.description == "web image"
        assert req.tags == {
            **LIFECYCLE,
            f"{P}:source-image": "ami-0123456789abcdef0",
            f"{P}:source-region": "us-east-1",
        }
        assert req.encrypted is False and req.kms_key_id is None


def test_plan_copies_skips_the_images_own_region(make_settings: Any) -> None:
    settings = make_settings(replica_regions=("us-east-1", "us-west-2"))
    plan = plan_copies(image(), settings, LIFECYCLE)
    assert [r.target_region for r in plan.requests] == ["us-west-2"]
    assert plan.skipped == ("us-east-1: the image's own region",)


def test_a_copy_is_never_replicated_again(make_settings: Any) -> None:
    settings = make_settings(replica_regions=("us-west-2", "eu-west-1"))
    copy = image({**LIFECYCLE, f"{P}:source-image": "ami-0fedcba9876543210", f"{P}:source-region": "us-east-2"})
    plan = plan_copies(copy, settings, LIFECYCLE)
    assert plan.requests == () and "copies are not replicated" in plan.skipped[0]


def test_replicate_to_overrides_replica_regions_and_none_disables(make_settings: Any) -> None:
    settings = make_settings(replica_regions=("us-west-2",))
    plan = plan_copies(image({f"{P}:replicate-to": "eu-west-1, ap-south-1"}), settings, LIFECYCLE)
    assert [r.target_region for r in plan.requests] == ["eu-west-1", "ap-south-1"]
    for value in ("none", "NONE", ""):
        assert plan_copies(image({f"{P}:replicate-to": value}), settings, LIFECYCLE).requests == ()


def test_replicate_to_is_not_copied_onto_the_copies(make_settings: Any) -> None:
    settings = make_settings()
    lifecycle = {**LIFECYCLE, f"{P}:replicate-to": "us-west-2", f"{P}:error": "x", f"{P}:copies": "a=b"}
    plan = plan_copies(image({f"{P}:replicate-to": "us-west-2"}), settings, lifecycle)
    (req,) = plan.requests
    assert not {f"{P}:replicate-to", f"{P}:error", f"{P}:copies"} & set(req.tags)


def test_a_bad_region_in_replicate_to_is_an_error_and_no_copy(make_settings: Any) -> None:
    settings = make_settings(replica_regions=("us-west-2",))
    plan = plan_copies(image({f"{P}:replicate-to": "us-west-2,mars-north-1x"}), settings, LIFECYCLE)
    assert plan.requests == () and plan.error is not None
    assert plan.error.startswith("replicate-to:") and "mars-north-1x" in plan.error
    known = frozenset({"us-east-1", "us-west-2"})
    plan = plan_copies(image({f"{P}:replicate-to": "eu-west-9"}), settings, LIFECYCLE, known)
    assert plan.requests == () and plan.error is not None and "eu-west-9" in plan.error


def test_replica_kms_keys_encrypt_the_copies_of_their_region(make_settings: Any) -> None:
    settings = make_settings(replica_regions=("us-west-2", "eu-west-1"), replica_kms_keys={"eu-west-1": KEY_ARN})
    west, eu = plan_copies(image(), settings, LIFECYCLE).requests
    assert (west.encrypted, west.kms_key_id) == (False, None)
    assert (eu.encrypted, eu.kms_key_id) == (True, KEY_ARN)


def test_an_encrypted_source_without_a_key_for_the_region_is_copied_with_the_default_key(
    make_settings: Any,
) -> None:
    settings = make_settings(replica_regions=("us-west-2", "eu-west-1"), replica_kms_keys={"eu-west-1": KEY_ARN})
    west, eu = plan_copies(image(encrypted=True), settings, LIFECYCLE).requests
    assert (west.encrypted, west.kms_key_id) == (True, None)  # EC2: the region's default EBS key
    assert (eu.encrypted, eu.kms_key_id) == (True, KEY_ARN)


def test_regions_with_a_recorded_copy_are_not_requested_again_but_failed_ones_are(make_settings: Any) -> None:
    settings = make_settings(replica_regions=("us-west-2", "eu-west-1", "ap-south-1"))
    src = image({f"{P}:copies": "us-west-2=ami-0aaaaaaaaaaaaaaa1,eu-west-1=failed"})
    plan = plan_copies(src, settings, LIFECYCLE)
    assert [r.target_region for r in plan.requests] == ["eu-west-1", "ap-south-1"]
    assert plan.skipped == ("us-west-2: copy ami-0aaaaaaaaaaaaaaa1 exists",)


# ------------------------------------------------------------------ CopyRequest


def request(**overrides: Any) -> CopyRequest:
    data: dict[str, Any] = {
        "source_image_id": "ami-0123456789abcdef0",
        "source_region": "us-east-1",
        "target_region": "us-west-2",
        "name": "web-1",
        "tags": {f"{P}:managed": "true"},
    }
    data.update(overrides)
    return CopyRequest(**data)


def test_copy_request_round_trips_through_json() -> None:
    req = request(description="d", encrypted=True, kms_key_id=KEY_ARN)
    assert CopyRequest.from_json(req.to_json()) == req
    assert CopyRequest.from_json(request().to_json()) == request()


def test_a_copy_request_names_its_account_and_without_one_is_the_hubs() -> None:
    spoke = request(account="222222222222")
    assert json.loads(spoke.to_json())["account"] == "222222222222"
    assert CopyRequest.from_json(spoke.to_json()) == spoke
    # The hub's: the body is the one queued before hub & spokes, and such bodies still parse.
    assert "account" not in json.loads(request().to_json())
    assert CopyRequest.from_json(request().to_json()).account == ""
    # EC2 scopes a ClientToken to the account: the token needs no account.
    assert spoke.client_token == request().client_token


def test_plan_copies_puts_the_images_account_in_every_request(make_settings: Any) -> None:
    settings = make_settings(replica_regions=("us-west-2", "eu-west-1"))
    spoke = plan_copies(image(), settings, LIFECYCLE, account="222222222222")
    assert [r.account for r in spoke.requests] == ["222222222222", "222222222222"]
    assert [r.account for r in plan_copies(image(), settings, LIFECYCLE).requests] == ["", ""]
    (west, _eu) = spoke.requests
    assert west.tags[f"{P}:source-image"] == "ami-0123456789abcdef0" and west.tags[f"{P}:source-region"] == "us-east-1"


def test_the_sample_sqs_event_carries_a_valid_copy_request(event: Any) -> None:
    (record,) = event("copy_request_sqs.json")["Records"]
    req = CopyRequest.from_json(record["body"])
    assert (req.source_region, req.target_region) == ("us-east-1", "us-west-2")
    assert req.tags[f"{P}:source-image"] == req.source_image_id


def test_client_token_is_deterministic_short_and_distinct_per_copy() -> None:
    token = request().client_token
    assert token == request().client_token == request(name="other", tags={}).client_token
    assert len(token) <= 64 and token.isascii()
    others = {
        request(target_region="eu-west-1").client_token,
        request(source_region="us-east-2").client_token,
        request(source_image_id="ami-0fedcba9876543210").client_token,
        request(encrypted=True).client_token,
        request(encrypted=True, kms_key_id=KEY_ARN).client_token,
    }
    assert token not in others and len(others) == 5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "Expecting value"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({**json.loads(request().to_json()), "extra": 1}), "unknown keys: extra"),
        (json.dumps({"source_image_id": "ami-0123456789abcdef0"}), "lacks keys"),
        (json.dumps({**json.loads(request().to_json()), "source_image_id": "i-123"}), "not an AMI id"),
        (json.dumps({**json.loads(request().to_json()), "target_region": "moon"}), "not an AWS region"),
        (json.dumps({**json.loads(request().to_json()), "name": 7}), "name is not a string"),
        (json.dumps({**json.loads(request().to_json()), "name": " "}), "name is empty"),
        (json.dumps({**json.loads(request().to_json()), "tags": ["a"]}), "tags"),
        (json.dumps({**json.loads(request().to_json()), "tags": {"k": "v" * 257}}), "tags"),
        (json.dumps({**json.loads(request().to_json()), "encrypted": "yes"}), "encrypted"),
        (json.dumps({**json.loads(request().to_json()), "kms_key_id": KEY_ARN}), "encrypted is false"),
        (json.dumps({**json.loads(request().to_json()), "account": "2222"}), "not a 12-digit AWS account id"),
        (json.dumps({**json.loads(request().to_json()), "account": 222222222222}), "account is not a string"),
        (json.dumps({**json.loads(request().to_json()), "account": "22222222222a"}), "12-digit"),
    ],
)
def test_malformed_copy_requests_are_refused_with_a_clear_message(body: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CopyRequest.from_json(body)


def test_send_copy_requests_batches_by_ten_and_reports_failures() -> None:
    sent: list[list[dict[str, str]]] = []

    class FakeSqs:
        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:  # noqa: N803
            sent.append(Entries)
            if len(sent) == 2:
                return {"Failed": [{"Id": "1", "Code": "InternalError", "Message": "boom"}]}
            return {"Successful": []}

    regions = [f"eu-west-{i}" for i in range(1, 13)]
    failures = CopyQueue(FakeSqs(), "url").send([request(target_region=r) for r in regions])
    assert [len(b) for b in sent] == [10, 2]
    assert [(r.target_region, error) for r, error in failures] == [("eu-west-12", "InternalError: boom")]
    assert CopyRequest.from_json(sent[0][0]["MessageBody"]).target_region == "eu-west-1"


# ------------------------------------------------------------------ P:copies


def test_parse_copies_reads_the_record_and_ignores_junk() -> None:
    assert parse_copies("us-west-2=ami-0abc, eu-west-1=failed,,junk,=x,y=") == {
        "us-west-2": "ami-0abc",
        "eu-west-1": "failed",
    }
    assert parse_copies("") == {}
    src = image({f"{P}:copies": "us-west-2=ami-0abc,eu-west-1=failed"})
    assert recorded_copies(src, TagKeys()) == {
        "us-west-2": "ami-0abc",
        "eu-west-1": "failed",
    }


def test_merge_copies_keeps_other_regions_and_replaces_the_updated_one() -> None:
    value, dropped = merge_copies("us-west-2=ami-0abc,eu-west-1=failed", {"eu-west-1": "ami-0def"})
    assert value == "us-west-2=ami-0abc,eu-west-1=ami-0def" and dropped == []
    value, _ = merge_copies(value, {"ap-south-1": "failed"})
    assert value == "us-west-2=ami-0abc,eu-west-1=ami-0def,ap-south-1=failed"
    assert merge_copies("", {"us-west-2": "ami-0abc"}) == ("us-west-2=ami-0abc", [])
    # Recording what is already recorded changes nothing (no reordering, so no tag write).
    assert merge_copies("us-west-2=ami-0abc,eu-west-1=failed", {"us-west-2": "ami-0abc"})[0] == (
        "us-west-2=ami-0abc,eu-west-1=failed"
    )


def test_the_record_stays_within_256_characters_dropping_the_oldest_entries() -> None:
    regions = [f"ap-southeast-{i}" for i in range(1, 10)]
    value = ""
    for region in regions:
        value, dropped = merge_copies(value, {region: "ami-0123456789abcdef0"})
        assert len(value) <= MAX_TAG_VALUE
    record = parse_copies(value)
    assert regions[-1] in record  # the newest entry is always kept
    assert regions[0] not in record  # the oldest went first
    assert list(record) == regions[-len(record) :]
    assert len(value) + len(",ap-southeast-1=ami-0123456789abcdef0") > MAX_TAG_VALUE


def test_render_copies_never_drops_the_entries_it_must_keep() -> None:
    record = {f"r{i}": "x" * 20 for i in range(20)}
    value, dropped = render_copies(record, keep=["r0", "r1"], limit=60)
    assert len(value) <= 60 and value.startswith("r0=") and "r1=" in value
    assert "r0" not in dropped and "r1" not in dropped and len(dropped) == 18


# ------------------------------------------------------------------ back-off and errors


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    assert [backoff_seconds(n, lambda: 1.0) for n in (1, 2, 3, 4, 5, 6, 7, 30)] == [
        30,
        60,
        120,
        240,
        480,
        900,
        900,
        900,
    ]
    assert [backoff_seconds(n, lambda: 0.0) for n in (1, 2, 6)] == [15, 30, 450]
    assert backoff_seconds(0, lambda: 1.0) == 30 and backoff_seconds(10**6, lambda: 1.0) == BACKOFF_CAP
    import random

    rng = random.Random(7)
    values = {backoff_seconds(3, rng.random) for _ in range(50)}
    assert min(values) >= 60 and max(values) <= 120 and len(values) > 10


def client_error(code: str, message: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "CopyImage")


@pytest.mark.parametrize(
    ("code", "message", "permanent"),
    [
        ("ResourceLimitExceeded", "too many copies", False),
        ("RequestLimitExceeded", "Request limit exceeded.", False),
        ("InternalError", "", False),
        ("InvalidAMIName.Duplicate", "AMI name web-1 is already in use", True),
        ("UnauthorizedOperation", "", True),
        ("InvalidParameterValue", "Invalid KMS key", True),
        ("KMSKeyNotAccessibleFault", "", True),
        ("SomethingNew", "The key arn:aws:kms:... (KMS) is disabled", True),
        ("SomethingNew", "try again", False),
    ],
)
def test_errors_that_retrying_cannot_fix_are_permanent(code: str, message: str, permanent: bool) -> None:
    assert is_permanent(client_error(code, message)) is permanent
