"""The sweep on Step Functions, end to end (PRODUCT.md section 9, issue 13).

The local stack creates SweepStateMachine in moto from the template's own definition file
(statemachines/sweep.asl.yaml, DefinitionSubstitutions resolved), and moto's interpreter executes it;
its Lambda tasks run RetentionSweepFunction's own handler in-process (stepfunctions.py). The
schedule's Input, read from the template, starts the execution. The hub manages two more accounts:
one whose spoke role is deployed, one whose role is missing (AssumeRole is refused).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ami_lifecycle_localaws import motoext
from ami_lifecycle_localaws import stepfunctions as sf
from ami_lifecycle_localaws.fleet import create_image, tags_of
from ami_lifecycle_localaws.stack import LocalStack

from tests.conftest import ACCOUNT_ID, LocalAws

P = "ami-lifecycle"
HUB = ACCOUNT_ID
SPOKE = "222222222222"  # managed, spoke.yaml deployed (its role exists)
NO_ROLE = "333333333333"  # managed, no spoke role: every pair of it fails, the others go on
EAST, WEST = "us-east-1", "us-west-2"
GOOD = [(a, r) for a in (HUB, SPOKE) for r in (EAST, WEST)]  # 2 accounts x 2 regions
FAILING = [(NO_ROLE, EAST), (NO_ROLE, WEST)]
SLOW = (SPOKE, WEST)  # the pair whose first two invocations run out of time
LONG_AGO = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def stack(moto_aws: LocalAws) -> Iterator[LocalStack]:
    sf.unroute_all()  # no route, fault or recorded task left by another test (the demo's, say)
    stack = LocalStack(
        region=EAST,
        parameters={"SweepRegions": f"{EAST},{WEST}", "ManagedAccounts": f"{SPOKE},{NO_ROLE}"},
        spokes=False,
    )
    for account, region in GOOD:  # spoke.yaml as the StackSet deploys it; none in NO_ROLE
        stack.deploy_spoke(account, region)
    yield stack
    sf.disable()


Fleet = dict[tuple[str, str], dict[str, str]]  # pair -> name -> image id


def seed(moto_aws: LocalAws, pairs: list[tuple[str, str]]) -> Fleet:
    """Per pair: a family of three expired images (the newest kept by keep-latest), an expired held
    image, an expired image an instance runs from, and one not expired."""
    fleet: Fleet = {}
    for account, region in pairs:
        ec2 = moto_aws.ec2(region, account=account)
        managed = {f"{P}:managed": "true", f"{P}:retention": "30d"}
        ids = {
            f"web-{n}": create_image(
                ec2, f"web-2024-0{n}", tags=managed, created=LONG_AGO + timedelta(days=n), account_id=account
            )
            for n in (1, 2, 3)
        }
        alone = {**managed, f"{P}:keep-latest": "0"}
        ids["held"] = create_image(
            ec2, "held", tags={**alone, f"{P}:hold": "true"}, created=LONG_AGO, account_id=account
        )
        ids["used"] = create_image(ec2, "used", tags=alone, created=LONG_AGO, account_id=account)
        ec2.run_instances(ImageId=ids["used"], MinCount=1, MaxCount=1)
        ids["fresh"] = create_image(
            ec2, "fresh", tags=alone, created=datetime.now(UTC) - timedelta(days=1), account_id=account
        )
        fleet[(account, region)] = ids
    return fleet


RETIRED_BY_THE_RULE = {"web-1", "web-2"}  # expired, not held, not in use, not the newest of their family


def registered(moto_aws: LocalAws, account: str, region: str) -> set[str]:
    ec2 = moto_aws.ec2(region, account=account)
    return {i["ImageId"] for i in ec2.describe_images(Owners=["self"], IncludeDisabled=True)["Images"]}


def out_of_time_twice(pair: tuple[str, str]) -> Callable[[str, Any], Callable[[], int] | None]:
    """The first two invocations of `pair` in each phase get 1 s left (under the 60 s margin): the
    function stops at once and returns a cursor; the third has its full time."""
    seen: dict[bool, int] = {}

    def remaining(function: str, event: Any) -> Callable[[], int] | None:
        if function != "RetentionSweepFunction" or not isinstance(event, dict) or "operation" in event:
            return None
        if (event.get("accounts"), event.get("regions")) != ([pair[0]], [pair[1]]):
            return None
        phase = bool(event.get("dry_run"))
        seen[phase] = seen.get(phase, 0) + 1
        return (lambda: 1_000) if seen[phase] <= 2 else None

    return remaining


def test_the_schedule_starts_an_execution_that_sweeps_every_pair(
    stack: LocalStack, moto_aws: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = seed(moto_aws, GOOD)
    stack.remaining_time = out_of_time_twice(SLOW)
    motoext.reset_calls()

    execution = stack.fire_schedule("SweepStateMachine")

    assert execution["status"] == "SUCCEEDED", execution
    out = execution["output"]
    # The template's own definition ran, started with the schedule's own input.
    sfn = moto_aws.client("stepfunctions")
    described = sfn.describe_state_machine(stateMachineArn=stack.resources["SweepStateMachine"])
    assert json.loads(described["definition"]) == sf.definition(stack, "SweepStateMachine")
    assert execution["input"] == json.loads(
        stack.template["Resources"]["SweepStateMachine"]["Properties"]["Events"]["Sweep"]["Properties"]["Input"]
    )

    # Every pair is in the output, keyed by account then region; the failed ones with their error.
    assert {(a, r) for a, x in out["accounts"].items() for r in x["regions"]} == set(GOOD + FAILING)
    assert out["pairs"] == {"total": 6, "complete": 4, "incomplete": 0, "failed": 2}
    assert out["status"] == "partial" and out["kind"] == "sweep" and out["dry_run"] is False
    for account, region in FAILING:
        pair = out["accounts"][account]["regions"][region]
        assert pair["status"] == "failed"
        assert NO_ROLE in pair["error"] and "ami-lifecycle-spoke" in pair["error"], pair["error"]
        assert pair["totals"]["errors"] >= 1 and pair["totals"]["retired"] == 0
    for account, region in GOOD:
        pair = out["accounts"][account]["regions"][region]
        assert pair["status"] == "complete" and "error" not in pair, (account, region, pair)
        assert pair["totals"]["retired"] == 2 and pair["totals"]["considered"] == 6
        assert pair["totals"]["kept"] == {"hold": 1, "in-use": 1, "keep-latest": 1, "not-expired": 1}
        assert pair["iterations"] == (3 if (account, region) == SLOW else 1)
    assert out["totals"]["retired"] == 8 and out["accounts"][HUB]["totals"]["retired"] == 4
    # The cap was applied to all pairs together: a dry-run plan first, then the real run.
    assert out["plan"] == {"would_retire": 8, "pairs": 6, "pairs_failed": 2}
    assert "blast_radius" not in out

    # The retired set is exactly what the rule says, in every pair, and nothing in the failed ones.
    for (account, region), ids in fleet.items():
        left = registered(moto_aws, account, region)
        gone = {name for name, image_id in ids.items() if image_id not in left}
        assert gone == RETIRED_BY_THE_RULE, (account, region)
        ec2 = moto_aws.ec2(region, account=account)
        assert tags_of(ec2, ids["held"])[f"{P}:hold"] == "true"

    # No Lambda API call at all (so no invocation of itself): the tasks are the state machine's.
    assert not [k for k in motoext.calls() if k in ("Invoke", "InvokeAsync", "InvokeWithResponseStream")]
    calls = sf.calls()
    assert {c.function_arn for c in calls} == {sf.function_arn(stack, "RetentionSweepFunction")}
    sweeps = [c for c in calls if "operation" not in c.payload]
    # Per phase: 6 pairs, the slow one 3 times; every payload the contract's, for one pair.
    assert len(sweeps) == 2 * (6 + 2)
    for c in sweeps:
        assert set(c.payload) == {"accounts", "regions", "dry_run", "source", "cursor", "retire_at_most"}
        assert c.payload["source"] == "state-machine" and len(c.payload["accounts"]) == len(c.payload["regions"]) == 1
    slow = [c.payload for c in sweeps if (c.payload["accounts"][0], c.payload["regions"][0]) == SLOW]
    assert [p["cursor"] is None for p in slow] == [True, False, False] * 2  # the cursor is sent back as is
    assert [c.payload["operation"] for c in calls if "operation" in c.payload].count("summarize") == 1
    # Every in-process invocation of the function was a task of the state machine.
    assert len([i for i in stack.invocations if i.function == "RetentionSweepFunction"]) == len(calls)
    assert not sf.oversized()
    # The summary emitted the failed pairs' metric (EMF on stdout).
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"SweepPairsFailed"' in line]
    assert sum(sum(e["SweepPairsFailed"]) for e in emitted) == 2


def test_over_max_retirements_per_run_no_pair_retires_anything(stack: LocalStack, moto_aws: LocalAws) -> None:
    """MaxRetirementsPerRun counts all pairs together: 8 due over the 4 pairs, the limit 5: none retired,
    though each pair alone is under the limit."""
    fleet = seed(moto_aws, GOOD)
    stack.parameters["MaxRetirementsPerRun"] = "5"

    execution = stack.run_state_machine("SweepStateMachine", {"source": "manual"})

    assert execution["status"] == "SUCCEEDED", execution
    out = execution["output"]
    assert out["blast_radius"] == {"would_retire": 8, "limit": 5}
    assert out["totals"]["retired"] == 0 and out["totals"]["kept"].get("blast-radius") == 8
    for (account, region), ids in fleet.items():
        assert set(ids.values()) <= registered(moto_aws, account, region), (account, region)
    # Each pair was told it may retire none.
    apply = [c.payload for c in sf.calls() if "operation" not in c.payload and c.payload["dry_run"] is False]
    assert apply and {p["retire_at_most"] for p in apply} == {0}


def test_a_manual_dry_run_execution_retires_nothing_and_has_no_plan_phase(
    stack: LocalStack, moto_aws: LocalAws
) -> None:
    fleet = seed(moto_aws, [(HUB, EAST)])
    execution = stack.run_state_machine("SweepStateMachine", {"accounts": [HUB], "regions": [EAST], "dry_run": True})
    out = execution["output"]
    assert execution["status"] == "SUCCEEDED" and out["dry_run"] is True and "plan" not in out
    assert list(out["accounts"]) == [HUB] and list(out["accounts"][HUB]["regions"]) == [EAST]
    assert out["totals"]["retired"] == 2  # would retire
    pair = out["accounts"][HUB]["regions"][EAST]
    # One pair: its share of the output holds every image entry, the would-be retirements first.
    assert [e["outcome"] for e in pair["images"]][:2] == ["would retire", "would retire"]
    assert len(pair["images"]) == 6 and "images_omitted" not in pair
    assert set(fleet[(HUB, EAST)].values()) <= registered(moto_aws, HUB, EAST)
    assert len([c for c in sf.calls() if "operation" not in c.payload]) == 1


def test_an_invocation_that_fails_is_caught_for_its_pair_and_retried_on_throttling(
    stack: LocalStack, moto_aws: LocalAws
) -> None:
    seed(moto_aws, [(HUB, EAST), (HUB, WEST)])

    def crash_in_west(function: str, event: Any) -> Callable[[], int] | None:
        if isinstance(event, dict) and event.get("regions") == [WEST] and "operation" not in event:

            def boom() -> int:
                raise RuntimeError("the sweep crashed in us-west-2")

            return boom
        return None

    stack.remaining_time = crash_in_west
    stack.create_state_machine("SweepStateMachine")
    # Lambda throttles the first invocation (of ListPairs): the Retry absorbs it.
    sf.inject_service_error(sf.function_arn(stack, "RetentionSweepFunction"), "TooManyRequestsException")

    execution = stack.run_state_machine("SweepStateMachine", {"accounts": [HUB], "source": "manual"})

    assert execution["status"] == "SUCCEEDED", execution
    out = execution["output"]
    west, east = out["accounts"][HUB]["regions"][WEST], out["accounts"][HUB]["regions"][EAST]
    assert west["status"] == "failed" and west["error"] == "RuntimeError: the sweep crashed in us-west-2"
    assert east["status"] == "complete" and east["totals"]["retired"] == 2
    assert sf.calls()[0].error == "Lambda.TooManyRequestsException"


def test_a_refused_input_fails_the_execution(stack: LocalStack) -> None:
    execution = stack.run_state_machine("SweepStateMachine", {"regions": ["eu-central-1"]})
    assert execution["status"] == "FAILED" and execution["error"] == "BadRequest"
    assert "not swept by this stack" in execution["cause"]
