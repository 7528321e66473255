"""Every patch of moto the tests use, in one place, pinned to the moto version they were written for.

Each patch is a context manager that undoes itself on exit (nothing is patched by importing this
module), and each says what moto does, what AWS does, and the moto issue where there is one.
tests/ is on sys.path (tests/conftest.py is a rootdir conftest), so every test folder can
`import moto_patches`.

- `s3_conditional_puts_atomic()`: S3 conditional PutObject checks and writes under one lock.
- `lambda_runs_real_handlers()`: Lambda (Docker-less) calls the function's real handler.
- `batch_jobs_finish_with(finish)`: Batch (Docker-less) ends each job the way `finish` says.
- `sfn_batch_parameters_as_aws()`: Step Functions' `batch:submitJob(.sync)` maps its
  parameters and answers through botocore's shapes (moto issue #10076).
- `asl_as_moto_reads_it(definition)`: not a patch but a rewrite of a state machine definition
  that moto's ASL grammar would otherwise reject (the value is unchanged).
- `kms_signs_digests_as_aws()`: KMS Sign honours MessageType=DIGEST for ECDSA keys (moto
  pull request #10202, open).

When moto is upgraded, re-check each patch against the new version's code (the class and method
named in each docstring), drop the ones moto fixed, then move MOTO_VERSION.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import json
import os
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from unittest import mock

import botocore.session
import moto
from botocore import xform_name

MOTO_VERSION = "5.2.5"
if moto.__version__ != MOTO_VERSION:
    raise RuntimeError(
        f"tests/moto_patches.py is written for moto {MOTO_VERSION}, but moto {moto.__version__} is "
        "installed: re-check each patch in that module against this moto, drop the ones it fixed, "
        f"and set MOTO_VERSION (or install moto=={MOTO_VERSION})"
    )

# moto's internals, imported only once the version is known to be the one patched here.
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed  # noqa: E402
from moto.awslambda_simple.models import LambdaSimpleBackend  # noqa: E402
from moto.batch_simple.models import BatchSimpleBackend  # noqa: E402
from moto.kms.responses import KmsResponse  # noqa: E402
from moto.kms.utils import ECDSAPrivateKey  # noqa: E402
from moto.s3.responses import S3Response  # noqa: E402
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch import (  # noqa: E402
    StateTaskServiceBatch,
)

# -- S3: conditional writes are atomic -------------------------------------------------------

_conditional_put_lock = threading.Lock()


@contextlib.contextmanager
def s3_conditional_puts_atomic() -> Iterator[None]:
    """moto honours PutObject If-None-Match / If-Match (412 PreconditionFailed; If-Match on a
    missing key gives 404 NoSuchKey, like S3) and DeleteObject If-Match, but its check and its
    write are two steps without a lock (S3Response.put_object), so two concurrent conditional
    writes to one key can both pass the check. S3 never allows that: the first write wins and
    the others get 412. Conditional PutObjects are serialised; unconditional ones untouched.
    No moto issue filed."""
    original = S3Response.put_object

    @functools.wraps(original)
    def put_object(self: S3Response, *args: Any, **kwargs: Any) -> Any:
        if self.headers.get("If-Match") or self.headers.get("If-None-Match"):
            with _conditional_put_lock:
                return original(self, *args, **kwargs)
        return original(self, *args, **kwargs)

    with mock.patch.object(S3Response, "put_object", put_object):
        yield


# -- Lambda: the real handler runs ---------------------------------------------------------

_environ_lock = threading.Lock()


class LambdaContext:
    """What Powertools reads from the Lambda context."""

    def __init__(self, function_name: str, arn: str, memory: int, timeout: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = arn
        self.memory_limit_in_mb = memory
        self.aws_request_id = hashlib.sha1(f"{arn}{time.time_ns()}".encode()).hexdigest()
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "test"
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _invoke_real_handler(
    self: LambdaSimpleBackend,
    function_name: str,
    qualifier: str | None,
    body: Any,
    headers: Any,
    response_headers: Any,
) -> bytes:
    fn = self.get_function(function_name, qualifier)
    module_name, _, attribute = fn.handler.rpartition(".")
    event = json.loads(body) if body else {}
    environment = {
        **fn.environment_vars,
        "AWS_REGION": self.region_name,
        "AWS_DEFAULT_REGION": self.region_name,
        "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
        "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
    }
    context = LambdaContext(fn.function_name, fn.function_arn, int(fn.memory_size), int(fn.timeout))
    # Handlers read their configuration from os.environ, as in Lambda; the lock keeps
    # invocations serial so that one's environment never leaks into another's.
    with _environ_lock, mock.patch.dict(os.environ, environment):
        try:
            handler = getattr(importlib.import_module(module_name), attribute)
            result = handler(event, context)
        except Exception as error:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(
                {
                    "errorMessage": str(error),
                    "errorType": type(error).__name__,
                    "stackTrace": traceback.format_exception(error)[-5:],
                }
            ).encode()
    return json.dumps(result).encode()


@contextlib.contextmanager
def lambda_runs_real_handlers() -> Iterator[None]:
    """moto's Docker-less Lambda (LambdaSimpleBackend.invoke) runs nothing: it echoes the
    request body. AWS runs the function's handler. Here Invoke imports the function's handler
    (`module.attribute`, from the importable code of this repository) and calls it in-process
    with the event, a context and the function's environment; an exception becomes the
    FunctionError answer AWS gives ("Unhandled", errorMessage, errorType, stackTrace). Not a
    moto bug: moto offers Docker for real runs, which these tests do without."""
    with mock.patch.object(LambdaSimpleBackend, "invoke", _invoke_real_handler):
        yield


# -- Batch: jobs finish as the test says ------------------------------------------------------

# finish(environment) -> (succeeded, status reason); environment is the job's container
# environment (job definition, then the submit's overrides).
JobFinisher = Callable[[dict[str, str]], tuple[bool, str]]


@contextlib.contextmanager
def batch_jobs_finish_with(finish: JobFinisher) -> Iterator[None]:
    """moto's Docker-less Batch (BatchSimpleBackend._mark_job_as_finished) runs no container: at
    submit it marks every job SUCCEEDED (or FAILED if MOTO_SIMPLE_BATCH_FAIL_AFTER is set). AWS
    runs the job's container, which does the work and exits. Here each submitted job calls
    `finish` with its container environment, as a container would start with it; the job ends
    SUCCEEDED or FAILED with the reason `finish` returns. `finish` runs at submit time on the
    submitting thread, and may block (a job still running). Not a moto bug (see Lambda)."""

    def finish_job(self: BatchSimpleBackend, include_start_attempt: bool, job: Any) -> None:
        # As moto's own method does, up to the point where it decides the outcome.
        self.backend._jobs[job.job_id] = job
        job.job_started_at = datetime.now()
        job.log_stream_name = job._stream_name
        if include_start_attempt:
            job._start_attempt()
        environment = {
            variable["name"]: variable["value"]
            for variable in [
                *job.job_definition.container_properties.get("environment", []),
                *job.container_overrides.get("environment", []),
            ]
        }
        succeeded, reason = finish(environment)
        job.job_stopped_reason = reason
        job._mark_stopped(success=succeeded)

    with mock.patch.object(BatchSimpleBackend, "_mark_job_as_finished", finish_job):
        yield


# -- Step Functions: batch:submitJob(.sync) parameters as AWS maps them (moto #10076) ---------

_batch_model = botocore.session.get_session().get_service_model("batch")


def _batch_operation(action: str) -> Any:
    snake = xform_name(action)
    name = next(op for op in _batch_model.operation_names if xform_name(op) == snake)
    return _batch_model.operation_model(name)


def _normalise_parameters(
    self: StateTaskServiceBatch,
    parameters: dict,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    action = service_action_name or self.resource.api_action
    self._to_boto_request(parameters, _batch_operation(action).input_shape)


def _normalise_response(
    self: StateTaskServiceBatch,
    response: Any,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    action = service_action_name or self.resource.api_action
    self._from_boto_response(response, _batch_operation(action).output_shape)


@contextlib.contextmanager
def sfn_batch_parameters_as_aws() -> Iterator[None]:
    """moto issue #10076: for `arn:aws:states:::batch:submitJob(.sync)` moto's interpreter
    (StateTaskServiceBatch) passes the state's SFN-cased parameters (JobName, JobQueue,
    ContainerOverrides.Environment[].Name, ...) to boto3 unchanged, and reads `JobId` from
    boto3's camelCase answer, so the job is never submitted. AWS Step Functions maps parameters
    and answers between its PascalCase and the Batch API's camelCase. Here both go through
    botocore's Batch shapes, as AWS does."""
    with (
        mock.patch.object(StateTaskServiceBatch, "_normalise_parameters", _normalise_parameters),
        mock.patch.object(StateTaskServiceBatch, "_normalise_response", _normalise_response),
    ):
        yield


# -- Step Functions: the ASL grammar's number literals ----------------------------------------

_INTEGER_TOLERANCE = re.compile(r'("ToleratedFailurePercentage"\s*:\s*)([0-9]+)(?=\s*[,}])')


def asl_as_moto_reads_it(definition: str) -> str:
    """moto's ASL lexer reads `"ToleratedFailurePercentage": 100` as an INT token where its
    grammar wants NUMBER, and rejects the definition; AWS (and CDK, which writes the integer)
    take any JSON number there. The same numbers are written as decimals (100 -> 100.0), which
    moto reads; the definition's JSON value is unchanged (checked). No moto issue filed."""
    rewritten = _INTEGER_TOLERANCE.sub(r"\g<1>\g<2>.0", definition)
    assert json.loads(rewritten) == json.loads(definition)
    return rewritten


# -- KMS: Sign with MessageType=DIGEST signs the digest (moto PR #10202) ----------------------

_kms_request = threading.local()
_ECDSA_HASHES = {
    "ECDSA_SHA_256": hashes.SHA256,
    "ECDSA_SHA_384": hashes.SHA384,
    "ECDSA_SHA_512": hashes.SHA512,
}


@contextlib.contextmanager
def kms_signs_digests_as_aws() -> Iterator[None]:
    """moto's KMS Sign reads MessageType and drops it (KmsResponse.sign; KmsBackend.verify's
    docstring says DIGEST is not implemented), so an ECDSA key hashes a DIGEST message again
    and the signature does not verify against the data. AWS signs the given digest, whose
    length must be the algorithm's hash length. Here a DIGEST Sign on an ECDSA key signs the
    message as that digest (and refuses a digest of the wrong length); RAW is untouched. moto
    pull request #10202 (open) implements DIGEST for Sign and Verify."""
    original_response, original_sign = KmsResponse.sign, ECDSAPrivateKey.sign

    @functools.wraps(original_response)
    def sign_response(self: KmsResponse) -> str:
        _kms_request.digest = self._get_param("MessageType") == "DIGEST"
        try:
            return original_response(self)
        finally:
            _kms_request.digest = False

    @functools.wraps(original_sign)
    def sign(self: ECDSAPrivateKey, message: bytes, signing_algorithm: str) -> bytes:
        if not getattr(_kms_request, "digest", False):
            return original_sign(self, message, signing_algorithm)
        algorithm = _ECDSA_HASHES[signing_algorithm]()
        assert signing_algorithm in self.valid_signing_algorithms, signing_algorithm
        assert len(message) == algorithm.digest_size, f"a {len(message)}-byte digest for {signing_algorithm}"
        return self.private_key.sign(message, ec.ECDSA(Prehashed(algorithm)))

    with (
        mock.patch.object(KmsResponse, "sign", sign_response),
        mock.patch.object(ECDSAPrivateKey, "sign", sign),
    ):
        yield
