"""python.org answers can never break a run: malformed, oversized or partly failing answers
keep the catalog (or add only the good releases), and a plan still succeeds."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from pydantic import ValidationError

from buildfarm.plan import plan
from buildfarm.releases import Release

from .conftest import NOW, PYTHON_ORG, SEED_VERSIONS, old_catalog, read_json, refreshed


@pytest.fixture
def config(config):
    return config.model_copy(update={"releases_timeout_seconds": 2.0})


# -- fuzzed python.org answers: never break a run ---------------------------------------------


def _listing_with(*names: str, release_id: str = "1050") -> bytes:
    """The recorded listing plus entries with these names (pointing at an existing release)."""
    listing = json.loads((PYTHON_ORG / "release.json").read_text())
    extra = [
        {
            "name": name,
            "is_published": True,
            "pre_release": False,
            "release_date": "2026-11-01T00:00:00Z",
            "resource_uri": f"https://www.python.org/api/v2/downloads/release/{release_id}/",
        }
        for name in names
    ]
    return json.dumps(extra + listing).encode()


def _ten_thousand_entries() -> bytes:
    names = [f"Python 3.{minor}.{patch}" for minor in range(14, 114) for patch in range(100)]
    return _listing_with(*names[:10_000])


@pytest.mark.parametrize(
    "listing",
    [
        pytest.param(_listing_with("Python 3.13.\u0669"), id="arabic-indic-digit"),
        pytest.param(_listing_with("Python \u0663.13.20"), id="non-ascii-major"),
        pytest.param(_listing_with("Python 3.13.\uff16"), id="fullwidth-digit"),
        pytest.param(_listing_with("Python 3.13.16\n"), id="trailing-newline"),
        pytest.param(_listing_with("Python 3.13.16 "), id="trailing-space"),
        pytest.param(_listing_with("Python 3.13"), id="series-not-release"),
        pytest.param(_listing_with("Python 3.99.0"), id="series-beyond-newest-known"),
        pytest.param(_ten_thousand_entries(), id="10000-entries"),
        pytest.param(
            json.dumps(
                [{**json.loads(_listing_with("Python 3.13.16"))[0], "resource_uri": "x/release/1\n"}]
            ).encode(),
            id="resource-uri-newline",
        ),
    ],
)
def test_malformed_listing_keeps_the_catalog_and_the_plan_succeeds(
    local_store, config, python_org, listing, caplog
):
    before = old_catalog(local_store)
    python_org.overrides[("/api/v2/downloads/release/", None)] = (200, listing, 0)
    config = config.model_copy(update={"releases_url": python_org.base})
    with caplog.at_level(logging.WARNING):
        result = plan({}, local_store, config, "fuzz", NOW)
    assert result.releases_refresh.startswith("failed: ")
    # logged once, and nothing else complained
    assert [r.name for r in caplog.records if r.levelno >= logging.WARNING] == ["buildfarm.releases"]
    assert "keeping the old catalog" in caplog.text
    assert read_json(local_store, "releases.json")["releases"] == before["releases"]
    assert set(result.versions) <= SEED_VERSIONS and result.items  # planned from the old catalog
    # not one release_file request: a malformed listing is not trusted for anything
    assert not [r for r in python_org.requests if "release=" in r]


def test_a_503_on_one_release_file_skips_only_that_release(local_store, config, python_org, caplog):
    old_catalog(local_store)
    python_org.overrides[("/api/v2/downloads/release_file/", "1055")] = (503, b"<html>busy</html>", 0)
    with caplog.at_level(logging.WARNING):
        state = refreshed(local_store, config, python_org)
    assert state.refresh == "refreshed (+2)"
    saved = read_json(local_store, "releases.json")["releases"]
    assert {"3.14.0rc2", "3.9.23"} <= set(saved) and "3.12.11" not in saved
    assert "release 3.12.11 skipped" in caplog.text and "HTTP 503" in caplog.text
    # the skipped release is asked for again on the next refresh, and then added
    del python_org.overrides[("/api/v2/downloads/release_file/", "1055")]
    state = refreshed(local_store, config, python_org, now=NOW + timedelta(hours=1))
    assert state.refresh == "refreshed (+1)" and "3.12.11" in state.catalog.releases
    result = plan({"versions": ["3.12"]}, local_store, config, "after", NOW + timedelta(hours=1))
    assert result.versions == ["3.12.11"]


def _plausible_releases(python_org, versions: list[str]) -> None:
    """python.org lists these releases (ids 5000...), each with a .tar.xz and a sha256."""
    listing = []
    for index, version in enumerate(versions):
        release_id = str(5000 + index)
        listing.append(
            {
                "name": f"Python {version}",
                "is_published": True,
                "pre_release": "rc" in version or "a" in version,
                "resource_uri": f"https://www.python.org/api/v2/downloads/release/{release_id}/",
            }
        )
        file = [
            {
                "url": f"https://www.python.org/ftp/python/{version}/Python-{version}.tar.xz",
                "sha256_sum": "cd" * 32,
            }
        ]
        python_org.overrides[("/api/v2/downloads/release_file/", release_id)] = (
            200,
            json.dumps(file).encode(),
            0,
        )
    python_org.overrides[("/api/v2/downloads/release/", None)] = (200, json.dumps(listing).encode(), 0)


def test_new_releases_per_refresh_are_capped_newest_first(local_store, config, python_org):
    from buildfarm.python_org import MAX_NEW_PER_REFRESH

    versions = [f"3.{minor}.{patch}" for minor in (12, 11, 10) for patch in range(40, 0, -1)]
    _plausible_releases(python_org, versions)
    state = refreshed(local_store, config, python_org)
    assert state.refresh == f"refreshed (+{MAX_NEW_PER_REFRESH})" == "refreshed (+50)"
    assert set(versions[:50]) <= set(state.catalog.releases)
    fetched = [r for r in python_org.requests if "release=" in r]
    assert len(fetched) == 50
    # the rest arrive on the following refreshes
    state = refreshed(local_store, config, python_org, now=NOW + timedelta(hours=1))
    assert state.refresh == "refreshed (+50)"
    result = plan({}, local_store, config, "capped", NOW + timedelta(hours=1))
    assert len(result.versions) <= 2 * 5  # the policy's newest 2 per live series, not 100 releases


def test_series_listed_one_after_another_are_accepted(local_store, config, python_org):
    # The seed's newest series is 3.13; python.org lists 3.14 and 3.15 (then 3.16 would follow).
    _plausible_releases(python_org, ["3.15.0a2", "3.14.1", "3.14.0", "3.13.16"])
    state = refreshed(local_store, config, python_org)
    assert state.refresh == "refreshed (+4)"
    _plausible_releases(python_org, ["3.17.0a1", "3.15.0a3"])  # 3.16 skipped: implausible
    state = refreshed(local_store, config, python_org, now=NOW + timedelta(hours=1))
    assert state.refresh.startswith("failed: series 3.17 listed")
    assert "3.15.0a3" not in state.catalog.releases


@pytest.mark.parametrize(
    "answer",
    [
        {"3.13.\u0669": {"version": "3.13.\u0669", "sha256": "ab" * 32, "url": "u"}},
        {"3.13.16\n": {"version": "3.13.16\n", "sha256": "ab" * 32, "url": "u"}},
        {"3.13.16": {"version": "3.13.17", "sha256": "ab" * 32, "url": "u"}},
        {"3.99.0": {"version": "3.99.0", "sha256": "ab" * 32, "url": "u"}},
        {f"3.13.{n}": {"version": f"3.13.{n}", "sha256": "ab" * 32, "url": "u"} for n in range(16, 99)},
    ],
    ids=["unicode-digit", "newline", "key-mismatch", "beyond-newest", "too-many"],
)
def test_whatever_a_fetch_returns_the_plan_succeeds(local_store, config, answer):
    """The planner's own checks hold for any fetch function (the Plan Lambda's, a test's)."""

    def fetch(url, *, lowest_series, known, timeout):
        return answer

    result = plan({"versions": ["3.13"]}, local_store, config, "any", NOW, fetch_releases=fetch)
    catalog = read_json(local_store, "releases.json")["releases"]
    if len(answer) > 50:
        assert result.releases_refresh == "refreshed (+50)" and result.versions == ["3.13.98"]
    else:
        assert result.releases_refresh.startswith("failed: ")
        assert set(catalog) == SEED_VERSIONS and result.versions == ["3.13.15"]


def test_a_catalog_with_a_bad_entry_keeps_its_good_ones(local_store, config, caplog):
    document = old_catalog(local_store)
    document["releases"]["3.13.\u0669"] = {"version": "3.13.\u0669", "sha256": "ab" * 32, "url": "u"}
    document["releases"]["3.12.11"] = {"version": "3.12.11", "sha256": "ab" * 32, "url": "u"}
    local_store.put_json("releases.json", document)
    with caplog.at_level(logging.WARNING):
        result = plan({"versions": ["3.12"]}, local_store, config, "repair", NOW)
    assert "damaged" in caplog.text and result.versions == ["3.12.11"]
    assert set(read_json(local_store, "releases.json")["releases"]) == SEED_VERSIONS | {"3.12.11"}


@pytest.mark.parametrize("version", ["3.13.\u0669", "3.13.5\n", "\uff13.13.5", "3.13"])
def test_a_release_version_is_ascii_and_whole(version):
    with pytest.raises(ValidationError, match="malformed Python version"):
        Release(version=version, sha256="ab" * 32, url="u")


def test_a_refresh_is_due_on_every_hourly_run():
    from buildfarm.config import FarmConfig

    assert FarmConfig.defaults().releases_max_age_hours < 1


@pytest.mark.parametrize("suffix", ["\n", "\u0669", "\uff11"])
def test_keys_buckets_and_urls_are_matched_whole_and_ascii(suffix):
    from buildfarm.catalog import render_installer
    from buildfarm.store import S3Store, StoreError, check_key
    from buildfarm.versions import is_series

    with pytest.raises(StoreError):
        check_key("builds/3.13.5/manifest.json" + suffix)
    with pytest.raises(StoreError, match="invalid S3 bucket name"):
        S3Store("farm-bucket" + suffix, "python", client=object())
    assert not is_series("3.13" + suffix)
    # a URL with a newline is never baked into the shell script
    assert (
        "https://cdn.example/python" + suffix
        not in render_installer("https://cdn.example/python" + suffix).decode()
    )
    assert (
        'DEFAULT_BASE_URL="https://cdn.example/python"'
        in render_installer("https://cdn.example/python").decode()
    )
