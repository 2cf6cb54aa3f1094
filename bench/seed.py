"""Seeding large fleets into the embedded moto, fast.

Registering 10,000 images through the API (RegisterImage + CreateTags + EnableImageDeprecation,
three HTTP round trips each) takes minutes in moto. The benchmark therefore seeds through moto's
backend directly, in the same process as the ThreadedMotoServer (they share the backend objects):

- ``moto.ec2.models.ec2_backends[account][region]``: an ``Ami(...)`` per image, registered in
  ``backend.amis``; moto gives each one an EBS snapshot, as RegisterImage does;
- its lifecycle tags, on the image and on its snapshot, with ``backend.create_tags`` (the tags the
  tool itself writes when it adopts an image: managed, retention, expires-at, family, keep-latest);
- its native deprecation time, with the backend's ``enable_image_deprecation`` (the method the
  ``EnableImageDeprecation`` action calls, from ``ami_lifecycle_localaws.motoext``), so that the
  sweep sees a fleet the tool has already tagged, as in production;
- deregistration protection with ``enable_image_deregistration_protection`` (same origin).

The few resources that *use* images (instances, launch templates with two versions, launch
configurations) are created through the API: they are few, and it keeps moto's own bookkeeping.
Nothing seeded is counted: the benchmark resets moto's call counter after seeding.

Shape of a fleet of n images in a region (deterministic for a seed): families of 1 to 150 images,
creation dates uniform over the last 100 days with a 90-day retention (so about 10% expired; another
share r expired stretches the 100 days to 90 / (1 - r));
97% managed, 2% unmanaged, 1% owned by AWS Backup; of the managed images 3% held and 1% protected;
images in use: about 0.6% of the fleet, all of them expired ones (that is where it matters).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ami_lifecycle_localaws.server import ACCOUNT_ID as ACCOUNT

PREFIX = "ami-lifecycle"
RETENTION = timedelta(days=90)
MAX_AGE_DAYS = 100
FAMILY_SIZES = (1, 2, 3, 5, 8, 13, 25, 60, 150)
FAMILY_WEIGHTS = (10, 8, 8, 8, 6, 5, 4, 2, 1)


@dataclass
class Planned:
    image_id: str
    name: str
    family: str
    created: datetime
    kind: str  # "managed", "unmanaged", "foreign"
    tags: dict[str, str]
    expired: bool
    hold: bool = False
    protected: bool = False
    snapshot_id: str = ""


@dataclass
class Fleet:
    region: str
    images: list[Planned] = field(default_factory=list)
    account: str = ACCOUNT  # the moto account the fleet is seeded in
    references: dict[str, list[str]] = field(default_factory=dict)  # image id -> what uses it
    instances: int = 0
    launch_templates: int = 0
    launch_template_versions: int = 0
    launch_configurations: int = 0

    @property
    def managed(self) -> list[Planned]:
        return [p for p in self.images if p.kind == "managed"]

    @property
    def expired(self) -> list[Planned]:
        return [p for p in self.managed if p.expired]


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def max_age_days(expired_ratio: float | None) -> float:
    """The age span that leaves `expired_ratio` of uniformly aged images past the retention."""
    if expired_ratio is None:
        return MAX_AGE_DAYS
    if not 0 <= expired_ratio < 1:
        raise ValueError(f"expired ratio {expired_ratio} is not in [0, 1)")
    return RETENTION.days / (1 - expired_ratio)


def plan(region: str, n: int, now: datetime, rng: random.Random, max_age: float = MAX_AGE_DAYS) -> list[Planned]:
    """The images of one region, without ids (filled in when seeded); ages uniform in [0, max_age) days."""
    out: list[Planned] = []
    family_index = 0
    while len(out) < n:
        size = min(rng.choices(FAMILY_SIZES, FAMILY_WEIGHTS)[0], n - len(out))
        family = f"app{family_index:05d}"
        family_index += 1
        for _ in range(size):
            age = timedelta(seconds=rng.uniform(0, max_age * 86400))
            created = (now - age).replace(microsecond=0)
            expires = created + RETENTION
            roll = rng.random()
            kind = "managed" if roll < 0.97 else ("unmanaged" if roll < 0.99 else "foreign")
            tags: dict[str, str] = {}
            hold = protected = False
            if kind == "managed":
                tags = {
                    f"{PREFIX}:managed": "true",
                    f"{PREFIX}:retention": "90d",
                    f"{PREFIX}:expires-at": _iso(expires),
                    f"{PREFIX}:family": family,
                    f"{PREFIX}:keep-latest": "1",
                }
                extra = rng.random()
                hold = extra < 0.03
                protected = 0.03 <= extra < 0.04
                if hold:
                    tags[f"{PREFIX}:hold"] = "true"
            elif kind == "foreign":
                tags = {"aws:backup:source-resource": f"arn:aws:ec2:{region}:{ACCOUNT}:instance/i-0123"}
            out.append(
                Planned(
                    image_id="",
                    name=f"{family}-{created:%Y-%m-%d-%H%M%S}",
                    family=family,
                    created=created,
                    kind=kind,
                    tags=tags,
                    expired=expires <= now,
                    hold=hold,
                    protected=protected,
                )
            )
    return out


def seed_images(region: str, planned: list[Planned], account: str = ACCOUNT) -> None:
    """Register the planned images in moto's backend (see the module docstring)."""
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.amis import Ami
    from moto.ec2.utils import random_ami_id

    backend: Any = ec2_backends[account][region]
    for p in planned:
        ami = Ami(
            backend,
            random_ami_id(),
            name=p.name,
            description=f"{p.family} image",
            creation_date=p.created,
            region_name=f"{region}a",
            root_device_name="/dev/xvda",
            root_device_type="ebs",
            architecture="x86_64",
            virtualization_type="hvm",
        )
        backend.amis[ami.id] = ami
        p.image_id, p.snapshot_id = ami.id, ami.ebs_snapshot.id
        if p.tags:
            resources = [ami.id, ami.ebs_snapshot.id] if p.kind == "managed" else [ami.id]
            backend.create_tags(resources, p.tags)
        if p.kind == "managed" and not p.expired:
            backend.enable_image_deprecation(ami.id, p.created + RETENTION)
        if p.protected:
            backend.enable_image_deregistration_protection(ami.id, False)


def seed_references(fleet: Fleet, session: Any, rng: random.Random) -> None:
    """Instances, launch templates (two versions each) and launch configurations that use expired
    images, through the API: about 0.6% of the fleet, at least one of each."""
    n = len(fleet.images)
    n_instances = max(1, n // 300)
    n_templates = max(1, n // 1000)
    n_configs = max(1, n // 2000)
    pool = [p for p in fleet.expired if not p.hold and not p.protected]
    picks = rng.sample(pool, min(len(pool), n_instances + 2 * n_templates + n_configs))
    ec2 = session.client("ec2", region_name=fleet.region)
    autoscaling = session.client("autoscaling", region_name=fleet.region)

    def take() -> Planned | None:
        return picks.pop() if picks else None

    for _ in range(n_instances):
        p = take()
        if p is None:
            break
        resp = ec2.run_instances(ImageId=p.image_id, MinCount=1, MaxCount=1, InstanceType="t3.micro")
        fleet.references.setdefault(p.image_id, []).append(f"instance {resp['Instances'][0]['InstanceId']}")
        fleet.instances += 1
    for i in range(n_templates):
        first, second = take(), take()
        if first is None:
            break
        lt = ec2.create_launch_template(
            LaunchTemplateName=f"bench-{fleet.region}-{i}",
            LaunchTemplateData={"ImageId": first.image_id, "InstanceType": "t3.micro"},
        )["LaunchTemplate"]
        fleet.launch_templates += 1
        fleet.launch_template_versions += 1
        fleet.references.setdefault(first.image_id, []).append(f"launch template {lt['LaunchTemplateId']} v1")
        if second is not None:
            ec2.create_launch_template_version(
                LaunchTemplateId=lt["LaunchTemplateId"], LaunchTemplateData={"ImageId": second.image_id}
            )
            fleet.launch_template_versions += 1
            fleet.references.setdefault(second.image_id, []).append(f"launch template {lt['LaunchTemplateId']} v2")
    for i in range(n_configs):
        p = take()
        if p is None:
            break
        autoscaling.create_launch_configuration(
            LaunchConfigurationName=f"bench-{fleet.region}-{i}", ImageId=p.image_id, InstanceType="t3.micro"
        )
        fleet.launch_configurations += 1
        fleet.references.setdefault(p.image_id, []).append(f"launch configuration bench-{fleet.region}-{i}")


def seed_fleet(
    region: str,
    n: int,
    now: datetime,
    session: Any,
    seed: int = 7,
    expired_ratio: float | None = None,
    account: str = ACCOUNT,
) -> Fleet:
    """`account`: the moto account to seed (`session` must act in it: its clients create the
    instances, launch templates and launch configurations)."""
    rng = random.Random(f"{seed}/{account}/{region}/{n}" if account != ACCOUNT else f"{seed}/{region}/{n}")
    fleet = Fleet(region, plan(region, n, now, rng, max_age_days(expired_ratio)), account=account)
    seed_images(region, fleet.images, account)
    seed_references(fleet, session, rng)
    return fleet


def still_registered(region: str, image_ids: list[str], account: str = ACCOUNT) -> set[str]:
    from moto.ec2.models import ec2_backends

    amis = ec2_backends[account][region].amis
    return {i for i in image_ids if i in amis}


def as_images(fleet: Fleet) -> list[Any]:
    """The managed images as the sweep will see them (ami_lifecycle.domain.model.Image), for the engine's
    expected decisions."""
    from ami_lifecycle.domain.model import Image

    return [
        Image(
            image_id=p.image_id,
            region=fleet.region,
            name=p.name,
            state="available",
            creation_date=p.created,
            owner_id=fleet.account,
            tags=dict(p.tags),
            snapshot_ids=(p.snapshot_id,),
            deregistration_protection="enabled" if p.protected else "disabled",
        )
        for p in fleet.managed
    ]
