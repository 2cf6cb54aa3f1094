"""The floor of a sweep: the fewest API calls a correct sweep of a seeded region can make, and what
it must leave behind. The one implementation, used by sweep_calls.py and scale.py."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import seed
from harness import HOME

# The fail-closed sources: SSM parameters, Image Builder recipes, launch permissions of candidates.
FAIL_CLOSED_SOURCES = ("DescribeParameters", "ListImageRecipes", "ListContainerRecipes", "DescribeImageAttribute")

NOTE = (
    "Floor: per region ceil(managed/1000) DescribeImages + the cheaper of ceil(candidates/10) "
    "DescribeImageReferences or listing instances and every launch template version (+ one empty page each of "
    "SSM parameters and Image Builder image and container recipes), + one DescribeLaunchConfigurations listing, + "
    "one DescribeImageAttribute (launch permissions) per candidate, + one DeregisterImage per retired image; "
    "nothing per snapshot (DeregisterImage deletes them); + the adoption of each untagged image no event adopted "
    "(one CreateTags for image and snapshot, one EnableImageDeprecation when its expiry is ahead: the tagging "
    "planner's actions). Expected retirements come from the pure engine over the seeded facts."
)


@dataclass
class RegionPlan:
    """What an ideal sweep of one seeded region must do, from the engine's expected decisions."""

    region: str
    images: int
    managed: int
    expected_retired: set[str]
    candidates: int
    floor: Counter[str]
    snapshots_after: int


def floor_for(fleet: seed.Fleet, now: datetime) -> RegionPlan:
    """The floor of one region's sweep: ceil(listed/1000) DescribeImages (the managed images: the
    sweep lists by tag), the cheapest reference check for the candidates, one DeregisterImage per
    retired image, nothing per snapshot (DeregisterImage deletes them)."""
    from ami_lifecycle.domain.evidence import checked_unused
    from ami_lifecycle.domain.model import Reference
    from ami_lifecycle.domain.retention import decide_all
    from ami_lifecycle.domain.settings import Settings

    settings = Settings(home_region=HOME)
    images = seed.as_images(fleet)
    pending = decide_all(images, settings, now, None, fleet.account)
    candidates = [i for i, d in pending.items() if d.awaits_reference_check]
    refs = {i: checked_unused([Reference("bench", r) for r in fleet.references.get(i, [])]) for i in candidates}
    final = decide_all(images, settings, now, refs, fleet.account)
    retired = {i for i, d in final.items() if d.retire}
    floor: Counter[str] = Counter()
    floor["DescribeImages"] = math.ceil(len(images) / 1000)
    if candidates:
        by_references = math.ceil(len(candidates) / 10)
        # Listing covers the same sources as DescribeImageReferences: instances, every launch template
        # version, SSM parameters (aws:ec2:image; the fleet has none: one empty page) and Image Builder
        # recipes (one empty page of image recipes and one of container recipes).
        by_listing = (
            math.ceil(max(1, fleet.instances) / 1000)
            + math.ceil(max(1, fleet.launch_templates) / 200)
            + fleet.launch_templates
            + 1  # DescribeParameters
            + 2  # ListImageRecipes, ListContainerRecipes
        )
        if by_references <= by_listing:
            floor["DescribeImageReferences"] = by_references
        else:
            floor["DescribeInstances"] = math.ceil(max(1, fleet.instances) / 1000)
            floor["DescribeLaunchTemplates"] = math.ceil(max(1, fleet.launch_templates) / 200)
            floor["DescribeLaunchTemplateVersions"] = fleet.launch_templates
            floor["DescribeParameters"] = 1
            floor["ListImageRecipes"] = 1
            floor["ListContainerRecipes"] = 1
        # Launch configurations are not covered by DescribeImageReferences: one listing either way.
        floor["DescribeLaunchConfigurations"] = math.ceil(max(1, fleet.launch_configurations) / 100)
        # Launch permissions of every candidate that can be shared (a disabled image cannot).
        floor["DescribeImageAttribute"] = sum(1 for i in images if i.image_id in candidates and i.state == "available")
    floor["DeregisterImage"] = len(retired)
    # The sweep reconciles missed events: every untagged image of the fleet is adopted (pure planner).
    floor["DescribeImages"] = math.ceil(len(fleet.images) / 1000)
    for kind, n in adoption_writes(fleet, settings, now).items():
        floor[kind] += n
    return RegionPlan(
        region=fleet.region,
        images=len(fleet.images),
        managed=len(images),
        expected_retired=retired,
        candidates=len(candidates),
        floor=floor,
        snapshots_after=len(images) - len(retired),
    )


def adoption_writes(fleet: seed.Fleet, settings: object, now: datetime) -> Counter[str]:
    """The API calls of the tagging planner's actions for the fleet's untagged images."""
    from ami_lifecycle.domain.actions import Kind
    from ami_lifecycle.domain.adoption import decide_adoption, plan_tagging
    from ami_lifecycle.domain.model import Image

    call = {Kind.TAG: "CreateTags", Kind.UNTAG: "DeleteTags", Kind.DEPRECATE: "EnableImageDeprecation"}
    writes: Counter[str] = Counter()
    for p in fleet.images:
        if p.kind != "unmanaged":
            continue
        image = Image(
            p.image_id,
            fleet.region,
            p.name,
            "available",
            p.created,
            fleet.account,
            tags=dict(p.tags),
            snapshot_ids=(p.snapshot_id,),
        )
        for action in plan_tagging(image, decide_adoption(image, settings, now, fleet.account), None):  # type: ignore[arg-type]
            writes[call[action.kind]] += 1
    return writes


def safety(plan: RegionPlan, fleet: seed.Fleet) -> tuple[int, int]:
    """(kept images that must still exist but are gone, expected retirements still registered)."""
    all_ids = [p.image_id for p in fleet.images]
    alive = seed.still_registered(plan.region, all_ids, fleet.account)
    wrongly_gone = [i for i in all_ids if i not in plan.expected_retired and i not in alive]
    not_retired = [i for i in plan.expected_retired if i in alive]
    return len(wrongly_gone), len(not_retired)


def moto_snapshot_pages(calls: Counter[str], plans: list[RegionPlan]) -> tuple[int, int]:
    """moto answers DescribeSnapshots in one page whatever MaxResults says; real EC2 pages by 1000."""
    moto = calls.get("DescribeSnapshots", 0)
    real = sum(max(1, math.ceil(p.snapshots_after / 1000)) for p in plans) if moto else 0
    return moto, real
