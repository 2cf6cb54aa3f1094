"""`ami-lifecycle demo`: the whole flow, on an embedded local AWS, in one command.

1. Start a moto server on 127.0.0.1 (a free port) with our moto extension, point boto3 at it
   (`server.EmbeddedAws`), and deploy template.yaml's wiring onto it (`stack.LocalStack`, in
   us-east-1, copying to us-west-2 and sweeping us-east-1, us-west-2 and eu-west-1).
2. Seed a realistic fleet that existed before the stack: families with several generations and
   ages, a held image, images used by a running instance and by an old launch-template version, an
   image protected from deregistration, images of AWS Backup, DLM and Image Builder, an opted-out
   image, a bad retention tag, a snapshot shared by two images, a user-set expiry.
3. New images are announced (`EC2 AMI State Change` / `available`), routed by the template's rule
   to ImageEventsFunction, which tags them and queues their copies; the copy queue is drained into
   ReplicatorFunction; the copies' own `available` events are routed in us-west-2.
4. BackfillFunction: a dry run of every action (the plan), then `tag` + `replicate` for real
   (the sample events `events/backfill_plan.json` and `events/backfill_apply.json`); copies again.
5. RetentionSweepFunction, fired as its schedule fires it: retires what expired.
6. Print what happened, region by region (or `--json`), and check that the sweep retired exactly
   what the backfill's plan said it would.

The server is stopped and the environment restored whatever happens.
"""

from __future__ import annotations

import contextlib
import copy as _copy
import json
import sys
import time
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
PARAMETERS = {
    "ReplicaRegions": REPLICA,
    "SweepRegions": ",".join(REGIONS),
    "DefaultRetention": "90d",
    "DefaultKeepLatest": "1",
}
P = "ami-lifecycle"


# ---------------------------------------------------------------- the fleet


@dataclass(frozen=True)
class Seed:
    region: str
    name: str
    age_days: float
    tags: Mapping[str, str] = field(default_factory=dict)
    note: str = ""


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
)
# Images built today: announced by EC2 AMI State Change events.
NEW: tuple[Seed, ...] = (
    Seed(HOME, "web-2026-11-25", 0.02),
    Seed(HOME, "api-v1.5.0", 0.01),
    Seed(LEGACY, "app-build-104", 0.01),
)


@dataclass
class Fleet:
    images: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (region, image id)
    names: dict[str, str] = field(default_factory=dict)  # image id -> name
    notes: dict[str, str] = field(default_factory=dict)  # image id -> what is special about it

    def add(self, seed: Seed, image_id: str) -> None:
        self.images[seed.name] = (seed.region, image_id)
        self.names[image_id] = seed.name
        if seed.note:
            self.notes[image_id] = seed.note

    def id(self, name: str) -> str:
        return self.images[name][1]


def seed_fleet(session: Any, now: datetime) -> Fleet:
    """Create FLEET on the local AWS (moto in this process: CreationDate is backdated in its backend)."""
    from .fleet import backdate, create_image, snapshot_ids

    fleet = Fleet()
    for seed in FLEET:
        ec2 = _client(session, seed.region)
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
            image_id = create_image(ec2, seed.name, tags=dict(seed.tags), created=created)
        fleet.add(seed, image_id)

    home = _client(session, HOME)
    home.run_instances(ImageId=fleet.id("api-v1.1.0"), MinCount=1, MaxCount=1, InstanceType="t3.micro")
    home.create_launch_template(LaunchTemplateName="api-lt", LaunchTemplateData={"ImageId": fleet.id("api-v1.2.0")})
    home.create_launch_template_version(
        LaunchTemplateName="api-lt", LaunchTemplateData={"ImageId": fleet.id("api-v1.4.0")}
    )
    home.enable_image_deregistration_protection(ImageId=fleet.id("api-v1.3.0"))
    legacy = _client(session, LEGACY)
    legacy.create_tags(
        Resources=[fleet.id("report-v3")],
        Tags=[{"Key": f"{P}:expires-at", "Value": (now - timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")}],
    )
    return fleet


_CLIENTS: dict[tuple[int, str], Any] = {}


def _client(session: Any, region: str) -> Any:
    """One EC2 client per session and region."""
    key = (id(session), region)
    if key not in _CLIENTS:
        _CLIENTS[key] = session.client("ec2", region_name=region)
    return _CLIENTS[key]


def create_new_images(session: Any, now: datetime, fleet: Fleet) -> list[tuple[str, str]]:
    from .fleet import create_image

    out = []
    for seed in NEW:
        ec2 = _client(session, seed.region)
        image_id = create_image(ec2, seed.name, created=now - timedelta(days=seed.age_days))
        fleet.add(seed, image_id)
        out.append((seed.region, image_id))
    return out


def available_event(region: str, image_id: str, now: datetime) -> dict[str, Any]:
    """The AWS-documented `EC2 AMI State Change` event (events/ami_available.json) for one image."""
    event: dict[str, Any] = _copy.deepcopy(json.loads((EVENTS / "ami_available.json").read_text()))
    event["region"] = region
    event["account"] = ACCOUNT_ID
    event["time"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    event["resources"] = [f"arn:aws:ec2:{region}::image/{image_id}"]
    event["detail"]["ImageId"] = image_id
    return event


# ---------------------------------------------------------------- the flow


@dataclass
class Story:
    """What the demo did and saw: rendered as text, or as JSON."""

    endpoint: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)
    tagged: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # region -> rows
    copied: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    retired: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    kept: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)
    sweep: dict[str, Any] = field(default_factory=dict)
    plan_matches_sweep: bool = False
    mismatch: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    def step(self, title: str, **facts: Any) -> None:
        self.steps.append({"step": title, **facts})

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "parameters": PARAMETERS,
            "steps": self.steps,
            "regions": {
                region: {
                    "tagged": self.tagged.get(region, []),
                    "copied": self.copied.get(region, []),
                    "retired": self.retired.get(region, []),
                    "kept": self.kept.get(region, []),
                }
                for region in REGIONS
            },
            "plan_totals": self.plan.get("totals", {}),
            "sweep_totals": self.sweep.get("totals", {}),
            "plan_matches_sweep": self.plan_matches_sweep,
            "mismatch": self.mismatch,
            "seconds": round(self.seconds, 1),
        }


def run_flow(story: Story, progress: Any, now: datetime) -> Fleet:
    import boto3

    from .stack import LocalStack

    session = boto3.Session()
    stack = LocalStack(region=HOME, parameters=PARAMETERS, session=session)
    progress(f"stack deployed locally: queues {', '.join(sorted(stack.resources))}")

    fleet = seed_fleet(session, now)
    by_region = {r: sum(1 for s in FLEET if s.region == r) for r in REGIONS}
    story.step(
        "seeded the fleet that existed before the stack",
        images=len(FLEET),
        by_region=by_region,
    )
    progress(f"seeded {len(FLEET)} existing images")

    # New images: EC2 announces them; the template's rule routes the events.
    announced: set[str] = set()
    new = create_new_images(session, now, fleet)
    tagged_by_events = 0
    queued = 0
    for region, image_id in new:
        for inv in stack.put_event(available_event(region, image_id, now)):
            tagged_by_events += _record_event(story, fleet, inv.function, inv.result, "event")
            queued += len((inv.result or {}).get("copies_requested", []))
        announced.add(image_id)
    story.step(
        "new images announced (EC2 AMI State Change: available) -> ImageEventsFunction",
        images=len(new),
        tagged=tagged_by_events,
        copies_queued=queued,
    )
    progress(f"{len(new)} new images tagged, {queued} copies queued")

    copies = _drain_copies(stack, session, story, fleet, announced, now)
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
    for _, region, r in pairs_of(applied):
        for e in r["images"]:
            if happened(e.get("outcomes"), "tag", "untag"):
                story.tagged.setdefault(region, []).append(_tag_row(e, fleet, "backfill"))
    copies = _drain_copies(stack, session, story, fleet, announced, now)
    ta = applied["totals"]
    story.step(
        "BackfillFunction, tag + replicate for real (events/backfill_apply.json); copies again",
        tagged=ta["tagged"],
        copies_requested=ta["copies_requested"],
        copies=copies,
        errors=ta["errors"],
    )
    progress(f"backfill applied: tagged {ta['tagged']}, {copies} copies made")

    swept = stack.fire_schedule("RetentionSweepFunction")
    story.sweep = swept
    ts = swept["totals"]
    story.step(
        "RetentionSweepFunction, fired by its schedule",
        retired=ts["retired"],
        snapshots_deleted=ts["snapshots_deleted"],
        kept=ts["kept"],
        errors=ts["errors"],
    )
    progress(f"sweep: retired {ts['retired']}, kept {sum(ts['kept'].values())}")

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
    _copies_table(story, session, fleet)
    return fleet


def _record_event(story: Story, fleet: Fleet, function: str, result: Any, by: str) -> int:
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
        "by": by,
        "tags_added": len(written),
        "expires_at": written.get(f"{P}:expires-at", ""),
        "deprecation": deprecation_at(outcomes),
        "copies_requested": ",".join(result.get("copies_requested", [])),
        "decision": tagging.get("decision", ""),
    }
    story.tagged.setdefault(str(result.get("region")), []).append(row)
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


def _drain_copies(stack: Any, session: Any, story: Story, fleet: Fleet, announced: set[str], now: datetime) -> int:
    """Drain the copy queue into ReplicatorFunction, then announce each new copy in its region."""
    stack.drain_queue("CopyQueue")
    made = 0
    for region in REGIONS:
        ec2 = _client(session, region)
        pages = ec2.get_paginator("describe_images").paginate(
            Owners=["self"], Filters=[{"Name": "tag-key", "Values": [f"{P}:source-image"]}]
        )
        for page in pages:
            for image in page["Images"]:
                if image["ImageId"] in announced:
                    continue
                announced.add(image["ImageId"])
                fleet.names[image["ImageId"]] = image.get("Name", "")
                made += 1
                for inv in stack.put_event(available_event(region, image["ImageId"], now)):
                    _record_event(story, fleet, inv.function, inv.result, "copy event")
    return made


def _collect_outcomes(story: Story, fleet: Fleet, applied: Mapping[str, Any], swept: Mapping[str, Any]) -> None:
    for _, region, r in pairs_of(swept):
        for e in r.get("images", []):
            if e.get("outcome") == "retired":
                story.retired.setdefault(region, []).append(
                    {
                        "image_id": e["image_id"],
                        "name": e.get("name", ""),
                        "created": e.get("created", ""),
                        "reason": e.get("reason", ""),
                        "detail": e.get("detail", ""),
                        "snapshots": ", ".join(
                            f"{s['SnapshotId']} {_snapshot_word(s['ReturnCode'])}" for s in e.get("snapshots", [])
                        ),
                    }
                )
            elif e.get("decision") == "keep":
                story.kept.setdefault(region, []).append(_kept_row(e, fleet))
    # Images the sweep never looks at (not managed): the backfill said why.
    for _, region, r in pairs_of(applied):
        for e in r.get("images", []):
            if e.get("decision") == "skip":
                story.kept.setdefault(region, []).append(_kept_row(e, fleet))


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


def _snapshot_word(code: str) -> str:
    return {"success": "deleted", "skipped": "kept (another image uses it)"}.get(code, code)


def _copies_table(story: Story, session: Any, fleet: Fleet) -> None:
    for region in REGIONS:
        ec2 = _client(session, region)
        images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag-key", "Values": [f"{P}:source-image"]}])
        for image in sorted(images["Images"], key=lambda i: i.get("Name", "")):
            tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
            story.copied.setdefault(region, []).append(
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
        "parameters: " + ", ".join(f"{k}={v}" for k, v in PARAMETERS.items()),
        "",
    ]
    for n, step in enumerate(story.steps, start=1):
        facts = ", ".join(f"{k}={_fact(v)}" for k, v in step.items() if k != "step")
        out.append(f"[{n}/{len(story.steps)}] {step['step']}")
        out.append(f"      {facts}")
    out.append("")
    for region in REGIONS:
        out.append(f"=== {region} " + "=" * (60 - len(region)))
        sections = (
            (
                "Tagged",
                story.tagged.get(region, []),
                ["IMAGE", "NAME", "BY", "RESULT", "EXPIRES-AT", "COPIES TO"],
                lambda r: [r["image_id"], r["name"], r["by"], r["decision"], r["expires_at"], r["copies_requested"]],
            ),
            (
                "Copied here",
                story.copied.get(region, []),
                ["COPY", "NAME", "FROM", "STATE", "DEPRECATION"],
                lambda r: [r["image_id"], r["name"], r["source"], r["state"], r["deprecation"][:16]],
            ),
            (
                "Retired",
                story.retired.get(region, []),
                ["IMAGE", "NAME", "AGE", "REASON", "SNAPSHOTS"],
                lambda r: [r["image_id"], r["name"], age(r["created"], now), r["detail"], r["snapshots"]],
            ),
            (
                "Kept",
                story.kept.get(region, []),
                ["IMAGE", "NAME", "AGE", "REASON", "WHY"],
                lambda r: [r["image_id"], r["name"], age(r["created"], now), r["reason"], r["detail"]],
            ),
        )
        for title, rows, headers, cells in sections:
            out.append(f"{title} ({len(rows)})")
            if rows:
                out += ["  " + line for line in table([cells(r) for r in rows], headers, 58).splitlines()]
        out.append("")
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
    out.append(f"Done in {story.seconds:.1f} s; the local AWS is stopped. Try: ami-lifecycle plan --help")
    return "\n".join(out)


def _fact(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return str(value)


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
    """Run the demo. Returns the exit code: 0 when the flow ran and the sweep matched the plan."""
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
        try:
            with quiet_functions(verbose, stderr):
                run_flow(story, progress, now)
        finally:
            _CLIENTS.clear()
    story.seconds = time.monotonic() - started
    if json_output:
        print(json.dumps(story.to_dict(), indent=2, default=str), file=stdout)
    else:
        print(render(story, now), file=stdout)
    errors = story.sweep.get("totals", {}).get("errors", 0)
    return 0 if story.plan_matches_sweep and not errors else 1
