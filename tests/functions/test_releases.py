"""releases.json: the seed, the refresh from (recorded) python.org answers, bad answers, the policy."""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from pathlib import Path

import pytest
from packaging.version import Version
from pydantic import ValidationError

from buildfarm.release_import import ReleaseInputError, add_releases, merged, new_release, parse_sha256sums
from buildfarm.releases import (
    Release,
    ReleaseCatalog,
    ReleaseLookupError,
    admitted,
    known_near,
    load_releases,
    load_seed,
    newest_of_series,
    resolve_versions,
    source_url,
)
from buildfarm.store import LocalStore

from .conftest import NOW, PYTHON_ORG, REAL_3135_SHA256, SEED_VERSIONS, old_catalog, read_json, refreshed

SHA256SUMS = Path(__file__).resolve().parents[3] / "shared" / "cpython-src" / "SHA256SUMS"


def test_seed_has_only_verified_releases(source_sha256):
    seed = load_seed()
    assert set(seed.releases) == SEED_VERSIONS
    assert seed.releases["3.13.5"].sha256 == REAL_3135_SHA256 == source_sha256
    assert not any(r.prerelease for r in seed.releases.values())
    # the file each digest is of: the one form ../shared/cpython-src holds (3.11.2 only as .tgz)
    assert {v: r.file for v, r in seed.releases.items()} == {
        "3.13.15": "Python-3.13.15.tar.xz",
        "3.13.5": "Python-3.13.5.tar.xz",
        "3.11.2": "Python-3.11.2.tgz",
        "3.9.2": "Python-3.9.2.tar.xz",
    }
    assert {v: r.release_date[:10] for v, r in seed.releases.items()} == {
        "3.13.15": "2026-08-05",
        "3.13.5": "2025-06-11",
        "3.11.2": "2023-02-08",
        "3.9.2": "2021-02-19",
    }
    for release in seed.releases.values():
        assert release.url == f"https://www.python.org/ftp/python/{release.version}/{release.file}"


def test_seed_digests_are_the_upstream_ones():
    if not SHA256SUMS.is_file():
        pytest.skip(f"{SHA256SUMS} is not on this machine")
    upstream = dict(reversed(line.split()) for line in SHA256SUMS.read_text().splitlines() if line.strip())
    assert {r.file: r.sha256 for r in load_seed().releases.values()} == upstream


def test_source_url_follows_python_org_layout():
    assert source_url("3.13.5", "https://m/ftp/python/") == "https://m/ftp/python/3.13.5/Python-3.13.5.tar.xz"
    # python.org files pre-releases under the final release's directory
    assert source_url("3.14.0rc2", "file:///mirror") == "file:///mirror/3.14.0/Python-3.14.0rc2.tar.xz"
    assert source_url("3.11.2", "file:///m", "Python-3.11.2.tgz") == "file:///m/3.11.2/Python-3.11.2.tgz"
    release = load_seed().releases["3.11.2"]
    assert source_url(release.version, "http://127.0.0.1:8/py", release.file).endswith(
        "/3.11.2/Python-3.11.2.tgz"
    )


def test_a_catalog_written_before_the_file_field_loads_as_tar_xz():
    old = {
        "releases": {"3.12.4": {"version": "3.12.4", "sha256": "ab" * 32, "url": "u", "prerelease": False}}
    }
    release = ReleaseCatalog.model_validate(old).releases["3.12.4"]
    assert release.file == "Python-3.12.4.tar.xz"
    assert release.model_dump()["file"] == "Python-3.12.4.tar.xz"  # saved with the field from now on


@pytest.mark.parametrize("file", ["Python-3.13.4.tgz", "Python-3.13.5.zip", "../Python-3.13.5.tgz", ""])
def test_a_release_file_must_be_its_own_tarball(file):
    with pytest.raises(ValidationError, match=r"not one of Python-3\.13\.5\.tar\.xz, Python-3\.13\.5\.tgz"):
        Release(version="3.13.5", sha256="ab" * 32, url="u", file=file)


@pytest.fixture
def config(config):
    return config.model_copy(update={"releases_timeout_seconds": 2.0})


def test_first_refresh_from_recorded_answers(local_store, config, python_org):
    state = refreshed(local_store, config, python_org)
    catalog = read_json(local_store, "releases.json")
    assert state.refresh == "refreshed (+3)"
    # newest first, real data for 3.13.5, python.org's URL and date kept; the seed's releases too
    assert list(catalog["releases"]) == [
        "3.14.0rc2",
        "3.13.15",
        "3.13.5",
        "3.12.11",
        "3.11.2",
        "3.9.23",
        "3.9.2",
    ]
    assert catalog["releases"]["3.12.11"]["file"] == "Python-3.12.11.tar.xz"  # preferred over .tgz
    assert catalog["releases"]["3.13.5"]["sha256"] == REAL_3135_SHA256
    rc = catalog["releases"]["3.14.0rc2"]
    assert rc["prerelease"] is True
    assert rc["url"] == "https://www.python.org/ftp/python/3.14.0/Python-3.14.0rc2.tar.xz"
    assert catalog["releases"]["3.12.11"]["release_date"] == "2025-06-03T18:00:00Z"
    assert catalog["updated"] == catalog["checked"] == "2026-11-22T10:00:00Z"
    # Not fetched: unpublished (700), below 3.9 (900), Python 2 (600), the install manager (1049);
    # 3.13.5 was known from the seed.
    asked = {r.split("release=")[1] for r in python_org.requests if "release=" in r}
    assert asked == {"1060", "1055", "650", "1052"}


def test_refresh_only_when_due(local_store, config, python_org):
    refreshed(local_store, config, python_org)
    python_org.requests.clear()
    state = refreshed(local_store, config, python_org, now=NOW + timedelta(minutes=20))
    assert state.refresh == "not due" and not state.changed
    assert python_org.requests == []
    # due again before the next hourly run, even one cron starts a few minutes early
    state = refreshed(local_store, config, python_org, now=NOW + timedelta(minutes=55))
    assert state.refresh == "refreshed (+0)"
    # known releases are not fetched again; 3.10.0 is (python.org may add its sha256 later)
    assert python_org.requests == [
        "/api/v2/downloads/release/",
        "/api/v2/downloads/release_file/?release=650",
    ]


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(
            {
                ("/api/v2/downloads/release/", None): (
                    200,
                    (PYTHON_ORG / "release_corrupt.json").read_bytes(),
                    0,
                )
            },
            id="truncated-json",
        ),
        pytest.param(
            {("/api/v2/downloads/release/", None): (200, b'{"detail": "ok"}', 0)}, id="object-not-array"
        ),
        pytest.param({("/api/v2/downloads/release/", None): (200, b"[]", 0)}, id="empty-list"),
        pytest.param(
            {
                ("/api/v2/downloads/release/", None): (
                    200,
                    json.dumps([{"name": "Python 3.13.6"}]).encode(),
                    0,
                )
            },
            id="missing-fields",
        ),
        pytest.param({("/api/v2/downloads/release/", None): (503, b"<html>down</html>", 0)}, id="http-503"),
        pytest.param(
            {
                ("/api/v2/downloads/release_file/", r): (500, b"oops", 0)
                for r in ("1060", "1055", "650", "1052")
            },
            id="every-file-list-500",
        ),
        pytest.param({("/api/v2/downloads/release/", None): (200, b"[]", 1.0)}, id="timeout"),
    ],
)
def test_bad_or_partial_answer_keeps_theold_catalog(local_store, config, python_org, broken, caplog):
    before = old_catalog(local_store)
    python_org.overrides.update(broken)
    config = config.model_copy(update={"releases_timeout_seconds": 0.3})
    with caplog.at_level(logging.WARNING, logger="buildfarm.releases"):
        state = refreshed(local_store, config, python_org)
    assert state.refresh.startswith("failed: ")
    assert caplog.text.count("keeping the old catalog") == 1  # logged once
    after = read_json(local_store, "releases.json")
    assert after["releases"] == before["releases"]  # nothing added, nothing removed
    assert after["updated"] == before["updated"]
    assert after["checked"] == "2026-11-22T10:00:00Z"  # the attempt is recorded...
    python_org.requests.clear()
    state = refreshed(local_store, config, python_org, now=NOW + timedelta(minutes=10))
    assert state.refresh == "not due" and python_org.requests == []  # ...so it is not retried at once
    state = refreshed(local_store, config, python_org, now=NOW + timedelta(hours=1))
    assert python_org.requests  # but by the next hourly run it is


def test_unreachable_python_org_on_first_use_uses_the_seed(local_store, config):
    state = load_releases(local_store, config, NOW)  # config points at a closed port
    assert state.refresh.startswith("failed: ")
    assert set(state.catalog.releases) == SEED_VERSIONS


def test_known_checksum_is_never_replaced(local_store, config, python_org, caplog):
    seed = load_seed().model_dump(mode="json")
    local_store.put_json("releases.json", seed)
    answer = json.loads((PYTHON_ORG / "release_file_1050.json").read_text())
    for entry in answer:
        entry["sha256_sum"] = "66" * 32
    python_org.overrides[("/api/v2/downloads/release/", None)] = (
        200,
        json.dumps([dict(json.loads((PYTHON_ORG / "release.json").read_text())[1])]).encode(),
        0,
    )
    state = refreshed(local_store, config, python_org)
    assert state.catalog.releases["3.13.5"].sha256 == REAL_3135_SHA256


def _one_release_answer(python_org, version: str, release_id: str, files: dict[str, str | None]) -> None:
    """python.org lists only `version`, with these source files (name -> sha256 or None)."""
    listing = [
        {
            "name": f"Python {version}",
            "is_published": True,
            "pre_release": False,
            "release_date": "2026-10-01T12:00:00Z",
            "resource_uri": f"https://www.python.org/api/v2/downloads/release/{release_id}/",
        }
    ]
    answer = [
        {"url": f"https://www.python.org/ftp/python/{version}/{name}", "sha256_sum": sha}
        for name, sha in files.items()
    ]
    python_org.overrides[("/api/v2/downloads/release/", None)] = (200, json.dumps(listing).encode(), 0)
    python_org.overrides[("/api/v2/downloads/release_file/", release_id)] = (
        200,
        json.dumps(answer).encode(),
        0,
    )


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"Python-3.12.12.tgz": "cd" * 32, "Python-3.12.12.tar.xz": None}, ("Python-3.12.12.tgz", "cd" * 32)),
        ({"Python-3.12.12.tgz": "cd" * 32}, ("Python-3.12.12.tgz", "cd" * 32)),
        (
            {"Python-3.12.12.tgz": "cd" * 32, "Python-3.12.12.tar.xz": "ef" * 32},
            ("Python-3.12.12.tar.xz", "ef" * 32),
        ),
        ({"Python-3.12.12.tgz": None, "Python-3.12.12.tar.xz": ""}, None),
    ],
    ids=["tgz-when-tar-xz-has-no-sha256", "tgz-only", "tar-xz-preferred", "neither"],
)
def test_refresh_takes_the_tgz_when_python_org_gives_no_tar_xz_digest(
    local_store, config, python_org, files, expected
):
    _one_release_answer(python_org, "3.12.12", "3000", files)
    state = refreshed(local_store, config, python_org)
    release = state.catalog.releases.get("3.12.12")
    assert (release and (release.file, release.sha256)) == (expected or None)
    if release:
        assert release.url.endswith("/3.12.12/" + release.file)
        assert read_json(local_store, "releases.json")["releases"]["3.12.12"]["file"] == release.file


def test_damaged_catalog_is_replaced_by_seed(local_store, config):
    local_store.put("releases.json", b"{not json")
    state = load_releases(local_store, config, NOW)
    assert "3.13.5" in state.catalog.releases and state.changed


def catalog_of(*versions_and_pre):
    return ReleaseCatalog.model_validate(
        {
            "releases": {
                v: {"version": v, "sha256": "ab" * 32, "url": "u", "prerelease": pre}
                for v, pre in versions_and_pre
            }
        }
    )


def test_version_policy(config):
    catalog = catalog_of(
        ("3.8.20", False), ("3.9.23", False), ("3.13.5", False), ("3.13.4", False), ("3.14.0rc2", True)
    )
    assert [r.version for r in admitted(catalog, config)] == ["3.13.5", "3.13.4", "3.9.23"]
    with_pre = config.model_copy(update={"prereleases": True, "lowest_series": "3.13"})
    assert [r.version for r in admitted(catalog, with_pre)] == ["3.14.0rc2", "3.13.5", "3.13.4"]


def test_resolve_versions(config):
    catalog = catalog_of(("3.13.5", False), ("3.13.4", False), ("3.14.0rc1", True), ("3.14.0rc2", True))
    pick = lambda *v: [r.version for r in resolve_versions(list(v), catalog, config)]  # noqa: E731
    assert pick("3.13") == ["3.13.5"]
    assert pick("3.13.4", "3.13") == ["3.13.5", "3.13.4"]
    assert pick("3.14") == ["3.14.0rc2"]  # a series with only pre-releases: its newest
    assert pick("3.14.0rc1") == ["3.14.0rc1"]  # explicit pre-release: allowed
    assert pick("3.13", "3.13.5") == ["3.13.5"]
    for bad, message in [
        (
            "3.13.9",
            "unknown Python version '3.13.9': not in releases.json (known 3.13.x: 3.13.5, 3.13.4); "
            "add it with: buildfarm releases add 3.13.9 --sha256 HEX",
        ),
        (
            "3.12.1",
            "unknown Python version '3.12.1': not in releases.json (no 3.12.x is known; nearest: 3.13.5, "
            "3.13.4); add it with: buildfarm releases add 3.12.1 --sha256 HEX",
        ),
        (
            "3.12",
            "unknown series '3.12': no release of it in releases.json (known series: 3.14, 3.13); "
            "add one with: buildfarm releases add 3.12.N --sha256 HEX",
        ),
        ("3.8", "'3.8' is below the lowest supported series 3.9"),
        ("2.7", "unsupported Python version '2.7' (only CPython 3 is built; "),
    ]:
        with pytest.raises(ReleaseLookupError) as caught:
            pick(bad)
        assert message in str(caught.value)


def test_known_near_names_the_series_or_the_nearest_ones():
    catalog = catalog_of(("3.13.5", False), ("3.13.4", False), ("3.11.2", False), ("3.9.2", False))
    assert known_near(catalog, "3.13") == "known 3.13.x: 3.13.5, 3.13.4"
    assert known_near(catalog, "3.12") == "no 3.12.x is known; nearest: 3.13.5, 3.13.4, 3.11.2"
    assert known_near(catalog, "3.10") == "no 3.10.x is known; nearest: 3.11.2, 3.9.2"
    assert known_near(catalog, "3.15") == "no 3.15.x is known; nearest: 3.13.5, 3.13.4"
    assert known_near(catalog_of(), "3.13") == "no release is known"
    assert newest_of_series(catalog, "3.13").version == "3.13.5"
    assert newest_of_series(catalog, "3.12") is None


# -- releases given by hand or by a mirror's SHA256SUMS -----------------------------------------


def test_new_release_validates_and_normalizes():
    release = new_release("3.14.0rc2", "AB" * 32)
    assert (release.sha256, release.file, release.prerelease) == ("ab" * 32, "Python-3.14.0rc2.tar.xz", True)
    assert release.url == "https://www.python.org/ftp/python/3.14.0/Python-3.14.0rc2.tar.xz"
    assert new_release("3.11.2", "ab" * 32, "Python-3.11.2.tgz").url.endswith("/3.11.2/Python-3.11.2.tgz")
    for args, message in [
        (("3.13", "ab" * 32), "malformed Python version '3.13'"),
        (("3.13.\u0665", "ab" * 32), "malformed Python version"),  # Arabic-Indic five
        (("3.13.5", "ab" * 31), "malformed sha256"),
        (("3.13.5", "ab" * 32 + "\n"), "malformed sha256"),
        (("3.13.5", "ab" * 32, "Python-3.13.5.zip"), "not one of Python-3.13.5.tar.xz, Python-3.13.5.tgz"),
    ]:
        with pytest.raises(ReleaseInputError, match=re.escape(message)):
            new_release(*args)


def test_parse_sha256sums_takes_source_tarballs_only():
    text = (
        f"{'ab' * 32}  Python-3.12.1.tgz\n{'cd' * 32}  Python-3.12.1.tar.xz\n"
        f"{'ef' * 32} *Python-3.12.2.tgz\n{'ab' * 32}  Python-3.12.1.tar.xz.asc\n"
        f"{'ab' * 32}  python-3.12.3.tar.xz\n"  # not python.org's name
        f"{'ab' * 32}  Python-3.12.3.tar.bz2\n# comment\n\n"
    )
    releases, others = parse_sha256sums(text, "SUMS")
    assert [(r.version, r.file, r.sha256[:2]) for r in releases] == [
        ("3.12.2", "Python-3.12.2.tgz", "ef"),
        ("3.12.1", "Python-3.12.1.tar.xz", "cd"),
    ]
    assert others == 3
    with pytest.raises(ReleaseInputError, match=r"SUMS line 1 is not '<sha256>  <file>': 'ab  Python"):
        parse_sha256sums("ab  Python-3.12.1.tgz\n", "SUMS")
    # The same file twice: the same digest is harmless, a different one is refused.
    same, _ = parse_sha256sums(f"{'ab' * 32}  Python-3.12.1.tgz\n{'AB' * 32}  Python-3.12.1.tgz\n", "SUMS")
    assert [r.sha256 for r in same] == ["ab" * 32]
    with pytest.raises(ReleaseInputError, match=r"SUMS line 3 gives Python-3.12.1.tgz a second, different"):
        parse_sha256sums(f"{'ab' * 32}  Python-3.12.1.tgz\n\n{'cd' * 32}  Python-3.12.1.tgz\n", "SUMS")


@pytest.mark.parametrize("name", ["Python-3.13.05.tar.xz", "Python-03.13.5.tgz", "Python-3.13.5rc01.tar.xz"])
def test_parse_sha256sums_counts_a_version_spelled_with_leading_zeros_as_another_file(name):
    """python.org never spells a release so (versions.parse_release refuses it): like any other
    name that is not a CPython source tarball's, it is counted and the rest is imported."""
    text = f"{'ab' * 32}  {name}\n{'cd' * 32}  Python-3.13.6.tar.xz\n"
    releases, others = parse_sha256sums(text, "SUMS")
    assert ([r.version for r in releases], others) == (["3.13.6"], 1)
    assert parse_sha256sums(f"{'ab' * 32}  {name}\n", "SUMS") == ([], 1)


def test_shared_mirror_sums_are_the_seed():
    if not SHA256SUMS.is_file():
        pytest.skip(f"{SHA256SUMS} is not on this machine")
    releases, _ = parse_sha256sums(SHA256SUMS.read_text(), str(SHA256SUMS))
    seed = load_seed().releases
    assert {r.version: (r.file, r.sha256) for r in releases} == {
        v: (r.file, r.sha256) for v, r in seed.items()
    }


def test_merged_never_changes_a_digest_unless_forced():
    catalog = catalog_of(("3.13.5", False))
    same = new_release("3.13.5", "ab" * 32)
    other = new_release("3.13.5", "cd" * 32)
    fresh = new_release("3.13.6", "cd" * 32)
    updated, change = merged(catalog, [same, fresh], force=False)
    assert change.unchanged == ["3.13.5"] and [r.version for r in change.added] == ["3.13.6"]
    assert set(updated.releases) == {"3.13.5", "3.13.6"} and set(catalog.releases) == {"3.13.5"}
    with pytest.raises(
        ReleaseInputError, match=re.escape("3.13.5 is already in releases.json as Python-3.13.5.tar.xz")
    ):
        merged(catalog, [fresh, other], force=False)
    updated, change = merged(catalog, [other], force=True)
    assert [r.version for r in change.replaced] == ["3.13.5"] and updated.releases[
        "3.13.5"
    ].sha256 == "cd" * 32


class RacingStore(LocalStore):
    """A store where another writer rewrites releases.json right after our first read."""

    raced = False

    def read(self, key):
        answer = super().read(key)
        if key == "releases.json" and not self.raced:
            self.raced = True
            catalog = json.loads(answer[0])
            catalog["releases"]["3.12.9"] = new_release("3.12.9", "ef" * 32).model_dump(mode="json")
            self.put_json(key, catalog)
        return answer


def test_add_releases_rereads_when_another_writer_wins(tmp_path):
    store = RacingStore(tmp_path / "store")
    add_releases(store, [new_release("3.12.8", "ab" * 32)])  # creates releases.json from the seed
    change = add_releases(store, [new_release("3.12.7", "cd" * 32)])
    assert [r.version for r in change.added] == ["3.12.7"]
    catalog = json.loads((tmp_path / "store" / "releases.json").read_text())
    assert {"3.12.7", "3.12.8", "3.12.9"} <= set(catalog["releases"])  # the other writer's entry kept
    assert list(catalog["releases"]) == sorted(catalog["releases"], key=Version, reverse=True)


def test_add_releases_to_an_s3_store(s3_store, config):
    change = add_releases(s3_store, [new_release("3.12.1", "ab" * 32, "Python-3.12.1.tgz")])
    assert [r.version for r in change.added] == ["3.12.1"]
    state = load_releases(s3_store, config.model_copy(update={"releases_max_age_hours": 1e6}), NOW)
    assert state.catalog.releases["3.12.1"].file == "Python-3.12.1.tgz"
    assert set(load_seed().releases) < set(state.catalog.releases)
