"""Section event_path: ImageEventsFunction per EC2 `available` event.

Events are delivered through the template's wiring (LocalStack.put_event routes each one by the
rule's pattern), then the same function is invoked warm (LocalStack.invoke with settings and clients
kept, local.warm). Targets: 3 EC2 calls and 1 SendMessageBatch per event, the same for every event.

    .venv/bin/python bench/event_path.py      # this section alone
"""

from __future__ import annotations

import copy
import json
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import local
import seed
from ami_lifecycle_localaws.stack import ROUTING_ACTIONS as _ROUTING
from harness import HOME, MET, ROOT, Run, Section, calls_text, check_max, fmt_n, fmt_s, median, stdout_to_devnull

KEY = "event_path"
TITLE = "Event path: ImageEventsFunction per available event"
FUNCTION = "ImageEventsFunction"
REPLICAS = ("us-west-2", "eu-west-1")
ROUTING_ACTIONS = _ROUTING  # the local runner's routing (the deployed rules), not the product's calls
SQS_ACTIONS = frozenset({"SendMessage", "SendMessageBatch"})
EC2_CALLS_PER_EVENT = 3  # DescribeImages, CreateTags, EnableImageDeprecation
SQS_CALLS_PER_EVENT = 1  # one SendMessageBatch with a copy request per replica region


def run(sec: Section, ctx: Run) -> None:
    n, n_warm = (5, 10) if ctx.opts.quick else (10, 30)
    stack = local.stack(ctx, {"ReplicaRegions": ",".join(REPLICAS)}, "bench-events")
    now = datetime.now(UTC)
    planned = [
        seed.Planned(
            image_id="",
            name=f"web-2026-11-25-{i:03d}",
            family="web",
            created=(now - timedelta(minutes=5)).replace(microsecond=0),
            kind="unmanaged",
            tags={},
            expired=False,
        )
        for i in range(n + 1 + n_warm)
    ]
    seed.seed_images(HOME, planned)
    routed_images, warm_images = planned[: n + 1], planned[n + 1 :]
    template = json.loads((ROOT / "events" / "ami_available.json").read_text())

    def event_for(image_id: str) -> dict[str, Any]:
        e = copy.deepcopy(template)
        e["detail"]["ImageId"] = image_id
        e["region"] = HOME
        e["resources"] = [f"arn:aws:ec2:{HOME}::image/{image_id}"]
        return e

    # 1. Through the template's wiring: put_event routes each event by the rule's pattern. LocalStack
    #    resets the runtime around each invocation: new settings and boto3 clients each time.
    runs: list[local.Measured] = []
    with stdout_to_devnull():
        for p in routed_images:
            runs.append(local.measure(partial(stack.put_event, event_for(p.image_id)), exclude_actions=ROUTING_ACTIONS))
    handler_times = stack.handler_seconds[1:]  # the first one imports the handler module
    # 2. Warm, as Lambda runs a warm execution environment: the handler module, settings and clients
    #    are kept between events (the environment is the one the template gives the function).
    warm_runs: list[local.Measured] = []
    with local.warm(), stdout_to_devnull():
        stack.invoke(FUNCTION, event_for(planned[0].image_id))  # a repeat: warms clients, writes nothing
        for p in warm_images:
            warm_runs.append(local.measure(partial(stack.invoke, FUNCTION, event_for(p.image_id))))

    first, warm = runs[0], runs[1:]
    everything = warm + warm_runs
    ec2_calls = [Counter({a: c for a, c in r.calls.items() if a not in SQS_ACTIONS}) for r in everything]
    sqs_calls = [Counter({a: c for a, c in r.calls.items() if a in SQS_ACTIONS}) for r in everything]
    routed = all(len(r.result) == 1 and r.result[0].function == FUNCTION for r in runs)
    results = [r.result[0].result for r in runs if r.result] + [r.result for r in warm_runs]
    events = len(results)
    tagged = sum(1 for r in results if isinstance(r, dict) and r.get("status") == "tagged")
    copies = Counter(len(r.get("copies_requested", [])) if isinstance(r, dict) else -1 for r in results)
    worst_ec2 = max((sum(c.values()) for c in ec2_calls), default=0)
    worst_sqs = max((sum(c.values()) for c in sqs_calls), default=0)
    same = all(c == ec2_calls[0] for c in ec2_calls) and all(c == sqs_calls[0] for c in sqs_calls)

    sqs = local.session().client("sqs", region_name=HOME)
    attrs = sqs.get_queue_attributes(
        QueueUrl=stack.queue_url("CopyQueue"), AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    queued = int(attrs.get("ApproximateNumberOfMessages", 0))
    expect_queued = len(REPLICAS) * (events + 1)  # + the warm-up repeat, which queues its copies again

    sec.row(
        "events", f"{events} `available` events ({n + 1} routed, {n_warm} warm), ReplicaRegions={','.join(REPLICAS)}"
    )
    sec.row(
        "routed / tagged / copies per event",
        f"{'yes' if routed else 'NO'} / {tagged} of {events} / {dict(copies)}",
        f"yes / {events} / {{{len(REPLICAS)}: {events}}}",
        MET if routed and tagged == events and copies == Counter({len(REPLICAS): events}) else "MISSED: differs",
    )
    sec.row(
        "EC2 calls per event",
        f"{worst_ec2} ({calls_text(ec2_calls[0]) if ec2_calls else '-'})",
        str(EC2_CALLS_PER_EVENT),
        check_max(worst_ec2, EC2_CALLS_PER_EVENT, fmt_n),
    )
    sec.row(
        "SQS calls per event",
        f"{worst_sqs} ({calls_text(sqs_calls[0]) if sqs_calls else '-'}), {queued} messages queued",
        f"{SQS_CALLS_PER_EVENT} SendMessageBatch ({expect_queued} msgs)",
        check_max(worst_sqs, SQS_CALLS_PER_EVENT, fmt_n)
        if queued == expect_queued
        else f"MISSED: {queued} messages queued",
    )
    sec.row("same calls for every event", "yes" if same else "no", "yes", MET if same else "MISSED")
    sec.row(
        "warm handler: wall per event, median",
        f"{fmt_s(median([r.wall for r in warm_runs]))} (our CPU {fmt_s(median([r.client_cpu for r in warm_runs]))}, "
        f"moto CPU {fmt_s(median([r.server_cpu for r in warm_runs]))})",
        note="clients and settings kept, as in a warm Lambda",
    )
    sec.row(
        "via put_event: wall per event, median",
        f"{fmt_s(median([r.wall for r in warm]))} (handler {fmt_s(median(handler_times))})",
        note="LocalStack re-creates settings and boto3 clients on every invocation",
    )
    sec.row("via put_event: first event", fmt_s(first.wall), note="+ importing the handler module")
    sec.data.update(
        {
            "events": events,
            "ec2_calls_per_event": dict(ec2_calls[0]) if ec2_calls else {},
            "sqs_calls_per_event": dict(sqs_calls[0]) if sqs_calls else {},
            "messages_queued": queued,
            "warm_median_wall_s": median([r.wall for r in warm_runs]),
            "warm_median_client_cpu_s": median([r.client_cpu for r in warm_runs]),
            "put_event_median_wall_s": median([r.wall for r in warm]),
            "put_event_median_handler_s": median(handler_times),
            "first_event_s": first.wall,
        }
    )
    sec.notes.append(
        "Event path: put_event routes each event by the rules deployed in EventBridge (ListRules, TestEventPattern "
        "per rule, ListTargetsByRule; a bus target's checks); those calls are the local runner's, not the product's, "
        "and are not counted. "
        "LocalStack resets the function's runtime around every invocation, so its per-event time includes "
        "creating the settings and two boto3 clients (cold-ish; EmbeddedAws shares botocore's parsed service "
        "models between sessions, so not their parsing); the warm rows invoke the same function with settings "
        "and clients kept, the way a warm Lambda runs."
    )


if __name__ == "__main__":
    import run as bench

    sys.exit(bench.standalone(KEY))
