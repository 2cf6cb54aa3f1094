"""Section accounts: the API calls of one retention sweep over 3 accounts x 2 regions (hub and
spokes, PRODUCT.md section 7), next to the floor (floor.py), AssumeRole included.

The hub (template.yaml, in moto's default account) manages two more accounts; spoke.yaml is deployed
in every (account, region) pair by the local stack (`LocalStack`: the spoke role in each account,
created through that account's own credentials). Each of the 6 pairs gets a seeded fleet
(bench/seed.py, in that account's moto backend). RetentionSweepFunction sweeps every pair in one
invocation (the manual payload; MaxRetirementsPerRun=0), then once more in the same warm container.
Calls are counted per account, region and action (a counter around moto's dispatch, as motoext's
but keyed by account too), and AssumeRole calls by role ARN.

Targets: per pair and in total at most the floor + 10% (the floor: floor.py's per pair, plus one
AssumeRole per spoke account); AssumeRole exactly one per spoke account in the first run (at most one
per pair: the issue's bound) and none in the second (the credentials are cached per container);
the engine's expected retirements retired in every pair, and nothing else.

    .venv/bin/python bench/accounts.py [--accounts-images N]   # this section alone
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import local
import seed
from ami_lifecycle.domain.report import pairs_of
from floor import NOTE, RegionPlan, floor_for, safety
from harness import MET, Run, Section, calls_text, check_max, fmt_n, fmt_s, stdout_to_devnull

KEY = "accounts"
TITLE = "API calls of a sweep over 3 accounts x 2 regions"
HUB = local.ACCOUNT
SPOKES = ("222222222222", "333333333333")
ACCOUNTS = (HUB, *SPOKES)
REGIONS = ("us-east-1", "eu-west-1")
SLACK = 1.10  # the target: the floor + 10%
Pair = tuple[str, str]


def add_options(parser: Any) -> None:
    group = parser.add_argument_group("accounts")
    group.add_argument(
        "--accounts-images",
        dest="accounts_images",
        type=int,
        help="images in all 6 pairs together (default 3,000; 1,200 with --quick)",
    )


class _Counter:
    """(account, region, action) -> calls, and AssumeRole calls by RoleArn, served by moto."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: Counter[tuple[str, str, str]] = Counter()
        self.assumed: Counter[str] = Counter()

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.assumed.clear()


@contextlib.contextmanager
def counted() -> Iterator[_Counter]:
    """Count every action moto serves by the account it acts in (moto's `current_account`: the
    account of the credentials), wrapped around moto's dispatch (and so around motoext's counter and
    faults). Undone on leaving."""
    from moto.core.responses import BaseResponse

    counter = _Counter()
    call_action = BaseResponse.call_action

    def counting(self: Any) -> Any:
        action = self._get_action()
        if action:
            account = str(getattr(self, "current_account", "") or "?")
            region = getattr(self, "region", None) or BaseResponse.default_region
            with counter.lock:
                counter.calls[(account, region, action)] += 1
                if action == "AssumeRole":
                    counter.assumed[str(self._get_param("RoleArn"))] += 1
        return call_action(self)

    BaseResponse.call_action = counting  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        BaseResponse.call_action = call_action  # type: ignore[method-assign]


class _InAccount:
    """What seed.seed_references needs of a session (`client(service, region_name=...)`), acting in
    one account through the local stack's clients."""

    def __init__(self, stack: Any, account: str) -> None:
        self.stack, self.account = stack, account

    def client(self, service: str, region_name: str) -> Any:
        return self.stack.client(service, self.account, region_name)


def run(sec: Section, ctx: Run) -> None:
    opts = ctx.opts
    total = getattr(opts, "accounts_images", None) or (1_200 if opts.quick else 3_000)
    pairs: list[Pair] = [(a, r) for a in ACCOUNTS for r in REGIONS]
    sec.title = f"{TITLE}: {total:,} images" + (" (--quick)" if opts.quick else "")
    local.local_aws(ctx).reset()  # a fresh moto: the sections before seeded the same accounts
    now = datetime.now(UTC)
    parameters = {
        "SweepRegions": ",".join(REGIONS),
        "MaxRetirementsPerRun": "0",
        "ManagedAccounts": ",".join(SPOKES),
    }
    t0 = time.perf_counter()
    stack = local.stack(ctx, parameters, "bench-accounts")  # hub + spoke.yaml in every pair
    deployed = sorted(stack.spokes)
    fleets: dict[Pair, seed.Fleet] = {}
    plans: dict[Pair, RegionPlan] = {}
    for i, (account, region) in enumerate(pairs):
        n = total // len(pairs) + (1 if i < total % len(pairs) else 0)
        fleet = seed.seed_fleet(region, n, now, _InAccount(stack, account), account=account)
        fleets[(account, region)] = fleet
        plans[(account, region)] = floor_for(fleet, now)
    ctx.say(f"accounts: deployed and seeded {total:,} images in {len(pairs)} pairs ({time.perf_counter() - t0:.1f} s)")
    local.freeze_heap()

    with counted() as counter, local.warm(), stdout_to_devnull():
        counter.reset()
        m = local.measure(lambda: stack.invoke("RetentionSweepFunction", {"source": "manual"}))
        first = Counter(counter.calls)
        assumed_first = Counter(counter.assumed)
        # What the first run left (the second may retire what the first adopted: the rule's next run).
        gone, left = 0, 0
        for p in pairs:
            g, lft = safety(plans[p], fleets[p])
            gone, left = gone + g, left + lft
        counter.reset()
        again = local.measure(lambda: stack.invoke("RetentionSweepFunction", {"source": "manual"}))
        assumed_again = Counter(counter.assumed)
    report = m.result if isinstance(m.result, dict) else {}
    ctx.say(f"accounts: swept in {m.wall:.1f} s, {m.total_calls:,} calls")

    by_pair: dict[Pair, Counter[str]] = {p: Counter() for p in pairs}
    elsewhere: Counter[str] = Counter()
    for (account, region, action), n in first.items():
        if (account, region) in by_pair and action != "AssumeRole":
            by_pair[(account, region)][action] += n
        else:
            elsewhere[action] += n  # AssumeRole (the hub's STS), anything not in a pair
    floor: Counter[str] = Counter()
    for region_plan in plans.values():
        floor.update(region_plan.floor)
    floor["AssumeRole"] = len(SPOKES)
    floor_total = sum(floor.values())
    measured_total = sum(first.values())

    expected = {p: plan.expected_retired for p, plan in plans.items()}
    retired: dict[Pair, set[str]] = {p: set() for p in pairs}
    statuses: dict[Pair, str] = {}
    for account, region, r in pairs_of(report):
        statuses[(account, region)] = str(r.get("status"))
        retired[(account, region)] = {e["image_id"] for e in r.get("images", []) if e.get("outcome") == "retired"}
    managed = sum(p.managed for p in plans.values())
    expected_n = sum(len(v) for v in expected.values())
    sec.row(
        "deployment",
        f"hub in {HUB}/{REGIONS[0]}; spoke.yaml in {len(deployed)} pairs; spoke roles in {', '.join(SPOKES)}",
    )
    sec.row("fleet", f"{total:,} images in {len(pairs)} pairs ({managed:,} managed)")
    right = all(retired[p] == expected[p] for p in pairs) and all(statuses.get(p) == "complete" for p in pairs)
    sec.row(
        "status / retired, every pair",
        f"{report.get('status', '?')} / {report.get('totals', {}).get('retired')} retired",
        f"complete / {expected_n:,} (engine's expectation, pair by pair)",
        MET if right else f"MISSED: {[p for p in pairs if retired[p] != expected[p] or statuses.get(p) != 'complete']}",
    )
    per_account = _by_role_account(assumed_first)
    one_each = all(per_account.get(a, 0) == 1 for a in SPOKES) and set(per_account) <= set(SPOKES)
    sec.row(
        "AssumeRole, first run",
        f"{sum(assumed_first.values())} ({', '.join(f'{a}: {n}' for a, n in sorted(per_account.items())) or 'none'})",
        f"1 per spoke account ({len(SPOKES)}), <= 1 per pair ({len(pairs)}); none for the hub",
        MET if one_each and sum(assumed_first.values()) <= len(pairs) else "MISSED",
    )
    sec.row(
        "AssumeRole, second run (same container)",
        str(sum(assumed_again.values())),
        "0 (credentials cached per container)",
        MET if not assumed_again else "MISSED",
    )
    limit = floor_total * SLACK
    sec.row(
        "API calls, total",
        fmt_n(measured_total),
        f"<= {fmt_n(limit)} (floor {fmt_n(floor_total)} + 10%)",
        check_max(measured_total, limit, fmt_n),
    )
    sec.row("above the floor", calls_text(_actions(first) - floor, 10) or "nothing")
    for p in pairs:
        pair_floor = sum(plans[p].floor.values())
        got = sum(by_pair[p].values())
        sec.row(
            f"  {p[0]} {p[1]}",
            f"{got:,} calls ({plans[p].managed:,} managed, {plans[p].candidates} candidates)",
            f"<= {fmt_n(pair_floor * SLACK)} (floor {pair_floor:,} + 10%)",
            check_max(got, pair_floor * SLACK, fmt_n),
        )
    sec.row("calls outside the pairs", calls_text(elsewhere, 6) or "none")
    sec.row("safety: kept images deregistered", str(gone), "0", MET if gone == 0 else f"MISSED: {gone}")
    sec.row("expected retirements still registered", str(left), "0", MET if left == 0 else "MISSED")
    sec.row(
        "time (wall; our CPU; moto CPU)",
        f"{fmt_s(m.wall)}; {fmt_s(m.client_cpu)}; {fmt_s(m.server_cpu)}",
        note="local, not AWS latency",
    )
    again_report = again.result if isinstance(again.result, dict) else {}
    sec.row(
        "second run: API calls / retired",
        f"{fmt_n(again.total_calls)} / {again_report.get('totals', {}).get('retired')}",
        note="retires what the first run adopted (untagged, expired): never in the run that adopts it",
    )
    sec.data.update(
        {
            "images": total,
            "pairs": [list(p) for p in pairs],
            "calls_total": measured_total,
            "floor_total": floor_total,
            "floor": dict(floor),
            "calls_by_pair": {f"{a}/{r}": dict(c) for (a, r), c in by_pair.items()},
            "assume_role_first_run": dict(assumed_first),
            "assume_role_second_run": dict(assumed_again),
            "expected_retired": expected_n,
            "retired": report.get("totals", {}).get("retired"),
            "wall_s": m.wall,
        }
    )
    sec.notes.append(
        "Floor per pair as in sweep_calls (floor.py), plus one AssumeRole per spoke account per run: the "
        "hub acts in its own account with its own credentials. " + NOTE
    )


def _actions(calls: Counter[tuple[str, str, str]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for (_account, _region, action), n in calls.items():
        out[action] += n
    return out


def _by_role_account(assumed: Counter[str]) -> Counter[str]:
    """AssumeRole calls by the account of the role (arn:aws:iam::<account>:role/...)."""
    out: Counter[str] = Counter()
    for arn, n in assumed.items():
        parts = arn.split(":")
        out[parts[4] if len(parts) > 4 else arn] += n
    return out


if __name__ == "__main__":
    import run as bench

    sys.exit(bench.standalone(KEY))
