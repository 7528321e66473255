"""The workflow input (DESIGN.md "Workflow input") validated at the edge into a typed model.

Syntax and the registry (platforms, arches) are checked here; whether a version or
series exists is checked by the planner against releases.json, before anything is written.
Every error is one line naming the offending value.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import ErrorDetails

from buildfarm.config import FarmConfig
from buildfarm.errors import VALUE_ERROR, first_error
from buildfarm.platforms import Registry, UnknownArchError, arch_names, canonical_arch, load_registry
from buildfarm.suggest import unknown_name
from buildfarm.versions import check_version_or_series

MAX_VERSIONS = 200
MAX_PLATFORMS = 64
MAX_ARCHES = 8  # more than there are, so an unknown arch is named rather than the list's length
MAX_INPUT_BYTES = 64 * 1024
ALLOWED_KEYS = ("versions", "platforms", "arches", "force", "dry_run")


class InputError(ValueError):
    """Invalid workflow input; the message names the bad value. Nothing has been written."""


def _no_duplicates(values: list[str], what: str) -> list[str]:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} {value!r}")
        seen.add(value)
    return values


class WorkflowInput(BaseModel):
    """{"versions": [...], "platforms": [...], "arches": [...], "force": bool, "dry_run": bool}.

    All keys optional; {} is what the schedule sends.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    versions: list[str] | None = Field(default=None, min_length=1, max_length=MAX_VERSIONS)
    platforms: list[str] | None = Field(default=None, min_length=1, max_length=MAX_PLATFORMS)
    arches: list[str] | None = Field(default=None, min_length=1, max_length=MAX_ARCHES)
    force: bool = False
    dry_run: bool = False

    @field_validator("versions")
    @classmethod
    def _versions(cls, values: list[str] | None) -> list[str] | None:
        if values is None:
            return None
        for value in values:
            check_version_or_series(value)  # VersionError is a ValueError: pydantic reports it
        return _no_duplicates(values, "version")

    @field_validator("arches")
    @classmethod
    def _arches(cls, values: list[str] | None) -> list[str] | None:
        if values is None:
            return None
        try:
            arches = [canonical_arch(value) for value in values]  # amd64 -> x86_64, arm64 -> aarch64
        except UnknownArchError as error:
            raise ValueError(str(error)) from None
        return _no_duplicates(arches, "arch")

    @field_validator("platforms")
    @classmethod
    def _platforms(cls, values: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if values is None:
            return None
        registry = load_registry()
        # With a deployment's config, the names offered are the ones it accepts (its enabled
        # platforms): a platform it has no builder for is not "known" to it.
        accepted = (info.context or {}).get("accepted_platforms") or tuple(registry.platforms)
        label = "known" if set(accepted) == set(registry.platforms) else "enabled"
        for value in values:
            if value not in registry.platforms:
                raise ValueError(unknown_name("platform", value, list(accepted), label))
        return _no_duplicates(values, "platform")


def _describe(value: Any) -> str:
    try:
        text = repr(value) if isinstance(value, str | bytes) else json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _format_error(error: ValidationError) -> str:
    """The first pydantic error as one line: where, what, and the offending value (unless a
    validator's own message names it already)."""
    first = error.errors()[0]
    if first["type"] == "extra_forbidden":
        return f"unknown key {str(first['loc'][-1])!r} (allowed: {', '.join(ALLOWED_KEYS)})"
    return first_error(error, brackets=True, describe=_with_value)


def _with_value(first: ErrorDetails) -> str:
    message = str(first["msg"]).removeprefix(VALUE_ERROR)
    if message.startswith(("malformed", "unknown", "duplicate")):
        return message  # the validator's own message names the value already
    return f"{message}, got {_describe(first.get('input'))}"


def parse_workflow_input(
    raw: Any, config: FarmConfig | None = None, registry: Registry | None = None
) -> WorkflowInput:
    """Validate a workflow input (a dict, or None meaning {}); InputError names the bad value.

    With a config, platforms/arches must also be enabled there (whatever their end-of-support
    date: naming an ended platform builds it).
    """
    raw = _decoded(raw)
    if not isinstance(raw, dict):
        raise InputError(f"invalid workflow input: expected a JSON object, got {_describe(raw)}")
    try:
        context = {"accepted_platforms": config.enabled_platforms} if config is not None else None
        request = WorkflowInput.model_validate(raw, context=context)
    except ValidationError as error:
        raise InputError(f"invalid workflow input: {_format_error(error)}") from None
    if config is not None:
        # A named platform past its end of support is built (the dates only steer the schedule);
        # one this deployment has no builder for is not.
        for platform in request.platforms or ():
            if platform not in config.enabled_platforms:
                ended = (registry or load_registry()).get(platform).end_of_support.isoformat()
                enabled = ", ".join(config.enabled_platforms)
                raise InputError(
                    f"invalid workflow input: platforms: platform {platform!r} is not enabled in this "
                    f"deployment (no builder; end of support {ended}; enabled: {enabled})"
                )
        for arch in request.arches or ():
            if arch not in config.enabled_arches:
                raise InputError(
                    f"invalid workflow input: arches: arch {arch!r} is not enabled "
                    f"(enabled: {', '.join(config.enabled_arches)})"
                )
    return request


class _TooDeep(ValueError):
    """JSON nested deeper than json.loads follows (it raises RecursionError, not ValueError)."""


def _loads(text: str | bytes) -> Any:
    """json.loads; a ValueError (_TooDeep) for a text nested too deeply to decode too."""
    try:
        return json.loads(text)
    except RecursionError:
        raise _TooDeep("nested too deeply") from None


def _decoded(raw: Any) -> Any:
    """The input as Plan reads it: None is {}, a JSON text is decoded; InputError for a text
    too large or not JSON."""
    if raw is None:
        return {}
    if isinstance(raw, str | bytes):
        if len(raw) > MAX_INPUT_BYTES:
            raise InputError(f"invalid workflow input: larger than {MAX_INPUT_BYTES} bytes")
        try:
            return _loads(raw)
        except _TooDeep:
            raise InputError(f"invalid workflow input: nested too deeply: {_describe(raw)}") from None
        except ValueError:
            raise InputError(f"invalid workflow input: not a JSON object: {_describe(raw)}") from None
    return raw


def asks_for_dry_run(raw: Any) -> bool:
    """Whether a workflow input, valid or not, says dry_run: Recover runs before Plan validates
    it and must write nothing then. A JSON text counts as Plan reads it."""
    try:
        raw = _decoded(raw)
    except InputError:
        return False
    return isinstance(raw, dict) and raw.get("dry_run") is True


# -- command line: the same input from flags, shared by `plan`, `run` and `trigger` ----------


def _split(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def add_matrix_arguments(parser: argparse.ArgumentParser) -> None:
    """--input JSON | --versions/--platforms/--arches (space or comma separated) --force."""
    parser.add_argument("--input", metavar="JSON", help="the workflow input as JSON (instead of the flags)")
    parser.add_argument("--versions", nargs="+", metavar="V", help="releases (3.13.5) or series (3.13)")
    parser.add_argument(
        "--platforms",
        nargs="+",
        metavar="P",
        help="platform ids (default: the enabled ones not past end of support)",
    )
    parser.add_argument("--arches", nargs="+", metavar="A", help=f"{arch_names()} (default: all enabled)")
    parser.add_argument("--force", action="store_true", help="rebuild cells that are already published")


def raw_input_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The workflow input dict the flags describe (not yet validated). InputError if mixed."""
    flags = {
        "versions": _split(args.versions),
        "platforms": _split(args.platforms),
        "arches": _split(args.arches),
    }
    if args.input is not None:
        if any(value is not None for value in flags.values()) or args.force:
            raise InputError("use either --input or --versions/--platforms/--arches/--force, not both")
        try:
            raw = _loads(args.input)
        except ValueError as error:
            raise InputError(f"--input is not JSON ({error}): {_describe(args.input)}") from None
        if not isinstance(raw, dict):
            raise InputError(f"--input must be a JSON object, got {_describe(raw)}")
        return raw
    raw: dict[str, Any] = {key: value for key, value in flags.items() if value is not None}
    if args.force:
        raw["force"] = True
    return raw
