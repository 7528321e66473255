"""The stack's configuration: cdk.json context keys `buildfarm:*`, validated once into a typed model.

InfraConfig is buildfarm.config.WorkflowSettings (the settings the Lambdas read too, declared
there once) plus the keys only the stack uses. Every key can be overridden on the command line
(`-c buildfarm:maxConcurrency=40`); values given that way arrive as strings, read as the Lambdas
read their environment (comma lists, true/false, ASCII numbers; blank = the default).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, ClassVar

from packaging.version import Version
from pydantic import Field, ValidationInfo, field_validator, model_validator

from buildfarm import clock
from buildfarm.config import ConfigError, FarmConfig, WorkflowSettings, known_platforms
from buildfarm.platforms import ARCHES, Registry, load_registry
from infra.instance_types import JOB_MEMORY_SHARE, unplaceable

__all__ = ["CONTEXT_KEYS", "CONTEXT_PREFIX", "LOG_RETENTION_DAYS", "ConfigError", "InfraConfig"]

CONTEXT_PREFIX = "buildfarm:"
# The retention periods CloudWatch Logs accepts (AWS::Logs::LogGroup RetentionInDays).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                      2192, 2557, 2922, 3288, 3653)  # fmt: skip


# EventBridge's schedule expressions (its "Schedule expressions for rules"): a rate with the
# singular unit for 1, or a cron with six fields.
RATE = re.compile(r"rate\((?:1 (?:minute|hour|day)|(?:[2-9]|[1-9][0-9]{1,5}) (?:minutes|hours|days))\)")
CRON = re.compile(r"cron\([^ ()]+(?: [^ ()]+){5}\)")
DOMAIN_NAME = re.compile(r"(?=.{1,253}\Z)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
CERTIFICATE_ARN = re.compile(r"arn:aws[a-z-]*:acm:us-east-1:[0-9]{12}:certificate/[0-9a-f-]{36}")
VPC_ID = re.compile(r"vpc-(?:[0-9a-f]{8}|[0-9a-f]{17})")
SUBNET_ID = re.compile(r"subnet-(?:[0-9a-f]{8}|[0-9a-f]{17})")
# Values CloudFormation would refuse only at deploy time, after every image is built: each
# field's pattern and what it must be.
FORMATS = {
    "vpc_id": (VPC_ID, "a VPC id (vpc- and 8 or 17 hex digits)"),
    "subnet_ids": (SUBNET_ID, "a subnet id (subnet- and 8 or 17 hex digits)"),
    "domain_name": (DOMAIN_NAME, "a domain name like python.example.org (lower case)"),
    "certificate_arn": (
        CERTIFICATE_ARN,
        "an ACM certificate ARN in us-east-1 (CloudFront takes its certificates from there only)",
    ),
}

# What each context key means, in the order README's "Configuration" table lists them, with a
# note after a blank default. "{budget}" is replaced by the default budget. Every key of the
# model is here but lifecycleDate (the synthesis day, described beside the table).
# The defaults are the model's fields (what an absent key gets), and the table's default column
# is rendered from them (scripts/readme_tables.py). cdk.json also lists every key here, with
# the same value as the model's default today, for teams to edit: its values (or `-c`
# overrides) are what a deployment uses, so changing a default means changing cdk.json too.
# tests/infra/test_infra_config.py checks that these keys are the model's (but lifecycleDate),
# that cdk.json lists exactly them in this order and validates as it stands, that README's
# table is current, and that an edited cdk.json value is taken as is; nothing checks that
# cdk.json's values equal the model's defaults.
_X = "\N{MULTIPLICATION SIGN}"
CONTEXT_KEYS: dict[str, tuple[str, str]] = {
    "schedule": ("", 'EventBridge expression that starts the workflow with `{}`; `""` disables it'),
    "maxConcurrency": ("", "Batch jobs (cells) running at once"),
    "enabledPlatforms": (
        "platforms live on the synthesis day",
        f"comma list of registry ids; two job definitions (Python build, runtime) per platform {_X} arch",
    ),
    "endOfLifePlatforms": ("", "ended platforms that still get builders (to build them when named)"),
    "enabledArches": ("", "arches built (one Spot compute environment + queue each)"),
    "lowestSeries": ("", "the oldest series built, also when named"),
    "releasesPerSeries": ("", "newest releases of each live series the schedule builds"),
    "prereleases": ("", "build pre-releases until their series' first final"),
    "failedRetryHours": (
        "",
        "the schedule retries a cell whose newest build failed this long after the failure, doubling "
        "with each failed build in a row up to a week; naming its version rebuilds it at once",
    ),
    "optimization": ("", "`none` for fast test builds"),
    "releasesUrl": ("", "python.org's downloads API, where new releases and their sha256 come from"),
    "sourceMirror": ("", "python.org-shaped source mirror (`http(s)://`: the jobs download from it)"),
    "jobVcpus": ("", "vCPUs per build job (at most the largest build instance's, `infra/instance_types.py`)"),
    "jobMemoryMiB": (
        "",
        "memory per build job; below 16 GiB so that an 8-vCPU, 16 GiB instance can place it (ECS "
        "keeps part of an instance's memory for the kernel and its agent); synthesis refuses more "
        f"than {JOB_MEMORY_SHARE:.0%} of the largest build instance of an enabled arch",
    ),
    "jobTimeoutMinutes": ("", "per attempt"),
    "runtimeJobTimeoutMinutes": (
        "",
        "per attempt of a runtime cell's job (it installs a lock and packages it: minutes); with "
        "cloudRuntimes, an execution runs the Python jobs, then the runtime jobs",
    ),
    "jobAttempts": (
        "",
        "attempts; only infrastructure losses are retried (Spot reclaims, `Host EC2*`, and a container "
        "that failed to start: `Task failed to start`, `CannotPullContainerError`, `DockerTimeoutError`)",
    ),
    "runnableTimeoutMinutes": (
        "",
        "a job blocked in its queue this long (no Spot capacity, no instance large enough) is cancelled "
        f"and its cell fails; jobAttempts {_X} (jobTimeoutMinutes + this), plus with cloudRuntimes "
        f"jobAttempts {_X} (runtimeJobTimeoutMinutes + this), must be shorter than executionTimeoutHours",
    ),
    "rootVolumeGiB": ("", "encrypted gp3 root volume of the build instances"),
    "maxVcpusPerArch": ("", "compute environment cap (at least jobVcpus)"),
    "executionTimeoutHours": ("", "whole workflow; also the claim TTL"),
    "jobMinutesEstimate": (
        "",
        f"for the budget: one execution claims maxConcurrency {_X} executionTimeoutHours {_X} 60 / "
        f"jobMinutesEstimate {_X} 0.5 cells ({{budget}})",
    ),
    "maxCellsPerExecution": (
        "computed",
        "the budget, set directly. Plan claims the budget's cells one after another within its "
        "function's timeout; benchmarks/plan_matrix.py measured the default budget ({budget}), and "
        "synthesis warns of a larger one",
    ),
    "domainName": (
        "`*.cloudfront.net`",
        "the store's public name (with certificateArn): point a DNS CNAME or alias record at the "
        "`CdnDomain` output; the next run writes the new URL into install.sh and uv's metadata",
    ),
    "certificateArn": ("", "its ACM certificate, in us-east-1 (CloudFront's rule)"),
    "notificationEmail": ("", "SNS e-mail subscription for failed executions"),
    "signingKeyGeneration": (
        "",
        "raise it by one to rotate the KMS signing key: a new key signs from the next publish, the old "
        'one is retained and its public key stays listed (docs/signing.md, "Rotating the key")',
    ),
    "vpcId": ("a new VPC", "an existing VPC with a route to the internet (with subnetIds)"),
    "subnetIds": ("", "its subnets, comma list"),
    "powertoolsLayerVersion": ("", "version of the public Powertools layer (python3.14, arm64)"),
    "logRetentionDays": ("", "CloudWatch retention of every log group (build output, workflow, Lambdas)"),
    "scratchExpiryDays": (
        "",
        "the bucket expires `plans/` and `claims/` after this (longer than `executionTimeoutHours`, or "
        "synthesis fails)",
    ),
    "logExpiryDays": ("", "the bucket expires `logs/` (failed builds' logs and failure records) after this"),
    "cloudRuntimes": (
        "",
        "plan and build runtime cells in the cloud (the Lambda bundle carries `runtimes/`); `false` "
        "leaves them to local runs (docs/farm.md)",
    ),
    "runtimeUvCache": (
        "",
        f"runtime jobs share uv's download cache per platform {_X} arch (`cache/uv/`; off: no job role "
        "may touch it). uv does not re-check what is in its cache, so a runtime's build code can change "
        "what later runtimes of its platform install: enable it only when every runtime built on the "
        "farm is trusted as much as every other",
    ),
}


class InfraConfig(WorkflowSettings):
    """What a platform team tunes per deployment (README "Configuration" lists every key)."""

    # "" turns the schedule off rather than meaning the default.
    blank_is_a_value: ClassVar[frozenset[str]] = frozenset({"schedule"})

    # EventBridge schedule expression that starts the workflow with {}; "" turns the schedule off.
    # Hourly: a no-op costs a listing and two reads, and a new release is built within hours.
    schedule: str = Field("rate(1 hour)", alias="schedule")
    # Platforms that get builders (images + job definitions). None = the registry's platforms
    # still supported on lifecycle_date, plus end_of_life_platforms. An explicit list is taken as is.
    enabled_platforms: tuple[str, ...] | None = Field(None, alias="enabledPlatforms")
    # Ended platforms that keep their builders so that naming them still builds them. Not by
    # default: an ended distribution's package mirrors move or vanish, and an image that no
    # longer builds fails the whole deployment.
    end_of_life_platforms: tuple[str, ...] = Field((), alias="endOfLifePlatforms")
    # The day the registry's end-of-support dates are compared with (default: the synthesis day;
    # tests pin it so that synthesis is deterministic).
    lifecycle_date: date = Field(default_factory=lambda: clock.now().date(), alias="lifecycleDate")
    # One Batch job = one cell: CPython's PGO build uses all cores it gets. It and jobMemoryMiB
    # are bounded by the largest build instance of each enabled arch (infra.instance_types).
    job_vcpus: int = Field(8, ge=1, alias="jobVcpus")
    # Below the 16 GiB of an 8-vCPU compute instance (c7i.2xlarge, ...): ECS registers an
    # instance with its memory less the kernel's and the agent's (Batch "Compute resource memory
    # management"), so a 16384 MiB job fits no 16 GiB instance and Batch would have to launch a
    # larger one (an m-class 2xlarge or a 4xlarge). 15 GiB leaves that room.
    job_memory_mib: int = Field(15360, ge=2048, alias="jobMemoryMiB")
    job_timeout_minutes: int = Field(240, ge=10, alias="jobTimeoutMinutes")
    # A runtime cell's job installs a lock into a published Python and packages it: minutes, not
    # a CPython build's hours; it runs after every Python job of its execution.
    runtime_job_timeout_minutes: int = Field(60, ge=10, alias="runtimeJobTimeoutMinutes")
    # Attempts per job; only infrastructure losses (Spot reclaim, a container that failed to
    # start) are retried.
    job_attempts: int = Field(3, ge=1, le=10, alias="jobAttempts")
    # How long a job may wait RUNNABLE blocked at the head of its queue (no Spot capacity, no
    # instance type or compute environment large enough) before Batch cancels it and the cell
    # fails; unbounded, it would hold its Map item until the execution times out, and Finalize
    # would never run. Batch takes 10 minutes to 24 hours.
    runnable_timeout_minutes: int = Field(60, ge=10, le=1440, alias="runnableTimeoutMinutes")
    root_volume_gib: int = Field(100, ge=30, alias="rootVolumeGiB")
    max_vcpus_per_arch: int = Field(256, ge=1, alias="maxVcpusPerArch")
    # The team's own name for the store's public URL (install.sh, uv's metadata, the page), with
    # its ACM certificate, which CloudFront takes from us-east-1 only. Neither: *.cloudfront.net.
    domain_name: str | None = Field(None, alias="domainName")
    certificate_arn: str | None = Field(None, alias="certificateArn")
    notification_email: str | None = Field(None, alias="notificationEmail")
    # Which KMS signing key signs: raising it creates a new key (infra.signing.SigningKey).
    signing_key_generation: int = Field(1, ge=1, le=999, alias="signingKeyGeneration")
    # An existing VPC: its id and the subnets (with a route to the internet) the builders run in.
    vpc_id: str | None = Field(None, alias="vpcId")
    subnet_ids: tuple[str, ...] = Field((), alias="subnetIds")
    powertools_layer_version: int = Field(38, ge=1, alias="powertoolsLayerVersion")
    # Every CloudWatch log group of the stack (functions, builds, executions, VPC flow log).
    # Each build's own log is also kept in the store for logExpiryDays.
    log_retention_days: int = Field(90, alias="logRetentionDays")
    # Days after which plans/, claims/ and logs/ objects expire (artifacts and catalogs never do).
    scratch_expiry_days: int = Field(30, ge=1, alias="scratchExpiryDays")
    log_expiry_days: int = Field(180, ge=1, alias="logExpiryDays")
    # Plan runtime cells in the cloud (the repository's runtimes/*.toml, bundled with the
    # Lambdas); each runs `buildfarm runtime build` in its platform's builder image, with the
    # newest published Python >= 3.11 of that platform and arch as the tool's interpreter
    # (builder_image/driver/runtime_job.py). Off: Plan plans no runtime cell.
    cloud_runtimes: bool = Field(True, alias="cloudRuntimes")
    # Runtime jobs share uv's download cache through the store (buildfarm.runtimes.uv_cache, whose
    # docstring says why it is off by default): the job definitions get FarmConfig's variable
    # (job_environment) and each job role may read and replace its cache/uv/<platform>-<arch>.tar.gz.
    # Off: no job role has any cache/uv/ grant, and the bucket refuses builders' writes there.
    runtime_uv_cache: bool = Field(False, alias="runtimeUvCache")

    @field_validator("enabled_platforms", "end_of_life_platforms")
    @classmethod
    def _platforms(cls, value: tuple[str, ...] | None, info: ValidationInfo) -> tuple[str, ...] | None:
        return value if not value else known_platforms(value, info)

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(
                f"{value!r} is not a CloudWatch retention ({', '.join(map(str, LOG_RETENTION_DAYS))})"
            )
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        # Checked here, not first by CloudFormation after a deploy has built every image.
        if value and not (RATE.fullmatch(value) or CRON.fullmatch(value)):
            raise ValueError(
                f"{value!r} is not an EventBridge schedule: rate(1 hour), rate(30 minutes), "
                'cron(0 3 * * ? *) (six fields), or "" for none'
            )
        return value

    @field_validator("source_mirror")
    @classmethod
    def _cloud_mirror(cls, value: str) -> str:
        if value.startswith("file:"):
            raise ValueError(f"{value!r}: the Batch jobs cannot read this machine's files; use http(s)://")
        return value

    @field_validator(*FORMATS)
    @classmethod
    def _formats(
        cls, value: str | tuple[str, ...] | None, info: ValidationInfo
    ) -> str | tuple[str, ...] | None:
        pattern, what = FORMATS[info.field_name]
        for item in (value,) if isinstance(value, str) else value or ():
            if not pattern.fullmatch(item):
                raise ValueError(f"{item!r} is not {what}")
        return value

    @model_validator(mode="after")
    def _domain_and_certificate(self) -> InfraConfig:
        if bool(self.domain_name) != bool(self.certificate_arn):
            raise ValueError("domainName and certificateArn go together (the name and its certificate)")
        return self

    @field_validator("notification_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and ("@" not in value or any(c.isspace() for c in value)):
            raise ValueError(f"{value!r} is not an e-mail address")
        return value

    @model_validator(mode="after")
    def _vpc(self) -> InfraConfig:
        if self.vpc_id and not self.subnet_ids:
            raise ValueError(f"vpcId {self.vpc_id!r} needs subnetIds (the subnets the builders run in)")
        if self.subnet_ids and not self.vpc_id:
            raise ValueError("subnetIds needs vpcId")
        return self

    @model_validator(mode="after")
    def _scratch_outlasts_a_run(self) -> InfraConfig:
        # The bucket expires plans/ and claims/ by age: a running execution's items, plan
        # record and claims must outlive the longest execution.
        if self.scratch_expiry_days * 24 <= self.execution_timeout_hours:
            raise ValueError(
                f"scratchExpiryDays {self.scratch_expiry_days} must outlast executionTimeoutHours "
                f"{self.execution_timeout_hours:g}: the bucket would expire a running execution's "
                "plans and claims"
            )
        return self

    @model_validator(mode="after")
    def _jobs_fit_an_instance(self) -> InfraConfig:
        # Batch cannot give a job more than one instance has: such a job would wait RUNNABLE
        # until runnableTimeoutMinutes cancels it, every time.
        for arch in self.enabled_arches:
            why = unplaceable(arch, self.job_vcpus, self.job_memory_mib)
            if why:
                raise ValueError(f"jobVcpus {self.job_vcpus} with jobMemoryMiB {self.job_memory_mib}: {why}")
        return self

    @model_validator(mode="after")
    def _jobs_fit(self) -> InfraConfig:
        if self.job_vcpus > self.max_vcpus_per_arch:
            raise ValueError(
                f"jobVcpus {self.job_vcpus} exceeds maxVcpusPerArch {self.max_vcpus_per_arch}: "
                "no compute environment could ever run a job"
            )
        # Finalize runs only after every Map item: a Python job's longest life, then (the runtime
        # Map follows the Python Map) a runtime job's, must end within the execution.
        if self.execution_minutes_at_most >= self.execution_timeout_hours * 60:
            raise ValueError(
                f"{self._job_lives()} = {self.execution_minutes_at_most} minutes must be shorter than "
                f"executionTimeoutHours {self.execution_timeout_hours:g}: a job could outlive its "
                "execution, and Finalize would never run"
            )
        return self

    def _job_lives(self) -> str:
        """How execution_minutes_at_most is made, in context keys."""
        runnable = f"runnableTimeoutMinutes {self.runnable_timeout_minutes}"
        lives = (
            f"jobAttempts {self.job_attempts} x (jobTimeoutMinutes {self.job_timeout_minutes} + {runnable})"
        )
        if self.cloud_runtimes:
            lives += (
                f" + jobAttempts {self.job_attempts} x (runtimeJobTimeoutMinutes "
                f"{self.runtime_job_timeout_minutes} + {runnable})"
            )
        return lives

    @property
    def job_minutes_at_most(self) -> int:
        """The longest one cell's Batch job can last: each attempt may wait blocked in its queue,
        then run to its timeout."""
        return self.job_attempts * (self.job_timeout_minutes + self.runnable_timeout_minutes)

    @property
    def execution_minutes_at_most(self) -> int:
        """The longest a Python cell's job, then (with cloudRuntimes) a runtime cell's, can last."""
        runtime_job = self.job_attempts * (self.runtime_job_timeout_minutes + self.runnable_timeout_minutes)
        return self.job_minutes_at_most + (runtime_job if self.cloud_runtimes else 0)

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

    def unmeasured_budget(self) -> str | None:
        """Why one execution's budget is beyond what Plan was measured claiming, or None.
        benchmarks/plan_matrix.py's forced plan claims the default budget (its configuration is
        the default one): Plan claims cell after cell, a few store calls each, within its
        function's timeout (infra/functions.py), and no larger budget was measured. (Its payload
        is no bound: the items go to S3, the Map reads them from there, and Plan returns counts.)"""
        measured = WorkflowSettings.model_validate({}).cells_per_execution
        if self.cells_per_execution <= measured:
            return None
        source = (
            f"maxCellsPerExecution {self.max_cells_per_execution}"
            if self.max_cells_per_execution is not None
            else f"maxConcurrency {self.max_concurrency}, executionTimeoutHours "
            f"{self.execution_timeout_hours:g}, jobMinutesEstimate {self.job_minutes_estimate:g}"
        )
        return (
            f"one execution may claim {self.cells_per_execution} cells ({source}); Plan was measured "
            f"claiming {measured} (benchmarks/plan_matrix.py), one cell after another within its "
            f"function's timeout: set maxCellsPerExecution={measured} to stay within what was measured"
        )

    @property
    def claim_ttl_seconds(self) -> int:
        """A claim must outlive any execution that may still build its cell."""
        return round(self.execution_timeout_hours * 3600)

    @classmethod
    def from_context(cls, context: dict[str, Any], registry: Registry | None = None) -> InfraConfig:
        """Build from a context mapping; keys without the `buildfarm:` prefix are ignored."""
        registry = registry or load_registry()
        values = {
            k.removeprefix(CONTEXT_PREFIX): v for k, v in context.items() if k.startswith(CONTEXT_PREFIX)
        }
        config = cls.validated(
            values, registry, lambda key: f"cdk context {CONTEXT_PREFIX}{key}" if key else "cdk context"
        )
        if not config.cells(registry):
            raise ConfigError("cdk context: no platform x arch is enabled")
        known = sorted(registry.series_end_of_life, key=Version)
        if known and Version(config.lowest_series) > Version(known[-1]):
            raise ConfigError(
                f"cdk context {CONTEXT_PREFIX}lowestSeries: {config.lowest_series} is newer than every "
                f"series the registry knows ({known[0]}-{known[-1]}): nothing would be built"
            )
        return config

    def lambda_environment(self, registry: Registry | None = None) -> dict[str, str]:
        """The FarmConfig environment variables this configuration sets for the Lambdas: every
        shared setting (WorkflowSettings) that has a value, the platforms with builders, the claim TTL."""
        env = {
            variable: _as_text(getattr(self, name))
            for name, variable in WorkflowSettings.environment_variables().items()
            if getattr(self, name) is not None
        }
        variables = FarmConfig.environment_variables()
        env[variables["enabled_platforms"]] = ",".join(self.platforms(registry or load_registry()))
        env[variables["claim_ttl_seconds"]] = str(self.claim_ttl_seconds)
        return env

    def job_environment(self) -> dict[str, str]:
        """The FarmConfig environment variables this configuration sets for the Batch jobs (beside
        their platform and arch): the shared uv cache, when enabled."""
        variable = FarmConfig.environment_variables()["runtime_uv_cache"]
        return {variable: "true"} if self.runtime_uv_cache else {}


def _as_text(value: object) -> str:
    """A setting as FarmConfig.from_env reads it back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
