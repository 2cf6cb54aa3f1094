"""Evidence of non-use, read from AWS (the rule is in domain/evidence.py): which sources reference
the candidates (`gather_evidence`) and whether shared candidates are used elsewhere (`check_sharing`:
in the consumer accounts that are managed accounts, their references, read at once through the
spoke role with `gather_evidence`; elsewhere, the AMI usage reports).

Reads only, with one exception: a shared candidate without a usable AMI usage report gets one
requested (CreateImageUsageReport, never in a dry run), as an executed `REQUEST_USAGE_REPORT` action.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from ..aws.accounts import AccountUnreachable, NotManaged
from ..aws.ec2 import REFERENCES_BATCH, RegionGateways
from ..aws.errors import describe_error as _describe_error
from ..aws.regions import service_regions
from ..domain.actions import Action, Kind, Status
from ..domain.evidence import (
    IMAGE_REFERENCES_SOURCES,
    NOT_SHARED,
    ConsumerCheck,
    Evidence,
    LaunchPermissions,
    Sharing,
    Source,
    SourceAnswer,
    UsageEntry,
    UsageReport,
    assess_sharing,
    can_be_shared,
    report_request_failed,
    report_requested,
    usable_report,
)
from ..domain.model import Image, Reference
from ..domain.report import RegionReport
from ..domain.retention import Decision
from ..domain.settings import Settings
from ..runtime import Deps
from ..runtime.observability import count, logger
from .executor import Executor

InUseWay = Literal["auto", "image-references", "resource-listing"]

# The fewest calls listing every source can take: DescribeInstances, DescribeLaunchTemplates,
# DescribeParameters, ListImageRecipes, ListContainerRecipes (one page each, no template versions).
LISTING_MIN_CALLS = 5


def gather_evidence(
    gw: RegionGateways, image_ids: Sequence[str], way: InUseWay = "auto"
) -> tuple[Evidence, dict[str, Any]]:
    """What references each candidate, which sources answered, and a note on how.

    Two ways cover the same sources (evidence.Source):
    - "image-references": DescribeImageReferences (ceil(n/10) calls) answers for instances, every
      launch template version, SSM parameters and Image Builder recipes;
    - "resource-listing": DescribeInstances (1 call per 1000 instances), DescribeLaunchTemplates (1
      per 200) + DescribeLaunchTemplateVersions (1 per template), DescribeParameters of data type
      aws:ec2:image (1 per 50) + GetParameters (1 per 10), ListImageRecipes + ListContainerRecipes.
    Launch configurations are listed either way (DescribeLaunchConfigurations). "auto" takes
    DescribeImageReferences unless listing is cheaper (counted from the launch templates, whose
    listing is then reused). When DescribeImageReferences fails (refused, throttled past retries),
    each of its sources is listed instead; a source whose listing fails too has not answered, and
    every candidate is then kept as `unverified` (evidence.Evidence.unverified).
    """
    ec2 = gw.ec2
    ordered = list(dict.fromkeys(image_ids))
    wanted = set(ordered)
    reference_calls = math.ceil(len(wanted) / REFERENCES_BATCH)
    note: dict[str, Any] = {"candidates": len(wanted), "image_references_calls": reference_calls}
    evidence = Evidence()
    templates: list[str] | None = None
    chosen = way
    if way == "auto":
        chosen = "image-references"
        if reference_calls > LISTING_MIN_CALLS:
            try:
                templates = ec2.launch_template_ids()
            except (ClientError, BotoCoreError) as e:  # DescribeImageReferences will tell
                note["templates_not_listed"] = _describe_error(e)
            else:
                # DescribeInstances, the template listing (spent), one call per template, SSM, Image Builder.
                listing_calls = LISTING_MIN_CALLS + len(templates)
                note["listing_calls_estimate"] = listing_calls
                if listing_calls - 1 < reference_calls:
                    chosen = "resource-listing"

    if chosen == "image-references":
        try:
            found = ec2.image_references(ordered)
        except (ClientError, BotoCoreError) as e:
            error = _describe_error(e)
            note["fallback"] = f"DescribeImageReferences failed ({error}): listed each source instead"
            logger.warning(
                "DescribeImageReferences failed: listing each source instead", region=ec2.region, error=error
            )
            for source in IMAGE_REFERENCES_SOURCES:
                evidence.record(SourceAnswer(source, "DescribeImageReferences", False, error))
            chosen = "resource-listing"
        else:
            evidence.add(found, wanted)
            for source in IMAGE_REFERENCES_SOURCES:
                evidence.record(SourceAnswer(source, "DescribeImageReferences", True))
    if chosen == "resource-listing":

        def template_versions() -> Mapping[str, Sequence[Reference]]:
            ids = ec2.launch_template_ids() if templates is None else templates
            return ec2.launch_template_versions_image_ids(ids)

        _listed(evidence, wanted, Source.INSTANCES, "DescribeInstances", ec2.instance_image_ids)
        _listed(
            evidence,
            wanted,
            Source.LAUNCH_TEMPLATES,
            "DescribeLaunchTemplates+DescribeLaunchTemplateVersions",
            template_versions,
        )
        _listed(evidence, wanted, Source.SSM_PARAMETERS, "DescribeParameters+GetParameters", gw.ssm.image_parameters)
        _listed(
            evidence,
            wanted,
            Source.IMAGE_BUILDER_RECIPES,
            "ListImageRecipes+ListContainerRecipes",
            gw.imagebuilder.recipe_image_ids,
            absent_service="imagebuilder",
            region=gw.region,
        )
    _listed(
        evidence,
        wanted,
        Source.LAUNCH_CONFIGURATIONS,
        "DescribeLaunchConfigurations",
        gw.autoscaling.launch_configuration_image_ids,
    )
    note["way"] = chosen
    note["sources"] = evidence.note()
    missing = evidence.missing()
    if missing:
        note["unverified_sources"] = [str(s) for s in missing]
        logger.warning(
            "in-use check incomplete: candidates kept as unverified",
            region=ec2.region,
            sources=evidence.unverified(),
        )
    logger.info("in-use check", region=ec2.region, **note, in_use=len(evidence.references))
    return evidence, note


def _listed(
    evidence: Evidence,
    wanted: set[str],
    source: Source,
    by: str,
    listing: Callable[[], Mapping[str, Sequence[Reference]]],
    *,
    absent_service: str | None = None,
    region: str = "",
) -> None:
    """Ask one source by listing it; record its answer (or why it gave none)."""
    try:
        found = listing()
    except (ClientError, BotoCoreError) as e:
        if absent_service and isinstance(e, EndpointConnectionError) and region not in service_regions(absent_service):
            # The service is not offered in this region: nothing of it can reference the image.
            evidence.record(SourceAnswer(source, f"{by} (not offered in {region})", True))
            return
        evidence.record(SourceAnswer(source, by, False, _describe_error(e)))
        return
    evidence.add(found, wanted)
    evidence.record(SourceAnswer(source, by, True))


# ---------------------------------------------------------------- shared images


def check_sharing(
    executor: Executor,
    candidates: Sequence[Image],
    decisions: Mapping[str, Decision],
    settings: Settings,
    now: datetime,
    out: RegionReport,
    *,
    dry_run: bool,
    account_id: str | None,
    deps: Deps | None = None,
) -> dict[str, Sharing]:
    """The shared-image check of the candidates (PRODUCT.md section 8): their launch permissions
    (DescribeImageAttribute, one call per candidate that can be shared), then, for the shared ones:

    - each consumer account that is a managed account (`deps.accounts`; none without `deps`) is
      checked at once, in the image's region, through its spoke role (`check_managed_consumer`:
      the owner's in-use check, for every candidate shared with that account at once);
    - the other consumers (accounts, OUs, organizations, the public; none with SharedImageCheck =
      managed-accounts) through their usage reports (DescribeImageUsageReports, 200 images per
      call), the entries of the reports that can decide (DescribeImageUsageReportEntries), and a
      new report where none can (CreateImageUsageReport; never in a dry run).

    Whatever cannot be read keeps the image."""
    ec2 = executor.ec2
    mode = settings.shared_image_check
    verdicts: dict[str, Sharing] = {}
    shareable = [image for image in candidates if mode != "off" and can_be_shared(image)]
    for image in candidates:
        verdicts[image.image_id] = NOT_SHARED
    if not shareable:
        out.notes["shared_check"] = {"mode": mode, "launch_permissions_read": 0}
        return verdicts

    permissions: dict[str, LaunchPermissions | None] = {}
    errors: dict[str, str] = {}
    for image in shareable:
        try:
            permissions[image.image_id] = ec2.launch_permissions(image)
        except (ClientError, BotoCoreError) as e:
            permissions[image.image_id] = None
            errors[image.image_id] = _describe_error(e)
    shared = [
        image
        for image in shareable
        if permissions[image.image_id] is None or permissions[image.image_id].consumers(account_id)  # type: ignore[union-attr]
    ]
    managed, managed_error = (
        _check_managed_consumers(deps, shared, permissions, account_id, ec2.region, out) if deps else ({}, "")
    )

    def others(image: Image) -> tuple[str, ...]:
        """The consumers of `image` left to the usage reports."""
        p = permissions[image.image_id]
        return () if p is None else p.without(managed.get(image.image_id, {})).consumers(account_id)

    reports: list[UsageReport] | None = []
    reports_error = ""
    needs_reports = [i for i in shared if others(i)] if mode == "strict" else []
    if needs_reports:
        try:
            reports = ec2.usage_reports([i.image_id for i in needs_reports])
        except (ClientError, BotoCoreError) as e:
            reports, reports_error = None, _describe_error(e)
    by_image: dict[str, list[UsageReport]] = defaultdict(list)
    for r in reports or ():
        by_image[r.image_id].append(r)
    # The reports that can decide: per image, the newest available one made since it expired.
    deciding = {}
    for image in needs_reports:
        expires_at = decisions[image.image_id].expires_at or now
        chosen = usable_report(by_image[image.image_id], expires_at, now, "available")
        if chosen is not None:
            deciding[image.image_id] = chosen.report_id
    entries: dict[str, list[UsageEntry]] | None = {}
    entries_error = ""
    if deciding:
        try:
            entries = ec2.usage_report_entries(sorted(set(deciding.values())))
        except (ClientError, BotoCoreError) as e:
            entries, entries_error = None, _describe_error(e)

    requested: list[str] = []
    for image in shareable:
        image_id = image.image_id
        verdict = assess_sharing(
            image,
            decisions[image_id].expires_at or now,
            now,
            mode=mode,
            owner=account_id,
            permissions=permissions[image_id],
            permissions_error=errors.get(image_id, ""),
            reports=None if reports is None else by_image[image_id],
            reports_error=reports_error,
            entries=entries,
            entries_error=entries_error,
            dry_run=dry_run,
            managed=managed.get(image_id),
        )
        if verdict.request_report:
            token = f"ami-lifecycle-{image_id}-{now:%Y%m%d}"
            try:
                done = executor.one(Action(Kind.REQUEST_USAGE_REPORT, ec2.region, image_id, token=token))
            except (ClientError, BotoCoreError) as e:  # throttled past the retries: kept all the same
                verdict = report_request_failed(verdict, _describe_error(e))
            else:
                if done.status is Status.DONE:
                    requested.append(done.report_id)
                    verdict = report_requested(verdict, done.report_id)
                else:
                    verdict = report_request_failed(verdict, done.error or str(done.status))
        verdicts[image_id] = verdict
    out.notes["shared_check"] = {
        "mode": mode,
        "launch_permissions_read": len(shareable),
        "shared": len(shared),
        "usage_reports_requested": requested,
    }
    if errors or reports_error or entries_error or managed_error:
        out.notes["shared_check"]["errors"] = {
            **({"launch_permissions": errors} if errors else {}),
            **({"managed_accounts": managed_error} if managed_error else {}),
            **({"usage_reports": reports_error} if reports_error else {}),
            **({"usage_report_entries": entries_error} if entries_error else {}),
        }
    return verdicts


# ---------------------------------------------------------------- managed consumers


def _check_managed_consumers(
    deps: Deps,
    shared: Sequence[Image],
    permissions: Mapping[str, LaunchPermissions | None],
    owner: str | None,
    region: str,
    out: RegionReport,
) -> tuple[dict[str, dict[str, ConsumerCheck]], str]:
    """{image id: {managed consumer account: its check}}: every shared candidate whose launch
    permissions name a managed account other than its owner, checked in that account; and the
    error when the managed accounts could not be listed (then every consumer is left to the usage
    reports)."""
    try:
        managed = set(deps.accounts.managed())
    except (ClientError, BotoCoreError) as e:
        error = _describe_error(e)
        logger.warning("managed accounts not listed: shared images checked by usage reports", error=error)
        return {}, error
    by_account: dict[str, list[str]] = defaultdict(list)
    for image in shared:
        p = permissions[image.image_id]
        for account in dict.fromkeys(p.accounts if p else ()):
            if account != owner and account in managed:
                by_account[account].append(image.image_id)
    checks: dict[str, dict[str, ConsumerCheck]] = defaultdict(dict)
    notes: dict[str, Any] = {}
    for account, image_ids in by_account.items():
        found, notes[account] = check_managed_consumer(deps, account, region, image_ids)
        for image_id, check in found.items():
            checks[image_id][account] = check
    if notes:
        out.notes["managed_consumers"] = notes
    return dict(checks), ""


def check_managed_consumer(
    deps: Deps, account: str, region: str, image_ids: Sequence[str]
) -> tuple[dict[str, ConsumerCheck], dict[str, Any]]:
    """The references in `account` (a managed account, not the images' owner), in `region`, to
    these images (shared with it): the in-use check of `gather_evidence` through the account's
    clients (its spoke role). A role that cannot be assumed, or a check that fails, leaves every
    image unverified there, naming the account and why. Returns the checks and a note."""
    ids = list(dict.fromkeys(image_ids))

    def failed(error: str) -> tuple[dict[str, ConsumerCheck], dict[str, Any]]:
        logger.warning("managed consumer not checked: shared images kept", account=account, region=region, error=error)
        return {i: ConsumerCheck(account, region, error=error) for i in ids}, {"images": len(ids), "error": error}

    try:
        there = deps.in_account(account)
    except AccountUnreachable as e:
        count("AccountsUnreachable")
        return failed(f"cannot assume {e.role_arn}: {e.reason}")
    except NotManaged as e:
        return failed(str(e))
    try:
        evidence, note = gather_evidence(RegionGateways.of(there.aws, region), ids)
    except (ClientError, BotoCoreError) as e:
        return failed(_describe_error(e))
    unverified = evidence.unverified()
    checks = {i: ConsumerCheck(account, region, tuple(evidence.references.get(i, ())), unverified) for i in ids}
    in_use = sorted(i for i, c in checks.items() if c.in_use)
    logger.info("managed consumer checked", account=account, region=region, images=len(ids), in_use=len(in_use))
    summary: dict[str, Any] = {"images": len(ids), "in_use": in_use, "way": note.get("way")}
    if "unverified_sources" in note:
        summary["unverified_sources"] = note["unverified_sources"]
    return checks, summary
