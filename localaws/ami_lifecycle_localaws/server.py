"""The embedded local AWS: a moto server on 127.0.0.1 (a free port), in this process, with our
documented moto extension (`motoext`), and the environment that points boto3 at it.

    with EmbeddedAws() as local:
        boto3.client("ec2", region_name="us-east-1")   # talks to local.url (AWS_ENDPOINT_URL)
        ...                                             # fleet.backdate() works: same process

Entering sets, and leaving restores, every variable it changes: `AWS_ENDPOINT_URL`, fake
credentials, no profile or config files, `MOTO_EC2_LOAD_DEFAULT_AMIS=false` (set *before* the server
starts: moto reads it when it creates a region's EC2 backend, and the fleet must be ours alone),
and Powertools' local settings. Leaving stops the server, closes its socket and joins its thread:
nothing is left running. The moto state is reset on entry, so each use starts from an empty account.

Two speed-ups, undone on leaving: the server answers with Nagle's algorithm off (werkzeug's request
handler leaves it on, and with the client's delayed ACKs every response waited about 40 ms); and
botocore sessions share one data loader (`shared_botocore_loader`): the local runner gives every
function invocation fresh clients, as a cold start would, and each new boto3 Session would
otherwise parse the EC2 service model (megabytes of JSON) again, about 0.3 s per client.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from types import TracebackType
from typing import Any

ACCOUNT_ID = "123456789012"  # moto's default account

_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
    "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "ami-lifecycle",
    "POWERTOOLS_METRICS_NAMESPACE": "AmiLifecycle",
}
_REMOVED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")


class EmbeddedAws:
    """A ThreadedMotoServer on 127.0.0.1:<free port> plus the environment pointing boto3 at it."""

    def __init__(self, region: str = "us-east-1") -> None:
        self.region = region
        self.url = ""
        self._server: Any = None
        self._saved: dict[str, str | None] = {}
        self._loader = contextlib.ExitStack()

    def __enter__(self) -> EmbeddedAws:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        from . import motoext

        names = (*_ENV, *_REMOVED, "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION")
        self._saved = {name: os.environ.get(name) for name in names}
        for name in _REMOVED:
            os.environ.pop(name, None)
        os.environ.update(_ENV)
        os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"] = self.region
        self._loader.enter_context(shared_botocore_loader())
        self._loader.enter_context(_no_nagle())
        try:
            motoext.install()
            # werkzeug logs every request on stderr.
            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self._server.start()
            host, port = self._server.get_host_and_port()
            self.url = f"http://{host}:{port}"
            os.environ["AWS_ENDPOINT_URL"] = self.url
            self.reset()
        except BaseException:
            self.stop()
            raise
        _forget_cached_clients()

    def reset(self) -> None:
        """Empty every moto backend (and the extension's call counter)."""
        from . import motoext

        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own loopback server
            response.read()
        motoext.reset_calls()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            try:
                server.stop()  # shutdown() + join the serving thread
            finally:
                inner = getattr(server, "_server", None)
                if inner is not None:
                    inner.server_close()
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved = {}
        self._loader.close()
        _forget_cached_clients()
        _wait_for_request_threads()


@contextlib.contextmanager
def _no_nagle() -> Iterator[None]:
    from werkzeug.serving import WSGIRequestHandler

    previous = WSGIRequestHandler.disable_nagle_algorithm
    WSGIRequestHandler.disable_nagle_algorithm = True
    try:
        yield
    finally:
        WSGIRequestHandler.disable_nagle_algorithm = previous


@contextlib.contextmanager
def shared_botocore_loader() -> Iterator[None]:
    """Every botocore Session created meanwhile shares one data loader per search path, so service
    models are parsed once (botocore treats loaded models as read-only; one Session already shares
    its loader between all its clients)."""
    import botocore.session

    original = botocore.session.create_loader
    loaders: dict[str | None, Any] = {}
    lock = threading.Lock()

    def create_loader(search_path_string: str | None = None) -> Any:
        with lock:
            if search_path_string not in loaders:
                loaders[search_path_string] = original(search_path_string)
            return loaders[search_path_string]

    botocore.session.create_loader = create_loader
    try:
        yield
    finally:
        botocore.session.create_loader = original


def _forget_cached_clients() -> None:
    """Clients made for (or before) the server must not outlive it."""
    import boto3

    boto3.DEFAULT_SESSION = None
    try:
        from ami_lifecycle import runtime

        runtime.reset()
    except ImportError:  # pragma: no cover - the layer is always installed with this package
        pass


def _wait_for_request_threads(timeout: float = 2.0) -> None:
    """werkzeug serves each request on a daemon thread; give the last ones a moment to end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = [t for t in threading.enumerate() if t.name.startswith("Thread-") and "process_request" in t.name]
        if not busy:
            return
        time.sleep(0.02)
