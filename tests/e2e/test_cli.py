"""The `ami-lifecycle` command, driven as a user drives it: a subprocess, real exit codes, `--json`
parsed, against an embedded local AWS (a moto server started in this test process, so the fleet can
be backdated in its backend)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from ami_lifecycle.domain.tags import format_instant
from ami_lifecycle_cli.main import main
from ami_lifecycle_cli.render import actions_summary, render_report
from ami_lifecycle_localaws.fleet import create_image
from ami_lifecycle_localaws.server import EmbeddedAws

from tests.conftest import regions
from tests.e2e.conftest import cli

pytestmark = pytest.mark.e2e

P = "ami-lifecycle"
EAST, WEST = "us-east-1", "us-west-2"


def images(region: str) -> dict[str, dict[str, str]]:
    client = boto3.client("ec2", region_name=region)
    return {
        i["ImageId"]: {t["Key"]: t["Value"] for t in i.get("Tags", [])}
        for i in client.describe_images(Owners=["self"], IncludeDisabled=True)["Images"]
    }


def seed(now: datetime) -> dict[str, str]:
    """A small fleet that existed before the stack: three generations of web, a held one, one in use,
    one of AWS Backup's, and an app image in the replica region; and the stack's copy queue."""
    east, west = boto3.client("ec2", region_name=EAST), boto3.client("ec2", region_name=WEST)
    url = boto3.client("sqs", region_name=EAST).create_queue(QueueName="ami-lifecycle-CopyQueue")["QueueUrl"]
    COMMON[-1] = url
    ids = {
        "web-1": create_image(east, "web-2026-01-01", created=now - timedelta(days=300)),
        "web-2": create_image(east, "web-2026-06-01", created=now - timedelta(days=170)),
        "web-3": create_image(east, "web-2026-11-01", created=now - timedelta(days=24)),
        "held": create_image(east, "batch-1", tags={f"{P}:hold": "true"}, created=now - timedelta(days=250)),
        "used": create_image(east, "api-v1", created=now - timedelta(days=200)),
        "api-2": create_image(east, "api-v2", created=now - timedelta(days=10)),
        "backup": create_image(
            east, "bk-1", tags={"aws:backup:source-resource": "arn:aws:ec2:x"}, created=now - timedelta(days=200)
        ),
        "app": create_image(west, "app-build-7", created=now - timedelta(days=120)),
    }
    east.run_instances(ImageId=ids["used"], MinCount=1, MaxCount=1)
    return ids


COMMON = ["--region", f"{EAST},{WEST}", "--replica-regions", WEST, "--copy-queue-url", "set by seed()"]


def copy_requests() -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name=EAST)
    messages = sqs.receive_message(QueueUrl=COMMON[-1], MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


# ---------------------------------------------------------------- usage


def test_help_documents_the_commands_and_the_exit_codes() -> None:
    out = cli("--help")
    assert out.returncode == 0, out.stderr
    for word in ("plan", "apply", "backfill", "demo", "exit codes:", "3  AWS credentials or endpoint problem"):
        assert word in out.stdout
    sub = cli("backfill", "--help")
    assert sub.returncode == 0
    for option in ("--apply", "--yes", "--actions", "--image-id", "--region", "--profile", "--json", "--quiet"):
        assert option in sub.stdout
    for option in ("--tag-prefix", "--default-retention", "--default-keep-latest", "--replica-regions"):
        assert option in sub.stdout
    assert "--copy-queue-url" in sub.stdout


BAD_ARGUMENTS = [
    ([], "the following arguments are required: COMMAND"),
    (["plan", "--bogus"], "unrecognized arguments: --bogus"),
    (["plan", "--region", "mars-north-1"], "--region: 'mars-north-1' is not an AWS region"),
    (["backfill", "--actions", "tag,delete"], "--actions: unknown action 'delete'"),
    (["backfill", "--image-id", "ami-12"], "--image-id: 'ami-12' is not an AMI id"),
    (["plan", "--default-retention", "3 months"], "default_retention"),
    (["plan", "--replica-regions", "us-east-1,nowhere"], "not AWS regions: nowhere"),
]


def test_bad_arguments_exit_2_with_a_clear_message_before_any_aws_call(local: EmbeddedAws) -> None:
    from ami_lifecycle_localaws import motoext

    motoext.reset_calls()
    for args, message in BAD_ARGUMENTS[2:4]:  # as a user runs them
        out = cli(*args)
        assert out.returncode == 2, (out.stdout, out.stderr)
        assert message in out.stderr and out.stdout == ""
    for args, message in BAD_ARGUMENTS:  # every case, in-process (the same main(), faster)
        stdout, stderr = io.StringIO(), io.StringIO()
        assert main(args, stdout=stdout, stderr=stderr) == 2, stderr.getvalue()
        assert message in stderr.getvalue() and stdout.getvalue() == ""
    assert not motoext.calls()


# ---------------------------------------------------------------- the package and its rendering


def test_the_cli_lives_outside_the_layer_and_imports_no_cycle() -> None:
    root = Path(__file__).resolve().parents[2]
    assert not (root / "layers" / "core" / "ami_lifecycle" / "cli.py").exists()
    assert (root / "cli" / "ami_lifecycle_cli" / "main.py").exists()
    # Each in a fresh interpreter: the CLI's main loads the local AWS only for `demo`, and the demo
    # loads only the CLI's leaf `render`.
    check = """if True:
        import sys
        import ami_lifecycle_cli.main
        assert not [m for m in sys.modules if m.startswith("ami_lifecycle_localaws")], "main loads the demo"
        """
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    check = """if True:
        import sys
        import ami_lifecycle_localaws.demo
        assert "ami_lifecycle_cli.render" in sys.modules and "ami_lifecycle_cli.main" not in sys.modules
        """
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    module = subprocess.run(
        [sys.executable, "-m", "ami_lifecycle_cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert module.returncode == 0 and "usage: ami-lifecycle" in module.stdout, module.stderr


def test_the_report_is_rendered_from_its_outcomes_not_from_its_text() -> None:
    entry = {
        "image_id": "ami-0123456789abcdef0",
        "name": "web-1",
        "created": "2026-01-01T00:00:00Z",
        "decision": "keep",
        "reason": "not-expired",
        "outcome": "kept",
        "outcomes": [
            {
                "kind": "tag",
                "status": "planned",
                "on_image": True,
                "tags": {f"{P}:managed": "true", f"{P}:family": "web"},
            },
            {
                "kind": "tag",
                "status": "planned",
                "tags": {f"{P}:managed": "true", f"{P}:retention": "90d"},
                "snapshots": 2,
            },
            {"kind": "deprecate", "status": "planned", "at": "2026-04-01T00:00:00Z"},
            {
                "kind": "request-copy",
                "status": "failed",
                "target_region": "eu-west-1",
                "error": "Throttling: slow down",
            },
            {"kind": "request-copy", "status": "planned", "target_region": "us-west-2"},
        ],
        # One line per outcome that happened (text no one reads back), and a note shown as it is.
        "actions": [
            "line one",
            "line two",
            "line three",
            "copy in eu-central-1 exists: ami-0fedcba9876543210",
            "line four",
        ],
        "notes": ["copy in eu-central-1 exists: ami-0fedcba9876543210"],
        "errors": ["replicate: Throttling: slow down"],
    }
    summary = actions_summary(entry)
    assert summary == (
        "tag +3, deprecate, copy→eu-west-1 failed, copy→us-west-2, copy in eu-central-1 exists: ami-0fedcba9876543210"
    )
    assert "line" not in summary
    report = {
        "dry_run": True,
        "accounts": {"123456789012": {"regions": {"us-east-1": {"status": "complete", "images": [entry]}}}},
        "totals": {"considered": 1, "tagged": 1, "copies_requested": 1, "kept": {"not-expired": 1}, "errors": 1},
    }
    text = render_report(report, datetime(2026, 1, 11, tzinfo=UTC), "Backfill plan")
    assert "ami-0123456789abcdef0  web-1  10d" in text and "tag +3, deprecate, copy→eu-west-1 failed" in text
    assert "ERROR: replicate: Throttling: slow down" in text
    assert "would tag 1; would request 1 copies; 1 errors" in text


# ---------------------------------------------------------------- credentials and endpoint


def test_an_unreachable_endpoint_exits_3(local: EmbeddedAws) -> None:
    env = dict(os.environ, AWS_ENDPOINT_URL="http://127.0.0.1:9")
    out = cli("plan", "--region", EAST, env=env)
    assert out.returncode == 3, out.stderr
    assert "cannot reach AWS (AWS_ENDPOINT_URL=http://127.0.0.1:9)" in out.stderr and out.stdout == ""


def test_no_credentials_or_an_unknown_profile_exit_3(local: EmbeddedAws) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") or k == "AWS_ENDPOINT_URL"}
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true")
    out = cli("plan", "--region", EAST, env=env)
    assert out.returncode == 3 and "no usable AWS credentials" in out.stderr, out.stderr
    out = cli("plan", "--region", EAST, "--profile", "nosuchprofile", env=env)
    assert out.returncode == 3 and "nosuchprofile" in out.stderr, out.stderr


# ---------------------------------------------------------------- plan


def test_plan_json_is_the_report_and_nothing_else_and_changes_nothing(local: EmbeddedAws) -> None:
    now = datetime.now(UTC)
    ids = seed(now)
    before = {r: images(r) for r in (EAST, WEST)}
    out = cli("plan", "--json", *COMMON)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)  # stdout is the JSON report alone
    assert report["kind"] == "backfill" and report["dry_run"] is True and report["status"] == "complete"
    by_id = {e["image_id"]: e for r in regions(report).values() for e in r["images"]}
    assert set(by_id) == set(ids.values())
    decisions = {name: (by_id[i]["decision"], by_id[i]["reason"]) for name, i in ids.items()}
    assert decisions == {
        "web-1": ("retire", "expired"),
        "web-2": ("retire", "expired"),
        "web-3": ("keep", "not-expired"),
        "held": ("keep", "hold"),
        "used": ("keep", "in-use"),
        "api-2": ("keep", "not-expired"),
        "backup": ("keep", "foreign-manager"),
        "app": ("keep", "keep-latest"),
    }
    assert report["totals"]["retired"] == 2 and report["totals"]["tagged"] == 7
    assert report["totals"]["copies_requested"] == 3  # web-3, held, api-2: not the expired ones
    assert {r: images(r) for r in (EAST, WEST)} == before and copy_requests() == []
    assert "… " in out.stderr  # progress goes to stderr


def test_plan_prints_a_readable_table_with_totals(local: EmbeddedAws) -> None:
    seed(datetime.now(UTC))
    out = cli("plan", "--quiet", *COMMON)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # --quiet: no progress
    text = out.stdout
    assert "Backfill plan for us-east-1, us-west-2" in text
    assert "IMAGE" in text and "OUTCOME" in text and "REASON" in text
    assert "would retire" in text and "expired" in text and "in-use" in text and "foreign-manager" in text
    totals = "Totals: 8 images considered; would retire 2 (2 snapshots, 12 GiB would be freed, about $0.60 a month)"
    assert totals in text
    assert "would request 3 copies" in text and "copy→us-west-2" in text
    assert "(dry run: nothing was changed)" in text


def test_plan_sweep_shows_what_apply_would_do_and_errors_exit_1(local: EmbeddedAws) -> None:
    now = datetime.now(UTC)
    east = boto3.client("ec2", region_name=EAST)
    expired = {
        f"{P}:managed": "true",
        f"{P}:expires-at": format_instant(now - timedelta(days=1)),
        f"{P}:family": "svc",
        f"{P}:keep-latest": "1",
    }
    old = create_image(east, "svc-1", tags=expired, created=now - timedelta(days=100))
    create_image(east, "svc-2", tags=expired, created=now - timedelta(days=50))
    out = cli("plan", "--sweep", "--json", "--region", EAST)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["kind"] == "sweep" and report["dry_run"] is True
    assert [e["image_id"] for e in regions(report)[EAST]["images"] if e["decision"] == "retire"] == [old]
    assert regions(report)[EAST]["notes"]["snapshot_gib_freed"] == 6  # motoext: 0.4 of the 15 GiB volume

    create_image(east, "tools-1", tags={f"{P}:retention": "3 months"}, created=now - timedelta(days=10))
    bad = cli("plan", "--json", "--region", EAST, "--actions", "tag")
    assert bad.returncode == 1  # the report has an error: an unparseable retention
    assert json.loads(bad.stdout)["totals"]["errors"] == 1


# ---------------------------------------------------------------- backfill and apply


def test_backfill_dry_run_then_apply_does_what_the_plan_said(local: EmbeddedAws) -> None:
    now = datetime.now(UTC)
    ids = seed(now)
    plan = cli("backfill", "--json", *COMMON)
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    assert planned["dry_run"] is True

    refused = cli("backfill", "--apply", *COMMON)  # stdin is not a terminal, no --yes
    assert refused.returncode == 2 and "stdin is not a terminal (pass --yes)" in refused.stderr
    assert {i for r in (EAST, WEST) for i in images(r)} == set(ids.values())

    applied = cli("backfill", "--apply", "--yes", "--json", *COMMON)
    assert applied.returncode == 0, applied.stderr
    done = json.loads(applied.stdout)
    assert done["dry_run"] is False
    assert done["totals"] == planned["totals"]
    assert sorted((m["source_image_id"], m["target_region"]) for m in copy_requests()) == sorted(
        (ids[n], WEST) for n in ("web-3", "held", "api-2")
    )
    p = {e["image_id"]: e for r in regions(planned).values() for e in r["images"]}
    d = {e["image_id"]: e for r in regions(done).values() for e in r["images"]}
    assert {i: (e["decision"], e["reason"]) for i, e in p.items()} == {
        i: (e["decision"], e["reason"]) for i, e in d.items()
    }
    remaining = {i: tags for r in (EAST, WEST) for i, tags in images(r).items()}
    assert set(remaining) == set(ids.values()) - {ids["web-1"], ids["web-2"]}
    assert all(remaining[ids[n]][f"{P}:managed"] == "true" for n in ("web-3", "held", "used", "api-2", "app"))
    assert f"{P}:managed" not in remaining[ids["backup"]]


def test_apply_runs_the_sweep_only_when_confirmed(local: EmbeddedAws) -> None:
    now = datetime.now(UTC)
    east = boto3.client("ec2", region_name=EAST)
    expired = {
        f"{P}:managed": "true",
        f"{P}:expires-at": format_instant(now - timedelta(days=1)),
        f"{P}:family": "svc",
        f"{P}:keep-latest": "1",
    }
    old = create_image(east, "svc-1", tags=expired, created=now - timedelta(days=100))
    new = create_image(east, "svc-2", tags=expired, created=now - timedelta(days=50))
    refused = cli("apply", "--region", EAST)
    assert refused.returncode == 2 and "refusing to act without confirmation" in refused.stderr
    assert set(images(EAST)) == {old, new}

    out = cli("apply", "--yes", "--json", "--region", EAST)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["kind"] == "sweep" and report["dry_run"] is False and report["totals"]["retired"] == 1
    assert set(images(EAST)) == {new}


def test_settings_come_from_options_like_template_parameters(local: EmbeddedAws) -> None:
    east = boto3.client("ec2", region_name=EAST)
    image = create_image(east, "api-v2.0.1", created=datetime.now(UTC) - timedelta(days=1))
    env = dict(os.environ, TAG_PREFIX="acme", DEFAULT_KEEP_LATEST="3")
    out = cli(
        "backfill", "--apply", "--yes", "--actions", "tag", "--region", EAST, "--default-retention", "7d", env=env
    )
    assert out.returncode == 0, out.stderr
    tags = images(EAST)[image]
    assert tags["acme:retention"] == "7d" and tags["acme:keep-latest"] == "3" and tags["acme:family"] == "api"
    assert not any(k.startswith(P) for k in tags)


class Terminal(io.StringIO):
    """A person at a terminal, typing `answer`."""

    def isatty(self) -> bool:
        return True


def test_on_a_terminal_apply_shows_the_plan_and_acts_only_on_yes(local: EmbeddedAws) -> None:
    now = datetime.now(UTC)
    east = boto3.client("ec2", region_name=EAST)
    expired = {
        f"{P}:managed": "true",
        f"{P}:expires-at": format_instant(now - timedelta(days=1)),
        f"{P}:family": "svc",
        f"{P}:keep-latest": "1",
    }
    old = create_image(east, "svc-1", tags=expired, created=now - timedelta(days=100))
    new = create_image(east, "svc-2", tags=expired, created=now - timedelta(days=50))

    stdout, stderr = io.StringIO(), io.StringIO()
    assert main(["apply", "--region", EAST], stdout=stdout, stderr=stderr, stdin=Terminal("no\n")) == 2
    assert "Sweep plan for us-east-1" in stderr.getvalue() and old in stderr.getvalue()
    assert "Retire 1 images and delete 1 snapshots? Type 'yes' to go on:" in stderr.getvalue()
    assert "not confirmed: nothing was changed" in stderr.getvalue() and stdout.getvalue() == ""
    assert set(images(EAST)) == {old, new}

    stdout, stderr = io.StringIO(), io.StringIO()
    assert main(["apply", "--region", EAST], stdout=stdout, stderr=stderr, stdin=Terminal("yes\n")) == 0
    assert "Sweep of us-east-1" in stdout.getvalue() and "retired 1" in stdout.getvalue()
    assert set(images(EAST)) == {new}
