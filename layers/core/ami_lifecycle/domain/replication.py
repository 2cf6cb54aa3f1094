"""Replication, request side: which regions an adopted image is copied to, and the copy requests
put on the queue that ReplicatorFunction consumes.

Pure: `plan_copies` (which regions lack a copy), the `P:copies` record (`parse_copies`,
`merge_copies`), and the copy requests themselves; aws/sqs.py sends them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from .ids import is_account_id, is_image_id
from .model import Image
from .settings import Settings
from .tags import MAX_TAG_KEY, MAX_TAG_VALUE, TagError, TagKeys, is_region_name, parse_regions


@dataclass(frozen=True)
class CopyRequest:
    """One copy of one image into one region. The JSON body of a queue message."""

    source_image_id: str
    source_region: str
    target_region: str
    name: str
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    encrypted: bool = False
    kms_key_id: str | None = None
    # The account of the source image, where the copy is made too (copies never leave their
    # account): "" is the hub's own (requests queued before hub & spokes carry none).
    account: str = ""

    @property
    def client_token(self) -> str:
        """Deterministic: the same request always gives the same token, so EC2 makes at most one copy
        however often the request is delivered (ClientToken is at most 64 ASCII chars).

        The encryption settings are part of the token: EC2 refuses a token reused with other
        parameters (IdempotentParameterMismatch), so a request made after ReplicaKmsKeys changed
        (e.g. once a failed copy has been deregistered) gets a fresh token instead of failing."""
        seed = f"{self.source_region}/{self.source_image_id}->{self.target_region}"
        if self.kms_key_id:
            seed += f"|kms={self.kms_key_id}"
        elif self.encrypted:
            seed += "|encrypted"
        digest = hashlib.sha256(seed.encode())
        return f"ami-lifecycle-{digest.hexdigest()[:50]}"

    def to_json(self) -> str:
        data = asdict(self)
        if not self.account:
            del data["account"]  # the hub's: the body is the one it always was
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, body: str) -> CopyRequest:
        """Parse and validate a queue message body. Raises ValueError (with a short, precise
        message) for anything that is not a well-formed copy request, and never anything else."""
        if not isinstance(body, str | bytes | bytearray):
            raise ValueError(f"copy request body is {'absent' if body is None else type(body).__name__}, not JSON text")
        try:
            data = json.loads(body)  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        except RecursionError:
            raise ValueError("copy request is not a JSON object (nested too deeply)") from None
        if not isinstance(data, dict):
            raise ValueError("copy request is not a JSON object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"copy request has unknown keys: {', '.join(sorted(unknown))}")
        missing = {"source_image_id", "source_region", "target_region", "name"} - set(data)
        if missing:
            raise ValueError(f"copy request lacks keys: {', '.join(sorted(missing))}")
        for key in ("source_image_id", "source_region", "target_region", "name", "description", "account"):
            if key in data and not isinstance(data[key], str):
                raise ValueError(f"copy request: {key} is not a string")
        if not is_image_id(data["source_image_id"]):
            raise ValueError(f"copy request: source_image_id {data['source_image_id'][:40]!r} is not an AMI id")
        for key in ("source_region", "target_region"):
            if not is_region_name(data[key]):
                raise ValueError(f"copy request: {key} {data[key][:40]!r} is not an AWS region")
        account = data.get("account", "")
        if account and not is_account_id(account):
            raise ValueError(f"copy request: account {account[:40]!r} is not a 12-digit AWS account id")
        if not data["name"].strip():
            raise ValueError("copy request: name is empty")
        tags = data.get("tags", {})
        if not isinstance(tags, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= MAX_TAG_KEY and len(v) <= MAX_TAG_VALUE
            for k, v in tags.items()
        ):
            raise ValueError("copy request: tags is not an object of tag keys to tag values")
        if not isinstance(data.get("encrypted", False), bool):
            raise ValueError("copy request: encrypted is not true or false")
        kms = data.get("kms_key_id")
        if kms is not None and (not isinstance(kms, str) or not kms.strip()):
            raise ValueError("copy request: kms_key_id is not a KMS key id, ARN or alias")
        if kms and not data.get("encrypted", False):
            raise ValueError("copy request: kms_key_id is set but encrypted is false")
        # JSON may escape lone surrogates (`"\ud800"`): such a string cannot be sent to EC2 (nor hashed
        # into the client token), so the request could never succeed.
        texts = [v for v in data.values() if isinstance(v, str)] + [s for kv in tags.items() for s in kv]
        if not all(_is_unicode(t) for t in texts):
            raise ValueError("copy request: a text value is not valid Unicode (lone surrogate)")
        return cls(**data)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class CopyPlan:
    requests: tuple[CopyRequest, ...] = ()
    skipped: tuple[str, ...] = ()  # why a region gets no copy, one line each
    error: str | None = None


def is_copy(image: Image, keys: TagKeys) -> bool:
    """A copy this tool made. Copies are never replicated again."""
    return keys.source_image in image.tags


def recorded_copies(image: Image, keys: TagKeys) -> dict[str, str]:
    """The source's record of its copies: `P:copies` = `us-west-2=ami-0abc,eu-west-1=failed`."""
    return parse_copies(image.tags.get(keys.copies, ""))


def parse_copies(value: str) -> dict[str, str]:
    """`us-west-2=ami-0abc,eu-west-1=failed` -> {region: copy id or state}, in written order.
    Entries that are not `region=value` are ignored."""
    record: dict[str, str] = {}
    for part in value.split(","):
        region, sep, state = part.strip().partition("=")
        region, state = region.strip(), state.strip()
        if sep and region and state:
            record[region] = state
    return record


def render_copies(
    record: Mapping[str, str], keep: Iterable[str] = (), limit: int = MAX_TAG_VALUE
) -> tuple[str, list[str]]:
    """The `P:copies` value for `record`, at most `limit` characters (an EC2 tag value holds 256).

    When the record does not fit, the oldest entries (the first written) go first, never those
    in `keep` (the ones being recorded now). Returns the value and the regions left out. Leaving
    an entry out is safe: the existence check in the target region, not this record, is what
    prevents a second copy."""
    keep_set = set(keep)
    entries = [(region, state) for region, state in record.items() if region and state]
    dropped: list[str] = []

    def text() -> str:
        return ",".join(f"{region}={state}" for region, state in entries)

    while len(text()) > limit:
        victim = next((i for i, (region, _) in enumerate(entries) if region not in keep_set), 0)
        dropped.append(entries.pop(victim)[0])
    return text(), dropped


def merge_copies(value: str, updates: Mapping[str, str], limit: int = MAX_TAG_VALUE) -> tuple[str, list[str]]:
    """Merge `updates` into an existing `P:copies` value (a changed region moves to the end, as the
    newest entry; an unchanged one stays put). Returns the new value and the regions left out to
    fit `limit`."""
    record = parse_copies(value)
    for region, state in updates.items():
        if record.get(region) != state:
            record.pop(region, None)
            record[region] = state
    return render_copies(record, keep=updates, limit=limit)


def target_regions(image: Image, settings: Settings, known_regions: frozenset[str] | None = None) -> list[str]:
    """`P:replicate-to`, else ReplicaRegions. Raises TagError for an unusable tag."""
    value = image.tags.get(settings.keys.replicate_to)
    if value is not None:
        return parse_regions(value, known_regions)
    return list(settings.replica_regions)


def plan_copies(
    image: Image,
    settings: Settings,
    lifecycle_tags: dict[str, str],
    known_regions: frozenset[str] | None = None,
    *,
    account: str = "",
) -> CopyPlan:
    """The copies `image` lacks, as requests made in its own `account` ("" = the hub's): a copy
    never leaves the account of its source."""
    keys = settings.keys
    if is_copy(image, keys):
        return CopyPlan(skipped=("the image is a copy made by ami-lifecycle: copies are not replicated",))
    try:
        regions = target_regions(image, settings, known_regions)
    except TagError as e:
        return CopyPlan(error=f"replicate-to: {e}")
    done = recorded_copies(image, keys)
    requests, skipped = [], []
    for region in regions:
        if region == image.region:
            skipped.append(f"{region}: the image's own region")
            continue
        if done.get(region, "").startswith("ami-"):
            skipped.append(f"{region}: copy {done[region]} exists")
            continue
        # P:hold is the user's alone: the tool never writes it (IAM denies it), not even onto a copy.
        skipped_keys = (keys.error, keys.copies, keys.replicate_to, keys.hold)
        copy_tags = {k: v for k, v in lifecycle_tags.items() if k not in skipped_keys}
        copy_tags[keys.managed] = "true"
        copy_tags[keys.source_image] = image.image_id
        copy_tags[keys.source_region] = image.region
        kms = settings.replica_kms_keys.get(region)
        requests.append(
            CopyRequest(
                source_image_id=image.image_id,
                source_region=image.region,
                target_region=region,
                name=image.name or image.image_id,
                description=image.description[:255],
                tags=copy_tags,
                # An encrypted source can only be copied encrypted; a key for the region encrypts any copy.
                encrypted=image.encrypted or kms is not None,
                kms_key_id=kms,
                account=account,
            )
        )
    return CopyPlan(requests=tuple(requests), skipped=tuple(skipped))
