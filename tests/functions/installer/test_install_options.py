"""install.sh's command line, run for real as test_install_script.py runs it: an empty option
value is refused (never read as the option's absence), a non-bash shell gets one line, and
--help names every environment variable the script reads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .test_install_script import INSTALL_SH, make_store, run_installer

VALUED_OPTIONS = ["--version", "--build", "--prefix", "--base-url", "--pubkey"]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return make_store(tmp_path / "store")


@pytest.mark.parametrize("form", ["separate", "equals"])
@pytest.mark.parametrize("option", VALUED_OPTIONS)
def test_an_empty_option_value_is_refused_naming_the_option(tmp_path, store, option, form) -> None:
    """`--prefix "$DIR"` with DIR unset: refused, not a system-wide package install (A2, C5)."""
    given = [option, ""] if form == "separate" else [f"{option}="]
    # uid 1000: were the empty --prefix read as no --prefix, this ends in "needs root", not apt.
    prefix = ["--prefix", str(tmp_path / "p")] if option != "--prefix" else []
    result = run_installer(tmp_path, store, *prefix, *given, uid=1000)
    assert result.returncode == 1
    assert result.stderr == (
        f"install.sh: error: {option} needs a value (it was given an empty one); nothing installed\n"
    )
    assert not (tmp_path / "p").exists()


def test_an_empty_prefix_as_root_installs_no_package(tmp_path, store) -> None:
    """The store has only tarballs: were the empty --prefix read as none, root would be sent
    to the .deb ("has no deb artifact"); it is refused before anything is downloaded."""
    result = run_installer(tmp_path, store, "--prefix=", uid=0)
    assert result.returncode == 1
    assert "--prefix needs a value" in result.stderr
    assert "deb" not in result.stderr and "downloading" not in result.stderr


@pytest.mark.parametrize("shell", ["dash", "sh"])
def test_a_non_bash_shell_is_told_to_use_bash(tmp_path, shell) -> None:
    """`sh install.sh` and `curl ... | sh`: one line, exit 1, before any bash syntax (C4)."""
    if shutil.which(shell) is None:
        pytest.skip(f"no {shell} here")
    if subprocess.run([shell, "-c", "echo ${BASH_VERSION:-}"], capture_output=True, text=True).stdout.strip():
        pytest.skip(f"{shell} is bash here")
    by_file = subprocess.run([shell, str(INSTALL_SH), "--list"], capture_output=True, text=True, timeout=30)
    script = INSTALL_SH.read_text()
    piped = subprocess.run(
        [shell, "-s", "--", "--list"], input=script, capture_output=True, text=True, timeout=30
    )
    for result in (by_file, piped):
        assert result.returncode == 1
        assert result.stderr == "install.sh: run it with bash\n" and result.stdout == ""


def test_bash_as_sh_in_posix_mode_still_runs_it(tmp_path, store) -> None:
    """bash run as sh (RHEL's /bin/sh) is bash: it leaves POSIX mode and goes on."""
    result = run_installer(tmp_path, store, "--list")  # writes the os-release it reads
    environment = {
        **{k: v for k, v in os.environ.items() if k != "BUILDFARM_BASE_URL"},
        "BUILDFARM_OS_RELEASE": str(tmp_path / "os-release"),
    }
    posix = subprocess.run(
        ["bash", "--posix", str(INSTALL_SH), "--base-url", f"file://{store}", "--list"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )
    assert posix.returncode == 0, posix.stderr
    assert posix.stdout == result.stdout == "3.13.5\n3.12.8\n"


# Variables bash itself sets, which install.sh reads but no user sets.
BASH_OWN = {"BASH_VERSION", "SHELLOPTS"}


def _environment_variables_read(script: str) -> set[str]:
    """Upper-case variables the script reads but never assigns itself: its environment."""
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))
    read = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", code))
    assigned = set(re.findall(r"^\s*(?:local\s+)?([A-Z][A-Z0-9_]*)=", script, re.M))
    return read - assigned - BASH_OWN


def test_help_names_every_environment_variable_the_script_reads(tmp_path) -> None:
    """B4: BUILDFARM_OS_RELEASE was read but not in --help."""
    variables = _environment_variables_read(INSTALL_SH.read_text())
    assert {"BUILDFARM_BASE_URL", "BUILDFARM_OS_RELEASE"} <= variables
    shown = run_installer(tmp_path, None, "--help")
    assert shown.returncode == 0
    environment = shown.stdout.split("\nEnvironment:\n", 1)[1]
    for name in sorted(variables):
        assert re.search(rf"^  {name} ", environment, re.M), (name, environment)
