"""`buildfarm run` end to end: real builds for debian-12 (host) and debian-11 (chroot) into
a fresh store, two at once; a rerun builds nothing; a forced pgo+lto run makes build 2, and
killed mid-build and rerun it leaves a consistent store and does not rebuild what it finished."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest
from html_links import page_links

pytestmark = [pytest.mark.build, pytest.mark.farm]

TEST_VERSION = "3.13.5"
CELLS = (f"{TEST_VERSION}/debian-12/x86_64", f"{TEST_VERSION}/debian-11/x86_64")  # build order


def assert_store_consistent(store: Path) -> None:
    """Every cell listed in versions.json has all its artifacts, with the listed sha256 and
    size, and a manifest that names the same files; no claim is left live."""
    versions = json.loads((store / "versions.json").read_text())
    for platforms in versions["builds"].values():
        for arches in platforms.values():
            for entry in arches.values():
                manifest = json.loads((store / entry["manifest"]).read_text())
                assert manifest["spec"]["build"] == entry["build"]
                in_manifest = {a["file"]: a["sha256"] for a in manifest["artifacts"]}
                for artifact in entry["artifacts"]:
                    path = store / artifact["key"]
                    data = path.read_bytes()
                    assert len(data) == artifact["size"], artifact["key"]
                    assert hashlib.sha256(data).hexdigest() == artifact["sha256"], artifact["key"]
                    assert in_manifest[path.name] == artifact["sha256"]
    for claim in store.glob("claims/**/*.json"):
        assert json.loads(claim.read_text())["released"], claim


def test_first_run_builds_and_publishes_both_cells(farm_store, first_run) -> None:
    assert first_run.returncode == 0, first_run.output
    assert first_run.versions["python_versions"] == [TEST_VERSION]
    for cell in CELLS:
        assert first_run.build_of(cell) == 1
        assert re.search(rf"{re.escape(cell)} build 1: published", first_run.output)
    assert "debian-12/x86_64: host runner" in first_run.output
    assert "debian-11/x86_64: chroot runner" in first_run.output
    assert "2 published, 0 failed" in first_run.output
    for phase in ("configure", "make", "selftest", "package"):
        assert re.search(rf"building \((host|chroot)\): {phase}\w* done", first_run.output), phase


def test_the_published_store_is_signed_and_verifies(farm_store, first_run) -> None:
    """The publish side's files in every build, signed with the run's key (`buildfarm keys
    show`, the same environment), and `buildfarm verify` accepts the store, locally and over
    HTTP, with that key pinned by fingerprint."""

    def buildfarm(*argv: str) -> subprocess.CompletedProcess[str]:
        command = [farm_store.buildfarm, *argv]
        return subprocess.run(command, env=farm_store.env, capture_output=True, text=True, check=False)

    shown = buildfarm("keys", "show")
    assert shown.returncode == 0, shown.stderr
    key = shown.stdout.strip()
    assert json.loads((farm_store.store / "keys" / "keys.json").read_text())["current"] == key
    signed = ("sbom.cdx.json", "provenance.json", "SHA256SUMS", "SHA256SUMS.sig", "provenance.json.sig")
    for cell in CELLS:
        assert all((farm_store.store / "builds" / cell / "1" / name).is_file() for name in signed), cell
    for location in (str(farm_store.store), farm_store.base_url):
        verified = buildfarm("verify", location, "--pubkey", key)
        assert verified.returncode == 0, verified.stdout + verified.stderr


def test_second_run_builds_nothing(farm_store, first_run, second_run) -> None:
    assert second_run.returncode == 0, second_run.output
    assert "0 published, 0 failed, 2 skipped" in second_run.output
    assert second_run.versions["builds"] == first_run.versions["builds"]
    assert "building" not in second_run.output


def test_force_makes_build_2_and_keeps_build_1(farm_store, killed_and_rerun) -> None:
    _, rerun = killed_and_rerun  # the killed run was forced; its first cell finished
    assert rerun.build_of(CELLS[0]) == 2
    for build, optimization in ((1, "none"), (2, "pgo+lto")):
        manifest = farm_store.store / "builds" / CELLS[0] / str(build) / "manifest.json"
        assert json.loads(manifest.read_text())["spec"]["optimization"] == optimization


def test_killed_run_then_rerun_is_consistent_and_keeps_finished_cells(farm_store, killed_and_rerun) -> None:
    seen, rerun = killed_and_rerun
    assert f"{CELLS[0]} build 2: built" in seen  # the first cell had finished when the run died
    assert rerun.returncode == 0, rerun.output
    assert "recovered from an interrupted run" in rerun.output and CELLS[0] in rerun.output
    # The dead run's finished cell is published, not rebuilt; its unfinished one stays at build 1.
    assert rerun.build_of(CELLS[0]) == 2
    assert rerun.build_of(CELLS[1]) == 1
    assert not (farm_store.store / "builds" / CELLS[0] / "3").exists()
    assert "building" not in rerun.output
    assert_store_consistent(farm_store.store)
    # The dead run's claims do not block: a forced plan would build both cells now.
    plan = subprocess.run(
        [farm_store.buildfarm, "plan", "--json", "--force", "--versions", TEST_VERSION,
         "--platforms", "debian-12", "debian-11", "--arches", "x86_64", "--store", str(farm_store.store)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    planned = json.loads(plan.stdout)
    assert sorted(entry["cell"] for entry in planned["build"]) == sorted(CELLS)


def test_status_page_links_resolve_in_the_store_and_over_http(farm_store, killed_and_rerun) -> None:
    page = (farm_store.store / "index.html").read_text()
    links = page_links(page, with_sources=True)
    local = [link for link in links if not link.startswith(("http://", "https://", "#", "mailto:"))]
    assert len(local) >= 6, links  # artifacts of 2 cells at least
    for link in local:
        assert (farm_store.store / link.split("#")[0]).is_file(), link
        with urllib.request.urlopen(f"{farm_store.base_url}/{link}") as response:
            assert response.status == 200
    for cell in CELLS:
        assert cell.split("/")[1] in page
    assert_store_consistent(farm_store.store)
