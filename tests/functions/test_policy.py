"""The lifecycle policy: live series on live platforms, the newest N releases of each, end-of-life
cells built when named, unbuildable series with their reason. Every date is passed explicitly."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from buildfarm.config import ConfigError, FarmConfig
from buildfarm.plan import plan
from buildfarm.platforms import builder_image_dir, load_registry
from buildfarm.policy import policy_platforms, policy_releases
from buildfarm.releases import ReleaseCatalog
from buildfarm.workflow_input import InputError

from .conftest import FAKE_SHA, NOW, read_json, write_published_matrix, write_releases

# Every patch release of 3.9 to 3.14 up to late 2026, and two 3.15 pre-releases.
LAST_PATCH = {9: 25, 10: 19, 11: 14, 12: 12, 13: 15, 14: 1}
REALISTIC = [f"3.{minor}.{patch}" for minor, last in LAST_PATCH.items() for patch in range(last + 1)]
REALISTIC_PRE = ["3.15.0a1", "3.15.0a2"]


def catalog_of(versions: list[str]) -> ReleaseCatalog:
    return ReleaseCatalog.model_validate(
        {
            "releases": {
                v: {"version": v, "sha256": FAKE_SHA, "url": "u", "prerelease": any(c in v for c in "abr")}
                for v in versions
            }
        }
    )


def day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(hour=12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("today", "series_10_live"),
    [("2026-10-31", True), ("2026-11-01", False)],  # 3.10's end of life is 2026-10-31
)
def test_a_series_is_built_until_its_end_of_life(config, registry, today, series_10_live):
    chosen, live, dropped = policy_releases(
        catalog_of(REALISTIC), config, registry, date.fromisoformat(today)
    )
    assert ("3.10" in live) is series_10_live
    assert ("3.10.19" in [r.version for r in chosen]) is series_10_live
    if not series_10_live:
        assert [(d.what, d.reason) for d in dropped] == [
            ("series 3.10", "end of life 2026-10-31"),
            ("series 3.9", "end of life 2025-10-31"),
        ]


@pytest.mark.parametrize(("today", "live"), [("2026-08-31", True), ("2026-09-01", False)])
def test_a_platform_is_built_until_its_end_of_support(config, registry, today, live):
    platforms, dropped = policy_platforms(config, registry, date.fromisoformat(today))
    assert ("debian-11" in platforms) is live
    assert (("platform debian-11", "end of support 2026-08-31") in [(d.what, d.reason) for d in dropped]) is (
        not live
    )


def test_newest_n_releases_of_each_live_series(config, registry):
    today = NOW.date()
    chosen, live, _ = policy_releases(catalog_of(REALISTIC + REALISTIC_PRE), config, registry, today)
    assert live == ["3.14", "3.13", "3.12", "3.11"]
    assert [r.version for r in chosen] == [
        "3.14.1", "3.14.0", "3.13.15", "3.13.14", "3.12.12", "3.12.11", "3.11.14", "3.11.13",
    ]  # fmt: skip
    one = config.model_copy(update={"releases_per_series": 1, "prereleases": True})
    chosen, live, _ = policy_releases(catalog_of(REALISTIC + REALISTIC_PRE), one, registry, today)
    assert [r.version for r in chosen] == ["3.15.0a2", "3.14.1", "3.13.15", "3.12.12", "3.11.14"]


def test_pre_releases_only_with_the_flag_and_only_until_the_first_final(config, registry):
    today = NOW.date()
    with_pre = config.model_copy(update={"prereleases": True})
    versions = ["3.15.0a1", "3.15.0b1", "3.15.0rc1", "3.14.0rc2", "3.14.0", "3.16.0a1"]
    chosen, live, dropped = policy_releases(catalog_of(versions), with_pre, registry, today)
    assert [r.version for r in chosen] == ["3.15.0rc1", "3.15.0b1", "3.14.0"]  # 3.14.0rc2 superseded
    # a series the registry has no end-of-life date for is not built by the schedule
    assert [(d.what, d.reason) for d in dropped] == [
        ("series 3.16", "no end-of-life date in the registry (builder_image/platforms.json series)")
    ]
    chosen, live, dropped = policy_releases(catalog_of(versions), config, registry, today)
    assert [r.version for r in chosen] == ["3.14.0"] and live == ["3.14"] and dropped == []


def test_schedule_on_an_empty_store_plans_hundreds_not_thousands(local_store, config, registry):
    write_releases(local_store, REALISTIC + REALISTIC_PRE)
    result = plan({"dry_run": True}, local_store, config, "e", NOW)
    live_platforms = registry.live_platforms(NOW.date())
    every_cell = len(REALISTIC) * len(registry.platforms) * 2
    assert every_cell > 2000  # what "every release the policy admits" used to mean
    assert result.counts["planned"] == 4 * 2 * len(live_platforms) * 2 == 160
    with_pre = config.model_copy(update={"prereleases": True})
    assert plan({"dry_run": True}, local_store, with_pre, "e", NOW).counts["planned"] == 200
    report = result.policy
    assert report.releases_per_series == 2 and report.series == ["3.14", "3.13", "3.12", "3.11"]
    assert report.platforms == list(live_platforms)
    dropped = {d.what: d.reason for d in report.dropped}
    assert dropped["series 3.9"] == "end of life 2025-10-31"
    assert dropped["series 3.10"] == "end of life 2026-10-31"
    assert dropped["platform debian-11"] == "end of support 2026-08-31"
    assert dropped["platform opensuse-156"] == "end of support 2026-04-30"


def test_a_new_release_adds_one_cell_per_live_platform_and_arch(local_store, config, registry):
    write_releases(local_store, REALISTIC)
    first = plan({"dry_run": True}, local_store, config, "e", NOW)
    platforms = list(registry.live_platforms(NOW.date()))
    write_published_matrix(local_store, first.versions, platforms, ["x86_64", "aarch64"])
    assert plan({"dry_run": True}, local_store, config, "e", NOW).counts["planned"] == 0
    write_releases(local_store, [*REALISTIC, "3.13.16"])
    after = plan({"dry_run": True}, local_store, config, "e", NOW)
    assert after.counts["planned"] == len(platforms) * 2 == 20
    assert {i.spec.version for i in after.items} == {"3.13.16"}


def test_the_policy_follows_the_day_of_the_plan(local_store, config):
    write_releases(local_store, REALISTIC)
    before = plan({"dry_run": True}, local_store, config, "e", day("2026-08-31"))
    after = plan({"dry_run": True}, local_store, config, "e", day("2026-09-01"))
    cells = lambda result: {i.cell for i in result.items}  # noqa: E731
    assert {c for c in cells(before) if "/debian-11/" in c}
    assert not {c for c in cells(after) if "/debian-11/" in c}
    assert cells(after) == {c for c in cells(before) if "/debian-11/" not in c}


def test_naming_an_end_of_life_cell_builds_it(local_store, config):
    result = plan({"versions": ["3.9.2"], "platforms": ["debian-11"]}, local_store, config, "named", NOW)
    assert [i.cell for i in result.items] == ["3.9.2/debian-11/x86_64", "3.9.2/debian-11/aarch64"]
    spec = result.items[0].spec
    assert spec.source.url == "https://www.python.org/ftp/python/3.9.2/Python-3.9.2.tar.xz"
    assert result.policy.releases_per_series is None and result.policy.platforms_named
    record = read_json(local_store, "plans/named/plan.json")
    assert record["policy"]["series"] == ["3.9"] and record["policy"]["platforms"] == ["debian-11"]


def test_a_named_version_goes_to_the_live_platforms(local_store, config, registry):
    result = plan({"versions": ["3.11.2"], "dry_run": True}, local_store, config, "e", NOW)
    assert {i.cell.split("/")[1] for i in result.items} == set(registry.live_platforms(NOW.date()))
    # 3.11.2's source is known as .tgz: the spec points at that file on the mirror
    assert {i.spec.source.url for i in result.items} == {
        "https://www.python.org/ftp/python/3.11.2/Python-3.11.2.tgz"
    }


@pytest.fixture
def strict_registry(tmp_path):
    """The registry, with 3.9 marked unbuildable on debian-12."""
    raw = json.loads((builder_image_dir() / "platforms.json").read_text())
    raw["platforms"]["debian-12"]["unbuildable_series"] = {"3.9": "test: no OpenSSL 1.1 here"}
    path = tmp_path / "platforms.json"
    path.write_text(json.dumps(raw))
    return load_registry(path)


def test_unbuildable_series_is_dropped_with_its_reason(local_store, config, strict_registry):
    result = plan(
        {"versions": ["3.9.2"], "dry_run": True}, local_store, config, "e", NOW, registry=strict_registry
    )
    assert "debian-12" not in {i.cell.split("/")[1] for i in result.items} and result.items
    assert [(d.what, d.reason) for d in result.policy.dropped if "debian-12" in d.what] == [
        ("3.9.2 on debian-12", "test: no OpenSSL 1.1 here")
    ]
    # the schedule too, on a day 3.9 was still live
    early = plan({"dry_run": True}, local_store, config, "e", day("2025-06-01"), registry=strict_registry)
    assert "3.9.2 on debian-12" in {d.what for d in early.policy.dropped}
    assert not any(i.cell.startswith("3.9.2/debian-12/") for i in early.items)


def test_naming_an_unbuildable_cell_is_an_error_naming_the_reason(local_store, config, strict_registry):
    with pytest.raises(InputError, match=r"3\.9\.2 cannot be built on debian-12: test: no OpenSSL 1\.1 here"):
        plan(
            {"versions": ["3.9.2"], "platforms": ["debian-12"]},
            local_store,
            config,
            "e",
            NOW,
            registry=strict_registry,
        )
    assert list(local_store.list("")) == []  # nothing written


def test_releases_per_series_from_the_environment():
    assert FarmConfig.from_env({"BUILDFARM_RELEASES_PER_SERIES": "3"}).releases_per_series == 3
    assert FarmConfig.from_env({}).releases_per_series == 2
    for bad in ("0", "two", "-1"):
        with pytest.raises(ConfigError, match="BUILDFARM_RELEASES_PER_SERIES"):
            FarmConfig.from_env({"BUILDFARM_RELEASES_PER_SERIES": bad})


def test_every_platform_is_enabled_by_default_and_the_dates_choose(registry):
    config = FarmConfig.from_env({})
    assert config.enabled_platforms == tuple(registry.platforms)
    disabled = FarmConfig.from_env({"BUILDFARM_ENABLED_PLATFORMS": "debian-12,debian-13"})
    platforms, dropped = policy_platforms(disabled, registry, NOW.date())
    assert platforms == ["debian-12", "debian-13"] and dropped == []
