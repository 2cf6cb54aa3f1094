"""The settings and payload models are stdlib dataclasses and there is no X-Ray SDK: a cold start
imports neither pydantic nor aws_xray_sdk. The models keep what the pydantic ones did (lax
conversion, pydantic's messages, model_validate / model_dump / model_copy); tracing is Lambda's
own (`Tracing: Active`): no Powertools Tracer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ami_lifecycle.aws.regions import known_regions
from ami_lifecycle.domain import requests
from ami_lifecycle.domain.settings import InvalidFields, Settings, invalid

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "core"
EAST, WEST = "us-east-1", "us-west-2"
AMI = "ami-0123456789abcdef0"
STACK = Settings(home_region=EAST, sweep_regions_param=(EAST, WEST))


def imported_after(code: str) -> set[str]:
    """Top-level packages a fresh interpreter has imported after `code`, as in Lambda (tracing on)."""
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(LAYER),
        "AWS_REGION": EAST,
        "AWS_LAMBDA_FUNCTION_NAME": "ami-lifecycle-test",
        "LAMBDA_TASK_ROOT": str(ROOT),
        "POWERTOOLS_SERVICE_NAME": "ami-lifecycle",
    }
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_a_cold_start_of_the_shared_modules_imports_neither_pydantic_nor_the_xray_sdk() -> None:
    code = "import ami_lifecycle.runtime, ami_lifecycle.runtime.observability, ami_lifecycle.domain.requests\n"
    loaded = imported_after(code)
    assert "aws_lambda_powertools" in loaded  # the probe did import what it should
    assert not loaded & {"pydantic", "pydantic_core", "aws_xray_sdk", "wrapt"}


def test_valid_settings_and_payloads_never_import_pydantic() -> None:
    code = (
        "from ami_lifecycle.domain.settings import Settings\n"
        "from ami_lifecycle.domain.requests import parse_backfill_request, parse_sweep_request, BadRequest\n"
        "s = Settings.from_env({'AWS_REGION': 'us-east-1', 'DEFAULT_KEEP_LATEST': '2'}, frozenset({'us-east-1'}))\n"
        "parse_sweep_request({'dry_run': True}, s, frozenset({'us-east-1'}))\n"
        "parse_backfill_request({'actions': ['tag'], 'continuation': {'region_index': 0}}, s, frozenset())\n"
        "try:\n    parse_backfill_request({'dry_run': None}, s, frozenset())\nexcept BadRequest:\n    pass"
    )
    assert not imported_after(code) & {"pydantic", "pydantic_core"}


# ------------------------------------------------------------------ Settings


def test_settings_convert_as_pydantic_did() -> None:
    s = Settings(home_region=EAST, default_keep_latest="2", replica_regions=[WEST, WEST], dry_run="yes")  # type: ignore[arg-type]
    assert s.default_keep_latest == 2 and s.replica_regions == (WEST,) and s.dry_run is True
    assert Settings.model_validate({"home_region": EAST, "max_copies_in_flight": " 7 "}).max_copies_in_flight == 7


@pytest.mark.parametrize(
    ("values", "loc", "msg"),
    [
        ({"default_keep_latest": -1}, ("default_keep_latest",), "Input should be greater than or equal to 0"),
        ({"default_keep_latest": "٣"}, ("default_keep_latest",), "unable to parse string as an integer"),
        ({"max_copies_in_flight": 0}, ("max_copies_in_flight",), "Input should be greater than or equal to 1"),
        ({"tag_prefix": "aws"}, ("tag_prefix",), "Value error, tag prefix 'aws' is invalid"),
        (
            {"shared_image_check": "STRICT"},
            ("shared_image_check",),
            "Input should be 'strict', 'managed-accounts' or 'off'",
        ),
        ({"replica_regions": ("us-east-1", 1)}, ("replica_regions", 1), "Input should be a valid string"),
        ({"keep_if_launched_within": "P1Y"}, ("keep_if_launched_within",), "is not <n>h, <n>d or <n>w"),
        ({"replica_kms_keys": {WEST: "k"}}, ("replica_kms_keys",), "is not a KMS key ARN, id or alias"),
    ],
)
def test_bad_settings_raise_a_value_error_naming_the_field(
    values: dict[str, Any], loc: tuple[Any, ...], msg: str
) -> None:
    with pytest.raises(ValueError) as err:
        Settings(home_region=EAST, **values)
    (problem,) = err.value.errors()  # type: ignore[attr-defined]
    assert problem["loc"] == loc and msg in problem["msg"]


def test_model_validate_refuses_unknown_and_missing_keys() -> None:
    with pytest.raises(ValueError) as err:
        Settings.model_validate({"tag_prefix": "acme", "colour": "blue"})
    kinds = [(e["type"], e["loc"]) for e in err.value.errors()]  # type: ignore[attr-defined]
    assert kinds == [("missing", ("home_region",)), ("extra_forbidden", ("colour",))]


def test_model_copy_and_model_dump() -> None:
    s = Settings(home_region=EAST)
    t = s.model_copy(update={"dry_run": True, "default_keep_latest": "3"})
    assert (t.dry_run, t.default_keep_latest, s.dry_run) == (True, 3, False)
    assert s.model_dump()["sweep_regions_param"] == () and s.model_dump()["replica_kms_keys"] == {}
    with pytest.raises(ValueError):
        s.model_copy(update={"default_keep_latest": 5000})


def test_without_pydantic_the_error_is_invalid_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pydantic_core", None)  # as if not installed: the import fails
    with pytest.raises(InvalidFields) as err:
        Settings(home_region="atlantis", default_keep_latest=-1)
    assert isinstance(err.value, ValueError) and err.value.error_count() == 2
    assert [e["loc"] for e in err.value.errors()] == [("home_region",), ("default_keep_latest",)]
    assert "home_region: Value error, 'atlantis' is not an AWS region" in str(err.value)
    with pytest.raises(InvalidFields, match="dry_run must be true or false"):
        requests.BackfillRequest.model_validate({"dry_run": None})


def test_both_errors_list_the_same_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    from ami_lifecycle.domain.settings import Problem

    problems = [Problem(("regions", 0), "string_type", "Input should be a valid string", 1)]
    with_pydantic = invalid("SweepRequest", problems).errors()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pydantic_core", None)
    assert invalid("SweepRequest", problems).errors() == with_pydantic  # type: ignore[attr-defined]


# ------------------------------------------------------------------ payloads


def test_built_in_code_a_none_is_the_default_but_a_payloads_null_is_refused() -> None:
    request = requests.BackfillRequest(actions=["tag"], regions=[EAST], dry_run=None)
    assert request.dry_run is None and request.effective_dry_run(STACK) is True
    with pytest.raises(ValueError, match="dry_run must be true or false"):
        requests.BackfillRequest.model_validate({"dry_run": None})
    with pytest.raises(requests.BadRequest, match="actions: must not be null"):
        requests.parse_backfill_request({"actions": None}, STACK, known_regions())


def test_a_cursor_round_trips_through_its_dump() -> None:
    cursor = requests.Cursor(region_index=1, offset=3, after=AMI, chain=2, run_id="r1", found=[AMI])
    dumped = cursor.model_dump()
    assert dumped == {
        "region_index": 1,
        "offset": 3,
        "after": AMI,
        "chain": 2,
        "run_id": "r1",
        "found": [AMI],
        "retired": 0,
        "blocked": False,
    }
    payload = {"actions": ["retire", "tag"], "regions": [WEST, WEST], "dry_run": False, "continuation": dumped}
    request = requests.parse_backfill_request(payload, STACK, known_regions())
    assert request.continuation == cursor and request.regions == [WEST]
    assert request.ordered_actions() == ("tag", "retire") and request.effective_dry_run(STACK) is False
    with pytest.raises(ValueError, match="less than or equal to 20"):
        requests.Cursor(region_index=0, chain=21)


@pytest.mark.parametrize(
    ("payload", "message"),
    [  # messages as the pydantic models gave them
        ({"regions": [1]}, "invalid sweep payload: regions.0: Input should be a valid string"),
        ({"regions": []}, "invalid sweep payload: regions: List should have at least 1 item after validation, not 0"),
        ({"dry_run": 1}, "invalid sweep payload: dry_run: Input should be a valid boolean"),
        ({"source": "cron"}, "invalid sweep payload: source: Input should be 'schedule', 'manual' or 'state-machine'"),
        (
            {"cursor": {"pairs": [["123456789012", "us-east-1"]], "iteration": 21}},
            "invalid sweep payload: cursor.iteration: Input should be less than or equal to 20",
        ),
        (
            {"accounts": ["12345"]},
            "invalid sweep payload: accounts: Value error, '12345' is not a 12-digit AWS account id",
        ),
        ({"Regions": [EAST]}, "invalid sweep payload: Regions: Extra inputs are not permitted"),
        ({1: 1}, "invalid sweep payload: 1: Keys should be strings"),
    ],
)
def test_sweep_refusals_read_as_before(payload: Any, message: str) -> None:
    with pytest.raises(requests.BadRequest) as err:
        requests.parse_sweep_request(payload, STACK, known_regions())
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"actions": ["TAG"]}, "actions: unknown action 'TAG' (allowed: tag, replicate, retire)"),
        ({"actions": ["tag"] * 4}, "actions: List should have at most 3 items after validation, not 4"),
        ({"regions": ["mars-north-1"]}, "regions: 'mars-north-1' is not an AWS region"),
        ({"image_ids": ["ami-123"]}, "image_ids: 'ami-123' is not an AMI id (ami- and 8 or 17 hex digits)"),
        ({"continuation": {}}, "continuation.region_index: Field required"),
        ({"continuation": "x"}, "continuation: Input should be a valid dictionary or instance of Cursor"),
        (
            {"continuation": {"region_index": 0, "run_id": "x" * 65}},
            "continuation.run_id: String should have at most 64 characters",
        ),
        ({"dryrun": True}, "dryrun: unknown key (allowed: actions, accounts, regions, image_ids, dry_run)"),
    ],
)
def test_backfill_refusals_read_as_before(payload: Any, message: str) -> None:
    with pytest.raises(requests.BadRequest) as err:
        requests.parse_backfill_request(payload, STACK, known_regions())
    assert str(err.value) == f"invalid backfill payload: {message}"


# ------------------------------------------------------------------ the models behave as frozen dataclasses


def test_models_are_frozen_comparable_printable_and_copyable() -> None:
    import copy
    import pickle
    from dataclasses import FrozenInstanceError

    s = Settings(home_region=EAST, replica_kms_keys={WEST: "alias/replicas"})
    with pytest.raises(FrozenInstanceError):
        s.dry_run = True  # type: ignore[misc]
    assert s == Settings(home_region=EAST, replica_kms_keys={WEST: "alias/replicas"}) != Settings(home_region=WEST)
    assert repr(s).startswith("Settings(home_region='us-east-1', tag_prefix='ami-lifecycle',")
    assert copy.deepcopy(s) == s and pickle.loads(pickle.dumps(s)) == s
    assert s.keys.prefix == "ami-lifecycle" and s.retention.days == 90  # cached properties still work
    cursor = requests.Cursor(region_index=0)
    assert hash(requests.SweepRequest(source="manual")) == hash(requests.SweepRequest(source="manual"))
    assert cursor.found == [] and cursor.found is not requests.Cursor(region_index=0).found  # defaults are copies
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        Settings(home_region=EAST, colour="blue")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="missing required keyword argument"):
        requests.Cursor()  # type: ignore[call-arg]


def test_a_model_whose_fields_and_spec_differ_is_refused_when_defined() -> None:
    from ami_lifecycle.domain.settings import Model, Spec, integer

    with pytest.raises(TypeError, match="differ"):

        class Broken(Model):
            a: int = 0
            b: int = 0
            SPEC = {"a": Spec(integer())}
