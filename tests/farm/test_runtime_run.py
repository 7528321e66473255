"""`buildfarm run` builds runtimes: after its Python cells (here: published already, the suite's
real debian-12 build), the run plans the runtime cells of its platforms and arches, claims,
builds and publishes them into versions.json's `runtimes`, and the status page lists them. A
second run finds the runtime current; a changed lock plans a new build (shown by a dry run).
One real runtime build: a one-package lock (idna, its pin and hashes taken from the example
runtime's lock), in a store of its own holding a copy of that build."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from buildfarm.catalog import CatalogArtifact, CatalogCell, update_versions
from buildfarm.runtimes.definitions import find_definition
from buildfarm.store import LocalStore

pytestmark = [pytest.mark.build, pytest.mark.farm]

BUILDFARM = str(Path(sys.executable).parent / "buildfarm")
CELL = "tiny/0.1.0/debian-12/x86_64"
TOML = """name = "tiny"
version = "0.1.0"
python = "3.13"
requirements = "tiny/requirements.txt"
prefix = "/opt/runtimes/tiny/0.1.0"
platforms = ["debian-12"]
arches = ["x86_64"]
"""


def idna_lock() -> str:
    """The example lock's idna requirement with its hashes (the line and its continuations)."""
    lines = find_definition("fastapi-demo").requirements_path.read_text().splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("idna=="))
    end = start
    while lines[end].endswith("\\"):
        end += 1
    return "\n".join(lines[start : end + 1]) + "\n"


@pytest.fixture(scope="module")
def runtime_farm(host_build, tmp_path_factory) -> tuple[Path, Path, dict]:
    """(store, definitions, environment): a store where the suite's real debian-12 build is
    published (catalog.update_versions), and a definitions directory with the one-package runtime.
    python.org is not asked (the seed catalog knows 3.13.5)."""
    store = tmp_path_factory.mktemp("runtime-run-store")
    directory = store / host_build.dir.relative_to(host_build.store)
    shutil.copytree(host_build.dir, directory)
    key = directory.relative_to(store).as_posix()
    manifest = json.loads((directory / "manifest.json").read_text())
    entry = CatalogCell(
        build=host_build.build,
        published="2026-11-22T09:00:00Z",
        manifest=f"{key}/manifest.json",
        artifacts=[
            CatalogArtifact(type=a["type"], key=f"{key}/{a['file']}", sha256=a["sha256"], size=a["size"])
            for a in manifest["artifacts"]
        ],
    )
    cell = (host_build.version, host_build.platform, host_build.arch)
    update_versions(LocalStore(store), {cell: entry}, datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC))
    definitions = tmp_path_factory.mktemp("runtime-definitions")
    (definitions / "tiny").mkdir()
    (definitions / "tiny" / "requirements.txt").write_text(idna_lock())
    (definitions / "tiny.toml").write_text(TOML)
    env = {
        **os.environ,
        "BUILDFARM_RUNTIMES": str(definitions),
        "BUILDFARM_RELEASES_URL": "http://127.0.0.1:9/api",
    }
    return store, definitions, env


def run(store: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    argv = [BUILDFARM, "run", "--versions", "3.13.5", "--platforms", "debian-12", "--arches", "x86_64",
            "--store", str(store), "--optimization", "none", *args]  # fmt: skip
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    print(result.stdout + result.stderr)
    return result


@pytest.fixture(scope="module")
def first(runtime_farm) -> subprocess.CompletedProcess:
    store, _, env = runtime_farm
    return run(store, env)


def test_the_run_builds_and_publishes_the_runtime_after_its_python(runtime_farm, first) -> None:
    store, _, _ = runtime_farm
    assert first.returncode == 0, first.stderr
    assert re.search(rf"{re.escape(CELL)} build 1: published after", first.stdout), first.stdout
    assert "1 published, 0 failed, 1 skipped" in first.stdout
    document = json.loads((store / "versions.json").read_text())
    python_build = document["builds"]["3.13.5"]["debian-12"]["x86_64"]["build"]
    entry = document["runtimes"]["tiny"]["0.1.0"]["debian-12"]["x86_64"]
    assert entry["build"] == 1 and entry["python"] == {"version": "3.13.5", "build": python_build}
    assert [a["type"] for a in entry["artifacts"]] == ["tarball", "deb"]
    for artifact in entry["artifacts"]:
        assert (store / artifact["key"]).stat().st_size == artifact["size"]
    manifest = json.loads((store / entry["manifest"]).read_text())
    assert [p["name"] for p in manifest["packages"]] == ["idna"]
    claim = json.loads((store / "claims" / "runtimes" / f"{CELL}.json").read_text())
    assert claim["released"] is True and claim["build"] == 1
    page = (store / "index.html").read_text()
    assert "tiny" in page and "runtimes/tiny/0.1.0/debian-12/x86_64/1/" in page


def test_a_second_run_finds_it_current_and_a_changed_lock_plans_build_2(runtime_farm, first) -> None:
    store, definitions, env = runtime_farm
    again = run(store, env)
    assert again.returncode == 0, again.stderr
    assert "building" not in again.stdout and re.search(
        rf"^{re.escape(CELL)} .* current$", again.stdout, re.M
    )
    lock = definitions / "tiny" / "requirements.txt"
    lock.write_text(f"# changed\n{lock.read_text()}")
    dry = run(store, env, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert re.search(rf"^{re.escape(CELL)} +2 +build +the lock changed$", dry.stdout, re.M), dry.stdout
    assert not (store / "runtimes" / "tiny" / "0.1.0" / "debian-12" / "x86_64" / "2").exists()
    without = run(store, env, "--no-runtimes", "--dry-run")
    assert "tiny" not in without.stdout
