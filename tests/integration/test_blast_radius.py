"""MaxRetirementsPerRun: a run that would retire more than the cap (all regions together) retires none."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from ami_lifecycle.domain.settings import Settings
from ami_lifecycle.runtime import Deps
from ami_lifecycle.services.sweep import sweep
from ami_lifecycle_localaws import motoext

from tests.conftest import ACCOUNT_ID
from tests.integration.test_sweep import EAST, WEST, aws, client, entries, managed


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def due(moto_aws: None, now: datetime) -> list[str]:
    """150 expired, unused images: 100 in one region, 50 in another."""
    east, west = client("ec2"), client("ec2", WEST)
    return [managed(east, f"e-{n}", now) for n in range(100)] + [managed(west, f"w-{n}", now) for n in range(50)]


def registered(region: str) -> int:
    return len(client("ec2", region).describe_images(Owners=["self"])["Images"])


def test_150_due_with_a_cap_of_100_retire_none_and_say_blast_radius(
    due: list[str], make_settings: Callable[..., Settings], now: datetime
) -> None:
    settings = make_settings(replica_regions=(WEST,))
    assert settings.max_retirements_per_run == 100
    # The plan says the cap would stop the apply...
    plan = sweep(Deps.create(settings, aws(), now, ACCOUNT_ID), dry_run=True)
    assert plan.blast_radius == {"would_retire": 150, "limit": 100}
    # ...and the apply retires nothing, in either region, each image saying why.
    motoext.reset_calls()
    report = sweep(Deps.create(settings, aws(), now, ACCOUNT_ID))
    assert report.blast_radius == {"would_retire": 150, "limit": 100}
    assert report.to_dict()["blast_radius"] == {"would_retire": 150, "limit": 100}
    assert report.totals.retired == 0 and report.totals.kept["blast-radius"] == 150
    assert motoext.calls()["DeregisterImage"] == 0
    assert registered(EAST) == 100 and registered(WEST) == 50
    e = entries(report)[due[0]]
    assert e["reason"] == "blast-radius" and "MaxRetirementsPerRun" in e["detail"]


def test_a_deliberate_run_with_a_higher_cap_retires_them(
    due: list[str], make_settings: Callable[..., Settings], now: datetime
) -> None:
    settings = make_settings(replica_regions=(WEST,))
    report = sweep(Deps.create(settings, aws(), now, ACCOUNT_ID), max_retirements=150)
    assert report.blast_radius is None and report.totals.retired == 150
    assert registered(EAST) == registered(WEST) == 0


def test_a_cap_of_zero_means_no_limit(due: list[str], make_settings: Callable[..., Settings], now: datetime) -> None:
    settings = make_settings(replica_regions=(WEST,), max_retirements_per_run=0)
    assert sweep(Deps.create(settings, aws(), now, ACCOUNT_ID)).totals.retired == 150


def test_the_cap_counts_all_regions_together(
    due: list[str], make_settings: Callable[..., Settings], now: datetime
) -> None:
    # Each region alone is within 120; together they are not.
    settings = make_settings(replica_regions=(WEST,), max_retirements_per_run=120)
    report = sweep(Deps.create(settings, aws(), now, ACCOUNT_ID))
    assert report.totals.retired == 0 and report.blast_radius == {"would_retire": 150, "limit": 120}
