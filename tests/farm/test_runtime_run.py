"""`buildfarm run` builds runtimes: after its Python cells (here: published already, the farm
store's debian-12 build), the run plans the runtime cells of its platforms and arches, claims,
builds and publishes them into versions.json's `runtimes`, and the status page lists them. A
second run finds the runtime current; a changed lock plans a new build (shown by a dry run).
One real runtime build: a one-package lock (idna, its pin and hashes taken from the example
runtime's lock), in a store of its own holding a copy of the farm's debian-12 build."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from buildfarm.runtimes.definitions import find_definition

pytestmark = [pytest.mark.build, pytest.mark.farm]

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
def runtime_farm(farm_store, host_build, tmp_path_factory) -> tuple[Path, Path, dict]:
    """(store, definitions, environment): the farm's releases, versions.json and the debian-12
    build it names, and a definitions directory with the one-package runtime."""
    store = tmp_path_factory.mktemp("runtime-run-store")
    for name in ("versions.json", "releases.json"):
        shutil.copyfile(farm_store.store / name, store / name)
    named = farm_store.versions()["builds"][host_build.version]["debian-12"]["x86_64"]["build"]
    build = farm_store.built(f"{host_build.version}/debian-12/x86_64", named)
    shutil.copytree(build.dir, store / build.dir.relative_to(farm_store.store))
    definitions = tmp_path_factory.mktemp("runtime-definitions")
    (definitions / "tiny").mkdir()
    (definitions / "tiny" / "requirements.txt").write_text(idna_lock())
    (definitions / "tiny.toml").write_text(TOML)
    return store, definitions, {**farm_store.env, "BUILDFARM_RUNTIMES": str(definitions)}


def run(farm_store, store: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    argv = [farm_store.buildfarm, "run", "--versions", "3.13.5", "--platforms", "debian-12",
            "--arches", "x86_64", "--store", str(store), "--source-mirror", farm_store.mirror,
            "--optimization", "none", *args]  # fmt: skip
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    print(result.stdout + result.stderr)
    return result


@pytest.fixture(scope="module")
def first(farm_store, runtime_farm) -> subprocess.CompletedProcess:
    store, _, env = runtime_farm
    return run(farm_store, store, env)


def test_the_run_builds_and_publishes_the_runtime_after_its_python(farm_store, runtime_farm, first) -> None:
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


def test_a_second_run_finds_it_current_and_a_changed_lock_plans_build_2(
    farm_store, runtime_farm, first
) -> None:
    store, definitions, env = runtime_farm
    again = run(farm_store, store, env)
    assert again.returncode == 0, again.stderr
    assert "building" not in again.stdout and re.search(
        rf"^{re.escape(CELL)} .* current$", again.stdout, re.M
    )
    lock = definitions / "tiny" / "requirements.txt"
    lock.write_text(f"# changed\n{lock.read_text()}")
    dry = run(farm_store, store, env, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert re.search(rf"^{re.escape(CELL)} +2 +build +the lock changed$", dry.stdout, re.M), dry.stdout
    assert not (store / "runtimes" / "tiny" / "0.1.0" / "debian-12" / "x86_64" / "2").exists()
    without = run(farm_store, store, env, "--no-runtimes", "--dry-run")
    assert "tiny" not in without.stdout
