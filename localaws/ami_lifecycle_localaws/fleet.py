"""Seeding images into the embedded local AWS (moto): for the tests, the demo and the benchmarks.

moto creates every image "now"; real fleets are old. `backdate` moves an image's CreationDate
into the past by editing moto's in-process backend, which the in-process mock and a
ThreadedMotoServer in the same process share.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

DEFAULT_ACCOUNT = "123456789012"


def _backend(region: str, account_id: str = DEFAULT_ACCOUNT) -> Any:
    from moto.ec2.models import ec2_backends

    return ec2_backends[account_id][region]


def backdate(region: str, image_id: str, created: datetime, account_id: str = DEFAULT_ACCOUNT) -> None:
    """Set an image's CreationDate (moto only)."""
    _backend(region, account_id).amis[image_id].creation_date = created


def set_owner(region: str, image_id: str, owner_id: str, account_id: str = DEFAULT_ACCOUNT) -> None:
    """Make an image look owned by another account (moto only)."""
    _backend(region, account_id).amis[image_id].owner_id = owner_id


def create_image(
    ec2: Any,
    name: str,
    *,
    tags: Mapping[str, str] | None = None,
    created: datetime | None = None,
    description: str = "",
    account_id: str = DEFAULT_ACCOUNT,
) -> str:
    """Register an image (moto gives it one snapshot), tag it, and optionally backdate it (`account_id`:
    the account `ec2` acts in)."""
    resp = ec2.register_image(Name=name, Description=description or f"{name} image", RootDeviceName="/dev/xvda")
    image_id = str(resp["ImageId"])
    if tags:
        ec2.create_tags(Resources=[image_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    if created is not None:
        backdate(ec2.meta.region_name, image_id, created, account_id)
    return image_id


def snapshot_ids(ec2: Any, image_id: str) -> list[str]:
    image = ec2.describe_images(ImageIds=[image_id], IncludeDisabled=True)["Images"][0]
    return [b["Ebs"]["SnapshotId"] for b in image.get("BlockDeviceMappings", []) if "Ebs" in b]


def tags_of(ec2: Any, resource_id: str) -> dict[str, str]:
    resp = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [resource_id]}])
    return {t["Key"]: t["Value"] for t in resp.get("Tags", [])}
