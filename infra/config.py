"""The stack's configuration: cdk.json context keys `buildfarm:*`, validated once into a typed model.

Every key can be overridden on the command line (`-c buildfarm:maxConcurrency=40`); values given
that way arrive as strings, so lists also accept comma-separated strings and numbers/booleans
accept their string forms.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from buildfarm.platforms import ARCHES, Registry, load_registry
from buildfarm.versions import is_series

CONTEXT_PREFIX = "buildfarm:"


class ConfigError(ValueError):
    """A bad context value: the message names the key and the value."""


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _none_if_empty(value: Any) -> Any:
    return None if value in ("", None) else value


class InfraConfig(BaseModel):
    """What a platform team tunes per deployment (README "Deploy on AWS" lists every key)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # EventBridge schedule expression that starts the workflow with {}; "" turns the schedule off.
    # Hourly: a no-op costs a listing and two reads, and a new release is built within hours.
    schedule: str = Field("rate(1 hour)", alias="schedule")
    max_concurrency: int = Field(20, ge=1, le=10000, alias="maxConcurrency")
    # Platforms that get builders (images + job definitions). None = the registry's platforms
    # still supported on lifecycle_date, plus end_of_life_platforms. An explicit list is taken as is.
    enabled_platforms: tuple[str, ...] | None = Field(None, alias="enabledPlatforms")
    # Ended platforms that keep their builders so that naming them still builds them. Not by
    # default: an ended distribution's package mirrors move or vanish, and an image that no
    # longer builds fails the whole deployment.
    end_of_life_platforms: tuple[str, ...] = Field((), alias="endOfLifePlatforms")
    # The day the registry's end-of-support dates are compared with (default: the synthesis day;
    # tests pin it so that synthesis is deterministic).
    lifecycle_date: date = Field(default_factory=date.today, alias="lifecycleDate")
    enabled_arches: tuple[Literal["x86_64", "aarch64"], ...] = Field(ARCHES, alias="enabledArches")
    lowest_series: str = Field("3.9", alias="lowestSeries")
    releases_per_series: int = Field(2, ge=1, le=100, alias="releasesPerSeries")
    prereleases: bool = Field(False, alias="prereleases")
    optimization: Literal["pgo+lto", "none"] = Field("pgo+lto", alias="optimization")
    releases_url: str | None = Field(None, alias="releasesUrl")
    source_mirror: str | None = Field(None, alias="sourceMirror")
    # One Batch job = one cell: CPython's PGO build uses all cores it gets.
    job_vcpus: int = Field(8, ge=1, le=192, alias="jobVcpus")
    job_memory_mib: int = Field(16384, ge=2048, alias="jobMemoryMiB")
    job_timeout_minutes: int = Field(240, ge=10, alias="jobTimeoutMinutes")
    # Attempts per job; only infrastructure losses (Spot reclaim) are retried.
    job_attempts: int = Field(3, ge=1, le=10, alias="jobAttempts")
    root_volume_gib: int = Field(100, ge=30, alias="rootVolumeGiB")
    max_vcpus_per_arch: int = Field(256, ge=1, alias="maxVcpusPerArch")
    execution_timeout_hours: int = Field(24, ge=1, le=24 * 365, alias="executionTimeoutHours")
    # What one cell's job is expected to take; with maxConcurrency and executionTimeoutHours it
    # sets how many cells one execution claims (FarmConfig.cells_per_execution), unless
    # maxCellsPerExecution says so explicitly.
    job_minutes_estimate: int = Field(40, ge=1, alias="jobMinutesEstimate")
    max_cells_per_execution: int | None = Field(None, ge=1, alias="maxCellsPerExecution")
    notification_email: str | None = Field(None, alias="notificationEmail")
    # An existing VPC: its id and the subnets (with a route to the internet) the builders run in.
    vpc_id: str | None = Field(None, alias="vpcId")
    subnet_ids: tuple[str, ...] = Field((), alias="subnetIds")
    powertools_layer_version: int = Field(38, ge=1, alias="powertoolsLayerVersion")
    log_retention_days: int = Field(90, ge=1, alias="logRetentionDays")
    # Days after which plans/, claims/ and logs/ objects expire (artifacts and catalogs never do).
    scratch_expiry_days: int = Field(30, ge=1, alias="scratchExpiryDays")
    log_expiry_days: int = Field(180, ge=1, alias="logExpiryDays")

    @field_validator(
        "enabled_platforms", "end_of_life_platforms", "enabled_arches", "subnet_ids", mode="before"
    )
    @classmethod
    def _comma_list(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name == "enabled_platforms" and value == "":
            return None  # unset in cdk.json: the platforms live on lifecycle_date
        return _split_list(value)

    @field_validator("lifecycle_date", mode="before")
    @classmethod
    def _today_if_empty(cls, value: Any) -> Any:
        return date.today() if value in ("", None) else value

    @field_validator(
        "notification_email",
        "vpc_id",
        "releases_url",
        "source_mirror",
        "max_cells_per_execution",
        mode="before",
    )
    @classmethod
    def _optional(cls, value: Any) -> Any:
        return _none_if_empty(value)

    @field_validator("lowest_series")
    @classmethod
    def _series(cls, value: str) -> str:
        if not is_series(value):
            raise ValueError(f"lowestSeries {value!r} is not a series like 3.9")
        return value

    @field_validator("notification_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and ("@" not in value or any(c.isspace() for c in value)):
            raise ValueError(f"notificationEmail {value!r} is not an e-mail address")
        return value

    @model_validator(mode="after")
    def _vpc(self) -> InfraConfig:
        if self.vpc_id and not self.subnet_ids:
            raise ValueError(f"vpcId {self.vpc_id!r} needs subnetIds (the subnets the builders run in)")
        if self.subnet_ids and not self.vpc_id:
            raise ValueError("subnetIds needs vpcId")
        return self

    def platforms(self, registry: Registry) -> tuple[str, ...]:
        """The platform ids that get builders, in registry order (unknown ids were rejected by
        from_context): the live ones on lifecycle_date plus the ended ones kept, or the explicit list."""
        if self.enabled_platforms is None:
            live = registry.live_platforms(self.lifecycle_date)
            return tuple(
                pid for pid in registry.platforms if pid in live or pid in self.end_of_life_platforms
            )
        return tuple(pid for pid in registry.platforms if pid in self.enabled_platforms)

    def cells(self, registry: Registry) -> tuple[tuple[str, str], ...]:
        """(platform, arch) pairs that get a job definition: enabled platforms x enabled arches
        the platform supports."""
        return tuple(
            (pid, arch)
            for pid in self.platforms(registry)
            for arch in self.enabled_arches
            if arch in registry.get(pid).arches
        )

    def arches(self, registry: Registry) -> tuple[str, ...]:
        """Arches that at least one enabled platform is built for (each gets a compute env + queue)."""
        used = {arch for _, arch in self.cells(registry)}
        return tuple(arch for arch in ARCHES if arch in used)

    @classmethod
    def from_context(cls, context: dict[str, Any], registry: Registry | None = None) -> InfraConfig:
        """Build from a context mapping; keys without the `buildfarm:` prefix are ignored."""
        registry = registry or load_registry()
        values = {
            k.removeprefix(CONTEXT_PREFIX): v for k, v in context.items() if k.startswith(CONTEXT_PREFIX)
        }
        try:
            config = cls.model_validate(values)
        except ValidationError as error:
            first = error.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "config"
            raise ConfigError(
                f"cdk context {CONTEXT_PREFIX}{key}: {first['msg']} (got {first.get('input')!r})"
            ) from None
        for pid in (*(config.enabled_platforms or ()), *config.end_of_life_platforms):
            registry.get(pid)  # raises UnknownPlatformError naming it
        if not config.cells(registry):
            raise ConfigError("cdk context: no platform x arch is enabled")
        return config

    def lambda_environment(self) -> dict[str, str]:
        """The FarmConfig environment variables (common.md) this configuration sets for the Lambdas."""
        registry = load_registry()
        env = {
            "BUILDFARM_ENABLED_PLATFORMS": ",".join(self.platforms(registry)),
            "BUILDFARM_ENABLED_ARCHES": ",".join(self.enabled_arches),
            "BUILDFARM_LOWEST_SERIES": self.lowest_series,
            "BUILDFARM_RELEASES_PER_SERIES": str(self.releases_per_series),
            "BUILDFARM_PRERELEASES": "true" if self.prereleases else "false",
            "BUILDFARM_OPTIMIZATION": self.optimization,
            "BUILDFARM_MAX_CONCURRENCY": str(self.max_concurrency),
            "BUILDFARM_EXECUTION_TIMEOUT_HOURS": str(self.execution_timeout_hours),
            "BUILDFARM_JOB_MINUTES_ESTIMATE": str(self.job_minutes_estimate),
        }
        if self.max_cells_per_execution:
            env["BUILDFARM_MAX_CELLS_PER_EXECUTION"] = str(self.max_cells_per_execution)
        if self.releases_url:
            env["BUILDFARM_RELEASES_URL"] = self.releases_url
        if self.source_mirror:
            env["BUILDFARM_SOURCE_MIRROR"] = self.source_mirror
        return env
