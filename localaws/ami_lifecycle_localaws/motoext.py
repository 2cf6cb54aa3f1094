"""A small, documented extension of moto 5.2.1: the EC2 AMI behaviour our tool relies on.

The product code calls the real boto3 APIs with real parameters; :func:`install` monkeypatches
moto so that it answers them the way Amazon EC2 does. It works in-process under ``moto.mock_aws()``
and behind ``moto.server.ThreadedMotoServer`` in the same process (both dispatch through the same
moto classes). Call :func:`install` once, before or after starting moto; calling it again is a no-op.

Gaps filled (real EC2 behaviour mimicked, by API)
-------------------------------------------------
1. ``EnableImageDeprecation`` / ``DisableImageDeprecation``: store and clear the deprecation time;
   ``DescribeImages`` returns ``DeprecationTime`` as ``2026-12-24T00:00:00.000Z``, seconds truncated
   to the minute (the API reference says EC2 rounds them to the nearest minute). A time in the past,
   or more than 10 years ahead (the API reference's limits), is ``InvalidParameterValue``; an unknown
   image is ``InvalidAMIID.NotFound``. ``DescribeImages(IncludeDeprecated=...)``: deprecated images of
   *other* owners are hidden unless ``IncludeDeprecated=True`` or the ids are asked for; the owner
   always sees its own deprecated images.
2. ``EnableImageDeregistrationProtection(WithCooldown)`` / ``DisableImageDeregistrationProtection``:
   ``DescribeImages`` and ``DescribeImageAttribute(Attribute='deregistrationProtection')`` report
   ``enabled``, ``enabled-with-cooldown``, ``disabled`` or, for 24 hours after disabling a protection
   that had a cooldown, ``disabled-until-<YYYY-MM-DDTHH:MM:SS.000Z>``. ``DeregisterImage`` on a protected
   image (enabled, or still in the cooldown) fails with code ``InvalidParameter`` (assumption: the AWS
   documentation does not name the code EC2 uses here).
3. ``DisableImage`` / ``EnableImage``: state ``disabled``; disabling removes every launch permission
   (public, accounts, organizations, OUs) and re-enabling does not give them back, as the API reference
   and the User Guide say. ``DescribeImages`` leaves disabled images out, even when asked for by id,
   unless ``IncludeDisabled=True``. Only the owner may disable or enable an image: another owner's is
   ``InvalidAMIID.Unavailable`` (assumption: the reference names no code). While disabled, an image
   cannot be shared (``ModifyImageAttribute`` adding launch permissions) nor launched (``RunInstances``):
   both ``InvalidAMIID.Unavailable`` (assumption, likewise); its snapshots stay in use (entry 7).
4. ``DescribeImages``: ``MaxResults`` (5..1000, else ``InvalidParameterValue``) and an opaque
   ``NextToken`` (a bad one is ``InvalidPaginationToken``), so the boto3 paginator works and makes
   ceil(n / MaxResults) calls. Every moto filter keeps working; filters ``source-image-id`` and
   ``source-image-region`` are added, and images report ``SourceImageId`` / ``SourceImageRegion``
   (set by ``CopyImage``), ``StateReason`` when failed, and ``Ebs.Encrypted`` in their block devices.
5. ``CreateImage(TagSpecifications=[{'ResourceType': 'snapshot', ...}])`` tags the image's snapshot
   (moto raised ``NotImplementedError``).
6. ``CopyImage``: ``ClientToken`` is idempotent per destination region (same token: same ``ImageId``,
   no second copy; same token with other parameters: ``IdempotentParameterMismatch``);
   ``CopyImageTags=True`` copies the source's user tags (not ``aws:`` ones); ``TagSpecifications``
   (``image``, ``snapshot``) are applied after the copied tags; ``Encrypted`` / ``KmsKeyId`` encrypt the
   copy's snapshot (default key ``alias/aws/ebs``), ``KmsKeyId`` without ``Encrypted=True`` is
   ``InvalidParameterDependency``. As in EC2 the key is checked asynchronously: a key that is not an
   enabled KMS key of the destination region (moto's KMS backend) is accepted and the copy is
   ``failed`` with ``StateReason.Code = 'Client.InvalidKMSKey.InvalidState'``. Copies are
   ``available`` immediately (moto behaviour, kept).
7. ``DeregisterImage(DeleteAssociatedSnapshots=True)`` deletes the image's snapshots that no other
   registered image of the region (disabled ones included) uses and returns ``DeleteSnapshotResults``
   (``success`` / ``skipped``). ``DeleteSnapshot`` of a snapshot used by any registered image is
   ``InvalidSnapshot.InUse`` (moto checked only the image that created it). To make shared snapshots
   possible, ``RegisterImage(BlockDeviceMappings=[{'Ebs': {'SnapshotId': ...}}])`` registers the image
   on that existing snapshot (only the root device's snapshot is modelled).
8. ``DescribeImageReferences`` for ``ec2:Instance`` (not terminated by default; option ``state-name``),
   ``ec2:LaunchTemplate`` (option ``version-depth``, 1..10000, default 10: the most recent versions of
   each template are inspected; one reference per template) and ``ssm:Parameter`` (latest value equal
   to the image id). The instance default follows our product's reading (the API reference says
   "all states"; terminated instances vanish from EC2 soon anyway). ``imagebuilder:ImageRecipe``
   (``parentImage`` equal to the image id) and ``imagebuilder:ContainerRecipe``
   (``instanceConfiguration.image`` equal to the image id) find the caller's recipes of the region in
   the Image Builder of entry 14; their ARNs are the recipes' version ARNs. Image ids are only checked
   for the ``ami-`` prefix, so references to deregistered images are still found. Either
   ``IncludeAllResourceTypes`` or ``ResourceTypes`` is required (``MissingParameter``). More than 10
   ``ImageIds`` is ``InvalidParameterValue`` (assumption: the botocore model caps the list at 10 and
   botocore does not check maxima client-side). ``MaxResults`` (5..1000) / ``NextToken`` paginate.
9. ``DescribeSnapshots`` shows ``Encrypted`` / ``KmsKeyId`` (the key ARN) for encrypted copies.
10. EventBridge ``TestEventPattern`` answers ``{"Result": true|false}`` with moto's own pattern matcher
    (the one its ``PutEvents`` uses for rules); moto 5.2 answered an empty body. The local runner
    (``stack.py``) routes events with it, so patterns are evaluated as read from template.yaml.
11. ``ListImagesInRecycleBin(ImageIds)``: at most 20 ids (``InvalidParameterValue`` beyond); the bin
    itself is entry 17 (without a retention rule it stays empty, as in an account without rules).
12. ``LastLaunchedTime``: ``DescribeImages`` returns it (a string, ``2026-03-01T17:00:00Z``, as the
    botocore model and EC2 have it) for an image that was used to launch an instance: the latest
    ``launch_time`` of any instance, terminated ones included, run from the image in its region in
    *any* moto account (shared AMIs are launched from other accounts). It is absent for an image never
    launched. ``DescribeImageAttribute(Attribute='lastLaunchedTime')`` answers
    ``{"ImageId": ..., "LastLaunchedTime": {"Value": ...}}`` (``{}`` when never launched; moto raised
    ``AttributeError``, HTTP 500). EC2 reports a launch only after a delay of up to 24 hours, so
    moto's value is immediate and tests pin it with :func:`set_last_launched`.
13. AMI usage reports. ``CreateImageUsageReport(ImageId, ResourceTypes, AccountIds, ClientToken,
    TagSpecifications, DryRun)`` returns ``{"ReportId": "amiur-..."}`` (assumption: the id prefix is
    not documented). Only the image's owner may report on it: an image of the region owned by another
    account (moto's default public AMIs included) is ``InvalidAMIID.Unavailable`` (assumption: the API
    reference names no code), a deregistered one ``InvalidAMIID.Unavailable``, an unknown one
    ``InvalidAMIID.NotFound``. ``ResourceTypes`` (required, ``MissingParameter`` when empty) are
    ``ec2:Instance``, ``ec2:LaunchTemplate``, ``imagebuilder:ImageRecipe`` and
    ``imagebuilder:ContainerRecipe``; ``ResourceTypeOptions`` are valid only for ``ec2:LaunchTemplate``
    (option ``version-depth``, 1..10000, default 20); anything else is ``InvalidParameterValue``, as are
    more than 200 ``AccountIds`` or one that is not 12 digits. ``TagSpecifications`` must have
    ``ResourceType='image-usage-report'`` (else ``InvalidParameterValue``; assumption: the reference
    only says the creation fails). ``ClientToken`` is idempotent per account and region
    (``IdempotentParameterMismatch`` with other parameters). Usage is computed when the report is
    created, from every moto account other than the owner's (only ``AccountIds`` when given) in the
    image's region: instances not terminated launched from the image, launch templates whose newest
    ``version-depth`` versions use it (counted once per template, as the User Guide says) and the
    Image Builder recipes of entry 14 that use it. There is one entry per account and resource type,
    ``UsageCount`` resources (the botocore model has no per-resource entry). ``State`` is ``pending``
    until :func:`set_usage_report_delay` seconds have passed (default 0: ``available`` at once);
    entries of a pending report are not listed yet. ``ExpirationTime`` is ``CreationTime`` + 30 days
    (the API reference's value); expired reports are gone. ``DescribeImageUsageReports(ImageIds,
    ReportIds, Filters, MaxResults, NextToken)`` (filters ``creation-time`` with ``*`` wildcards,
    ``state``, ``tag:<key>``, ``tag-key``), ``DescribeImageUsageReportEntries(ReportIds, ImageIds,
    Filters, MaxResults, NextToken)`` (filters ``account-id``, ``creation-time``, ``resource-type``) and
    ``DeleteImageUsageReport(ReportId)`` work on the caller's reports of the region. ``MaxResults`` is at
    least 1 (``InvalidParameterValue``); an unknown filter is ``InvalidParameterValue``; an unknown
    report id is ``InvalidImageUsageReportId.NotFound`` (assumption: the reference names no code).
    ``CreateTags`` on a report is not modelled.
14. A minimal EC2 Image Builder (moto 5.2.1 has no ``imagebuilder`` service): a backend
    (``imagebuilder_backends[account][region]``) and URL routing for
    ``https://imagebuilder.{region}.amazonaws.com``, served by ``mock_aws()`` and the threaded server,
    for ``CreateImageRecipe`` (``PUT /CreateImageRecipe``), ``ListImageRecipes`` (``POST``),
    ``GetImageRecipe`` (``GET ?imageRecipeArn=``), ``DeleteImageRecipe`` (``DELETE ?imageRecipeArn=``)
    and the same four ``*ContainerRecipe`` operations, with the botocore model's shapes. ARNs are
    ``arn:aws:imagebuilder:{region}:{account}:image-recipe/{name, lower case, blanks as -}/{version}``
    (``container-recipe/...`` likewise); ``owner`` is the account id; ``dateCreated`` an ISO string
    with milliseconds. A name and version that exist are ``ResourceAlreadyExistsException``; a version
    that is not ``<major>.<minor>.<patch>`` is ``InvalidVersionNumberException``; ``clientToken`` is
    idempotent (``IdempotentParameterMismatchException``). An ``ami-`` ``parentImage`` (image recipes)
    or ``instanceConfiguration.image`` (container recipes) must be an AMI of the region the caller may
    launch (owned, public, or shared with its account, an organization or an OU), else
    ``InvalidParameterValueException``; ``platform`` is ``Windows`` for a Windows AMI, else ``Linux``
    (container recipes: ``platformOverride`` or ``Linux``). A container recipe needs
    ``dockerfileTemplateData`` or ``dockerfileTemplateUri`` (``InvalidRequestException``). ``List*``
    take ``owner`` (default ``Self``; the others list nothing, since sharing is not modelled),
    ``filters`` (``name`` with ``*`` wildcards, ``parentImage``, ``platform``, and ``containerType`` for
    container recipes; another name is ``InvalidRequestException``), ``maxResults`` (1..100, else
    ``InvalidRequestException``; assumption: without it everything is returned) and ``nextToken``
    (``InvalidPaginationTokenException``). An unknown ARN is
    ``ResourceNotFoundException`` (assumption: the reference lists no not-found error for Get/Delete).
    Image Builder calls go through ``BaseResponse.call_action``: they are counted in :data:`CALLS`
    and faults apply to them.
15. ``DescribeImageAttribute``: an unknown image is ``InvalidAMIID.NotFound`` (``InvalidAMIID.Malformed``
    without the ``ami-`` prefix) for every attribute (moto raised ``KeyError``, HTTP 500).
    ``launchPermission`` answers ``LaunchPermissions`` with one ``{"UserId"}``, ``{"Group": "all"}``,
    ``{"OrganizationArn"}`` or ``{"OrganizationalUnitArn"}`` per permission, as EC2 does (moto's answer
    already had that shape). ``ModifyImageAttribute(OperationType=..., UserIds, UserGroups,
    OrganizationArns, OrganizationalUnitArns)`` (the older parameters) now adds or removes every
    organization and OU given (moto kept only the first of each).
16. SSM ``DescribeParameters(ParameterFilters=[{"Key": "DataType", "Option": "Equals"|"BeginsWith",
    "Values": ["aws:ec2:image"|"text"]}])``: the ``DataType`` key the API reference lists
    (``tag:.+|Name|Type|KeyId|Path|Label|Tier|DataType``) is accepted and filters on the parameter's
    data type (moto refused the key with ``ValidationException``). Other values are
    ``InvalidFilterValue``.
17. The Recycle Bin (moto 5.2.1 has no ``rbin`` service). A backend (``rbin_backends[account][region]``)
    and URL routing for ``https://rbin.{region}.amazonaws.com`` (``mock_aws()`` and the threaded
    server), with the botocore model's shapes, for ``CreateRule`` (``POST /rules``, HTTP 201),
    ``GetRule`` (``GET /rules/{id}``), ``ListRules`` (``POST /list-rules``) and ``DeleteRule``
    (``DELETE /rules/{id}``, HTTP 204). ``ResourceType`` is ``EC2_IMAGE``, ``EBS_SNAPSHOT`` or
    ``EBS_VOLUME`` (volumes are accepted, never retained); ``RetentionPeriod`` is 1..365 ``DAYS`` (1..7
    for volumes, the User Guide's limits); a rule with ``ResourceTags`` (at most 50) is tag-level and
    matches a resource with one of its pairs (a pair without a ``ResourceTagValue``, or an empty one,
    matches any value of its key: assumption), one without is Region-level and matches every resource without one of its
    ``ExcludeResourceTags`` (at most 5, Region-level rules only); ``LockConfiguration`` (``UnlockDelay``
    7..30 ``DAYS``) is for Region-level rules only and a locked rule cannot be deleted
    (``ConflictException``). Invalid input is ``ValidationException``, an unknown id
    ``ResourceNotFoundException`` (HTTP 404), a 251st rule in a region ``ServiceQuotaExceededException``.
    ``CreateRule`` answers ``Status: pending`` and the rule retains resources at once (EC2 may take up
    to 30 minutes for an account's first rule: not modelled); ``GetRule`` answers ``available``.
    ``ListRules(ResourceType, ResourceTags, ExcludeResourceTags, LockState, MaxResults 1..1000,
    NextToken)`` answers rule summaries. ``LockRule``, ``UnlockRule``, ``UpdateRule`` and rule tagging
    are not modelled. On EC2: ``DeregisterImage``, ``DeleteSnapshot`` and the snapshots deleted by
    ``DeregisterImage(DeleteAssociatedSnapshots=True)`` put the resource in its region's bin when a
    rule of its type matches its tags; the longest matching retention wins; the resource is tagged
    ``aws:recycle-bin:resource-in-bin=true`` while there, and is gone for good (with its tags) at the
    end of its retention. ``ListImagesInRecycleBin(ImageIds, MaxResults 1..1000, NextToken)`` answers
    ``ImageId``, ``Name``, ``Description``, ``RecycleBinEnterTime``, ``RecycleBinExitTime``;
    ``ListSnapshotsInRecycleBin(SnapshotIds, MaxResults 5..1000, NextToken)`` ``SnapshotId``,
    ``Description``, ``VolumeId`` and the two times. ``RestoreImageFromRecycleBin(ImageId)`` registers
    the image again as it was (same id, tags, state, launch permissions: assumption) and
    ``RestoreSnapshotFromRecycleBin(SnapshotId)`` answers the snapshot's description; an id not in the
    bin is ``InvalidAMIID.NotFound`` / ``InvalidSnapshot.NotFound``. An image whose snapshots are still
    in the bin can be restored (assumption: the AWS documentation asks users to restore the snapshots
    first but names no error; such an image could not launch in EC2, which is not modelled). A snapshot
    of an image in the bin is no longer in use (the image is deregistered): it can be deleted.
18. ``DescribeSnapshots`` reports ``FullSnapshotSizeInBytes`` (the bytes of the blocks written, EC2's
    figure for completed snapshots): by default :data:`FULL_SNAPSHOT_FRACTION` (0.4) of the volume,
    rounded down to whole 512 KiB EBS blocks (6 GiB of a 15 GiB volume); tests pin it with
    :func:`set_full_snapshot_size` (``None``: not reported, as for snapshots EC2 has no figure for).
19. STS ``AssumeRole`` of a role that does not exist in its account is ``AccessDenied`` (HTTP 403), as
    in AWS; ``OrganizationAccountAccessRole`` is taken to exist in every account (details at the end
    of this module, "STS: the role must exist").

Test and benchmark helpers (not EC2 behaviour)
----------------------------------------------
* :data:`CALLS` counts every API action served by moto (any service going through
  ``BaseResponse.call_action``, faulted calls and botocore's retries included), keyed by
  ``(region, action)``: ``CALLS[(region, action)]``, ``CALLS.snapshot()``; :func:`calls`,
  :func:`calls_by_region` and :func:`reset_calls` read and reset it.
* Fault injection, off by default: :func:`set_faults` (random ``RequestLimitExceeded``, HTTP 503,
  "Request limit exceeded."; ``unreachable_regions`` answer ``OptInRequired``, HTTP 401),
  :func:`inject_error` (the next N calls of an action fail with a given code) and :func:`clear_faults`.
  A call is checked for an unreachable region first, then for injected errors, then for throttling.
  Faults apply to every service and use EC2's error codes. botocore retries 503 throttling errors
  itself, so tests that want to see them should build clients with
  ``Config(retries={'total_max_attempts': 1})``.
* :func:`set_last_launched` ``(account_id, region, image_id, when)`` pins an image's
  ``LastLaunchedTime`` to ``when`` (``None``: reported as never launched, as EC2 does during the
  24 hours after a first launch); :func:`clear_last_launched` ``(account_id, region, image_id)``
  returns to the value computed from moto's instances. The pin lives on moto's image object, so a
  reset of moto clears it.
* :func:`set_usage_report_delay` ``(seconds)``: reports created afterwards stay ``pending`` for that
  long (default 0).
* :func:`set_full_snapshot_size` ``(account_id, region, snapshot_id, size_bytes)`` pins a snapshot's
  ``FullSnapshotSizeInBytes`` (0..its volume; ``None``: not reported); :func:`clear_full_snapshot_size`
  returns to the default fraction. A retention rule's clock is :func:`_now`, like the others: a test
  that monkeypatches it moves resources out of the bin when their retention ends.
These helpers change the in-process moto state, so they also act on a ``ThreadedMotoServer`` started
in the same process.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import random
import re
import threading
import types
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import moto.backend_index as backend_index
import moto.backends as moto_backends
from moto.core.base_backend import AccountSpecificBackend, BackendDict, BaseBackend
from moto.core.common_types import TYPE_RESPONSE
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionContext, ActionResult, BaseResponse, EmptyResult
from moto.ec2.exceptions import (
    EC2ClientError,
    InvalidAMIIdError,
    InvalidParameterDependency,
    InvalidSnapshotIdError,
    InvalidSnapshotInUse,
    InvalidTaggableResourceType,
    MalformedAMIIdError,
    UnvailableAMIIdError,
)
from moto.ec2.models.amis import Ami, AmiBackend
from moto.ec2.models.elastic_block_store import EBSBackend, Snapshot
from moto.ec2.models.instances import InstanceBackend
from moto.ec2.responses.amis import AmisResponse
from moto.ec2.utils import random_id
from moto.events.models import EventPattern
from moto.events.responses import EventsHandler
from moto.utilities.utils import get_partition

__all__ = [
    "CALLS",
    "ImageBuilderBackend",
    "RbinBackend",
    "calls",
    "calls_by_region",
    "clear_faults",
    "clear_full_snapshot_size",
    "clear_last_launched",
    "imagebuilder_backends",
    "inject_error",
    "install",
    "rbin_backends",
    "reset_calls",
    "set_faults",
    "set_full_snapshot_size",
    "set_last_launched",
    "set_usage_report_delay",
]

COOLDOWN = timedelta(hours=24)
MAX_REFERENCE_IMAGE_IDS = 10
USAGE_REPORT_LIFETIME = timedelta(days=30)
_REFERENCE_TYPES = (
    "ec2:Instance",
    "ec2:LaunchTemplate",
    "ssm:Parameter",
    "imagebuilder:ImageRecipe",
    "imagebuilder:ContainerRecipe",
)
_USAGE_TYPES = ("ec2:Instance", "ec2:LaunchTemplate", "imagebuilder:ImageRecipe", "imagebuilder:ContainerRecipe")
_ISO_MS = "%Y-%m-%dT%H:%M:%S.000Z"
_ISO_SECONDS = "%Y-%m-%dT%H:%M:%SZ"
_OPT_IN_MESSAGE = "You are not subscribed to this service. Please go to http://aws.amazon.com to subscribe."


def _now() -> datetime:
    """The clock used for deprecation and cooldowns (tests may monkeypatch it)."""
    return datetime.now(UTC)


def _error(code: str, message: str) -> EC2ClientError:
    return EC2ClientError(code, message)


# --------------------------------------------------------------------------- call counter


class _CallCounter:
    """Thread-safe ``Counter`` of ``(region, action)`` -> number of calls served."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def record(self, region: str, action: str) -> None:
        with self._lock:
            self._counts[(region, action)] += 1

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def snapshot(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter(self._counts)

    def __getitem__(self, key: tuple[str, str]) -> int:
        with self._lock:
            return self._counts[key]


CALLS = _CallCounter()


def reset_calls() -> None:
    CALLS.reset()


def calls() -> Counter[str]:
    """Calls per action name, all regions together."""
    out: Counter[str] = Counter()
    for (_region, action), n in CALLS.snapshot().items():
        out[action] += n
    return out


def calls_by_region() -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {}
    for (region, action), n in CALLS.snapshot().items():
        out.setdefault(region, Counter())[action] += n
    return out


# --------------------------------------------------------------------------- fault injection


@dataclass
class _Injected:
    action: str
    code: str
    message: str
    remaining: int
    status: int
    region: str | None


class _Fault(EC2ClientError):
    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(code, message)
        self.status = status


class _Faults:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        self.throttle_rate = 0.0
        self.actions: frozenset[str] | None = None
        self.rng = random.Random()
        self.unreachable: frozenset[str] = frozenset()
        self.injected: list[_Injected] = []

    def pick(self, region: str, action: str) -> _Fault | None:
        with self.lock:
            if region in self.unreachable:
                return _Fault("OptInRequired", _OPT_IN_MESSAGE, 401)
            for inj in self.injected:
                if inj.action == action and inj.region in (None, region):
                    inj.remaining -= 1
                    if inj.remaining <= 0:
                        self.injected.remove(inj)
                    return _Fault(inj.code, inj.message, inj.status)
            matches = self.actions is None or action in self.actions
            if self.throttle_rate > 0 and matches and self.rng.random() < self.throttle_rate:
                return _Fault("RequestLimitExceeded", "Request limit exceeded.", 503)
        return None


_FAULTS = _Faults()


def set_faults(
    throttle_rate: float = 0.0,
    actions: set[str] | None = None,
    seed: int | None = None,
    unreachable_regions: set[str] | frozenset[str] = frozenset(),
) -> None:
    """Throttle matching calls (``actions=None``: every action) with probability ``throttle_rate``
    and make every call in ``unreachable_regions`` fail with ``OptInRequired``."""
    if not 0.0 <= throttle_rate <= 1.0:
        raise ValueError("throttle_rate must be between 0 and 1")
    with _FAULTS.lock:
        _FAULTS.throttle_rate = throttle_rate
        _FAULTS.actions = frozenset(actions) if actions is not None else None
        _FAULTS.rng = random.Random(seed)
        _FAULTS.unreachable = frozenset(unreachable_regions)


def inject_error(
    action: str,
    code: str,
    message: str,
    times: int = 1,
    status: int = 400,
    region: str | None = None,
) -> None:
    """Make the next ``times`` calls of ``action`` (in ``region``, or any) fail with ``code``."""
    with _FAULTS.lock:
        _FAULTS.injected.append(_Injected(action, code, message, times, status, region))


def clear_faults() -> None:
    with _FAULTS.lock:
        _FAULTS.clear()


def _call_action(self: BaseResponse) -> TYPE_RESPONSE:
    action = self._get_action()
    if not action:
        return _ORIG["call_action"](self)
    region = getattr(self, "region", None) or BaseResponse.default_region
    CALLS.record(region, action)
    fault = _FAULTS.pick(region, action)
    if fault is None:
        return _ORIG["call_action"](self)
    # moto warns that non-EC2 service models have no such error shape; the code is serialized anyway.
    warnings.filterwarnings("ignore", message=r"Exception\(_Fault\)", category=UserWarning)
    _status, headers, body = self.serialized(ActionResult(fault))
    headers, body = self._enrich_response(headers, body)
    return fault.status, headers, body


# --------------------------------------------------------------------------- model helpers


def _get_ami(backend: Any, ami_id: str) -> Ami:
    if not str(ami_id).startswith("ami-"):
        raise MalformedAMIIdError([ami_id])
    ami = backend.amis.get(ami_id)
    if ami is None:
        raise InvalidAMIIdError(ami_id)
    return ami


def _snapshot_ids(ami: Ami) -> list[str]:
    return [ami.ebs_snapshot.id]


def _utc(value: Any) -> datetime:
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _deprecation_time(self: Ami) -> str | None:
    at: datetime | None = getattr(self, "_ext_deprecate_at", None)
    return at.strftime(_ISO_MS) if at else None


def _deregistration_protection(self: Ami) -> str:
    mode: str | None = getattr(self, "_ext_protection", None)
    if mode:
        return mode
    until: datetime | None = getattr(self, "_ext_protected_until", None)
    if until and _now() < until:
        return "disabled-until-" + until.strftime(_ISO_MS)
    return "disabled"


def _block_device_mappings(self: Ami) -> list[dict[str, Any]]:
    mappings: list[dict[str, Any]] = _ORIG["Ami.block_device_mappings"].fget(self)
    for mapping in mappings:
        mapping["Ebs"]["Encrypted"] = self.ebs_snapshot.encrypted
    return mappings


def _ami_get_filter_value(self: Ami, filter_name: str, method_name: str | None = None) -> Any:
    if filter_name == "source-image-id":
        return self.source_image_id  # type: ignore[attr-defined]
    if filter_name == "source-image-region":
        return self.source_image_region  # type: ignore[attr-defined]
    return _ORIG["Ami.get_filter_value"](self, filter_name, method_name)


def _add_tags(resource: Any, tags: list[dict[str, str]]) -> None:
    for tag in tags:
        resource.add_tag(tag["Key"], tag["Value"])


def _kms_key_arn(account_id: str, region: str, key_id: str) -> str | None:
    """The ARN of an enabled KMS key of ``region`` named by id, ARN, alias or alias ARN, else None."""
    from moto.kms.models import kms_backends

    if key_id.startswith("arn:") and key_id.split(":")[3] != region:
        return None
    kms = kms_backends[account_id][region]
    try:
        key = kms.keys[kms.any_id_to_key_id(key_id)]
    except Exception:  # unknown alias / key: moto raises various errors
        return None
    return key.arn if key.key_state == "Enabled" else None


# --------------------------------------------------------------------------- backend patches


def _create_image(
    self: AmiBackend,
    instance_id: str,
    name: str,
    description: str,
    tag_specifications: list[dict[str, Any]],
) -> Ami:
    snapshot_specs = [s for s in tag_specifications if s.get("ResourceType") == "snapshot"]
    other_specs = [s for s in tag_specifications if s.get("ResourceType") != "snapshot"]
    ami: Ami = _ORIG["AmiBackend.create_image"](self, instance_id, name, description, other_specs)
    for spec in snapshot_specs:
        _add_tags(ami.ebs_snapshot, spec.get("Tags", []))
    return ami


def _copy_image(
    self: AmiBackend,
    source_image_id: str,
    source_region: str,
    name: str | None = None,
    description: str | None = None,
    client_token: str | None = None,
    copy_image_tags: bool = False,
    tag_specifications: list[dict[str, Any]] | None = None,
    encrypted: bool = False,
    kms_key_id: str | None = None,
) -> Ami:
    from moto.ec2.models import ec2_backends

    account_id: str = self.account_id  # type: ignore[attr-defined]
    region: str = self.region_name  # type: ignore[attr-defined]
    tokens: dict[str, tuple[tuple[Any, ...], Ami]] = self.__dict__.setdefault("_ext_copy_tokens", {})
    fingerprint = (source_image_id, source_region, name, description, bool(encrypted), kms_key_id)
    if client_token and client_token in tokens:
        previous, ami = tokens[client_token]
        if previous != fingerprint:
            raise _error(
                "IdempotentParameterMismatch",
                f"The client token {client_token} was already used with different parameters.",
            )
        return ami
    if kms_key_id and not encrypted:
        raise InvalidParameterDependency("KmsKeyId", "Encrypted")
    specs = tag_specifications or []
    for spec in specs:
        if spec.get("ResourceType") not in ("image", "snapshot"):
            raise InvalidTaggableResourceType(spec.get("ResourceType", ""))

    source: Ami | None = ec2_backends[account_id][source_region].amis.get(source_image_id)
    if source is None:  # moto answered a deregistered source with an IndexError (HTTP 500)
        raise InvalidAMIIdError(source_image_id)
    ami = _ORIG["AmiBackend.copy_image"](self, source_image_id, source_region, name, description)
    ami.source_image_id = source_image_id
    ami.source_image_region = source_region
    if copy_image_tags:
        for tag in source.get_tags():
            if not tag["key"].startswith("aws:"):
                ami.add_tag(tag["key"], tag["value"])
    for spec in specs:
        _add_tags(ami if spec["ResourceType"] == "image" else ami.ebs_snapshot, spec.get("Tags", []))
    if encrypted or source.ebs_snapshot.encrypted:
        wanted = kms_key_id or "alias/aws/ebs"
        key_arn = _kms_key_arn(account_id, region, wanted)
        ami.ebs_snapshot.encrypted = True
        ami.ebs_snapshot.kms_key_id = key_arn or wanted
        if key_arn is None:
            ami.state = "failed"
            ami.state_reason = {
                "Code": "Client.InvalidKMSKey.InvalidState",
                "Message": f"The KMS key {wanted} does not exist in {region} or is not enabled.",
            }
    if client_token:
        tokens[client_token] = (fingerprint, ami)
    return ami


def _deregister_image(
    self: AmiBackend, ami_id: str, delete_associated_snapshots: bool = False
) -> list[dict[str, str]] | None:
    ami = self.amis.get(ami_id)
    if ami is not None:
        protection = _deregistration_protection(ami)
        if protection != "disabled":
            raise _error(
                "InvalidParameter",
                f"The image {ami_id} cannot be deregistered: deregistration protection is {protection}. "
                "Disable it with DisableImageDeregistrationProtection (with a cooldown, wait 24 hours).",
            )
    _ORIG["AmiBackend.deregister_image"](self, ami_id)
    if ami is None:
        return None
    _retain(self, "EC2_IMAGE", ami)  # into the Recycle Bin when a retention rule matches (entry 17)
    if not delete_associated_snapshots:
        return None
    results = []
    snapshots: dict[str, Any] = self.snapshots  # type: ignore[attr-defined]
    for snapshot_id in _snapshot_ids(ami):
        in_use = any(snapshot_id in _snapshot_ids(other) for other in self.amis.values())
        if not in_use:
            snapshot = snapshots.pop(snapshot_id, None)
            if snapshot is not None:
                _retain(self, "EBS_SNAPSHOT", snapshot)
        results.append({"SnapshotId": snapshot_id, "ReturnCode": "skipped" if in_use else "success"})
    return results


def _delete_snapshot(self: EBSBackend, snapshot_id: str) -> Any:
    for ami in self.amis.values():  # type: ignore[attr-defined]
        if snapshot_id in _snapshot_ids(ami):
            raise InvalidSnapshotInUse(snapshot_id, ami.id)
    snapshot = _ORIG["EBSBackend.delete_snapshot"](self, snapshot_id)
    _retain(self, "EBS_SNAPSHOT", snapshot)
    return snapshot


def _enable_image_deprecation(self: AmiBackend, ami_id: str, deprecate_at: Any) -> None:
    ami = _get_ami(self, ami_id)
    at, now = _utc(deprecate_at), _now()
    if at <= now:
        raise _error("InvalidParameterValue", "The deprecation time can't be in the past.")
    if at > now + timedelta(days=3653):
        raise _error("InvalidParameterValue", "The deprecation time can't be more than 10 years away.")
    ami._ext_deprecate_at = at.replace(second=0, microsecond=0)  # type: ignore[attr-defined]


def _disable_image_deprecation(self: AmiBackend, ami_id: str) -> None:
    _get_ami(self, ami_id)._ext_deprecate_at = None  # type: ignore[attr-defined]


def _enable_image_deregistration_protection(self: AmiBackend, ami_id: str, with_cooldown: bool) -> None:
    ami = _get_ami(self, ami_id)
    ami._ext_protection = "enabled-with-cooldown" if with_cooldown else "enabled"  # type: ignore[attr-defined]
    ami._ext_protected_until = None  # type: ignore[attr-defined]


def _disable_image_deregistration_protection(self: AmiBackend, ami_id: str) -> None:
    ami = _get_ami(self, ami_id)
    if getattr(ami, "_ext_protection", None) == "enabled-with-cooldown":
        ami._ext_protected_until = _now().replace(microsecond=0) + COOLDOWN  # type: ignore[attr-defined]
    ami._ext_protection = None  # type: ignore[attr-defined]


def _owned_ami(backend: AmiBackend, ami_id: str, action: str) -> Ami:
    """An image of the region the caller owns (only the owner may disable, enable or restore it)."""
    ami = _get_ami(backend, ami_id)
    if ami.owner_id != backend.account_id:  # type: ignore[attr-defined]
        raise _error(
            "InvalidAMIID.Unavailable",
            f"The image id '[{ami_id}]' is not owned by account {backend.account_id}: "  # type: ignore[attr-defined]
            f"only its owner can {action} it",
        )
    return ami


def _disable_image(self: AmiBackend, ami_id: str) -> None:
    ami = _owned_ami(self, ami_id, "disable")
    ami.state = "disabled"
    ami.launch_permissions.clear()  # a disabled AMI is made private; re-enabling does not share it again


def _enable_image(self: AmiBackend, ami_id: str) -> None:
    ami = _owned_ami(self, ami_id, "enable")
    if ami.state == "disabled":
        ami.state = "available"


def _refuse_disabled(ami: Ami | None, what: str) -> None:
    if ami is not None and ami.state == "disabled":
        raise _error(
            "InvalidAMIID.Unavailable", f"The image {ami.id} is disabled: it cannot be {what} until it is enabled"
        )


def _run_instances(self: Any, image_id: str, *args: Any, **kwargs: Any) -> Any:
    _refuse_disabled(self.amis.get(image_id), "launched")
    return _ORIG["InstanceBackend.run_instances"](self, image_id, *args, **kwargs)


def _describe_image_references(
    self: AmiBackend,
    image_ids: list[str],
    include_all_resource_types: bool,
    resource_types: list[dict[str, Any]],
) -> list[dict[str, str]]:
    from moto.ssm.models import ssm_backends

    if len(image_ids) > MAX_REFERENCE_IMAGE_IDS:
        raise _error("InvalidParameterValue", f"You can specify at most {MAX_REFERENCE_IMAGE_IDS} image IDs.")
    for ami_id in image_ids:
        if not str(ami_id).startswith("ami-"):
            raise MalformedAMIIdError([ami_id])
    options: dict[str, dict[str, list[str]]] = {}
    if include_all_resource_types:
        options = {rt: {} for rt in _REFERENCE_TYPES}
    for rt in resource_types:
        opts = {o.get("OptionName", ""): list(o.get("OptionValues", [])) for o in rt.get("ResourceTypeOptions", [])}
        options[rt.get("ResourceType", "")] = opts
    if not options:
        raise _error("MissingParameter", "Either IncludeAllResourceTypes or ResourceTypes must be specified.")

    account_id: str = self.account_id  # type: ignore[attr-defined]
    region: str = self.region_name  # type: ignore[attr-defined]
    arn_prefix = f"arn:{get_partition(region)}:ec2:{region}:{account_id}"
    wanted = set(image_ids)
    refs: list[dict[str, str]] = []

    def ref(image_id: str, resource_type: str, arn: str) -> None:
        refs.append({"ImageId": image_id, "ResourceType": resource_type, "Arn": arn})

    if "ec2:Instance" in options:
        states = set(options["ec2:Instance"].get("state-name", []))
        for instance in self.all_instances():  # type: ignore[attr-defined]
            if instance.image_id in wanted and (instance.state in states if states else instance.state != "terminated"):
                ref(instance.image_id, "ec2:Instance", f"{arn_prefix}:instance/{instance.id}")
    if "ec2:LaunchTemplate" in options:
        raw_depth = options["ec2:LaunchTemplate"].get("version-depth") or ["10"]
        if not raw_depth[0].isdigit() or not 1 <= int(raw_depth[0]) <= 10000:
            raise _error("InvalidParameterValue", "version-depth must be an integer between 1 and 10000.")
        depth = int(raw_depth[0])
        for template in self.launch_templates.values():  # type: ignore[attr-defined]
            used = {version.image_id for version in template.versions[-depth:]} & wanted
            for image_id in sorted(used):
                ref(image_id, "ec2:LaunchTemplate", f"{arn_prefix}:launch-template/{template.id}")
    if "ssm:Parameter" in options:
        from moto.ssm.utils import parameter_arn

        parameters = ssm_backends[account_id][region]._parameters
        for name, versions in list(parameters.items()):
            if versions and versions[-1].value in wanted:
                ref(versions[-1].value, "ssm:Parameter", parameter_arn(account_id, region, name))
    builder = _imagebuilder_backend(account_id, region)
    if builder is not None:
        for resource_type, recipes in (
            ("imagebuilder:ImageRecipe", builder.image_recipes),
            ("imagebuilder:ContainerRecipe", builder.container_recipes),
        ):
            if resource_type in options:
                for recipe in list(recipes.values()):
                    if (used_image := _recipe_ami(recipe)) in wanted:
                        ref(used_image, resource_type, recipe["arn"])
    order = {image_id: i for i, image_id in enumerate(image_ids)}
    return sorted(refs, key=lambda r: order[r["ImageId"]])


# --------------------------------------------------------------------------- response patches


def _token_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
        if isinstance(offset, int) and offset >= 0:
            return offset
    except Exception:  # any malformed token
        pass
    raise _error("InvalidPaginationToken", f"Invalid pagination token: {token}")


def _paginate(
    items: list[Any],
    max_results: int | None,
    token: str | None,
    lowest: int = 5,
    highest: int | None = 1000,
) -> tuple[list[Any], str | None]:
    if max_results is not None and (max_results < lowest or (highest is not None and max_results > highest)):
        expected = f"between {lowest} and {highest}" if highest is not None else f"of at least {lowest}"
        raise _error(
            "InvalidParameterValue",
            f"Value ( {max_results} ) for parameter maxResults is invalid. Expecting a value {expected}.",
        )
    start = _token_offset(token)
    if max_results is None:
        return items[start:], None
    end = start + max_results
    next_token = base64.urlsafe_b64encode(json.dumps({"offset": end}).encode()).decode() if end < len(items) else None
    return items[start:end], next_token


def _r_describe_images(self: AmisResponse) -> ActionResult:
    self.error_on_dryrun()
    ami_ids = self._get_param("ImageIds", [])
    images = self.ec2_backend.describe_images(
        ami_ids=ami_ids,
        filters=self._filters_from_querystring(),
        exec_users=self._get_param("ExecutableUsers", []),
        owners=self._get_param("Owners", []),
    )
    include_disabled = self._get_bool_param("IncludeDisabled", False)
    show_deprecated = bool(ami_ids) or self._get_bool_param("IncludeDeprecated", False)
    now = _now()

    def visible(ami: Ami) -> bool:
        if ami.state == "disabled" and not include_disabled:
            return False
        at = getattr(ami, "_ext_deprecate_at", None)
        deprecated = at is not None and at <= now
        return not deprecated or show_deprecated or ami.owner_id == self.current_account

    page, next_token = _paginate(
        [ami for ami in images if visible(ami)],
        self._get_int_param("MaxResults"),
        self._get_param("NextToken"),
    )
    return _WithLaunchIndex({"Images": page, "NextToken": next_token}, self.ec2_backend.region_name)


_LOOKED_UP_ATTRIBUTES = {
    "description",
    "kernel",
    "ramdisk",
    "launchPermission",
    "productCodes",
    "sriovNetSupport",
    "bootMode",
    "tpmSupport",
    "uefiData",
    "lastLaunchedTime",
    "imdsSupport",
    "deregistrationProtection",
}


def _r_describe_image_attribute(self: AmisResponse) -> ActionResult:
    attribute = self._get_param("Attribute")
    if attribute not in _LOOKED_UP_ATTRIBUTES:  # moto's InvalidRequest / AuthFailure answers
        return _ORIG["AmisResponse.describe_image_attribute"](self)
    ami = _get_ami(self.ec2_backend, self._get_param("ImageId"))
    if attribute == "deregistrationProtection":
        return ActionResult({"ImageId": ami.id, "DeregistrationProtection": {"Value": _deregistration_protection(ami)}})
    if attribute == "lastLaunchedTime":
        return ActionResult({"ImageId": ami.id, "LastLaunchedTime": {"Value": _last_launched_time(ami)}})
    return _ORIG["AmisResponse.describe_image_attribute"](self)


def _r_modify_image_attribute(self: AmisResponse) -> Any:
    operation = self._get_param("OperationType")
    shares = (self._get_param("LaunchPermission", {}) or {}).get("Add") or (
        operation == "add"
        and any(self._get_param(p, []) for p in ("UserIds", "UserGroups", "OrganizationArns", "OrganizationalUnitArns"))
    )
    if shares:
        _refuse_disabled(self.ec2_backend.amis.get(self._get_param("ImageId")), "shared")
    if operation not in ("add", "remove"):
        return _ORIG["AmisResponse.modify_image_attribute"](self)
    self.error_on_dryrun()
    permissions = [{"Group": group} for group in self._get_param("UserGroups", [])]
    permissions += [{"UserId": user_id} for user_id in self._get_param("UserIds", [])]
    permissions += [{"OrganizationArn": arn} for arn in self._get_param("OrganizationArns", [])]
    permissions += [{"OrganizationalUnitArn": arn} for arn in self._get_param("OrganizationalUnitArns", [])]
    changes = self._get_param("LaunchPermission", {}) or {}
    add, remove = list(changes.get("Add", [])), list(changes.get("Remove", []))
    (add if operation == "add" else remove).extend(permissions)
    self.ec2_backend.modify_image_attribute(
        ami_id=self._get_param("ImageId"), launch_permissions_to_add=add, launch_permissions_to_remove=remove
    )
    return EmptyResult()


def _r_copy_image(self: AmisResponse) -> ActionResult:
    self.error_on_dryrun()
    ami = self.ec2_backend.copy_image(
        self._get_param("SourceImageId"),
        self._get_param("SourceRegion"),
        self._get_param("Name"),
        self._get_param("Description"),
        client_token=self._get_param("ClientToken"),
        copy_image_tags=self._get_bool_param("CopyImageTags", False),
        tag_specifications=self._get_param("TagSpecifications", []),
        encrypted=self._get_bool_param("Encrypted", False),
        kms_key_id=self._get_param("KmsKeyId"),
    )
    return ActionResult({"ImageId": ami.id})


def _r_deregister_image(self: AmisResponse) -> ActionResult:
    self.error_on_dryrun()
    results = self.ec2_backend.deregister_image(
        self._get_param("ImageId"),
        delete_associated_snapshots=self._get_bool_param("DeleteAssociatedSnapshots", False),
    )
    out: dict[str, Any] = {"Return": True}
    if results is not None:
        out["DeleteSnapshotResults"] = results
    return ActionResult(out)


def _r_register_image(self: AmisResponse) -> ActionResult:
    backend = self.ec2_backend
    root_device = self._get_param("RootDeviceName")
    snapshot = None
    for mapping in self._get_param("BlockDeviceMappings", []):
        snapshot_id = (mapping.get("Ebs") or {}).get("SnapshotId")
        if snapshot_id and (snapshot is None or mapping.get("DeviceName") == root_device):
            snapshot = backend.get_snapshot(snapshot_id)  # InvalidSnapshot.NotFound if unknown
    result: ActionResult = _ORIG["AmisResponse.register_image"](self)
    if snapshot is not None:
        ami = backend.amis[result.result["ImageId"]]  # type: ignore[index]
        backend.snapshots.pop(ami.ebs_snapshot.id, None)  # drop moto's auto-created snapshot
        ami.ebs_snapshot = snapshot
        if root_device:
            ami.root_device_name = root_device
    return result


def _simple_action(backend_method: str, *params: str) -> Callable[[AmisResponse], ActionResult]:
    def action(self: AmisResponse) -> ActionResult:
        self.error_on_dryrun()
        args = [self._get_param(p) for p in params]
        getattr(self.ec2_backend, backend_method)(*args)
        return ActionResult({"Return": True})

    action.__name__ = backend_method
    return action


def _r_enable_image_deregistration_protection(self: AmisResponse) -> ActionResult:
    self.error_on_dryrun()
    self.ec2_backend.enable_image_deregistration_protection(
        self._get_param("ImageId"), self._get_bool_param("WithCooldown", False)
    )
    return ActionResult({"Return": "true"})


def _r_disable_image_deregistration_protection(self: AmisResponse) -> ActionResult:
    self.error_on_dryrun()
    self.ec2_backend.disable_image_deregistration_protection(self._get_param("ImageId"))
    return ActionResult({"Return": "true"})


def _r_describe_image_references(self: AmisResponse) -> ActionResult:
    self.error_on_dryrun()
    refs = self.ec2_backend.describe_image_references(
        self._get_param("ImageIds", []),
        self._get_bool_param("IncludeAllResourceTypes", False),
        self._get_param("ResourceTypes", []),
    )
    page, next_token = _paginate(refs, self._get_int_param("MaxResults"), self._get_param("NextToken"))
    return ActionResult({"ImageReferences": page, "NextToken": next_token})


def _ssm_validate_parameter_filters(self: Any, parameter_filters: list[dict[str, Any]] | None, by_path: bool) -> None:
    from moto.ssm.exceptions import InvalidFilterValue

    rest = []
    for f in parameter_filters or []:
        if f.get("Key") == "DataType" and not by_path:
            for value in f.get("Values", []):
                if value not in ("text", "aws:ec2:image"):
                    raise InvalidFilterValue(
                        f"The following filter value is not valid: {value}. "
                        "Valid values include: [text, aws:ec2:image]."
                    )
            if f.get("Option", "Equals") not in ("Equals", "BeginsWith"):
                from moto.ssm.exceptions import InvalidFilterOption

                raise InvalidFilterOption(f"The following filter option is not valid: {f.get('Option')}.")
        else:
            rest.append(f)
    _ORIG["SSM._validate_parameter_filters"](self, rest, by_path)


def _ssm_match_filters(self: Any, parameter: Any, filters: list[dict[str, Any]] | None = None) -> bool:
    rest = []
    for f in filters or []:
        if f.get("Key") == "DataType":
            values = f.get("Values", [])
            data_type = getattr(parameter, "data_type", "text") or "text"
            if f.get("Option", "Equals") == "BeginsWith":
                if not any(data_type.startswith(v) for v in values):
                    return False
            elif data_type not in values:
                return False
        else:
            rest.append(f)
    return bool(_ORIG["SSM._match_filters"](self, parameter, rest))


def _r_test_event_pattern(self: EventsHandler) -> str:
    pattern = EventPattern.load(self._get_param("EventPattern"))
    event = json.loads(self._get_param("Event"))
    return json.dumps({"Result": bool(pattern.matches_event(event))})


# --------------------------------------------------------------------------- moto accounts of a region


def _ec2_backends_of_region(region: str) -> list[tuple[str, Any]]:
    """``(account_id, backend)`` for every EC2 backend of ``region`` that exists (none is created)."""
    from moto.ec2.models import ec2_backends

    found = []
    for account_id, per_region in list(ec2_backends.items()):
        backend = dict.get(per_region, region)
        if backend is not None:
            found.append((account_id, backend))
    return found


def _imagebuilder_backend(account_id: str, region: str) -> ImageBuilderBackend | None:
    per_region = dict.get(imagebuilder_backends, account_id)
    return dict.get(per_region, region) if per_region is not None else None


def _imagebuilder_backends_of_region(region: str) -> list[tuple[str, ImageBuilderBackend]]:
    found = []
    for account_id, per_region in list(imagebuilder_backends.items()):
        backend = dict.get(per_region, region)
        if backend is not None:
            found.append((account_id, backend))
    return found


def _iso_ms(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------------- 12. LastLaunchedTime

_TLS = threading.local()


def _launch_index(region: str) -> dict[str, datetime]:
    """Image id -> latest launch time of an instance run from it in ``region``, any account."""
    latest: dict[str, datetime] = {}
    for _account_id, backend in _ec2_backends_of_region(region):
        for instance in backend.all_instances():
            at = _utc(instance.launch_time)
            if instance.image_id not in latest or at > latest[instance.image_id]:
                latest[instance.image_id] = at
    return latest


def _last_launched_time(self: Ami) -> str | None:
    if "_ext_last_launched" in self.__dict__:
        at: datetime | None = self.__dict__["_ext_last_launched"]
    else:
        region: str = self.ec2_backend.region_name
        cached = getattr(_TLS, "launch_index", None)
        index = cached[1] if cached is not None and cached[0] == region else _launch_index(region)
        at = index.get(self.id)
    return at.strftime(_ISO_SECONDS) if at else None


class _WithLaunchIndex(ActionResult):
    """A result whose images read ``LastLaunchedTime`` from one index of the region's launches."""

    def __init__(self, result: object, region: str) -> None:
        super().__init__(result)
        self._region = region

    def execute_result(self, context: ActionContext) -> TYPE_RESPONSE:
        _TLS.launch_index = (self._region, _launch_index(self._region))
        try:
            return super().execute_result(context)
        finally:
            _TLS.launch_index = None


def set_last_launched(account_id: str, region: str, image_id: str, when: datetime | None) -> None:
    """Pin the image's ``LastLaunchedTime`` to ``when`` (``None``: reported as never launched)."""
    from moto.ec2.models import ec2_backends

    ami = _get_ami(ec2_backends[account_id][region], image_id)
    ami.__dict__["_ext_last_launched"] = None if when is None else _utc(when).replace(microsecond=0)


def clear_last_launched(account_id: str, region: str, image_id: str) -> None:
    """Drop the pin of :func:`set_last_launched`: the value is computed from moto's instances again."""
    from moto.ec2.models import ec2_backends

    _get_ami(ec2_backends[account_id][region], image_id).__dict__.pop("_ext_last_launched", None)


# --------------------------------------------------------------------------- 13. AMI usage reports

_usage_report_delay = timedelta(0)


def set_usage_report_delay(seconds: float) -> None:
    """Reports created from now on stay ``pending`` for ``seconds`` (0: ``available`` at once)."""
    global _usage_report_delay
    if seconds < 0:
        raise ValueError("the delay cannot be negative")
    _usage_report_delay = timedelta(seconds=seconds)


@dataclass
class _UsageReport:
    report_id: str
    image_id: str
    resource_types: list[dict[str, Any]]
    account_ids: list[str]
    created: datetime
    ready: datetime
    tags: list[dict[str, str]]
    entries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def expires(self) -> datetime:
        return self.created + USAGE_REPORT_LIFETIME

    def state(self, now: datetime) -> str:
        return "available" if now >= self.ready else "pending"

    def describe(self, now: datetime) -> dict[str, Any]:
        return {
            "ImageId": self.image_id,
            "ReportId": self.report_id,
            "ResourceTypes": self.resource_types,
            "AccountIds": self.account_ids,
            "State": self.state(now),
            "CreationTime": self.created,
            "ExpirationTime": self.expires,
            "Tags": self.tags,
        }

    def filter_values(self, now: datetime) -> dict[str, list[str]]:
        values = {
            "creation-time": [_iso_ms(self.created)],
            "state": [self.state(now)],
            "tag-key": [t["Key"] for t in self.tags],
        }
        for tag in self.tags:
            values.setdefault(f"tag:{tag['Key']}", []).append(tag["Value"])
        return values


def _invalid(message: str) -> EC2ClientError:
    return _error("InvalidParameterValue", message)


def _check_filters(filters: dict[str, list[str]], names: set[str], tags: bool) -> None:
    for name in filters:
        if name not in names and not (tags and name.startswith("tag:")):
            raise _invalid(f"The filter '{name}' is invalid")


def _matches(values: dict[str, list[str]], filters: dict[str, list[str]]) -> bool:
    """EC2 filter semantics: every filter matches one of its values (``*`` and ``?`` wildcards)."""
    return all(
        any(fnmatch.fnmatchcase(have, want) for have in values.get(name, []) for want in wanted)
        for name, wanted in filters.items()
    )


def _usage_reports(backend: Any) -> dict[str, _UsageReport]:
    reports: dict[str, _UsageReport] = backend.__dict__.setdefault("_ext_usage_reports", {})
    now = _now()
    for report_id in [r.report_id for r in reports.values() if r.expires <= now]:
        reports.pop(report_id, None)  # EC2 deletes a report 30 days after its creation
    return reports


def _check_report_ids(reports: dict[str, _UsageReport], report_ids: Iterable[str]) -> None:
    for report_id in report_ids:
        if report_id not in reports:
            message = f"The image usage report ID '{report_id}' does not exist"
            raise _error("InvalidImageUsageReportId.NotFound", message)


def _usage_resource_types(resource_types: list[dict[str, Any]]) -> dict[str, int]:
    """Resource type -> launch template version depth (20 by default; unused by the other types)."""
    if not resource_types:
        raise _error("MissingParameter", "The request must contain the parameter ResourceTypes")
    wanted: dict[str, int] = {}
    for rt in resource_types:
        name = rt.get("ResourceType", "")
        if name not in _USAGE_TYPES:
            raise _invalid(f"Invalid resource type '{name}'. Valid values: {', '.join(_USAGE_TYPES)}")
        depth = 20
        for option in rt.get("ResourceTypeOptions") or []:
            if name != "ec2:LaunchTemplate":
                raise _invalid(f"ResourceTypeOptions are only valid for ec2:LaunchTemplate, not {name}")
            if option.get("OptionName") != "version-depth":
                raise _invalid(f"Invalid option name '{option.get('OptionName')}'. Valid value: version-depth")
            values = [str(v) for v in option.get("OptionValues") or []]
            if len(values) != 1 or not values[0].isdigit() or not 1 <= int(values[0]) <= 10000:
                raise _invalid("version-depth must be one integer between 1 and 10000")
            depth = int(values[0])
        wanted[name] = depth
    return wanted


def _usage_entries(
    owner: str, region: str, image_id: str, types: dict[str, int], account_ids: list[str]
) -> list[dict[str, Any]]:
    ec2_of = dict(_ec2_backends_of_region(region))
    builder_of = dict(_imagebuilder_backends_of_region(region))
    entries = []
    for account_id in sorted(set(ec2_of) | set(builder_of)):
        if account_id == owner or (account_ids and account_id not in account_ids):
            continue
        ec2, builder = ec2_of.get(account_id), builder_of.get(account_id)
        for resource_type, depth in types.items():
            count = 0
            if resource_type == "ec2:Instance" and ec2 is not None:
                count = sum(1 for i in ec2.all_instances() if i.image_id == image_id and i.state != "terminated")
            elif resource_type == "ec2:LaunchTemplate" and ec2 is not None:
                count = sum(
                    1
                    for template in ec2.launch_templates.values()
                    if any(version.image_id == image_id for version in template.versions[-depth:])
                )
            elif resource_type == "imagebuilder:ImageRecipe" and builder is not None:
                count = sum(1 for r in builder.image_recipes.values() if _recipe_ami(r) == image_id)
            elif resource_type == "imagebuilder:ContainerRecipe" and builder is not None:
                count = sum(1 for r in builder.container_recipes.values() if _recipe_ami(r) == image_id)
            if count:
                entries.append(
                    {"ResourceType": resource_type, "AccountId": account_id, "UsageCount": count, "ImageId": image_id}
                )
    return entries


def _create_image_usage_report(
    self: AmiBackend,
    image_id: str,
    resource_types: list[dict[str, Any]],
    account_ids: list[str],
    client_token: str | None,
    tag_specifications: list[dict[str, Any]],
) -> str:
    account_id: str = self.account_id  # type: ignore[attr-defined]
    region: str = self.region_name  # type: ignore[attr-defined]
    tokens: dict[str, tuple[str, str]] = self.__dict__.setdefault("_ext_usage_report_tokens", {})
    fingerprint = json.dumps([image_id, resource_types, account_ids, tag_specifications], sort_keys=True, default=str)
    if client_token and client_token in tokens:
        previous, report_id = tokens[client_token]
        if previous != fingerprint:
            raise _error(
                "IdempotentParameterMismatch",
                f"The client token {client_token} was already used with different parameters.",
            )
        return report_id

    if not str(image_id).startswith("ami-"):
        raise MalformedAMIIdError([image_id])
    ami = self.amis.get(image_id)
    if ami is None and image_id in self.deleted_amis:
        raise UnvailableAMIIdError(image_id)
    elsewhere = any(image_id in backend.amis for _account, backend in _ec2_backends_of_region(region))
    if ami is None and not elsewhere:
        raise InvalidAMIIdError(image_id)
    if ami is None or ami.owner_id != account_id:
        raise _error(
            "InvalidAMIID.Unavailable",
            f"The image id '[{image_id}]' is not owned by account {account_id}: only its owner can report on it",
        )
    types = _usage_resource_types(resource_types)
    if len(account_ids) > 200:
        raise _invalid("You can specify at most 200 account IDs.")
    for other in account_ids:
        if not re.fullmatch(r"\d{12}", str(other)):
            raise _invalid(f"Invalid account ID '{other}': expecting 12 digits")
    tags: list[dict[str, str]] = []
    for spec in tag_specifications:
        if spec.get("ResourceType") != "image-usage-report":
            resource_type = spec.get("ResourceType")
            raise _invalid(f"Invalid resource type '{resource_type}' in TagSpecifications: image-usage-report")
        tags += [{"Key": t["Key"], "Value": t.get("Value", "")} for t in spec.get("Tags", [])]

    now = _now().replace(microsecond=0)  # moto's EC2 serializer writes timestamps as ...:SS.000Z
    report = _UsageReport(
        report_id=random_id("amiur"),
        image_id=image_id,
        resource_types=resource_types,
        account_ids=list(account_ids),
        created=now,
        ready=now + _usage_report_delay,
        tags=tags,
        entries=_usage_entries(account_id, region, image_id, types, list(account_ids)),
    )
    _usage_reports(self)[report.report_id] = report
    if client_token:
        tokens[client_token] = (fingerprint, report.report_id)
    return report.report_id


def _describe_image_usage_reports(
    self: AmiBackend, image_ids: list[str], report_ids: list[str], filters: dict[str, list[str]]
) -> list[dict[str, Any]]:
    reports = _usage_reports(self)
    _check_report_ids(reports, report_ids)
    _check_filters(filters, {"creation-time", "state", "tag-key"}, tags=True)
    now = _now()
    return [
        report.describe(now)
        for report in reports.values()
        if (not image_ids or report.image_id in image_ids)
        and (not report_ids or report.report_id in report_ids)
        and _matches(report.filter_values(now), filters)
    ]


def _describe_image_usage_report_entries(
    self: AmiBackend, report_ids: list[str], image_ids: list[str], filters: dict[str, list[str]]
) -> list[dict[str, Any]]:
    reports = _usage_reports(self)
    _check_report_ids(reports, report_ids)
    _check_filters(filters, {"account-id", "creation-time", "resource-type"}, tags=False)
    now = _now()
    entries = []
    for report in reports.values():
        if report.state(now) != "available":
            continue  # a pending report cannot be viewed yet
        if (image_ids and report.image_id not in image_ids) or (report_ids and report.report_id not in report_ids):
            continue
        for entry in report.entries:
            values = {
                "account-id": [entry["AccountId"]],
                "creation-time": [_iso_ms(report.created)],
                "resource-type": [entry["ResourceType"]],
            }
            if _matches(values, filters):
                entries.append({**entry, "ReportId": report.report_id, "ReportCreationTime": report.created})
    return entries


def _delete_image_usage_report(self: AmiBackend, report_id: str) -> None:
    reports = _usage_reports(self)
    _check_report_ids(reports, [report_id])
    del reports[report_id]


def _r_create_image_usage_report(self: AmisResponse) -> ActionResult:
    self.error_on_dryrun()
    report_id = self.ec2_backend.create_image_usage_report(
        self._get_param("ImageId"),
        self._get_param("ResourceTypes", []),
        self._get_param("AccountIds", []),
        self._get_param("ClientToken"),
        self._get_param("TagSpecifications", []),
    )
    return ActionResult({"ReportId": report_id})


def _r_describe_image_usage_reports(self: AmisResponse) -> ActionResult:
    self.error_on_dryrun()
    reports = self.ec2_backend.describe_image_usage_reports(
        self._get_param("ImageIds", []), self._get_param("ReportIds", []), self._filters_from_querystring()
    )
    page, next_token = _paginate(
        reports, self._get_int_param("MaxResults"), self._get_param("NextToken"), lowest=1, highest=None
    )
    return ActionResult({"ImageUsageReports": page, "NextToken": next_token})


def _r_describe_image_usage_report_entries(self: AmisResponse) -> ActionResult:
    self.error_on_dryrun()
    entries = self.ec2_backend.describe_image_usage_report_entries(
        self._get_param("ReportIds", []), self._get_param("ImageIds", []), self._filters_from_querystring()
    )
    page, next_token = _paginate(
        entries, self._get_int_param("MaxResults"), self._get_param("NextToken"), lowest=1, highest=None
    )
    return ActionResult({"ImageUsageReportEntries": page, "NextToken": next_token})


def _r_delete_image_usage_report(self: AmisResponse) -> ActionResult:
    self.error_on_dryrun()
    self.ec2_backend.delete_image_usage_report(self._get_param("ReportId"))
    return ActionResult({"Return": True})


# --------------------------------------------------------------------------- 14. EC2 Image Builder

_IMAGEBUILDER_URL_BASE = r"https?://imagebuilder\.(.+)\.amazonaws\.com"
_IMAGEBUILDER_OPERATIONS = (
    "CreateImageRecipe",
    "ListImageRecipes",
    "GetImageRecipe",
    "DeleteImageRecipe",
    "CreateContainerRecipe",
    "ListContainerRecipes",
    "GetContainerRecipe",
    "DeleteContainerRecipe",
)
_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")


class _ImageBuilderError(ServiceException):
    """An Image Builder error (defined here: moto looks the error model up by the class's package)."""


def _ib_error(code: str, message: str) -> ServiceException:
    return _ImageBuilderError(code, message)


def _recipe_ami(recipe: dict[str, Any]) -> str | None:
    """The AMI a recipe uses: an image recipe's parent image, a container recipe's instance image."""
    if ":container-recipe/" in recipe["arn"]:
        return (recipe.get("instanceConfiguration") or {}).get("image")
    return recipe.get("parentImage")


def _launchable_ami(account_id: str, region: str, image_id: str) -> Ami | None:
    """An available AMI of ``region`` that ``account_id`` may launch: owned, public or shared."""
    for _owner, backend in _ec2_backends_of_region(region):
        ami: Ami | None = backend.amis.get(image_id)
        if ami is None or ami.state != "available":
            continue
        shared = any(
            p.get("UserId") == account_id or "OrganizationArn" in p or "OrganizationalUnitArn" in p
            for p in ami.launch_permissions
        )
        if ami.owner_id == account_id or ami.is_public or shared:
            return ami
    return None


class ImageBuilderBackend(BaseBackend):
    """Image and container recipes of one account and region."""

    def __init__(self, region_name: str, account_id: str) -> None:
        super().__init__(region_name, account_id)
        self.image_recipes: dict[str, dict[str, Any]] = {}
        self.container_recipes: dict[str, dict[str, Any]] = {}
        self.client_tokens: dict[str, tuple[str, str]] = {}

    @property
    def _url_module(self) -> Any:
        return _IMAGEBUILDER_URLS

    def _store(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.image_recipes if kind == "image-recipe" else self.container_recipes

    def _checked_ami(self, image_id: str | None, parameter: str) -> Ami | None:
        if not image_id or not image_id.startswith("ami-"):
            return None  # an Image Builder image ARN, an ssm: parameter, a container image URI...
        ami = _launchable_ami(self.account_id, self.region_name, image_id)
        if ami is None:
            raise _ib_error(
                "InvalidParameterValueException",
                f"The value supplied for parameter '{parameter}' is not valid. The image '{image_id}' "
                f"does not exist in {self.region_name} or you do not have access to it.",
            )
        return ami

    def create_recipe(self, kind: str, params: dict[str, Any]) -> str:
        token = params.get("clientToken")
        fingerprint = json.dumps(
            [kind, {k: v for k, v in params.items() if k not in ("clientToken", "dryRun")}],
            sort_keys=True,
            default=str,
        )
        if token and token in self.client_tokens:
            previous, arn = self.client_tokens[token]
            if previous != fingerprint:
                raise _ib_error(
                    "IdempotentParameterMismatchException",
                    f"The client token {token} was already used with different parameters.",
                )
            return arn
        name, version = str(params.get("name", "")), str(params.get("semanticVersion", ""))
        if not _VERSION.fullmatch(version):
            raise _ib_error(
                "InvalidVersionNumberException",
                f"The semantic version '{version}' is not valid: expecting <major>.<minor>.<patch>.",
            )
        arn = (
            f"arn:{get_partition(self.region_name)}:imagebuilder:{self.region_name}:{self.account_id}:"
            f"{kind}/{name.lower().replace(' ', '-')}/{version}"
        )
        store = self._store(kind)
        if arn in store:
            raise _ib_error("ResourceAlreadyExistsException", f"The resource ARN '{arn}' already exists.")
        recipe: dict[str, Any] = {
            "arn": arn,
            "name": name,
            "description": params.get("description"),
            "owner": self.account_id,
            "version": version,
            "components": params.get("components"),
            "parentImage": params.get("parentImage"),
            "dateCreated": _iso_ms(_now()),
            "tags": params.get("tags") or None,
            "workingDirectory": params.get("workingDirectory"),
        }
        if kind == "image-recipe":
            ami = self._checked_ami(params.get("parentImage"), "parentImage")
            recipe.update(
                platform="Windows" if ami is not None and (ami.platform or "").lower() == "windows" else "Linux",
                blockDeviceMappings=params.get("blockDeviceMappings"),
                additionalInstanceConfiguration=params.get("additionalInstanceConfiguration"),
                amiTags=params.get("amiTags") or None,
            )
        else:
            instance_configuration = params.get("instanceConfiguration") or {}
            self._checked_ami(instance_configuration.get("image"), "instanceConfiguration.image")
            if not params.get("dockerfileTemplateData") and not params.get("dockerfileTemplateUri"):
                raise _ib_error(
                    "InvalidRequestException", "You must specify dockerfileTemplateData or dockerfileTemplateUri."
                )
            recipe.update(
                containerType=params.get("containerType"),
                platform=params.get("platformOverride") or "Linux",
                instanceConfiguration=instance_configuration or None,
                dockerfileTemplateData=params.get("dockerfileTemplateData"),
                kmsKeyId=params.get("kmsKeyId"),
                encrypted=True,
                targetRepository=params.get("targetRepository"),
            )
        store[arn] = {k: v for k, v in recipe.items() if v is not None}
        if token:
            self.client_tokens[token] = (fingerprint, arn)
        return arn

    def get_recipe(self, kind: str, arn: str) -> dict[str, Any]:
        recipe = self._store(kind).get(arn)
        if recipe is None:
            raise _ib_error("ResourceNotFoundException", f"The resource ARN '{arn}' does not exist.")
        return recipe

    def delete_recipe(self, kind: str, arn: str) -> None:
        self.get_recipe(kind, arn)
        del self._store(kind)[arn]

    def list_recipes(self, kind: str, owner: str, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        names = {"name", "parentImage", "platform"} | ({"containerType"} if kind == "container-recipe" else set())
        for f in filters:
            if f.get("name") not in names:
                raise _ib_error("InvalidRequestException", f"The filter name '{f.get('name')}' is not valid.")
        if owner != "Self":
            return []  # recipe sharing is not modelled

        def keep(recipe: dict[str, Any]) -> bool:
            for f in filters:
                value, wanted = str(recipe.get(f["name"], "")), [str(v) for v in f.get("values", [])]
                if f["name"] == "name":
                    if not any(fnmatch.fnmatchcase(value, w) for w in wanted):
                        return False
                elif value not in wanted:
                    return False
            return True

        def order(recipe: dict[str, Any]) -> tuple[str, tuple[int, ...]]:
            return recipe["name"].lower(), tuple(int(n) for n in recipe["version"].split("."))

        summary_keys = ["arn", "name", "platform", "owner", "parentImage", "dateCreated", "tags"]
        if kind == "container-recipe":
            summary_keys.append("containerType")
        summaries = []
        for recipe in sorted(filter(keep, self._store(kind).values()), key=order):
            summary = {k: recipe[k] for k in summary_keys if k in recipe}
            if kind == "container-recipe" and _recipe_ami(recipe):
                summary["instanceImage"] = _recipe_ami(recipe)
            summaries.append(summary)
        return summaries


# botocore's endpoint data lists no region for imagebuilder: install() gives it EC2's regions.
imagebuilder_backends = BackendDict(ImageBuilderBackend, "imagebuilder", use_boto3_regions=False)


def _ec2_regions() -> list[str]:
    session = AccountSpecificBackend.get_session()
    return [
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("ec2", partition_name=partition)
    ]


def _ib_paginate(items: list[Any], max_results: int | None, token: str | None) -> tuple[list[Any], str | None]:
    try:
        return _paginate(items, max_results, token, lowest=1, highest=100)
    except EC2ClientError as e:
        if e.code == "InvalidPaginationToken":
            raise _ib_error("InvalidPaginationTokenException", e.message) from None
        raise _ib_error("InvalidRequestException", e.message) from None


class ImageBuilderResponse(BaseResponse):
    """The REST-JSON operations of Image Builder that :class:`ImageBuilderBackend` implements."""

    def __init__(self) -> None:
        super().__init__(service_name="imagebuilder")
        self.automated_parameter_parsing = True

    @property
    def imagebuilder_backend(self) -> ImageBuilderBackend:
        return imagebuilder_backends[self.current_account][self.region]

    def _request(self) -> dict[str, Any]:
        params = dict(self.params or {})
        if params.get("dryRun"):
            raise _ib_error("DryRunOperationException", "The dry run operation was successful.")
        return params

    @staticmethod
    def _request_id() -> str:
        return str(uuid.uuid4())

    def _create(self, kind: str, arn_key: str) -> ActionResult:
        params = self._request()
        arn = self.imagebuilder_backend.create_recipe(kind, params)
        return ActionResult({"requestId": self._request_id(), "clientToken": params.get("clientToken"), arn_key: arn})

    def _list(self, kind: str, list_key: str) -> ActionResult:
        params = self._request()
        owner, filters = params.get("owner") or "Self", params.get("filters") or []
        recipes = self.imagebuilder_backend.list_recipes(kind, owner, filters)
        page, next_token = _ib_paginate(recipes, params.get("maxResults"), params.get("nextToken"))
        return ActionResult({"requestId": self._request_id(), list_key: page, "nextToken": next_token})

    def create_image_recipe(self) -> ActionResult:
        return self._create("image-recipe", "imageRecipeArn")

    def create_container_recipe(self) -> ActionResult:
        return self._create("container-recipe", "containerRecipeArn")

    def list_image_recipes(self) -> ActionResult:
        return self._list("image-recipe", "imageRecipeSummaryList")

    def list_container_recipes(self) -> ActionResult:
        return self._list("container-recipe", "containerRecipeSummaryList")

    def get_image_recipe(self) -> ActionResult:
        recipe = self.imagebuilder_backend.get_recipe("image-recipe", self._request().get("imageRecipeArn", ""))
        return ActionResult({"requestId": self._request_id(), "imageRecipe": recipe})

    def get_container_recipe(self) -> ActionResult:
        recipe = self.imagebuilder_backend.get_recipe("container-recipe", self._request().get("containerRecipeArn", ""))
        return ActionResult({"requestId": self._request_id(), "containerRecipe": recipe})

    def delete_image_recipe(self) -> ActionResult:
        arn = self._request().get("imageRecipeArn", "")
        self.imagebuilder_backend.delete_recipe("image-recipe", arn)
        return ActionResult({"requestId": self._request_id(), "imageRecipeArn": arn})

    def delete_container_recipe(self) -> ActionResult:
        arn = self._request().get("containerRecipeArn", "")
        self.imagebuilder_backend.delete_recipe("container-recipe", arn)
        return ActionResult({"requestId": self._request_id(), "containerRecipeArn": arn})


_IMAGEBUILDER_URLS = types.SimpleNamespace(
    url_bases=[_IMAGEBUILDER_URL_BASE],
    url_paths={f"{{0}}/{operation}$": ImageBuilderResponse.dispatch for operation in _IMAGEBUILDER_OPERATIONS},
)


# --------------------------------------------------------------------------- 17. Recycle Bin

RBIN_RESOURCE_TYPES = ("EBS_SNAPSHOT", "EC2_IMAGE", "EBS_VOLUME")
RBIN_MAX_RULES = 250  # retention rules per Region (the User Guide's default quota)
RBIN_MAX_RESOURCE_TAGS = 50
RBIN_MAX_EXCLUDE_TAGS = 5
IN_BIN_TAG = "aws:recycle-bin:resource-in-bin"
_RBIN_URL_BASE = r"https?://rbin\.(.+)\.amazonaws\.com"
_RBIN_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# Retention periods the User Guide allows, in days (the botocore model says 1..3650).
_RBIN_MAX_DAYS = {"EBS_SNAPSHOT": 365, "EC2_IMAGE": 365, "EBS_VOLUME": 7}


class _RbinError(ServiceException):
    """A Recycle Bin error (defined here: moto looks the error model up by the class's package)."""


def _rbin_error(code: str, message: str, reason: str | None = None) -> ServiceException:
    error = _RbinError(code, message)
    if reason:
        error.reason = reason  # type: ignore[attr-defined]
    return error


def _rbin_invalid(message: str) -> ServiceException:
    return _rbin_error("ValidationException", message, "INVALID_PARAMETER_VALUE")


def _tag_pairs(value: Any, name: str, most: int) -> list[dict[str, str]]:
    pairs = list(value or [])
    if len(pairs) > most:
        raise _rbin_invalid(f"{name}: at most {most} tag key and value pairs")
    out = []
    for pair in pairs:
        if not pair.get("ResourceTagKey"):
            raise _rbin_invalid(f"{name}: every pair needs a ResourceTagKey")
        out.append({k: str(v) for k, v in pair.items() if k in ("ResourceTagKey", "ResourceTagValue")})
    return out


def _tag_matches(pair: dict[str, str], tags: dict[str, str]) -> bool:
    """A rule's pair matches a resource tag with its key and, when the pair names one, its value."""
    key, value = pair["ResourceTagKey"], pair.get("ResourceTagValue")
    return key in tags and (not value or tags[key] == value)


@dataclass
class _RetentionRule:
    identifier: str
    arn: str
    resource_type: str
    days: int
    description: str
    resource_tags: list[dict[str, str]]
    exclude_tags: list[dict[str, str]]
    lock: dict[str, Any] | None
    tags: list[dict[str, str]]

    @property
    def lock_state(self) -> str:
        return "locked" if self.lock else "unlocked"

    @property
    def retention_period(self) -> dict[str, Any]:
        return {"RetentionPeriodValue": self.days, "RetentionPeriodUnit": "DAYS"}

    def matches(self, resource_type: str, tags: dict[str, str]) -> bool:
        if resource_type != self.resource_type:
            return False
        if self.resource_tags:  # a tag-level rule: one of its pairs
            return any(_tag_matches(pair, tags) for pair in self.resource_tags)
        return not any(_tag_matches(pair, tags) for pair in self.exclude_tags)  # Region-level

    def describe(self, status: str = "available") -> dict[str, Any]:
        out: dict[str, Any] = {
            "Identifier": self.identifier,
            "Description": self.description,
            "ResourceType": self.resource_type,
            "RetentionPeriod": self.retention_period,
            "ResourceTags": self.resource_tags,
            "Status": status,
            "LockState": self.lock_state,
            "RuleArn": self.arn,
            "ExcludeResourceTags": self.exclude_tags,
        }
        if self.lock:
            out["LockConfiguration"] = self.lock
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "Identifier": self.identifier,
            "Description": self.description,
            "RetentionPeriod": self.retention_period,
            "LockState": self.lock_state,
            "RuleArn": self.arn,
        }


class RbinBackend(BaseBackend):
    """The Recycle Bin retention rules of one account and region."""

    def __init__(self, region_name: str, account_id: str) -> None:
        super().__init__(region_name, account_id)
        self.rules: dict[str, _RetentionRule] = {}

    @property
    def _url_module(self) -> Any:
        return _RBIN_URLS

    def create_rule(self, params: dict[str, Any]) -> _RetentionRule:
        resource_type = str(params.get("ResourceType") or "")
        if resource_type not in RBIN_RESOURCE_TYPES:
            raise _rbin_invalid(f"ResourceType must be one of {', '.join(RBIN_RESOURCE_TYPES)}")
        period = params.get("RetentionPeriod") or {}
        days, unit = period.get("RetentionPeriodValue"), period.get("RetentionPeriodUnit")
        most = _RBIN_MAX_DAYS[resource_type]
        if unit != "DAYS" or not isinstance(days, int) or not 1 <= days <= most:
            raise _rbin_invalid(f"RetentionPeriod for {resource_type}: 1 to {most} DAYS")
        resource_tags = _tag_pairs(params.get("ResourceTags"), "ResourceTags", RBIN_MAX_RESOURCE_TAGS)
        exclude_tags = _tag_pairs(params.get("ExcludeResourceTags"), "ExcludeResourceTags", RBIN_MAX_EXCLUDE_TAGS)
        if resource_tags and exclude_tags:
            raise _rbin_invalid("ExcludeResourceTags apply to Region-level rules only, not with ResourceTags")
        lock = params.get("LockConfiguration") or None
        if lock is not None:
            if resource_tags:
                raise _rbin_invalid("Only Region-level retention rules can be locked")
            delay = lock.get("UnlockDelay") or {}
            if delay.get("UnlockDelayUnit") != "DAYS" or not 7 <= int(delay.get("UnlockDelayValue") or 0) <= 30:
                raise _rbin_invalid("UnlockDelay: 7 to 30 DAYS")
        description = str(params.get("Description") or "")
        if len(description) > 255:
            raise _rbin_invalid("Description: at most 255 characters")
        if len(self.rules) >= RBIN_MAX_RULES:
            raise _rbin_error(
                "ServiceQuotaExceededException",
                f"At most {RBIN_MAX_RULES} retention rules per Region",
                "SERVICE_QUOTA_EXCEEDED",
            )
        identifier = "".join(random.choice(_RBIN_ID_CHARS) for _ in range(11))
        rule = _RetentionRule(
            identifier=identifier,
            arn=f"arn:{get_partition(self.region_name)}:rbin:{self.region_name}:{self.account_id}:rule/{identifier}",
            resource_type=resource_type,
            days=days,
            description=description,
            resource_tags=resource_tags,
            exclude_tags=exclude_tags,
            lock=lock,
            tags=list(params.get("Tags") or []),
        )
        self.rules[identifier] = rule
        return rule

    def get_rule(self, identifier: str) -> _RetentionRule:
        rule = self.rules.get(identifier)
        if rule is None:
            raise _rbin_error(
                "ResourceNotFoundException", f"The retention rule {identifier} does not exist", "RULE_NOT_FOUND"
            )
        return rule

    def delete_rule(self, identifier: str) -> None:
        rule = self.get_rule(identifier)
        if rule.lock:
            raise _rbin_error(
                "ConflictException", f"The retention rule {identifier} is locked: unlock it first", "INVALID_RULE_STATE"
            )
        del self.rules[identifier]

    def list_rules(self, params: dict[str, Any]) -> list[_RetentionRule]:
        resource_type = params.get("ResourceType")
        if resource_type not in RBIN_RESOURCE_TYPES:
            raise _rbin_invalid(f"ResourceType must be one of {', '.join(RBIN_RESOURCE_TYPES)}")
        wanted_tags = _tag_pairs(params.get("ResourceTags"), "ResourceTags", RBIN_MAX_RESOURCE_TAGS)
        wanted_excluded = _tag_pairs(params.get("ExcludeResourceTags"), "ExcludeResourceTags", RBIN_MAX_EXCLUDE_TAGS)
        lock_state = params.get("LockState")
        return [
            rule
            for rule in self.rules.values()
            if rule.resource_type == resource_type
            and all(pair in rule.resource_tags for pair in wanted_tags)
            and all(pair in rule.exclude_tags for pair in wanted_excluded)
            and (lock_state is None or rule.lock_state == lock_state)
        ]

    def retention(self, resource_type: str, tags: dict[str, str]) -> timedelta | None:
        """How long a deleted resource with these tags stays in the bin: the longest matching rule."""
        days = [rule.days for rule in self.rules.values() if rule.matches(resource_type, tags)]
        return timedelta(days=max(days)) if days else None


rbin_backends = BackendDict(RbinBackend, "rbin")


def _rbin_backend(account_id: str, region: str) -> RbinBackend | None:
    per_region = dict.get(rbin_backends, account_id)
    return dict.get(per_region, region) if per_region is not None else None


class RbinResponse(BaseResponse):
    """The REST-JSON operations of the Recycle Bin that :class:`RbinBackend` implements."""

    def __init__(self) -> None:
        super().__init__(service_name="rbin")
        self.automated_parameter_parsing = True

    @property
    def rbin_backend(self) -> RbinBackend:
        return rbin_backends[self.current_account][self.region]

    def create_rule(self) -> ActionResult:
        rule = self.rbin_backend.create_rule(dict(self.params or {}))
        # The rule is answered `pending`, as EC2 does; it retains resources at once (see entry 17).
        return ActionResult({**rule.describe("pending"), "Tags": rule.tags})

    def get_rule(self) -> ActionResult:
        rule = self.rbin_backend.get_rule(str((self.params or {}).get("Identifier", "")))
        return ActionResult(rule.describe())

    def delete_rule(self) -> ActionResult:
        self.rbin_backend.delete_rule(str((self.params or {}).get("Identifier", "")))
        return EmptyResult()

    def list_rules(self) -> ActionResult:
        params = dict(self.params or {})
        rules = [rule.summary() for rule in self.rbin_backend.list_rules(params)]
        try:
            page, next_token = _paginate(rules, params.get("MaxResults"), params.get("NextToken"), 1, 1000)
        except EC2ClientError as e:
            raise _rbin_error("ValidationException", e.message, "INVALID_PAGE_TOKEN") from None
        return ActionResult({"Rules": page, "NextToken": next_token})


_RBIN_URLS = types.SimpleNamespace(
    url_bases=[_RBIN_URL_BASE],
    url_paths={
        "{0}/rules$": RbinResponse.dispatch,
        "{0}/rules/(?P<identifier>[^/]+)$": RbinResponse.dispatch,
        "{0}/list-rules$": RbinResponse.dispatch,
    },
)


@dataclass
class _Binned:
    """A deleted image (moto's ``Ami``) or snapshot (``Snapshot``) kept in the Recycle Bin."""

    resource: Any
    entered: datetime
    exits: datetime


def _bin(backend: Any, kind: str) -> dict[str, _Binned]:
    """The bin of ``kind`` (``images``, ``snapshots``) of an EC2 backend, without what has expired."""
    binned: dict[str, _Binned] = backend.__dict__.setdefault(f"_ext_bin_{kind}", {})
    now = _now()
    for resource_id in [rid for rid, b in binned.items() if b.exits <= now]:
        del binned[resource_id]  # the retention period is over: deleted for good
        backend.tags.pop(resource_id, None)
    return binned


def _retain(backend: Any, resource_type: str, resource: Any) -> None:
    """Keep a resource just deleted in the bin when a rule of its account and region matches it."""
    rules = _rbin_backend(backend.account_id, backend.region_name)
    if rules is None:
        return
    tags = dict(backend.tags.get(resource.id, {}))
    retention = rules.retention(resource_type, tags)
    if retention is None:
        return
    now = _now().replace(microsecond=0)  # moto's EC2 serializer writes timestamps as ...:SS.000Z
    _bin(backend, "images" if resource_type == "EC2_IMAGE" else "snapshots")[resource.id] = _Binned(
        resource, now, now + retention
    )
    backend.tags[resource.id][IN_BIN_TAG] = "true"


def _bin_page(self: AmisResponse, kind: str, ids_param: str, lowest: int) -> tuple[list[_Binned], str | None]:
    self.error_on_dryrun()
    ids = self._get_param(ids_param, [])
    binned = _bin(self.ec2_backend, kind)
    chosen = [binned[i] for i in ids if i in binned] if ids else list(binned.values())
    return _paginate(chosen, self._get_int_param("MaxResults"), self._get_param("NextToken"), lowest, 1000)


def _r_list_images_in_recycle_bin(self: AmisResponse) -> ActionResult:
    ids = self._get_param("ImageIds", [])
    if len(ids) > 20:
        raise _error("InvalidParameterValue", "ImageIds: at most 20 image ids may be given")
    page, next_token = _bin_page(self, "images", "ImageIds", 1)
    images = [
        {
            "ImageId": b.resource.id,
            "Name": b.resource.name,
            "Description": b.resource.description,
            "RecycleBinEnterTime": b.entered,
            "RecycleBinExitTime": b.exits,
        }
        for b in page
    ]
    return ActionResult({"Images": images, "NextToken": next_token})


def _r_list_snapshots_in_recycle_bin(self: AmisResponse) -> ActionResult:
    page, next_token = _bin_page(self, "snapshots", "SnapshotIds", 5)
    snapshots = [
        {
            "SnapshotId": b.resource.id,
            "RecycleBinEnterTime": b.entered,
            "RecycleBinExitTime": b.exits,
            "Description": b.resource.description,
            "VolumeId": b.resource.volume.id,
        }
        for b in page
    ]
    return ActionResult({"Snapshots": snapshots, "NextToken": next_token})


def _r_restore_image_from_recycle_bin(self: AmisResponse) -> ActionResult:
    self.error_on_dryrun()
    ami_id = self._get_param("ImageId")
    if not str(ami_id).startswith("ami-"):
        raise MalformedAMIIdError([ami_id])
    backend = self.ec2_backend
    binned = _bin(backend, "images").pop(ami_id, None)
    if binned is None:
        raise InvalidAMIIdError(ami_id)
    backend.amis[ami_id] = binned.resource
    if ami_id in backend.deleted_amis:
        backend.deleted_amis.remove(ami_id)
    backend.tags.get(ami_id, {}).pop(IN_BIN_TAG, None)
    return ActionResult({"Return": True})


def _r_restore_snapshot_from_recycle_bin(self: AmisResponse) -> ActionResult:
    self.error_on_dryrun()
    snapshot_id = self._get_param("SnapshotId")
    backend = self.ec2_backend
    binned = _bin(backend, "snapshots").pop(snapshot_id, None)
    if binned is None:
        raise InvalidSnapshotIdError()
    snapshot = binned.resource
    backend.snapshots[snapshot_id] = snapshot
    backend.tags.get(snapshot_id, {}).pop(IN_BIN_TAG, None)
    return ActionResult(
        {
            "SnapshotId": snapshot.id,
            "Description": snapshot.description,
            "Encrypted": bool(snapshot.encrypted),
            "OwnerId": snapshot.owner_id,
            "Progress": "100%",
            "StartTime": snapshot.start_time,
            "State": snapshot.status,
            "VolumeId": snapshot.volume.id,
            "VolumeSize": snapshot.volume.size,
        }
    )


def _get_backend(name: str) -> Any:
    if name == "imagebuilder":
        return imagebuilder_backends
    if name == "rbin":
        return rbin_backends
    return _ORIG["backends.get_backend"](name)


# --------------------------------------------------------------------------- 18. FullSnapshotSizeInBytes

FULL_SNAPSHOT_FRACTION = 0.4  # of the volume, by default: what a freshly built image typically writes
EBS_BLOCK = 512 * 1024  # EBS snapshots store 512 KiB blocks
_GIB = 2**30


def _full_snapshot_size(self: Any) -> int | None:
    if self.status != "completed":
        return None
    if "_ext_full_size" in self.__dict__:
        pinned: int | None = self.__dict__["_ext_full_size"]
        return pinned
    return int(self.volume.size * _GIB * FULL_SNAPSHOT_FRACTION) // EBS_BLOCK * EBS_BLOCK


def _snapshot(account_id: str, region: str, snapshot_id: str) -> Any:
    from moto.ec2.models import ec2_backends

    return ec2_backends[account_id][region].get_snapshot(snapshot_id)  # InvalidSnapshot.NotFound


def set_full_snapshot_size(account_id: str, region: str, snapshot_id: str, size_bytes: int | None) -> None:
    """Pin the snapshot's ``FullSnapshotSizeInBytes`` (``None``: not reported, as for old snapshots)."""
    snapshot = _snapshot(account_id, region, snapshot_id)
    if size_bytes is not None and not 0 <= size_bytes <= snapshot.volume.size * _GIB:
        raise ValueError(f"a snapshot of a {snapshot.volume.size} GiB volume holds 0..{snapshot.volume.size} GiB")
    snapshot.__dict__["_ext_full_size"] = size_bytes


def clear_full_snapshot_size(account_id: str, region: str, snapshot_id: str) -> None:
    """Drop the pin of :func:`set_full_snapshot_size`: the default fraction of the volume again."""
    _snapshot(account_id, region, snapshot_id).__dict__.pop("_ext_full_size", None)


# --------------------------------------------------------------------------- install

_ORIG: dict[str, Any] = {}
_INSTALL_LOCK = threading.Lock()


def install() -> None:
    """Apply every patch (idempotent, thread-safe)."""
    with _INSTALL_LOCK:
        if _ORIG:
            return
        _ORIG["call_action"] = BaseResponse.call_action
        _ORIG["Ami.block_device_mappings"] = Ami.__dict__["block_device_mappings"]
        _ORIG["Ami.get_filter_value"] = Ami.get_filter_value
        for name in ("create_image", "copy_image", "deregister_image"):
            _ORIG[f"AmiBackend.{name}"] = getattr(AmiBackend, name)
        _ORIG["EBSBackend.delete_snapshot"] = EBSBackend.delete_snapshot
        _ORIG["InstanceBackend.run_instances"] = InstanceBackend.run_instances
        from moto.ssm.models import SimpleSystemManagerBackend

        _ORIG["SSM._validate_parameter_filters"] = SimpleSystemManagerBackend._validate_parameter_filters
        _ORIG["SSM._match_filters"] = SimpleSystemManagerBackend._match_filters
        for name in ("describe_image_attribute", "modify_image_attribute", "register_image"):
            _ORIG[f"AmisResponse.{name}"] = getattr(AmisResponse, name)
        _ORIG["backends.get_backend"] = moto_backends.get_backend
        # Image Builder: the URL pattern (first, so no broader pattern wins) and the backend behind it.
        # moto's botocore stubber and its server read this very list and call backends.get_backend.
        backend_index.backend_url_patterns.insert(0, ("imagebuilder", re.compile(_IMAGEBUILDER_URL_BASE)))
        imagebuilder_backends._additional_regions = _ec2_regions()
        # The Recycle Bin likewise (botocore lists its regions).
        backend_index.backend_url_patterns.insert(0, ("rbin", re.compile(_RBIN_URL_BASE)))

        patches: list[tuple[Any, str, Any]] = [
            (moto_backends, "get_backend", _get_backend),
            (BaseResponse, "call_action", _call_action),
            # model
            (Ami, "source_image_id", None),
            (Ami, "source_image_region", None),
            (Ami, "state_reason", None),
            (Ami, "deprecation_time", property(_deprecation_time)),
            (Ami, "deregistration_protection", property(_deregistration_protection)),
            (Ami, "block_device_mappings", property(_block_device_mappings)),
            (Ami, "get_filter_value", _ami_get_filter_value),
            (Ami, "last_launched_time", property(_last_launched_time)),
            (Snapshot, "full_snapshot_size_in_bytes", property(_full_snapshot_size)),
            # backend
            (AmiBackend, "create_image", _create_image),
            (AmiBackend, "copy_image", _copy_image),
            (AmiBackend, "deregister_image", _deregister_image),
            (AmiBackend, "enable_image_deprecation", _enable_image_deprecation),
            (AmiBackend, "disable_image_deprecation", _disable_image_deprecation),
            (AmiBackend, "enable_image_deregistration_protection", _enable_image_deregistration_protection),
            (AmiBackend, "disable_image_deregistration_protection", _disable_image_deregistration_protection),
            (AmiBackend, "enable_image", _enable_image),
            (AmiBackend, "disable_image", _disable_image),
            (AmiBackend, "describe_image_references", _describe_image_references),
            (AmiBackend, "create_image_usage_report", _create_image_usage_report),
            (AmiBackend, "describe_image_usage_reports", _describe_image_usage_reports),
            (AmiBackend, "describe_image_usage_report_entries", _describe_image_usage_report_entries),
            (AmiBackend, "delete_image_usage_report", _delete_image_usage_report),
            (EBSBackend, "delete_snapshot", _delete_snapshot),
            (InstanceBackend, "run_instances", _run_instances),
            # responses (the EC2 dispatcher finds actions among EC2Response's functions)
            (AmisResponse, "describe_images", _r_describe_images),
            (AmisResponse, "describe_image_attribute", _r_describe_image_attribute),
            (AmisResponse, "modify_image_attribute", _r_modify_image_attribute),
            (AmisResponse, "copy_image", _r_copy_image),
            (AmisResponse, "deregister_image", _r_deregister_image),
            (AmisResponse, "register_image", _r_register_image),
            (
                AmisResponse,
                "enable_image_deprecation",
                _simple_action("enable_image_deprecation", "ImageId", "DeprecateAt"),
            ),
            (
                AmisResponse,
                "disable_image_deprecation",
                _simple_action("disable_image_deprecation", "ImageId"),
            ),
            (AmisResponse, "enable_image", _simple_action("enable_image", "ImageId")),
            (AmisResponse, "disable_image", _simple_action("disable_image", "ImageId")),
            (
                AmisResponse,
                "enable_image_deregistration_protection",
                _r_enable_image_deregistration_protection,
            ),
            (
                AmisResponse,
                "disable_image_deregistration_protection",
                _r_disable_image_deregistration_protection,
            ),
            (AmisResponse, "describe_image_references", _r_describe_image_references),
            (AmisResponse, "list_images_in_recycle_bin", _r_list_images_in_recycle_bin),
            (AmisResponse, "list_snapshots_in_recycle_bin", _r_list_snapshots_in_recycle_bin),
            (AmisResponse, "restore_image_from_recycle_bin", _r_restore_image_from_recycle_bin),
            (AmisResponse, "restore_snapshot_from_recycle_bin", _r_restore_snapshot_from_recycle_bin),
            (AmisResponse, "create_image_usage_report", _r_create_image_usage_report),
            (AmisResponse, "describe_image_usage_reports", _r_describe_image_usage_reports),
            (AmisResponse, "describe_image_usage_report_entries", _r_describe_image_usage_report_entries),
            (AmisResponse, "delete_image_usage_report", _r_delete_image_usage_report),
            (EventsHandler, "test_event_pattern", _r_test_event_pattern),
            (SimpleSystemManagerBackend, "_validate_parameter_filters", _ssm_validate_parameter_filters),
            (SimpleSystemManagerBackend, "_match_filters", _ssm_match_filters),
        ]
        for cls, name, value in patches:
            setattr(cls, name, value)
        _install_sts()


# --------------------------------------------------------------------------- STS: the role must exist
#
# 19. ``AssumeRole`` of a role that does not exist in its account (``RoleArn``, path included,
#     compared with the ARNs of moto's IAM roles of that account) fails as AWS answers it: HTTP 403,
#     ``AccessDenied``, "User: <caller> is not authorized to perform: sts:AssumeRole on resource:
#     <RoleArn>" (moto issued credentials for any ARN). Trust policies are not evaluated. Exception:
#     ``OrganizationAccountAccessRole``, which AWS Organizations creates in every account it creates,
#     is taken to exist in every moto account, so that tests and the local stack can act in any
#     account to set it up (create its roles, deploy its stacks), as an organization's
#     administrator does. Credentials of an assumed role act in the role's account (moto).

ORGANIZATION_ROLE = "OrganizationAccountAccessRole"
_ROLE_ARN = re.compile(r"^arn:(aws[a-z-]*):iam::([0-9]{12}):role/(?:[^:]*/)?([\w+=,.@-]+)$")


def _role_exists(role_arn: str) -> bool:
    from moto.iam.models import iam_backends

    match = _ROLE_ARN.match(role_arn)
    if match is None:
        return True  # not a role ARN: moto's own answer stands
    partition, account, name = match.groups()
    if name == ORGANIZATION_ROLE:
        return True
    return any(role.arn == role_arn for role in iam_backends[account][partition].roles.values())


def _r_assume_role(self: Any) -> Any:
    from moto.core.exceptions import AccessDeniedError

    role_arn = str(self._get_param("RoleArn") or "")
    if not _role_exists(role_arn):
        caller = self.backend.get_caller_identity(self.get_access_key(), self.region)[1]
        raise AccessDeniedError(caller, f"sts:AssumeRole on resource: {role_arn}")
    return _ORIG["TokenResponse.assume_role"](self)


def _install_sts() -> None:
    from moto.sts.responses import TokenResponse

    _ORIG["TokenResponse.assume_role"] = TokenResponse.assume_role
    TokenResponse.assume_role = _r_assume_role  # type: ignore[method-assign]
