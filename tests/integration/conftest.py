"""Fixtures shared by the integration suites: the home region's EC2 client, a managed image as the tool
tags one, the retention sweep run on moto, and the entries of its report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from ami_lifecycle.domain.report import Report
from ami_lifecycle.domain.tags import format_instant
from ami_lifecycle.runtime import Deps
from ami_lifecycle.runtime.budget import Budget
from ami_lifecycle.services.sweep import sweep
from ami_lifecycle_localaws.fleet import create_image

from tests.conftest import ACCOUNT_ID, LocalAws, regions

P = "ami-lifecycle"
EAST = "us-east-1"


@pytest.fixture
def ec2(moto_aws: LocalAws) -> Any:
    """An EC2 client of the home region, on a fresh moto."""
    return moto_aws.ec2(EAST)


@pytest.fixture(scope="session")
def managed(ec2_backend: Callable[..., Any]) -> Callable[..., str]:
    """`managed(ec2, name, now, expired=True, family=None, keep_latest="0", age_days=100, tags=None,
    account=ACCOUNT_ID)` (`account`: the one `ec2` acts in): a
    managed image, tagged as the tool tags one (image and snapshots), `age_days` old; a tag given as
    None is left out."""

    def make(
        ec2: Any,
        name: str,
        now: datetime,
        *,
        expired: bool = True,
        family: str | None = None,
        keep_latest: str | None = "0",
        age_days: int = 100,
        tags: dict[str, str | None] | None = None,
        account: str = ACCOUNT_ID,
    ) -> str:
        lifecycle: dict[str, str | None] = {
            f"{P}:managed": "true",
            f"{P}:retention": "90d",
            f"{P}:expires-at": format_instant(now + (timedelta(days=-1) if expired else timedelta(days=30))),
            f"{P}:family": family or name,
            f"{P}:keep-latest": keep_latest,
        }
        lifecycle.update(tags or {})
        final = {k: v for k, v in lifecycle.items() if v is not None}
        image_id = create_image(ec2, name, tags=final, created=now - timedelta(days=age_days), account_id=account)
        # Straight into moto's backend (one API call less per image: the fleet is rebuilt for every test).
        backend = ec2_backend(ec2.meta.region_name, account)
        snapshot = backend.amis[image_id].ebs_snapshot.id
        backend.create_tags([snapshot], {k: v for k, v in final.items() if k.startswith(P)})
        return image_id

    return make


@pytest.fixture
def run_sweep(moto_aws: LocalAws) -> Callable[..., Report]:
    """`run_sweep(settings, now, budget=None, **sweep_kwargs)`: the retention sweep, with the production
    retry configuration (the run's shared client factory)."""

    def run(settings: Any, now: datetime, budget: Budget | None = None, **kw: Any) -> Report:
        deps = Deps.create(settings, moto_aws.aws(), now, ACCOUNT_ID)
        return sweep(replace(deps, budget=budget) if budget else deps, **kw)

    return run


@pytest.fixture(scope="session")
def entries() -> Callable[..., dict[str, dict[str, Any]]]:
    """`entries(report, region=EAST)`: a sweep report's entries in a region, by image id."""

    def by_image(report: Report, region: str = EAST) -> dict[str, dict[str, Any]]:
        return {e["image_id"]: e for e in regions(report)[region]["images"]}

    return by_image
