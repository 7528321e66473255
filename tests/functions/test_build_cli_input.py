"""Bad input to `buildfarm build`, `releases add` and `runtime build` is refused before anything is
written (CLI audit D6-D9, D11): exit status 2, one line on stderr naming the bad value, and the
store (indeed the whole test directory) exactly as it was. No build starts: the runner is a stub
that fails the test if it is asked to build, and the subprocess cases are refused at validation."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import buildfarm.cli.build
from buildfarm.cli import main
from buildfarm.config import ConfigError, resolve_store_location

BUILDFARM = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "buildfarm"
SHA = "ab" * 32
PHASES = "preflight, fetch, verify, configure, make, install, selftest, sbom, package, manifest, upload"


def listing(root: Path) -> list[tuple[str, int]]:
    """Every path under root (directories too) with its size: what a refusal must leave as it was."""
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1) for p in root.rglob("*")
    )


class MustNotBuild:
    name = "stub"

    def run(self, spec, on_phase=None, output=None):
        raise AssertionError(f"a build started for {spec.version}: validation let it through")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Offline, no store or stop phase from the caller's environment, a stub runner, cwd tmp_path."""
    monkeypatch.setenv("BUILDFARM_RELEASES_URL", "http://127.0.0.1:9/api")
    for name in (
        "BUILDFARM_STORE",
        "BUILDFARM_ENABLED_PLATFORMS",
        "BUILDFARM_STOP_AFTER",
        "BUILDFARM_LOWEST_SERIES",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(
        buildfarm.cli.build, "select_runner", lambda platform, requested, arch: MustNotBuild()
    )
    monkeypatch.chdir(tmp_path)
    (tmp_path / "store").mkdir()
    return tmp_path


def refused(capsys: pytest.CaptureFixture[str], root: Path, argv: list[str], *named: str) -> str:
    """main(argv) exits 2 with one line on stderr naming every `named`, and root is unchanged."""
    before = listing(root)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert all(value in err for value in named), err
    assert listing(root) == before
    return err.strip()


def build_argv(version: str, store: str, *extra: str) -> list[str]:
    return [
        "build", version, "--platform", "debian-12", "--arch", "x86_64", "--runner", "host",
        "--optimization", "none", "--store", store, "--source-sha256", SHA, *extra,
    ]  # fmt: skip


def run_cli(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("BUILDFARM_STORE", "BUILDFARM_STOP_AFTER")}
    environ.update(BUILDFARM_RELEASES_URL="http://127.0.0.1:9/api", **env)
    return subprocess.run([str(BUILDFARM), *argv], capture_output=True, text=True, cwd=cwd, env=environ)


# -- D6: a version below the lowest supported series --------------------------------------------


@pytest.mark.parametrize("version", ["3.8.1", "3.8", "3.0.1", "2.7.18"])
def test_build_refuses_a_version_below_the_lowest_series(env, capsys, version):
    err = refused(capsys, env, build_argv(version, "store"), f"'{version}'")
    if version == "2.7.18":  # a Python 2 version is refused before any series is looked at
        assert err.endswith(
            "unsupported Python version '2.7.18' (only CPython 3 is built; expected a "
            "release like 3.13.5 or 3.14.0rc2, or a series like 3.13)"
        ), err
    else:
        assert err.endswith(f"version '{version}' is below the lowest supported series 3.9"), err


def test_build_follows_buildfarm_lowest_series(env, capsys, monkeypatch):
    monkeypatch.setenv("BUILDFARM_LOWEST_SERIES", "3.12")
    refused(capsys, env, build_argv("3.11.2", "store"), "'3.11.2'", "lowest supported series 3.12")


def test_releases_add_refuses_a_version_below_the_lowest_series(env, capsys):
    argv = ["releases", "add", "3.8.1", "--sha256", SHA, "--store", "store"]
    err = refused(capsys, env, argv, "'3.8.1'")
    assert err == "buildfarm releases: error: version '3.8.1' is below the lowest supported series 3.9"
    assert not (env / "store" / "releases.json").exists()


def test_installed_cli_refuses_3_8_1_before_claiming(tmp_path):
    (tmp_path / "store").mkdir()
    before = listing(tmp_path)
    result = run_cli(build_argv("3.8.1", "store"), tmp_path)
    assert result.returncode == 2, result
    assert result.stderr == (
        "buildfarm build: error: version '3.8.1' is below the lowest supported series 3.9\n"
    )
    assert result.stdout == ""
    assert listing(tmp_path) == before


# -- D8: file:// store URLs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("file:///srv/store", "/srv/store"),
        ("file://localhost/srv/store", "/srv/store"),
        ("file://LOCALHOST/srv/store/", "/srv/store"),
        ("file:///srv/a%20b", "/srv/a b"),
        ("FILE:///srv/store", "/srv/store"),
    ],
)
def test_file_urls_name_an_absolute_path(url, path):
    assert resolve_store_location(url, {}) == path


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file://", "names no absolute path"),
        ("file://localhost", "names no absolute path"),
        ("file://localhost/", None),  # the root directory: a path, accepted (it exists, a directory)
        ("file://otherhost/srv/store", "names the host 'otherhost'"),
        ("file://localhost:8000/srv", "names the host 'localhost:8000'"),
        ("file://user@localhost/srv", "names the host 'user@localhost'"),
        ("file:///srv/store?x=1", "query or fragment"),
        ("file:///srv/store#top", "query or fragment"),
        ("ftp:///srv/store", "unsupported store"),
    ],
)
def test_other_file_urls_are_refused_naming_the_value(url, why):
    if why is None:
        assert resolve_store_location(url, {}) == "/"
        return
    with pytest.raises(ConfigError) as error:
        resolve_store_location(url, {})
    assert f"{url!r}" in str(error.value) and why in str(error.value)


def test_a_file_url_in_the_variable_is_checked_too():
    with pytest.raises(ConfigError, match="'file://'"):
        resolve_store_location(None, {"BUILDFARM_STORE": "file://"})


@pytest.mark.parametrize("url", ["file://", "file://localhost/tmp/nowhere-relative"])
def test_status_no_longer_reads_the_cwd_or_a_relative_path(env, capsys, url):
    if url == "file://":
        refused(capsys, env, ["status", "--store", url], "'file://'")
    else:  # /tmp/nowhere-relative: absolute, not ./localhost/tmp/...; it does not exist
        err = refused(capsys, env, ["status", "--store", url], "/tmp/nowhere-relative")
        assert "localhost" not in err


# -- D9: runtime build with a --python-tarball that is not there ------------------------------


@pytest.mark.parametrize("store", ["store", "missing-store"])
def test_runtime_build_checks_the_tarball_before_writing(env, capsys, store):
    argv = ["runtime", "build", "fastapi-demo", "--platform", "debian-12", "--arch", "x86_64"]
    err = refused(capsys, env, [*argv, "--store", store, "--python-tarball", "/nope"], "/nope")
    assert err.endswith("--python-tarball /nope: no such file"), err
    assert not (env / "store" / "runtimes").exists() and not (env / "missing-store").exists()


# -- D11: BUILDFARM_STOP_AFTER ----------------------------------------------------------------


@pytest.mark.parametrize("value", ["nosuchphase", "", "Fetch", " fetch"])
def test_a_bad_stop_after_is_refused_before_the_claim(env, capsys, monkeypatch, value):
    monkeypatch.setenv("BUILDFARM_STOP_AFTER", value)
    err = refused(capsys, env, build_argv("3.13.5", "store"), "BUILDFARM_STOP_AFTER", f"{value!r}")
    assert err.endswith(f"is not a phase (one of: {PHASES})"), err


def test_installed_cli_refuses_a_bad_stop_after(tmp_path):
    (tmp_path / "store").mkdir()
    before = listing(tmp_path)
    result = run_cli(build_argv("3.13.5", "store"), tmp_path, BUILDFARM_STOP_AFTER="nosuchphase")
    assert result.returncode == 2, result
    assert result.stderr == (
        f"buildfarm build: error: BUILDFARM_STOP_AFTER: 'nosuchphase' is not a phase (one of: {PHASES})\n"
    )
    assert "phase None" not in result.stdout + result.stderr
    assert listing(tmp_path) == before


def test_a_good_stop_after_passes_validation(env, capsys, monkeypatch):
    """A phase name passes the check: the build goes on to claim the cell (then the stub runner
    would fail the test; a planted build number is refused first, so nothing is built)."""
    monkeypatch.setenv("BUILDFARM_STOP_AFTER", "fetch")
    (env / "store" / "builds/3.13.5/debian-12/x86_64/1").mkdir(parents=True)
    refused(capsys, env, build_argv("3.13.5", "store", "--build", "1"), "build 1", "already exists")


# -- the driver's own settings, checked as the driver checks them, before the claim ------------


@pytest.mark.parametrize(
    ("name", "value"),
    [("BUILDFARM_CCACHE", "true"), ("BUILDFARM_REQUIRE_SOURCE_SIGNATURE", "yes"), ("BUILDFARM_JOBS", "0")],
)
def test_build_and_run_refuse_a_driver_setting_the_driver_would(env, capsys, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    err = refused(capsys, env, build_argv("3.13.5", "store"), name, f"{value!r}")
    assert err.startswith(f"buildfarm build: error: {name} must be"), err
    argv = ["run", "--versions", "3.13.5", "--platforms", "debian-12", "--store", "store", "--dry-run"]
    err = refused(capsys, env, argv, name, f"{value!r}")
    assert err.startswith(f"buildfarm run: error: {name} must be"), err
