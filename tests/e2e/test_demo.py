"""`ami-lifecycle demo` (what `make demo` runs): the whole flow on the embedded local AWS, readable
output, a JSON summary, and nothing left running afterwards."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
from ami_lifecycle_cli.main import main

from tests.e2e.conftest import CLI

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_make_demo_runs_the_flow_and_explains_it() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "$(BIN)/ami-lifecycle demo" in makefile  # the README's main-job command runs exactly this

    out = subprocess.run([*CLI, "demo"], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    for line in (
        "ami-lifecycle demo: template.yaml's functions on an embedded local AWS (moto at http://127.0.0.1:",
        "new images announced (EC2 AMI State Change: available) -> ImageEventsFunction",
        "CopyQueue -> ReplicatorFunction",
        "BackfillFunction, dry run of every action (events/backfill_plan.json): the plan",
        "BackfillFunction, tag + replicate for real (events/backfill_apply.json)",
        "SweepStateMachine, fired by its schedule -> RetentionSweepFunction per pair",
        "hub (template.yaml) and spokes (spoke.yaml) deployed",
        "=== 123456789012 hub / us-east-1 ",
        "=== 123456789012 hub / us-west-2 ",
        "=== 123456789012 hub / eu-west-1 ",
        "=== 222222222222 payments / eu-west-1 ",
        "=== 333333333333 analytics / us-east-1 ",
        "=== 444444444444 sandbox / us-east-1 ",
        "OK: the sweep retired exactly the images the backfill's plan listed.",
        "OK: only the sandbox account (444444444444, its role missing) failed; every other pair completed.",
        "=== Staged and reversible retirement: 123456789012 hub / us-east-1 ",
        "Recycle Bin: Region-level rules for EC2_IMAGE and EBS_SNAPSHOT (7 days) before the sweep",
        "RESTORABLE UNTIL",
        "deleted (into the Recycle Bin)",
        "DisableBeforeDeregister=7d",
        "disabled (grace until ",
        "OK: legacy-2025 was disabled first (state disabled, not deregistered); restored legacy-2025 (disabled) "
        "and web-2026-04-10 (recycle-bin), each held with ami-lifecycle:hold=true.",
        "the local AWS is stopped",
    ):
        assert line in text, line
    # Every pair is shown: the sandbox's three failed, one pair without images, the others in full.
    assert text.count("FAILED: AccountUnreachable: account 444444444444") == 3
    assert text.count("(no images)") == 1
    for section in ("Tagged (", "Copied here (", "Retired (", "Kept ("):
        assert text.count(section) == 8, section
    # Retired with their reason, and kept with theirs.
    for reason in ("expired at", "in-use", "hold", "protected", "keep-latest", "not-expired", "foreign-manager"):
        assert reason in text, reason
    assert "opted-out" in text and "bad-tag" in text and "shared-in-use" in text
    assert "event, through its spoke" in text  # images baked in spoke regions, tagged by their events
    assert "kept (another image uses it)" in text  # the shared snapshot survives
    assert "local AWS (moto) listening on http://127.0.0.1:" in out.stderr  # progress on stderr


def test_demo_json_summary_and_nothing_left_running(monkeypatch: pytest.MonkeyPatch) -> None:
    before_threads = set(threading.enumerate())
    endpoint_before = os.environ.get("AWS_ENDPOINT_URL")
    stdout, stderr = io.StringIO(), io.StringIO()
    assert main(["demo", "--json"], stdout=stdout, stderr=stderr) == 0, stderr.getvalue()
    summary = json.loads(stdout.getvalue())

    assert summary["plan_matches_sweep"] is True and summary["mismatch"] == {}
    assert summary["unexpected_failures"] == []
    assert summary["seconds"] < 60
    accounts = summary["accounts"]
    hub = accounts["123456789012"]["regions"]
    retired = {r["name"]: r for r in hub["us-east-1"]["retired"]}
    assert set(retired) == {"db-2026-01-15", "api-v1.0.0", "web-2026-04-10", "web-2026-06-20"}
    assert "kept (another image uses it)" in retired["db-2026-01-15"]["snapshots"]
    assert {r["name"] for r in hub["eu-west-1"]["retired"]} == {"app-build-101", "app-build-102", "report-v3"}
    assert hub["us-west-2"]["retired"] == []
    kept = {r["name"]: r["reason"] for r in hub["us-east-1"]["kept"]}
    assert kept["api-v1.1.0"] == kept["api-v1.2.0"] == "in-use"  # a running instance; an old template version
    assert kept["api-v1.3.0"] == "protected" and kept["batch-2026.02"] == "hold"
    assert kept["db-2026-05-01"] == "keep-latest" and kept["tools-2026-03-01"] == "bad-tag"
    assert kept["golden-legacy"] == "opted-out"
    assert {kept[n] for n in ("web-backup-2026-03", "data-vol-2026-05", "ib-nginx-1.2.3")} == {"foreign-manager"}
    # The shared golden image: expired, but the analytics account (managed) runs an instance from it.
    assert kept["golden-base-2026-03-01"] == "shared-in-use"
    (golden,) = [r for r in hub["us-east-1"]["kept"] if r["name"] == "golden-base-2026-03-01"]
    assert "333333333333" in golden["detail"]
    copies = {c["name"] for c in hub["us-west-2"]["copied"]}
    assert {"web-2026-11-25", "api-v1.5.0", "app-build-104", "batch-2026.02", "db-2026-05-01"} <= copies
    assert "api-v1.4.0" not in copies  # expired and not the newest of its family: not copied

    # The other accounts: baked in their spoke regions, tagged by their own events through the spoke
    # wiring, copied within their account, swept there.
    payments = accounts["222222222222"]["regions"]
    assert {(r["name"], r["by"]) for r in payments["eu-west-1"]["tagged"] if r["by"].startswith("event")} == {
        ("pay-api-2026-11-25", "event, through its spoke")
    }
    assert {r["name"] for r in payments["eu-west-1"]["retired"]} == {"pay-api-2026-03-02", "pay-api-2026-06-01"}
    assert [c["name"] for c in payments["us-west-2"]["copied"]] == ["pay-api-2026-11-25"]
    assert {r["name"] for r in payments["us-west-2"]["tagged"]} == {"pay-worker-2026-11-25", "pay-api-2026-11-25"}
    analytics = accounts["333333333333"]["regions"]
    assert {r["name"] for r in analytics["us-east-1"]["retired"]} == {"etl-2026-02-01"}
    assert {c["name"] for c in analytics["us-west-2"]["copied"]} == {"etl-2026-10-20", "etl-2026-11-25"}
    assert all(
        r["status"] == "complete" for a in accounts.values() if a["name"] != "sandbox" for r in a["regions"].values()
    )
    # The sandbox's role is missing: each of its pairs is reported failed, with the reason.
    for pair in accounts["444444444444"]["regions"].values():
        assert pair["status"] == "failed" and "AccessDenied" in pair["error"]
    assert summary["plan_totals"]["retired"] == summary["sweep_totals"]["retired"] == 10
    assert summary["sweep_totals"]["errors"] == 3  # the sandbox's three pairs

    # Staged and reversible retirement: the main sweep's retirements in the hub's us-east-1 went to the
    # Recycle Bin (its rules were created before it), each restorable until a given time.
    staged = summary["staged"]
    assert {r["resource_type"] for r in staged["recycle_bin_rules"]} == {"EC2_IMAGE", "EBS_SNAPSHOT"}
    assert all(r["restorable_until"] for r in retired.values())
    assert all(not r.get("restorable_until") for r in hub["eu-west-1"]["retired"])  # no rule there
    # The second stack (DisableBeforeDeregister=7d) disabled its expired image first: still registered.
    assert staged["parameters"]["DisableBeforeDeregister"] == "7d"
    disabled = staged["disabled"]
    assert disabled["name"] == "legacy-2025" and disabled["outcome"] == "disabled"
    assert disabled["state"] == "disabled" and disabled["detail"].startswith("disabled (grace until ")
    assert disabled["disabled_at"]
    # Two restores, one from each source, both launchable again and held.
    restored = {r["name"]: r for r in staged["restored"]}
    assert set(restored) == {"legacy-2025", "web-2026-04-10"}
    assert restored["legacy-2025"]["source"] == "disabled"
    assert restored["legacy-2025"]["image_id"] == disabled["image_id"]
    assert restored["web-2026-04-10"]["source"] == "recycle-bin"
    assert restored["web-2026-04-10"]["image_id"] == retired["web-2026-04-10"]["image_id"]
    assert restored["web-2026-04-10"]["snapshots_restored"] == restored["web-2026-04-10"]["snapshots"] != []
    for r in restored.values():
        assert r["status"] == "restored" and r["state"] == "available", r
        assert r["held"] is True and r["hold_tag"] == "true", r

    # The server is stopped, its port closed, its threads gone, the environment restored.
    host, port = urlparse(summary["endpoint"]).hostname, urlparse(summary["endpoint"]).port
    with pytest.raises(OSError), socket.create_connection((host, port), timeout=1):
        pass
    left = [t for t in threading.enumerate() if t not in before_threads and t.is_alive()]
    assert left == [], left
    assert os.environ.get("AWS_ENDPOINT_URL") == endpoint_before


def test_demo_without_moto_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "moto", None)  # `import moto` raises ImportError
    stdout, stderr = io.StringIO(), io.StringIO()
    assert main(["demo"], stdout=stdout, stderr=stderr) == 2
    assert "pip install -e '.[local]'" in stderr.getvalue() and stdout.getvalue() == ""
