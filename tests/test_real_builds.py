"""The suite's build cache (tests/real_builds.py) decides where a spec's build comes from: the
farm store's step that makes it when the session runs that step anyway, else a build of its
own; each spec is made once. (The builds themselves are the slow tests'; here the farm and the
lone build are stand-ins.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from real_builds import CHROOT_NONE, FARM_CELLS, HOST_NONE, HOST_PGO_LTO, BuildSpec, Farm, RealBuilds, Step


def write_manifest(store: Path, spec: BuildSpec, build: int, optimization: str | None = None) -> None:
    directory = store / "builds" / spec.cell / str(build)
    directory.mkdir(parents=True)
    made = {"version": spec.version, "platform": spec.platform, "arch": spec.arch, "build": build}
    made["optimization"] = optimization or spec.optimization
    (directory / "manifest.json").write_text(json.dumps({"spec": made}))


class Session:
    """The fixtures a session sets up (pytest's getfixturevalue), recorded in order."""

    def __init__(self, store: Path) -> None:
        self.farm = Farm(store, "http://127.0.0.1:9", "http://127.0.0.1:9", {})
        self.set_up: list[str] = []

    def fixture(self, name: str):
        self.set_up.append(name)
        if name == "farm_store":
            return self.farm
        if name == "killed_and_rerun":
            return "seen", Step(0, "", {})
        return Step(0, "", {})


@pytest.fixture
def farm(tmp_path: Path) -> Session:
    store = tmp_path / "farm"
    for spec in (HOST_NONE, CHROOT_NONE):
        write_manifest(store, spec, 1)
    write_manifest(store, HOST_PGO_LTO, 2)
    return Session(store)


@pytest.fixture
def alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[BuildSpec]:
    """The specs built alone (RealBuilds._alone stands in: it writes the build's manifest)."""
    built: list[BuildSpec] = []

    def build_alone(self: RealBuilds, spec: BuildSpec):
        built.append(spec)
        store = self.root / spec.optimization
        write_manifest(store, spec, 1)
        return Farm(store, "", "", {}, cells=(spec.cell,)).built(spec.cell, 1).check(spec)

    monkeypatch.setattr(RealBuilds, "_alone", build_alone)
    return built


def no_root() -> None:
    raise AssertionError("needs_root called")


def test_the_farm_cells_are_the_first_runs_specs():
    assert (HOST_NONE.cell, CHROOT_NONE.cell) == FARM_CELLS


def test_a_session_with_the_farm_takes_its_builds_from_the_farm_once(farm: Session, alone, tmp_path):
    builds = RealBuilds({"second_run", "killed_and_rerun", "farm_store"}, farm.fixture, tmp_path, "")
    host = builds.get(HOST_NONE, no_root)
    assert host.store == farm.farm.store and host.build == 1
    assert builds.get(CHROOT_NONE, no_root).build == 1
    pgo = builds.get(HOST_PGO_LTO, no_root)
    assert pgo.store == farm.farm.store and pgo.build == 2
    assert builds.get(HOST_NONE, no_root) is host
    assert farm.set_up == [
        "first_run",
        "farm_store",
        "first_run",
        "farm_store",
        "killed_and_rerun",
        "farm_store",
    ]
    assert alone == []


def test_a_session_reading_the_farm_store_gets_the_first_runs_builds(farm: Session, alone, tmp_path):
    """tests/functions/runtimes reads the farm store and expects host_build in it."""
    builds = RealBuilds({"farm_store", "host_build"}, farm.fixture, tmp_path, "")
    assert builds.get(HOST_NONE, no_root).store == farm.farm.store
    # No test of this session runs the killed run: the pgo+lto build is made alone.
    assert builds.get(HOST_PGO_LTO, no_root).store != farm.farm.store
    assert alone == [HOST_PGO_LTO]
    assert "killed_and_rerun" not in farm.set_up


def test_a_session_without_the_farm_builds_each_spec_alone_once(farm: Session, alone, tmp_path):
    roots_needed = []
    builds = RealBuilds({"host_build", "pgo_build", "chroot_build"}, farm.fixture, tmp_path, "")
    for spec in (HOST_NONE, HOST_PGO_LTO, HOST_NONE, CHROOT_NONE):
        built = builds.get(spec, lambda: roots_needed.append("root"))
        assert built.store != farm.farm.store
    assert alone == [HOST_NONE, HOST_PGO_LTO, CHROOT_NONE]
    assert roots_needed == ["root"]  # the chroot runner's build only
    assert farm.set_up == []


def test_a_build_that_is_not_of_the_spec_fails(tmp_path: Path):
    store = tmp_path / "farm"
    write_manifest(store, HOST_NONE, 1, optimization="pgo+lto")
    session = Session(store)
    builds = RealBuilds({"first_run"}, session.fixture, tmp_path, "")
    with pytest.raises(AssertionError, match=r"'optimization': 'pgo\+lto'"):  # the manifest's, not no_root's
        builds.get(HOST_NONE, no_root)
