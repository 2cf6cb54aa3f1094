"""The executor: performs typed actions through the gateways and returns typed outcomes.

One place decides what an AWS answer means for an action: the image or snapshot is gone (GONE,
and the image's later actions are SKIPPED), AWS refused it (FAILED, with the code and message), or
it was done (DONE; PLANNED in a dry run, where nothing is called). Throttling past the client's
retries is raised: the caller fails the region (it is redone by the next run), it never passes for
a refusal. Nothing here decides *what* to do: that is the planners' (domain/).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from botocore.exceptions import BotoCoreError, ClientError

from ..aws.ec2 import Ec2
from ..aws.errors import NOT_FOUND_CODES, describe_error, error_code, is_throttle
from ..aws.sqs import CopyQueue
from ..domain.actions import Action, Kind, Outcome, SnapshotResult, Status
from ..runtime.budget import Budget

SNAPSHOT_GONE = frozenset({"InvalidSnapshot.NotFound"})


class Executor:
    """Performs the actions of one (account, region) pair. `queue`: the copy queue (None: not
    configured; a copy request then fails with that reason)."""

    def __init__(
        self, ec2: Ec2, *, dry_run: bool, queue: CopyQueue | None = None, budget: Budget | None = None
    ) -> None:
        self.ec2 = ec2
        self.dry_run = dry_run
        self.queue = queue
        self.budget = budget or Budget()

    def run(self, actions: Iterable[Action]) -> list[Outcome]:
        """Every action in order. After a GONE outcome, the same image's later actions are SKIPPED;
        consecutive copy requests of one image go out in one SendMessageBatch."""
        outcomes: list[Outcome] = []
        gone: set[str] = set()
        pending_copies: list[Action] = []

        def flush() -> None:
            if pending_copies:
                outcomes.extend(self._copies(pending_copies))
                pending_copies.clear()

        for action in actions:
            if action.kind is Kind.REQUEST_COPY:
                if pending_copies and pending_copies[0].image_id != action.image_id:
                    flush()
                pending_copies.append(action)
                continue
            flush()
            if action.image_id and action.image_id in gone and action.kind is not Kind.DELETE_SNAPSHOT:
                outcomes.append(Outcome(action, Status.SKIPPED))
                continue
            self.budget.check()
            outcome = self.one(action)
            if outcome.status is Status.GONE and action.image_id:
                gone.add(action.image_id)
            outcomes.append(outcome)
        flush()
        return outcomes

    def one(self, action: Action) -> Outcome:
        if self.dry_run:
            return Outcome(action, Status.PLANNED, snapshots=_predicted(action))
        try:
            return self._perform(action)
        except (ClientError, BotoCoreError) as e:
            if is_throttle(e):
                raise
            code = error_code(e)
            if code in NOT_FOUND_CODES or (action.kind is Kind.DELETE_SNAPSHOT and code in SNAPSHOT_GONE):
                return Outcome(action, Status.GONE, code=code)
            return Outcome(action, Status.FAILED, error=describe_error(e), code=code)

    def _perform(self, a: Action) -> Outcome:
        ec2 = self.ec2
        if a.kind in (Kind.TAG, Kind.REPORT_ERROR):
            ec2.create_tags(a.resources, a.tag_map)
        elif a.kind is Kind.UNTAG:
            ec2.delete_tags(a.resources, a.keys)
        elif a.kind is Kind.DEPRECATE:
            assert a.at is not None
            ec2.enable_deprecation(a.image_id, a.at)
        elif a.kind is Kind.UNDEPRECATE:
            ec2.disable_deprecation(a.image_id)
        elif a.kind is Kind.REQUEST_USAGE_REPORT:
            return Outcome(a, Status.DONE, report_id=ec2.create_usage_report(a.image_id, a.token))
        elif a.kind is Kind.RETIRE:
            results = ec2.deregister(a.image_id, delete_snapshots=True)
            reported = [SnapshotResult(r["SnapshotId"], r["ReturnCode"]) for r in results]
            seen = {r.snapshot_id for r in reported}
            # Not mentioned by EC2: deleted later by the orphan reconciliation if no image uses it.
            reported += [SnapshotResult(s, "unreported") for s in a.resources if s not in seen]
            return Outcome(a, Status.DONE, snapshots=tuple(reported))
        elif a.kind is Kind.DISABLE:
            # The record first: a DisableImage without P:disabled-at would never be re-enabled.
            ec2.create_tags(a.resources, a.tag_map)
            ec2.disable_image(a.image_id)
        elif a.kind is Kind.ENABLE:
            ec2.enable_image(a.image_id)
            if a.permissions is not None:
                ec2.add_launch_permissions(a.image_id, a.permissions)
            ec2.delete_tags(a.resources, a.keys)
        elif a.kind is Kind.DELETE_SNAPSHOT:
            ec2.delete_snapshot(a.snapshot_id)
        else:  # pragma: no cover - every kind is handled above or in _copies
            raise ValueError(f"the executor cannot perform {a.kind}")
        return Outcome(a, Status.DONE)

    def _copies(self, actions: Sequence[Action]) -> list[Outcome]:
        if self.queue is None:  # a dry run reports it too: the real run would fail
            return [Outcome(a, Status.FAILED, error="COPY_QUEUE_URL is not set", code="NoQueue") for a in actions]
        if self.dry_run:
            return [Outcome(a, Status.PLANNED) for a in actions]
        requests = [a.copy for a in actions if a.copy is not None]
        try:
            failures = self.queue.send(requests)
        except (ClientError, BotoCoreError) as e:
            if is_throttle(e):
                raise
            error = describe_error(e)
            return [Outcome(a, Status.FAILED, error=error, code=error_code(e)) for a in actions]
        refused = {id(request): error for request, error in failures}
        return [
            Outcome(a, Status.FAILED, error=refused[id(a.copy)], code="SendMessageBatch")
            if id(a.copy) in refused
            else Outcome(a, Status.DONE)
            for a in actions
        ]


def _predicted(action: Action) -> tuple[SnapshotResult, ...]:
    """A dry run's RETIRE: what EC2 would do with each snapshot (the planner predicted it)."""
    return action.expect if action.kind is Kind.RETIRE else ()
