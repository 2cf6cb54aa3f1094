"""Settings: the template parameters as they reach a function, validated once at cold start.

`Settings.from_env(env, known_regions)` validates the variables template.yaml sets, given as a
mapping: reading the process environment is the runtime's (`runtime.load_settings`). Everything
else receives a Settings object, so tests build one directly.

The models here and in requests.py (`Model`: frozen, keyword-constructed, typed as dataclasses are)
are checked field by field with the rules and messages of the pydantic models they replaced (pydantic's
import and model building added ~30 ms, over 20% of `import boto3`, to every cold start), lax as
pydantic is: `Settings(default_keep_latest="2")` is 2; a bad value raises `invalid(...)`'s error, a ValueError
whose `errors()` lists `{"type", "loc", "msg", "input"}`. `model_validate(mapping)` also refuses
unknown and missing keys; `model_dump()` and `model_copy(update=...)` work as they did.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import FrozenInstanceError
from datetime import timedelta
from functools import cached_property
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar, dataclass_transform

from .ids import is_account_id, is_role_name
from .tags import Retention, TagError, TagKeys, is_region_name, parse_bool, parse_retention, validate_prefix


class ConfigError(ValueError):
    """The function's configuration is invalid: raised at cold start, before any AWS call."""


# ---------------------------------------------------------------- field checks (requests.py uses them too)

Loc = tuple[str | int, ...]


class Problem(NamedTuple):
    """One bad value, as pydantic reported it: where, which kind, the message, the value."""

    loc: Loc
    type: str
    msg: str
    input: Any


class InvalidFields(ValueError):
    """Bad values for a model's fields (when pydantic is not installed: see `invalid`)."""

    def __init__(self, title: str, problems: Sequence[Problem]) -> None:
        self.title = title
        self.problems = tuple(problems)
        lines = "; ".join(f"{'.'.join(str(p) for p in e.loc) or title}: {e.msg}" for e in self.problems[:5])
        more = f"; and {len(self.problems) - 5} more" if len(self.problems) > 5 else ""
        super().__init__(f"{len(self.problems)} invalid value(s) for {title}: {lines[:900]}{more}")

    def errors(self) -> list[dict[str, Any]]:
        return [e._asdict() for e in self.problems]

    def error_count(self) -> int:
        return len(self.problems)


def invalid(title: str, problems: Sequence[Problem]) -> ValueError:
    """The error for bad field values: pydantic's ValidationError when pydantic is installed (so
    that callers catching it, as they did when these were pydantic models, still do), else
    InvalidFields. Both are ValueErrors with the same `errors()`. Imported here, on the error path
    only: constructing valid models never imports pydantic."""
    try:
        from pydantic_core import PydanticCustomError, ValidationError
    except ImportError:
        return InvalidFields(title, problems)
    return ValidationError.from_exception_data(
        title, [{"type": PydanticCustomError(e.type, e.msg), "loc": e.loc, "input": e.input} for e in problems]
    )


class _Bad:
    """What a check returns for a value it refused (after recording the problem)."""


BAD: Any = _Bad()
Out = list[Problem]
# A field check: (value, where, problems so far, validation context) -> the value to keep, or BAD.
Check = Callable[[Any, Loc, Out, Mapping[str, Any]], Any]
_NO_CONTEXT: Mapping[str, Any] = {}


def refuse(out: Out, loc: Loc, kind: str, msg: str, value: Any) -> Any:
    out.append(Problem(loc, kind, msg, value))
    return BAD


def _bounds(value: int, loc: Loc, out: Out, ge: int | None, le: int | None) -> Any:
    if ge is not None and value < ge:
        return refuse(out, loc, "greater_than_equal", f"Input should be greater than or equal to {ge}", value)
    if le is not None and value > le:
        return refuse(out, loc, "less_than_equal", f"Input should be less than or equal to {le}", value)
    return value


_INT_TEXT = re.compile(r"[+-]?([0-9]+(?:_[0-9]+)*)(?:\.0+)?", re.ASCII)
_MAX_INT_DIGITS = 4300  # Python's (and pydantic's) limit for int("...")
_I64 = (-(2**63), 2**63)


def integer(ge: int | None = None, le: int | None = None) -> Check:
    """int; a bool, an integral float or a decimal string (ASCII digits, `_` between them) is converted."""

    def check(value: Any, loc: Loc, out: Out, _ctx: Mapping[str, Any]) -> Any:
        if isinstance(value, int):  # bool included: True is 1, as pydantic's lax mode has it
            return _bounds(int(value), loc, out, ge, le)
        if isinstance(value, float):
            if not math.isfinite(value):
                return refuse(out, loc, "finite_number", "Input should be a finite number", value)
            if not value.is_integer():
                msg = "Input should be a valid integer, got a number with a fractional part"
                return refuse(out, loc, "int_from_float", msg, value)
            if not _I64[0] <= value < _I64[1]:
                msg = "Unable to parse input string as an integer, exceeded maximum size"
                return refuse(out, loc, "int_parsing_size", msg, value)
            return _bounds(int(value), loc, out, ge, le)
        if isinstance(value, str | bytes | bytearray):
            text = (value if isinstance(value, str) else bytes(value).decode(errors="replace")).strip()
            match = _INT_TEXT.fullmatch(text)
            if not match:
                msg = "Input should be a valid integer, unable to parse string as an integer"
                return refuse(out, loc, "int_parsing", msg, value)
            digits = match.group(1).replace("_", "").lstrip("0") or "0"
            if len(digits) > _MAX_INT_DIGITS:
                msg = "Unable to parse input string as an integer, exceeded maximum size"
                return refuse(out, loc, "int_parsing_size", msg, value)
            number = int(digits)
            return _bounds(-number if text.startswith("-") else number, loc, out, ge, le)
        return refuse(out, loc, "int_type", "Input should be a valid integer", value)

    return check


def text(max_length: int | None = None) -> Check:
    """str (bytes are decoded as UTF-8)."""

    def check(value: Any, loc: Loc, out: Out, _ctx: Mapping[str, Any]) -> Any:
        if isinstance(value, bytes | bytearray):
            try:
                value = bytes(value).decode()
            except UnicodeDecodeError:
                msg = "Input should be a valid string, unable to parse raw data as a unicode string"
                return refuse(out, loc, "string_unicode", msg, value)
        elif not isinstance(value, str):
            return refuse(out, loc, "string_type", "Input should be a valid string", value)
        if max_length is not None and len(value) > max_length:
            msg = f"String should have at most {max_length} character{'' if max_length == 1 else 's'}"
            return refuse(out, loc, "string_too_long", msg, value)
        return str(value)

    return check


_TRUE = frozenset(("1", "on", "t", "true", "y", "yes"))
_FALSE = frozenset(("0", "off", "f", "false", "n", "no"))


def boolean(value: Any, loc: Loc, out: Out, _ctx: Mapping[str, Any]) -> Any:
    """bool; also 0 and 1, and (any case) true/false, yes/no, on/off, t/f, y/n, 1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if value in (0, 1):
            return bool(value)
        if (isinstance(value, int) or value.is_integer()) and _I64[0] <= value < _I64[1]:
            msg = "Input should be a valid boolean, unable to interpret input"
            return refuse(out, loc, "bool_parsing", msg, value)
        return refuse(out, loc, "bool_type", "Input should be a valid boolean", value)
    if isinstance(value, str | bytes | bytearray):
        word = (value if isinstance(value, str) else bytes(value).decode(errors="replace")).lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        msg = "Input should be a valid boolean, unable to interpret input"
        return refuse(out, loc, "bool_parsing", msg, value)
    return refuse(out, loc, "bool_type", "Input should be a valid boolean", value)


def strict_boolean(value: Any, loc: Loc, out: Out, _ctx: Mapping[str, Any]) -> Any:
    """True or False, nothing else."""
    if isinstance(value, bool):
        return value
    return refuse(out, loc, "bool_type", "Input should be a valid boolean", value)


def one_of(*choices: str) -> Check:
    """Exactly one of the strings `choices` (a Literal)."""
    shown = [repr(c) for c in choices]
    msg = "Input should be " + (f"{', '.join(shown[:-1])} or {shown[-1]}" if len(shown) > 1 else shown[0])

    def check(value: Any, loc: Loc, out: Out, _ctx: Mapping[str, Any]) -> Any:
        if isinstance(value, str) and value in choices:
            return str(value)
        return refuse(out, loc, "literal_error", msg, value)

    return check


def optional(inner: Check) -> Check:
    """None, or what `inner` accepts."""

    def check(value: Any, loc: Loc, out: Out, ctx: Mapping[str, Any]) -> Any:
        return None if value is None else inner(value, loc, out, ctx)

    return check


def items(inner: Check, *, min_length: int | None = None, max_length: int | None = None, kind: str = "list") -> Check:
    """A list (kind "list") or tuple (kind "tuple") of what `inner` accepts, from any list, tuple or set.
    The length is checked first; then each item, each bad one reported at its index."""
    title = kind.capitalize()

    def check(value: Any, loc: Loc, out: Out, ctx: Mapping[str, Any]) -> Any:
        if not isinstance(value, list | tuple | set | frozenset):
            return refuse(out, loc, f"{kind}_type", f"Input should be a valid {kind}", value)
        n = len(value)
        if max_length is not None and n > max_length:
            unit = "item" if max_length == 1 else "items"
            msg = f"{title} should have at most {max_length} {unit} after validation, not {n}"
            return refuse(out, loc, "too_long", msg, value)
        if min_length is not None and n < min_length:
            unit = "item" if min_length == 1 else "items"
            msg = f"{title} should have at least {min_length} {unit} after validation, not {n}"
            return refuse(out, loc, "too_short", msg, value)
        before = len(out)
        kept = [inner(item, (*loc, i), out, ctx) for i, item in enumerate(value)]
        if len(out) > before:
            return BAD
        return tuple(kept) if kind == "tuple" else kept

    return check


def text_mapping(value: Any, loc: Loc, out: Out, ctx: Mapping[str, Any]) -> Any:
    """A dict of str to str (a copy)."""
    if not isinstance(value, Mapping):
        return refuse(out, loc, "dict_type", "Input should be a valid dictionary", value)
    before = len(out)
    check = text()
    kept = {}
    for key, item in value.items():
        k = check(key, (*loc, _loc_part(key), "[key]"), out, ctx)
        v = check(item, (*loc, _loc_part(key)), out, ctx)
        kept[k] = v
    return BAD if len(out) > before else kept


def then(inner: Check, validator: Callable[[Any, Mapping[str, Any]], Any]) -> Check:
    """`inner`, then `validator(value, context)` on what it kept: the value to keep, or a ValueError
    whose message becomes the problem ("Value error, ...")."""

    def check(value: Any, loc: Loc, out: Out, ctx: Mapping[str, Any]) -> Any:
        kept = inner(value, loc, out, ctx)
        if kept is BAD:
            return BAD
        try:
            return validator(kept, ctx)
        except ValueError as e:
            return refuse(out, loc, "value_error", f"Value error, {e}", value)

    return check


def _loc_part(key: Any) -> str | int:
    if isinstance(key, str):
        return key
    if type(key) is int and -(10**18) < key < 10**18:
        return key
    return f"<{type(key).__name__}>"


class Spec:
    """How one field of a model is checked: `check` for any value (None included when the field is
    optional); `null`: model_validate refuses an explicit None with this message (in a constructor,
    None is the default: absent)."""

    __slots__ = ("check", "null")

    def __init__(self, check: Check, *, null: str | None = None) -> None:
        self.check = check
        self.null = null


M = TypeVar("M", bound="Model")


@dataclass_transform(kw_only_default=True, frozen_default=True)
class Model:
    """Frozen models with keyword construction, checked field by field by their `SPEC`, and the part of
    pydantic's BaseModel the callers use. Built by hand rather than with @dataclass: a dataclass costs
    about a millisecond at import, this almost nothing. A field is an annotation with its entry in
    `SPEC` and, unless required, its default (copied by its check: a list or dict default is safe)."""

    SPEC: ClassVar[dict[str, Spec]]
    _DEFAULTS: ClassVar[dict[str, Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        annotated = [n for n, a in cls.__annotations__.items() if not str(a).startswith("ClassVar")]
        if annotated != list(cls.SPEC):
            raise TypeError(f"{cls.__name__}: the fields {annotated} and the SPEC {list(cls.SPEC)} differ")
        cls._DEFAULTS = {name: cls.__dict__[name] for name in cls.SPEC if name in cls.__dict__}

    def __init__(self, **values: Any) -> None:
        """Check (and normalise) every field, as pydantic did for a constructor's keywords."""
        cls = type(self)
        unknown = [k for k in values if k not in cls.SPEC]
        if unknown:
            raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {unknown[0]!r}")
        missing = [k for k in cls.SPEC if k not in values and k not in cls._DEFAULTS]
        if missing:
            raise TypeError(f"{cls.__name__}() missing required keyword argument(s): {', '.join(missing)}")
        out: Out = []
        for name, spec in cls.SPEC.items():
            kept = spec.check(values[name] if name in values else cls._DEFAULTS[name], (name,), out, _NO_CONTEXT)
            if kept is not BAD:
                object.__setattr__(self, name, kept)
        if out:
            raise invalid(cls.__name__, out)

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.SPEC)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self.SPEC)})"

    @classmethod
    def check_mapping(
        cls: type[M], data: Any, out: Out, context: Mapping[str, Any] | None = None, loc: Loc = ()
    ) -> M | Any:
        """The model from a mapping, or BAD with the problems added to `out` (in pydantic's order:
        the fields in declaration order, then keys that are not fields)."""
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            msg = f"Input should be a valid dictionary or instance of {cls.__name__}"
            return refuse(out, loc, "model_type", msg, data)
        ctx = context if context is not None else _NO_CONTEXT
        before = len(out)
        values: dict[str, Any] = {}
        for name, spec in cls.SPEC.items():
            if name not in data:
                if name not in cls._DEFAULTS:
                    refuse(out, (*loc, name), "missing", "Field required", data)
                continue
            value = data[name]
            if value is None and spec.null is not None:
                refuse(out, (*loc, name), "value_error", f"Value error, {spec.null}", value)
                continue
            kept = spec.check(value, (*loc, name), out, ctx)
            if kept is not BAD:
                values[name] = kept
        for key in data:
            if not isinstance(key, str):
                refuse(out, (*loc, _loc_part(key)), "invalid_key", "Keys should be strings", key)
            elif key not in cls.SPEC:
                refuse(out, (*loc, key), "extra_forbidden", "Extra inputs are not permitted", data[key])
        if len(out) > before:
            return BAD
        return cls(**values)

    @classmethod
    def model_validate(cls: type[M], obj: Any, *, context: Mapping[str, Any] | None = None) -> M:
        """The model from a mapping of its fields. Raises `invalid(...)`'s error for unknown or missing
        keys and bad values."""
        out: Out = []
        model = cls.check_mapping(obj, out, context)
        if out or model is BAD:
            raise invalid(cls.__name__, out)
        return model

    def model_dump(self) -> dict[str, Any]:
        """The fields as a dict (nested models as dicts, lists and dicts copied)."""
        return {name: _dump(getattr(self, name)) for name in self.SPEC}

    def model_copy(self: M, *, update: Mapping[str, Any] | None = None) -> M:
        """A copy with the fields in `update` replaced (and checked)."""
        return type(self)(**{**{name: getattr(self, name) for name in self.SPEC}, **dict(update or {})})


def _dump(value: Any) -> Any:
    if isinstance(value, Model):
        return value.model_dump()
    if isinstance(value, list | tuple):
        return type(value)(_dump(v) for v in value)
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------- Settings


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _prefix(v: str, _ctx: Mapping[str, Any]) -> str:
    try:
        return validate_prefix(v)
    except TagError as e:
        raise ValueError(str(e)) from None


def _retention(v: str, _ctx: Mapping[str, Any]) -> str:
    try:
        parse_retention(v)
    except TagError as e:
        raise ValueError(str(e)) from None
    return v


def _window(parameter: str) -> Callable[[str, Mapping[str, Any]], str]:
    """A duration parameter in hours, days or weeks (`0d` included)."""

    def check(v: str, _ctx: Mapping[str, Any]) -> str:
        try:
            retention = parse_retention(v)
        except TagError as e:
            raise ValueError(f"{parameter}: {e}") from None
        if retention.forever or retention.years or retention.months:
            raise ValueError(f"{parameter}: {v!r} is not <n>h, <n>d or <n>w")
        return v

    return check


_launched_within = _window("KeepIfLaunchedWithin")


def _home(v: str, _ctx: Mapping[str, Any]) -> str:
    if not is_region_name(v):
        raise ValueError(f"{v!r} is not an AWS region")
    return v


def _regions(v: tuple[str, ...], _ctx: Mapping[str, Any]) -> tuple[str, ...]:
    bad = [r for r in v if not is_region_name(r)]
    if bad:
        raise ValueError(f"not AWS regions: {', '.join(bad)}")
    return tuple(dict.fromkeys(v))


def _kms(v: dict[str, str], _ctx: Mapping[str, Any]) -> dict[str, str]:
    for region, key in v.items():
        if not is_region_name(region):
            raise ValueError(f"ReplicaKmsKeys: {region!r} is not an AWS region")
        if not key.startswith(("arn:aws", "alias/")) and len(key) < 8:
            raise ValueError(f"ReplicaKmsKeys: {key!r} is not a KMS key ARN, id or alias")
    return v


_REGION_TUPLE = then(items(text(), kind="tuple"), _regions)

# ManagedAccounts = "organization": every ACTIVE account of the AWS Organization, listed per run.
ORGANIZATION = "organization"


def _accounts(v: tuple[str, ...], _ctx: Mapping[str, Any]) -> tuple[str, ...]:
    bad = [a for a in v if not is_account_id(a)]
    if bad:
        raise ValueError(f"not 12-digit account ids: {', '.join(b[:20] for b in bad[:5])}")
    return tuple(dict.fromkeys(v))


def _role_name(v: str, _ctx: Mapping[str, Any]) -> str:
    if not is_role_name(v):
        raise ValueError(f"{v[:70]!r} is not an IAM role name")
    return v


class Settings(Model):
    home_region: str  # the stack's region (AWS_REGION)
    tag_prefix: str = "ami-lifecycle"
    default_retention: str = "90d"
    default_keep_latest: int = 1  # 0..1000
    replica_regions: tuple[str, ...] = ()
    replica_kms_keys: dict[str, str] = {}  # copied by its check
    sweep_regions_param: tuple[str, ...] = ()
    dry_run: bool = False
    manage_new_images: bool = True
    copy_queue_url: str | None = None
    # Per destination region: how many copies this tool keeps in flight at once (AWS allows 50-100
    # concurrent copies per destination region; we stay under, and back off on ResourceLimitExceeded).
    max_copies_in_flight: int = 20  # 1..100
    # KeepIfLaunchedWithin: an image anyone launched within this window is kept ("0d" disables).
    keep_if_launched_within: str = "7d"
    # SharedImageCheck: "strict" (every consumer of a shared image is checked), "managed-accounts"
    # (consumers outside the managed accounts are not checked) or "off" (unsafe: shared = unshared).
    shared_image_check: Literal["strict", "managed-accounts", "off"] = "strict"
    # MaxRetirementsPerRun: a run that would retire more images than this (all regions together)
    # retires none and reports blast-radius; 0 = no limit.
    max_retirements_per_run: int = 100  # 0..1_000_000
    # ManagedAccounts (PRODUCT.md section 7): the accounts managed besides the hub's own, or, with
    # `organization`, every ACTIVE account of the organization (listed by Organizations per run).
    managed_accounts_param: tuple[str, ...] = ()
    organization: bool = False
    # SpokeRoleName: the role the functions assume in every managed account but the hub's.
    spoke_role_name: str = "ami-lifecycle-spoke"
    # DisableBeforeDeregister: a retirable image is disabled first and deregistered only when it is
    # still retirable after this grace period ("0d": deregistered at once).
    disable_before_deregister: str = "0d"
    # The SNS topic the digest of each sweep goes to (None: no digest).
    digest_topic_arn: str | None = None

    SPEC: ClassVar[dict[str, Spec]] = {
        "home_region": Spec(then(text(), _home)),
        "tag_prefix": Spec(then(text(), _prefix)),
        "default_retention": Spec(then(text(), _retention)),
        "default_keep_latest": Spec(integer(ge=0, le=1000)),
        "replica_regions": Spec(_REGION_TUPLE),
        "replica_kms_keys": Spec(then(text_mapping, _kms)),
        "sweep_regions_param": Spec(_REGION_TUPLE),
        "dry_run": Spec(boolean),
        "manage_new_images": Spec(boolean),
        "copy_queue_url": Spec(optional(text())),
        "max_copies_in_flight": Spec(integer(ge=1, le=100)),
        "keep_if_launched_within": Spec(then(text(), _launched_within)),
        "shared_image_check": Spec(one_of("strict", "managed-accounts", "off")),
        "max_retirements_per_run": Spec(integer(ge=0, le=1_000_000)),
        "managed_accounts_param": Spec(then(items(text(), kind="tuple"), _accounts)),
        "organization": Spec(boolean),
        "spoke_role_name": Spec(then(text(), _role_name)),
        "disable_before_deregister": Spec(then(text(), _window("DisableBeforeDeregister"))),
        "digest_topic_arn": Spec(optional(text())),
    }

    @cached_property
    def launched_within(self) -> timedelta:
        """KeepIfLaunchedWithin as a duration (zero: the check is off)."""
        retention = parse_retention(self.keep_if_launched_within)
        return timedelta(days=retention.days, seconds=retention.seconds)

    @cached_property
    def disable_grace(self) -> timedelta:
        """DisableBeforeDeregister as a duration (zero: images are deregistered at once)."""
        retention = parse_retention(self.disable_before_deregister)
        return timedelta(days=retention.days, seconds=retention.seconds)

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
        # Set (non-empty) variables only: an absent one leaves the field's default.
        for name, key in _OPTIONAL_VARIABLES:
            if get(name):
                data[key] = get(name)
        managed = _split(get("MANAGED_ACCOUNTS"))
        if [m.lower() for m in managed] == [ORGANIZATION]:
            data["organization"] = True
        elif managed:
            data["managed_accounts_param"] = managed
        out: Out = []
        settings = cls.check_mapping(data, out)
        if out or settings is BAD:
            # Each problem is clipped: a validator's message may quote a (huge) variable's value.
            problems = "; ".join(f"{'.'.join(str(p) for p in e.loc)}: {e.msg[:200]}" for e in out)
            raise ConfigError(f"invalid configuration: {problems}")
        for name, regions in (
            ("REPLICA_REGIONS", settings.replica_regions),
            ("SWEEP_REGIONS", settings.sweep_regions_param),
            ("REPLICA_KMS_KEYS", tuple(settings.replica_kms_keys)),
        ):
            unknown = [r for r in regions if r not in known_regions]
            if unknown:
                raise ConfigError(f"{name}: not AWS regions: {', '.join(unknown)}")
        return settings


# Variables read as they are when set (their checks are the fields'), else the field's default.
_OPTIONAL_VARIABLES = (
    ("KEEP_IF_LAUNCHED_WITHIN", "keep_if_launched_within"),
    ("SHARED_IMAGE_CHECK", "shared_image_check"),
    ("MAX_RETIREMENTS_PER_RUN", "max_retirements_per_run"),
    ("SPOKE_ROLE_NAME", "spoke_role_name"),
    ("DIGEST_TOPIC_ARN", "digest_topic_arn"),
    ("DISABLE_BEFORE_DEREGISTER", "disable_before_deregister"),
    ("MAX_COPIES_IN_FLIGHT", "max_copies_in_flight"),
)


def _bool(value: str, name: str) -> bool:
    try:
        parsed = parse_bool(value)
    except TagError:
        raise ConfigError(f"{name}: {value[:40]!r} is not true or false") from None
    return bool(parsed)
