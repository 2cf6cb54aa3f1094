"""Benchmark (not a test): the API calls one retention sweep makes, next to the floor.

Seeds 5,000 managed images in one region of the embedded moto (with ami_lifecycle_localaws.motoext),
10% of them expired and a few of those in use (instances, an old launch-template version, a launch
configuration), runs the sweep as RetentionSweepFunction runs it, and prints the calls by action
(motoext.calls()) beside the floor:

- ceil(images / 1000) DescribeImages (pages of 1000, by tag);
- the in-use check for the candidates only, the cheaper way: ceil(candidates / 10)
  DescribeImageReferences, or DescribeInstances + DescribeLaunchTemplates + one
  DescribeLaunchTemplateVersions per template; plus one DescribeLaunchConfigurations;
- one DeregisterImage per retired image, and nothing per retired snapshot (DeregisterImage with
  DeleteAssociatedSnapshots deletes them).

Seeding 5,000 images through the API is slow in moto (several round trips each), so the images
are registered through moto's backend directly (here, in this script); the few resources that use
images go through the API. Nothing seeded is counted.

Run: .venv/bin/python bench/sweep_calls.py [--images N] [--expired-ratio R]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "layers" / "core", ROOT / "localaws"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

# Before boto3 is imported: fake credentials, no real account reachable, quiet Powertools.
for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
    os.environ.pop(var, None)
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
        "POWERTOOLS_SERVICE_NAME": "ami-lifecycle",
        "POWERTOOLS_METRICS_NAMESPACE": "AmiLifecycle",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
)

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
P = "ami-lifecycle"
FAMILY_SIZE = 50
RETENTION = timedelta(days=90)


def seed(n: int, expired_ratio: float, now: datetime, rng: random.Random) -> dict[str, Any]:
    """Register n managed images, tagged and deprecated as the tool leaves them, in moto's backend."""
    from moto.ec2.models import ec2_backends

    backend: Any = ec2_backends[ACCOUNT][REGION]
    expired: list[str] = []
    for i in range(n):
        family = f"app{i // FAMILY_SIZE:04d}"
        if rng.random() < expired_ratio:
            age = RETENTION + timedelta(days=rng.uniform(0.1, 30))
        else:
            age = timedelta(days=rng.uniform(0, 89.9))
        created = (now - age).replace(microsecond=0)
        ami = backend.register_image(name=f"{family}-{created:%Y%m%d%H%M%S}", description=f"{family} image")
        ami.creation_date = created
        expires = created + RETENTION
        tags = {
            f"{P}:managed": "true",
            f"{P}:retention": "90d",
            f"{P}:expires-at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            f"{P}:family": family,
            f"{P}:keep-latest": "1",
        }
        backend.create_tags([ami.id, ami.ebs_snapshot.id], tags)
        if expires > now:
            backend.enable_image_deprecation(ami.id, expires)  # motoext's backend method
        else:
            expired.append(ami.id)
    return {"expired": expired}


def use_some(expired: list[str], rng: random.Random) -> dict[str, int]:
    """A few expired images in use: 3 instances, the old version of a launch template, a launch configuration."""
    import boto3

    ec2 = boto3.client("ec2", region_name=REGION)
    used = rng.sample(expired, 6)
    for image_id in used[:3]:
        ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1)
    ec2.create_launch_template(LaunchTemplateName="bench-template", LaunchTemplateData={"ImageId": used[3]})
    ec2.create_launch_template_version(LaunchTemplateName="bench-template", LaunchTemplateData={"ImageId": used[4]})
    boto3.client("autoscaling", region_name=REGION).create_launch_configuration(
        LaunchConfigurationName="bench-lc", ImageId=used[5], InstanceType="t3.micro"
    )
    return {"instances": 3, "launch_templates": 1, "launch_configurations": 1, "images_in_use": len(used)}


def floor(images: int, candidates: int, retired: int, resources: dict[str, int]) -> tuple[Counter[str], str]:
    """The fewest calls a correct sweep can make, and which in-use check that floor assumes."""
    f: Counter[str] = Counter({"DescribeImages": math.ceil(images / 1000), "DeregisterImage": retired})
    if candidates:
        by_references = math.ceil(candidates / 10)
        templates = resources["launch_templates"]
        # Listing covers what DescribeImageReferences covers: + DescribeParameters, ListImageRecipes,
        # ListContainerRecipes (one empty page each here).
        by_listing = 1 + math.ceil(max(1, templates) / 200) + templates + 3
        if by_references <= by_listing:
            f["DescribeImageReferences"] = by_references
            way = f"image-references ({by_references} calls vs {by_listing} listing)"
        else:
            f["DescribeInstances"] = 1
            f["DescribeLaunchTemplates"] = math.ceil(max(1, templates) / 200)
            f["DescribeLaunchTemplateVersions"] = templates
            f["DescribeParameters"] = f["ListImageRecipes"] = f["ListContainerRecipes"] = 1
            way = f"resource-listing ({by_listing} calls vs {by_references} DescribeImageReferences)"
        f["DescribeLaunchConfigurations"] = 1
        f["DescribeImageAttribute"] = candidates  # launch permissions of each candidate (all available here)
    else:
        way = "none (no candidates)"
    return f, way


def speed_up_moto() -> None:
    """moto looks a resource's tags up by scanning every tag of the region, once per image listed:
    O(images x tags), tens of minutes at 5,000 images. bench/harness.py has the bench-only fix (same
    answers, moto's CPU only; no call or response changes): use it."""
    try:
        from harness import speed_up_moto_tags  # bench/harness.py, next to this script
    except ImportError:
        print("warning: bench/harness.py not found: moto's tag lookups are quadratic, this will be slow")
        return
    speed_up_moto_tags()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--expired-ratio", type=float, default=0.10)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    logging.disable(logging.INFO)  # the sweep logs one line per image: not what is measured here

    from ami_lifecycle.aws.clients import Aws
    from ami_lifecycle.domain.settings import Settings
    from ami_lifecycle.services.sweep import sweep
    from ami_lifecycle_localaws import motoext
    from moto import mock_aws

    motoext.install()
    speed_up_moto()
    now = datetime.now(UTC)
    rng = random.Random(args.seed)
    with mock_aws():
        t0 = time.perf_counter()
        seeded = seed(args.images, args.expired_ratio, now, rng)
        resources = use_some(seeded["expired"], rng)
        seeding = time.perf_counter() - t0
        motoext.reset_calls()

        t1 = time.perf_counter()
        report = sweep(
            Settings(home_region=REGION), Aws(), now, regions=[REGION], account_id=ACCOUNT, max_retirements=0
        )
        swept = time.perf_counter() - t1
        calls = motoext.calls()

    region = report.regions[REGION]
    note = region.notes.get("in_use_check", {})
    retired = report.totals.retired
    want, way = floor(args.images, int(note.get("candidates", 0)), retired, resources)
    kept = ", ".join(f"{k} {v}" for k, v in sorted(report.totals.kept.items()))

    print(f"sweep of {args.images:,} managed images in {REGION} (moto + motoext, seeded in {seeding:.1f} s)")
    print(f"  expired: {len(seeded['expired']):,}; in use: {resources['images_in_use']} ({resources})")
    print(f"  status: {report.status}; retired {retired:,}; kept: {kept}")
    deleted = report.totals.snapshots_deleted
    print(f"  snapshots deleted: {deleted:,} (within DeregisterImage); errors: {report.totals.errors}")
    print(f"  in-use check: {note.get('candidates', 0)} candidates, way taken: {note.get('way')}; floor assumes {way}")
    print(f"  sweep time (local CPU, not AWS latency): {swept:.1f} s")
    print()
    actions = sorted(set(calls) | set(want), key=lambda a: (-calls.get(a, 0), a))
    width = max(len(a) for a in actions) + 2
    print(f"  {'action':<{width}}{'calls':>8}{'floor':>8}  note")
    print(f"  {'-' * (width + 16)}  {'-' * 40}")
    notes = {
        "DescribeImages": "ceil(images/1000), filter tag:P:managed=true",
        "DeregisterImage": "one per retired image, snapshots deleted in the same call",
        "DeleteSnapshot": "nothing per retired snapshot",
        "DescribeSnapshots": "reconciliation: orphaned managed snapshots (real EC2: ceil(snapshots/1000))",
        "EnableImageDeprecation": "reconciliation: managed images without deprecation time",
        "DescribeLaunchConfigurations": "launch configurations, listed once",
        "DescribeLaunchTemplates": "counts the templates to pick the cheaper way (reused by the listing)",
    }
    for action in actions:
        print(f"  {action:<{width}}{calls.get(action, 0):>8,}{want.get(action, 0):>8,}  {notes.get(action, '')}")
    total, floor_total = sum(calls.values()), sum(want.values())
    print(f"  {'-' * (width + 16)}")
    print(f"  {'total':<{width}}{total:>8,}{floor_total:>8,}  above the floor: {total - floor_total}")
    ok = report.status == "complete" and calls.get("DeleteSnapshot", 0) == 0 and total <= floor_total * 1.10 + 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
