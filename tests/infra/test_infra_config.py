"""The stack's configuration (cdk.json context): values from the command line, bad values named,
and the platforms that get builders following the registry's end-of-support dates."""

from __future__ import annotations

import importlib.util
import json
import re
from datetime import date

import pytest
from template_helpers import REPO, cdk_json_config

from buildfarm.config import FarmConfig, WorkflowSettings
from buildfarm.platforms import load_registry
from infra.config import ConfigError, InfraConfig


def test_config_from_context_accepts_cli_strings_and_names_bad_values() -> None:
    registry = load_registry()
    config = InfraConfig.from_context(
        {
            "buildfarm:maxConcurrency": "40",
            "buildfarm:enabledPlatforms": "debian-12, rhel-9",
            "buildfarm:enabledArches": "aarch64",
            "buildfarm:prereleases": "true",
            "other:key": "ignored",
        },
        registry,
    )
    assert config.max_concurrency == 40
    assert config.cells(registry) == (("debian-12", "aarch64"), ("rhel-9", "aarch64"))
    assert config.prereleases is True
    assert config.lambda_environment()["BUILDFARM_ENABLED_PLATFORMS"] == "debian-12,rhel-9"
    with pytest.raises(ConfigError, match=r"buildfarm:maxConcurrency.*'many'"):
        InfraConfig.from_context({"buildfarm:maxConcurrency": "many"}, registry)
    with pytest.raises(ValueError, match="'debian-99'"):
        InfraConfig.from_context({"buildfarm:enabledPlatforms": "debian-99"}, registry)
    with pytest.raises(ConfigError, match="buildfarm:enabledArches"):
        InfraConfig.from_context({"buildfarm:enabledArches": "sparc"}, registry)
    with pytest.raises(ConfigError, match="subnetIds"):
        InfraConfig.from_context({"buildfarm:vpcId": "vpc-0123abcd"}, registry)
    with pytest.raises(ConfigError, match="scratchExpiryDays 2 must outlast executionTimeoutHours 48"):
        InfraConfig.from_context(
            {"buildfarm:scratchExpiryDays": "2", "buildfarm:executionTimeoutHours": "48"}
        )
    assert InfraConfig.from_context(
        {"buildfarm:scratchExpiryDays": "3", "buildfarm:executionTimeoutHours": "48"}
    )
    with pytest.raises(ConfigError, match="buildfarm:unknownKey"):
        InfraConfig.from_context({"buildfarm:unknownKey": "1"}, registry)


def test_default_config_enables_the_platforms_live_on_the_lifecycle_date(lifecycle_date) -> None:
    registry = load_registry()
    config = cdk_json_config(lifecycle_date)
    assert config.platforms(registry) == registry.live_platforms(date.fromisoformat(lifecycle_date))
    assert "debian-11" not in config.platforms(registry) and "opensuse-160" in config.platforms(registry)
    # debian-11's support ends 2026-08-31: a deployment synthesized that day still builds it
    before = InfraConfig.from_context({"buildfarm:lifecycleDate": "2026-08-31"}, registry)
    assert "debian-11" in before.platforms(registry)
    assert ("debian-11", "aarch64") in before.cells(registry)


def test_ended_platforms_keep_builders_only_when_configured(lifecycle_date) -> None:
    registry = load_registry()
    kept = InfraConfig.from_context(
        {"buildfarm:lifecycleDate": lifecycle_date, "buildfarm:endOfLifePlatforms": "debian-11, ubuntu-2004"},
        registry,
    )
    platforms = kept.platforms(registry)
    assert {"debian-11", "ubuntu-2004"} <= set(platforms)
    assert set(platforms) - {"debian-11", "ubuntu-2004"} == set(
        cdk_json_config(lifecycle_date).platforms(registry)
    )
    environment = kept.lambda_environment()
    assert environment["BUILDFARM_ENABLED_PLATFORMS"].split(",") == list(platforms)
    assert environment["BUILDFARM_RELEASES_PER_SERIES"] == "2"
    with pytest.raises(ValueError, match="'debian-9'"):
        InfraConfig.from_context({"buildfarm:endOfLifePlatforms": "debian-9"}, registry)
    with pytest.raises(ConfigError, match="buildfarm:lifecycleDate"):
        InfraConfig.from_context({"buildfarm:lifecycleDate": "next tuesday"}, registry)
    # an explicit list is taken as is, whatever the dates
    explicit = InfraConfig.from_context(
        {"buildfarm:lifecycleDate": lifecycle_date, "buildfarm:enabledPlatforms": "debian-11,debian-12"},
        registry,
    )
    assert explicit.platforms(registry) == ("debian-11", "debian-12")


def test_the_lambdas_read_back_every_shared_setting_the_stack_gives_them(lifecycle_date) -> None:
    """One model: what InfraConfig sets as the Lambdas' environment, FarmConfig reads as the same values."""
    registry = load_registry()
    config = InfraConfig.from_context(
        {
            "buildfarm:lifecycleDate": lifecycle_date,
            "buildfarm:enabledArches": "aarch64",
            "buildfarm:lowestSeries": "3.10",
            "buildfarm:releasesPerSeries": "3",
            "buildfarm:prereleases": "true",
            "buildfarm:optimization": "none",
            "buildfarm:releasesUrl": "https://mirror.example.org/api/",
            "buildfarm:sourceMirror": "https://mirror.example.org/ftp/python",
            "buildfarm:maxConcurrency": 7,
            "buildfarm:executionTimeoutHours": "1.5",
            # A job's attempts, each waiting in its queue and running to its timeout, then a
            # runtime job's, fit in it.
            "buildfarm:jobTimeoutMinutes": "30",
            "buildfarm:runtimeJobTimeoutMinutes": "10",
            "buildfarm:jobAttempts": "1",
            "buildfarm:runnableTimeoutMinutes": "10",
            "buildfarm:jobMinutesEstimate": 25,
            "buildfarm:maxCellsPerExecution": "12",
        },
        registry,
    )
    farm = FarmConfig.from_env(config.lambda_environment(registry), registry)
    for name in WorkflowSettings.model_fields:
        assert getattr(farm, name) == getattr(config, name), name
    assert farm.releases_url == "https://mirror.example.org/api"
    assert farm.enabled_platforms == config.platforms(registry)
    assert farm.claim_ttl_seconds == 5400  # a claim outlives the 1.5 h execution that holds it
    assert farm.cells_per_execution == 12


def _readme_tables():
    spec = importlib.util.spec_from_file_location("readme_tables", REPO / "scripts" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_model_is_the_one_place_defaults_live_and_cdk_json_may_override_any(lifecycle_date) -> None:
    """cdk.json names every key for platform teams to edit, in the README table's order; the
    README's defaults are rendered from the model, so an edited cdk.json is no inconsistency."""
    from infra.config import CONTEXT_KEYS, CONTEXT_PREFIX

    aliases = [field.alias for field in InfraConfig.model_fields.values()]
    assert sorted(CONTEXT_KEYS) == sorted(a for a in aliases if a != "lifecycleDate")
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    assert [key for key in context if key.startswith(CONTEXT_PREFIX)] == [
        f"{CONTEXT_PREFIX}{key}" for key in CONTEXT_KEYS
    ]
    cdk_json_config(lifecycle_date)  # valid as it stands
    readme = (REPO / "README.md").read_text()
    table = _readme_tables().cdk_keys_table(load_registry())
    assert f"<!-- cdk-keys:begin -->\n{table}\n<!-- cdk-keys:end -->" in readme
    fields = {field.alias: field for field in InfraConfig.model_fields.values()}
    assert "| `buildfarm:jobMemoryMiB` | `15360` |" in table and fields["jobMemoryMiB"].default == 15360
    # A team's edit of cdk.json (what the README tells it to do) is taken as is.
    edited = {**context, "buildfarm:jobVcpus": 16, "buildfarm:jobMemoryMiB": 30720}
    config = InfraConfig.from_context({**edited, "buildfarm:lifecycleDate": lifecycle_date})
    assert (config.job_vcpus, config.job_memory_mib) == (16, 30720)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"jobVcpus": "64", "maxVcpusPerArch": "32"},
            "jobVcpus 64 exceeds maxVcpusPerArch 32: no compute environment could ever run a job",
        ),
        (
            {"jobAttempts": "3", "jobTimeoutMinutes": "420", "cloudRuntimes": "false"},
            "jobAttempts 3 x (jobTimeoutMinutes 420 + runnableTimeoutMinutes 60) = 1440 minutes must be "
            "shorter than executionTimeoutHours 24",
        ),
        (
            {"executionTimeoutHours": "2", "jobTimeoutMinutes": "100", "jobAttempts": "1"},
            "jobAttempts 1 x (jobTimeoutMinutes 100 + runnableTimeoutMinutes 60) + jobAttempts 1 x "
            "(runtimeJobTimeoutMinutes 60 + runnableTimeoutMinutes 60) = 280 minutes must be shorter "
            "than executionTimeoutHours 2",
        ),
        (  # the runtime Map runs after the Python Map: its jobs' lives add up
            {"jobTimeoutMinutes": "300"},
            "jobAttempts 3 x (jobTimeoutMinutes 300 + runnableTimeoutMinutes 60) + jobAttempts 3 x "
            "(runtimeJobTimeoutMinutes 60 + runnableTimeoutMinutes 60) = 1440 minutes must be shorter",
        ),
        (
            {"runtimeJobTimeoutMinutes": "9"},
            "buildfarm:runtimeJobTimeoutMinutes: 9 is too small (minimum 10)",
        ),
        ({"runnableTimeoutMinutes": "5"}, "buildfarm:runnableTimeoutMinutes: 5 is too small (minimum 10)"),
    ],
)
def test_a_job_must_fit_its_compute_environment_and_its_execution(values, message) -> None:
    """A job larger than its compute environment would wait RUNNABLE for ever, and one whose
    attempts (each waiting in its queue, then running to its timeout) outlast the execution
    would keep Finalize from running: synthesis refuses both, naming the values."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        InfraConfig.from_context({f"buildfarm:{key}": value for key, value in values.items()})
    fits = InfraConfig.from_context({"buildfarm:jobVcpus": "32", "buildfarm:maxVcpusPerArch": "32"})
    assert fits.job_minutes_at_most == 3 * (240 + 60)
    assert fits.execution_minutes_at_most == 3 * (240 + 60) + 3 * (60 + 60) < 24 * 60
    # Without cloud runtimes only the Python job counts.
    alone = InfraConfig.from_context(
        {"buildfarm:jobTimeoutMinutes": "300", "buildfarm:cloudRuntimes": "false"}
    )
    assert alone.execution_minutes_at_most == 3 * (300 + 60) < 24 * 60


C8G = "c8g.48xlarge, 192 vCPUs, 384 GiB, of which a job may ask for 373555 MiB"
M7I = "m7i.48xlarge, 192 vCPUs, 768 GiB, of which a job may ask for 747110 MiB"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"jobMemoryMiB": "400000"},
            "cdk context: jobVcpus 8 with jobMemoryMiB 400000: no aarch64 build instance with 8 vCPUs can "
            f"give a job 400000 MiB (the most: {C8G})",
        ),
        (
            {"jobMemoryMiB": "373556", "jobVcpus": "192", "maxVcpusPerArch": "256"},
            "no aarch64 build instance with 192 vCPUs can give a job 373556 MiB",
        ),
        (
            {"jobMemoryMiB": "800000", "enabledArches": "x86_64"},
            f"no x86_64 build instance with 8 vCPUs can give a job 800000 MiB (the most: {M7I})",
        ),
        (
            {"jobVcpus": "200", "maxVcpusPerArch": "256", "enabledArches": "x86_64"},
            f"jobVcpus 200 with jobMemoryMiB 15360: no x86_64 build instance has 200 vCPUs (the most: {M7I})",
        ),
    ],
)
def test_a_job_must_fit_the_largest_build_instance_of_each_enabled_arch(values, message) -> None:
    """Batch cannot give a job more vCPUs or memory than one instance of its compute
    environment's families has (less the share ECS and the system keep): such a job would wait
    RUNNABLE until cancelled, every time. Synthesis refuses it, naming the keys and values."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        InfraConfig.from_context({f"buildfarm:{key}": value for key, value in values.items()})
    # The largest that fits: aarch64's c8g.48xlarge bounds both arches; x86_64 alone, its m7i.
    largest = {"buildfarm:jobVcpus": "192", "buildfarm:maxVcpusPerArch": "256"}
    InfraConfig.from_context({**largest, "buildfarm:jobMemoryMiB": "373555"})
    InfraConfig.from_context(
        {**largest, "buildfarm:jobMemoryMiB": "747110", "buildfarm:enabledArches": "x86_64"}
    )


def test_a_budget_beyond_what_plan_was_measured_claiming_is_named() -> None:
    """benchmarks/plan_matrix.py's forced plan claims the default budget (360 cells); Plan claims
    one cell after another within its function's timeout, and no larger budget was measured."""
    assert InfraConfig.from_context({}).unmeasured_budget() is None
    doubled = InfraConfig.from_context({"buildfarm:maxConcurrency": "40"})
    assert doubled.cells_per_execution == 720
    assert doubled.unmeasured_budget() == (
        "one execution may claim 720 cells (maxConcurrency 40, executionTimeoutHours 24, "
        "jobMinutesEstimate 40); Plan was measured claiming 360 (benchmarks/plan_matrix.py), one "
        "cell after another within its function's timeout: set maxCellsPerExecution=360 to stay "
        "within what was measured"
    )
    capped = {"buildfarm:maxConcurrency": "40", "buildfarm:maxCellsPerExecution": "360"}
    assert InfraConfig.from_context(capped).unmeasured_budget() is None
    direct = InfraConfig.from_context({"buildfarm:maxCellsPerExecution": "361"}).unmeasured_budget()
    assert direct and direct.startswith("one execution may claim 361 cells (maxCellsPerExecution 361);")


CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"schedule": "every hour"}, "'every hour' is not an EventBridge schedule"),
        ({"schedule": "cron(0 3 * * *)"}, "'cron(0 3 * * *)' is not an EventBridge schedule"),
        ({"schedule": "rate(1 hours)"}, "'rate(1 hours)' is not an EventBridge schedule"),
        ({"schedule": "rate(2 hour)"}, "'rate(2 hour)' is not an EventBridge schedule"),
        ({"schedule": "rate(\u0661 hour)"}, "'rate(\u0661 hour)' is not an EventBridge schedule"),
        ({"sourceMirror": "file:///srv/mirror"}, "the Batch jobs cannot read this machine's files"),
        ({"vpcId": "hello", "subnetIds": "subnet-0123abcd"}, "'hello' is not a VPC id"),
        ({"vpcId": "vpc-0123abcd", "subnetIds": "subnet-0123abcd,nope"}, "'nope' is not a subnet id"),
        ({"lowestSeries": "3.99"}, "3.99 is newer than every series the registry knows"),
        ({"domainName": "python.example.org"}, "domainName and certificateArn go together"),
        ({"domainName": "Python.Example.org", "certificateArn": CERT}, "is not a domain name"),
        (
            {"domainName": "python.example.org", "certificateArn": CERT.replace("us-east-1", "eu-west-1")},
            "is not an ACM certificate ARN in us-east-1",
        ),
    ],
)
def test_deployment_values_cloudformation_would_refuse_late_are_refused_at_synthesis(values, message) -> None:
    """Each would otherwise surface only after a deploy has built every builder image (a
    schedule), or deploy a farm that cannot work (a file:// mirror, lowestSeries past the
    registry)."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        InfraConfig.from_context({f"buildfarm:{key}": value for key, value in values.items()})
    for schedule in ("", "rate(1 hour)", "rate(30 minutes)", "rate(1 day)", "cron(0 3 * * ? *)"):
        assert InfraConfig.from_context({"buildfarm:schedule": schedule}).schedule == schedule
    ids = {"buildfarm:vpcId": "vpc-0123456789abcdef0", "buildfarm:subnetIds": "subnet-0123abcd"}
    assert InfraConfig.from_context(ids).subnet_ids == ("subnet-0123abcd",)


def test_the_shared_uv_cache_is_off_unless_set_and_reaches_the_jobs_as_farm_config_reads_it() -> None:
    """Off by default (buildfarm.runtimes.uv_cache says why), on the stack's side and the jobs';
    set, the stack gives its jobs the variable FarmConfig reads (the Lambdas have no use for it)."""
    assert InfraConfig.from_context({}).runtime_uv_cache is False
    assert InfraConfig.from_context({}).job_environment() == {}
    assert FarmConfig.from_env({}).runtime_uv_cache is False
    enabled = InfraConfig.from_context({"buildfarm:runtimeUvCache": "true"})
    assert enabled.job_environment() == {"BUILDFARM_RUNTIME_UV_CACHE": "true"}
    assert FarmConfig.from_env(enabled.job_environment()).runtime_uv_cache is True
    assert "BUILDFARM_RUNTIME_UV_CACHE" not in enabled.lambda_environment()


@pytest.mark.parametrize(
    ("variable", "key", "text", "message"),
    [
        ("BUILDFARM_MAX_CONCURRENCY", "maxConcurrency", "0", "0 is too small (minimum 1)"),
        ("BUILDFARM_MAX_CONCURRENCY", "maxConcurrency", "١٢", "'١٢' is not a number"),
        ("BUILDFARM_EXECUTION_TIMEOUT_HOURS", "executionTimeoutHours", "1e3", "'1e3' is not a number"),
        ("BUILDFARM_RELEASES_PER_SERIES", "releasesPerSeries", "101", "101 is too large (maximum 100)"),
        ("BUILDFARM_PRERELEASES", "prereleases", "maybe", "'maybe' is not true or false"),
        ("BUILDFARM_RUNTIME_UV_CACHE", "runtimeUvCache", "maybe", "'maybe' is not true or false"),
        ("BUILDFARM_OPTIMIZATION", "optimization", "fast", "'fast' is not one of 'pgo+lto' or 'none'"),
        ("BUILDFARM_LOWEST_SERIES", "lowestSeries", "3", "'3' is not a series like 3.9"),
        (
            "BUILDFARM_ENABLED_ARCHES",
            "enabledArches",
            "x86_64,sparc",
            "unknown arch 'sparc' (known: x86_64, aarch64)",
        ),
        ("BUILDFARM_RELEASES_URL", "releasesUrl", "ftp://x", "'ftp://x' is not a http/https URL"),
        ("BUILDFARM_SOURCE_MIRROR", "sourceMirror", "mirror", "'mirror' is not a http/https/file URL"),
    ],
)
def test_a_bad_shared_setting_is_named_the_same_way_from_either_source(variable, key, text, message) -> None:
    with pytest.raises(ConfigError) as from_env:
        FarmConfig.from_env({variable: text})
    assert str(from_env.value) == f"{variable}: {message}"
    with pytest.raises(ConfigError) as from_context:
        InfraConfig.from_context({f"buildfarm:{key}": text})
    assert str(from_context.value).startswith(f"cdk context buildfarm:{key}: {message}")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("https://cdn.example.com/py?v=1", "a base URL has no query or fragment"),
        ("https://", "no host"),
        ("https://x.example/`id`", "only letters, digits and ._~%+/:@=-[] are allowed"),
        ("ftp://x", "is not a http/https URL"),
    ],
)
def test_a_public_base_url_is_checked_as_reindex_checks_it(text, problem) -> None:
    """Every publisher (run, Finalize, the runtime items) bakes it into install.sh and uv's
    metadata; reindex refused these, the configuration took them."""
    with pytest.raises(ConfigError) as refused:
        FarmConfig.from_env({"BUILDFARM_PUBLIC_BASE_URL": text})
    assert str(refused.value).startswith(f"BUILDFARM_PUBLIC_BASE_URL: {text!r}")
    assert str(refused.value).endswith(problem)
    good = "https://d111111abcdef8.cloudfront.net/python"
    assert FarmConfig.from_env({"BUILDFARM_PUBLIC_BASE_URL": good}).public_base_url == good


def test_the_store_comes_from_the_option_else_the_variable_else_the_default(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert FarmConfig.from_env({}).store == str(tmp_path / "dist")
    assert FarmConfig.from_env({"BUILDFARM_STORE": "s3://farm-store/p"}).store == "s3://farm-store/p"
    assert FarmConfig.from_env({"BUILDFARM_STORE": "s3://farm-store"}, store="here").store == str(
        tmp_path / "here"
    )
    (tmp_path / "file").write_text("")
    for bad, message in (("ftp://x", "unsupported store 'ftp://x'"), ("file", "is not a directory")):
        with pytest.raises(ConfigError, match=message):
            FarmConfig.from_env({"BUILDFARM_STORE": bad})


@pytest.mark.slow  # an in-process CDK app (jsii starts node: 10-20 s)
def test_log_retention_is_one_of_cloudwatchs_and_reaches_the_log_groups(tmp_path) -> None:
    from aws_cdk import App, Stack
    from aws_cdk.assertions import Template

    from infra.log_groups import log_group

    config = InfraConfig.from_context({"buildfarm:logRetentionDays": "30"})
    stack = Stack(App(outdir=str(tmp_path)), "Logs")
    log_group(stack, "Group", config)
    Template.from_stack(stack).has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 30})
    with pytest.raises(ConfigError, match=r"buildfarm:logRetentionDays: 100 is not a CloudWatch retention"):
        InfraConfig.from_context({"buildfarm:logRetentionDays": 100})
