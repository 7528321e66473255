"""The farm's configuration: environment variables (Lambda and CLI) validated into one typed model."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from buildfarm.errors import UsageError
from buildfarm.platforms import ARCHES, Registry, load_registry
from buildfarm.versions import is_series

DEFAULT_STORE = "./dist"
DEFAULT_RELEASES_URL = "https://www.python.org/api/v2/downloads"
DEFAULT_SOURCE_MIRROR = "https://www.python.org/ftp/python"
# Half the timeout: room for jobs slower than the estimate, Batch queueing and Spot retries.
BUDGET_MARGIN = 0.5

_S3_STORE = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\x00-\x1f]*)?", re.ASCII)

# Numeric variables: name -> (field, type, minimum).
_NUMBERS: dict[str, tuple[str, type, float]] = {
    "BUILDFARM_RELEASES_PER_SERIES": ("releases_per_series", int, 1),
    "BUILDFARM_RELEASES_MAX_AGE_HOURS": ("releases_max_age_hours", float, 0),
    "BUILDFARM_CLAIM_TTL_SECONDS": ("claim_ttl_seconds", int, 60),
    "BUILDFARM_MAX_CONCURRENCY": ("max_concurrency", int, 1),
    "BUILDFARM_EXECUTION_TIMEOUT_HOURS": ("execution_timeout_hours", float, 0),
    "BUILDFARM_JOB_MINUTES_ESTIMATE": ("job_minutes_estimate", float, 0),
    "BUILDFARM_MAX_CELLS_PER_EXECUTION": ("max_cells_per_execution", int, 1),
}


class ConfigError(UsageError, ValueError):
    """A bad environment variable or option; the message names it and its value."""


class FarmConfig(BaseModel):
    """Everything the planner and publisher need to know that is not in the request.

    enabled_platforms are the platforms this deployment can build (where it has builders),
    always a concrete tuple: from_env fills in every registry platform when the variable is
    unset. Which of them the schedule builds is decided at plan time from their end-of-support
    dates (buildfarm.policy); an enabled platform past its date is still built when named.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: str = DEFAULT_STORE
    enabled_platforms: tuple[str, ...]
    enabled_arches: tuple[Literal["x86_64", "aarch64"], ...] = ("x86_64", "aarch64")
    lowest_series: str = "3.9"  # a hard floor, also for named versions
    # The schedule builds the newest N releases of each live series (buildfarm.policy).
    releases_per_series: int = Field(default=2, ge=1)
    prereleases: bool = False
    # python.org's downloads API base: <base>/release/ and <base>/release_file/?release=<id>
    releases_url: str = DEFAULT_RELEASES_URL
    # A refresh is due when the last one is older than this. Half an hour, below the hourly
    # schedule's period: every scheduled run refreshes even when cron starts it early (an age
    # equal to the period let jitter skip refreshes). Costs one request when nothing is new.
    releases_max_age_hours: float = Field(default=0.5, gt=0)
    releases_timeout_seconds: float = Field(default=10.0, gt=0)
    public_base_url: str | None = None
    claim_ttl_seconds: int = Field(default=14400, ge=60)
    source_mirror: str = DEFAULT_SOURCE_MIRROR
    optimization: Literal["pgo+lto", "none"] = "pgo+lto"
    # The time budget of one execution (DESIGN "Workflow"): Plan claims at most
    # cells_per_execution cells, so that an execution ends well within its timeout; a backlog is
    # caught up by later scheduled runs. The same values configure the stack.
    max_concurrency: int = Field(default=20, ge=1)
    execution_timeout_hours: float = Field(default=24.0, gt=0)
    job_minutes_estimate: float = Field(default=40.0, gt=0)
    max_cells_per_execution: int | None = Field(default=None, ge=1)

    @property
    def cells_per_execution(self) -> int:
        """The explicit cap, else concurrency x (timeout / job estimate) x BUDGET_MARGIN: the
        cells that finish in half the timeout even if every job takes the estimate."""
        if self.max_cells_per_execution is not None:
            return self.max_cells_per_execution
        waves = self.execution_timeout_hours * 60 / self.job_minutes_estimate
        return max(1, int(self.max_concurrency * waves * BUDGET_MARGIN))

    @classmethod
    def defaults(cls, registry: Registry | None = None, **overrides: object) -> FarmConfig:
        """The default configuration (every registry platform enabled), with keyword overrides."""
        registry = registry or load_registry()
        values: dict[str, object] = {"enabled_platforms": tuple(registry.platforms)}
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, registry: Registry | None = None
    ) -> FarmConfig:
        """Read the BUILDFARM_* variables; raise ConfigError naming the first bad one."""
        env = os.environ if environ is None else environ
        registry = registry or load_registry()
        values: dict[str, object] = {}

        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value is not None and value.strip() else None

        if (store := get("BUILDFARM_STORE")) is not None:
            values["store"] = store

        platforms = get("BUILDFARM_ENABLED_PLATFORMS")
        values["enabled_platforms"] = (
            _known_list("BUILDFARM_ENABLED_PLATFORMS", platforms, tuple(registry.platforms), "platform")
            if platforms is not None
            else tuple(registry.platforms)
        )
        if (arches := get("BUILDFARM_ENABLED_ARCHES")) is not None:
            values["enabled_arches"] = _known_list("BUILDFARM_ENABLED_ARCHES", arches, ARCHES, "arch")

        if (series := get("BUILDFARM_LOWEST_SERIES")) is not None:
            if not is_series(series):
                raise ConfigError(f"BUILDFARM_LOWEST_SERIES: {series!r} is not a series like 3.9")
            values["lowest_series"] = series

        for name, (field, kind, minimum) in _NUMBERS.items():
            if (text := get(name)) is not None:
                values[field] = _number(name, text, kind, minimum=minimum)

        if (pre := get("BUILDFARM_PRERELEASES")) is not None:
            values["prereleases"] = _boolean("BUILDFARM_PRERELEASES", pre)

        if (url := get("BUILDFARM_RELEASES_URL")) is not None:
            values["releases_url"] = _url("BUILDFARM_RELEASES_URL", url).rstrip("/")

        if (base := get("BUILDFARM_PUBLIC_BASE_URL")) is not None:
            values["public_base_url"] = _url("BUILDFARM_PUBLIC_BASE_URL", base)

        if (mirror := get("BUILDFARM_SOURCE_MIRROR")) is not None:
            values["source_mirror"] = _url(
                "BUILDFARM_SOURCE_MIRROR", mirror, schemes=("http", "https", "file")
            )

        if (opt := get("BUILDFARM_OPTIMIZATION")) is not None:
            if opt not in ("pgo+lto", "none"):
                raise ConfigError(f"BUILDFARM_OPTIMIZATION: {opt!r} is not one of pgo+lto, none")
            values["optimization"] = opt

        return cls(**values)


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))


def _known_list(name: str, text: str, known: tuple[str, ...], what: str) -> tuple[str, ...]:
    """A comma-separated list of known ids, at least one; ConfigError names the first unknown one."""
    ids = _comma_list(text)
    for value in ids:
        if value not in known:
            raise ConfigError(f"{name}: unknown {what} {value!r} (known: {', '.join(known)})")
    if not ids:
        raise ConfigError(f"{name}: no {what} in {text!r}")
    return ids


def _boolean(name: str, text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: {text!r} is not true or false")


_INTEGER = re.compile(r"[0-9]{1,12}", re.ASCII)
_DECIMAL = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,6})?", re.ASCII)


def _number(name: str, text: str, kind: type, minimum: float = 0) -> float | int:
    # ASCII digits only: int()/float() would also take "١٢", "1e9", "inf" and "nan".
    if not (_INTEGER if kind is int else _DECIMAL).fullmatch(text):
        raise ConfigError(f"{name}: {text!r} is not a number")
    value = kind(text)
    if value <= 0 or value < minimum:
        raise ConfigError(f"{name}: {text!r} is too small (minimum {max(minimum, 1)})")
    return value


def _url(name: str, text: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme not in schemes:
        raise ConfigError(f"{name}: {text!r} is not a {'/'.join(schemes)} URL")
    return text


def resolve_store_location(explicit: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The store a command uses: the --store value, else $BUILDFARM_STORE, else ./dist. A
    directory (file:// accepted) becomes an absolute path; s3://BUCKET[/PREFIX] stays as given.
    Raises ConfigError naming anything else."""
    env = os.environ if environ is None else environ
    location = explicit or (env.get("BUILDFARM_STORE") or "").strip() or DEFAULT_STORE
    if location.startswith("s3://"):
        if not _S3_STORE.fullmatch(location):
            raise ConfigError(f"malformed S3 store {location!r} (s3://BUCKET/PREFIX)")
        return location
    if "://" in location and not location.startswith("file://"):
        raise ConfigError(f"unsupported store {location!r} (a directory or s3://BUCKET/PREFIX)")
    directory = os.path.abspath(location.removeprefix("file://"))
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ConfigError(f"store {directory!r} is not a directory")
    return directory
