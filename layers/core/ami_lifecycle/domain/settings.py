"""Settings: the template parameters as they reach a function, validated once at cold start.

`Settings.from_env(env, known_regions)` validates the variables template.yaml sets, given as a
mapping: reading the process environment is the runtime's (`runtime.load_settings`). Everything
else receives a Settings object, so tests build one directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .tags import Retention, TagError, TagKeys, is_region_name, parse_bool, parse_retention, validate_prefix


class ConfigError(ValueError):
    """The function's configuration is invalid: raised at cold start, before any AWS call."""


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    home_region: str = Field(description="the stack's region (AWS_REGION)")
    tag_prefix: str = "ami-lifecycle"
    default_retention: str = "90d"
    default_keep_latest: int = Field(default=1, ge=0, le=1000)
    replica_regions: tuple[str, ...] = ()
    replica_kms_keys: dict[str, str] = Field(default_factory=dict)
    sweep_regions_param: tuple[str, ...] = ()
    dry_run: bool = False
    manage_new_images: bool = True
    copy_queue_url: str | None = None
    # Per destination region: how many copies this tool keeps in flight at once (AWS allows 50-100
    # concurrent copies per destination region; we stay under, and back off on ResourceLimitExceeded).
    max_copies_in_flight: int = Field(default=20, ge=1, le=100)
    # KeepIfLaunchedWithin: an image anyone launched within this window is kept ("0d" disables).
    keep_if_launched_within: str = "7d"
    # SharedImageCheck: "strict" (every consumer of a shared image is checked), "managed-accounts"
    # (consumers outside the managed accounts are not checked) or "off" (unsafe: shared = unshared).
    shared_image_check: Literal["strict", "managed-accounts", "off"] = "strict"
    # MaxRetirementsPerRun: a run that would retire more images than this (all regions together)
    # retires none and reports blast-radius; 0 = no limit.
    max_retirements_per_run: int = Field(default=100, ge=0, le=1_000_000)

    @field_validator("tag_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        try:
            return validate_prefix(v)
        except TagError as e:
            raise ValueError(str(e)) from None

    @field_validator("default_retention")
    @classmethod
    def _retention(cls, v: str) -> str:
        try:
            parse_retention(v)
        except TagError as e:
            raise ValueError(str(e)) from None
        return v

    @field_validator("keep_if_launched_within")
    @classmethod
    def _launched_within(cls, v: str) -> str:
        try:
            retention = parse_retention(v)
        except TagError as e:
            raise ValueError(f"KeepIfLaunchedWithin: {e}") from None
        if retention.forever or retention.years or retention.months:
            raise ValueError(f"KeepIfLaunchedWithin: {v!r} is not <n>h, <n>d or <n>w")
        return v

    @cached_property
    def launched_within(self) -> timedelta:
        """KeepIfLaunchedWithin as a duration (zero: the check is off)."""
        retention = parse_retention(self.keep_if_launched_within)
        return timedelta(days=retention.days, seconds=retention.seconds)

    @field_validator("home_region")
    @classmethod
    def _home(cls, v: str) -> str:
        if not is_region_name(v):
            raise ValueError(f"{v!r} is not an AWS region")
        return v

    @field_validator("replica_regions", "sweep_regions_param")
    @classmethod
    def _regions(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [r for r in v if not is_region_name(r)]
        if bad:
            raise ValueError(f"not AWS regions: {', '.join(bad)}")
        return tuple(dict.fromkeys(v))

    @field_validator("replica_kms_keys")
    @classmethod
    def _kms(cls, v: dict[str, str]) -> dict[str, str]:
        for region, key in v.items():
            if not is_region_name(region):
                raise ValueError(f"ReplicaKmsKeys: {region!r} is not an AWS region")
            if not key.startswith(("arn:aws", "alias/")) and len(key) < 8:
                raise ValueError(f"ReplicaKmsKeys: {key!r} is not a KMS key ARN, id or alias")
        return v

    @cached_property
    def keys(self) -> TagKeys:
        return TagKeys(self.tag_prefix)

    @cached_property
    def retention(self) -> Retention:
        return parse_retention(self.default_retention)

    @property
    def sweep_regions(self) -> tuple[str, ...]:
        """SweepRegions, or else the stack's region plus ReplicaRegions."""
        if self.sweep_regions_param:
            return self.sweep_regions_param
        return tuple(dict.fromkeys((self.home_region, *self.replica_regions)))

    @classmethod
    def from_env(cls, env: Mapping[str, str], known_regions: frozenset[str]) -> Settings:
        """Validate the variables template.yaml sets; region names must be among `known_regions`.
        Raises ConfigError naming the bad variable."""

        def get(name: str, default: str = "") -> str:
            value = env.get(name, default)
            if not isinstance(value, str):  # os.environ holds strings; a mapping passed in may not
                raise ConfigError(f"{name}: {type(value).__name__} is not a string")
            return value.strip()

        try:
            kms: dict[str, str] = {}
            for pair in _split(get("REPLICA_KMS_KEYS")):
                region, sep, key = pair.partition("=")
                if not sep or not key.strip():
                    raise ConfigError(f"REPLICA_KMS_KEYS: {pair[:80]!r} is not region=kms-key-arn")
                kms[region.strip()] = key.strip()
            data: dict[str, object] = {
                "home_region": get("AWS_REGION") or get("AWS_DEFAULT_REGION") or "us-east-1",
                "tag_prefix": get("TAG_PREFIX", "ami-lifecycle"),
                "default_retention": get("DEFAULT_RETENTION", "90d"),
                "default_keep_latest": get("DEFAULT_KEEP_LATEST", "1"),
                "replica_regions": _split(get("REPLICA_REGIONS")),
                "replica_kms_keys": kms,
                "sweep_regions_param": _split(get("SWEEP_REGIONS")),
                "dry_run": _bool(get("DRY_RUN", "false"), "DRY_RUN"),
                "manage_new_images": _bool(get("MANAGE_NEW_IMAGES", "true"), "MANAGE_NEW_IMAGES"),
                "copy_queue_url": get("COPY_QUEUE_URL") or None,
            }
            if get("KEEP_IF_LAUNCHED_WITHIN"):
                data["keep_if_launched_within"] = get("KEEP_IF_LAUNCHED_WITHIN")
            if get("SHARED_IMAGE_CHECK"):
                data["shared_image_check"] = get("SHARED_IMAGE_CHECK")
            if get("MAX_RETIREMENTS_PER_RUN"):
                data["max_retirements_per_run"] = get("MAX_RETIREMENTS_PER_RUN")
            if get("MAX_COPIES_IN_FLIGHT"):
                data["max_copies_in_flight"] = get("MAX_COPIES_IN_FLIGHT")
            settings = cls.model_validate(data)
        except ValidationError as e:
            # Each problem is clipped: a validator's message may quote a (huge) variable's value.
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {str(err['msg'])[:200]}" for err in e.errors()
            )
            raise ConfigError(f"invalid configuration: {problems}") from None
        known = known_regions
        for name, regions in (
            ("REPLICA_REGIONS", settings.replica_regions),
            ("SWEEP_REGIONS", settings.sweep_regions_param),
            ("REPLICA_KMS_KEYS", tuple(settings.replica_kms_keys)),
        ):
            unknown = [r for r in regions if r not in known]
            if unknown:
                raise ConfigError(f"{name}: not AWS regions: {', '.join(unknown)}")
        return settings


def _bool(value: str, name: str) -> bool:
    try:
        parsed = parse_bool(value)
    except TagError:
        raise ConfigError(f"{name}: {value[:40]!r} is not true or false") from None
    return bool(parsed)
