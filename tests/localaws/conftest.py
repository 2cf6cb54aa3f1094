"""Fixtures shared by the moto-extension tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ami_lifecycle_localaws import motoext
from moto import mock_aws


@pytest.fixture(scope="module")
def _mocked_aws() -> Iterator[None]:
    """One ``mock_aws()`` per module (starting it costs ~0.2 s); each module's ``_fresh`` resets the
    backends before every test."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",  # speed; one test turns it back on
        }.items():
            monkeypatch.setenv(name, value)
        motoext.install()
        with mock_aws():
            yield
