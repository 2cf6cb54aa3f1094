"""AWS errors, read once: the error code of an exception, whether it is throttling, and one short
`Code: message` line for logs, reports and `P:error`."""

from __future__ import annotations

from botocore.exceptions import ClientError

# Error codes that mean "the image is not there (any more)".
NOT_FOUND_CODES = frozenset({"InvalidAMIID.NotFound", "InvalidAMIID.Unavailable", "InvalidAMIID.Malformed"})
# Error codes that mean "slow down and try again later".
THROTTLE_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "InternalError",
        "Unavailable",
    }
)
# CopyImage: too many copies in flight to this destination region.
COPY_LIMIT_CODES = frozenset({"ResourceLimitExceeded", "SnapshotCopyLimitExceeded"})
# The caller's credentials are refused or lack the permission (the CLI's exit code 3).
AUTH_CODES = frozenset(
    {
        "AuthFailure",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "AccessDenied",
        "AccessDeniedException",
    }
)
# Longest error text kept in a report, a log line or a tag.
MAX_ERROR = 500


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or "ClientError"
    return type(exc).__name__


def is_throttle(exc: BaseException) -> bool:
    return error_code(exc) in THROTTLE_CODES


def describe_error(exc: BaseException, limit: int = MAX_ERROR) -> str:
    """`Code: message` of a ClientError, else `Type: message`, at most `limit` characters."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        text = f"{err.get('Code', 'ClientError')}: {err.get('Message', '')}".strip().rstrip(":")
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
