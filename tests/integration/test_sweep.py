"""RetentionSweepFunction on moto (with the motoext extension): a mixed fleet across two regions.

What is retired, and above all what is not: held, in use (running instance, an old launch template
version, a launch configuration), protected, unmanaged, foreign-managed, newest of a family,
badly tagged, and snapshots still used by another image. Dry run, a failing region, a crash
half-way and its retry, orphaned snapshots, the time budget, and the handler with its payloads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from ami_lifecycle.aws.ec2 import Ec2
from ami_lifecycle.domain.report import Report
from ami_lifecycle.domain.requests import MAX_CHAIN
from ami_lifecycle.domain.settings import Settings
from ami_lifecycle.domain.tags import format_instant
from ami_lifecycle.runtime import Deps
from ami_lifecycle.runtime.budget import SAFETY_MARGIN_MS, Budget
from ami_lifecycle.services import sweep as sweep_module
from ami_lifecycle.services.sweep import sweep
from ami_lifecycle_localaws import motoext
from ami_lifecycle_localaws.fleet import create_image, snapshot_ids

from tests.conftest import ACCOUNT_ID, FakeLambdaContext, LocalAws, regions

P = "ami-lifecycle"
EAST, WEST = "us-east-1", "us-west-2"
# The fixtures' factories (tests/conftest.py, tests/integration/conftest.py).
Build = Callable[..., str]  # managed, register_on_snapshot: the new image's id
Entries = Callable[..., dict[str, dict[str, Any]]]
Run = Callable[..., Report]


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    # The retention rule alone: the sweep adopting what events missed is tests/integration/test_sweep_reconciles.py.
    return make_settings(replica_regions=(WEST,), manage_new_images=False)


def registered(ec2: Any) -> set[str]:
    return {i["ImageId"] for i in ec2.describe_images(Owners=["self"], IncludeDisabled=True)["Images"]}


def snapshots(ec2: Any) -> set[str]:
    return {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}


@dataclass
class Fleet:
    """The mixed fleet: ids by role, and the ids expected to be retired."""

    ids: dict[str, str] = field(default_factory=dict)
    retire: set[str] = field(default_factory=set)
    keep: dict[str, str] = field(default_factory=dict)  # image id -> expected reason
    untouched: set[str] = field(default_factory=set)  # never listed: not managed
    shared_snapshot: str = ""
    unmanaged_shared_snapshot: str = ""

    def __getitem__(self, role: str) -> str:
        return self.ids[role]


@pytest.fixture
def fleet(moto_aws: LocalAws, now: datetime, managed: Build, register_on_snapshot: Build) -> Fleet:
    ec2, west = moto_aws.ec2(), moto_aws.ec2(WEST)
    f = Fleet()

    def add(role: str, image_id: str, reason: str | None = None) -> None:
        f.ids[role] = image_id
        if reason is None:
            f.retire.add(image_id)
        else:
            f.keep[image_id] = reason

    add("expired", managed(ec2, "expired", now))
    add("fresh", managed(ec2, "fresh", now, expired=False), "not-expired")
    add("held", managed(ec2, "held", now, tags={f"{P}:hold": "true"}), "hold")
    add("instance", managed(ec2, "instance", now), "in-use")
    add("old-lt-version", managed(ec2, "old-lt-version", now), "in-use")
    add("launch-config", managed(ec2, "launch-config", now), "in-use")
    add("protected", managed(ec2, "protected", now), "protected")
    add("backup", managed(ec2, "backup", now, tags={"aws:backup:source-resource": "arn:aws:ec2:x"}), "foreign-manager")
    add("dlm", managed(ec2, "dlm", now, tags={"aws:dlm:lifecycle-policy-id": "policy-1"}), "foreign-manager")
    add("builder", managed(ec2, "builder", now, tags={"CreatedBy": "EC2 Image Builder"}), "foreign-manager")
    add("bad-expiry", managed(ec2, "bad-expiry", now, tags={f"{P}:expires-at": "soonish"}), "bad-tag")
    add("bad-hold", managed(ec2, "bad-hold", now, tags={f"{P}:hold": "perhaps"}), "bad-tag")
    add("retention-only", managed(ec2, "retention-only", now, tags={f"{P}:expires-at": None, f"{P}:retention": "30d"}))
    add("disabled", managed(ec2, "disabled", now))
    ec2.disable_image(ImageId=f["disabled"])
    # keep-latest 1 (the default): the newest of three expired `web` images stays.
    for n, age in ((1, 30), (2, 60), (3, 90)):
        add(f"web-{n}", managed(ec2, f"web-2026-0{n}", now, family="web", keep_latest=None, age_days=age))
    f.retire.discard(f["web-1"])
    f.keep[f["web-1"]] = "keep-latest"
    # One snapshot, two images: the expired one goes, the snapshot stays for the fresh one.
    add("shares-snapshot", managed(ec2, "shares-snapshot", now))
    f.shared_snapshot = snapshot_ids(ec2, f["shares-snapshot"])[0]
    sharer_tags = {f"{P}:managed": "true", f"{P}:expires-at": format_instant(now + timedelta(days=9))}
    add("snapshot-sharer", register_on_snapshot(ec2, "snapshot-sharer", f.shared_snapshot, sharer_tags), "not-expired")
    # An expired managed image whose snapshot an unmanaged image also uses.
    add("shares-with-unmanaged", managed(ec2, "shares-with-unmanaged", now))
    f.unmanaged_shared_snapshot = snapshot_ids(ec2, f["shares-with-unmanaged"])[0]
    f.untouched.add(register_on_snapshot(ec2, "unmanaged-sharer", f.unmanaged_shared_snapshot))
    # Never listed: no P:managed=true.
    f.untouched.add(create_image(ec2, "unmanaged", created=now - timedelta(days=400)))
    f.untouched.add(create_image(ec2, "opted-out", tags={f"{P}:managed": "false"}, created=now - timedelta(days=400)))

    # What uses images: a running instance, the OLD version of a launch template, a launch configuration.
    ec2.run_instances(ImageId=f["instance"], MinCount=1, MaxCount=1)
    ec2.create_launch_template(LaunchTemplateName="web-template", LaunchTemplateData={"ImageId": f["old-lt-version"]})
    ec2.create_launch_template_version(LaunchTemplateName="web-template", LaunchTemplateData={"ImageId": f["fresh"]})
    moto_aws.client("autoscaling").create_launch_configuration(
        LaunchConfigurationName="web-lc", ImageId=f["launch-config"], InstanceType="t3.micro"
    )
    ec2.enable_image_deregistration_protection(ImageId=f["protected"])

    # The replica region: an expired copy goes, a fresh copy gets its deprecation time.
    add("west-expired", managed(west, "west-expired", now))
    add("west-fresh", managed(west, "west-fresh", now, expired=False), "not-expired")
    return f


@pytest.fixture
def small(moto_aws: LocalAws, now: datetime, managed: Build) -> Fleet:
    """One expired and one fresh managed image in each region: for tests about the machinery."""
    f = Fleet()
    for region in (EAST, WEST):
        ec2 = moto_aws.ec2(region)
        f.ids[f"{region}-expired"] = managed(ec2, "expired", now)
        f.ids[f"{region}-fresh"] = managed(ec2, "fresh", now, expired=False)
        f.retire.add(f[f"{region}-expired"])
    return f


# ---------------------------------------------------------------- the rule on a real fleet


def test_the_sweep_retires_exactly_the_expired_images_and_explains_every_kept_one(
    fleet: Fleet, settings: Settings, now: datetime, moto_aws: LocalAws, entries: Entries, run_sweep: Run
) -> None:
    ec2, west = moto_aws.ec2(), moto_aws.ec2(WEST)
    retired_snapshots = {
        s
        for role in ("expired", "disabled", "web-2", "web-3", "retention-only")
        for s in snapshot_ids(ec2, fleet[role])
    } | set(snapshot_ids(west, fleet["west-expired"]))
    before_east, before_west = registered(ec2), registered(west)

    report = run_sweep(settings, now)

    assert before_east - registered(ec2) | (before_west - registered(west)) == fleet.retire
    assert fleet.untouched <= registered(ec2)
    # Their snapshots went with them (in the same DeregisterImage call) ...
    assert not retired_snapshots & (snapshots(ec2) | snapshots(west))
    # ... except the ones another image still uses.
    assert {fleet.shared_snapshot, fleet.unmanaged_shared_snapshot} <= snapshots(ec2)

    out = {**entries(report, EAST), **entries(report, WEST)}
    for image_id in fleet.retire:
        assert (out[image_id]["decision"], out[image_id]["outcome"]) == ("retire", "retired"), out[image_id]
    for image_id, reason in fleet.keep.items():
        assert (out[image_id]["decision"], out[image_id]["reason"]) == ("keep", reason), out[image_id]
        assert out[image_id]["detail"]
    assert not set(out) & fleet.untouched  # never considered

    assert "ec2:Instance" in out[fleet["instance"]]["detail"]
    assert "launch-template" in out[fleet["old-lt-version"]]["detail"]
    assert "autoscaling:LaunchConfiguration web-lc" in out[fleet["launch-config"]]["detail"]
    assert "enabled" in out[fleet["protected"]]["detail"]
    assert "AWS Backup" in out[fleet["backup"]]["detail"]
    shared = out[fleet["shares-snapshot"]]["snapshots"]
    assert shared == [{"SnapshotId": fleet.shared_snapshot, "ReturnCode": "skipped"}]

    totals = report.to_dict()["totals"]
    assert totals["retired"] == len(fleet.retire) == 8
    assert totals["snapshots_deleted"] == 6  # 8 retired, 2 snapshots still used by another image
    assert totals["errors"] == 0 and totals["tagged"] == totals["copies_requested"] == 0
    assert totals["kept"] == {
        "bad-tag": 2,
        "foreign-manager": 3,
        "hold": 1,
        "in-use": 3,
        "keep-latest": 1,
        "not-expired": 3,
        "protected": 1,
    }
    assert report.status == "complete" and report.cursor is None
    # The replica's fresh copy got its native deprecation time (its tagging event fired elsewhere).
    copy = west.describe_images(ImageIds=[fleet["west-fresh"]])["Images"][0]
    assert (
        copy["DeprecationTime"][:16]
        == west.describe_tags(
            Filters=[
                {"Name": "resource-id", "Values": [fleet["west-fresh"]]},
                {"Name": "key", "Values": [f"{P}:expires-at"]},
            ]
        )["Tags"][0]["Value"][:16]
    )
    json.dumps(report.to_dict())  # JSON-serializable


def test_the_sweep_costs_one_listing_one_reference_check_and_one_call_per_retired_image(
    fleet: Fleet, settings: Settings, now: datetime, run_sweep: Run
) -> None:
    motoext.reset_calls()
    report = run_sweep(settings, now, regions=[EAST])
    calls = motoext.calls_by_region()[EAST]
    assert calls["DescribeImages"] == 1
    assert calls["DeregisterImage"] == report.totals.retired == 7
    assert calls["DeleteSnapshot"] == 0  # EC2 deletes them within DeregisterImage
    note = report.region(EAST, ACCOUNT_ID).notes["in_use_check"]
    # 10 candidates (7 expired and unused, 3 in use): one DescribeImageReferences call beats listing.
    assert note["way"] == "image-references" and note["candidates"] == 10
    assert calls["DescribeImageReferences"] == 1 and calls["DescribeLaunchConfigurations"] == 1
    assert calls["DescribeInstances"] == calls["DescribeLaunchTemplateVersions"] == 0


@pytest.mark.parametrize("way", ["image-references", "resource-listing"])
def test_both_ways_of_checking_use_find_the_same_references(
    fleet: Fleet, settings: Settings, now: datetime, way: Any, entries: Entries, run_sweep: Run
) -> None:
    report = run_sweep(settings, now, regions=[EAST], in_use_way=way, dry_run=True)
    out = entries(report)
    assert report.region(EAST, ACCOUNT_ID).notes["in_use_check"]["way"] == way
    in_use = {i for i, e in out.items() if e["reason"] == "in-use"}
    assert in_use == {fleet["instance"], fleet["old-lt-version"], fleet["launch-config"]}


def test_many_candidates_and_few_templates_list_the_resources_instead(
    moto_aws: LocalAws, settings: Settings, now: datetime, entries: Entries, managed: Build, run_sweep: Run
) -> None:
    ec2 = moto_aws.ec2()
    ids = [managed(ec2, f"bulk-{n}", now) for n in range(61)]
    ec2.run_instances(ImageId=ids[0], MinCount=1, MaxCount=1)
    motoext.reset_calls()
    report = run_sweep(settings, now, regions=[EAST], dry_run=True)
    note = report.region(EAST, ACCOUNT_ID).notes["in_use_check"]
    # 7 DescribeImageReferences calls versus 5 listing calls (no templates): DescribeInstances,
    # DescribeLaunchTemplates, DescribeParameters, ListImageRecipes, ListContainerRecipes.
    assert note["way"] == "resource-listing" and note["image_references_calls"] == 7
    assert motoext.calls()["DescribeImageReferences"] == 0
    # Every source answered, by listing: none is left unverified.
    assert all(answer["answered"] for answer in note["sources"].values()), note["sources"]
    assert entries(report)[ids[0]]["reason"] == "in-use"
    assert report.totals.retired == 60


def test_when_describe_image_references_fails_the_resources_are_listed(
    fleet: Fleet, settings: Settings, now: datetime, entries: Entries, run_sweep: Run
) -> None:
    motoext.inject_error("DescribeImageReferences", "UnsupportedOperation", "not in this region")
    report = run_sweep(settings, now, regions=[EAST], dry_run=True)
    note = report.region(EAST, ACCOUNT_ID).notes["in_use_check"]
    assert note["way"] == "resource-listing" and "UnsupportedOperation" in note["fallback"]
    assert {i for i, e in entries(report).items() if e["reason"] == "in-use"} == {
        fleet["instance"],
        fleet["old-lt-version"],
        fleet["launch-config"],
    }


# ---------------------------------------------------------------- dry run


def test_dry_run_changes_nothing_and_reports_the_same_decisions(
    fleet: Fleet, settings: Settings, now: datetime, moto_aws: LocalAws, entries: Entries, run_sweep: Run
) -> None:
    ec2, west = moto_aws.ec2(), moto_aws.ec2(WEST)
    state = (registered(ec2), registered(west), snapshots(ec2), snapshots(west))
    motoext.reset_calls()

    dry = run_sweep(settings, now, dry_run=True)

    assert (registered(ec2), registered(west), snapshots(ec2), snapshots(west)) == state
    calls = motoext.calls()
    for action in ("DeregisterImage", "DeleteSnapshot", "EnableImageDeprecation", "CreateTags", "DeleteTags"):
        assert calls[action] == 0, action
    assert dry.dry_run and dry.to_dict()["dry_run"] is True
    assert entries(dry)[fleet["expired"]]["outcome"] == "would retire"

    real = run_sweep(settings, now)
    for region in (EAST, WEST):
        d, r = entries(dry, region), entries(real, region)
        assert {i: (e["decision"], e["reason"]) for i, e in d.items()} == {
            i: (e["decision"], e["reason"]) for i, e in r.items()
        }
    assert dry.totals.retired == real.totals.retired
    assert dry.totals.kept == real.totals.kept
    assert dry.totals.snapshots_deleted == real.totals.snapshots_deleted
    assert dry.totals.deprecations_set == real.totals.deprecations_set
    # The predicted snapshot outcome of a shared snapshot is right too.
    assert entries(dry)[fleet["shares-snapshot"]]["snapshots"][0]["ReturnCode"] == "would-skip"


def test_dry_run_defaults_to_the_stacks_setting(
    small: Fleet, make_settings: Callable[..., Settings], now: datetime, moto_aws: LocalAws, run_sweep: Run
) -> None:
    report = run_sweep(make_settings(dry_run=True), now)
    assert report.dry_run and report.totals.retired == 1 and small[f"{EAST}-expired"] in registered(moto_aws.ec2())


# ---------------------------------------------------------------- failures


def test_an_unreachable_region_does_not_stop_the_others(
    small: Fleet, settings: Settings, now: datetime, moto_aws: LocalAws, run_sweep: Run
) -> None:
    motoext.set_faults(unreachable_regions={WEST})
    report = run_sweep(settings, now, regions=[WEST, EAST])
    assert report.region(WEST, ACCOUNT_ID).status == "failed"
    assert "OptInRequired" in str(report.region(WEST, ACCOUNT_ID).error)
    assert report.region(EAST, ACCOUNT_ID).status == "complete"
    assert small[f"{EAST}-expired"] not in registered(moto_aws.ec2())
    assert report.status == "partial" and report.totals.errors == 1
    assert regions(report)[WEST]["error"].startswith("OptInRequired")


def test_throttling_past_the_retries_fails_only_that_region(
    small: Fleet, settings: Settings, now: datetime, moto_aws: LocalAws
) -> None:
    motoext.inject_error("DescribeImages", "RequestLimitExceeded", "Request limit exceeded.", times=100, region=WEST)
    # No client-side retries here: the test is about what happens once they are exhausted.
    from botocore.config import Config

    report = sweep(Deps.create(settings, moto_aws.aws(Config(retries={"total_max_attempts": 1})), now, ACCOUNT_ID))
    assert report.region(WEST, ACCOUNT_ID).status == "failed" and "RequestLimitExceeded" in str(
        report.region(WEST, ACCOUNT_ID).error
    )
    assert report.region(EAST, ACCOUNT_ID).status == "complete" and report.region(EAST, ACCOUNT_ID).totals.retired == 1


class Crash(BaseException):
    """The process dies (timeout, out of memory): nothing after this point runs."""


def test_a_sweep_that_crashed_after_a_deregistration_finishes_on_retry_without_orphans(
    fleet: Fleet, settings: Settings, now: datetime, monkeypatch: pytest.MonkeyPatch, moto_aws: LocalAws, run_sweep: Run
) -> None:
    original = Ec2.deregister
    done: list[str] = []

    def crash_after_first(self: Ec2, image_id: str, *, delete_snapshots: bool = True) -> Any:
        original(self, image_id, delete_snapshots=delete_snapshots)
        done.append(image_id)
        raise Crash(f"died right after DeregisterImage({image_id})")

    monkeypatch.setattr(Ec2, "deregister", crash_after_first)
    with pytest.raises(Crash):
        run_sweep(settings, now, regions=[EAST])
    assert len(done) == 1 and done[0] in fleet.retire
    monkeypatch.setattr(Ec2, "deregister", original)

    report = run_sweep(settings, now, regions=[EAST])

    ec2 = moto_aws.ec2()
    east_retire = fleet.retire - {fleet["west-expired"]}
    assert not east_retire & registered(ec2)
    assert report.totals.retired == len(east_retire) - 1  # the first one was already gone
    # No orphan: every managed snapshot left is used by a registered image.
    used = {
        b["Ebs"]["SnapshotId"]
        for i in ec2.describe_images(Owners=["self"], IncludeDisabled=True)["Images"]
        for b in i["BlockDeviceMappings"]
    }
    managed_snapshots = ec2.describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": f"tag:{P}:managed", "Values": ["true"]}]
    )["Snapshots"]
    assert {s["SnapshotId"] for s in managed_snapshots} <= used


def test_a_failed_snapshot_deletion_is_an_error_and_a_deregistration_failure_keeps_the_image(
    fleet: Fleet, settings: Settings, now: datetime, monkeypatch: pytest.MonkeyPatch, entries: Entries, run_sweep: Run
) -> None:
    original = Ec2.deregister

    def partly(self: Ec2, image_id: str, *, delete_snapshots: bool = True) -> list[dict[str, str]]:
        if image_id == fleet["expired"]:
            raise_client_error("DeregisterImage", "InvalidParameter", "deregistration protection is enabled")
        results = original(self, image_id, delete_snapshots=delete_snapshots)
        if image_id == fleet["disabled"]:
            return [{**r, "ReturnCode": "missing-permissions"} for r in results]
        return results

    monkeypatch.setattr(Ec2, "deregister", partly)
    report = run_sweep(settings, now, regions=[EAST])
    out = entries(report)
    assert out[fleet["expired"]]["outcome"] == "failed" and "InvalidParameter" in out[fleet["expired"]]["errors"][0]
    assert out[fleet["disabled"]]["outcome"] == "retired"
    assert "missing-permissions" in out[fleet["disabled"]]["errors"][0]
    assert report.totals.errors == 2 and report.totals.retired == 6


def raise_client_error(operation: str, code: str, message: str) -> None:
    from botocore.exceptions import ClientError

    raise ClientError({"Error": {"Code": code, "Message": message}}, operation)


# ---------------------------------------------------------------- orphaned snapshots


@dataclass
class Orphans:
    orphan: str
    orphan_image: str
    in_bin: str
    in_bin_image: str
    not_ours: set[str]


@pytest.fixture
def orphans(
    moto_aws: LocalAws, now: datetime, managed: Build, register_on_snapshot: Build, ec2_backend: Callable[..., Any]
) -> Orphans:
    """Managed snapshots whose image is gone, and snapshots that look like orphans but are not ours to delete."""
    ec2 = moto_aws.ec2()

    def age(snapshot_id: str, days: float = 2) -> None:
        snap = ec2_backend(EAST).snapshots[snapshot_id]
        snap.start_time = snap.start_time - timedelta(days=days)

    def deregistered(
        name: str,
        *,
        is_managed: bool = True,
        old: bool = True,
        expired: bool = True,
        tags: dict[str, str | None] | None = None,
    ) -> tuple[str, str]:
        image_id = managed(ec2, name, now, expired=expired, tags=tags) if is_managed else create_image(ec2, name)
        snapshot = snapshot_ids(ec2, image_id)[0]
        ec2.deregister_image(ImageId=image_id)  # without its snapshots: console, an older tool, ...
        if old:
            age(snapshot)
        return image_id, snapshot

    gone, orphan = deregistered("gone")
    in_bin_image, in_bin = deregistered("in-the-recycle-bin")
    _, young = deregistered("young", old=False)  # younger than the grace period
    _, unmanaged = deregistered("unmanaged", is_managed=False)  # no P:managed tag
    _, held = deregistered("held", tags={f"{P}:hold": "true"})  # a hold on the snapshot: never deleted
    _, bad_hold = deregistered("bad-hold", tags={f"{P}:hold": "maybe"})  # unreadable hold: kept
    _, future = deregistered("future", expired=False)  # P:expires-at still ahead: kept
    _, forever = deregistered("forever", tags={f"{P}:expires-at": None, f"{P}:retention": "forever"})
    still_used_image = managed(ec2, "still-used", now, expired=False)
    still_used = snapshot_ids(ec2, still_used_image)[0]
    register_on_snapshot(ec2, "unmanaged-user", still_used)  # an unmanaged image uses it
    ec2.deregister_image(ImageId=still_used_image)
    age(still_used)
    volume = ec2.create_volume(AvailabilityZone=f"{EAST}a", Size=8)["VolumeId"]
    manual = ec2.create_snapshot(
        VolumeId=volume,
        Description="nightly backup",  # names no image
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": f"{P}:managed", "Value": "true"}]}],
    )["SnapshotId"]
    age(manual)
    return Orphans(
        orphan, gone, in_bin, in_bin_image, {young, unmanaged, still_used, manual, held, bad_hold, future, forever}
    )


def test_only_orphaned_managed_snapshots_are_deleted(
    orphans: Orphans,
    settings: Settings,
    now: datetime,
    monkeypatch: pytest.MonkeyPatch,
    moto_aws: LocalAws,
    run_sweep: Run,
) -> None:
    # moto has no ListImagesInRecycleBin: the gateway's answer is stubbed (one image is in the bin).
    asked: list[list[str]] = []

    def in_recycle_bin(self: Ec2, image_ids: list[str]) -> set[str]:
        asked.append(list(image_ids))
        return {orphans.in_bin_image} & set(image_ids)

    monkeypatch.setattr(Ec2, "images_in_recycle_bin", in_recycle_bin)
    ec2 = moto_aws.ec2()
    dry = run_sweep(settings, now, regions=[EAST], dry_run=True)
    assert {s["snapshot_id"]: s["outcome"] for s in dry.region(EAST, ACCOUNT_ID).snapshots} == {
        orphans.orphan: "would delete (orphaned)",
        orphans.in_bin: "kept: its image is in the Recycle Bin",
    }
    assert orphans.orphan in snapshots(ec2)

    report = run_sweep(settings, now, regions=[EAST])
    records = {r["snapshot_id"]: r for r in report.region(EAST, ACCOUNT_ID).snapshots}
    assert records == {
        orphans.orphan: {
            "snapshot_id": orphans.orphan,
            "images": orphans.orphan_image,
            "outcome": "deleted (orphaned)",
        },
        orphans.in_bin: {
            "snapshot_id": orphans.in_bin,
            "images": orphans.in_bin_image,
            "outcome": "kept: its image is in the Recycle Bin",
        },
    }
    assert report.totals.snapshots_deleted == 1 and report.totals.errors == 0
    left = snapshots(ec2)
    assert orphans.orphan not in left and {orphans.in_bin, *orphans.not_ours} <= left
    assert sorted(asked[-1]) == sorted([orphans.orphan_image, orphans.in_bin_image])


def test_orphaned_snapshots_stay_when_the_recycle_bin_cannot_be_checked(
    orphans: Orphans, settings: Settings, now: datetime, moto_aws: LocalAws, run_sweep: Run
) -> None:
    # An unanswered safety check deletes nothing (and moto does not implement ListImagesInRecycleBin).
    motoext.inject_error("ListImagesInRecycleBin", "UnauthorizedOperation", "not allowed", times=5)
    report = run_sweep(settings, now, regions=[EAST])
    assert report.region(EAST, ACCOUNT_ID).status == "complete" and report.region(EAST, ACCOUNT_ID).snapshots == []
    note = report.region(EAST, ACCOUNT_ID).notes["orphan_snapshots_left"]
    assert "Recycle Bin could not be checked" in note and "UnauthorizedOperation" in note
    assert {orphans.orphan, orphans.in_bin} <= snapshots(moto_aws.ec2())


def test_a_shared_orphaned_snapshot_is_kept(
    orphans: Orphans, settings: Settings, now: datetime, moto_aws: LocalAws, run_sweep: Run
) -> None:
    # Another account may have registered an image on it: createVolumePermission keeps it.
    ec2 = moto_aws.ec2()
    ec2.modify_snapshot_attribute(
        SnapshotId=orphans.orphan, Attribute="createVolumePermission", OperationType="add", UserIds=["222222222222"]
    )
    report = run_sweep(settings, now, regions=[EAST])
    records = {r["snapshot_id"]: r["outcome"] for r in report.region(EAST, ACCOUNT_ID).snapshots}
    assert records[orphans.orphan] == "kept: shared with another account (createVolumePermission)"
    # The unshared one beside it (moto's Recycle Bin is empty, so it is a plain orphan) still goes.
    assert records[orphans.in_bin] == "deleted (orphaned)"
    left = snapshots(ec2)
    assert orphans.orphan in left and orphans.in_bin not in left and report.totals.snapshots_deleted == 1


def test_an_orphaned_snapshot_whose_sharing_cannot_be_read_is_kept(
    orphans: Orphans, settings: Settings, now: datetime, moto_aws: LocalAws, run_sweep: Run
) -> None:
    motoext.inject_error("DescribeSnapshotAttribute", "UnauthorizedOperation", "not allowed", times=5)
    report = run_sweep(settings, now, regions=[EAST])
    records = {r["snapshot_id"]: r["outcome"] for r in report.region(EAST, ACCOUNT_ID).snapshots}
    assert records[orphans.orphan].startswith("kept: its sharing could not be checked (UnauthorizedOperation")
    assert orphans.orphan in snapshots(moto_aws.ec2()) and report.totals.snapshots_deleted == 0


# ---------------------------------------------------------------- time budget and continuation


class Clock:
    """A Lambda context whose remaining time drops by `step_ms` at every look."""

    def __init__(self, start_ms: int, step_ms: int) -> None:
        self.ms, self.step = start_ms, step_ms

    def __call__(self) -> int:
        self.ms -= self.step
        return self.ms


def test_out_of_time_mid_region_stops_cleanly_and_a_resweep_finishes(
    fleet: Fleet, settings: Settings, now: datetime, moto_aws: LocalAws, run_sweep: Run
) -> None:
    # Plenty of time for the listing and a few retirements, then below the safety margin.
    clock = Clock(start_ms=SAFETY_MARGIN_MS + 5_500, step_ms=1_000)
    report = run_sweep(settings, now, budget=Budget(clock))
    assert report.pairs[(ACCOUNT_ID, EAST)].status == "incomplete"
    assert report.cursor == {"pairs": [[ACCOUNT_ID, EAST], [ACCOUNT_ID, WEST]], "iteration": 2}
    assert 0 < report.totals.retired < 7 and report.status == "incomplete"

    follow_up = run_sweep(settings, now, pairs=[tuple(p) for p in report.cursor["pairs"]])
    assert follow_up.status == "complete"
    assert not fleet.retire & (registered(moto_aws.ec2()) | registered(moto_aws.ec2(WEST)))
    assert report.totals.retired + follow_up.totals.retired == 8


def test_out_of_time_the_handler_returns_a_cursor_and_never_invokes_itself(
    small: Fleet, settings: Settings, now: datetime, moto_aws: LocalAws
) -> None:
    context = FakeLambdaContext(remaining_ms=SAFETY_MARGIN_MS - 1)
    motoext.reset_calls()
    out = sweep_module.handle(
        {"dry_run": False}, Deps.create(settings, moto_aws.aws(), now, ACCOUNT_ID, context=context)
    )
    assert out["status"] == "incomplete" and regions(out) == {}
    assert out["cursor"] == {"pairs": [[ACCOUNT_ID, EAST], [ACCOUNT_ID, WEST]], "iteration": 2, "retired": 0}
    assert not any(name.startswith("Invoke") for name in motoext.calls())
    assert small[f"{EAST}-expired"] in registered(moto_aws.ec2())  # nothing done without time

    # The caller sends the cursor back: the next invocation does the pairs.
    done = sweep_module.handle(
        {"dry_run": False, "cursor": out["cursor"]}, Deps.create(settings, moto_aws.aws(), now, ACCOUNT_ID)
    )
    assert done["status"] == "complete" and "cursor" not in done
    assert small[f"{EAST}-expired"] not in registered(moto_aws.ec2())


def test_the_cursor_loop_is_capped(small: Fleet, settings: Settings, now: datetime, moto_aws: LocalAws) -> None:
    context = FakeLambdaContext(remaining_ms=1)
    cursor = {"pairs": [[ACCOUNT_ID, EAST]], "iteration": MAX_CHAIN}
    out = sweep_module.handle(
        {"cursor": cursor}, Deps.create(settings, moto_aws.aws(), now, ACCOUNT_ID, context=context)
    )
    assert "cursor" not in out and out["status"] == "partial"
    assert f"not finished after {MAX_CHAIN} invocations" in regions(out)[EAST]["error"]


# ---------------------------------------------------------------- the handler


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch, moto_aws: LocalAws) -> Iterator[Callable[..., dict[str, Any]]]:
    monkeypatch.setenv("AWS_REGION", EAST)
    monkeypatch.setenv("REPLICA_REGIONS", WEST)
    from ami_lifecycle import runtime

    from functions.retention_sweep.app import lambda_handler

    monkeypatch.setattr(runtime, "aws", moto_aws.aws)  # the run's shared session: faster, same code path

    yield lambda event, context=None: lambda_handler(event, context or FakeLambdaContext())


def test_handler_manual_dry_run_event(fleet: Fleet, handler: Any, event: Any, capsys: Any, moto_aws: LocalAws) -> None:
    out = handler(event("sweep_manual.json"))
    assert out["dry_run"] is True and list(regions(out)) == [EAST] and out["status"] == "complete"
    assert out["totals"]["retired"] == 7 and fleet["expired"] in registered(moto_aws.ec2())
    emitted = capsys.readouterr().out
    assert '"SweepCompleted"' in emitted and '"ImagesRetirable"' in emitted and '"Reason"' in emitted


def test_handler_scheduled_event_sweeps_every_sweep_region(
    fleet: Fleet, handler: Any, event: Any, moto_aws: LocalAws
) -> None:
    assert event("sweep_schedule.json") == {"source": "schedule"}
    out = handler(event("sweep_schedule.json"))
    assert out["dry_run"] is False and set(regions(out)) == {EAST, WEST}
    assert out["totals"]["retired"] == 8 and not fleet.retire & registered(moto_aws.ec2())
    json.dumps(out)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"regions": [EAST], "dryrun": True}, "dryrun"),
        ({"regions": ["mars-north-1"]}, "'mars-north-1' is not an AWS region"),
        ({"regions": ["us-east-1; drop"]}, "is not an AWS region"),
        ({"regions": ["eu-west-1"]}, "eu-west-1 is not swept by this stack"),
        ({"regions": []}, "regions"),
        ({"dry_run": "yes"}, "dry_run"),
        ({"source": "elsewhere"}, "source"),
        ({"continuation": 99}, "continuation"),
        ({"cursor": {"pairs": [["123456789012", "eu-west-1"]]}}, "eu-west-1 is not swept by this stack"),
        ({"accounts": ["999999999999"]}, "999999999999 not managed by this stack"),
    ],
)
def test_handler_refuses_a_bad_payload_and_changes_nothing(
    moto_aws: LocalAws,
    handler: Any,
    payload: dict[str, Any],
    message: str,
    now: datetime,
    capsys: Any,
    caplog: Any,
    managed: Build,
) -> None:
    expired = managed(moto_aws.ec2(), "expired", now)
    motoext.reset_calls()
    out = handler(payload)
    assert out == {"status": "refused", "error": out["error"]} and message in out["error"]
    assert sum(motoext.calls().values()) == 0 and expired in registered(moto_aws.ec2())
    assert any(r.getMessage() == "sweep payload refused" and r.levelname == "ERROR" for r in caplog.records)
    assert '"SweepRefused"' in capsys.readouterr().out


def test_handler_refuses_a_payload_that_is_not_an_object(moto_aws: LocalAws, handler: Any) -> None:
    assert handler(["us-east-1"])["status"] == "refused"
