"""`buildfarm plan` and `buildfarm status`."""

from __future__ import annotations

import json

import pytest

from buildfarm import clock
from buildfarm.cli import main

from ..conftest import NOW, all_keys

pytestmark = pytest.mark.usefixtures("offline_cli")  # and published_store: tests/functions/cli/conftest.py


def test_plan_table_and_nothing_written(published_store, capsys):
    before = all_keys(published_store)
    code = main(
        [
            "plan",
            "--store",
            str(published_store.root),
            "--versions",
            "3.13.5",
            "3.12.11",
            "--platforms",
            "debian-12,rhel-9",
            "--arches",
            "x86_64",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "4 cells: 3 to build, 1 published, 0 claimed by another execution" in out
    lines = {line.split()[0]: line.split(None, 3)[1:] for line in out.splitlines() if line.startswith("3.1")}
    assert lines["3.13.5/debian-12/x86_64"] == ["1", "skip", "published build 1"]
    assert lines["3.13.5/rhel-9/x86_64"] == ["1", "build", "not published"]
    assert lines["3.12.11/debian-12/x86_64"] == ["1", "build", "not published"]
    assert "dry run: nothing claimed or written" in out
    assert all_keys(published_store) == before


def test_plan_shows_the_policy_it_applied(published_store, capsys):
    with clock.using(clock.fixed_clock(NOW)):  # the policy is the day's
        assert main(["plan", "--store", str(published_store.root)]) == 0
    out = capsys.readouterr().out
    assert "policy on 2026-11-22: newest 2 release(s) of each live series: " in out
    assert "platforms (live and enabled): " in out
    assert "not built: series 3.9: end of life 2025-10-31" in out
    assert "not built: platform debian-11: end of support 2026-08-31" in out
    assert "not built: platform ubuntu-2004: end of support 2025-05-31" in out
    assert "3.9.2/" not in out and "/debian-11/" not in out
    with clock.using(clock.fixed_clock(NOW)):
        assert main(["plan", "--store", str(published_store.root), "--json"]) == 0
    policy = json.loads(capsys.readouterr().out)["policy"]
    assert policy["releases_per_series"] == 2
    assert {"what": "series 3.9", "reason": "end of life 2025-10-31"} in policy["dropped"]


def test_plan_names_an_end_of_life_cell(published_store, capsys):
    argv = ["plan", "--store", str(published_store.root), "--versions", "3.9.2", "--platforms", "debian-11"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "versions as named (series 3.9; lifecycle dates not applied)" in out
    assert "platforms (as named): debian-11" in out
    assert "2 cells: 2 to build" in out


def test_plan_json_with_input(published_store, capsys):
    raw = json.dumps({"versions": ["3.13.5"], "platforms": ["debian-12"], "force": True})
    assert main(["plan", "--store", str(published_store.root), "--input", raw, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["dry_run"] is True and document["force"] is True
    assert document["build"] == [
        {"cell": "3.13.5/debian-12/x86_64", "build": 2},
        {"cell": "3.13.5/debian-12/aarch64", "build": 2},
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--versions", "3.13.x"], "malformed Python version '3.13.x'"),
        (["--versions", "3.13.05"], "malformed Python version '3.13.05' (no leading zeros: 3.13.5)"),
        (["--platforms", "plan9"], "unknown platform 'plan9'"),
        (["--input", "{nope"], "--input is not JSON"),
        (["--input", "[" * 5000], "--input is not JSON (nested too deeply): '[[[["),
        (["--input", "[]"], "--input must be a JSON object, got []"),
        (["--input", "{}", "--force"], "use either --input or"),
        (["--versions", "3.11.99"], "unknown Python version '3.11.99'"),
    ],
)
def test_plan_errors_are_one_line(published_store, capsys, argv, message):
    assert main(["plan", "--store", str(published_store.root), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("buildfarm plan: error: ") and message in err and err.count("\n") == 1


def test_a_malformed_input_is_named_before_a_missing_store(capsys, tmp_path):
    assert main(["plan", "--store", str(tmp_path / "missing"), "--input", "{nope"]) == 2
    err = capsys.readouterr().err
    assert "--input is not JSON" in err and "does not exist" not in err


def test_bad_environment_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("BUILDFARM_ENABLED_ARCHES", "x86_64,sparc")
    assert main(["plan", "--store", str(tmp_path)]) == 2
    assert "BUILDFARM_ENABLED_ARCHES: unknown arch 'sparc'" in capsys.readouterr().err


def test_status(published_store, capsys, monkeypatch):
    monkeypatch.setenv("BUILDFARM_STORE", str(published_store.root))  # the default store
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "2 published cells, 1 versions" in out
    assert "debian-12/aarch64  debian-12/x86_64" in out
    assert "3.13.5   #1                 #1" in out
    assert main(["status", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["python_versions"] == ["3.13.5"]
    assert [c["cell"] for c in document["cells"]] == ["3.13.5/debian-12/aarch64", "3.13.5/debian-12/x86_64"]


def test_status_of_an_empty_store(tmp_path, capsys):
    assert main(["status", "--store", str(tmp_path)]) == 0
    assert "nothing published yet" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("value", "named"), [('"perhaps"', "'perhaps'"), ("1", "1"), ("null", "null"), ('"true"', "'true'")]
)
def test_plan_rejects_an_input_dry_run_that_is_not_a_boolean(published_store, value, named, capsys):
    """The input's own dry_run is validated before `plan` makes every run a dry one."""
    before = all_keys(published_store)
    code = main(["plan", "--store", str(published_store.root), "--input", f'{{"dry_run": {value}}}'])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == (
        "buildfarm plan: error: invalid workflow input: "
        f"dry_run: Input should be a valid boolean, got {named}"
    )
    assert all_keys(published_store) == before


def test_plan_with_an_input_dry_run_false_is_still_a_dry_run(published_store, capsys):
    before = all_keys(published_store)
    code = main(
        ["plan", "--store", str(published_store.root), "--input", '{"dry_run": false, "versions": ["3.12"]}']
    )
    assert code == 0
    assert "dry run: nothing claimed or written" in capsys.readouterr().out
    assert all_keys(published_store) == before


def test_plan_shows_what_the_budget_defers(published_store, capsys, monkeypatch):
    monkeypatch.setenv("BUILDFARM_MAX_CELLS_PER_EXECUTION", "2")
    args = ["plan", "--store", str(published_store.root), "--versions", "3.13.5", "3.12.11"]
    code = main([*args, "--platforms", "debian-12,rhel-9", "--arches", "x86_64"])
    out = capsys.readouterr().out
    assert code == 0
    assert "4 cells: 2 to build, 1 published" in out
    assert "1 more left for later runs: one execution builds at most 2" in out
    # Newest release first: 3.13.5 on rhel-9, then one 3.12.11 cell.
    rows = [line.split() for line in out.splitlines() if line.startswith("3.1")]
    built = [row[0] for row in rows if row[2] == "build"]
    assert built[0] == "3.13.5/rhel-9/x86_64" and len(built) == 2


def test_store_option_wins_over_a_bad_store_variable(tmp_path, monkeypatch, capsys):
    """The store is resolved once: --store, else $BUILDFARM_STORE; a bad variable is not read."""
    monkeypatch.setenv("BUILDFARM_STORE", "gs://not/a/store")
    assert main(["status", "--store", str(tmp_path)]) == 0
    assert "nothing published yet" in capsys.readouterr().out
    assert main(["status"]) == 2
    assert "gs://not/a/store" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "said", "not_said"),
    [
        ("plan", "platform ids (default: the enabled ones not past end of support)", "ids (default: all"),
        ("trigger", "rebuild a release on every enabled platform not past end of support", "everywhere"),
        (
            "releases",
            "`run` and the schedule refresh releases.json from python.org (`plan` saves",
            "`plan`, `run`",
        ),
    ],
)
def test_help_says_what_the_code_does(capsys, command, said, not_said):
    """Ended platforms are built only when named (policy.policy_platforms); `plan` is a dry run,
    which never saves releases.json (tests/functions/test_plan.py)."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert said in text and not_said not in text
