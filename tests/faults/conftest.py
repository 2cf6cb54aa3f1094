"""The fault-injection suite's world: the whole flow, wired as template.yaml wires it, on moto.

A `System` is one run on a fresh embedded AWS: a fleet of images in the home region, the stack
deployed by the local runner (`LocalStack`), and the flow a day of production goes through: an
`available` event per image (tagging, copy requests), the copy queue drained into the replicator,
then the scheduled sweep. `System.state()` is the account's final state, normalised so that two
runs compare equal when they end the same (moto's ids are random: they are replaced by the
names of the images they belong to).

The baseline is the same flow on an identical fleet without faults; each fault test compares its
final state with it.
"""

from __future__ import annotations

import contextlib
import json
import re
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import botocore.endpoint
import pytest
from ami_lifecycle.aws.clients import RETRY_CONFIG
from ami_lifecycle_localaws import motoext
from ami_lifecycle_localaws.fleet import create_image, snapshot_ids
from ami_lifecycle_localaws.stack import LocalStack
from botocore.retries.bucket import TokenBucket

from tests.conftest import ACCOUNT_ID, LocalAws

P = "ami-lifecycle"
EAST, WEST = "us-east-1", "us-west-2"
REGIONS = (EAST, WEST)
PARAMETERS = {"SweepRegions": f"{EAST},{WEST}"}
# Every EC2 action the flow makes (the fault tests throttle these).
EC2_ACTIONS = {
    "DescribeImages",
    "DescribeSnapshots",
    "CreateTags",
    "DeleteTags",
    "EnableImageDeprecation",
    "CopyImage",
    "DeregisterImage",
    "DeleteSnapshot",
    "DescribeImageReferences",
    "DescribeInstances",
    "DescribeLaunchTemplates",
    "DescribeLaunchTemplateVersions",
}
_ID = re.compile(r"\b(?:ami|snap|lt|i)-[0-9a-f]{8,17}\b")
Event = Callable[..., dict[str, Any]]  # the `available_event` fixture (tests/conftest.py)


def old(month: int) -> datetime:
    """Creation dates far in the past, fixed: expiries do not depend on when the test runs."""
    return datetime(2024, month, 1, 9, 0, tzinfo=UTC)


# name: (creation date, tags). Every family has a newer never-expiring image, so keep-latest (1)
# protects that one and the older expired image is the one the rule decides on.
FLEET: dict[str, tuple[datetime, dict[str, str]]] = {
    "web-1": (old(1), {}),  # expired: retired
    "web-2": (old(2), {f"{P}:retention": "forever", f"{P}:replicate-to": WEST}),  # copied to us-west-2
    "api-1": (old(1), {}),  # expired, but a launch template uses it: kept (in-use)
    "api-2": (old(2), {f"{P}:retention": "forever"}),
    "db-1": (old(1), {f"{P}:hold": "true"}),  # expired, held: kept
    "db-2": (old(2), {f"{P}:retention": "forever"}),
    "app-1": (old(1), {}),  # expired: retired, but its snapshot is app-2's too: kept
    "app-2": (old(3), {f"{P}:retention": "forever"}),  # registered on app-1's snapshot
    "ib-1": (old(1), {"CreatedBy": "EC2 Image Builder"}),  # another manager's: never touched
    "ops-1": (old(1), {f"{P}:managed": "false"}),  # opted out: never touched
}
RETIRED = {f"{EAST}:web-1", f"{EAST}:app-1"}


@dataclass
class System:
    """One run of the whole flow on a fresh moto (see the module docstring)."""

    stack: LocalStack
    ids: dict[str, str]  # image name -> id, home region
    local: LocalAws  # the clients (one boto3 session for the run)
    available_event: Event
    labels: dict[str, str] = field(default_factory=dict)  # any id seen -> a stable label
    sleeps: list[float] = field(default_factory=list)  # botocore's retry back-off, not slept
    rate_limit_waits: list[float] = field(default_factory=list)  # adaptive mode's rate limiting, not waited

    def ec2(self, region: str = EAST) -> Any:
        return self.local.ec2(region)

    # -------------------------------------------------------------- the flow

    def deliver(self, events: list[dict[str, Any]]) -> list[Any]:
        results = []
        for e in events:
            results.extend(i.result for i in self.stack.put_event(e))
        return results

    def tag_everything(self) -> list[Any]:
        return self.deliver([self.available_event(self.ids[name]) for name in FLEET])

    def replicate(self) -> list[Any]:
        return [i.result for i in self.stack.drain_queue("CopyQueue")]

    def sweep(self) -> Any:
        # The whole sweep in one invocation (the manual payload), for its full per-image report; the
        # scheduled path through SweepStateMachine is tests/e2e/test_sweep_execution.py's.
        return self.stack.invoke("RetentionSweepFunction", {"source": "manual"})

    def day(self) -> dict[str, Any]:
        """Events, copies, sweep: what the stack does with a new fleet."""
        return {"events": self.tag_everything(), "copies": self.replicate(), "sweep": self.sweep()}

    def time_passes(self) -> None:
        """Every message deferred or failed on the copy queue becomes visible again."""
        sqs = self.local.client("sqs", EAST)
        for invocation in self.stack.invocations:
            if invocation.function != "ReplicatorFunction" or not isinstance(invocation.result, dict):
                continue
            failed = {f["itemIdentifier"] for f in invocation.result.get("batchItemFailures", [])}
            for record in invocation.event["Records"]:
                if record["messageId"] in failed:
                    with contextlib.suppress(Exception):  # already deleted or re-received
                        sqs.change_message_visibility(
                            QueueUrl=self.stack.queue_url("CopyQueue"),
                            ReceiptHandle=record["receiptHandle"],
                            VisibilityTimeout=0,
                        )

    # -------------------------------------------------------------- the outcome

    def label(self, value: str) -> str:
        return _ID.sub(lambda m: self.labels.get(m.group(0), "<unknown>"), value)

    def state(self) -> dict[str, Any]:
        """Images (state, tags, deprecation, snapshots), snapshots (tags) and queue depths, per
        region, with every id replaced by the name of what it belongs to."""
        out: dict[str, Any] = {}
        listed = {
            region: self.ec2(region).describe_images(Owners=["self"], IncludeDisabled=True, IncludeDeprecated=True)[
                "Images"
            ]
            for region in REGIONS
        }
        for region, images in listed.items():
            for image in images:
                self.labels.setdefault(image["ImageId"], f"{region}:{image['Name']}")
                for b in image.get("BlockDeviceMappings", []):
                    if "Ebs" in b:
                        self.labels.setdefault(b["Ebs"]["SnapshotId"], f"snapshot of {region}:{image['Name']}")
        for region, images in listed.items():
            ec2 = self.ec2(region)
            for image in images:
                out[f"{region}:{image['Name']}"] = {
                    "state": image["State"],
                    "tags": {t["Key"]: self.label(t["Value"]) for t in image.get("Tags", [])},
                    "deprecation": image.get("DeprecationTime"),
                    "snapshots": sorted(self.label(b["Ebs"]["SnapshotId"]) for b in image["BlockDeviceMappings"]),
                }
            for snap in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]:
                name = self.labels.get(
                    snap["SnapshotId"], "<unknown snapshot " + self.label(snap.get("Description", ""))
                )
                out[f"{region}:{name}"] = {t["Key"]: self.label(t["Value"]) for t in snap.get("Tags", [])}
        for queue in ("CopyQueue", "CopyDeadLetterQueue"):
            out[queue] = self.depth(queue)
        return out

    def depth(self, queue: str) -> int:
        """Messages on a queue of the stack, visible or not."""
        attrs = self.local.client("sqs", EAST).get_queue_attributes(
            QueueUrl=self.stack.queue_url(queue),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def tags(self, name: str, region: str = EAST) -> dict[str, str]:
        (image,) = self.ec2(region).describe_images(ImageIds=[self.ids[name]])["Images"]
        return {t["Key"]: self.label(t["Value"]) for t in image.get("Tags", [])}


def seed(ec2: Any, register_on_snapshot: Callable[..., str]) -> dict[str, str]:
    """The fleet, in the home region, plus a launch template that uses api-1."""
    ids: dict[str, str] = {}
    for name, (created, tags) in FLEET.items():
        if name == "app-2":
            (shared,) = snapshot_ids(ec2, ids["app-1"])
            image_id = register_on_snapshot(ec2, name, shared, tags, created=created)
        else:
            image_id = create_image(ec2, name, tags=tags, created=created)
        ids[name] = image_id
    ec2.create_launch_template(LaunchTemplateName="api", LaunchTemplateData={"ImageId": ids["api-1"]})
    return ids


FreshSystem = Callable[..., contextlib.AbstractContextManager[System]]


@pytest.fixture
def fresh_system(
    monkeypatch: pytest.MonkeyPatch,
    local_aws: LocalAws,
    available_event: Event,
    register_on_snapshot: Callable[..., str],
) -> FreshSystem:
    """`with fresh_system(config=RETRY_CONFIG) as system`: a fresh moto (with our extension), the
    fleet, and the stack. The functions use the production retry configuration (adaptive, 10
    attempts) unless told; botocore's back-off sleeps are recorded instead of slept, and so are the
    waits of adaptive mode's client-side rate limiter (the token bucket), so the suite stays fast."""

    @contextlib.contextmanager
    def fresh(config: Any = RETRY_CONFIG) -> Iterator[System]:
        from ami_lifecycle import runtime
        from moto import mock_aws

        motoext.install()
        motoext.clear_faults()
        sleeps: list[float] = []
        monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=sleeps.append))
        waits: list[float] = []

        def acquire_without_waiting(bucket: TokenBucket, amount: float, block: bool) -> bool:
            """Adaptive mode's client-side rate limiter: the wait is recorded, then granted."""
            bucket._refill()
            if amount > bucket._current_capacity:
                waits.append(bucket._sleep_amount(amount))
                bucket._current_capacity = amount
            bucket._current_capacity -= amount
            return True

        monkeypatch.setattr(TokenBucket, "_acquire", acquire_without_waiting)
        with mock_aws():
            aws = local_aws.aws(config)
            monkeypatch.setattr(runtime, "aws", lambda: aws)
            ids = seed(local_aws.ec2(EAST), register_on_snapshot)
            stack = LocalStack(region=EAST, parameters=PARAMETERS, session=local_aws.session, account_id=ACCOUNT_ID)
            system = System(stack, ids, local_aws, available_event, sleeps=sleeps, rate_limit_waits=waits)
            for name, image_id in ids.items():
                system.labels[image_id] = f"{EAST}:{name}"
                for sid in snapshot_ids(system.ec2(), image_id):
                    system.labels.setdefault(sid, f"snapshot of {EAST}:{name}")
            motoext.reset_calls()
            try:
                yield system
            finally:
                motoext.clear_faults()

    return fresh


_BASELINE: dict[str, Any] = {}


@pytest.fixture
def baseline(fresh_system: FreshSystem) -> dict[str, Any]:
    """The final state of a fault-free day on the fleet (computed once per test process)."""
    if not _BASELINE:
        with fresh_system() as system:
            system.day()
            _BASELINE.update(system.state())
            _BASELINE["_calls"] = sum(motoext.calls().values())
    state = dict(_BASELINE)
    state.pop("_calls")
    return state


@pytest.fixture
def system(fresh_system: FreshSystem, baseline: dict[str, Any]) -> Iterator[System]:
    """A fresh system for the test (the baseline is computed first, in its own moto)."""
    with fresh_system() as s:
        yield s


@pytest.fixture
def baseline_calls(baseline: dict[str, Any]) -> int:
    """How many API calls the fault-free day made."""
    return int(_BASELINE["_calls"])


# ------------------------------------------------------------------ what the operator sees


def emf(output: str) -> list[dict[str, Any]]:
    """The CloudWatch EMF documents Powertools printed (one JSON object per line)."""
    docs = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("{") and '"_aws"' in line:
            docs.append(json.loads(line))
    return docs


def metric_total(output: str, name: str) -> float:
    total = 0.0
    for doc in emf(output):
        value = doc.get(name)
        if value is None:
            continue
        total += sum(value) if isinstance(value, list) else float(value)
    return total


def logged(records: list[Any], message: str, level: str | None = None) -> list[Any]:
    return [r for r in records if r.getMessage() == message and (level is None or r.levelname == level)]


def assert_nothing_wrong_deleted(system: System, baseline: Mapping[str, Any], region: str = EAST) -> None:
    """Every image the fault-free run keeps in `region`, and each of their snapshots, still exists."""
    ec2 = system.ec2(region)
    registered = {i["Name"] for i in ec2.describe_images(Owners=["self"], IncludeDisabled=True)["Images"]}
    kept = {k.split(":", 1)[1] for k, v in baseline.items() if k.startswith(f"{region}:") and "state" in v}
    assert kept <= registered, f"deleted: {sorted(kept - registered)}"
    snapshots = {system.label(s["SnapshotId"]) for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    needed = {s for k, v in baseline.items() if k.startswith(f"{region}:") and "state" in v for s in v["snapshots"]}
    assert needed <= snapshots, f"snapshots deleted: {sorted(needed - snapshots)}"


def assert_same_state(actual: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """Equal, with a readable difference when not."""
    if dict(actual) != dict(expected):
        diff = {
            key: {"expected": expected.get(key, "<absent>"), "actual": actual.get(key, "<absent>")}
            for key in sorted(set(actual) | set(expected))
            if actual.get(key) != expected.get(key)
        }
        raise AssertionError("final state differs from the fault-free run:\n" + json.dumps(diff, indent=1))


Wrap = Callable[..., Any]
