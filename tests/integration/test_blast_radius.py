"""MaxRetirementsPerRun: a run that would retire more than the cap (all regions together) retires none."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from ami_lifecycle.domain.settings import Settings
from ami_lifecycle_localaws import motoext

from tests.conftest import LocalAws

EAST, WEST = "us-east-1", "us-west-2"
# The fixtures' factories (tests/integration/conftest.py).
Entries = Callable[..., dict[str, dict[str, Any]]]
Run = Callable[..., Any]  # run_sweep


@pytest.fixture
def due(moto_aws: LocalAws, now: datetime, managed: Callable[..., str]) -> list[str]:
    """150 expired, unused images: 100 in one region, 50 in another."""
    east, west = moto_aws.ec2(), moto_aws.ec2(WEST)
    return [managed(east, f"e-{n}", now) for n in range(100)] + [managed(west, f"w-{n}", now) for n in range(50)]


def registered(local: LocalAws, region: str) -> int:
    return len(local.ec2(region).describe_images(Owners=["self"])["Images"])


def test_150_due_with_a_cap_of_100_retire_none_and_say_blast_radius(
    due: list[str],
    make_settings: Callable[..., Settings],
    now: datetime,
    moto_aws: LocalAws,
    entries: Entries,
    run_sweep: Run,
) -> None:
    settings = make_settings(replica_regions=(WEST,))
    assert settings.max_retirements_per_run == 100
    # The plan says the cap would stop the apply...
    plan = run_sweep(settings, now, dry_run=True)
    assert plan.blast_radius == {"would_retire": 150, "limit": 100}
    # ...and the apply retires nothing, in either region, each image saying why.
    motoext.reset_calls()
    report = run_sweep(settings, now)
    assert report.blast_radius == {"would_retire": 150, "limit": 100}
    assert report.to_dict()["blast_radius"] == {"would_retire": 150, "limit": 100}
    assert report.totals.retired == 0 and report.totals.kept["blast-radius"] == 150
    assert motoext.calls()["DeregisterImage"] == 0
    assert registered(moto_aws, EAST) == 100 and registered(moto_aws, WEST) == 50
    e = entries(report)[due[0]]
    assert e["reason"] == "blast-radius" and "MaxRetirementsPerRun" in e["detail"]


def test_a_deliberate_run_with_a_higher_cap_retires_them(
    due: list[str], make_settings: Callable[..., Settings], now: datetime, moto_aws: LocalAws, run_sweep: Run
) -> None:
    settings = make_settings(replica_regions=(WEST,))
    report = run_sweep(settings, now, max_retirements=150)
    assert report.blast_radius is None and report.totals.retired == 150
    assert registered(moto_aws, EAST) == registered(moto_aws, WEST) == 0


def test_a_cap_of_zero_means_no_limit(
    due: list[str], make_settings: Callable[..., Settings], now: datetime, run_sweep: Run
) -> None:
    settings = make_settings(replica_regions=(WEST,), max_retirements_per_run=0)
    assert run_sweep(settings, now).totals.retired == 150


def test_the_cap_counts_all_regions_together(
    due: list[str], make_settings: Callable[..., Settings], now: datetime, run_sweep: Run
) -> None:
    # Each region alone is within 120; together they are not.
    settings = make_settings(replica_regions=(WEST,), max_retirements_per_run=120)
    report = run_sweep(settings, now)
    assert report.totals.retired == 0 and report.blast_radius == {"would_retire": 150, "limit": 120}


def test_the_state_machines_share_spans_a_pairs_invocations(
    due: list[str], make_settings: Callable[..., Settings], now: datetime, moto_aws: LocalAws
) -> None:
    from ami_lifecycle.runtime import Deps
    from ami_lifecycle.services import sweep as sweep_module

    from tests.conftest import ACCOUNT_ID

    settings = make_settings(replica_regions=(WEST,), max_retirements_per_run=0)
    deps = Deps.create(settings, moto_aws.aws(), now, ACCOUNT_ID)
    # A pair allowed 60 whose earlier invocation already retired 20: this one may retire 40 at most.
    cursor = {"pairs": [[ACCOUNT_ID, WEST]], "iteration": 2, "retired": 20}
    out = sweep_module.handle({"source": "state-machine", "retire_at_most": 60, "cursor": cursor}, deps)
    assert out["blast_radius"] == {"would_retire": 50, "limit": 40} and registered(moto_aws, WEST) == 50
    within = {"source": "state-machine", "retire_at_most": 60, "cursor": cursor | {"retired": 10}}
    assert sweep_module.handle(within, deps)["totals"]["retired"] == 50


def test_the_backfill_never_retires_past_the_cap_and_its_plan_says_so(
    due: list[str], make_settings: Callable[..., Settings], now: datetime, moto_aws: LocalAws
) -> None:
    from ami_lifecycle.runtime import Deps
    from ami_lifecycle.services import backfill as backfill_module

    from tests.conftest import ACCOUNT_ID

    # 100 due in us-east-1, then 50 in us-west-2; a cap of 120 over the whole backfill.
    settings = make_settings(replica_regions=(WEST,), max_retirements_per_run=120)
    deps = Deps.create(settings, moto_aws.aws(), now, ACCOUNT_ID)
    plan = backfill_module.handle({"actions": ["retire"]}, deps)
    assert plan["blast_radius"] == {"would_retire": 150, "limit": 120}
    motoext.reset_calls()
    applied = backfill_module.handle({"actions": ["retire"], "dry_run": False}, deps)
    # The first pair fits (100), the second would take it over: it retires none.
    assert applied["blast_radius"] == {"would_retire": 150, "limit": 120}
    assert applied["totals"]["retired"] == 100 and motoext.calls()["DeregisterImage"] == 100
    assert registered(moto_aws, EAST) == 0 and registered(moto_aws, WEST) == 50
    kept = applied["accounts"][ACCOUNT_ID]["regions"][WEST]["totals"]["kept"]
    assert kept == {"blast-radius": 50}


def test_the_backfill_cap_spans_its_invocations(
    due: list[str], make_settings: Callable[..., Settings], now: datetime, moto_aws: LocalAws
) -> None:
    from ami_lifecycle.runtime import Deps
    from ami_lifecycle.services import backfill as backfill_module

    from tests.conftest import ACCOUNT_ID

    settings = make_settings(replica_regions=(WEST,), max_retirements_per_run=120)
    deps = Deps.create(settings, moto_aws.aws(), now, ACCOUNT_ID)
    # The next invocation of a backfill that already retired 100 (its cursor says so).
    cursor = {"region_index": 1, "retired": 100, "run_id": "r1"}
    out = backfill_module.handle({"actions": ["retire"], "dry_run": False, "continuation": cursor}, deps)
    assert out["blast_radius"] == {"would_retire": 150, "limit": 120} and registered(moto_aws, WEST) == 50
