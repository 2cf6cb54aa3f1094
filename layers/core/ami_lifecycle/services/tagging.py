"""Adopt one image: the adoption rule and the tagging planner (domain/adoption.py), carried out by
the executor. Used by the event path, the sweep (missed events, live tags) and the backfill.

Calls: one CreateTags for the image and its snapshots together, one EnableImageDeprecation; the
snapshots' tags are read (one DescribeSnapshots) only when nothing changes on the image and the
caller does not know them. A second run over the same image writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ..aws.ec2 import Ec2
from ..domain.actions import Kind, Outcome, Status
from ..domain.adoption import (
    MAX_TAGS,
    Adoption,
    Verdict,
    decide_adoption,
    needs_snapshot_tags,
    plan_refusal,
    plan_tagging,
    tag_limit_problem,
    tagged,
)
from ..domain.model import Image
from ..runtime import Deps
from ..runtime.observability import count, logger
from .executor import Executor


@dataclass
class Tagging:
    """What became of one image's adoption: the verdict, the outcomes of its writes, and the image
    as it is afterwards (`after`: the tags that were written, or in a dry run would be)."""

    image_id: str
    region: str
    verdict: Verdict
    reason: str
    adoption: Adoption | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    # Why some lifecycle tags cannot be used (adoption errors, or the tag-limit refusal).
    problems: list[str] = field(default_factory=list)
    after: Image | None = None

    @property
    def adopted(self) -> bool:
        return self.verdict in (Verdict.ADOPTED, Verdict.ALREADY_MANAGED)

    @property
    def errors(self) -> list[str]:
        """The problems, then each write AWS refused."""
        return [*self.problems, *(f"{o.action.kind}: {o.error}" for o in self.failures)]

    @property
    def failures(self) -> list[Outcome]:
        """The writes AWS refused (the tag-limit refusal is not one: it is final and reported)."""
        return [o for o in self.outcomes if o.status is Status.FAILED]

    @property
    def wrote(self) -> bool:
        """Some tag was (or would be) written or removed."""
        return any(o.happened and o.action.kind in (Kind.TAG, Kind.UNTAG) for o in self.outcomes)

    def to_dict(self) -> dict[str, object]:
        return {
            "image_id": self.image_id,
            "region": self.region,
            "decision": str(self.verdict),
            "reason": self.reason,
            "outcomes": [o.to_dict() for o in self.outcomes],
            "actions": [o.describe() for o in self.outcomes],
            "errors": list(self.errors),
        }


def tag_image(
    executor: Executor,
    image: Image,
    deps: Deps,
    *,
    snapshot_tags: Mapping[str, Mapping[str, str]] | None = None,
) -> Tagging:
    """Decide, plan and carry out one image's adoption."""
    ec2, settings = executor.ec2, deps.settings
    adoption = decide_adoption(image, settings, deps.clock(), deps.account_id, deps.known_regions)
    result = Tagging(image.image_id, ec2.region, adoption.verdict, adoption.reason, adoption, after=image)
    if not adoption.adopt:
        logger.info("image not adopted", image_id=image.image_id, region=ec2.region, reason=adoption.reason)
        count("ImagesSkipped")
        return result
    problem = tag_limit_problem(image, adoption)
    if problem:
        return _refuse(executor, image, deps, result, problem)
    result.problems = list(adoption.errors)
    if adoption.errors:
        logger.warning(
            "image has unusable lifecycle tags", image_id=image.image_id, region=ec2.region, errors=adoption.errors
        )
        count("TagErrors")
    if snapshot_tags is None and needs_snapshot_tags(image, adoption):
        snapshot_tags = _snapshot_tags(ec2, image)
    result.outcomes = executor.run(plan_tagging(image, adoption, snapshot_tags))
    failed = [o for o in result.outcomes if o.status is Status.FAILED]
    if any(o.status is Status.GONE for o in result.outcomes):
        logger.info("image vanished while tagging", image_id=image.image_id, region=ec2.region)
        result.verdict, result.reason = Verdict.MISSING, "the image was deregistered while being tagged"
        return result
    if any(o.code == "TagLimitExceeded" for o in failed):
        # A snapshot (whose tags were not read) had no room: EC2 wrote nothing in that call.
        problem = f"an image or snapshot cannot take the lifecycle tags (EC2 allows {MAX_TAGS} per resource)"
        return _refuse(executor, image, deps, result, problem)
    tags_ok = not any(o.action.kind in (Kind.TAG, Kind.UNTAG) for o in failed)
    if tags_ok:
        after = tagged(image, adoption)
        if any(o.action.kind in (Kind.DEPRECATE, Kind.UNDEPRECATE) for o in failed):
            after = replace(after, deprecation_time=image.deprecation_time)
        result.after = after
    if adoption.verdict is Verdict.ADOPTED and tags_ok:
        count("ImagesAdopted")
    logger.info(
        "image tagged",
        image_id=image.image_id,
        region=ec2.region,
        decision=str(result.verdict),
        actions=[o.describe() for o in result.outcomes],
        dry_run=executor.dry_run,
    )
    return result


def tag_image_by_id(executor: Executor, image_id: str, deps: Deps) -> Tagging:
    image = executor.ec2.describe_image(image_id)
    if image is None:
        logger.info("image not found: nothing to tag", image_id=image_id, region=executor.ec2.region)
        count("ImagesMissing")
        return Tagging(image_id, executor.ec2.region, Verdict.MISSING, "the image no longer exists")
    return tag_image(executor, image, deps)


def _snapshot_tags(ec2: Ec2, image: Image) -> dict[str, dict[str, str]]:
    return {
        s["SnapshotId"]: {t["Key"]: t.get("Value", "") for t in s.get("Tags", [])}
        for s in ec2.snapshots(list(image.snapshot_ids))
    }


def _refuse(executor: Executor, image: Image, deps: Deps, result: Tagging, problem: str) -> Tagging:
    """Refuse, once and for all (no retry can make room): log, count, and say so in `P:error`.
    Nothing else is written, so the image stays unmanaged (never retired)."""
    result.verdict, result.reason, result.problems = Verdict.REFUSED, problem, [problem]
    result.after = image
    logger.warning("image not adopted: tag limit", image_id=image.image_id, region=executor.ec2.region, reason=problem)
    count("TagLimitExceeded")
    outcomes = executor.run(plan_refusal(image, problem, deps.settings.keys))
    for o in outcomes:
        if o.status is Status.FAILED:
            logger.warning("P:error not written", image_id=image.image_id, region=executor.ec2.region, error=o.error)
    result.outcomes = [o for o in outcomes if o.happened]
    return result
