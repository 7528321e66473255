"""A runtime definition Plan cannot plan or claim (a version no store key can hold, a lock file
gone, a claim that fails) is left out, logged and counted in the plan's summary: the other
definitions and the run's Python cells go on (docs/farm.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from functions.conftest import NOW, read_json, write_published_matrix, write_releases
from runtime_definitions import SVC_TOML, write_svc_definitions

import buildfarm.runtimes.farm_cells
from buildfarm.claims import claim_key
from buildfarm.plan import plan
from buildfarm.runtimes.definitions import RuntimeDefinition, load_definition
from buildfarm.store import StoreError

REQUEST = {"versions": ["3.13.5"], "platforms": ["debian-12", "rhel-9"], "arches": ["x86_64"]}


@pytest.fixture
def svc(tmp_path: Path) -> RuntimeDefinition:
    toml = write_svc_definitions(tmp_path / "defs", "idna==3.10") / "svc.toml"
    toml.write_text(SVC_TOML)
    return load_definition(toml)


def tilde_version(svc: RuntimeDefinition, monkeypatch: pytest.MonkeyPatch) -> RuntimeDefinition:
    # Valid once ('~' passed the definition's check), yet no store key: every Plan failed.
    return svc.model_copy(update={"name": "broken", "version": "1.0.0~rc1"})


def lock_gone(svc: RuntimeDefinition, monkeypatch: pytest.MonkeyPatch) -> RuntimeDefinition:
    lock = svc.source.parent / "broken.txt"
    lock.write_bytes(svc.requirements_path.read_bytes())
    toml = svc.source.parent / "broken.toml"
    toml.write_text(svc.source.read_text().replace('name = "svc"', 'name = "broken"')
                    .replace('"svc/requirements.txt"', '"broken.txt"')
                    .replace("/svc/", "/broken/"))  # fmt: skip
    broken = load_definition(toml)
    lock.unlink()  # after loading: the definition was sound when read
    return broken


def claim_fails(svc: RuntimeDefinition, monkeypatch: pytest.MonkeyPatch) -> RuntimeDefinition:
    real = buildfarm.runtimes.farm_cells.claim_or_peek

    def claim_or_peek(store, key, name, claimant, **kwargs):
        if name.startswith("broken/"):
            raise StoreError("the claim could not be written")
        return real(store, key, name, claimant, **kwargs)

    monkeypatch.setattr(buildfarm.runtimes.farm_cells, "claim_or_peek", claim_or_peek)
    return svc.model_copy(update={"name": "broken"})


def git_tag_definition(svc: RuntimeDefinition) -> RuntimeDefinition:
    """Runtime "broken": svc at version = "git-tag", beside svc.toml (its lock is svc's)."""
    toml = svc.source.parent / "broken.toml"
    toml.write_text(svc.source.read_text().replace('name = "svc"', 'name = "broken"')
                    .replace('version = "2.1.0"', 'version = "git-tag"')
                    .replace('"/opt/runtimes/svc/2.1.0"', '"/opt/runtimes/{name}/{version}"'))  # fmt: skip
    return load_definition(toml)


def not_a_checkout(svc: RuntimeDefinition, monkeypatch: pytest.MonkeyPatch) -> RuntimeDefinition:
    # As in the Lambda bundle: the definitions are a copy, without .git.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(svc.source.parent.parent))
    return git_tag_definition(svc)


def no_git(svc: RuntimeDefinition, monkeypatch: pytest.MonkeyPatch) -> RuntimeDefinition:
    empty = svc.source.parent.parent / "bin-without-git"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # Plan raised FileNotFoundError, abandoning its claims
    return git_tag_definition(svc)


BREAKAGES = {
    "a version no key can hold": (tilde_version, "invalid store key"),
    "a lock file gone": (lock_gone, "No such file"),
    "a claim that fails": (claim_fails, "the claim could not be written"),
    "a git tag outside a checkout": (not_a_checkout, "is not in a git checkout"),
    "a git tag without git": (no_git, "version = 'git-tag' needs git, which cannot run here"),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_a_broken_definition_is_left_out_and_counted_and_python_cells_go_on(
    local_store, config, svc, monkeypatch, caplog, breakage
) -> None:
    make, logged = BREAKAGES[breakage]
    write_releases(local_store, ["3.13.5"])
    write_published_matrix(local_store, ["3.13.5"], ["debian-12"], ["x86_64"])
    broken = make(svc, monkeypatch)
    result = plan(REQUEST, local_store, config, "exec-1", NOW, runtimes=[broken, svc])
    assert [item.cell for item in result.items] == ["3.13.5/rhel-9/x86_64"]
    assert [item.cell for item in result.runtime_items] == ["svc/2.1.0/debian-12/x86_64"]
    assert result.summary["runtimes"]["broken"] == 1
    marker = read_json(local_store, claim_key("3.13.5", "rhel-9", "x86_64"))
    assert marker["execution_id"] == "exec-1" and marker["released"] is False  # still this run's
    assert read_json(local_store, "runs/exec-1.json")["planned"] == 2
    assert any("runtime definition broken not planned" in r.getMessage() and logged in r.getMessage()
               for r in caplog.records)  # fmt: skip


def test_a_sound_plan_counts_no_broken_definition(local_store, config, svc) -> None:
    write_releases(local_store, ["3.13.5"])
    write_published_matrix(local_store, ["3.13.5"], ["debian-12"], ["x86_64"])
    assert (
        plan(REQUEST, local_store, config, "exec-1", NOW, runtimes=[svc]).summary["runtimes"]["broken"] == 0
    )
