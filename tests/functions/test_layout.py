"""The store layout (buildfarm.layout): every key as DESIGN.md spells it, and the builder, which
cannot import the package (stdlib-only, Python 3.6), spelling its keys the same way."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from buildfarm import layout

BUILDER_IMAGE = Path(__file__).resolve().parents[2] / "builder_image"
CELL = ("3.13.5", "debian-12", "x86_64")
SHA = "93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (layout.VERSIONS_KEY, "versions.json"),
        (layout.RELEASES_KEY, "releases.json"),
        (layout.INDEX_KEY, "index.html"),
        (layout.INSTALLER_KEY, "install.sh"),
        (layout.download_metadata_key("debian-12"), "download-metadata/debian-12.json"),
        (layout.cell_name(*CELL), "3.13.5/debian-12/x86_64"),
        (layout.artifact_dir(*CELL, 2), "builds/3.13.5/debian-12/x86_64/2"),
        (layout.manifest_key("builds/3.13.5/d/x/2"), "builds/3.13.5/d/x/2/manifest.json"),
        (layout.log_dir(*CELL, 2), "logs/3.13.5/debian-12/x86_64/2"),
        (layout.failure_key(*CELL, 2), "logs/3.13.5/debian-12/x86_64/2/failure.json"),
        (layout.cell_build_dirs(*CELL), ("builds/3.13.5/debian-12/x86_64", "logs/3.13.5/debian-12/x86_64")),
        (layout.claim_key(*CELL), "claims/3.13.5/debian-12/x86_64.json"),
        (layout.plan_record_key("exec-1"), "plans/exec-1/plan.json"),
        (layout.items_key("exec-1"), "plans/exec-1/items.json"),
        (layout.outcomes_prefix("exec-1"), "plans/exec-1/outcomes/"),
        (
            layout.outcome_key("exec-1", "failed", CELL),
            "plans/exec-1/outcomes/failed/3.13.5/debian-12/x86_64.json",
        ),
        (layout.MAP_RESULTS_PREFIX, "plans/results/"),
        (layout.run_marker_key("exec-1"), "runs/exec-1.json"),
        (layout.under(layout.CLAIMS_PREFIX), "claims/*"),
    ],
)
def test_keys_are_spelled_as_designed(key, expected):
    assert key == expected


def test_keys_parse_back():
    for status in layout.OUTCOME_STATES:
        key = layout.outcome_key("exec-1", status, CELL)
        assert layout.parse_outcome_key("exec-1", key) == (status, "3.13.5/debian-12/x86_64")
    assert layout.parse_outcome_key("exec-1", "plans/exec-1/outcomes/pending/3.13.5/d/x.json") is None
    assert layout.parse_outcome_key("exec-1", "plans/exec-1/outcomes/failed/3.13.5/d/x.tmp") is None
    assert layout.run_marker_id(layout.run_marker_key("exec-1")) == "exec-1"
    assert layout.run_marker_id("runs/notes.txt") is None
    names = ("1", "12", "0", "07", "-1", "latest")
    assert [name for name in names if layout.BUILD_NUMBER.fullmatch(name)] == ["1", "12"]


def test_every_prefix_is_a_folder():
    prefixes = (
        layout.DOWNLOAD_METADATA_PREFIX,
        *layout.BUILDER_PREFIXES,
        *layout.INTERNAL_PREFIXES,
        layout.MAP_RESULTS_PREFIX,
    )
    assert all(prefix.endswith("/") and prefix.count("/") <= 2 for prefix in prefixes)
    # The builder writes only builds/ and logs/; logs are internal, builds and catalogs public.
    assert layout.BUILDER_PREFIXES == ("builds/", "logs/")
    assert layout.BUILDS_PREFIX not in layout.INTERNAL_PREFIXES
    assert layout.LOGS_PREFIX in layout.INTERNAL_PREFIXES
    assert set(layout.DERIVED_KEYS) <= set(layout.CATALOG_KEYS)


# -- the builder spells builds/ and logs/ keys itself: the same ones ---------------------------


@pytest.fixture(scope="module")
def driver() -> SimpleNamespace:
    """The builder's driver package (builder_image/driver/), imported as build.py imports it:
    with builder_image/ on sys.path."""
    if str(BUILDER_IMAGE) not in sys.path:
        sys.path.insert(0, str(BUILDER_IMAGE))
    from driver import errors, main, spec, upload

    return SimpleNamespace(
        load_platforms=spec.load_platforms,
        parse_spec=spec.parse_spec,
        SpecError=errors.SpecError,
        LocalStore=upload.LocalStore,
        log_dir_for=spec.log_dir_for,
        record_failure=main.record_failure,
    )


def spec_dict(build: int, artifact_dir: str) -> dict:
    version, platform, arch = CELL
    return {
        "version": version,
        "platform": platform,
        "arch": arch,
        "build": build,
        "source": {"url": f"http://127.0.0.1:1/{version}/Python-{version}.tar.xz", "sha256": SHA},
        "prefix": f"/opt/python/{version}",
        "optimization": "none",
        "store": "/tmp/store",
        "artifact_dir": artifact_dir,
        "execution_id": "exec-1",
    }


def test_builder_accepts_only_the_layouts_artifact_dir(driver):
    registry = driver.load_platforms()
    expected = layout.artifact_dir(*CELL, 3)
    assert driver.parse_spec(json.dumps(spec_dict(3, expected)), registry)["artifact_dir"] == expected
    with pytest.raises(driver.SpecError) as caught:
        driver.parse_spec(json.dumps(spec_dict(3, layout.artifact_dir(*CELL, 4))), registry)
    assert repr(expected) in str(caught.value)


def test_builder_publishes_and_logs_where_the_layout_says(driver, tmp_path, monkeypatch):
    monkeypatch.delenv("BUILDFARM_LOG_FILE", raising=False)
    root, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    (work / "build.log").write_text("log\n")
    (work / "manifest.json").write_text("{}\n")
    spec = spec_dict(5, layout.artifact_dir(*CELL, 5))
    store = driver.LocalStore(str(root))

    assert driver.log_dir_for(spec) == layout.log_dir(*CELL, 5)
    store.publish(spec["artifact_dir"], [(layout.MANIFEST_FILE, str(work / "manifest.json"))])
    assert (root / layout.manifest_key(layout.artifact_dir(*CELL, 5))).is_file()

    log = SimpleNamespace(path=str(work / "build.log"), write_error=None)
    build = SimpleNamespace(log=log, work=str(work), spec=spec, store=store)
    driver.record_failure(build, "configure", "no compiler", ["tail"])
    failure = json.loads((root / layout.failure_key(*CELL, 5)).read_text())
    assert failure["phase"] == "configure" and failure["reason"] == "no compiler"
    assert (root / layout.log_dir(*CELL, 5) / layout.BUILD_LOG_FILE).read_text() == "log\n"
