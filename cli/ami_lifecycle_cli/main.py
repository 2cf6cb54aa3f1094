"""`ami-lifecycle`: the operator's command line, over the same code as the Lambda functions.

    ami-lifecycle plan      what a backfill (tag, replicate, retire) would do, image by image, with reasons
    ami-lifecycle apply     the retention sweep, for real (asks for confirmation unless --yes)
    ami-lifecycle backfill  tag / replicate / retire existing images (dry run unless --apply)
    ami-lifecycle demo      the whole flow on an embedded local AWS (moto)

It uses the caller's normal AWS credentials (`--profile`, the environment, ~/.aws) and honours
AWS_ENDPOINT_URL. Settings are the template parameters, read from the same environment variables
as the Lambdas (TAG_PREFIX, DEFAULT_RETENTION, ...) and overridable with options.

Outside the Lambda layer: this package imports the layer (`ami_lifecycle`), never the reverse. The
report is rendered from its data by the leaf module `render` (which the demo uses too); the local
AWS (`ami_lifecycle_localaws.demo`) is imported only by the `demo` command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import IO, Any

from . import restore as restore_command
from .render import quiet_functions, render_report

EXIT_OK = 0
EXIT_ERRORS = 1
EXIT_USAGE = 2
EXIT_AWS = 3

EPILOG = """\
exit codes:
  0  success, or nothing to do
  1  the report has errors (some images or regions failed; see the report)
  2  usage or configuration error (bad option, unknown region or key, malformed image id),
     or an action that needs confirmation was not confirmed (no --yes and stdin is not a terminal)
  3  AWS credentials or endpoint problem (no credentials, unknown profile, endpoint unreachable)

environment:
  AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL and the other AWS SDK variables are honoured.
  TAG_PREFIX, DEFAULT_RETENTION, DEFAULT_KEEP_LATEST, REPLICA_REGIONS, REPLICA_KMS_KEYS,
  SWEEP_REGIONS, COPY_QUEUE_URL, MANAGE_NEW_IMAGES and DRY_RUN are read as the Lambdas read them
  (the template parameters); the options below override them.

examples:
  ami-lifecycle plan --region us-east-1,us-west-2
  ami-lifecycle backfill --actions tag,replicate --copy-queue-url https://sqs...   # dry run
  ami-lifecycle backfill --actions tag --image-id ami-0123456789abcdef0 --apply --yes
  ami-lifecycle plan --sweep --json | jq .totals
  ami-lifecycle apply --yes
  ami-lifecycle demo
"""


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- arguments


def _regions_arg(values: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or ():
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return list(dict.fromkeys(out))


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("common options")
    g.add_argument(
        "--region",
        action="append",
        metavar="REGION",
        help="region to work on (repeatable, or a comma list); default: SWEEP_REGIONS, else your "
        "region plus --replica-regions",
    )
    g.add_argument("--profile", help="AWS profile (default: AWS_PROFILE / the default credential chain)")
    g.add_argument(
        "--account",
        action="append",
        metavar="ID",
        help="work in this managed account (repeatable; default: your own). Accounts other than your "
        "own are reached by assuming --role-name in them, as the hub's functions do",
    )
    g.add_argument(
        "--role-name", metavar="NAME", help="SpokeRoleName (default: SPOKE_ROLE_NAME, else ami-lifecycle-spoke)"
    )
    g.add_argument("--json", action="store_true", help="print the report as JSON on stdout, nothing else")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    g.add_argument("--verbose", "-v", action="store_true", help="the functions' JSON logs on stderr")
    g.add_argument("--tag-prefix", metavar="P", help="TagPrefix (default: TAG_PREFIX, else ami-lifecycle)")
    g.add_argument("--default-retention", metavar="R", help="DefaultRetention, e.g. 90d, 2w, P1Y, forever")
    g.add_argument("--default-keep-latest", metavar="N", help="DefaultKeepLatest (0 disables)")
    g.add_argument("--replica-regions", metavar="R[,R]", help="ReplicaRegions (comma list; '' for none)")
    g.add_argument("--copy-queue-url", metavar="URL", help="the stack's CopyQueue URL (needed to request copies)")

    parser = argparse.ArgumentParser(
        prog="ami-lifecycle",
        description="Adopt, tag, replicate and retire AMIs: the operator's command line over the same code "
        "as the ami-lifecycle Lambda functions.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            parents=[common],
            help=help_text,
            description=help_text,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    plan = add(
        "plan",
        "Show what a backfill would do (tag, replicate, retire): every image with its decision and reason, "
        "and the images and snapshot GiB that would be freed. Changes nothing.",
    )
    plan.add_argument(
        "--sweep",
        action="store_true",
        help="show what the retention sweep (`apply`) would do now, on the tags as they are",
    )
    _selection(plan)

    apply = add("apply", "Run the retention sweep for real: retire expired images and delete their snapshots.")
    apply.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    backfill = add(
        "backfill",
        "Apply tagging, replication and retirement to existing images. A dry run unless --apply.",
    )
    _selection(backfill)
    backfill.add_argument("--apply", action="store_true", help="act (default: dry run, a plan)")
    backfill.add_argument("--yes", "-y", action="store_true", help="with --apply: do not ask for confirmation")
    for command in (apply, plan, backfill):
        command.add_argument(
            "--max-retirements",
            type=_non_negative,
            metavar="N",
            help="blast-radius cap for this run, all regions together (default: MaxRetirementsPerRun, "
            "MAX_RETIREMENTS_PER_RUN, 100; 0 = no limit)",
        )

    add(
        "demo",
        "Run the whole flow on an embedded local AWS (a moto server on 127.0.0.1): seed a fleet, tag, copy, "
        "backfill, sweep; print what happened. Needs `pip install -e .[local]`.",
    )
    restore_command.add_parser(sub)  # cli/ami_lifecycle_cli/restore.py
    return parser


def _selection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--actions",
        default="tag,replicate,retire",
        metavar="A[,A]",
        help="which of tag, replicate, retire (default: all three, run in that order)",
    )
    p.add_argument(
        "--image-id",
        action="append",
        dest="image_ids",
        metavar="AMI",
        help="work on this image only (repeatable); keep-latest still ranks whole families",
    )


# ---------------------------------------------------------------- output


class Output:
    """stdout for the result, stderr for progress and prompts."""

    def __init__(self, args: argparse.Namespace, stdout: IO[str], stderr: IO[str]) -> None:
        self.json = bool(getattr(args, "json", False))
        self.quiet = bool(getattr(args, "quiet", False))
        self.stdout = stdout
        self.stderr = stderr

    def progress(self, message: str) -> None:
        if not self.quiet:
            print(f"… {message}", file=self.stderr, flush=True)

    def info(self, message: str) -> None:
        if not self.quiet:
            print(message, file=self.stderr, flush=True)

    def result(self, text: str) -> None:
        print(text, file=self.stdout, flush=True)


# ---------------------------------------------------------------- AWS and settings


def _settings(args: argparse.Namespace, session_region: str | None) -> Any:
    from ami_lifecycle.aws.regions import known_regions
    from ami_lifecycle.domain.settings import ConfigError
    from ami_lifecycle.domain.tags import is_region_name
    from ami_lifecycle.runtime import load_settings

    regions = _regions_arg(args.region)
    for region in regions:
        if not is_region_name(region) or region not in known_regions():
            raise CliError(f"--region: {region[:40]!r} is not an AWS region", EXIT_USAGE)
    env = dict(os.environ)
    home = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or session_region or (regions[0] if regions else "")
    if not home:
        raise CliError("no AWS region: set AWS_REGION, configure one for your profile, or pass --region", EXIT_USAGE)
    env["AWS_REGION"] = home
    overrides = {
        "TAG_PREFIX": args.tag_prefix,
        "DEFAULT_RETENTION": args.default_retention,
        "DEFAULT_KEEP_LATEST": args.default_keep_latest,
        "REPLICA_REGIONS": args.replica_regions,
        "COPY_QUEUE_URL": args.copy_queue_url,
        "SPOKE_ROLE_NAME": getattr(args, "role_name", None),
    }
    accounts = _accounts_arg(getattr(args, "account", None))
    if accounts:
        env["MANAGED_ACCOUNTS"] = ",".join(accounts)
    env.update({k: v for k, v in overrides.items() if v is not None})
    if regions:
        env["SWEEP_REGIONS"] = ",".join(regions)
    try:
        settings = load_settings(env)
    except ConfigError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    for region in (*settings.sweep_regions, *settings.replica_regions):
        if region not in known_regions():
            raise CliError(f"{region!r} is not an AWS region", EXIT_USAGE)
    return settings


def _accounts_arg(values: list[str] | None) -> list[str]:
    from ami_lifecycle.domain.ids import is_account_id

    accounts = [a.strip() for value in values or () for a in value.split(",") if a.strip()]
    for account in accounts:
        if not is_account_id(account):
            raise CliError(f"--account: {account[:40]!r} is not a 12-digit AWS account id", EXIT_USAGE)
    return list(dict.fromkeys(accounts))


def _session(args: argparse.Namespace) -> Any:
    import boto3
    from botocore.exceptions import ProfileNotFound

    try:
        return boto3.Session(profile_name=args.profile) if args.profile else boto3.Session()
    except ProfileNotFound as e:
        raise CliError(f"AWS profile not found: {e}", EXIT_AWS) from None


def aws_problem(exc: BaseException) -> str | None:
    """A readable line when `exc` means: no usable credentials, or the endpoint cannot be reached."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
        ReadTimeoutError,
        TokenRetrievalError,
    )

    if isinstance(exc, NoCredentialsError | PartialCredentialsError | TokenRetrievalError):
        return f"no usable AWS credentials ({exc}): set AWS_PROFILE or pass --profile, or run `aws configure`"
    if isinstance(exc, ProfileNotFound):
        return str(exc)
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ConnectionClosedError | ReadTimeoutError):
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        where = f" (AWS_ENDPOINT_URL={endpoint})" if endpoint else ""
        return f"cannot reach AWS{where}: {exc}"
    if isinstance(exc, NoRegionError):
        return "no AWS region: set AWS_REGION or pass --region"
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        from ami_lifecycle.aws.errors import AUTH_CODES

        if code in AUTH_CODES:
            return f"AWS refused the credentials: {code}: {exc.response.get('Error', {}).get('Message', '')}"
    return None


def preflight(session: Any, region: str) -> str:
    """Who are we? One STS call, failing fast: the account id (images of other owners are never touched)."""
    from botocore.config import Config

    config = Config(connect_timeout=3, read_timeout=10, retries={"total_max_attempts": 2, "mode": "standard"})
    sts = session.client("sts", region_name=region, config=config)
    try:
        return str(sts.get_caller_identity()["Account"])
    except Exception as e:
        problem = aws_problem(e)
        if problem:
            raise CliError(problem, EXIT_AWS) from None
        raise


def require_terminal(stdin: IO[str]) -> None:
    """Confirmation needs a person: refuse (exit 2) when stdin is not a terminal."""
    if not stdin.isatty():
        raise CliError("refusing to act without confirmation: stdin is not a terminal (pass --yes)", EXIT_USAGE)


def confirm(out: Output, question: str, stdin: IO[str]) -> None:
    """Ask on the terminal; anything but 'yes' stops here (exit 2, nothing changed)."""
    require_terminal(stdin)
    print(f"{question} Type 'yes' to go on: ", end="", file=out.stderr, flush=True)
    answer = stdin.readline().strip().lower()
    if answer != "yes":
        raise CliError("not confirmed: nothing was changed", EXIT_USAGE)


# ---------------------------------------------------------------- commands


def backfill_request(args: argparse.Namespace, settings: Any, dry_run: bool) -> Any:
    """The options as a BackfillFunction payload, validated as the function validates it (exit 2 if bad)."""
    from ami_lifecycle.aws.regions import known_regions
    from ami_lifecycle.domain.requests import BadRequest, parse_backfill_request

    payload: dict[str, Any] = {"actions": [a.strip() for a in args.actions.split(",") if a.strip()], "dry_run": dry_run}
    if args.image_ids:
        payload["image_ids"] = [i.strip() for value in args.image_ids for i in value.split(",") if i.strip()]
    accounts = _accounts_arg(getattr(args, "account", None))
    if accounts:
        payload["accounts"] = accounts
    try:
        return parse_backfill_request(payload, settings, known_regions())
    except BadRequest as e:
        message = str(e).replace("invalid backfill payload: ", "").replace("image_ids", "--image-id")
        raise CliError(f"invalid arguments: {message.replace('actions:', '--actions:')}", EXIT_USAGE) from None


def _run_backfill(
    args: argparse.Namespace, out: Output, settings: Any, aws: Any, account_id: str, dry_run: bool
) -> dict[str, Any]:
    from ami_lifecycle.runtime import Deps
    from ami_lifecycle.services.backfill import Backfill

    request = backfill_request(args, settings, dry_run)
    backfill = Backfill(
        Deps.create(settings, aws, None, account_id),
        progress=out.progress,
        max_retirements=getattr(args, "max_retirements", None),
    )
    with quiet_functions(args.verbose, out.stderr):
        report = backfill.run(request)
    return backfill.render(report)


def _non_negative(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value[:40]!r} is not a whole number of images (0 = no limit)")
    return int(value)


def _run_sweep(
    args: argparse.Namespace, out: Output, settings: Any, aws: Any, account_id: str, dry_run: bool
) -> dict[str, Any]:
    from ami_lifecycle.domain.report import Report
    from ami_lifecycle.runtime import Deps
    from ami_lifecycle.services.sweep import sweep

    regions = list(settings.sweep_regions)
    deps = Deps.create(settings, aws, None, account_id)
    pairs = deps.pairs(_accounts_arg(getattr(args, "account", None)) or [account_id], regions)
    where = ", ".join(regions)
    accounts = {a for a, _ in pairs}
    if accounts != {account_id}:
        where = f"{len(accounts)} accounts x {where}"
    out.progress(f"{where}: retention sweep ({'dry run' if dry_run else 'for real'})")
    # One sweep over every pair: MaxRetirementsPerRun counts them all together.
    with quiet_functions(args.verbose, out.stderr):
        combined: Report = sweep(
            deps, pairs=pairs, dry_run=dry_run, max_retirements=getattr(args, "max_retirements", None)
        )
    for (account, region), one in combined.pairs.items():
        t = one.totals
        name = region if account == account_id else f"{account} {region}"
        if one.status == "failed":
            out.progress(f"{name}: failed: {one.error}")
            continue
        out.progress(f"{name}: {t.retired} {'would be ' if dry_run else ''}retired, {sum(t.kept.values())} kept")
    if combined.blast_radius:
        b = combined.blast_radius
        out.info(
            f"blast radius: {b['would_retire']} images are due, more than the limit of {b['limit']} "
            "(MaxRetirementsPerRun): none retired. For a deliberate clean-up: apply --max-retirements N"
        )
    return combined.to_dict()


def _finish(out: Output, report: dict[str, Any], title: str) -> int:
    if out.json:
        out.result(json.dumps(report, indent=2, sort_keys=False, default=str))
    else:
        out.result(render_report(report, datetime.now(UTC), title))
    failed = report.get("totals", {}).get("errors", 0) or report.get("status") in ("partial", "failed")
    return EXIT_ERRORS if failed else EXIT_OK


def cmd_plan(args: argparse.Namespace, out: Output, settings: Any, aws: Any, account_id: str) -> int:
    regions = ", ".join(settings.sweep_regions)
    if args.sweep:
        report = _run_sweep(args, out, settings, aws, account_id, dry_run=True)
        return _finish(out, report, f"Sweep plan for {regions} (what `ami-lifecycle apply` would do now)")
    report = _run_backfill(args, out, settings, aws, account_id, dry_run=True)
    return _finish(out, report, f"Backfill plan for {regions}: actions {args.actions}")


def cmd_apply(args: argparse.Namespace, out: Output, settings: Any, aws: Any, account_id: str, stdin: IO[str]) -> int:
    regions = ", ".join(settings.sweep_regions)
    if settings.dry_run:
        out.info("DRY_RUN is true: the sweep only reports")
    elif not args.yes:
        require_terminal(stdin)
        plan = _run_sweep(args, out, settings, aws, account_id, dry_run=True)
        if not out.json:
            print(render_report(plan, datetime.now(UTC), f"Sweep plan for {regions}"), file=out.stderr)
        t = plan["totals"]
        if not t.get("retired"):
            out.info("Nothing to retire.")
            if out.json:
                out.result(json.dumps(plan, indent=2, default=str))
            return EXIT_OK
        confirm(out, f"Retire {t['retired']} images and delete {t.get('snapshots_deleted', 0)} snapshots?", stdin)
    report = _run_sweep(args, out, settings, aws, account_id, dry_run=settings.dry_run)
    return _finish(out, report, f"Sweep of {regions}")


def cmd_backfill(
    args: argparse.Namespace, out: Output, settings: Any, aws: Any, account_id: str, stdin: IO[str]
) -> int:
    regions = ", ".join(settings.sweep_regions)
    if not args.apply:
        if args.yes:
            out.info("--yes without --apply: this is a dry run")
        report = _run_backfill(args, out, settings, aws, account_id, dry_run=True)
        return _finish(out, report, f"Backfill plan for {regions}: actions {args.actions} (pass --apply to act)")
    if settings.dry_run:
        out.info("DRY_RUN is true: the backfill only reports")
    elif not args.yes:
        require_terminal(stdin)
        plan = _run_backfill(args, out, settings, aws, account_id, dry_run=True)
        if not out.json:
            print(render_report(plan, datetime.now(UTC), f"Backfill plan for {regions}"), file=out.stderr)
        t = plan["totals"]
        confirm(
            out,
            f"Tag {t.get('tagged', 0)} images, request {t.get('copies_requested', 0)} copies and retire "
            f"{t.get('retired', 0)} images?",
            stdin,
        )
    report = _run_backfill(args, out, settings, aws, account_id, dry_run=settings.dry_run)
    return _finish(out, report, f"Backfill of {regions}: actions {args.actions}")


def cmd_demo(args: argparse.Namespace, out: Output) -> int:
    try:
        import moto  # noqa: F401

        # Imported here, for this command only: the local AWS (moto) is an optional extra, and it
        # imports the CLI's leaf `render` module, never this one (no import cycle).
        from ami_lifecycle_localaws import demo
    except ImportError as e:
        raise CliError(
            f"the demo needs the embedded local AWS (moto), which is not installed ({e.name or e}).\n"
            "Install it with:  pip install -e '.[local]'   (or run `make demo`, which does)",
            EXIT_USAGE,
        ) from None
    return int(
        demo.main(json_output=out.json, quiet=out.quiet, verbose=args.verbose, stdout=out.stdout, stderr=out.stderr)
    )


# ---------------------------------------------------------------- main


def main(
    argv: Sequence[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    stdin: IO[str] | None = None,
) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    stdin = stdin or sys.stdin
    parser = build_parser()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    out = Output(args, stdout, stderr)
    try:
        if args.command == "demo":
            return cmd_demo(args, out)
        if args.command == "restore":
            return restore_command.run(args, stdout, stderr)
        return _run(args, out, stdin)
    except CliError as e:
        print(f"ami-lifecycle: {e}", file=stderr)
        return e.code
    except KeyboardInterrupt:
        print("ami-lifecycle: interrupted", file=stderr)
        return 130
    except Exception as e:
        problem = aws_problem(e)
        if problem:
            print(f"ami-lifecycle: {problem}", file=stderr)
            return EXIT_AWS
        raise


def _run(args: argparse.Namespace, out: Output, stdin: IO[str]) -> int:
    from ami_lifecycle.aws.clients import Aws

    session = _session(args)
    settings = _settings(args, session.region_name)
    if args.command == "backfill" or (args.command == "plan" and not args.sweep):
        backfill_request(args, settings, dry_run=True)  # bad options stop here, before any AWS call
    account_id = preflight(session, settings.home_region)
    out.progress(
        f"account {account_id}, regions {', '.join(settings.sweep_regions)}"
        + (f", endpoint {os.environ['AWS_ENDPOINT_URL']}" if os.environ.get("AWS_ENDPOINT_URL") else "")
    )
    if (
        args.command in ("plan", "backfill")
        and not getattr(args, "sweep", False)
        and "replicate" in args.actions
        and settings.replica_regions
        and not settings.copy_queue_url
    ):
        out.info(
            "note: no --copy-queue-url (COPY_QUEUE_URL): images that need copies are reported as errors; pass the "
            "stack's CopyQueueUrl output, or leave replicate out of --actions"
        )
    aws = Aws(session)
    commands: dict[str, Callable[[], int]] = {
        "plan": lambda: cmd_plan(args, out, settings, aws, account_id),
        "apply": lambda: cmd_apply(args, out, settings, aws, account_id, stdin),
        "backfill": lambda: cmd_backfill(args, out, settings, aws, account_id, stdin),
    }
    return commands[args.command]()


if __name__ == "__main__":
    sys.exit(main())
