"""The driver's on/off options (BUILDFARM_REQUIRE_SOURCE_SIGNATURE, BUILDFARM_CCACHE,
BUILDFARM_KEEP_WORK, BUILDFARM_CHECK_BUILD_DEPS) and BUILDFARM_JOBS: 1 or 0 and a whole number
from 1 to 1024, anything else refused by name before any work (driver/spec.py). A security
setting set to "true" must never read as off."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from builder_helpers import BUILD_PY
from driver import cell, errors, make, series, signature, spec, workdir

FLAGS = sorted(spec.FLAGS)
# "\u0661" and "\u0663": ARABIC-INDIC DIGIT ONE and THREE (int() takes them).
BAD_FLAGS = ["true", "yes", "on", "2", "false", "no", "TRUE", "01", " 1", "1 ", "1\n", "\u0661"]
BAD_JOBS = ["abc", "0", "00", "-5", "+3", "3.0", " 3", "3 ", "3\n", "\u0663", "1025", "99999", "0x10"]
BAD_JOBS.append("9" * 5000)  # int() of it is a ValueError on Python 3.11+
CELL = "3.13.5/debian-12/x86_64/1"
JOBS_RULE = "BUILDFARM_JOBS must be a whole number from 1 to 1024 (ASCII digits)"


def spec_dict(store: Path) -> dict:
    return {
        "version": "3.13.5", "platform": "debian-12", "arch": "x86_64", "build": 1,
        "source": {"url": "http://127.0.0.1:1/Python-3.13.5.tar.xz", "sha256": "0" * 64},
        "prefix": "/opt/python/3.13.5", "optimization": "none", "store": str(store),
        "artifact_dir": "builds/" + CELL,
    }  # fmt: skip


# --- the helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FLAGS)
@pytest.mark.parametrize("value", BAD_FLAGS)
def test_a_flag_that_is_not_1_or_0_is_refused_by_name(name, value):
    with pytest.raises(errors.SpecError) as raised:
        spec.env_flag({name: value}, name)
    assert str(raised.value) == f"{name} must be 1 or 0, not {value!r}"
    with pytest.raises(errors.SpecError, match=name):
        spec.check_environment({name: value})


@pytest.mark.parametrize("name", FLAGS)
def test_a_flag_is_1_or_0_or_its_default_when_unset_or_empty(name):
    assert spec.env_flag({name: "1"}, name) is True
    assert spec.env_flag({name: "0"}, name) is False
    default = name == "BUILDFARM_CHECK_BUILD_DEPS"  # on unless 0; the others off unless 1
    assert spec.env_flag({}, name) is default
    assert spec.env_flag({name: ""}, name) is default


@pytest.mark.parametrize("value", BAD_JOBS, ids=lambda value: ascii(value)[:12])
def test_jobs_that_are_not_1_to_1024_in_ascii_digits_are_refused_by_name(value):
    with pytest.raises(errors.SpecError) as raised:
        spec.env_jobs({"BUILDFARM_JOBS": value})
    assert str(raised.value) == f"{JOBS_RULE}, not {value!r}"
    with pytest.raises(errors.SpecError, match="BUILDFARM_JOBS"):
        spec.check_environment({"BUILDFARM_JOBS": value})


@pytest.mark.parametrize(("value", "jobs"), [("1", 1), ("8", 8), ("008", 8), ("1024", 1024)])
def test_jobs_in_range_are_taken(value, jobs):
    assert spec.env_jobs({"BUILDFARM_JOBS": value}) == jobs


def test_jobs_default_to_every_core():
    assert spec.env_jobs({}) == spec.env_jobs({"BUILDFARM_JOBS": ""}) == (os.cpu_count() or 1)


def test_a_good_environment_passes():
    spec.check_environment({})
    spec.check_environment({**dict.fromkeys(FLAGS, "1"), "BUILDFARM_JOBS": "4"})
    spec.check_environment({**dict.fromkeys(FLAGS, "0"), "BUILDFARM_JOBS": ""})


# --- the places that read them ------------------------------------------------------------------


def test_the_signature_requirement_set_to_true_is_an_error_not_off(monkeypatch):
    monkeypatch.setenv(signature.REQUIRE_ENV, "true")
    with pytest.raises(errors.SpecError, match=f"{signature.REQUIRE_ENV} must be 1 or 0, not 'true'"):
        signature.check(SimpleNamespace(version="3.13.5"))


def test_ccache_set_to_yes_is_an_error_not_off(tmp_path, monkeypatch):
    with pytest.raises(errors.SpecError, match="BUILDFARM_CCACHE must be 1 or 0, not 'yes'"):
        workdir.stable_path({"version": "3.13.5"}, {"BUILDFARM_CCACHE": "yes"})
    monkeypatch.setenv("BUILDFARM_CCACHE", "yes")
    with pytest.raises(errors.SpecError, match="BUILDFARM_CCACHE"):
        make.build_env(SimpleNamespace(env={"PATH": os.environ["PATH"]}, work=str(tmp_path)))


def test_the_builds_jobs_are_the_checked_number_as_text(tmp_path, monkeypatch, registry_json):
    build = cell.Build(spec_dict(tmp_path / "store"), registry_json, str(tmp_path))
    build.log.close()
    monkeypatch.setenv("BUILDFARM_JOBS", "3")
    assert build.jobs == "3"
    assert series.regrtest_runs(["test_os"], build.jobs)[0][2] == "-j3"
    monkeypatch.setenv("BUILDFARM_JOBS", "\u0663")
    with pytest.raises(errors.SpecError, match="BUILDFARM_JOBS"):
        build.jobs  # noqa: B018


# --- the driver: exit status 2 and one line, before any work -------------------------------------


def run_driver(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("BUILDFARM_", "CCACHE_"))}
    environment.update(
        BUILD_SPEC=json.dumps(spec_dict(tmp_path / "store")),
        BUILDFARM_WORK_DIR=str(tmp_path / "work"),
        BUILDFARM_STABLE_BUILD_ROOT=str(tmp_path / "stable"),
        BUILDFARM_STOP_AFTER="preflight",
        **env,
    )
    (tmp_path / "work").mkdir()
    return subprocess.run([sys.executable, str(BUILD_PY)], env=environment, capture_output=True, text=True)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BUILDFARM_REQUIRE_SOURCE_SIGNATURE", "true", "must be 1 or 0, not 'true'"),
        ("BUILDFARM_CCACHE", "maybe", "must be 1 or 0, not 'maybe'"),
        ("BUILDFARM_KEEP_WORK", "yes2", "must be 1 or 0, not 'yes2'"),
        ("BUILDFARM_CHECK_BUILD_DEPS", "perhaps", "must be 1 or 0, not 'perhaps'"),
        ("BUILDFARM_JOBS", "abc", "must be a whole number from 1 to 1024 (ASCII digits), not 'abc'"),
        ("BUILDFARM_JOBS", "0", "must be a whole number from 1 to 1024 (ASCII digits), not '0'"),
        ("BUILDFARM_JOBS", "\u0663", "must be a whole number from 1 to 1024 (ASCII digits), not '\u0663'"),
    ],
)
def test_the_driver_refuses_a_bad_option_before_any_work(tmp_path, name, value, message):
    result = run_driver(tmp_path, **{name: value})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == f"buildfarm: error: {name} {message}\n"
    assert result.stderr == ""
    assert os.listdir(tmp_path / "work") == []
    assert not (tmp_path / "stable").exists()
    assert not (tmp_path / "store").exists()


@pytest.mark.skipif(not shutil.which("dpkg-deb"), reason="the preflight of a deb platform needs dpkg-deb")
def test_the_driver_takes_good_options(tmp_path):
    flags = {"BUILDFARM_REQUIRE_SOURCE_SIGNATURE": "1", "BUILDFARM_CCACHE": "0", "BUILDFARM_KEEP_WORK": "0"}
    result = run_driver(tmp_path, BUILDFARM_CHECK_BUILD_DEPS="0", BUILDFARM_JOBS="2", **flags)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "buildfarm: stopped after phase preflight" in result.stdout
    assert os.listdir(tmp_path / "work") == []
