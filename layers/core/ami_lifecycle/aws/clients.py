"""boto3 clients: created lazily, cached per (service, region), injectable.

Nothing creates a client at import time. Tests and the CLI pass their own `Aws` (for example
with a session for a profile); Lambdas use `default_aws()`. boto3 itself honours
AWS_ENDPOINT_URL, which is how the CLI and the demo reach the embedded local AWS.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

# EC2 throttles per account, per region and per action with a token bucket; adaptive mode adds
# client-side rate limiting on top of exponential backoff, which is what bulk AMI work needs
# (aws-amicleaner#89: RequestLimitExceeded when removing thousands of AMIs).
RETRY_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": 10},
    connect_timeout=5,
    read_timeout=30,
    user_agent_extra="ami-lifecycle",
)


class Aws:
    def __init__(self, session: boto3.Session | None = None, config: Config | None = None) -> None:
        self._session = session
        self._config = config or RETRY_CONFIG
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    @property
    def session(self) -> boto3.Session:
        if self._session is None:
            self._session = boto3.Session()
        return self._session

    def client(self, service: str, region: str) -> Any:
        key = (service, region)
        client = self._clients.get(key)
        if client is None:
            with self._lock:
                client = self._clients.get(key)
                if client is None:
                    client = self.session.client(service, region_name=region, config=self._config)  # type: ignore[call-overload]
                    self._clients[key] = client
        return client

    def ec2(self, region: str) -> Any:
        return self.client("ec2", region)


@lru_cache(maxsize=1)
def default_aws() -> Aws:
    return Aws()
