"""Which images are adopted and which tags they get: pure, no AWS."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ami_lifecycle.domain.adoption import decide_adoption
from ami_lifecycle.domain.model import Image
from ami_lifecycle.domain.settings import ConfigError, Settings
from ami_lifecycle.runtime import load_settings

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
P = "ami-lifecycle"


def image(tags: dict[str, str] | None = None, **kw: Any) -> Image:
    data: dict[str, Any] = {
        "image_id": "ami-0123456789abcdef0",
        "region": "us-east-1",
        "name": "web-2026-11-25-10",
        "state": "available",
        "creation_date": NOW - timedelta(hours=1),
        "owner_id": "123456789012",
        "tags": tags or {},
        "snapshot_ids": ("snap-0123456789abcdef0",),
    }
    data.update(kw)
    return Image(**data)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


def test_a_new_image_gets_every_lifecycle_tag(settings: Settings) -> None:
    a = decide_adoption(image(), settings, NOW, "123456789012")
    assert a.adopt and a.reason == "adopted"
    assert a.image_tags == {
        f"{P}:managed": "true",
        f"{P}:retention": "90d",
        f"{P}:expires-at": "2027-02-23T09:00:00Z",
        f"{P}:expiry-basis": "90d",  # what the tool computed P:expires-at from (live tags)
        f"{P}:family": "web",
        f"{P}:keep-latest": "1",
    }
    assert a.snapshot_tags == a.image_tags
    assert a.deprecate_at == datetime(2027, 2, 23, 9, 0, tzinfo=UTC)


def test_user_tags_are_never_overwritten(settings: Settings) -> None:
    user = {f"{P}:retention": "7d", f"{P}:family": "frontend", f"{P}:keep-latest": "3", "Team": "web"}
    a = decide_adoption(image(user), settings, NOW)
    assert not set(a.image_tags) & set(user)
    assert a.image_tags[f"{P}:expires-at"] == "2026-12-02T09:00:00Z"  # computed from the user's 7d
    # The snapshots mirror the full lifecycle set, the user's values included, but no other tags.
    assert a.snapshot_tags[f"{P}:family"] == "frontend" and "Team" not in a.snapshot_tags


def test_a_users_expiry_wins_over_retention(settings: Settings) -> None:
    a = decide_adoption(image({f"{P}:retention": "7d", f"{P}:expires-at": "2026-12-24T00:00:00Z"}), settings, NOW)
    assert f"{P}:expires-at" not in a.image_tags
    assert a.expires_at == datetime(2026, 12, 24, tzinfo=UTC)


def test_forever_has_no_expiry_and_no_deprecation(settings: Settings) -> None:
    a = decide_adoption(image({f"{P}:retention": "forever"}), settings, NOW)
    assert a.adopt and a.expires_at is None and a.deprecate_at is None
    assert f"{P}:expires-at" not in a.image_tags


@pytest.mark.parametrize("bad", ["ninety days", "-1d", "P", "1.5w"])
def test_unparseable_retention_leaves_the_image_unexpiring_with_an_error_tag(settings: Settings, bad: str) -> None:
    a = decide_adoption(image({f"{P}:retention": bad}), settings, NOW)
    assert a.adopt and a.expires_at is None and a.deprecate_at is None
    assert f"{P}:expires-at" not in a.image_tags
    assert "retention" in a.image_tags[f"{P}:error"] and len(a.image_tags[f"{P}:error"]) <= 256
    assert a.image_tags.get(f"{P}:retention") is None  # the user's bad value is left for them to fix


def test_other_bad_tags_are_reported(settings: Settings) -> None:
    a = decide_adoption(
        image({f"{P}:keep-latest": "lots", f"{P}:hold": "perhaps", f"{P}:replicate-to": "moon-1"}),
        settings,
        NOW,
    )
    error = a.image_tags[f"{P}:error"]
    assert "keep-latest" in error and "hold" in error and "replicate-to" in error


def test_a_fixed_error_is_removed(settings: Settings) -> None:
    tags = {f"{P}:managed": "true", f"{P}:retention": "30d", f"{P}:error": "retention 'x' is bad"}
    a = decide_adoption(image(tags), settings, NOW)
    assert a.remove_keys == (f"{P}:error",) and f"{P}:error" not in a.snapshot_tags


@pytest.mark.parametrize(
    ("tags", "reason"),
    [
        ({"aws:backup:source-resource": "arn:aws:ec2:...:instance/i-1"}, "AWS Backup"),
        ({"aws:dlm:lifecycle-policy-id": "policy-0123"}, "Data Lifecycle Manager"),
        ({"CreatedBy": "EC2 Image Builder"}, "Image Builder"),
        ({f"{P}:managed": "false"}, "opted out"),
        ({f"{P}:managed": "False "}, "opted out"),
        ({f"{P}:managed": "kinda"}, "not true or false"),
    ],
)
def test_images_of_other_managers_and_opted_out_images_are_not_adopted(
    settings: Settings, tags: dict[str, str], reason: str
) -> None:
    a = decide_adoption(image(tags), settings, NOW)
    assert not a.adopt and reason in a.reason and not a.image_tags


def test_created_by_someone_else_is_fine(settings: Settings) -> None:
    assert decide_adoption(image({"CreatedBy": "Packer"}), settings, NOW).adopt


@pytest.mark.parametrize("state", ["pending", "failed", "deregistered", "disabled"])
def test_only_available_images_are_adopted(settings: Settings, state: str) -> None:
    assert not decide_adoption(image(state=state), settings, NOW).adopt


def test_images_of_other_accounts_are_not_adopted(settings: Settings) -> None:
    assert not decide_adoption(image(owner_id="999999999999"), settings, NOW, "123456789012").adopt


def test_manage_new_images_off_adopts_only_images_with_a_lifecycle_tag(
    make_settings: Callable[..., Settings],
) -> None:
    off = make_settings(manage_new_images=False)
    assert not decide_adoption(image(), off, NOW).adopt
    assert decide_adoption(image({f"{P}:retention": "30d"}), off, NOW).adopt


def test_expiry_in_the_past_or_too_far_sets_no_deprecation(settings: Settings) -> None:
    old = decide_adoption(image(creation_date=NOW - timedelta(days=400)), settings, NOW)
    assert old.expires_at is not None and old.expires_at < NOW and old.deprecate_at is None
    far = decide_adoption(image({f"{P}:retention": "P20Y"}), settings, NOW)
    assert far.expires_at is not None and far.deprecate_at is None


def test_already_tagged_and_deprecated_image_needs_nothing(settings: Settings) -> None:
    first = decide_adoption(image(), settings, NOW)
    again = image(first.image_tags, deprecation_time=first.deprecate_at)
    second = decide_adoption(again, settings, NOW)
    assert second.adopt and second.reason == "already managed"
    assert second.image_tags == {} and second.deprecate_at is None


def test_a_custom_prefix_is_used_everywhere(make_settings: Callable[..., Settings]) -> None:
    a = decide_adoption(image({"ami-lifecycle:retention": "1d"}), make_settings(tag_prefix="acme"), NOW)
    assert set(a.image_tags) == {
        "acme:managed",
        "acme:retention",
        "acme:expires-at",
        "acme:expiry-basis",
        "acme:family",
        "acme:keep-latest",
    }


def test_settings_from_environment() -> None:
    s = load_settings(
        {
            "AWS_REGION": "eu-west-1",
            "REPLICA_REGIONS": "us-east-1, us-west-2",
            "REPLICA_KMS_KEYS": "us-west-2=arn:aws:kms:us-west-2:123456789012:key/abcd-1234",
            "DRY_RUN": "TRUE",
            "DEFAULT_KEEP_LATEST": "2",
        }
    )
    assert s.replica_regions == ("us-east-1", "us-west-2") and s.dry_run and s.default_keep_latest == 2
    assert s.sweep_regions == ("eu-west-1", "us-east-1", "us-west-2")
    assert s.replica_kms_keys == {"us-west-2": "arn:aws:kms:us-west-2:123456789012:key/abcd-1234"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEFAULT_RETENTION": "soon"}, "default_retention"),
        ({"DEFAULT_KEEP_LATEST": "-1"}, "default_keep_latest"),
        ({"REPLICA_REGIONS": "us-east-1,atlantis"}, "replica_regions"),
        ({"REPLICA_KMS_KEYS": "us-west-2"}, "REPLICA_KMS_KEYS"),
        ({"DRY_RUN": "maybe"}, "DRY_RUN"),
        ({"TAG_PREFIX": "aws"}, "tag_prefix"),
    ],
)
def test_bad_settings_fail_with_the_variable_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({"AWS_REGION": "us-east-1", **env})


@pytest.mark.parametrize("spelling", ["TRUE", "yes", "1", " true "])
def test_managed_is_normalised_to_exactly_true(settings: Settings, spelling: str) -> None:
    a = decide_adoption(image({f"{P}:managed": spelling}), settings, NOW)
    assert a.adopt and a.image_tags[f"{P}:managed"] == "true"
