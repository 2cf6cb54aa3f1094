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
3. ``DisableImage`` / ``EnableImage``: state ``disabled`` (disabling also makes the image private, as
   EC2 does); ``DescribeImages`` leaves disabled images out, even when asked for by id, unless
   ``IncludeDisabled=True``.
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
   "all states"; terminated instances vanish from EC2 soon anyway). ``imagebuilder:*`` types are
   accepted and never match. Image ids are only checked for the ``ami-`` prefix, so references to
   deregistered images are still found. Either
   ``IncludeAllResourceTypes`` or ``ResourceTypes`` is required (``MissingParameter``). More than 10
   ``ImageIds`` is ``InvalidParameterValue`` (assumption: the botocore model caps the list at 10 and
   botocore does not check maxima client-side). ``MaxResults`` (5..1000) / ``NextToken`` paginate.
9. ``DescribeSnapshots`` shows ``Encrypted`` / ``KmsKeyId`` (the key ARN) for encrypted copies.
10. EventBridge ``TestEventPattern`` answers ``{"Result": true|false}`` with moto's own pattern matcher
    (the one its ``PutEvents`` uses for rules); moto 5.2 answered an empty body. The local runner
    (``stack.py``) routes events with it, so patterns are evaluated as read from template.yaml.
11. ``ListImagesInRecycleBin(ImageIds)``: at most 20 ids (``InvalidParameterValue`` beyond); moto has
    no Recycle Bin (rbin is not implemented), so no retention rule exists and, as in an account
    without rules, the bin is empty: ``{"Images": []}``.

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
"""

from __future__ import annotations

import base64
import json
import random
import threading
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.core.common_types import TYPE_RESPONSE
from moto.core.responses import ActionResult, BaseResponse
from moto.ec2.exceptions import (
    EC2ClientError,
    InvalidAMIIdError,
    InvalidParameterDependency,
    InvalidSnapshotInUse,
    InvalidTaggableResourceType,
    MalformedAMIIdError,
)
from moto.ec2.models.amis import Ami, AmiBackend
from moto.ec2.models.elastic_block_store import EBSBackend
from moto.ec2.responses.amis import AmisResponse
from moto.events.models import EventPattern
from moto.events.responses import EventsHandler
from moto.utilities.utils import get_partition

__all__ = [
    "CALLS",
    "calls",
    "calls_by_region",
    "clear_faults",
    "inject_error",
    "install",
    "reset_calls",
    "set_faults",
]

COOLDOWN = timedelta(hours=24)
MAX_REFERENCE_IMAGE_IDS = 10
_ISO_MS = "%Y-%m-%dT%H:%M:%S.000Z"
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
    if ami is None or not delete_associated_snapshots:
        return None
    results = []
    snapshots: dict[str, Any] = self.snapshots  # type: ignore[attr-defined]
    for snapshot_id in _snapshot_ids(ami):
        in_use = any(snapshot_id in _snapshot_ids(other) for other in self.amis.values())
        if not in_use:
            snapshots.pop(snapshot_id, None)
        results.append({"SnapshotId": snapshot_id, "ReturnCode": "skipped" if in_use else "success"})
    return results


def _delete_snapshot(self: EBSBackend, snapshot_id: str) -> Any:
    for ami in self.amis.values():  # type: ignore[attr-defined]
        if snapshot_id in _snapshot_ids(ami):
            raise InvalidSnapshotInUse(snapshot_id, ami.id)
    return _ORIG["EBSBackend.delete_snapshot"](self, snapshot_id)


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


def _disable_image(self: AmiBackend, ami_id: str) -> None:
    ami = _get_ami(self, ami_id)
    ami.state = "disabled"
    ami.launch_permissions.clear()  # a disabled AMI is made private


def _enable_image(self: AmiBackend, ami_id: str) -> None:
    ami = _get_ami(self, ami_id)
    if ami.state == "disabled":
        ami.state = "available"


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
        options = {"ec2:Instance": {}, "ec2:LaunchTemplate": {}, "ssm:Parameter": {}}
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


def _paginate(items: list[Any], max_results: int | None, token: str | None) -> tuple[list[Any], str | None]:
    if max_results is not None and not 5 <= max_results <= 1000:
        raise _error(
            "InvalidParameterValue",
            f"Value ( {max_results} ) for parameter maxResults is invalid. Expecting a value between 5 and 1000.",
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
    return ActionResult({"Images": page, "NextToken": next_token})


def _r_describe_image_attribute(self: AmisResponse) -> ActionResult:
    if self._get_param("Attribute") != "deregistrationProtection":
        return _ORIG["AmisResponse.describe_image_attribute"](self)
    ami = _get_ami(self.ec2_backend, self._get_param("ImageId"))
    return ActionResult({"ImageId": ami.id, "DeregistrationProtection": {"Value": _deregistration_protection(ami)}})


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


def _r_list_images_in_recycle_bin(self: AmisResponse) -> ActionResult:
    ids = self._get_param("ImageIds", [])
    if len(ids) > 20:
        raise _error("InvalidParameterValue", "ImageIds: at most 20 image ids may be given")
    return ActionResult({"Images": []})


def _r_test_event_pattern(self: EventsHandler) -> str:
    pattern = EventPattern.load(self._get_param("EventPattern"))
    event = json.loads(self._get_param("Event"))
    return json.dumps({"Result": bool(pattern.matches_event(event))})


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
        for name in ("describe_image_attribute", "register_image"):
            _ORIG[f"AmisResponse.{name}"] = getattr(AmisResponse, name)

        patches: list[tuple[type, str, Any]] = [
            (BaseResponse, "call_action", _call_action),
            # model
            (Ami, "source_image_id", None),
            (Ami, "source_image_region", None),
            (Ami, "state_reason", None),
            (Ami, "deprecation_time", property(_deprecation_time)),
            (Ami, "deregistration_protection", property(_deregistration_protection)),
            (Ami, "block_device_mappings", property(_block_device_mappings)),
            (Ami, "get_filter_value", _ami_get_filter_value),
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
            (EBSBackend, "delete_snapshot", _delete_snapshot),
            # responses (the EC2 dispatcher finds actions among EC2Response's functions)
            (AmisResponse, "describe_images", _r_describe_images),
            (AmisResponse, "describe_image_attribute", _r_describe_image_attribute),
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
            (EventsHandler, "test_event_pattern", _r_test_event_pattern),
        ]
        for cls, name, value in patches:
            setattr(cls, name, value)
