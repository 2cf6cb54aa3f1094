"""The digest of a run (domain/digest.py): one message when something happened or was blocked, none otherwise."""

from __future__ import annotations

from typing import Any

from ami_lifecycle.domain.digest import compose

ACCOUNT, OTHER = "111111111111", "222222222222"


def report(images: list[dict[str, Any]], **totals: Any) -> dict[str, Any]:
    base = {"retired": 0, "errors": 0, "kept": {}, "snapshots_deleted": 0}
    base.update(totals)
    return {
        "dry_run": False,
        "totals": base,
        "accounts": {
            ACCOUNT: {
                "regions": {
                    "us-east-1": {
                        "status": "complete",
                        "images": images,
                        "notes": {"snapshot_gib_freed": 8.5, "snapshot_usd_per_month_freed": 0.43},
                    }
                }
            },
            OTHER: {
                "regions": {"eu-west-1": {"status": "failed", "error": "AccessDenied: cannot assume", "images": []}}
            },
        },
    }


def test_nothing_happened_nothing_sent() -> None:
    quiet = {"dry_run": False, "totals": {"retired": 0, "errors": 0, "kept": {"not-expired": 40}}, "accounts": {}}
    assert compose(quiet) is None


def test_a_run_that_retired_and_failed_somewhere_says_both() -> None:
    d = compose(
        report(
            [{"image_id": "ami-1", "name": "web-1", "outcome": "retired", "reason": "expired"}],
            retired=1,
            errors=1,
            snapshots_deleted=1,
        )
    )
    assert d is not None and d.subject.startswith("ami-lifecycle sweep errors: 1 retired")
    assert "retired 1 images, deleted 1 snapshots" in d.message
    assert "8.5 GiB, about 0.43 USD per month" in d.message
    assert f"FAILED {OTHER} eu-west-1: AccessDenied" in d.message
    assert f"{ACCOUNT} us-east-1 ami-1 web-1: retired (expired)" in d.message


def test_a_blast_radius_stop_is_sent_even_when_nothing_was_retired() -> None:
    r = report([]) | {"blast_radius": {"would_retire": 150, "limit": 100}}
    d = compose(r)
    assert d is not None and "BLOCKED" in d.subject and "150 images were due" in d.message


def test_images_kept_because_their_use_could_not_be_checked_are_listed() -> None:
    e = {
        "image_id": "ami-2",
        "name": "api",
        "outcome": "kept",
        "reason": "shared-unverified",
        "detail": "usage report pending",
    }
    d = compose(report([e], kept={"shared-unverified": 1}))
    assert d is not None and "shared-unverified 1" in d.message and "usage report pending" in d.message
    assert len(d.subject) <= 100
