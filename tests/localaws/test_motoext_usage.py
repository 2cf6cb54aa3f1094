"""Tests for ami_lifecycle_localaws.motoext, entries 12-15: LastLaunchedTime, AMI usage reports, the minimal
EC2 Image Builder and DescribeImageAttribute, through real boto3 clients and several moto accounts."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ami_lifecycle_localaws import motoext
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
OTHER = "eu-west-1"
Clients = Callable[..., Any]  # the `ec2` and `imagebuilder` fixtures (tests/localaws/conftest.py)
OWNER = "123456789012"  # moto's default account
ALICE = "111111111111"
BOB = "222222222222"
COMPONENT = "arn:aws:imagebuilder:us-east-1:aws:component/update-linux/x.x.x"


def image(client: Any, name: str = "golden-image") -> str:
    return str(client.register_image(Name=name)["ImageId"])


def launch(client: Any, image_id: str, count: int = 1) -> list[str]:
    instances = client.run_instances(ImageId=image_id, MinCount=count, MaxCount=count)["Instances"]
    return [i["InstanceId"] for i in instances]


def error(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response: Any = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def image_recipe(client: Any, parent: str, name: str = "web-server", version: str = "1.0.0", **kwargs: Any) -> str:
    response = client.create_image_recipe(
        name=name, semanticVersion=version, parentImage=parent, components=[{"componentArn": COMPONENT}], **kwargs
    )
    return str(response["imageRecipeArn"])


def container_recipe(client: Any, instance_image: str, name: str = "api", version: str = "1.0.0") -> str:
    response = client.create_container_recipe(
        containerType="DOCKER",
        name=name,
        semanticVersion=version,
        parentImage="amazonlinux:latest",
        components=[{"componentArn": COMPONENT}],
        instanceConfiguration={"image": instance_image},
        dockerfileTemplateData="FROM {{{ imagebuilder:parentImage }}}\n{{{ imagebuilder:environments }}}",
        targetRepository={"service": "ECR", "repositoryName": "api"},
    )
    return str(response["containerRecipeArn"])


def share(client: Any, image_id: str, *accounts: str) -> None:
    client.modify_image_attribute(
        ImageId=image_id, LaunchPermission={"Add": [{"UserId": account} for account in accounts]}
    )


def usage_types(depth: int | None = None) -> list[dict[str, Any]]:
    template: dict[str, Any] = {"ResourceType": "ec2:LaunchTemplate"}
    if depth is not None:
        template["ResourceTypeOptions"] = [{"OptionName": "version-depth", "OptionValues": [str(depth)]}]
    return [{"ResourceType": "ec2:Instance"}, template]


def entries(client: Any, **kwargs: Any) -> list[tuple[str, str, int]]:
    found = client.describe_image_usage_report_entries(**kwargs)["ImageUsageReportEntries"]
    return sorted((e["AccountId"], e["ResourceType"], e["UsageCount"]) for e in found)


# --------------------------------------------------------------------------- 12. LastLaunchedTime


def test_last_launched_time_is_the_latest_launch_in_any_account(monkeypatch: pytest.MonkeyPatch, ec2: Clients) -> None:
    owner = ec2()
    ami = image(owner)
    assert "LastLaunchedTime" not in owner.describe_images(ImageIds=[ami])["Images"][0]
    assert owner.describe_image_attribute(ImageId=ami, Attribute="lastLaunchedTime")["LastLaunchedTime"] == {}

    def launch_at(client: Any, image_id: str, when: datetime) -> list[str]:
        monkeypatch.setattr("moto.ec2.models.instances.utcnow", lambda: when)
        return launch(client, image_id)

    launch_at(owner, ami, datetime(2026, 3, 1, 17, 0))
    shared = launch_at(ec2(account=ALICE), ami, datetime(2026, 3, 2, 9, 30, 15, 123456))
    ec2(account=ALICE).terminate_instances(InstanceIds=shared)  # a terminated instance was still launched
    launch_at(ec2(OTHER, account=BOB), ami, datetime(2026, 4, 1))  # the same id in another region does not count
    other_ami = image(owner, "other-image")
    launch_at(owner, other_ami, datetime(2026, 5, 1))

    described = {i["ImageId"]: i for i in owner.describe_images(Owners=["self"])["Images"]}
    assert described[ami]["LastLaunchedTime"] == "2026-03-02T09:30:15Z"
    assert described[other_ami]["LastLaunchedTime"] == "2026-05-01T00:00:00Z"
    attribute = owner.describe_image_attribute(ImageId=ami, Attribute="lastLaunchedTime")
    assert (attribute["ImageId"], attribute["LastLaunchedTime"]) == (ami, {"Value": "2026-03-02T09:30:15Z"})


def test_set_last_launched_pins_the_value_until_cleared(ec2: Clients) -> None:
    client = ec2()
    ami = image(client)
    launch(client, ami)

    motoext.set_last_launched(OWNER, REGION, ami, datetime(2026, 3, 1, 17, 0, 0, 999, tzinfo=UTC))
    assert client.describe_images(ImageIds=[ami])["Images"][0]["LastLaunchedTime"] == "2026-03-01T17:00:00Z"
    value = client.describe_image_attribute(ImageId=ami, Attribute="lastLaunchedTime")["LastLaunchedTime"]
    assert value == {"Value": "2026-03-01T17:00:00Z"}

    motoext.set_last_launched(OWNER, REGION, ami, None)  # EC2 has not reported the launch yet
    assert "LastLaunchedTime" not in client.describe_images(ImageIds=[ami])["Images"][0]
    assert client.describe_image_attribute(ImageId=ami, Attribute="lastLaunchedTime")["LastLaunchedTime"] == {}

    motoext.clear_last_launched(OWNER, REGION, ami)
    computed = client.describe_images(ImageIds=[ami])["Images"][0]["LastLaunchedTime"]
    assert abs(datetime.fromisoformat(computed) - datetime.now(UTC)) < timedelta(minutes=1)


def test_set_last_launched_of_an_unknown_image_fails() -> None:
    with pytest.raises(Exception, match="InvalidAMIID.NotFound"):
        motoext.set_last_launched(OWNER, REGION, "ami-0123456789abcdef0", datetime(2026, 1, 1, tzinfo=UTC))


# --------------------------------------------------------------------------- 13. AMI usage reports


def test_usage_report_counts_resources_of_the_other_accounts(ec2: Clients) -> None:
    owner = ec2()
    ami, other_ami = image(owner), image(owner, "other-image")
    launch(owner, ami)  # the owner's own usage is not reported
    alice, bob = ec2(account=ALICE), ec2(account=BOB)
    running = launch(alice, ami, 3)
    alice.stop_instances(InstanceIds=running[:1])  # stopped still counts
    alice.terminate_instances(InstanceIds=running[1:2])  # terminated does not
    launch(alice, other_ami)
    template = alice.create_launch_template(LaunchTemplateName="web", LaunchTemplateData={"ImageId": ami})
    template_id = template["LaunchTemplate"]["LaunchTemplateId"]
    alice.create_launch_template_version(LaunchTemplateId=template_id, LaunchTemplateData={"ImageId": ami})
    alice.create_launch_template_version(LaunchTemplateId=template_id, LaunchTemplateData={"ImageId": other_ami})
    bob.create_launch_template(LaunchTemplateName="batch", LaunchTemplateData={"ImageId": ami})
    launch(ec2(OTHER, account=BOB), ami)  # another region

    report_id = owner.create_image_usage_report(ImageId=ami, ResourceTypes=usage_types())["ReportId"]
    assert report_id.startswith("amiur-")
    assert entries(owner, ReportIds=[report_id]) == [
        (ALICE, "ec2:Instance", 2),
        (ALICE, "ec2:LaunchTemplate", 1),  # referenced by two versions, counted once
        (BOB, "ec2:LaunchTemplate", 1),
    ]
    raw = owner.describe_image_usage_report_entries(ReportIds=[report_id])["ImageUsageReportEntries"][0]
    assert set(raw) == {"ResourceType", "ReportId", "UsageCount", "AccountId", "ImageId", "ReportCreationTime"}
    assert (raw["ReportId"], raw["ImageId"]) == (report_id, ami)

    shallow = owner.create_image_usage_report(ImageId=ami, ResourceTypes=usage_types(depth=1))["ReportId"]
    assert entries(owner, ReportIds=[shallow]) == [(ALICE, "ec2:Instance", 2), (BOB, "ec2:LaunchTemplate", 1)]

    only_bob = owner.create_image_usage_report(ImageId=ami, ResourceTypes=usage_types(), AccountIds=[BOB])
    assert entries(owner, ReportIds=[only_bob["ReportId"]]) == [(BOB, "ec2:LaunchTemplate", 1)]


def test_usage_report_is_computed_when_created(ec2: Clients) -> None:
    owner = ec2()
    ami = image(owner)
    launch(ec2(account=ALICE), ami)
    report_id = owner.create_image_usage_report(ImageId=ami, ResourceTypes=usage_types())["ReportId"]
    launch(ec2(account=ALICE), ami)
    launch(ec2(account=BOB), ami)
    assert entries(owner, ReportIds=[report_id]) == [(ALICE, "ec2:Instance", 1)]


def test_usage_report_describes_its_request_and_expires_after_30_days(
    monkeypatch: pytest.MonkeyPatch, ec2: Clients
) -> None:
    owner = ec2()
    ami = image(owner)
    resource_types = usage_types(depth=5)
    report_id = owner.create_image_usage_report(
        ImageId=ami,
        ResourceTypes=resource_types,
        AccountIds=[ALICE, BOB],
        TagSpecifications=[{"ResourceType": "image-usage-report", "Tags": [{"Key": "team", "Value": "platform"}]}],
    )["ReportId"]

    report = owner.describe_image_usage_reports(ReportIds=[report_id])["ImageUsageReports"][0]
    assert (report["ImageId"], report["ReportId"], report["State"]) == (ami, report_id, "available")
    assert report["ResourceTypes"] == resource_types
    assert report["AccountIds"] == [ALICE, BOB]
    assert report["Tags"] == [{"Key": "team", "Value": "platform"}]
    assert report["ExpirationTime"] - report["CreationTime"] == timedelta(days=30)
    assert abs(report["CreationTime"] - datetime.now(UTC)) < timedelta(minutes=1)

    monkeypatch.setattr(motoext, "_now", lambda: datetime.now(UTC) + timedelta(days=30, seconds=1))
    assert owner.describe_image_usage_reports()["ImageUsageReports"] == []
    with pytest.raises(ClientError) as excinfo:
        owner.describe_image_usage_reports(ReportIds=[report_id])
    assert error(excinfo) == ("InvalidImageUsageReportId.NotFound", 400)


def test_usage_report_is_pending_for_the_configured_delay(monkeypatch: pytest.MonkeyPatch, ec2: Clients) -> None:
    owner = ec2()
    ami = image(owner)
    launch(ec2(account=ALICE), ami)
    motoext.set_usage_report_delay(60)
    report_id = owner.create_image_usage_report(ImageId=ami, ResourceTypes=usage_types())["ReportId"]

    assert owner.describe_image_usage_reports(ReportIds=[report_id])["ImageUsageReports"][0]["State"] == "pending"
    pending = owner.describe_image_usage_reports(Filters=[{"Name": "state", "Values": ["pending"]}])
    assert [r["ReportId"] for r in pending["ImageUsageReports"]] == [report_id]
    assert entries(owner, ReportIds=[report_id]) == []  # not viewable yet

    monkeypatch.setattr(motoext, "_now", lambda: datetime.now(UTC) + timedelta(seconds=61))
    assert owner.describe_image_usage_reports(ReportIds=[report_id])["ImageUsageReports"][0]["State"] == "available"
    assert entries(owner, ReportIds=[report_id]) == [(ALICE, "ec2:Instance", 1)]
    with pytest.raises(ValueError):
        motoext.set_usage_report_delay(-1)


def test_only_the_owner_can_report_on_an_image(ec2: Clients) -> None:
    owner = ec2()
    ami = image(owner)
    share(owner, ami, ALICE)
    cases = [
        (ec2(account=ALICE), ami, "InvalidAMIID.Unavailable"),  # shared with Alice, still not hers
        (owner, "ami-0123456789abcdef0", "InvalidAMIID.NotFound"),
        (owner, "img-0123", "InvalidAMIID.Malformed"),
    ]
    gone = image(owner, "deregistered")
    owner.deregister_image(ImageId=gone)
    cases.append((owner, gone, "InvalidAMIID.Unavailable"))
    for client, image_id, code in cases:
        with pytest.raises(ClientError) as excinfo:
            client.create_image_usage_report(ImageId=image_id, ResourceTypes=usage_types())
        assert error(excinfo) == (code, 400)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ResourceTypes": [{"ResourceType": "ssm:Parameter"}]},
        {
            "ResourceTypes": [
                {
                    "ResourceType": "ec2:Instance",
                    "ResourceTypeOptions": [{"OptionName": "version-depth", "OptionValues": ["2"]}],
                }
            ]
        },
        {"ResourceTypes": usage_types(depth=10001)},
        {
            "ResourceTypes": [
                {
                    "ResourceType": "ec2:LaunchTemplate",
                    "ResourceTypeOptions": [{"OptionName": "state-name", "OptionValues": ["running"]}],
                }
            ]
        },
        {"ResourceTypes": usage_types(), "AccountIds": ["1234"]},
        {"ResourceTypes": usage_types(), "AccountIds": [f"{n:012d}" for n in range(201)]},
        {"ResourceTypes": usage_types(), "TagSpecifications": [{"ResourceType": "image", "Tags": []}]},
    ],
)
def test_create_image_usage_report_rejects_invalid_parameters(kwargs: dict[str, Any], ec2: Clients) -> None:
    client = ec2()
    ami = image(client)
    with pytest.raises(ClientError) as excinfo:
        client.create_image_usage_report(ImageId=ami, **kwargs)
    assert error(excinfo) == ("InvalidParameterValue", 400)


def test_create_image_usage_report_needs_resource_types(ec2: Clients) -> None:
    client = ec2()
    with pytest.raises(ClientError) as excinfo:
        client.create_image_usage_report(ImageId=image(client), ResourceTypes=[])
    assert error(excinfo) == ("MissingParameter", 400)


def test_create_image_usage_report_client_token_is_idempotent(ec2: Clients) -> None:
    client = ec2()
    ami = image(client)
    first = client.create_image_usage_report(ImageId=ami, ResourceTypes=usage_types(), ClientToken="tok")
    again = client.create_image_usage_report(ImageId=ami, ResourceTypes=usage_types(), ClientToken="tok")
    assert first["ReportId"] == again["ReportId"]
    assert len(client.describe_image_usage_reports()["ImageUsageReports"]) == 1
    with pytest.raises(ClientError) as excinfo:
        client.create_image_usage_report(ImageId=ami, ResourceTypes=usage_types(depth=3), ClientToken="tok")
    assert error(excinfo) == ("IdempotentParameterMismatch", 400)


def test_describe_image_usage_reports_filters_and_paginates(ec2: Clients) -> None:
    client = ec2()
    first, second = image(client, "first"), image(client, "second")

    def report(image_id: str, team: str) -> str:
        tags = [{"ResourceType": "image-usage-report", "Tags": [{"Key": "team", "Value": team}]}]
        return str(
            client.create_image_usage_report(ImageId=image_id, ResourceTypes=usage_types(), TagSpecifications=tags)[
                "ReportId"
            ]
        )

    a, b, c = report(first, "web"), report(first, "data"), report(second, "web")

    def ids(**kwargs: Any) -> set[str]:
        return {r["ReportId"] for r in client.describe_image_usage_reports(**kwargs)["ImageUsageReports"]}

    assert ids() == {a, b, c}
    assert ids(ImageIds=[first]) == {a, b}
    assert ids(ReportIds=[c, a]) == {a, c}
    assert ids(Filters=[{"Name": "tag:team", "Values": ["web"]}]) == {a, c}
    assert ids(Filters=[{"Name": "tag-key", "Values": ["team"]}]) == {a, b, c}
    assert ids(Filters=[{"Name": "state", "Values": ["pending"]}]) == set()
    today = datetime.now(UTC).strftime("%Y-%m-%dT*")
    assert ids(Filters=[{"Name": "creation-time", "Values": [today]}], ImageIds=[second]) == {c}

    pages = list(client.get_paginator("describe_image_usage_reports").paginate(PaginationConfig={"PageSize": 2}))
    assert [len(p["ImageUsageReports"]) for p in pages] == [2, 1]
    with pytest.raises(ClientError) as excinfo:
        client.describe_image_usage_reports(Filters=[{"Name": "image-id", "Values": [first]}])
    assert error(excinfo) == ("InvalidParameterValue", 400)


def test_describe_image_usage_report_entries_filters_and_paginates(ec2: Clients) -> None:
    owner = ec2()
    ami = image(owner)
    for account in (ALICE, BOB, "333333333333"):
        launch(ec2(account=account), ami)
    ec2(account=BOB).create_launch_template(LaunchTemplateName="lt", LaunchTemplateData={"ImageId": ami})
    owner.create_image_usage_report(ImageId=ami, ResourceTypes=usage_types())

    assert entries(owner, Filters=[{"Name": "account-id", "Values": [BOB]}]) == [
        (BOB, "ec2:Instance", 1),
        (BOB, "ec2:LaunchTemplate", 1),
    ]
    assert entries(owner, Filters=[{"Name": "resource-type", "Values": ["ec2:LaunchTemplate"]}]) == [
        (BOB, "ec2:LaunchTemplate", 1)
    ]
    assert len(entries(owner, ImageIds=[ami])) == 4
    assert entries(owner, ImageIds=["ami-0123456789abcdef0"]) == []

    pages = list(owner.get_paginator("describe_image_usage_report_entries").paginate(PaginationConfig={"PageSize": 3}))
    assert [len(p["ImageUsageReportEntries"]) for p in pages] == [3, 1]
    with pytest.raises(ClientError) as excinfo:
        owner.describe_image_usage_report_entries(ReportIds=["amiur-0123456789abcdef0"])
    assert error(excinfo) == ("InvalidImageUsageReportId.NotFound", 400)


def test_delete_image_usage_report(ec2: Clients) -> None:
    client = ec2()
    report_id = client.create_image_usage_report(ImageId=image(client), ResourceTypes=usage_types())["ReportId"]
    assert client.delete_image_usage_report(ReportId=report_id)["Return"] is True
    assert client.describe_image_usage_reports()["ImageUsageReports"] == []
    with pytest.raises(ClientError) as excinfo:
        client.delete_image_usage_report(ReportId=report_id)
    assert error(excinfo) == ("InvalidImageUsageReportId.NotFound", 400)


def test_usage_reports_are_per_account_and_region(ec2: Clients) -> None:
    owner = ec2()
    report_id = owner.create_image_usage_report(ImageId=image(owner), ResourceTypes=usage_types())["ReportId"]
    assert ec2(region=OTHER).describe_image_usage_reports()["ImageUsageReports"] == []
    with pytest.raises(ClientError) as excinfo:
        ec2(account=ALICE).describe_image_usage_reports(ReportIds=[report_id])
    assert error(excinfo) == ("InvalidImageUsageReportId.NotFound", 400)


def test_usage_report_counts_image_builder_recipes_of_other_accounts(ec2: Clients, imagebuilder: Clients) -> None:
    owner = ec2()
    ami = image(owner)
    share(owner, ami, ALICE)
    alice = imagebuilder(account=ALICE)
    image_recipe(alice, ami, "web", "1.0.0")
    image_recipe(alice, ami, "web", "1.1.0")
    container_recipe(alice, ami)
    image_recipe(imagebuilder(), ami)  # the owner's own recipe is not reported

    report_id = owner.create_image_usage_report(
        ImageId=ami,
        ResourceTypes=[{"ResourceType": "imagebuilder:ImageRecipe"}, {"ResourceType": "imagebuilder:ContainerRecipe"}],
    )["ReportId"]
    assert entries(owner, ReportIds=[report_id]) == [
        (ALICE, "imagebuilder:ContainerRecipe", 1),
        (ALICE, "imagebuilder:ImageRecipe", 2),
    ]


def test_usage_report_actions_are_counted(ec2: Clients) -> None:
    client = ec2()
    report_id = client.create_image_usage_report(ImageId=image(client), ResourceTypes=usage_types())["ReportId"]
    client.describe_image_usage_reports()
    client.describe_image_usage_report_entries()
    client.delete_image_usage_report(ReportId=report_id)
    assert motoext.calls_by_region()[REGION] == {
        "RegisterImage": 1,
        "CreateImageUsageReport": 1,
        "DescribeImageUsageReports": 1,
        "DescribeImageUsageReportEntries": 1,
        "DeleteImageUsageReport": 1,
    }


# --------------------------------------------------------------------------- 14. Image Builder


def test_image_recipe_create_get_list_delete(ec2: Clients, imagebuilder: Clients) -> None:
    ami = image(ec2())
    client = imagebuilder()
    mappings = [{"deviceName": "/dev/xvda", "ebs": {"volumeSize": 30, "volumeType": "gp3"}}]
    arn = image_recipe(
        client, ami, "Web Server", "1.2.3", description="web", blockDeviceMappings=mappings, tags={"team": "web"}
    )
    assert arn == f"arn:aws:imagebuilder:{REGION}:{OWNER}:image-recipe/web-server/1.2.3"

    recipe = client.get_image_recipe(imageRecipeArn=arn)["imageRecipe"]
    assert {k: recipe[k] for k in ("arn", "name", "version", "owner", "platform", "parentImage", "description")} == {
        "arn": arn,
        "name": "Web Server",
        "version": "1.2.3",
        "owner": OWNER,
        "platform": "Linux",
        "parentImage": ami,
        "description": "web",
    }
    assert recipe["components"] == [{"componentArn": COMPONENT}]
    assert recipe["blockDeviceMappings"] == mappings
    assert recipe["tags"] == {"team": "web"}
    assert abs(datetime.fromisoformat(recipe["dateCreated"]) - datetime.now(UTC)) < timedelta(minutes=1)

    summaries = client.list_image_recipes()["imageRecipeSummaryList"]
    assert summaries == [
        {
            "arn": arn,
            "name": "Web Server",
            "platform": "Linux",
            "owner": OWNER,
            "parentImage": ami,
            "dateCreated": recipe["dateCreated"],
            "tags": {"team": "web"},
        }
    ]
    deleted = client.delete_image_recipe(imageRecipeArn=arn)
    assert deleted["imageRecipeArn"] == arn and deleted["requestId"]
    assert client.list_image_recipes(owner="Self")["imageRecipeSummaryList"] == []
    for call in (client.get_image_recipe, client.delete_image_recipe):
        with pytest.raises(ClientError) as excinfo:
            call(imageRecipeArn=arn)
        assert error(excinfo) == ("ResourceNotFoundException", 404)


def test_create_image_recipe_validates_version_name_and_parent_image(ec2: Clients, imagebuilder: Clients) -> None:
    owner = ec2()
    ami = image(owner)
    private = image(ec2(account=ALICE), "alices-private-image")
    client = imagebuilder()
    image_recipe(client, ami, "web", "1.0.0")
    cases = [
        ({"name": "web", "version": "1.0.0", "parent": ami}, ("ResourceAlreadyExistsException", 400)),
        ({"name": "web", "version": "1.x.0", "parent": ami}, ("InvalidVersionNumberException", 400)),
        (
            {"name": "new", "version": "1.0.0", "parent": "ami-0123456789abcdef1"},
            ("InvalidParameterValueException", 400),
        ),
        ({"name": "new", "version": "1.0.0", "parent": private}, ("InvalidParameterValueException", 400)),
    ]
    for case, expected in cases:
        with pytest.raises(ClientError) as excinfo:
            image_recipe(client, case["parent"], case["name"], case["version"])
        assert error(excinfo) == expected

    share(ec2(account=ALICE), private, OWNER)  # once shared, it may be a parent image
    image_recipe(client, private, "new", "1.0.0")
    # Parent images that are not AMI ids are accepted as they are.
    image_recipe(client, "ssm:/golden/ami", "from-parameter", "1.0.0")
    image_recipe(client, f"arn:aws:imagebuilder:{REGION}:aws:image/amazon-linux-2023-x86/x.x.x", "managed", "1.0.0")


def test_create_image_recipe_client_token_is_idempotent(ec2: Clients, imagebuilder: Clients) -> None:
    ami = image(ec2())
    client = imagebuilder()
    first = image_recipe(client, ami, clientToken="tok-1")
    assert image_recipe(client, ami, clientToken="tok-1") == first
    with pytest.raises(ClientError) as excinfo:
        image_recipe(client, ami, version="2.0.0", clientToken="tok-1")
    assert error(excinfo) == ("IdempotentParameterMismatchException", 400)


def test_list_image_recipes_filters_owner_and_paginates(ec2: Clients, imagebuilder: Clients) -> None:
    first, second = image(ec2(), "first"), image(ec2(), "second")
    client = imagebuilder()
    for n in range(3):
        image_recipe(client, first, "web", f"1.{n}.0")
    image_recipe(client, second, "batch", "1.0.0")

    def names(**kwargs: Any) -> list[str]:
        summaries = client.list_image_recipes(**kwargs)["imageRecipeSummaryList"]
        return [s["arn"].split("image-recipe/")[1] for s in summaries]

    assert names() == ["batch/1.0.0", "web/1.0.0", "web/1.1.0", "web/1.2.0"]
    assert names(filters=[{"name": "parentImage", "values": [second]}]) == ["batch/1.0.0"]
    assert names(filters=[{"name": "name", "values": ["we*"]}, {"name": "platform", "values": ["Linux"]}]) == [
        "web/1.0.0",
        "web/1.1.0",
        "web/1.2.0",
    ]
    assert names(owner="Shared") == []
    pages = list(client.get_paginator("list_image_recipes").paginate(PaginationConfig={"PageSize": 3}))
    assert [len(p["imageRecipeSummaryList"]) for p in pages] == [3, 1]
    with pytest.raises(ClientError) as excinfo:
        client.list_image_recipes(nextToken="garbage")
    assert error(excinfo) == ("InvalidPaginationTokenException", 400)
    with pytest.raises(ClientError) as excinfo:
        client.list_image_recipes(filters=[{"name": "owner", "values": [OWNER]}])
    assert error(excinfo) == ("InvalidRequestException", 400)


def test_container_recipe_create_get_list_delete(ec2: Clients, imagebuilder: Clients) -> None:
    ami = image(ec2())
    client = imagebuilder()
    arn = container_recipe(client, ami, "API Service", "2.0.1")
    assert arn == f"arn:aws:imagebuilder:{REGION}:{OWNER}:container-recipe/api-service/2.0.1"

    recipe = client.get_container_recipe(containerRecipeArn=arn)["containerRecipe"]
    assert recipe["instanceConfiguration"] == {"image": ami}
    assert (recipe["containerType"], recipe["platform"], recipe["version"]) == ("DOCKER", "Linux", "2.0.1")
    assert recipe["targetRepository"] == {"service": "ECR", "repositoryName": "api"}
    assert recipe["parentImage"] == "amazonlinux:latest"

    summary = client.list_container_recipes()["containerRecipeSummaryList"]
    assert [(s["arn"], s["instanceImage"], s["containerType"], s["owner"]) for s in summary] == [
        (arn, ami, "DOCKER", OWNER)
    ]
    assert client.list_container_recipes(filters=[{"name": "containerType", "values": ["DOCKER"]}])[
        "containerRecipeSummaryList"
    ]
    client.delete_container_recipe(containerRecipeArn=arn)
    with pytest.raises(ClientError) as excinfo:
        client.get_container_recipe(containerRecipeArn=arn)
    assert error(excinfo) == ("ResourceNotFoundException", 404)


def test_create_container_recipe_needs_a_dockerfile_and_a_known_instance_image(imagebuilder: Clients) -> None:
    client = imagebuilder()
    base = {
        "containerType": "DOCKER",
        "name": "api",
        "semanticVersion": "1.0.0",
        "parentImage": "amazonlinux:latest",
        "components": [{"componentArn": COMPONENT}],
        "targetRepository": {"service": "ECR", "repositoryName": "api"},
    }
    with pytest.raises(ClientError) as excinfo:
        client.create_container_recipe(**base)
    assert error(excinfo) == ("InvalidRequestException", 400)
    with pytest.raises(ClientError) as excinfo:
        client.create_container_recipe(
            **base, dockerfileTemplateData="FROM x", instanceConfiguration={"image": "ami-0123456789abcdef0"}
        )
    assert error(excinfo) == ("InvalidParameterValueException", 400)


def test_recipes_are_per_account_and_region(ec2: Clients, imagebuilder: Clients) -> None:
    ami = image(ec2())
    image_recipe(imagebuilder(), ami)
    assert imagebuilder(account=ALICE).list_image_recipes()["imageRecipeSummaryList"] == []
    assert imagebuilder(region=OTHER).list_image_recipes()["imageRecipeSummaryList"] == []


def test_describe_image_references_finds_image_builder_recipes(ec2: Clients, imagebuilder: Clients) -> None:
    client = ec2()
    ami, other = image(client, "used"), image(client, "unused")
    builder = imagebuilder()
    recipe = image_recipe(builder, ami)
    image_recipe(builder, other, "other")
    container = container_recipe(builder, ami)

    everything = client.describe_image_references(ImageIds=[ami], IncludeAllResourceTypes=True)["ImageReferences"]
    assert sorted((r["ResourceType"], r["Arn"]) for r in everything) == [
        ("imagebuilder:ContainerRecipe", container),
        ("imagebuilder:ImageRecipe", recipe),
    ]
    only_images = client.describe_image_references(
        ImageIds=[ami], ResourceTypes=[{"ResourceType": "imagebuilder:ImageRecipe"}]
    )["ImageReferences"]
    assert only_images == [{"ImageId": ami, "ResourceType": "imagebuilder:ImageRecipe", "Arn": recipe}]
    assert (
        ec2(account=ALICE).describe_image_references(ImageIds=[ami], IncludeAllResourceTypes=True)["ImageReferences"]
        == []
    )


def test_image_builder_calls_are_counted_and_faults_apply(imagebuilder: Clients) -> None:
    client = imagebuilder(retries={"total_max_attempts": 1})
    client.list_image_recipes()
    client.list_container_recipes()
    assert motoext.calls_by_region()[REGION] == {"ListImageRecipes": 1, "ListContainerRecipes": 1}

    motoext.inject_error("ListImageRecipes", "AccessDeniedException", "no", status=403)
    with pytest.raises(ClientError) as excinfo:
        client.list_image_recipes()
    assert error(excinfo) == ("AccessDeniedException", 403)
    motoext.set_faults(throttle_rate=1.0, actions={"ListContainerRecipes"})
    with pytest.raises(ClientError) as excinfo:
        client.list_container_recipes()
    assert error(excinfo) == ("RequestLimitExceeded", 503)
    motoext.set_faults(unreachable_regions={REGION})
    with pytest.raises(ClientError) as excinfo:
        client.list_image_recipes()
    assert error(excinfo) == ("OptInRequired", 401)


# --------------------------------------------------------------------------- 15. DescribeImageAttribute


def test_launch_permission_attribute_lists_every_kind_of_permission(ec2: Clients) -> None:
    client = ec2()
    ami = image(client)
    assert client.describe_image_attribute(ImageId=ami, Attribute="launchPermission")["LaunchPermissions"] == []
    org = "arn:aws:organizations::123456789012:organization/o-abc123def4"
    ou = "arn:aws:organizations::123456789012:ou/o-abc123def4/ou-ab12-cdefgh34"
    client.modify_image_attribute(
        ImageId=ami,
        LaunchPermission={
            "Add": [{"UserId": ALICE}, {"Group": "all"}, {"OrganizationArn": org}, {"OrganizationalUnitArn": ou}]
        },
    )
    attribute = client.describe_image_attribute(ImageId=ami, Attribute="launchPermission")
    assert attribute["ImageId"] == ami
    assert attribute["LaunchPermissions"] == [
        {"UserId": ALICE},
        {"Group": "all"},
        {"OrganizationArn": org},
        {"OrganizationalUnitArn": ou},
    ]
    assert client.describe_images(ImageIds=[ami])["Images"][0]["Public"] is True

    client.modify_image_attribute(ImageId=ami, LaunchPermission={"Remove": [{"Group": "all"}, {"UserId": ALICE}]})
    remaining = client.describe_image_attribute(ImageId=ami, Attribute="launchPermission")["LaunchPermissions"]
    assert remaining == [{"OrganizationArn": org}, {"OrganizationalUnitArn": ou}]


def test_modify_image_attribute_with_the_older_parameters_takes_every_value(ec2: Clients) -> None:
    client = ec2()
    ami = image(client)
    orgs = [f"arn:aws:organizations::123456789012:organization/o-abc123def{n}" for n in range(2)]
    ous = [f"arn:aws:organizations::123456789012:ou/o-abc123def0/ou-ab12-cdefgh3{n}" for n in range(2)]
    client.modify_image_attribute(
        ImageId=ami,
        Attribute="launchPermission",
        OperationType="add",
        UserIds=[ALICE, BOB],
        UserGroups=["all"],
        OrganizationArns=orgs,
        OrganizationalUnitArns=ous,
    )
    permissions = client.describe_image_attribute(ImageId=ami, Attribute="launchPermission")["LaunchPermissions"]
    assert permissions == [
        {"Group": "all"},
        {"UserId": ALICE},
        {"UserId": BOB},
        *({"OrganizationArn": arn} for arn in orgs),
        *({"OrganizationalUnitArn": arn} for arn in ous),
    ]
    client.modify_image_attribute(
        ImageId=ami, Attribute="launchPermission", OperationType="remove", UserIds=[BOB], OrganizationArns=orgs
    )
    permissions = client.describe_image_attribute(ImageId=ami, Attribute="launchPermission")["LaunchPermissions"]
    assert permissions == [{"Group": "all"}, {"UserId": ALICE}, *({"OrganizationalUnitArn": arn} for arn in ous)]


@pytest.mark.parametrize("attribute", ["launchPermission", "lastLaunchedTime", "description", "bootMode"])
def test_describe_image_attribute_of_an_unknown_image_is_not_found(attribute: str, ec2: Clients) -> None:
    client = ec2()
    with pytest.raises(ClientError) as excinfo:
        client.describe_image_attribute(ImageId="ami-0123456789abcdef0", Attribute=attribute)
    assert error(excinfo) == ("InvalidAMIID.NotFound", 400)
    with pytest.raises(ClientError) as excinfo:
        client.describe_image_attribute(ImageId="image-1", Attribute=attribute)
    assert error(excinfo) == ("InvalidAMIID.Malformed", 400)


# --------------------------------------------------------------------------- over HTTP


def test_usage_recipes_and_last_launched_behind_threaded_moto_server(ec2: Clients, imagebuilder: Clients) -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        owner = ec2(endpoint_url=url)
        alice_ec2 = ec2(account=ALICE, endpoint_url=url)
        alice_builder = imagebuilder(account=ALICE, endpoint_url=url)

        ami = image(owner, "served")
        share(owner, ami, ALICE)
        launch(alice_ec2, ami, 2)
        recipe = image_recipe(alice_builder, ami)
        assert recipe == f"arn:aws:imagebuilder:{REGION}:{ALICE}:image-recipe/web-server/1.0.0"
        assert [s["arn"] for s in alice_builder.list_image_recipes()["imageRecipeSummaryList"]] == [recipe]
        refs = alice_ec2.describe_image_references(ImageIds=[ami], IncludeAllResourceTypes=True)["ImageReferences"]
        assert sorted(r["ResourceType"] for r in refs) == ["ec2:Instance", "ec2:Instance", "imagebuilder:ImageRecipe"]

        assert "LastLaunchedTime" in owner.describe_images(ImageIds=[ami])["Images"][0]
        motoext.set_last_launched(OWNER, REGION, ami, datetime(2026, 3, 1, 17, 0, tzinfo=UTC))
        value = owner.describe_image_attribute(ImageId=ami, Attribute="lastLaunchedTime")["LastLaunchedTime"]
        assert value == {"Value": "2026-03-01T17:00:00Z"}

        resource_types: Any = [*usage_types(), {"ResourceType": "imagebuilder:ImageRecipe"}]
        report_id = owner.create_image_usage_report(ImageId=ami, ResourceTypes=resource_types)["ReportId"]
        assert entries(owner, ReportIds=[report_id]) == [
            (ALICE, "ec2:Instance", 2),
            (ALICE, "imagebuilder:ImageRecipe", 1),
        ]
        counted = motoext.calls_by_region()[REGION]
        assert (counted["CreateImageRecipe"], counted["CreateImageUsageReport"]) == (1, 1)
    finally:
        request = urllib.request.Request(f"{url}/moto-api/reset", data=json.dumps({}).encode(), method="POST")
        urllib.request.urlopen(request).close()
        server.stop()
