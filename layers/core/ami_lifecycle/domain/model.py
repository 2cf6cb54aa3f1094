"""Facts about an image, as read from DescribeImages. Plain data: no AWS calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .tags import TagError, parse_aws_time

# Stands in for an unreadable CreationDate: the newest possible, so keep-latest ranks it first.
UNKNOWN_CREATION = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True)
class Reference:
    """Something that uses an image: a resource type (`ec2:Instance`, `ec2:LaunchTemplate`,
    `ssm:Parameter`, `autoscaling:LaunchConfiguration`, ...) and its id or ARN."""

    resource_type: str
    resource: str

    def __str__(self) -> str:
        return f"{self.resource_type} {self.resource}"


@dataclass(frozen=True)
class Image:
    image_id: str
    region: str
    name: str
    state: str
    creation_date: datetime
    owner_id: str = ""
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    snapshot_ids: tuple[str, ...] = ()
    size_gib: int = 0
    encrypted: bool = False
    kms_key_ids: tuple[str, ...] = ()
    deprecation_time: datetime | None = None
    # "enabled", "enabled-with-cooldown", "disabled-until-<time>", "disabled" or None (unknown).
    deregistration_protection: str | None = None
    source_image_id: str | None = None
    source_region: str | None = None
    public: bool = False
    # When anyone last launched an instance from it (DescribeImages `LastLaunchedTime`, reported by
    # EC2 with up to 24 hours of delay); None when never launched or not reported.
    last_launched_time: datetime | None = None
    # Why `creation_date` could not be read (it is then UNKNOWN_CREATION): such an image is never retired.
    creation_error: str | None = None

    @property
    def protected(self) -> bool:
        """True while EC2 would refuse DeregisterImage because of deregistration protection."""
        p = self.deregistration_protection
        # (None or "" mean disabled; the exact "disabled" needs no lowering.)
        return bool(p) and p != "disabled" and p.lower() != "disabled"  # type: ignore[union-attr]

    @classmethod
    def from_api(cls, data: dict[str, Any], region: str) -> Image:
        """Build from one element of DescribeImages' `Images`."""
        snapshots: list[str] = []
        kms: list[str] = []
        size = 0
        encrypted = False
        for bdm in data.get("BlockDeviceMappings") or []:
            ebs = bdm.get("Ebs") or {}
            if ebs.get("SnapshotId"):
                snapshots.append(ebs["SnapshotId"])
            size += int(ebs.get("VolumeSize") or 0)
            if ebs.get("Encrypted"):
                encrypted = True
            if ebs.get("KmsKeyId"):
                kms.append(ebs["KmsKeyId"])
        deprecation = None
        if data.get("DeprecationTime"):
            try:
                deprecation = parse_aws_time(data["DeprecationTime"])
            except TagError:
                deprecation = None
        # An unreadable CreationDate never stops a listing: the image is kept (see retention.decide).
        creation_error = None
        try:
            created = parse_aws_time(str(data.get("CreationDate") or ""))
        except TagError:
            raw = str(data.get("CreationDate"))[:40]
            created, creation_error = UNKNOWN_CREATION, f"CreationDate {raw!r} is unreadable: never retired"
        last_launched = None
        if data.get("LastLaunchedTime"):
            try:
                last_launched = parse_aws_time(str(data["LastLaunchedTime"]))
            except TagError:
                last_launched = None
        return cls(
            image_id=data["ImageId"],
            region=region,
            name=data.get("Name") or "",
            state=data.get("State") or "unknown",
            creation_date=created,
            creation_error=creation_error,
            owner_id=data.get("OwnerId") or "",
            description=data.get("Description") or "",
            tags={str(t["Key"]): str(t.get("Value") or "") for t in data.get("Tags") or []},
            snapshot_ids=tuple(dict.fromkeys(snapshots)),
            size_gib=size,
            encrypted=encrypted,
            kms_key_ids=tuple(dict.fromkeys(kms)),
            deprecation_time=deprecation,
            deregistration_protection=data.get("DeregistrationProtection"),
            source_image_id=data.get("SourceImageId"),
            source_region=data.get("SourceImageRegion"),
            public=bool(data.get("Public")),
            last_launched_time=last_launched,
        )
