"""The farm's configuration: one typed model for the Lambdas, the CLI and the stack.

Each setting is declared once, with its default, its bounds, the environment variable it is read
from (`Env`, for the Lambdas and the CLI) and its cdk.json context key (the field's alias):

- WorkflowSettings: what the stack and the functions both know (the version policy, the
  optimization, the budget). The stack sets these variables for its Lambdas from the same fields
  (infra.config.InfraConfig.lambda_environment).
- FarmConfig (WorkflowSettings + the store, the enabled platforms, claims and release refreshes):
  what the planner and publisher read, from the environment (from_env).
- infra.config.InfraConfig (WorkflowSettings + the stack's own keys), from cdk.json context.

Values arrive as text from both sources (`VAR=40`, `cdk -c buildfarm:key=40`): numbers in ASCII
digits only, booleans as true/false, lists comma-separated, blank means the default. A bad value
raises ConfigError naming the variable or key and the value.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Self, Union, get_args, get_origin
from urllib.parse import unquote, urlsplit

from packaging.version import Version
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import ErrorDetails, PydanticUseDefault

from buildfarm.errors import UsageError
from buildfarm.layout import BUCKET_NAME
from buildfarm.platforms import ARCHES, Registry, load_registry
from buildfarm.versions import is_series, series_of

DEFAULT_STORE = "./dist"
DEFAULT_RELEASES_URL = "https://www.python.org/api/v2/downloads"
DEFAULT_SOURCE_MIRROR = "https://www.python.org/ftp/python"
# Half the timeout: room for jobs slower than the estimate, Batch queueing and Spot retries.
BUDGET_MARGIN = 0.5

_S3_STORE = re.compile(rf"s3://{BUCKET_NAME.pattern}(/[^\x00-\x1f]*)?", re.ASCII)
_INTEGER = re.compile(r"[0-9]{1,12}", re.ASCII)
_DECIMAL = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,6})?", re.ASCII)
# A KMS key id (UUID or mrk-...), its ARN, an alias name or alias ARN.
_KMS_KEY = re.compile(
    r"(arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/|alias/)[A-Za-z0-9/_-]{1,256}|[A-Za-z0-9-]{1,64}",
    re.ASCII,
)
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class ConfigError(UsageError, ValueError):
    """A bad environment variable, context key or option; the message names it and its value."""


@dataclass(frozen=True)
class Env:
    """Field metadata: the environment variable the setting is read from."""

    name: str


def _kind(annotation: Any) -> Any:
    """bool, int, float or tuple for the annotations that text is parsed into; else None."""
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    if get_origin(annotation) is tuple:
        return tuple
    return annotation if annotation in (bool, int, float) else None


def _from_text(text: str, kind: Any) -> Any:
    if kind is bool:
        if text.lower() not in (*_TRUE, *_FALSE):
            raise ValueError(f"{text!r} is not true or false")
        return text.lower() in _TRUE
    if kind in (int, float):
        # ASCII digits only: int()/float() would also take "١٢", "1e9", "inf" and "nan".
        if not (_INTEGER if kind is int else _DECIMAL).fullmatch(text):
            raise ValueError(f"{text!r} is not a number")
        return kind(text)
    if kind is tuple:
        return tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    return text


def _known(ids: tuple[str, ...], known: tuple[str, ...], what: str) -> tuple[str, ...]:
    """At least one id, each a known one; the error names the first unknown one."""
    for value in ids:
        if value not in known:
            raise ValueError(f"unknown {what} {value!r} (known: {', '.join(known)})")
    if not ids:
        raise ValueError(f"no {what} given")
    return ids


def known_platforms(ids: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
    """Platform ids of the registry in the validation context (else the default registry)."""
    registry = (info.context or {}).get("registry") or load_registry()
    return _known(ids, tuple(registry.platforms), "platform")


def _url(text: str | None, schemes: tuple[str, ...] = ("http", "https")) -> str | None:
    scheme = text.split("://", 1)[0].lower() if text and "://" in text else ""
    if text is not None and scheme not in schemes:
        raise ValueError(f"{text!r} is not a {'/'.join(schemes)} URL")
    return text


# How a pydantic error reads after "<variable or key>: ".
_PHRASES = {
    "greater_than_equal": "{input} is too small (minimum {ge})",
    "greater_than": "{input} is too small (it must be more than {gt})",
    "less_than_equal": "{input} is too large (maximum {le})",
    "literal_error": "{input} is not one of {expected}",
    "extra_forbidden": "unknown setting",
}


def _shown(value: object) -> str:
    """A value in a message: strings quoted, whole floats as integers (0, not 0.0)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, str) else str(value)


def _describe(error: ErrorDetails) -> str:
    if error["type"] == "value_error":
        return str(error.get("ctx", {}).get("error"))
    phrase = _PHRASES.get(error["type"])
    if phrase is not None:
        context = {
            key: value if key == "expected" else _shown(value) for key, value in error.get("ctx", {}).items()
        }
        return phrase.format(input=_shown(error.get("input")), **context)
    return f"{error['msg']} (got {error.get('input')!r})"


class WorkflowSettings(BaseModel):
    """The settings the stack and the functions share (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    # Fields where an empty value means itself, not the default (InfraConfig's schedule).
    blank_is_a_value: ClassVar[frozenset[str]] = frozenset()

    enabled_arches: Annotated[tuple[str, ...], Env("BUILDFARM_ENABLED_ARCHES")] = Field(
        ARCHES, alias="enabledArches"
    )
    # A hard floor, also for named versions.
    lowest_series: Annotated[str, Env("BUILDFARM_LOWEST_SERIES")] = Field("3.9", alias="lowestSeries")
    # The schedule builds the newest N releases of each live series (buildfarm.policy).
    releases_per_series: Annotated[int, Env("BUILDFARM_RELEASES_PER_SERIES")] = Field(
        2, ge=1, le=100, alias="releasesPerSeries"
    )
    # A scheduled run retries a cell whose newest build failed this long after the failure,
    # doubling with each failed build in a row up to a week (buildfarm.retry).
    failed_retry_hours: Annotated[float, Env("BUILDFARM_FAILED_RETRY_HOURS")] = Field(
        6.0, gt=0, le=168, alias="failedRetryHours"
    )
    prereleases: Annotated[bool, Env("BUILDFARM_PRERELEASES")] = Field(False, alias="prereleases")
    optimization: Annotated[Literal["pgo+lto", "none"], Env("BUILDFARM_OPTIMIZATION")] = Field(
        "pgo+lto", alias="optimization"
    )
    # python.org's downloads API base: <base>/release/ and <base>/release_file/?release=<id>
    releases_url: Annotated[str, Env("BUILDFARM_RELEASES_URL")] = Field(
        DEFAULT_RELEASES_URL, alias="releasesUrl"
    )
    source_mirror: Annotated[str, Env("BUILDFARM_SOURCE_MIRROR")] = Field(
        DEFAULT_SOURCE_MIRROR, alias="sourceMirror"
    )
    # The time budget of one execution (DESIGN "Workflow"): Plan claims at most
    # cells_per_execution cells, so that an execution ends well within its timeout; a backlog is
    # caught up by later scheduled runs. The stack's Map and state machine timeout use the same.
    max_concurrency: Annotated[int, Env("BUILDFARM_MAX_CONCURRENCY")] = Field(
        20, ge=1, le=10000, alias="maxConcurrency"
    )
    execution_timeout_hours: Annotated[float, Env("BUILDFARM_EXECUTION_TIMEOUT_HOURS")] = Field(
        24.0, gt=0, le=24 * 365, alias="executionTimeoutHours"
    )
    # What one cell's job is expected to take.
    job_minutes_estimate: Annotated[float, Env("BUILDFARM_JOB_MINUTES_ESTIMATE")] = Field(
        40.0, gt=0, alias="jobMinutesEstimate"
    )
    max_cells_per_execution: Annotated[int | None, Env("BUILDFARM_MAX_CELLS_PER_EXECUTION")] = Field(
        None, ge=1, alias="maxCellsPerExecution"
    )

    @field_validator("*", mode="before")
    @classmethod
    def _text(cls, value: Any, info: ValidationInfo) -> Any:
        """Text (an environment variable, a `cdk -c` value) into the field's type; blank = default."""
        name = info.field_name or ""
        blank = value is None or (isinstance(value, str) and not value.strip())
        if blank and name not in cls.blank_is_a_value:
            raise PydanticUseDefault()
        if not isinstance(value, str):
            return value
        return _from_text(value.strip(), _kind(cls.model_fields[name].annotation))

    @field_validator("enabled_arches")
    @classmethod
    def _arches(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _known(value, ARCHES, "arch")

    @field_validator("lowest_series")
    @classmethod
    def _series(cls, value: str) -> str:
        if not is_series(value):
            raise ValueError(f"{value!r} is not a series like 3.9")
        return value

    def unsupported_version(self, version: str) -> str | None:
        """Why a well-formed release or series is below lowest_series (a hard floor, also for a
        named version, as the planner's resolve_versions says), or None."""
        series = version if is_series(version) else series_of(version)
        if Version(series) >= Version(self.lowest_series):
            return None
        return f"version {version!r} is below the lowest supported series {self.lowest_series}"

    @field_validator("releases_url")
    @classmethod
    def _releases_url(cls, value: str) -> str:
        return (_url(value) or "").rstrip("/")

    @field_validator("source_mirror")
    @classmethod
    def _mirror(cls, value: str) -> str:
        return _url(value, schemes=("http", "https", "file")) or ""

    @property
    def cells_per_execution(self) -> int:
        """The explicit cap, else concurrency x (timeout / job estimate) x BUDGET_MARGIN: the
        cells that finish in half the timeout even if every job takes the estimate."""
        if self.max_cells_per_execution is not None:
            return self.max_cells_per_execution
        waves = self.execution_timeout_hours * 60 / self.job_minutes_estimate
        return max(1, int(self.max_concurrency * waves * BUDGET_MARGIN))

    @classmethod
    def environment_variables(cls) -> dict[str, str]:
        """field name -> the environment variable it is read from (the fields that have one)."""
        return {
            name: marker.name
            for name, field in cls.model_fields.items()
            for marker in field.metadata
            if isinstance(marker, Env)
        }

    @classmethod
    def validated(
        cls, values: Mapping[str, Any], registry: Registry | None, name_of: Callable[[str], str]
    ) -> Self:
        """The model from `values` (by field name or alias); a bad value raises ConfigError,
        naming it by name_of(the field's alias or name, or "" for the whole model)."""
        try:
            return cls.model_validate(dict(values), context={"registry": registry})
        except ValidationError as error:
            first = error.errors()[0]
            raise ConfigError(
                f"{name_of(str(first['loc'][0]) if first['loc'] else '')}: {_describe(first)}"
            ) from None


class FarmConfig(WorkflowSettings):
    """Everything the planner and publisher need to know that is not in the request.

    enabled_platforms are the platforms this deployment can build (where it has builders),
    always a concrete tuple: from_env fills in every registry platform when the variable is
    unset. Which of them the schedule builds is decided at plan time from their end-of-support
    dates (buildfarm.policy); an enabled platform past its date is still built when named.
    """

    store: str = DEFAULT_STORE  # from_env: resolve_store_location
    enabled_platforms: Annotated[tuple[str, ...], Env("BUILDFARM_ENABLED_PLATFORMS")]
    # A refresh is due when the last one is older than this. Half an hour, below the hourly
    # schedule's period: every scheduled run refreshes even when cron starts it early (an age
    # equal to the period let jitter skip refreshes). Costs one request when nothing is new.
    releases_max_age_hours: Annotated[float, Env("BUILDFARM_RELEASES_MAX_AGE_HOURS")] = Field(0.5, gt=0)
    releases_timeout_seconds: float = Field(10.0, gt=0)
    public_base_url: Annotated[str | None, Env("BUILDFARM_PUBLIC_BASE_URL")] = None
    claim_ttl_seconds: Annotated[int, Env("BUILDFARM_CLAIM_TTL_SECONDS")] = Field(14400, ge=60)
    # Who signs what the publish side writes (buildfarm.attest.farm_signer): the cloud's KMS
    # key (an id, ARN or alias/...) when set, else a key file (None: `buildfarm run` uses and
    # creates ~/.config/buildfarm/signing-key.pem; a Lambda without either refuses to publish).
    kms_key_id: Annotated[str | None, Env("BUILDFARM_KMS_KEY_ID")] = None
    signing_key: Annotated[str | None, Env("BUILDFARM_SIGNING_KEY")] = None
    # Runtime builds beside an S3 store share uv's download cache through it (cache/uv/): off by
    # default, as uv does not re-check what is in its cache, so one runtime's build code could
    # change what later runtimes of its platform install (buildfarm.runtimes.uv_cache). The stack
    # sets it for its jobs from runtimeUvCache (infra.config.InfraConfig.job_environment).
    runtime_uv_cache: Annotated[bool, Env("BUILDFARM_RUNTIME_UV_CACHE")] = Field(
        False, alias="runtimeUvCache"
    )

    @field_validator("enabled_platforms")
    @classmethod
    def _platforms(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        return known_platforms(value, info)

    @field_validator("kms_key_id")
    @classmethod
    def _kms_key(cls, value: str | None) -> str | None:
        if value is not None and not _KMS_KEY.fullmatch(value):
            raise ValueError(f"{value!r} is not a KMS key id, key ARN or alias/NAME")
        return value

    @field_validator("public_base_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if _url(value) is None:
            return None
        # What reindex checks: every publisher bakes this URL into install.sh and uv's metadata.
        from buildfarm.catalog.derived import base_url_problem  # the catalog imports this module

        if problem := base_url_problem(value):
            raise ValueError(f"{value!r}: {problem}")
        return value

    @classmethod
    def defaults(cls, registry: Registry | None = None, **overrides: object) -> FarmConfig:
        """The default configuration (every registry platform enabled), with keyword overrides."""
        registry = registry or load_registry()
        values: dict[str, object] = {"enabled_platforms": tuple(registry.platforms), **overrides}
        return cls.model_validate(values, context={"registry": registry})

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        registry: Registry | None = None,
        *,
        store: str | None = None,
    ) -> FarmConfig:
        """Read the BUILDFARM_* variables; raise ConfigError naming the first bad one. The store is
        `store` (a --store option), else $BUILDFARM_STORE, else the default (resolve_store_location)."""
        env = os.environ if environ is None else environ
        registry = registry or load_registry()
        variables = cls.environment_variables()
        values: dict[str, object] = {
            name: env[variable] for name, variable in variables.items() if (env.get(variable) or "").strip()
        }
        values.setdefault("enabled_platforms", tuple(registry.platforms))
        values["store"] = resolve_store_location(store, env)
        # An error's location is the field's name or alias: either names the variable.
        named = {**variables, **{cls.model_fields[n].alias or n: v for n, v in variables.items()}}
        return cls.validated(values, registry, lambda key: named.get(key, key or "environment"))


def resolve_store_location(explicit: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The store a command uses: the --store value, else $BUILDFARM_STORE, else ./dist. A
    directory (or a file:///PATH or file://localhost/PATH URL of one) becomes an absolute path;
    s3://BUCKET[/PREFIX] stays as given. Raises ConfigError naming anything else."""
    env = os.environ if environ is None else environ
    location = explicit or (env.get("BUILDFARM_STORE") or "").strip() or DEFAULT_STORE
    if location.startswith("s3://"):
        if not _S3_STORE.fullmatch(location):
            raise ConfigError(f"malformed S3 store {location!r} (s3://BUCKET/PREFIX)")
        return location
    directory = _file_url_path(location) if "://" in location else os.path.abspath(location)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ConfigError(f"store {directory!r} is not a directory")
    return directory


def _file_url_path(location: str) -> str:
    """The absolute path of a file:///PATH or file://localhost/PATH store; ConfigError naming
    any other URL (another host, no path, a query or fragment)."""
    try:
        url = urlsplit(location)
    except ValueError as error:
        raise ConfigError(f"malformed store URL {location!r}: {error}") from None
    if url.scheme.lower() != "file":
        raise ConfigError(f"unsupported store {location!r} (a directory or s3://BUCKET/PREFIX)")
    if url.netloc.lower() not in ("", "localhost"):
        raise ConfigError(
            f"store {location!r} names the host {url.netloc!r}: a file:// store is on this machine "
            "(file:///PATH or file://localhost/PATH)"
        )
    if url.query or url.fragment or "?" in location or "#" in location:
        raise ConfigError(f"store {location!r} has a query or fragment (file:///PATH)")
    path = unquote(url.path)
    if not path.startswith("/") or "\x00" in path:
        raise ConfigError(f"store {location!r} names no absolute path (file:///PATH)")
    return os.path.normpath(path)
