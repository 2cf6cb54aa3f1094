"""The EC2 (and Auto Scaling) gateway: every AWS call the lifecycle makes on images goes through here.

Each method is one real API, called with its real parameters; no decisions are made here.
Callers get plain `Image` objects and small dicts back.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..domain.model import Image, Reference
from .errors import NOT_FOUND_CODES, error_code

if TYPE_CHECKING:  # the sweep's evidence types: imported where used (the event path never needs them)
    from ..domain.evidence import LaunchPermissions, UsageEntry, UsageReport

# DescribeImageReferences accepts at most this many image ids per call (our documented assumption).
REFERENCES_BATCH = 10
# ListImagesInRecycleBin accepts at most 20 image ids per call.
RECYCLE_BIN_BATCH = 20
# CreateTags accepts up to 1000 resource ids per call.
CREATE_TAGS_BATCH = 1000
# DescribeImageUsageReports / ...Entries accept at most 200 image or report ids per call.
USAGE_REPORT_BATCH = 200
# GetParameters accepts at most 10 names per call; DescribeParameters returns at most 50 per page.
GET_PARAMETERS_BATCH = 10
# A launch template version-depth that covers every version (DescribeImageReferences allows 1..10000).
ALL_VERSIONS = "10000"


class Ec2:
    def __init__(self, client: Any, region: str) -> None:
        self.client = client
        self.region = region

    # ------------------------------------------------------------ images

    def describe_image(self, image_id: str) -> Image | None:
        """One image, deprecated or disabled included; None when it does not exist (any more)."""
        try:
            resp = self.client.describe_images(ImageIds=[image_id], IncludeDeprecated=True, IncludeDisabled=True)
        except ClientError as e:
            if error_code(e) in NOT_FOUND_CODES:
                return None
            raise
        images = [Image.from_api(i, self.region) for i in resp.get("Images", [])]
        return images[0] if images else None

    def iter_images(
        self,
        *,
        owners: Sequence[str] = ("self",),
        image_ids: Sequence[str] = (),
        filters: Sequence[Mapping[str, Any]] = (),
        include_disabled: bool = True,
        page_size: int = 1000,
    ) -> Iterator[Image]:
        """Every matching image, in pages of `page_size` (EC2 allows up to 1000)."""
        kwargs: dict[str, Any] = {"IncludeDeprecated": True, "IncludeDisabled": include_disabled}
        if image_ids:
            kwargs["ImageIds"] = list(image_ids)
        else:
            kwargs["Owners"] = list(owners)
            kwargs["PaginationConfig"] = {"PageSize": page_size}
        if filters:
            kwargs["Filters"] = [dict(f) for f in filters]
        paginator = self.client.get_paginator("describe_images")
        try:
            for page in paginator.paginate(**kwargs):
                for data in page.get("Images", []):
                    yield Image.from_api(data, self.region)
        except ClientError as e:
            if image_ids and error_code(e) in NOT_FOUND_CODES:
                # Some of the ids are gone: fall back to asking one by one.
                for image_id in image_ids:
                    image = self.describe_image(image_id)
                    if image is not None:
                        yield image
                return
            raise

    def images_with_reasons(
        self, *, image_ids: Sequence[str] = (), filters: Sequence[Mapping[str, Any]] = ()
    ) -> list[tuple[Image, str]]:
        """DescribeImages (every page; owned images unless ids are given) -> (Image, StateReason
        message) pairs: why a failed copy failed."""
        kwargs: dict[str, Any] = {"IncludeDeprecated": True, "IncludeDisabled": True}
        if image_ids:
            kwargs["ImageIds"] = list(image_ids)
        else:
            kwargs["Owners"] = ["self"]
            kwargs["PaginationConfig"] = {"PageSize": 1000}
        if filters:
            kwargs["Filters"] = [dict(f) for f in filters]
        out: list[tuple[Image, str]] = []
        for page in self.client.get_paginator("describe_images").paginate(**kwargs):
            for data in page.get("Images", []):
                reason = data.get("StateReason") or {}
                out.append((Image.from_api(data, self.region), str(reason.get("Message") or reason.get("Code") or "")))
        return out

    def create_tags(self, resource_ids: Iterable[str], tags: Mapping[str, str]) -> None:
        """One CreateTags call for up to 1000 resources (images and snapshots together)."""
        ids = list(dict.fromkeys(resource_ids))
        if not ids or not tags:
            return
        tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
        for start in range(0, len(ids), CREATE_TAGS_BATCH):
            self.client.create_tags(Resources=ids[start : start + CREATE_TAGS_BATCH], Tags=tag_list)

    def delete_tags(self, resource_ids: Iterable[str], keys: Iterable[str]) -> None:
        ids, key_list = list(dict.fromkeys(resource_ids)), list(keys)
        if ids and key_list:
            self.client.delete_tags(Resources=ids, Tags=[{"Key": k} for k in key_list])

    def enable_deprecation(self, image_id: str, when: datetime) -> None:
        self.client.enable_image_deprecation(ImageId=image_id, DeprecateAt=when.astimezone(UTC))

    def disable_deprecation(self, image_id: str) -> None:
        self.client.disable_image_deprecation(ImageId=image_id)

    def copy_image(
        self,
        *,
        source_image_id: str,
        source_region: str,
        name: str,
        description: str,
        client_token: str,
        tags: Mapping[str, str],
        encrypted: bool,
        kms_key_id: str | None,
    ) -> str:
        """CopyImage, issued in this (the destination) region. Tags go on at creation, on the image
        and its snapshots, so tag-on-create policies are satisfied."""
        tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
        kwargs: dict[str, Any] = {
            "SourceImageId": source_image_id,
            "SourceRegion": source_region,
            "Name": name,
            "ClientToken": client_token,
            "TagSpecifications": [
                {"ResourceType": "image", "Tags": tag_list},
                {"ResourceType": "snapshot", "Tags": tag_list},
            ],
        }
        if description:
            kwargs["Description"] = description
        if encrypted:
            kwargs["Encrypted"] = True
            if kms_key_id:
                kwargs["KmsKeyId"] = kms_key_id
        resp = self.client.copy_image(**kwargs)
        return str(resp["ImageId"])

    def deregister(self, image_id: str, *, delete_snapshots: bool = True) -> list[dict[str, str]]:
        """DeregisterImage; with delete_snapshots, EC2 deletes the snapshots no other image uses and
        returns one result per snapshot (`success`, `skipped`, `missing-permissions`, ...)."""
        resp = self.client.deregister_image(ImageId=image_id, DeleteAssociatedSnapshots=delete_snapshots)
        return [
            {"SnapshotId": r.get("SnapshotId", ""), "ReturnCode": r.get("ReturnCode", "")}
            for r in resp.get("DeleteSnapshotResults", [])
        ]

    def disable_image(self, image_id: str) -> None:
        self.client.disable_image(ImageId=image_id)

    def enable_image(self, image_id: str) -> None:
        self.client.enable_image(ImageId=image_id)

    def add_launch_permissions(self, image_id: str, permissions: LaunchPermissions) -> None:
        """ModifyImageAttribute(launchPermission Add): give back who could launch the image."""
        add: list[dict[str, str]] = [{"UserId": a} for a in permissions.accounts]
        add += [{"OrganizationArn": o} for o in permissions.organizations]
        add += [{"OrganizationalUnitArn": u} for u in permissions.organizational_units]
        if permissions.public:
            add.append({"Group": "all"})
        if add:
            self.client.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": add})

    def delete_snapshot(self, snapshot_id: str) -> None:
        self.client.delete_snapshot(SnapshotId=snapshot_id)

    def snapshots(self, snapshot_ids: Sequence[str]) -> list[dict[str, Any]]:
        if not snapshot_ids:
            return []
        try:
            return list(self.client.describe_snapshots(SnapshotIds=list(snapshot_ids)).get("Snapshots", []))
        except ClientError as e:
            if error_code(e) == "InvalidSnapshot.NotFound":
                return []
            raise

    def iter_snapshots(
        self,
        *,
        owner_ids: Sequence[str] = ("self",),
        filters: Sequence[Mapping[str, Any]] = (),
        page_size: int = 1000,
    ) -> Iterator[dict[str, Any]]:
        """Every matching snapshot (DescribeSnapshots, pages of `page_size`), as EC2 returns them."""
        kwargs: dict[str, Any] = {"OwnerIds": list(owner_ids), "PaginationConfig": {"PageSize": page_size}}
        if filters:
            kwargs["Filters"] = [dict(f) for f in filters]
        for page in self.client.get_paginator("describe_snapshots").paginate(**kwargs):
            yield from page.get("Snapshots", [])

    def images_in_recycle_bin(self, image_ids: Sequence[str]) -> set[str]:
        """Which of these image ids are in the Recycle Bin (ListImagesInRecycleBin, 20 ids per call)."""
        ids = list(dict.fromkeys(image_ids))
        found: set[str] = set()
        paginator = self.client.get_paginator("list_images_in_recycle_bin")
        for start in range(0, len(ids), RECYCLE_BIN_BATCH):
            for page in paginator.paginate(ImageIds=ids[start : start + RECYCLE_BIN_BATCH]):
                found.update(i["ImageId"] for i in page.get("Images", []))
        return found

    def launch_permissions(self, image: Image) -> LaunchPermissions:
        """Who may launch the image: DescribeImageAttribute(launchPermission), one call."""
        from ..domain.evidence import LaunchPermissions

        resp = self.client.describe_image_attribute(ImageId=image.image_id, Attribute="launchPermission")
        accounts, orgs, units = [], [], []
        public = image.public
        for p in resp.get("LaunchPermissions") or []:
            if p.get("UserId"):
                accounts.append(str(p["UserId"]))
            if p.get("OrganizationArn"):
                orgs.append(str(p["OrganizationArn"]))
            if p.get("OrganizationalUnitArn"):
                units.append(str(p["OrganizationalUnitArn"]))
            if p.get("Group") == "all":
                public = True
        return LaunchPermissions(tuple(accounts), tuple(orgs), tuple(units), public)

    def usage_reports(self, image_ids: Sequence[str]) -> list[UsageReport]:
        """The AMI usage reports of these images (DescribeImageUsageReports, 200 ids per call)."""
        from ..domain.evidence import UsageReport

        ids = list(dict.fromkeys(image_ids))
        found: list[UsageReport] = []
        paginator = self.client.get_paginator("describe_image_usage_reports")
        for start in range(0, len(ids), USAGE_REPORT_BATCH):
            for page in paginator.paginate(ImageIds=ids[start : start + USAGE_REPORT_BATCH]):
                for r in page.get("ImageUsageReports", []):
                    found.append(
                        UsageReport(
                            report_id=str(r.get("ReportId", "")),
                            image_id=str(r.get("ImageId", "")),
                            state=str(r.get("State", "")),
                            created=_aware(r.get("CreationTime")),
                            account_ids=tuple(str(a) for a in r.get("AccountIds") or ()),
                            state_reason=str(r.get("StateReason", "")),
                        )
                    )
        return found

    def usage_report_entries(self, report_ids: Sequence[str]) -> dict[str, list[UsageEntry]]:
        """The entries of these usage reports, by report id (every report asked for has a list)."""
        from ..domain.evidence import UsageEntry

        ids = list(dict.fromkeys(report_ids))
        found: dict[str, list[UsageEntry]] = {i: [] for i in ids}
        paginator = self.client.get_paginator("describe_image_usage_report_entries")
        for start in range(0, len(ids), USAGE_REPORT_BATCH):
            for page in paginator.paginate(ReportIds=ids[start : start + USAGE_REPORT_BATCH]):
                for e in page.get("ImageUsageReportEntries", []):
                    entry = UsageEntry(
                        report_id=str(e.get("ReportId", "")),
                        image_id=str(e.get("ImageId", "")),
                        account_id=str(e.get("AccountId", "")),
                        resource_type=str(e.get("ResourceType", "")),
                        usage_count=int(e.get("UsageCount") or 0),
                    )
                    found.setdefault(entry.report_id, []).append(entry)
        return found

    def create_usage_report(self, image_id: str, client_token: str) -> str:
        """CreateImageUsageReport over every account, instances and every launch template version."""
        resp = self.client.create_image_usage_report(
            ImageId=image_id,
            ResourceTypes=[
                {"ResourceType": "ec2:Instance"},
                {
                    "ResourceType": "ec2:LaunchTemplate",
                    "ResourceTypeOptions": [{"OptionName": "version-depth", "OptionValues": ["10000"]}],
                },
            ],
            ClientToken=client_token,
        )
        return str(resp["ReportId"])

    def snapshot_shared(self, snapshot_id: str) -> bool:
        """Whether a snapshot grants createVolumePermission to anyone (another account may have
        registered an image on it)."""
        resp = self.client.describe_snapshot_attribute(SnapshotId=snapshot_id, Attribute="createVolumePermission")
        return bool(resp.get("CreateVolumePermissions"))

    def image_references(self, image_ids: Sequence[str]) -> dict[str, list[Reference]]:
        """DescribeImageReferences over every resource type it knows (instances, every launch template
        version, SSM parameters, Image Builder recipes), in batches of 10 image ids."""
        found: dict[str, list[Reference]] = {i: [] for i in image_ids}
        ids = list(dict.fromkeys(image_ids))
        paginator = self.client.get_paginator("describe_image_references")
        for start in range(0, len(ids), REFERENCES_BATCH):
            batch = ids[start : start + REFERENCES_BATCH]
            pages = paginator.paginate(
                ImageIds=batch,
                ResourceTypes=[
                    {"ResourceType": "ec2:Instance"},
                    {
                        "ResourceType": "ec2:LaunchTemplate",
                        "ResourceTypeOptions": [{"OptionName": "version-depth", "OptionValues": [ALL_VERSIONS]}],
                    },
                    {"ResourceType": "ssm:Parameter"},
                    {"ResourceType": "imagebuilder:ImageRecipe"},
                    {"ResourceType": "imagebuilder:ContainerRecipe"},
                ],
            )
            for page in pages:
                for ref in page.get("ImageReferences", []):
                    found.setdefault(ref["ImageId"], []).append(
                        Reference(ref.get("ResourceType", "?"), ref.get("Arn", "?"))
                    )
        return found

    def instance_image_ids(self) -> dict[str, list[Reference]]:
        """Every instance that is not terminated, by image id (DescribeInstances, pages of 1000)."""
        used: dict[str, list[Reference]] = {}
        paginator = self.client.get_paginator("describe_instances")
        pages = paginator.paginate(
            Filters=[
                {
                    "Name": "instance-state-name",
                    "Values": ["pending", "running", "shutting-down", "stopping", "stopped"],
                }
            ],
            PaginationConfig={"PageSize": 1000},
        )
        for page in pages:
            for reservation in page.get("Reservations", []):
                for inst in reservation.get("Instances", []):
                    if inst.get("ImageId"):
                        used.setdefault(inst["ImageId"], []).append(Reference("ec2:Instance", inst["InstanceId"]))
        return used

    def launch_template_ids(self) -> list[str]:
        """Every launch template of the region (DescribeLaunchTemplates, pages of 200)."""
        paginator = self.client.get_paginator("describe_launch_templates")
        return [
            lt["LaunchTemplateId"]
            for page in paginator.paginate(PaginationConfig={"PageSize": 200})
            for lt in page.get("LaunchTemplates", [])
        ]

    def launch_template_versions_image_ids(self, template_ids: Sequence[str]) -> dict[str, list[Reference]]:
        """Every version of the given launch templates, by image id (one DescribeLaunchTemplateVersions
        listing per template)."""
        used: dict[str, list[Reference]] = {}
        versions = self.client.get_paginator("describe_launch_template_versions")
        for template_id in template_ids:
            for vpage in versions.paginate(LaunchTemplateId=template_id):
                for version in vpage.get("LaunchTemplateVersions", []):
                    image_id = (version.get("LaunchTemplateData") or {}).get("ImageId")
                    if image_id:
                        ref = f"{template_id}:{version.get('VersionNumber')}"
                        used.setdefault(image_id, []).append(Reference("ec2:LaunchTemplate", ref))
        return used


def _aware(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


class Ssm:
    """SSM parameters of data type `aws:ec2:image` (the ones EC2 validates as AMI ids and that
    launch templates and Auto Scaling resolve): DescribeParameters (50 per page), then their values
    with GetParameters (10 names per call)."""

    def __init__(self, client: Any, region: str) -> None:
        self.client = client
        self.region = region

    def image_parameters(self) -> dict[str, list[Reference]]:
        names: list[str] = []
        paginator = self.client.get_paginator("describe_parameters")
        pages = paginator.paginate(
            ParameterFilters=[{"Key": "DataType", "Option": "Equals", "Values": ["aws:ec2:image"]}],
            PaginationConfig={"PageSize": 50},
        )
        for page in pages:
            names.extend(str(p["Name"]) for p in page.get("Parameters", []) if p.get("Name"))
        used: dict[str, list[Reference]] = {}
        for start in range(0, len(names), GET_PARAMETERS_BATCH):
            resp = self.client.get_parameters(Names=names[start : start + GET_PARAMETERS_BATCH])
            for p in resp.get("Parameters", []):
                value = str(p.get("Value") or "").strip()
                if value.startswith("ami-"):
                    used.setdefault(value, []).append(Reference("ssm:Parameter", str(p.get("ARN") or p["Name"])))
        return used


class ImageBuilder:
    """Image Builder recipes of the account whose parent image is an AMI: ListImageRecipes and
    ListContainerRecipes (owner Self; the container recipe summary carries its `instanceImage`)."""

    def __init__(self, client: Any, region: str) -> None:
        self.client = client
        self.region = region

    def recipe_image_ids(self) -> dict[str, list[Reference]]:
        used: dict[str, list[Reference]] = {}
        for operation, key, field, kind in (
            ("list_image_recipes", "imageRecipeSummaryList", "parentImage", "imagebuilder:ImageRecipe"),
            ("list_container_recipes", "containerRecipeSummaryList", "instanceImage", "imagebuilder:ContainerRecipe"),
        ):
            for page in self.client.get_paginator(operation).paginate(owner="Self"):
                for recipe in page.get(key, []):
                    image_id = str(recipe.get(field) or "").strip()
                    if image_id.startswith("ami-"):
                        used.setdefault(image_id, []).append(Reference(kind, str(recipe.get("arn", "?"))))
        return used


class AutoScaling:
    """Launch configurations still pin images (ASGs with launch templates are covered by the
    launch-template check, which looks at every version)."""

    def __init__(self, client: Any, region: str) -> None:
        self.client = client
        self.region = region

    def launch_configuration_image_ids(self) -> dict[str, list[Reference]]:
        used: dict[str, list[Reference]] = {}
        paginator = self.client.get_paginator("describe_launch_configurations")
        for page in paginator.paginate(PaginationConfig={"PageSize": 100}):
            for lc in page.get("LaunchConfigurations", []):
                if lc.get("ImageId"):
                    used.setdefault(lc["ImageId"], []).append(
                        Reference("autoscaling:LaunchConfiguration", lc["LaunchConfigurationName"])
                    )
        return used


@dataclass(frozen=True)
class RegionGateways:
    """The gateways one region's sweep needs, over the clients of one account."""

    region: str
    ec2: Ec2
    autoscaling: AutoScaling
    ssm: Ssm
    imagebuilder: ImageBuilder

    @classmethod
    def of(cls, aws: Any, region: str) -> RegionGateways:
        """`aws`: a `clients.Aws` (anything with `client(service, region)`)."""
        return cls(
            region,
            Ec2(aws.client("ec2", region), region),
            AutoScaling(aws.client("autoscaling", region), region),
            Ssm(aws.client("ssm", region), region),
            ImageBuilder(aws.client("imagebuilder", region), region),
        )
