"""Dry runs build nothing: `buildfarm run --dry-run`, `run --input '{"dry_run": true}'` and
run_farm with a dry request print (or return) the plan, choose no runner, claim and write nothing."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from buildfarm.cli import main
from buildfarm.config import FarmConfig
from buildfarm.farm import run_farm
from buildfarm.store import LocalStore

NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
VERSIONS = ("3.13.5", "3.12.11")


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """A store that knows two releases (fresh catalog: no python.org refresh is due)."""
    root = tmp_path / "store"
    root.mkdir()
    releases = {
        v: {"version": v, "sha256": "ab" * 32, "url": f"https://example.invalid/{v}/Python-{v}.tar.xz"}
        for v in VERSIONS
    }
    document = {"schema_version": 1, "updated": None, "checked": None, "source": "test", "releases": releases}
    (root / "releases.json").write_text(json.dumps(document))
    return root


@pytest.fixture(autouse=True)
def no_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if anything picks a runner (the one thing a dry run must never do)."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a dry run chose a runner: select_runner{args}")

    # cli.build first: patching it imports it, and it must bind the real select_runner then.
    monkeypatch.setattr("buildfarm.cli.build.select_runner", forbidden)
    monkeypatch.setattr("buildfarm.farm.select_runner", forbidden)
    monkeypatch.setattr("buildfarm.runners.select_runner", forbidden)
    # python.org is unreachable here: the refresh fails at once and the catalog is kept.
    monkeypatch.setenv("BUILDFARM_RELEASES_URL", "http://127.0.0.1:9/api")
    monkeypatch.delenv("BUILDFARM_STORE", raising=False)


@pytest.mark.parametrize(
    ("argv", "planned"),
    [
        (["--dry-run", "--versions", "3.13.5", "3.12.11", "--platforms", "debian-12"], "3.13.5"),
        (
            ["--input", '{"dry_run": true, "versions": ["3.13.5", "3.12.11"], "platforms": ["debian-12"]}'],
            "3.12.11",
        ),
        (
            ["--dry-run", "--input", '{"dry_run": false, "versions": ["3.13"], "platforms": ["debian-12"]}'],
            "3.13.15",
        ),
    ],
    ids=["flag", "input", "flag-wins-over-input"],
)
def test_run_dry_run_prints_the_plan_and_builds_nothing(store_dir, argv, planned, capsys):
    before = _snapshot(store_dir)
    code = main(["run", "--store", str(store_dir), *argv])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(rf"^{re.escape(planned)}/debian-12/[a-z0-9_]+ +1 +build +not published$", out, re.M), out
    assert out.rstrip().endswith("(dry run: nothing claimed or written)")
    assert "building" not in out and " runner" not in out and "failed," not in out
    assert _snapshot(store_dir) == before  # no claim, no plan, not even the refreshed catalog
    assert not (store_dir / "claims").exists() and not (store_dir / "plans").exists()


def test_run_rejects_a_dry_run_that_is_not_a_boolean(store_dir, capsys):
    code = main(
        ["run", "--store", str(store_dir), "--input", '{"dry_run": "perhaps", "platforms": ["debian-12"]}']
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "dry_run" in err and "'perhaps'" in err
    assert not (store_dir / "claims").exists()


def test_a_bad_source_mirror_is_named_by_its_flag(store_dir, capsys):
    code = main(["run", "--store", str(store_dir), "--source-mirror", "ftp://x", "--dry-run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == ["buildfarm run: error: --source-mirror: 'ftp://x' is not a http/https/file URL"]


def test_run_farm_with_a_dry_request_only_plans(store_dir, tmp_path):
    before = _snapshot(store_dir)
    config = FarmConfig.defaults(store=str(store_dir), releases_url="http://127.0.0.1:9/api")
    report = run_farm(
        {"dry_run": True, "versions": ["3.13.5"], "platforms": ["debian-12"], "arches": ["x86_64"]},
        LocalStore(store_dir),
        config,
        log_dir=tmp_path / "logs",
        now=NOW,
    )
    assert report.plan is not None and report.plan.dry_run
    assert [item.cell for item in report.plan.items] == ["3.13.5/debian-12/x86_64"]
    assert report.cells == {} and report.runners == {} and report.published is None
    assert _snapshot(store_dir) == before
    assert not (tmp_path / "logs").exists()


def test_a_dry_run_of_a_store_that_does_not_exist_yet_creates_nothing(tmp_path, capsys):
    """`run` creates its store, but not in a dry run: it shows what a first run would build."""
    missing = tmp_path / "new-store"
    code = main(
        ["run", "--store", str(missing), "--dry-run", "--versions", "3.13", "--platforms", "debian-12"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"^3\.13\.[0-9]+/debian-12/[a-z0-9_]+ +1 +build +not published$", out, re.M), out
    assert not missing.exists()
