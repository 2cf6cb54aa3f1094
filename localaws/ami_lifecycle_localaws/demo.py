"""`ami-lifecycle demo`: the whole flow, on an embedded local AWS, in one command.

1. Start a moto server on 127.0.0.1 (a free port) with our moto extension, point boto3 at it
   (`server.EmbeddedAws`), and deploy the hub and its spokes onto it (`stack.LocalStack`):
   template.yaml in the hub account (moto's default, 123456789012) in us-east-1, copying to
   us-west-2 and covering us-east-1, us-west-2 and eu-west-1 in four managed accounts; spoke.yaml in
   every covered (account, region) of the hub, payments and analytics accounts (its rules forward
   AMI events to the hub's bus; its hub-region instance creates the spoke role). The sandbox account
   is managed too, but only its forwarding was deployed: its role is missing.
2. Seed a realistic fleet that existed before the stack: in the hub, families with several
   generations and ages, a held image, images used by a running instance and by an old
   launch-template version, an image protected from deregistration, images of AWS Backup, DLM and
   Image Builder, an opted-out image, a bad retention tag, a snapshot shared by two images, a
   user-set expiry, and a golden image shared with the analytics account, which runs an instance
   from it; in payments and analytics, images of their own, in their own regions.
3. New images are announced (`EC2 AMI State Change` / `available`) in their own account and
   region, and travel as the templates wire them (the hub region's default bus, or a spoke's rule to
   the hub's bus) to ImageEventsFunction, which tags them in their account and queues their copies;
   the copy queue is drained into ReplicatorFunction (copies stay in their account); the copies'
   own `available` events travel the same way.
4. BackfillFunction: a dry run of every action (the plan), then `tag` + `replicate` for real
   (the sample events `events/backfill_plan.json` and `events/backfill_apply.json`); copies again.
5. The sweep, as its schedule runs it (SweepStateMachine's execution, RetentionSweepFunction per pair):
   retires what expired, in every pair; keeps the shared golden image the analytics account still
   runs (`shared-in-use`); reports the sandbox's pairs failed (its role cannot be assumed) while the
   others complete.
   A Recycle Bin retention rule for AMIs and one for EBS snapshots (Region-level, 7 days) was created
   in the hub's us-east-1 before it: what it retires there goes to the bin, its report entries say
   until when it can be restored (`restorable_until`).
6. Staged and reversible retirement: a second hub stack on the same local AWS (hub account, us-east-1
   only, no spokes, `DisableBeforeDeregister=7d`), an expired unused image seeded after the main
   sweep, and its RetentionSweepFunction invoked manually: the image is disabled first, not
   deregistered. Then `services.restore.restore` re-enables it, and restores one image the main sweep
   retired from the Recycle Bin with its snapshots; both are held (`P:hold=true`).
7. Print what happened, account by account and region by region (or `--json`), and check that
   the sweep retired exactly what the backfill's plan said it would, and that only the sandbox failed.

The server is stopped and the environment restored whatever happens.
"""

from __future__ import annotations

import contextlib
import copy as _copy
import functools
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

# The CLI's leaf rendering module (never its `main`, which imports this module for `demo`).
from ami_lifecycle.domain.report import pairs_of
from ami_lifecycle_cli.render import (
    age,
    copies_requested,
    deprecation_at,
    happened,
    quiet_functions,
    snapshot_gib_freed,
    table,
    tags_written,
)

from .server import ACCOUNT_ID, EmbeddedAws

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
HOME = "us-east-1"
REPLICA = "us-west-2"
LEGACY = "eu-west-1"
REGIONS = (HOME, REPLICA, LEGACY)
HUB = ACCOUNT_ID
PAYMENTS = "222222222222"
ANALYTICS = "333333333333"
SANDBOX = "444444444444"  # managed, but its spoke role was never deployed
ACCOUNTS = {HUB: "hub", PAYMENTS: "payments", ANALYTICS: "analytics", SANDBOX: "sandbox"}
PARAMETERS = {
    "ReplicaRegions": REPLICA,
    "SweepRegions": ",".join(REGIONS),
    "DefaultRetention": "90d",
    "DefaultKeepLatest": "1",
    "ManagedAccounts": ",".join((PAYMENTS, ANALYTICS, SANDBOX)),
}
# Where spoke.yaml is deployed: every covered pair, but the sandbox's hub-region stack instance
# (the one that creates the spoke role) is missing.
SPOKES = tuple((a, r) for a in ACCOUNTS for r in REGIONS if not (a == SANDBOX and r == HOME))
# The last act (staged and reversible retirement): a second hub stack in the same local AWS, for the hub
# account and its region only, that disables an image before it deregisters it.
STAGED_STACK = "ami-lifecycle-staged"
STAGED_PARAMETERS = {
    "SweepRegions": HOME,
    "DefaultRetention": PARAMETERS["DefaultRetention"],
    "DefaultKeepLatest": PARAMETERS["DefaultKeepLatest"],
    "DisableBeforeDeregister": "7d",
}
RECYCLE_BIN_DAYS = 7
# An expired image nobody uses, seeded for the staged stack once the main sweep has run.
STAGED_SEED_AGE_DAYS = 400
# The image the main sweep retires in the hub's us-east-1 (into the Recycle Bin) that is restored.
RESTORED_FROM_BIN = "web-2026-04-10"
P = "ami-lifecycle"
Pair = tuple[str, str]  # (account, region)


# ---------------------------------------------------------------- the fleet


@dataclass(frozen=True)
class Seed:
    region: str
    name: str
    age_days: float
    tags: Mapping[str, str] = field(default_factory=dict)
    note: str = ""
    account: str = HUB


# Images that existed before the stack was deployed (no lifecycle tags unless a user set some).
FLEET: tuple[Seed, ...] = (
    Seed(HOME, "web-2026-04-10", 229),
    Seed(HOME, "web-2026-06-20", 158),
    Seed(HOME, "web-2026-09-05", 81),
    Seed(HOME, "api-v1.0.0", 300),
    Seed(HOME, "api-v1.1.0", 210, note="a running instance uses it"),
    Seed(HOME, "api-v1.2.0", 180, note="version 1 of launch template api-lt uses it"),
    Seed(HOME, "api-v1.3.0", 150, note="deregistration protection on"),
    Seed(HOME, "api-v1.4.0", 120, note="version 2 of launch template api-lt uses it"),
    Seed(HOME, "batch-2026.02", 280, {f"{P}:hold": "true"}, "held (incident)"),
    Seed(HOME, "db-2026-01-15", 314, note="shares its snapshot with db-2026-05-01"),
    Seed(HOME, "db-2026-05-01", 208, note="registered on db-2026-01-15's snapshot"),
    Seed(HOME, "base-ubuntu-22.04-20250601", 542, {f"{P}:retention": "forever"}, "retention forever"),
    Seed(HOME, "golden-legacy", 400, {f"{P}:managed": "false"}, "opted out"),
    Seed(HOME, "web-backup-2026-03", 250, {"aws:backup:source-resource": "arn:aws:ec2:...:instance/i-0web"}),
    Seed(HOME, "data-vol-2026-05", 200, {"aws:dlm:lifecycle-policy-id": "policy-0123456789abcdef0"}),
    Seed(HOME, "ib-nginx-1.2.3", 180, {"CreatedBy": "EC2 Image Builder"}),
    Seed(HOME, "tools-2026-03-01", 269, {f"{P}:retention": "3 months"}, "unparseable retention"),
    Seed(LEGACY, "app-build-101", 200),
    Seed(LEGACY, "app-build-102", 130),
    Seed(LEGACY, "app-build-103", 20),
    Seed(LEGACY, "report-v3", 60, note="user set an expiry 10 days ago"),
    Seed(LEGACY, "report-v4", 10),
    Seed(HOME, "golden-base-2026-03-01", 270, note="shared with analytics, which runs an instance from it"),
    Seed(HOME, "golden-base-2026-10-01", 55),
    # The other accounts' own images, in their own regions.
    Seed(LEGACY, "pay-api-2026-03-02", 270, account=PAYMENTS),
    Seed(LEGACY, "pay-api-2026-06-01", 180, account=PAYMENTS),
    Seed(HOME, "etl-2026-02-01", 300, account=ANALYTICS),
    Seed(HOME, "etl-2026-10-20", 36, account=ANALYTICS),
    Seed(LEGACY, "sandbox-2026-01-05", 330, account=SANDBOX, note="its account's role is missing: never touched"),
)
# Images built today: announced by EC2 AMI State Change events, in their own account and region.
NEW: tuple[Seed, ...] = (
    Seed(HOME, "web-2026-11-25", 0.02),
    Seed(HOME, "api-v1.5.0", 0.01),
    Seed(LEGACY, "app-build-104", 0.01),
    Seed(LEGACY, "pay-api-2026-11-25", 0.01, account=PAYMENTS),
    Seed(REPLICA, "pay-worker-2026-11-25", 0.01, account=PAYMENTS),
    Seed(LEGACY, "etl-2026-11-25", 0.01, account=ANALYTICS),
)


@dataclass
class Fleet:
    images: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # name -> (account, region, id)
    names: dict[str, str] = field(default_factory=dict)  # image id -> name
    notes: dict[str, str] = field(default_factory=dict)  # image id -> what is special about it

    def add(self, seed: Seed, image_id: str) -> None:
        self.images[seed.name] = (seed.account, seed.region, image_id)
        self.names[image_id] = seed.name
        if seed.note:
            self.notes[image_id] = seed.note

    def id(self, name: str) -> str:
        return self.images[name][2]


def seed_fleet(stack: Any, now: datetime) -> Fleet:
    """Create FLEET on the local AWS, each image in its account (moto in this process: CreationDate
    is backdated in its backend)."""
    from . import motoext
    from .fleet import backdate, create_image, snapshot_ids

    fleet = Fleet()
    for seed in FLEET:
        ec2 = stack.client("ec2", seed.account, seed.region)
        created = now - timedelta(days=seed.age_days)
        if seed.name == "db-2026-05-01":
            # Registered on the older image's snapshot: that snapshot must survive the older one.
            shared = snapshot_ids(ec2, fleet.id("db-2026-01-15"))[0]
            image_id = str(
                ec2.register_image(
                    Name=seed.name,
                    Description=f"{seed.name} image",
                    RootDeviceName="/dev/xvda",
                    BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": shared}}],
                )["ImageId"]
            )
            backdate(seed.region, image_id, created)
        else:
            image_id = create_image(ec2, seed.name, tags=dict(seed.tags), created=created, account_id=seed.account)
        fleet.add(seed, image_id)

    home = stack.client("ec2", HUB, HOME)
    home.run_instances(ImageId=fleet.id("api-v1.1.0"), MinCount=1, MaxCount=1, InstanceType="t3.micro")
    home.create_launch_template(LaunchTemplateName="api-lt", LaunchTemplateData={"ImageId": fleet.id("api-v1.2.0")})
    home.create_launch_template_version(
        LaunchTemplateName="api-lt", LaunchTemplateData={"ImageId": fleet.id("api-v1.4.0")}
    )
    home.enable_image_deregistration_protection(ImageId=fleet.id("api-v1.3.0"))
    legacy = stack.client("ec2", HUB, LEGACY)
    legacy.create_tags(
        Resources=[fleet.id("report-v3")],
        Tags=[{"Key": f"{P}:expires-at", "Value": (now - timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")}],
    )
    # The golden image is shared with the analytics account, which runs an instance from it (launched a
    # month ago: what keeps it is that instance, not a recent launch).
    golden = fleet.id("golden-base-2026-03-01")
    home.modify_image_attribute(ImageId=golden, LaunchPermission={"Add": [{"UserId": ANALYTICS}]})
    consumer = stack.client("ec2", ANALYTICS, HOME)
    consumer.run_instances(ImageId=golden, MinCount=1, MaxCount=1, InstanceType="t3.micro")
    motoext.set_last_launched(HUB, HOME, golden, now - timedelta(days=30))
    return fleet


def create_new_images(stack: Any, now: datetime, fleet: Fleet) -> list[tuple[str, str, str]]:
    from .fleet import create_image

    out = []
    for seed in NEW:
        ec2 = stack.client("ec2", seed.account, seed.region)
        image_id = create_image(ec2, seed.name, created=now - timedelta(days=seed.age_days), account_id=seed.account)
        fleet.add(seed, image_id)
        out.append((seed.account, seed.region, image_id))
    return out


def available_event(account: str, region: str, image_id: str, now: datetime) -> dict[str, Any]:
    """The AWS-documented `EC2 AMI State Change` event (events/ami_available.json) for one image."""
    event: dict[str, Any] = _copy.deepcopy(json.loads((EVENTS / "ami_available.json").read_text()))
    event["region"] = region
    event["account"] = account
    event["time"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    event["resources"] = [f"arn:aws:ec2:{region}::image/{image_id}"]
    event["detail"]["ImageId"] = image_id
    return event


# ---------------------------------------------------------------- the flow


@dataclass
class Story:
    """What the demo did and saw, by (account, region): rendered as text, or as JSON."""

    endpoint: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)
    tagged: dict[Pair, list[dict[str, Any]]] = field(default_factory=dict)  # (account, region) -> rows
    copied: dict[Pair, list[dict[str, Any]]] = field(default_factory=dict)
    retired: dict[Pair, list[dict[str, Any]]] = field(default_factory=dict)
    kept: dict[Pair, list[dict[str, Any]]] = field(default_factory=dict)
    status: dict[Pair, dict[str, Any]] = field(default_factory=dict)  # the sweep's status and error per pair
    plan: dict[str, Any] = field(default_factory=dict)
    sweep: dict[str, Any] = field(default_factory=dict)
    plan_matches_sweep: bool = False
    mismatch: dict[str, list[str]] = field(default_factory=dict)
    # Pairs whose sweep did not complete, besides the sandbox's (expected: none).
    unexpected_failures: list[str] = field(default_factory=list)
    # The last act: the Recycle Bin rules, what the staged stack's sweep disabled, what was restored.
    staged: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def step(self, title: str, **facts: Any) -> None:
        self.steps.append({"step": title, **facts})

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "parameters": PARAMETERS,
            "steps": self.steps,
            "accounts": {
                account: {
                    "name": name,
                    "regions": {
                        region: {
                            **self.status.get((account, region), {}),
                            "tagged": self.tagged.get((account, region), []),
                            "copied": self.copied.get((account, region), []),
                            "retired": self.retired.get((account, region), []),
                            "kept": self.kept.get((account, region), []),
                        }
                        for region in REGIONS
                    },
                }
                for account, name in ACCOUNTS.items()
            },
            "plan_totals": self.plan.get("totals", {}),
            "sweep_totals": self.sweep.get("totals", {}),
            "plan_matches_sweep": self.plan_matches_sweep,
            "mismatch": self.mismatch,
            "unexpected_failures": self.unexpected_failures,
            "staged": self.staged,
            "seconds": round(self.seconds, 1),
        }


def run_flow(story: Story, progress: Any, now: datetime) -> Fleet:
    import boto3

    from .stack import LocalStack

    session = boto3.Session()
    stack = LocalStack(region=HOME, parameters=PARAMETERS, session=session, spokes=False)
    for account, region in SPOKES:
        stack.deploy_spoke(account, region)
    roles = sorted(a for (a, r), spoke in stack.spokes.items() if "SpokeRole" in spoke.resources)
    story.step(
        "hub (template.yaml) and spokes (spoke.yaml) deployed",
        hub=f"{HUB}/{HOME}",
        spoke_stacks=len(stack.spokes),
        spoke_roles=",".join(roles),
        missing_role=SANDBOX,
    )
    progress(f"hub deployed in {HUB}/{HOME}; spoke.yaml in {len(stack.spokes)} (account, region) pairs")

    fleet = seed_fleet(stack, now)
    by_account = {ACCOUNTS[a]: sum(1 for s in FLEET if s.account == a) for a in ACCOUNTS}
    story.step("seeded the fleet that existed before the stack", images=len(FLEET), by_account=by_account)
    progress(f"seeded {len(FLEET)} existing images in {len(ACCOUNTS)} accounts")

    # New images: EC2 announces them in their account and region; the deployed rules route the events.
    announced: set[str] = set()
    new = create_new_images(stack, now, fleet)
    tagged_by_events = 0
    queued = 0
    via_spokes = 0
    for account, region, image_id in new:
        for inv in stack.put_event(available_event(account, region, image_id, now)):
            tagged_by_events += _record_event(story, fleet, inv, "event")
            queued += len((inv.result or {}).get("copies_requested", []))
            via_spokes += len(inv.route) > 1
        announced.add(image_id)
    story.step(
        "new images announced (EC2 AMI State Change: available) -> ImageEventsFunction",
        images=len(new),
        tagged=tagged_by_events,
        through_a_spoke=via_spokes,
        copies_queued=queued,
    )
    progress(f"{len(new)} new images tagged ({via_spokes} through a spoke), {queued} copies queued")

    copies = _drain_copies(stack, story, fleet, announced, now)
    story.step("CopyQueue -> ReplicatorFunction; the copies' available events -> ImageEventsFunction", copies=copies)
    progress(f"{copies} copies made")

    plan_event = json.loads((EVENTS / "backfill_plan.json").read_text())
    plan = stack.invoke("BackfillFunction", plan_event)
    story.plan = plan
    t = plan["totals"]
    story.step(
        "BackfillFunction, dry run of every action (events/backfill_plan.json): the plan",
        status=plan["status"],
        would_tag=t["tagged"],
        would_request_copies=t["copies_requested"],
        would_retire=t["retired"],
        would_delete_snapshots=t["snapshots_deleted"],
        snapshot_gib_freed=snapshot_gib_freed(plan),
        kept=t["kept"],
        errors=t["errors"],
    )
    progress(f"backfill plan: would tag {t['tagged']}, copy {t['copies_requested']}, retire {t['retired']}")

    apply_event = json.loads((EVENTS / "backfill_apply.json").read_text())
    applied = stack.invoke("BackfillFunction", apply_event)
    for account, region, r in pairs_of(applied):
        for e in r["images"]:
            if happened(e.get("outcomes"), "tag", "untag"):
                story.tagged.setdefault((account, region), []).append(_tag_row(e, fleet, "backfill"))
    copies = _drain_copies(stack, story, fleet, announced, now)
    ta = applied["totals"]
    story.step(
        "BackfillFunction, tag + replicate for real (events/backfill_apply.json); copies again",
        tagged=ta["tagged"],
        copies_requested=ta["copies_requested"],
        copies=copies,
        errors=ta["errors"],
    )
    progress(f"backfill applied: tagged {ta['tagged']}, {copies} copies made")

    rules = _recycle_bin_rules(stack)
    story.staged["recycle_bin_rules"] = rules
    story.step(
        f"Recycle Bin retention rules (Region-level, {RECYCLE_BIN_DAYS} days) in {HUB}/{HOME}",
        rules=", ".join(f"{r['resource_type']} {r['identifier']}" for r in rules),
    )
    progress(f"Recycle Bin rules for AMIs and snapshots created in {HUB}/{HOME}")

    title, swept = _sweep(stack)
    story.sweep = swept
    ts = swept["totals"]
    failed = sorted({ACCOUNTS.get(a, a) for a, _, r in pairs_of(swept) if r.get("status") == "failed"})
    story.step(
        title,
        retired=ts["retired"],
        snapshots_deleted=ts["snapshots_deleted"],
        kept=ts["kept"],
        errors=ts["errors"],
        failed_accounts=",".join(failed) or "none",
    )
    progress(f"sweep: retired {ts['retired']}, kept {sum(ts['kept'].values())}, failed: {', '.join(failed) or 'none'}")

    _collect_outcomes(story, fleet, applied, swept)
    expiries = {e["image_id"]: e.get("expires_at", "") for _, _, r in pairs_of(swept) for e in r["images"]}
    for rows in story.tagged.values():
        for row in rows:
            row["expires_at"] = expiries.get(row["image_id"]) or row["expires_at"]
    planned = _retire_set(plan)
    done = _retire_set(swept, outcome="retired")
    story.plan_matches_sweep = planned == done
    if planned != done:
        story.mismatch = {"planned_only": sorted(planned - done), "swept_only": sorted(done - planned)}
    _copies_table(stack, story)
    _staged_and_reversible(story, progress, session, fleet, now)
    return fleet


def _recycle_bin_rules(stack: Any) -> list[dict[str, Any]]:
    """A Region-level retention rule for AMIs and one for EBS snapshots in the hub's region: what a
    sweep deregisters there, and its snapshots, go to the Recycle Bin."""
    rbin = stack.client("rbin", HUB, HOME)
    rules = []
    for resource_type in ("EC2_IMAGE", "EBS_SNAPSHOT"):
        rule = rbin.create_rule(
            ResourceType=resource_type,
            RetentionPeriod={"RetentionPeriodValue": RECYCLE_BIN_DAYS, "RetentionPeriodUnit": "DAYS"},
            Description=f"ami-lifecycle demo: retired {resource_type} restorable for {RECYCLE_BIN_DAYS} days",
        )
        rules.append({"resource_type": resource_type, "identifier": rule["Identifier"], "days": RECYCLE_BIN_DAYS})
    return rules


def _staged_and_reversible(story: Story, progress: Any, session: Any, fleet: Fleet, now: datetime) -> None:
    """The last act: a second stack with DisableBeforeDeregister=7d disables an expired image first;
    then `restore` re-enables it, and brings back an image the main sweep retired into the Recycle Bin.
    Its image is seeded after the main sweep, which therefore never saw it (the plan and the sweep's
    sets are untouched)."""
    from ami_lifecycle import runtime
    from ami_lifecycle.aws.clients import Aws
    from ami_lifecycle.runtime import Deps
    from ami_lifecycle.services.restore import restore

    from .fleet import create_image
    from .stack import LocalStack

    staged = LocalStack(
        region=HOME, parameters=STAGED_PARAMETERS, session=session, stack_name=STAGED_STACK, spokes=False
    )
    ec2 = staged.client("ec2", HUB, HOME)
    seed = Seed(HOME, "legacy-2025", STAGED_SEED_AGE_DAYS, note="expired, unused: for the staged stack")
    legacy = create_image(
        ec2,
        seed.name,
        # Managed, and P:keep-latest=0: alone in its family, it would otherwise be kept as its newest.
        tags={f"{P}:managed": "true", f"{P}:retention": "90d", f"{P}:keep-latest": "0"},
        created=now - timedelta(days=seed.age_days),
    )
    fleet.add(seed, legacy)
    report = staged.invoke("RetentionSweepFunction", {"source": "manual", "regions": [HOME]})
    entry: Mapping[str, Any] = next(
        (e for _, _, r in pairs_of(report) for e in r.get("images", []) if e["image_id"] == legacy), {}
    )
    (image,) = ec2.describe_images(ImageIds=[legacy], IncludeDisabled=True)["Images"]
    disabled = {
        "image_id": legacy,
        "name": seed.name,
        "created": entry.get("created", ""),
        "outcome": entry.get("outcome", ""),
        "detail": entry.get("detail", ""),
        "state": image.get("State", ""),
        "disabled_at": {t["Key"]: t["Value"] for t in image.get("Tags", [])}.get(f"{P}:disabled-at", ""),
    }
    others = sorted(
        e["image_id"] for _, _, r in pairs_of(report) for e in r.get("images", []) if e.get("decision") == "retire"
    )
    story.staged.update(stack=STAGED_STACK, parameters=STAGED_PARAMETERS, disabled=disabled)
    story.step(
        f"{STAGED_STACK} (DisableBeforeDeregister=7d, {HUB}/{HOME} only, no spokes): "
        "RetentionSweepFunction, a manual sweep",
        disabled=sum(1 for _, _, r in pairs_of(report) for e in r.get("images", []) if e.get("outcome") == "disabled"),
        retired=(report.get("totals") or {}).get("retired", 0),
        state_after=disabled["state"],
    )
    progress(f"{STAGED_STACK}: {seed.name} {disabled['outcome'] or 'not disabled'} ({disabled['state']})")
    if disabled["outcome"] != "disabled" or disabled["state"] != "disabled" or others != [legacy]:
        story.unexpected_failures.append(
            f"{STAGED_STACK}: expected {seed.name} disabled (and nothing else retirable), "
            f"got {disabled['outcome'] or 'no outcome'}, state {disabled['state']}, retirable {others}"
        )

    # `ami-lifecycle restore`, as the CLI runs it: the hub account's deps, the image's region.
    env = dict(os.environ)
    env["AWS_REGION"] = HOME
    deps = Deps.create(runtime.load_settings(env), Aws(session), None, HUB)
    binned = fleet.id(RESTORED_FROM_BIN)
    restored = []
    for image_id, why in (
        (legacy, "still launched by the nightly batch"),
        (binned, "needed for a rollback"),
    ):
        result = restore(deps, image_id, HOME, reason=why)
        (after,) = ec2.describe_images(ImageIds=[image_id], IncludeDisabled=True)["Images"] or [{}]
        tags = {t["Key"]: t["Value"] for t in after.get("Tags", [])}
        restored.append(
            {
                **result.to_dict(),
                "name": fleet.names.get(image_id, ""),
                "state": after.get("State", ""),
                "hold_tag": tags.get(f"{P}:hold", ""),
            }
        )
    story.staged["restored"] = restored
    story.step(
        "ami-lifecycle restore (services.restore): the disabled image, and one the sweep put in the Recycle Bin",
        restored=sum(1 for r in restored if r["status"] == "restored"),
        sources=",".join(r["source"] for r in restored),
        held=sum(1 for r in restored if r["held"] and r["hold_tag"] == "true"),
    )
    progress("restored: " + ", ".join(f"{r['name']} ({r['source'] or r['status']})" for r in restored))
    for r in restored:
        if r["status"] != "restored" or r["hold_tag"] != "true" or r["state"] != "available":
            story.unexpected_failures.append(f"restore of {r['name']} ({r['image_id']}): {r['message']}")


def _sweep(stack: Any) -> tuple[str, dict[str, Any]]:
    """The scheduled retention sweep over every pair, and its report (keyed by account, then region).

    With SweepStateMachine (PRODUCT.md section 9): its schedule fired (an execution, run by moto's
    interpreter, its tasks by the stack's handlers); the report is made of the per-pair reports of
    the real (not dry-run) RetentionSweepFunction invocations of that execution, the image entries
    included (the execution's own output is a summary). Without it: RetentionSweepFunction's own
    schedule, or the function invoked as a manual sweep of every pair, its cursor sent back while
    it returns one."""
    from .stepfunctions import state_machines

    machines = [lid for lid, spec in state_machines(stack.template).items() if spec.events_of_type("ScheduleV2")]
    if machines:
        before = len(stack.invocations)
        execution = stack.fire_schedule(machines[0])
        if execution.get("status") != "SUCCEEDED":
            raise RuntimeError(f"{machines[0]} execution {execution.get('status')}: {execution}")
        report: dict[str, Any] = {}
        for inv in stack.invocations[before:]:
            request = inv.event if isinstance(inv.event, dict) else {}
            if inv.function != "RetentionSweepFunction" or "operation" in request or request.get("dry_run"):
                continue
            if isinstance(inv.result, dict) and inv.result.get("accounts"):
                report = _merge(report, inv.result)
        return f"{machines[0]}, fired by its schedule -> RetentionSweepFunction per pair", report
    if stack.functions["RetentionSweepFunction"].events_of_type("ScheduleV2"):
        return "RetentionSweepFunction, fired by its schedule", stack.fire_schedule("RetentionSweepFunction")
    report = stack.invoke("RetentionSweepFunction", {})
    while report.get("cursor"):
        report = _merge(report, stack.invoke("RetentionSweepFunction", {"cursor": report["cursor"]}))
    return "RetentionSweepFunction, a sweep of every pair (as its schedule runs it)", report


def _merge(first: dict[str, Any], then: dict[str, Any]) -> dict[str, Any]:
    """Two invocations' reports as one: the later report of a pair replaces the earlier one."""
    out = {**first, **then}
    accounts: dict[str, Any] = {}
    for report in (first, then):
        for account, a in (report.get("accounts") or {}).items():
            accounts.setdefault(account, {"regions": {}})["regions"].update((a or {}).get("regions") or {})
    out["accounts"] = accounts
    totals: dict[str, Any] = {}
    for _, _, r in pairs_of(out):
        for key, value in (r.get("totals") or {}).items():
            if isinstance(value, dict):
                bucket = totals.setdefault(key, {})
                for k, v in value.items():
                    bucket[k] = bucket.get(k, 0) + v
            else:
                totals[key] = totals.get(key, 0) + value
    out["totals"] = totals
    return out


def _record_event(story: Story, fleet: Fleet, inv: Any, by: str) -> int:
    function, result = inv.function, inv.result
    if function != "ImageEventsFunction" or not isinstance(result, dict):
        return 0
    tagging = result.get("tagging") or {}
    if result.get("status") != "tagged":
        return 0
    outcomes = tagging.get("outcomes") or []
    written = tags_written(outcomes)
    row = {
        "image_id": result.get("image_id"),
        "name": fleet.names.get(str(result.get("image_id")), ""),
        "by": by if len(inv.route) < 2 else f"{by}, through its spoke",
        "tags_added": len(written),
        "expires_at": written.get(f"{P}:expires-at", ""),
        "deprecation": deprecation_at(outcomes),
        "copies_requested": ",".join(result.get("copies_requested", [])),
        "decision": tagging.get("decision", ""),
    }
    pair = (str(result.get("account") or inv.event.get("account")), str(result.get("region")))
    story.tagged.setdefault(pair, []).append(row)
    return 1


def _tag_row(entry: Mapping[str, Any], fleet: Fleet, by: str) -> dict[str, Any]:
    """A backfill's image entry, from its outcomes (the data, not the `actions` text)."""
    outcomes = entry.get("outcomes") or []
    written = tags_written(outcomes)
    return {
        "image_id": entry["image_id"],
        "name": entry.get("name") or fleet.names.get(entry["image_id"], ""),
        "by": by,
        "tags_added": len(written),
        "expires_at": written.get(f"{P}:expires-at", ""),
        "deprecation": deprecation_at(outcomes),
        "copies_requested": ",".join(copies_requested(outcomes)),
        "decision": f"adopted; {P}:error set" if entry.get("errors") else "adopted",
    }


def _copies(stack: Any, account: str, region: str) -> list[dict[str, Any]]:
    """The copies the tool made in (account, region)."""
    ec2 = stack.client("ec2", account, region)
    pages = ec2.get_paginator("describe_images").paginate(
        Owners=["self"], Filters=[{"Name": "tag-key", "Values": [f"{P}:source-image"]}]
    )
    return [image for page in pages for image in page["Images"]]


def _drain_copies(stack: Any, story: Story, fleet: Fleet, announced: set[str], now: datetime) -> int:
    """Drain the copy queue into ReplicatorFunction, then announce each new copy in its account and
    region (its event travels as any other)."""
    stack.drain_queue("CopyQueue")
    made = 0
    for account, region in SPOKES:
        for image in _copies(stack, account, region):
            if image["ImageId"] in announced:
                continue
            announced.add(image["ImageId"])
            fleet.names[image["ImageId"]] = image.get("Name", "")
            made += 1
            for inv in stack.put_event(available_event(account, region, image["ImageId"], now)):
                _record_event(story, fleet, inv, "copy event")
    return made


def _collect_outcomes(story: Story, fleet: Fleet, applied: Mapping[str, Any], swept: Mapping[str, Any]) -> None:
    for account, region, r in pairs_of(swept):
        pair = (account, region)
        story.status[pair] = {"status": r.get("status", ""), "error": r.get("error") or ""}
        if r.get("status") != "complete" and account != SANDBOX:
            story.unexpected_failures.append(f"{account}/{region}: {r.get('status')} {r.get('error') or ''}".strip())
        for e in r.get("images", []):
            if e.get("outcome") == "retired":
                story.retired.setdefault(pair, []).append(
                    {
                        "image_id": e["image_id"],
                        "name": e.get("name", ""),
                        "created": e.get("created", ""),
                        "reason": e.get("reason", ""),
                        "detail": e.get("detail", ""),
                        "restorable_until": e.get("restorable_until") or "",
                        "snapshots": ", ".join(
                            f"{s['SnapshotId']} {_snapshot_word(s['ReturnCode'], bool(e.get('restorable_until')))}"
                            for s in e.get("snapshots", [])
                        ),
                    }
                )
            elif e.get("decision") == "keep":
                story.kept.setdefault(pair, []).append(_kept_row(e, fleet))
    sandbox = [r.get("status") for a, _, r in pairs_of(swept) if a == SANDBOX]
    if sandbox != ["failed"] * len(REGIONS):
        story.unexpected_failures.append(f"{SANDBOX} (no role): expected every pair failed, got {sandbox}")
    # Images the sweep never looks at (not managed): the backfill said why.
    for account, region, r in pairs_of(applied):
        for e in r.get("images", []):
            if e.get("decision") == "skip":
                story.kept.setdefault((account, region), []).append(_kept_row(e, fleet))


def _kept_row(e: Mapping[str, Any], fleet: Fleet) -> dict[str, Any]:
    detail = str(e.get("detail", ""))
    note = fleet.notes.get(e["image_id"])
    return {
        "image_id": e["image_id"],
        "name": e.get("name", ""),
        "created": e.get("created", ""),
        "reason": e.get("reason", ""),
        "detail": f"{detail} ({note})" if note and note not in detail else detail,
    }


def _snapshot_word(code: str, to_the_bin: bool = False) -> str:
    deleted = "deleted (into the Recycle Bin)" if to_the_bin else "deleted"
    return {"success": deleted, "skipped": "kept (another image uses it)"}.get(code, code)


def _copies_table(stack: Any, story: Story) -> None:
    for account, region in SPOKES:
        for image in sorted(_copies(stack, account, region), key=lambda i: i.get("Name", "")):
            tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
            story.copied.setdefault((account, region), []).append(
                {
                    "image_id": image["ImageId"],
                    "name": image.get("Name", ""),
                    "source": f"{tags.get(f'{P}:source-region')}/{tags.get(f'{P}:source-image')}",
                    "state": image.get("State", ""),
                    "deprecation": image.get("DeprecationTime", ""),
                }
            )


def _retire_set(report: Mapping[str, Any], outcome: str | None = None) -> set[str]:
    return {
        e["image_id"]
        for _, _, r in pairs_of(report)
        for e in r.get("images", [])
        if e.get("decision") == "retire" and (outcome is None or e.get("outcome") == outcome)
    }


# ---------------------------------------------------------------- output


def render(story: Story, now: datetime) -> str:
    out = [
        f"ami-lifecycle demo: template.yaml's functions on an embedded local AWS (moto at {story.endpoint})",
        f"hub: account {HUB} in {HOME}; managed accounts: "
        + ", ".join(f"{a} ({name})" for a, name in ACCOUNTS.items()),
        "parameters: " + ", ".join(f"{k}={v}" for k, v in PARAMETERS.items()),
        "",
    ]
    for n, step in enumerate(story.steps, start=1):
        facts = ", ".join(f"{k}={_fact(v)}" for k, v in step.items() if k != "step")
        out.append(f"[{n}/{len(story.steps)}] {step['step']}")
        out.append(f"      {facts}")
    out.append("")
    for account, name in ACCOUNTS.items():
        for region in REGIONS:
            pair = (account, region)
            title = f"=== {account} {name} / {region} "
            out.append(title + "=" * max(4, 66 - len(title)))
            status = story.status.get(pair, {})
            if status.get("status") == "failed":
                out.append(f"FAILED: {status.get('error', '')}")
                out.append("")
                continue
            if not any(rows.get(pair) for rows in (story.tagged, story.copied, story.retired, story.kept)):
                out.append("(no images)")
                out.append("")
                continue
            # Where a Recycle Bin rule kept what was retired: until when each can be restored.
            restorable = any(r.get("restorable_until") for r in story.retired.get(pair, []))
            sections = (
                (
                    "Tagged",
                    story.tagged.get(pair, []),
                    ["IMAGE", "NAME", "BY", "RESULT", "EXPIRES-AT", "COPIES TO"],
                    lambda r: [
                        r["image_id"],
                        r["name"],
                        r["by"],
                        r["decision"],
                        r["expires_at"],
                        r["copies_requested"],
                    ],
                ),
                (
                    "Copied here",
                    story.copied.get(pair, []),
                    ["COPY", "NAME", "FROM", "STATE", "DEPRECATION"],
                    lambda r: [r["image_id"], r["name"], r["source"], r["state"], r["deprecation"][:16]],
                ),
                (
                    "Retired",
                    story.retired.get(pair, []),
                    ["IMAGE", "NAME", "AGE", "REASON", "SNAPSHOTS", *(["RESTORABLE UNTIL"] if restorable else [])],
                    functools.partial(_retired_cells, now=now, restorable=restorable),
                ),
                (
                    "Kept",
                    story.kept.get(pair, []),
                    ["IMAGE", "NAME", "AGE", "REASON", "WHY"],
                    lambda r: [r["image_id"], r["name"], age(r["created"], now), r["reason"], r["detail"]],
                ),
            )
            for heading, rows, headers, cells in sections:
                out.append(f"{heading} ({len(rows)})")
                if rows:
                    out += ["  " + line for line in table([cells(r) for r in rows], headers, 58).splitlines()]
            out.append("")
    out += _render_staged(story, now)
    planned, swept = story.plan.get("totals", {}), story.sweep.get("totals", {})
    out.append(
        f"Plan (dry run): would retire {planned.get('retired', 0)} images, "
        f"{planned.get('snapshots_deleted', 0)} snapshots ({snapshot_gib_freed(story.plan)} GiB)."
    )
    out.append(
        f"Sweep (for real): retired {swept.get('retired', 0)} images, deleted {swept.get('snapshots_deleted', 0)} "
        f"snapshots, kept {sum(swept.get('kept', {}).values())} managed images."
    )
    if story.plan_matches_sweep:
        out.append("OK: the sweep retired exactly the images the backfill's plan listed.")
    else:
        out.append(f"MISMATCH between the plan and the sweep: {story.mismatch}")
    if story.unexpected_failures:
        out.append(f"UNEXPECTED failures: {'; '.join(story.unexpected_failures)}")
    else:
        out.append(
            f"OK: only the {ACCOUNTS[SANDBOX]} account ({SANDBOX}, its role missing) failed; "
            "every other pair completed."
        )
    if story.staged.get("restored"):
        d, restored = story.staged["disabled"], story.staged["restored"]
        out.append(
            f"OK: {d['name']} was disabled first (state {d['state']}, not deregistered); restored "
            + " and ".join(f"{r['name']} ({r['source']})" for r in restored if r["status"] == "restored")
            + f", each held with {P}:hold=true."
        )
    out.append(f"Done in {story.seconds:.1f} s; the local AWS is stopped. Try: ami-lifecycle plan --help")
    return "\n".join(out)


def _retired_cells(r: Mapping[str, Any], now: datetime, restorable: bool) -> list[str]:
    cells = [r["image_id"], r["name"], age(r["created"], now), r["detail"], r["snapshots"]]
    return [*cells, r.get("restorable_until") or "not restorable"] if restorable else cells


def _render_staged(story: Story, now: datetime) -> list[str]:
    """The last act: the Recycle Bin, an image disabled first, and the two restores."""
    staged = story.staged
    if not staged:
        return []
    title = f"=== Staged and reversible retirement: {HUB} hub / {HOME} "
    out = [title + "=" * max(4, 66 - len(title))]
    rules = staged.get("recycle_bin_rules", [])
    binned = [r for r in story.retired.get((HUB, HOME), []) if r.get("restorable_until")]
    out.append(
        "Recycle Bin: Region-level rules for "
        + " and ".join(r["resource_type"] for r in rules)
        + f" ({RECYCLE_BIN_DAYS} days) before the sweep: the {len(binned)} images it retired here can be "
        "restored with their snapshots" + (f" until {binned[0]['restorable_until']}" if binned else "")
    )
    d = staged.get("disabled") or {}
    params = ", ".join(f"{k}={v}" for k, v in (staged.get("parameters") or {}).items())
    out.append(f"Disabled first, still registered ({staged.get('stack')}: {params}; a manual sweep, no spokes)")
    out += [
        "  " + line
        for line in table(
            [
                [
                    d.get("image_id", ""),
                    d.get("name", ""),
                    age(d.get("created", ""), now),
                    d.get("outcome", ""),
                    d.get("state", ""),
                    d.get("detail", ""),
                ]
            ],
            ["IMAGE", "NAME", "AGE", "OUTCOME", "STATE", "WHY"],
            58,
        ).splitlines()
    ]
    restored = staged.get("restored", [])
    out.append(f"Restored ({len(restored)}): ami-lifecycle restore, then held")
    out += [
        "  " + line
        for line in table(
            [
                [
                    r["image_id"],
                    r["name"],
                    r["source"] or "-",
                    r["status"],
                    r["state"],
                    f"{P}:hold={r['hold_tag'] or '(none)'}",
                    _restore_detail(r),
                ]
                for r in restored
            ],
            ["IMAGE", "NAME", "FROM", "RESULT", "STATE", "HOLD", "DETAIL"],
            90,
        ).splitlines()
    ]
    out.append("")
    return out


def _restore_detail(r: Mapping[str, Any]) -> str:
    if r["status"] != "restored":
        return str(r["message"])
    if r["source"] == "recycle-bin":
        return (
            f"image and {len(r['snapshots_restored'])} snapshot(s) back from the bin "
            f"(it would have left it at {r['recycle_bin_exit_time']})"
        )
    return f"EnableImage; {P}:disabled-at removed"


def _fact(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return str(value)


@contextlib.contextmanager
def quiet_local_aws(verbose: bool) -> Iterator[None]:
    """Unless verbose: moto's own log lines (its Step Functions interpreter logs each JSONPath it
    evaluates on a missing key, and what it does not model, at ERROR/WARNING, which Python's last-resort
    handler prints on stderr) and Powertools' "no application metrics" warning are not shown."""
    if verbose:
        yield
        return
    log = logging.getLogger("moto")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No application metrics to publish")
            yield
    finally:
        log.setLevel(level)


@contextlib.contextmanager
def warm_functions() -> Iterator[None]:
    """The functions keep their boto3 clients from one invocation to the next, as a warm Lambda
    container does (the local runner otherwise gives every invocation a cold start)."""
    from ami_lifecycle import runtime
    from ami_lifecycle.aws.clients import Aws

    shared = Aws()
    original = runtime.aws
    runtime.aws = lambda: shared
    try:
        yield
    finally:
        runtime.aws = original


def main(
    *,
    json_output: bool = False,
    quiet: bool = False,
    verbose: bool = False,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Run the demo. Returns the exit code: 0 when the flow ran, the sweep matched the plan, and only
    the sandbox account (its role missing) failed."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr

    def progress(message: str) -> None:
        if not quiet:
            print(f"… {message}", file=stderr, flush=True)

    started = time.monotonic()
    now = datetime.now(UTC)
    story = Story()
    with EmbeddedAws(region=HOME) as local, warm_functions():
        story.endpoint = local.url
        progress(f"local AWS (moto) listening on {local.url}")
        from . import stepfunctions

        try:
            with quiet_functions(verbose, stderr), quiet_local_aws(verbose):
                run_flow(story, progress, now)
        finally:
            # Executions off again and the stack's routes and recorded task calls forgotten: the
            # process is left as it was (the demo also runs in-process, from the CLI and the tests).
            stepfunctions.disable()
    story.seconds = time.monotonic() - started
    if json_output:
        print(json.dumps(story.to_dict(), indent=2, default=str), file=stdout)
    else:
        print(render(story, now), file=stdout)
    return 0 if story.plan_matches_sweep and not story.unexpected_failures else 1
