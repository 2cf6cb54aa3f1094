"""`ami-lifecycle restore IMAGE_ID [--region R] [--account A]`: undo a retirement that can still be
undone (PRODUCT.md section 10; services/restore.py does the work).

It re-enables a disabled image, or restores a deregistered image and its snapshots from the
Recycle Bin, and holds it (`P:hold` = `true`) so the next sweep keeps it; the reason of the hold
is in the output. Output: one line on stdout (with `--json`: the result as JSON, nothing else);
the steps taken on stderr unless `--quiet`.

Exit codes: 0 restored; 1 not restored (nothing to restore, not found, or a step AWS refused: the
output says what was done); 2 usage (bad image id, region or option); 3 AWS credentials,
permissions or endpoint (another account's role that cannot be assumed included).

A leaf of the CLI: `main` registers it (`add_parser`, `run`); it imports the layer and `render`,
never `main` (no import cycle).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import IO, Any

from .render import quiet_functions

EXIT_OK = 0
EXIT_NOT_RESTORED = 1
EXIT_USAGE = 2
EXIT_AWS = 3

HELP = (
    "Undo a retirement that can still be undone: re-enable a disabled image, or restore a deregistered "
    "image and its snapshots from the Recycle Bin; the image is then held (P:hold=true) so sweeps keep it."
)
EPILOG = """\
exit codes:
  0  restored (and held)
  1  not restored: nothing to restore, not found (nor in the Recycle Bin), or a step AWS refused
     (the output says what was done before it; run the command again to finish)
  2  usage error (bad image id, region or option)
  3  AWS credentials, permissions or endpoint problem

examples:
  ami-lifecycle restore ami-0123456789abcdef0 --region eu-west-1
  ami-lifecycle restore ami-0123456789abcdef0 --reason "INC-42: still launched by batch" --json
"""


class _Usage(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `restore` on the `ami-lifecycle` sub-command parsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "restore",
        help=HELP,
        description=HELP,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image_id", metavar="IMAGE_ID", help="the AMI to restore (ami-...)")
    p.add_argument("--region", metavar="REGION", help="the image's region (default: AWS_REGION / your profile's)")
    p.add_argument(
        "--account",
        metavar="ID",
        help="the image's account (default: your own); another account is reached by assuming "
        "--role-name in it, as the hub's functions do",
    )
    p.add_argument(
        "--role-name", metavar="NAME", help="SpokeRoleName (default: SPOKE_ROLE_NAME, else ami-lifecycle-spoke)"
    )
    p.add_argument("--reason", metavar="TEXT", help="why it is restored: added to the hold's reason in the output")
    p.add_argument("--profile", help="AWS profile (default: AWS_PROFILE / the default credential chain)")
    p.add_argument("--tag-prefix", metavar="P", help="TagPrefix (default: TAG_PREFIX, else ami-lifecycle)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout, nothing else")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    p.add_argument("--verbose", "-v", action="store_true", help="the functions' JSON logs on stderr")
    return p


def run(args: argparse.Namespace, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
    """Run `restore` for parsed `args`; the exit code."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    try:
        return _run(args, stdout, stderr)
    except _Usage as e:
        print(f"ami-lifecycle restore: {e}", file=stderr)
        return e.code
    except KeyboardInterrupt:
        print("ami-lifecycle restore: interrupted", file=stderr)
        return 130


def main(argv: Sequence[str] | None = None, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
    """`restore` alone (tests; `ami-lifecycle restore` is the same through the main parser)."""
    parser = argparse.ArgumentParser(prog="ami-lifecycle")
    add_parser(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(["restore", *(argv or [])])
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    return run(args, stdout, stderr)


def _run(args: argparse.Namespace, stdout: IO[str], stderr: IO[str]) -> int:
    from ami_lifecycle.aws.clients import Aws
    from ami_lifecycle.domain.ids import is_account_id, is_image_id
    from ami_lifecycle.runtime import Deps
    from ami_lifecycle.services.restore import restore

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"… {message}", file=stderr, flush=True)

    if not is_image_id(args.image_id):
        raise _Usage(f"{args.image_id[:40]!r} is not an AMI id (ami- and 8 or 17 hexadecimal digits)")
    if args.account is not None and not is_account_id(args.account.strip()):
        raise _Usage(f"--account: {args.account[:40]!r} is not a 12-digit AWS account id")
    session = _session(args.profile)
    region = _region(args.region, session.region_name)
    settings = _settings(args, region)
    account_id = _preflight(session, region)
    target = args.account.strip() if args.account is not None else account_id
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    progress(f"account {target}, region {region}" + (f", endpoint {endpoint}" if endpoint else ""))
    deps = Deps.create(settings, Aws(session), None, account_id)
    if target != account_id:
        from ami_lifecycle.aws.accounts import AccountUnreachable

        deps = Deps.create(
            settings.model_copy(update={"managed_accounts_param": (target,)}), Aws(session), None, account_id
        )
        try:
            deps = deps.in_account(target)
        except AccountUnreachable as e:
            print(f"ami-lifecycle restore: {e}", file=stderr)
            return EXIT_AWS
    with quiet_functions(args.verbose, stderr):
        result = restore(deps, args.image_id, region, reason=args.reason)
    for step in result.done:
        progress(step)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2), file=stdout, flush=True)
    else:
        print(result.line(), file=stdout, flush=True)
    if result.ok:
        return EXIT_OK
    from ami_lifecycle.aws.errors import AUTH_CODES

    return EXIT_AWS if result.error_code in AUTH_CODES | {"UnauthorizedOperation"} else EXIT_NOT_RESTORED


def _session(profile: str | None) -> Any:
    import boto3
    from botocore.exceptions import ProfileNotFound

    try:
        return boto3.Session(profile_name=profile) if profile else boto3.Session()
    except ProfileNotFound as e:
        raise _Usage(f"AWS profile not found: {e}", EXIT_AWS) from None


def _region(given: str | None, session_region: str | None) -> str:
    from ami_lifecycle.aws.regions import known_regions

    region = (
        given or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or session_region or ""
    ).strip()
    if not region:
        raise _Usage("no AWS region: pass --region, set AWS_REGION or configure one for your profile")
    if region not in known_regions():
        raise _Usage(f"--region: {region[:40]!r} is not an AWS region")
    return region


def _settings(args: argparse.Namespace, region: str) -> Any:
    from ami_lifecycle.domain.settings import ConfigError
    from ami_lifecycle.runtime import load_settings

    env = dict(os.environ)
    env.setdefault("AWS_REGION", region)
    if args.tag_prefix is not None:
        env["TAG_PREFIX"] = args.tag_prefix
    if getattr(args, "role_name", None):
        env["SPOKE_ROLE_NAME"] = args.role_name
    try:
        return load_settings(env)
    except ConfigError as e:
        raise _Usage(str(e)) from None


def _preflight(session: Any, region: str) -> str:
    """Who are we? One STS call, failing fast (exit 3) without credentials or endpoint."""
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    config = Config(connect_timeout=3, read_timeout=10, retries={"total_max_attempts": 2, "mode": "standard"})
    try:
        return str(session.client("sts", region_name=region, config=config).get_caller_identity()["Account"])
    except ClientError as e:
        err = e.response.get("Error", {})
        raise _Usage(f"AWS refused the credentials: {err.get('Code')}: {err.get('Message', '')}", EXIT_AWS) from None
    except BotoCoreError as e:
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        where = f" (AWS_ENDPOINT_URL={endpoint})" if endpoint else ""
        raise _Usage(f"cannot reach AWS or no usable credentials{where}: {e}", EXIT_AWS) from None
