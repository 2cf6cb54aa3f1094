"""What the end-to-end suites share: the installed `ami-lifecycle` command run as a user runs it
(a subprocess, real exit codes) and an embedded local AWS (a moto server in this test process)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ami_lifecycle_localaws.server import EmbeddedAws

EAST = "us-east-1"
_SCRIPT = Path(sys.executable).with_name("ami-lifecycle")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "ami_lifecycle_cli"]


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedAws]:
    with EmbeddedAws(region=EAST) as local:
        yield local


@pytest.fixture
def local(server: EmbeddedAws) -> EmbeddedAws:
    server.reset()
    return server


def cli(
    *args: str, env: dict[str, str] | None = None, stdin: Any = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    """`ami-lifecycle *args` in a subprocess (the environment: this one's, AWS_ENDPOINT_URL included)."""
    return subprocess.run(
        [*CLI, *args],
        env=env if env is not None else dict(os.environ),
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
