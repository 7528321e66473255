"""What a failed Batch job says, in one line a person can act on.

When a cell's `batch:submitJob.sync` task fails, the workflow's Catch hands the publisher Step
Functions' error object as JSON text ({"Error": "States.TaskFailed", "Cause": "..."}), and its
Cause is, for a job that ran or was cancelled, the job's whole description (DescribeJobs'
shape, as Step Functions passes it: PascalCase keys) as JSON text again. Shown as is, a cell's
reason (the failure mail, `buildfarm status`, the status page) would be the first 500
characters of that JSON. describe_batch_error keeps what tells an operator what happened and
where to look: the job id, Batch's reason, the last attempt's exit code and container reason,
the number of attempts and the log stream of the last one (in the stack's build log group).
"""

from __future__ import annotations

import json
from typing import Any


def _field(mapping: dict[str, Any], name: str) -> Any:
    """A field by its PascalCase name (Step Functions') or camelCase (Batch's own API)."""
    return mapping.get(name, mapping.get(name[:1].lower() + name[1:]))


def _json_object(text: object) -> dict[str, Any] | None:
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def describe_batch_error(error: str) -> str:
    """One line for a caught Batch task error (see the module docstring); text that is not
    such an error comes back as it is."""
    caught = _json_object(error)
    if caught is None:
        return error
    job = _caught_job(caught)
    if job is None:
        return (
            ": ".join(str(part) for part in (_field(caught, "Error"), _field(caught, "Cause")) if part)
            or error
        )
    return describe_job(job)


def batch_job_line(error: str | None) -> str | None:
    """describe_job's line when the error is a caught Batch job's (its Cause a job description),
    else None: what a builder's own failure record leaves out (the job, its attempts, the log
    stream of the last one, which a Spot-reclaimed first attempt's record would hide)."""
    caught = _json_object(error)
    job = _caught_job(caught) if caught is not None else None
    return describe_job(job) if job is not None else None


def _caught_job(caught: dict[str, Any]) -> dict[str, Any] | None:
    job = _json_object(_field(caught, "Cause"))
    return job if job is not None and _field(job, "JobId") is not None else None


def describe_job(job: dict[str, Any]) -> str:
    """A Batch job description in one line: "Batch job ID STATUS: reason; exit N (container
    reason); attempts: N; log stream NAME"."""
    attempts = [a for a in _field(job, "Attempts") or [] if isinstance(a, dict)]
    last = attempts[-1] if attempts else {}
    container = _field(last, "Container") or _field(job, "Container") or {}
    status = str(_field(job, "Status") or "failed").lower()
    reason = _field(job, "StatusReason") or _field(last, "StatusReason")
    parts = [f"Batch job {_field(job, 'JobId')} {status}" + (f": {reason}" if reason else "")]
    exit_code, container_reason = _field(container, "ExitCode"), _field(container, "Reason")
    if exit_code is not None or container_reason:
        exit_text = f"exit {exit_code}" if exit_code is not None else "container"
        parts.append(exit_text + (f" ({container_reason})" if container_reason else ""))
    if len(attempts) > 1:
        parts.append(f"attempts: {len(attempts)}")
    if log_stream := _field(container, "LogStreamName"):
        parts.append(f"log stream {log_stream}")
    return "; ".join(parts)
