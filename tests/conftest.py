"""Shared fixtures: fake credentials (a test can never reach a real account), the embedded local
AWS (moto plus ami_lifecycle_localaws.motoext), settings, a Lambda context and the sample events."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
ACCOUNT_ID = "123456789012"  # moto's default account
HOME = "us-east-1"

# Set before anything imports boto3: no test can pick up a real profile or reach AWS.
for _var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
    os.environ.pop(_var, None)
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_DEFAULT_REGION": HOME,
        "AWS_REGION": HOME,
        "AWS_CONFIG_FILE": str(ROOT / "tests" / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(ROOT / "tests" / "no-aws-credentials"),
        "POWERTOOLS_SERVICE_NAME": "ami-lifecycle",
        "POWERTOOLS_METRICS_NAMESPACE": "AmiLifecycle",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_DEV": "false",
        # moto: do not load its ~hundreds of public AMIs into every region; our tests own the fleet.
        "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
    }
)


def load_event(name: str) -> dict[str, Any]:
    """A sample event from events/, as `sam local invoke -e` would read it."""
    return json.loads((EVENTS / name).read_text())


@pytest.fixture
def event() -> Callable[[str], dict[str, Any]]:
    return load_event


@dataclass
class FakeLambdaContext:
    function_name: str = "ami-lifecycle-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = f"arn:aws:lambda:{HOME}:{ACCOUNT_ID}:function:ami-lifecycle-test"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"
    remaining_ms: int = 900_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture
def moto_aws() -> Iterator[None]:
    """moto in-process, with our documented extension of it."""
    from ami_lifecycle_localaws import motoext
    from moto import mock_aws

    motoext.install()
    motoext.clear_faults()
    with mock_aws():
        motoext.reset_calls()
        yield
    motoext.clear_faults()


@pytest.fixture(autouse=True)
def _fresh_runtime() -> Iterator[None]:
    """Each test gets fresh cached settings/clients and empty metrics."""
    from ami_lifecycle import runtime
    from ami_lifecycle.runtime.observability import metrics

    runtime.reset()
    yield
    runtime.reset()
    metrics.clear_metrics()


@pytest.fixture
def make_settings() -> Callable[..., Any]:
    """Settings as template.yaml would pass them, with overrides: make_settings(replica_regions=("us-west-2",))."""
    from ami_lifecycle.domain.settings import Settings

    def make(**overrides: Any) -> Settings:
        data: dict[str, Any] = {"home_region": HOME}
        data.update(overrides)
        return Settings.model_validate(data)

    return make
