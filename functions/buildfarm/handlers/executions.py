"""Whether an execution of this state machine still runs: Step Functions answers.

Execution ids are execution names ($$.Execution.Name); the state machine's executions share
the ARN prefix of the calling execution's ARN ($$.Execution.Id), so no configuration (and no
dependency of the functions on the state machine) is needed. Local runs' ids (local-...) are
not Step Functions executions: their liveness is unknown here, and their claims expire.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from buildfarm.claims import Liveness
from buildfarm.layout import EXECUTION_ID

# arn:<partition>:states:<region>:<account>:execution:<state machine>:<execution name>
_EXECUTION_ARN = re.compile(
    r"(arn:[a-z-]{1,20}:states:[a-z0-9-]{1,30}:[0-9]{12}:execution:[A-Za-z0-9_-]{1,80}:)[^:]{1,80}", re.ASCII
)


def step_functions_liveness(execution_arn: str | None, client: object | None = None) -> Liveness:
    """is_running(execution_id) for the executions of the state machine execution_arn belongs
    to: True while RUNNING (or pending a redrive), False once ended, None if nobody can tell
    (no ARN given, an id that is not an execution name, or Step Functions does not answer)."""
    match = _EXECUTION_ARN.fullmatch(execution_arn or "")
    if not match:
        return lambda execution_id: None
    prefix = match[1]
    sfn: Callable[[], object] = (
        (lambda: client) if client else functools.cache(lambda: boto3.client("stepfunctions"))
    )

    @functools.cache
    def is_running(execution_id: str) -> bool | None:
        if not EXECUTION_ID.fullmatch(execution_id) or execution_id.startswith("local-"):
            return None
        try:
            described = sfn().describe_execution(executionArn=prefix + execution_id)  # type: ignore[attr-defined]
        except (ClientError, BotoCoreError):
            # Including ExecutionDoesNotExist: a name plan.safe_id had to change, or a plan made
            # outside Step Functions. Unknown, never "ended": the claim's expiry decides.
            return None
        return described.get("status") in ("RUNNING", "PENDING_REDRIVE")

    return is_running
