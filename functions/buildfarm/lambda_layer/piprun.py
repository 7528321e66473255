"""Running pip in the target's interpreter, and its failures as one line."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from buildfarm.errors import BuildfarmError, UsageError

PIP_TIMEOUT_SECONDS = 1800
# pip without its version check and prompts (the user's pip configuration still applies).
PIP_ENV = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


@dataclass(frozen=True)
class PipRun:
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_pip(
    interpreter: Path, args: list[str], *, env: dict[str, str] | None = None, index_url: str | None = None
) -> PipRun:
    """`interpreter -m pip ARGS` (with --index-url when given), stdout and stderr together."""
    argv = [str(interpreter), "-m", "pip", *args]
    if index_url:
        argv += ["--index-url", index_url]
    merged = {**(env if env is not None else os.environ), **PIP_ENV}
    try:
        result = subprocess.run(
            argv,
            env=merged,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=PIP_TIMEOUT_SECONDS,
            check=False,
        )
    except OSError as error:
        raise BuildfarmError(f"cannot run {interpreter}: {error.strerror}") from None
    except subprocess.TimeoutExpired:
        return PipRun(124, f"pip {args[0]} took over {PIP_TIMEOUT_SECONDS} s")
    return PipRun(result.returncode, result.stdout)


def hash_mismatch(output: str) -> str | None:
    """pip's hash-mismatch report as one line (None if the output has none)."""
    if "DO NOT MATCH THE HASHES" not in output:
        return None
    which = re.search(r"^\s+(\S+==\S+) from \S+", output, re.MULTILINE)
    expected = re.search(r"Expected (sha[0-9]+) ([0-9a-f]+)", output)
    got = re.search(r"Got +([0-9a-f]+)", output)
    project = which.group(1) if which else "a requirement"
    if expected and got:
        kind, digest = expected.groups()
        return f"hash mismatch for {project}: expected {kind} {digest}, got {got.group(1)}"
    return f"hash mismatch for {project}"


def last_error(output: str) -> str:
    """The line of pip's output that says what went wrong: the first error line of a failed
    build's own output, else pip's last 'ERROR:' line, else the last non-empty line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    block = re.search(r"lines of output\](.*?)\[end of output\]", output, re.DOTALL)
    if block:
        errors = [line.strip() for line in block.group(1).splitlines() if re.search(r"\berror\b", line, re.I)]
        if errors:
            return errors[0]
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR:")]
    meaningful = [error for error in errors if not error.startswith(("Failed building", "Failed to build"))]
    if meaningful:
        return meaningful[-1]
    return lines[-1] if lines else "no output"


def resolution_error(output: str) -> BuildfarmError:
    """The error for a failed resolve: bad input (exit 2) for a hash mismatch, a missing hash or
    a project or version the index does not have; a failure otherwise (exit 1)."""
    mismatch = hash_mismatch(output)
    if mismatch:
        return UsageError(f"requirements: {mismatch}")
    message = last_error(output)
    bad_input = ("No matching distribution", "Hashes are required", "Invalid requirement", "Could not open")
    if any(marker in output for marker in bad_input):
        return UsageError(f"requirements: {message}")
    return BuildfarmError(f"resolving the requirements failed: {message}")
