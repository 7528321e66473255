"""The stack's configuration (cdk.json context): values from the command line, bad values named,
and the platforms that get builders following the registry's end-of-support dates."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from buildfarm.platforms import load_registry
from infra.config import ConfigError, InfraConfig

REPO = Path(__file__).resolve().parents[2]


def cdk_json_config(lifecycle_date: str) -> InfraConfig:
    """cdk.json's configuration on the day the session's synthesis used (the lifecycle_date fixture)."""
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    return InfraConfig.from_context({**context, "buildfarm:lifecycleDate": lifecycle_date})


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
        InfraConfig.from_context({"buildfarm:vpcId": "vpc-123"}, registry)
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
