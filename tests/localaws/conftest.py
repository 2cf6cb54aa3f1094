"""Fixtures shared by the moto-extension tests: one moto per module, reset before every test, and the
clients that reach it (tests/conftest.py's `local_aws`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ami_lifecycle_localaws import motoext
from moto import mock_aws
from moto.core.base_backend import BackendDict

from tests.conftest import LocalAws


@pytest.fixture(scope="module")
def _mocked_aws() -> Iterator[None]:
    """One ``mock_aws()`` per module (starting it costs ~0.2 s); ``_fresh`` resets the backends before
    every test."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",  # speed; one test turns it back on
        }.items():
            monkeypatch.setenv(name, value)
        motoext.install()
        with mock_aws():
            yield


@pytest.fixture(autouse=True)
def _fresh(_mocked_aws: None) -> Iterator[None]:
    """Empty backends, no call counted, no fault and no usage-report delay left by another test."""
    BackendDict.reset()
    motoext.reset_calls()
    motoext.clear_faults()
    motoext.set_usage_report_delay(0)
    yield
    motoext.clear_faults()
    motoext.set_usage_report_delay(0)


@pytest.fixture(scope="session")
def ec2(local_aws: LocalAws) -> Callable[..., Any]:
    """`ec2(region="us-east-1", account=moto's default, **config)`: an EC2 client (botocore's default
    configuration, or `Config(**config)`) acting in `account`."""
    return local_aws.ec2


@pytest.fixture(scope="session")
def imagebuilder(local_aws: LocalAws) -> Callable[..., Any]:
    """`imagebuilder(region="us-east-1", account=moto's default, **config)`: the same for EC2 Image Builder."""
    return functools.partial(local_aws.client, "imagebuilder")
