"""The managed accounts (PRODUCT.md section 7) and the clients that act in each of them.

- `Accounts.managed()`: the hub's own account plus ManagedAccounts, or, with `organization`, every
  ACTIVE account of the organization (Organizations ListAccounts, refreshed per run).
- `Accounts.aws_for(account)`: the hub's own clients for the hub account; for any other managed
  account, clients over the credentials of `sts:AssumeRole` on `SpokeRoleName` in that account
  (regional STS endpoint of the hub region, a session name naming the function). The credentials
  are cached per execution environment and refreshed by botocore shortly before they expire, so a
  run assumes each account's role at most once. A role that cannot be assumed raises
  `AccountUnreachable` (the pair is reported failed, the others go on); the refusal is remembered
  until the next `refresh()` (a new run) or for REFUSAL_TTL_S (a warm container handling events:
  a role deployed since is found within minutes), so the regions of that account do not ask
  again in the same run.
- An account that is not managed is never given clients (`NotManaged`).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError
from botocore.session import get_session

from ..domain.ids import is_account_id
from ..domain.settings import Settings
from .clients import Aws
from .errors import describe_error

# How long the organization's account list is trusted between two runs' refreshes (events use it).
ORGANIZATION_TTL_S = 300.0
# How long a refused AssumeRole is remembered without a refresh().
REFUSAL_TTL_S = 120.0
# The assumed role's session (AssumeRole's default is one hour; botocore refreshes 15 min before).
SESSION_SECONDS = 3600


class NotManaged(Exception):
    """The account is not one this stack manages: nothing may be done in it."""


class AccountUnreachable(Exception):
    """The spoke role of a managed account could not be assumed (missing, untrusted, denied)."""

    def __init__(self, account: str, role_arn: str, reason: str) -> None:
        self.account, self.role_arn, self.reason = account, role_arn, reason
        super().__init__(f"account {account}: cannot assume {role_arn}: {reason}")


def session_name(function: str) -> str:
    """`ami-lifecycle-<function>`, in the characters and length AssumeRole allows (2-64)."""
    name = re.sub(r"[^\w+=,.@-]", "-", f"ami-lifecycle-{function}" if function else "ami-lifecycle")
    return name[:64]


class Accounts:
    """The managed accounts of one stack and a client factory per account."""

    def __init__(
        self,
        aws: Aws,
        settings: Settings,
        hub_account: str | None = None,
        *,
        function: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._aws = aws
        self._settings = settings
        self._hub = hub_account
        self._session_name = session_name(function)
        self._clock = clock
        self._lock = threading.Lock()
        self._spokes: dict[str, Aws] = {}
        self._refused: dict[str, tuple[float, AccountUnreachable]] = {}
        self._organization: tuple[str, ...] | None = None
        self._organization_at = 0.0
        # AssumeRole calls made (the bench counts them: at most one per account per run).
        self.assumed = 0

    @property
    def hub(self) -> str:
        """The hub's own account (the function's, from its ARN; else STS GetCallerIdentity)."""
        if self._hub is None:
            sts = self._aws.client("sts", self._settings.home_region)
            self._hub = str(sts.get_caller_identity()["Account"])
        return self._hub

    @property
    def hub_aws(self) -> Aws:
        return self._aws

    def refresh(self) -> None:
        """A new run: list the organization again and retry the roles that were refused."""
        with self._lock:
            self._organization = None
            self._refused.clear()

    def managed(self) -> tuple[str, ...]:
        """Every managed account, the hub's first, then in the order given (organization: by id)."""
        settings = self._settings
        others = self._organization_accounts() if settings.organization else settings.managed_accounts_param
        return tuple(dict.fromkeys((self.hub, *others)))

    def is_managed(self, account: str) -> bool:
        return is_account_id(account) and account in self.managed()

    def role_arn(self, account: str) -> str:
        partition = boto3.Session().get_partition_for_region(self._settings.home_region)
        return f"arn:{partition}:iam::{account}:role/{self._settings.spoke_role_name}"

    def aws_for(self, account: str) -> Aws:
        """The clients that act in `account`. Raises NotManaged or AccountUnreachable."""
        if account == self.hub:
            return self._aws
        if not self.is_managed(account):
            raise NotManaged(f"account {account} is not managed by this stack")
        with self._lock:
            cached = self._spokes.get(account)
            if cached is not None:
                return cached
            refused = self._refused.get(account)
            if refused is not None and self._clock() - refused[0] < REFUSAL_TTL_S:
                raise refused[1]
            try:
                clients = Aws(self._assumed_session(account))
            except AccountUnreachable as e:
                self._refused[account] = (self._clock(), e)
                raise
            self._spokes[account] = clients
            return clients

    # ------------------------------------------------------------ internals

    def _organization_accounts(self) -> tuple[str, ...]:
        now = self._clock()
        if self._organization is not None and now - self._organization_at < ORGANIZATION_TTL_S:
            return self._organization
        client = self._aws.client("organizations", self._settings.home_region)
        accounts: list[str] = []
        for page in client.get_paginator("list_accounts").paginate():
            for account in page.get("Accounts", []):
                # `State` replaces `Status` (2025); either says ACTIVE for a live member account.
                state = account.get("State") or account.get("Status")
                if state == "ACTIVE" and is_account_id(account.get("Id")):
                    accounts.append(str(account["Id"]))
        self._organization, self._organization_at = tuple(sorted(accounts)), now
        return self._organization

    def _assumed_session(self, account: str) -> boto3.Session:
        role_arn = self.role_arn(account)
        # The regional endpoint of the hub region (boto3's default for STS since 1.28).
        sts = self._aws.client("sts", self._settings.home_region)

        def fetch() -> dict[str, Any]:
            self.assumed += 1
            try:
                response = sts.assume_role(
                    RoleArn=role_arn, RoleSessionName=self._session_name, DurationSeconds=SESSION_SECONDS
                )
            except (ClientError, BotoCoreError) as e:
                raise AccountUnreachable(account, role_arn, describe_error(e)) from e
            c = response["Credentials"]
            expiration = c["Expiration"]
            return {
                "access_key": c["AccessKeyId"],
                "secret_key": c["SecretAccessKey"],
                "token": c["SessionToken"],
                "expiry_time": expiration.isoformat() if hasattr(expiration, "isoformat") else str(expiration),
            }

        credentials = RefreshableCredentials.create_from_metadata(
            metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
        )
        core = get_session()
        # The hub session's loader: botocore's service models are parsed once per container, not
        # once per account (about 0.4 s of a cold start each).
        hub_core = getattr(self._aws.session, "_session", None)
        if hub_core is not None:
            core.register_component("data_loader", hub_core.get_component("data_loader"))
        core._credentials = credentials  # type: ignore[attr-defined]  # botocore's way to inject refreshable credentials
        return boto3.Session(botocore_session=core)
