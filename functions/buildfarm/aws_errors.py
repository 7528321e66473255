"""AWS failures as one line that says what to set: botocore's exceptions (no credentials, no
region, an unreachable endpoint, access denied, a missing bucket or stack, ...) become an
AwsError (exit status 2) instead of a traceback.

explain_aws_error() is used where the code knows what it was doing (the S3 store names the
object and the bucket; a caller may add a hint such as which option names the stack), and by
the CLI's main() as the last resort for any AWS call nobody translated.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit

from buildfarm.errors import UsageError

# The region variable the farm documents (as the AWS CLI v2 and the other SDKs read it, before
# AWS_DEFAULT_REGION); botocore reads only AWS_DEFAULT_REGION, hence aws_region()/honour_aws_region().
REGION_ENV = "AWS_REGION"
DEFAULT_REGION_ENV = "AWS_DEFAULT_REGION"
CREDENTIALS_HINT = (
    "set AWS_PROFILE to a profile in ~/.aws/config (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
)
ENDPOINT_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")  # the overrides a user may have set
# ClientError codes, by what the user has to do about them.
REJECTED_CREDENTIALS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "InvalidToken",
        "AuthFailure",
        "TokenRefreshRequired",
    }
)
ACCESS_DENIED = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AllAccessDisabled",
        "UnauthorizedOperation",
        "AuthorizationError",
        "Forbidden",
        "403",
    }
)
WRONG_REGION = frozenset({"PermanentRedirect", "AuthorizationHeaderMalformed", "301"})
NOT_FOUND = frozenset(
    {
        "ResourceNotFoundException",
        "StateMachineDoesNotExist",
        "ExecutionDoesNotExist",
        "NoSuchKey",
        "NotFound",
        "404",
    }
)
BUSY = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "SlowDown",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "RequestTimeout",
    }
)
_MISSING_STACK = re.compile(r"Stack with id (?P<stack>[A-Za-z0-9:/_.-]+) does not exist", re.ASCII)


class AwsError(UsageError):
    """AWS refused or could not be reached; the message says what to set. Exit status 2."""


def one_line(text: object) -> str:
    """botocore's messages may span lines (ParamValidationError): one line, spaces collapsed."""
    return " ".join(str(text).split())


def aws_region(explicit: str | None = None) -> str | None:
    """The region to give boto3: `explicit` (an option), else $AWS_REGION, else
    $AWS_DEFAULT_REGION; None leaves it to the profile (botocore's own lookup)."""
    return explicit or os.environ.get(REGION_ENV) or os.environ.get(DEFAULT_REGION_ENV) or None


@contextlib.contextmanager
def honour_aws_region() -> Iterator[None]:
    """While inside, boto3 clients made without a region use $AWS_REGION too (it wins over
    $AWS_DEFAULT_REGION, as in the AWS CLI v2), so "set AWS_REGION" is true of every command.
    AWS_DEFAULT_REGION is put back as it was on the way out."""
    region = os.environ.get(REGION_ENV)
    before = os.environ.get(DEFAULT_REGION_ENV)
    if not region or region == before:
        yield
        return
    os.environ[DEFAULT_REGION_ENV] = region
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(DEFAULT_REGION_ENV, None)
        else:
            os.environ[DEFAULT_REGION_ENV] = before


def _region_hint(region_option: bool) -> str:
    where = "set AWS_REGION (or a region for AWS_PROFILE in ~/.aws/config)"
    return f"pass --region or {where}" if region_option else where


def _endpoint(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else url


def _explain_botocore(error: Exception, region_option: bool) -> str:
    """A BotoCoreError (raised on this side: configuration, credentials, connection)."""
    from botocore import exceptions as bce

    kwargs = getattr(error, "kwargs", {}) or {}
    if isinstance(error, bce.NoCredentialsError | bce.PartialCredentialsError | bce.NoAuthTokenError):
        return f"no AWS credentials found: {CREDENTIALS_HINT}"
    if isinstance(error, bce.ProfileNotFound):
        profile = kwargs.get("profile", os.environ.get("AWS_PROFILE", ""))
        return (
            f"AWS profile {profile!r} not found in ~/.aws/config: set AWS_PROFILE to a configured "
            "profile (aws configure list-profiles)"
        )
    if isinstance(error, bce.SSOError | bce.TokenRetrievalError | bce.CredentialRetrievalError):
        reason = one_line(error)
        return f"cannot get AWS credentials ({reason}): renew them (aws sso login) or {CREDENTIALS_HINT}"
    if isinstance(error, bce.NoRegionError):
        return f"no AWS region set: {_region_hint(region_option)}"
    if isinstance(error, bce.InvalidRegionError | bce.UnknownRegionError):
        return f"{one_line(error)}: {_region_hint(region_option)} to a region such as us-east-1"
    if isinstance(error, bce.ConnectionError | bce.HTTPClientError):
        url = kwargs.get("endpoint_url") or kwargs.get("proxy_url") or ""
        where = f" at {_endpoint(str(url))}" if url else ""
        named = [f"{name} ({os.environ[name]})" for name in ENDPOINT_ENV if os.environ.get(name)]
        fix = f"check {' and '.join(named)}" if named else "check the network and AWS_REGION"
        return f"cannot reach AWS{where} ({type(error).__name__}): {fix}"
    return f"AWS: {one_line(error)}"


def _explain_client_error(error: Exception, resource: str, hint: str, region_option: bool) -> str:
    """A ClientError: AWS answered with an error code."""
    response = getattr(error, "response", None) or {}
    details = response.get("Error", {}) if isinstance(response, dict) else {}
    code = str(details.get("Code", "")) or "Error"
    message = one_line(details.get("Message", "")) or code
    operation = getattr(error, "operation_name", "") or "the request"
    on = f" on {resource}" if resource else ""
    then = f"; {hint}" if hint else ""
    if code in REJECTED_CREDENTIALS:
        return f"AWS rejected the credentials ({code}: {message}): renew them or {CREDENTIALS_HINT}"
    if code in ACCESS_DENIED:
        return (
            f"access denied: {operation}{on} ({code}): the AWS identity in use lacks that permission; "
            "set AWS_PROFILE to one that has it"
        )
    if code == "NoSuchBucket":
        bucket = details.get("BucketName") or resource
        return f"S3 bucket {bucket!r} does not exist: {hint or 'check the bucket name'}"
    if code in WRONG_REGION:
        region = details.get("Region") or details.get("Endpoint") or "another region"
        return f"{resource or 'the resource'} is in {region}: {_region_hint(region_option)} to it"
    if missing := _MISSING_STACK.search(message):
        return (
            f"CloudFormation stack {missing['stack']!r} does not exist in this account and region: "
            f"{hint or 'name the deployed stack'}, or {_region_hint(region_option)} to the stack's region"
        )
    if code in NOT_FOUND:
        return f"{resource or operation}: not found ({code}: {message}){then}"
    if code in BUSY:
        return f"AWS is busy or failing ({operation}{on}: {code}): try again later"
    return f"AWS {operation}{on} failed: {code}: {message}{then}"


def is_aws_error(error: BaseException) -> bool:
    """True for botocore's exceptions (without importing botocore when nothing has)."""
    if "botocore.exceptions" not in sys.modules:
        return False
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(error, BotoCoreError | ClientError)


def explain_aws_error(
    error: BaseException, *, resource: str = "", hint: str = "", region_option: bool = False
) -> AwsError:
    """One line for a botocore exception: what failed, and what to set. resource names what was
    being accessed (s3://bucket/key), hint what the caller's user can change (e.g. which option
    names the bucket or stack), region_option whether the command has --region."""
    from botocore.exceptions import ClientError

    if isinstance(error, ClientError):
        return AwsError(_explain_client_error(error, resource, hint, region_option))
    text = _explain_botocore(error, region_option)  # type: ignore[arg-type]
    return AwsError(f"{resource}: {text}" if resource else text)


@contextlib.contextmanager
def aws_errors(resource: str = "", hint: str = "") -> Iterator[None]:
    """Translate botocore's exceptions raised inside into AwsError (the cause kept for logs)."""
    try:
        yield
    except Exception as error:
        if not is_aws_error(error):
            raise
        raise explain_aws_error(error, resource=resource, hint=hint) from error
