"""The publisher: verification against manifests, versions.json, uv metadata, index.html."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from html_links import page_links

from buildfarm.catalog import CatalogArtifact, CatalogCell, merge_cells, update_versions
from buildfarm.claims import claim_key
from buildfarm.plan import plan
from buildfarm.publish import BatchOutcome, publish, publish_cell

from .conftest import NOW, REAL_3135_SHA256, all_keys, fake_build, read_json, write_releases

REPO_VENV_UV = os.path.join(os.path.dirname(__file__), "..", "..", ".venv", "bin", "uv")
DEBIAN_12_BOTH = {"versions": ["3.13.5"], "platforms": ["debian-12"]}


def planned(store, config, request=DEBIAN_12_BOTH, execution="exec-1", now=NOW):
    return plan(request, store, config, execution, now)


def test_publish_verified_builds(local_store, config):
    result = planned(local_store, config)
    for item in result.items:
        fake_build(local_store, item.spec, kinds=("tarball", "deb", "rpm"))
    outcome = publish(result.summary, local_store, config, now=NOW, signer=None)
    assert outcome.published == ["3.13.5/debian-12/x86_64", "3.13.5/debian-12/aarch64"]
    assert outcome.failed == []
    assert outcome.counts == {
        "planned": 2,
        "published": 2,
        "failed": 0,
        "deferred": 0,
        "skipped_published": 0,
        "skipped_claimed": 0,
        "skipped_failing": 0,
    }

    versions = read_json(local_store, "versions.json")
    assert versions["schema_version"] == 1 and versions["python_versions"] == ["3.13.5"]
    assert versions["updated"] == "2026-11-22T10:00:00Z"
    entry = versions["builds"]["3.13.5"]["debian-12"]["x86_64"]
    assert entry["build"] == 1
    assert entry["manifest"] == "builds/3.13.5/debian-12/x86_64/1/manifest.json"
    assert [a["type"] for a in entry["artifacts"]] == ["tarball", "deb", "rpm"]
    tarball = entry["artifacts"][0]
    assert tarball["key"] == "builds/3.13.5/debian-12/x86_64/1/python-3.13.5-debian-12-x86_64.tar.gz"
    assert tarball["size"] == len(local_store.read(tarball["key"])[0])
    # claims released, build numbers kept
    marker = read_json(local_store, claim_key("3.13.5", "debian-12", "x86_64"))
    assert marker["released"] is True and marker["build"] == 1


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        ({"skip_upload": "deb"}, "artifact python-3.13.5_2_amd64.deb is missing from the store"),
        ({"wrong_sha256": "tarball"}, "artifact python-3.13.5-debian-12-x86_64.tar.gz: sha256 "),
        # uv and a non-root install take the cell's one tarball: none, or a choice, is refused.
        ({"kinds": ("deb",)}, "manifest.json lists 0 tarballs (), not one"),
        (
            {"kinds": ("tarball", "deb", "tarball")},
            "manifest.json lists 2 tarballs (python-3.13.5-debian-12-x86_64.tar.gz, "
            "python-3.13.5-debian-12-x86_64.tar.gz), not one",
        ),
    ],
)
def test_unverifiable_build_fails_and_leaves_versions_json_alone(local_store, config, breakage, reason):
    first = planned(local_store, config)
    for item in first.items:
        fake_build(local_store, item.spec)
    publish(first.summary, local_store, config, now=NOW, signer=None)
    before = local_store.read("versions.json")[0]

    forced = planned(local_store, config, {**DEBIAN_12_BOTH, "force": True}, "exec-2")
    x86, arm = forced.items
    fake_build(local_store, x86.spec, **breakage)
    fake_build(local_store, arm.spec)
    outcome = publish(forced.summary, local_store, config, now=NOW + timedelta(hours=1), signer=None)
    assert outcome.published == ["3.13.5/debian-12/aarch64"]
    assert [f.cell for f in outcome.failed] == ["3.13.5/debian-12/x86_64"]
    assert outcome.failed[0].reason.startswith(reason)

    versions = read_json(local_store, "versions.json")
    assert (
        versions["builds"]["3.13.5"]["debian-12"]["x86_64"]
        == json.loads(before)["builds"]["3.13.5"]["debian-12"]["x86_64"]
    )
    assert versions["builds"]["3.13.5"]["debian-12"]["aarch64"]["build"] == 2


def test_size_mismatch_and_foreign_manifest_fail(local_store, config):
    result = planned(local_store, config)
    x86, arm = result.items
    manifest = fake_build(local_store, x86.spec)
    real_size = manifest["artifacts"][0]["size"]
    manifest["artifacts"][0]["size"] += 1
    local_store.put_json(f"{x86.spec.artifact_dir}/manifest.json", manifest)
    other = fake_build(local_store, arm.spec)
    other["spec"]["build"] = 7
    local_store.put_json(f"{arm.spec.artifact_dir}/manifest.json", other)
    outcome = publish(result.summary, local_store, config, now=NOW, signer=None)
    reasons = {f.cell: f.reason for f in outcome.failed}
    assert (
        f"size {real_size} differs from the manifest's {real_size + 1}" in reasons["3.13.5/debian-12/x86_64"]
    )
    assert reasons["3.13.5/debian-12/aarch64"] == "manifest spec differs from the plan: build 7 (plan: 1)"
    # Nothing is published; versions.json only records the two failing cells.
    assert read_json(local_store, "versions.json")["builds"] == {}


def test_failure_reasons(local_store, config):
    request = {"versions": ["3.13.5"], "platforms": ["debian-12", "rhel-9"]}
    result = planned(local_store, config, request)
    local_store.put_json(
        "logs/3.13.5/rhel-9/x86_64/1/failure.json", {"phase": "configure", "reason": "no C compiler"}
    )
    batch = {
        "3.13.5/debian-12/x86_64": BatchOutcome(status="failed", error="Batch job OOM-killed"),
        "3.13.5/debian-12/aarch64": BatchOutcome(status="succeeded", job_id="job-2"),
    }
    for item in result.items:
        if item.cell in batch:
            publish_cell(item, local_store, NOW, batch[item.cell], signer=None)
    outcome = publish(result.summary, local_store, config, now=NOW, signer=None)
    assert {f.cell: f.reason for f in outcome.failed} == {
        "3.13.5/debian-12/x86_64": "Batch job OOM-killed",
        "3.13.5/debian-12/aarch64": "no manifest (the build reported success)",
        "3.13.5/rhel-9/x86_64": "configure: no C compiler",
        "3.13.5/rhel-9/aarch64": "no manifest",
    }
    assert outcome.published == []
    index = local_store.read("index.html")[0].decode()
    assert "failed #1" in index and "no C compiler" in index


def test_a_cell_failed_then_published_by_a_retry_counts_as_published(local_store, config):
    # PublishCell ran before the build landed (a retry after a timeout, say), then again after.
    result = planned(local_store, config)
    first, second = result.items
    assert publish_cell(first, local_store, NOW, signer=None).status == "failed"
    fake_build(local_store, first.spec)
    fake_build(local_store, second.spec)
    assert publish_cell(first, local_store, NOW, signer=None).status == "published"
    keys = [key for key in all_keys(local_store) if "/outcomes/" in key]
    assert sorted(key.split("/outcomes/")[1].split("/")[0] for key in keys) == ["failed", "published"]
    outcome = publish(result.summary, local_store, config, now=NOW, signer=None)
    assert sorted(outcome.published) == sorted([first.cell, second.cell]) and outcome.failed == []


def test_dry_run_plan_publishes_nothing(local_store, config):
    result = plan({**DEBIAN_12_BOTH, "dry_run": True}, local_store, config, "dry", NOW)
    before = all_keys(local_store)
    outcome = publish(result.summary, local_store, config, now=NOW, signer=None)
    assert outcome.counts["planned"] == 0 and all_keys(local_store) == before


def test_python_versions_newest_first_and_never_rolled_back():
    def cell(build):
        return CatalogCell(
            build=build,
            published="t",
            manifest="m",
            artifacts=[CatalogArtifact(type="tarball", key="k", sha256="ab" * 32, size=1)],
        )

    doc, accepted = merge_cells(
        {},
        {
            ("3.9.23", "debian-12", "x86_64"): cell(1),
            ("3.13.5", "debian-12", "x86_64"): cell(2),
            ("3.14.0rc2", "rhel-9", "aarch64"): cell(1),
            ("3.13.10", "debian-12", "x86_64"): cell(1),
        },
        NOW,
    )
    assert doc["python_versions"] == ["3.14.0rc2", "3.13.10", "3.13.5", "3.9.23"]
    assert list(doc["builds"]) == doc["python_versions"]
    doc2, accepted = merge_cells(doc, {("3.13.5", "debian-12", "x86_64"): cell(1)}, NOW)
    assert accepted == [] and doc2["builds"]["3.13.5"]["debian-12"]["x86_64"]["build"] == 2


def uv_lists(metadata: Path, home: Path) -> set[tuple[str, str]]:
    """(key, url) of every download the real uv (the dev dependencies') reads from metadata."""
    uv = os.path.realpath(REPO_VENV_UV)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "UV_CACHE_DIR": str(home / "uv-cache")}
    listing = ["python", "list", "--only-downloads", "--all-platforms", "--all-arches", "--all-versions"]
    answer = subprocess.run(
        [uv, *listing, "--output-format", "json", "--python-downloads-json-url", str(metadata)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return {(d["key"], d["url"]) for d in json.loads(answer.stdout)}


def test_uv_reads_the_download_metadata(local_store, config, tmp_path):
    write_releases(local_store, ["3.13.5", "3.14.0rc2"])
    config = config.model_copy(update={"public_base_url": "https://cdn.example.org/python/"})
    result = planned(local_store, config, {"versions": ["3.13.5", "3.14.0rc2"], "platforms": ["debian-12"]})
    for item in result.items:
        fake_build(local_store, item.spec)
    publish(result.summary, local_store, config, now=NOW, signer=None)

    metadata = read_json(local_store, "download-metadata/debian-12.json")
    assert list(metadata) == [
        "cpython-3.14.0rc2-linux-x86_64-gnu",
        "cpython-3.14.0rc2-linux-aarch64-gnu",
        "cpython-3.13.5-linux-x86_64-gnu",
        "cpython-3.13.5-linux-aarch64-gnu",
    ]
    entry = metadata["cpython-3.13.5-linux-x86_64-gnu"]
    tarball_key = "builds/3.13.5/debian-12/x86_64/1/python-3.13.5-debian-12-x86_64.tar.gz"
    assert entry == {
        "name": "cpython",
        "arch": {"family": "x86_64", "variant": None},
        "os": "linux",
        "libc": "gnu",
        "major": 3,
        "minor": 13,
        "patch": 5,
        "prerelease": "",
        "url": f"https://cdn.example.org/python/{tarball_key}",
        "sha256": read_json(local_store, "versions.json")["builds"]["3.13.5"]["debian-12"]["x86_64"][
            "artifacts"
        ][0]["sha256"],
        "variant": None,
        "build": "1",
    }
    assert metadata["cpython-3.14.0rc2-linux-aarch64-gnu"]["prerelease"] == "rc2"

    # The real uv (from the dev dependencies) parses it.
    listed = uv_lists(local_store.root / "download-metadata" / "debian-12.json", tmp_path)
    assert ("cpython-3.13.5-linux-x86_64-gnu", f"https://cdn.example.org/python/{tarball_key}") in listed
    assert (
        "cpython-3.14.0rc2-linux-aarch64-gnu",
        "https://cdn.example.org/python/builds/3.14.0rc2/debian-12/aarch64/1/python-3.14.0rc2-debian-12-aarch64.tar.gz",
    ) in listed


def test_without_public_base_url_urls_point_into_the_store(local_store, config):
    result = planned(
        local_store, config, {"versions": ["3.13.5"], "platforms": ["debian-12"], "arches": ["x86_64"]}
    )
    fake_build(local_store, result.items[0].spec)
    publish(result.summary, local_store, config, now=NOW, signer=None)
    entry = read_json(local_store, "download-metadata/debian-12.json")["cpython-3.13.5-linux-x86_64-gnu"]
    assert (
        entry["url"]
        == (
            local_store.root / "builds/3.13.5/debian-12/x86_64/1/python-3.13.5-debian-12-x86_64.tar.gz"
        ).as_uri()
    )


def test_index_html_is_a_readable_matrix_with_relative_links(local_store, config):
    request = {"versions": ["3.13.5"], "platforms": ["debian-12", "rhel-9"]}
    result = planned(local_store, config, request)
    for item in result.items:
        if item.cell != "3.13.5/rhel-9/aarch64":
            fake_build(local_store, item.spec, kinds=("tarball", "rpm"))
    publish(result.summary, local_store, config, now=NOW, signer=None)
    page = local_store.read("index.html")[0].decode()
    links = page_links(page)
    assert "builds/3.13.5/debian-12/x86_64/1/python-3.13.5-debian-12-x86_64.tar.gz" in links
    assert "builds/3.13.5/rhel-9/x86_64/1/manifest.json" in links
    assert not [link for link in links if link.startswith("logs/")]  # the CDN does not serve logs/
    assert "download-metadata/debian-12.json" in links
    assert all("://" not in link and not link.startswith("/") for link in links)
    for link in links:
        if link.startswith("builds/") or link.startswith("download-metadata/") or link == "versions.json":
            assert local_store.exists(link), link
    # every enabled platform is in the filter; the overview has a row only where something was
    # built or failed; versions are rows; sizes are shown
    for platform in config.enabled_platforms:
        assert f"<option>{platform}</option>" in page
        assert (f">{platform}</th>" in page) == (platform in request["platforms"]), platform
    assert '<th class="version">3.13.5</th>' in page
    assert "3 published builds of 1 Python version on 2 platforms" in page
    assert " B</span>" in page and "failed #1" in page


@pytest.mark.parametrize("backend", ["local", "http_s3"])
def test_fifty_concurrent_publishers_lose_nothing(backend, request):
    store = request.getfixturevalue("local_store" if backend == "local" else "http_s3_store")
    barrier = threading.Barrier(50)
    errors = []

    def publisher(n: int) -> None:
        cell = (f"3.{9 + n % 5}.{n}", ["debian-12", "rhel-9"][n % 2], ["x86_64", "aarch64"][n % 2])
        directory = f"builds/{'/'.join(cell)}/1"  # each key a file of the cell's build directory
        entry = CatalogCell(
            build=1,
            published="t",
            manifest=f"{directory}/manifest.json",
            artifacts=[CatalogArtifact(type="tarball", key=f"{directory}/k{n}", sha256="ab" * 32, size=n)],
        )
        barrier.wait()
        try:
            update_versions(store, {cell: entry}, NOW)
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    versions = read_json(store, "versions.json")
    artifacts = {
        arches[a]["artifacts"][0]["key"].rsplit("/", 1)[-1]
        for p in versions["builds"].values()
        for arches in p.values()
        for a in arches
    }
    assert artifacts == {f"k{n}" for n in range(50)}
    assert len(versions["python_versions"]) == 50
    assert versions["python_versions"][0] == "3.13.49" and versions["python_versions"][-1] == "3.9.0"


def test_concurrent_full_publishes_keep_every_cell_and_fresh_derived_files(http_s3_store, config):
    """Whole publish() calls racing (threads), each with its own plan, on real HTTP S3."""
    write_releases(http_s3_store, ["3.13.5"])
    platforms = ["debian-11", "debian-12", "debian-13", "rhel-8", "rhel-9", "ubuntu-2404"]
    plans = [
        plan({"versions": ["3.13.5"], "platforms": [p]}, http_s3_store, config, f"e-{p}", NOW)
        for p in platforms
    ]
    for p in plans:
        for item in p.items:
            fake_build(http_s3_store, item.spec)
    barrier = threading.Barrier(len(plans))
    outcomes = []

    def run(p):
        barrier.wait()
        outcomes.append(publish(p.summary, http_s3_store, config, now=NOW, signer=None))

    threads = [threading.Thread(target=run, args=(p,)) for p in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(o.counts["published"] for o in outcomes) == 12
    versions = read_json(http_s3_store, "versions.json")
    assert sorted(versions["builds"]["3.13.5"]) == sorted(platforms)
    for platform in platforms:
        assert len(read_json(http_s3_store, f"download-metadata/{platform}.json")) == 2
    index = http_s3_store.read("index.html")[0].decode()
    assert "12 published builds" in index
    assert REAL_3135_SHA256 not in index
