"""Shared fixtures: fake credentials (a test can never reach a real account), the embedded local
AWS (moto plus ami_lifecycle_localaws.motoext) and the clients that reach it, settings, a Lambda
context, the sample events, and the builders the suites share: an `available` event, an image
registered on another image's snapshot."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import boto3
    from ami_lifecycle.aws.clients import Aws
    from botocore.config import Config

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


@pytest.fixture(scope="session")
def available_event() -> Callable[..., dict[str, Any]]:
    """`available_event(image_id, region=HOME, account=ACCOUNT_ID, sample="ami_available.json", **detail)`:
    the `EC2 AMI State Change` event EventBridge delivers for an image (the sample events/ami_available.json,
    or `sample`), its detail updated with `detail` (State="failed", ErrorMessage=...)."""

    def build(
        image_id: str,
        region: str = HOME,
        *,
        account: str = ACCOUNT_ID,
        sample: str = "ami_available.json",
        **detail: Any,
    ) -> dict[str, Any]:
        e = load_event(sample)  # a fresh copy: each event may be mutated
        e.update(account=account, region=region, resources=[f"arn:aws:ec2:{region}::image/{image_id}"])
        e["detail"].update(ImageId=image_id, **detail)
        return e

    return build


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
def now() -> datetime:
    """The real clock: moto checks deprecation times against it."""
    return datetime.now(UTC)


# ------------------------------------------------------------------ the embedded local AWS


class LocalAws:
    """The embedded AWS as the tests reach it. Every client comes from one boto3 session, so botocore
    parses each service model (EC2's is large) once per test process; a client acts in moto's default
    account, or in any other through sts:AssumeRole (moto: an assumed role's credentials act in the
    role's account). Starts nothing: `moto_aws` (or a suite's own mock) is the AWS it reaches."""

    def __init__(self, session: boto3.Session) -> None:
        self.session = session
        self._aws: Aws | None = None
        self._clients: dict[tuple[str, str, str], Any] = {}

    def aws(self, config: Config | None = None) -> Aws:
        """The product's client factory on this session. Without `config`, one for the whole run, with
        the production retry configuration (its clients are cached); with `config`, a new one."""
        from ami_lifecycle.aws.clients import Aws

        if config is not None:
            return Aws(self.session, config)
        if self._aws is None:
            self._aws = Aws(self.session)
        return self._aws

    def client(
        self,
        service: str,
        region: str = HOME,
        *,
        account: str = ACCOUNT_ID,
        endpoint_url: str | None = None,
        **config: Any,
    ) -> Any:
        """A client as a test makes one: botocore's default configuration (or `Config(**config)`), acting
        in `account`, reaching `endpoint_url` (a moto server) when given. Clients of the default account
        and endpoint are cached; another account's credentials, like a server, end with the test."""
        from botocore.config import Config

        key = (service, region, repr(sorted(config.items())))
        cached = account == ACCOUNT_ID and endpoint_url is None
        if cached and key in self._clients:
            return self._clients[key]
        credentials: dict[str, str] = {}
        if account != ACCOUNT_ID:
            sts = self.client("sts", region, endpoint_url=endpoint_url)
            role = f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole"  # motoext: present in every account
            creds = sts.assume_role(RoleArn=role, RoleSessionName="tests")["Credentials"]
            credentials = {
                "aws_access_key_id": creds["AccessKeyId"],
                "aws_secret_access_key": creds["SecretAccessKey"],
                "aws_session_token": creds["SessionToken"],
            }
        factory: Any = self.session.client  # boto3-stubs' overloads want a literal service name
        client = factory(
            service,
            region_name=region,
            endpoint_url=endpoint_url,
            config=Config(**config) if config else None,
            **credentials,
        )
        if cached:
            self._clients[key] = client
        return client

    def ec2(self, region: str = HOME, **kwargs: Any) -> Any:
        return self.client("ec2", region, **kwargs)


@pytest.fixture(scope="session")
def local_aws() -> LocalAws:
    """The clients of the embedded AWS, on the run's one boto3 session."""
    import boto3
    import moto.core.models  # noqa: F401  first: a session made before moto is imported escapes its mock

    return LocalAws(boto3.Session(region_name=HOME))


@pytest.fixture
def moto_aws(local_aws: LocalAws) -> Iterator[LocalAws]:
    """moto in-process, with our documented extension of it, fresh for the test; the clients reach it."""
    from ami_lifecycle_localaws import motoext
    from moto import mock_aws

    motoext.install()
    motoext.clear_faults()
    with mock_aws():
        motoext.reset_calls()
        yield local_aws
    motoext.clear_faults()


@pytest.fixture(scope="session")
def ec2_backend() -> Callable[..., Any]:
    """`ec2_backend(region=HOME, account=ACCOUNT_ID)`: moto's EC2 backend, for what its API cannot do."""

    def backend(region: str = HOME, account: str = ACCOUNT_ID) -> Any:
        from moto.ec2.models import ec2_backends

        return ec2_backends[account][region]

    return backend


@pytest.fixture(scope="session")
def register_on_snapshot() -> Callable[..., str]:
    """`register_on_snapshot(ec2, name, snapshot_id, tags=None, created=None)`: an image registered on an
    existing snapshot (another image's: one snapshot, two images), tagged and backdated when told."""
    from ami_lifecycle_localaws.fleet import backdate

    def register(
        ec2: Any, name: str, snapshot_id: str, tags: Mapping[str, str] | None = None, *, created: datetime | None = None
    ) -> str:
        image_id = str(
            ec2.register_image(
                Name=name,
                RootDeviceName="/dev/xvda",
                BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snapshot_id}}],
            )["ImageId"]
        )
        if tags:
            ec2.create_tags(Resources=[image_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        if created is not None:
            backdate(ec2.meta.region_name, image_id, created)
        return image_id

    return register


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


def regions(report: Any, account: str | None = None) -> dict[str, Any]:
    """The per-region reports of one account (default: the hub's, moto's default account) of a
    sweep or backfill report as `Report.to_dict()` gives it (keyed by account, then region)."""
    data = report.to_dict() if hasattr(report, "to_dict") else report
    return dict(((data.get("accounts") or {}).get(account or ACCOUNT_ID) or {}).get("regions") or {})
