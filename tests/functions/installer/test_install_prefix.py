"""install.sh --prefix over an earlier install, run for real as test_install_script.py runs it:
it says what it replaces (and that what was added to it goes too), and the renames beside DIR
use no name another local user could plant first (A3: a symlink at the old `<staging>.old`,
or at DIR itself once checked). The plants are made at the moment an attacker would win the
race, by wrappers of mktemp and mv put first on PATH."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .test_install_script import make_store, run_installer


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return make_store(tmp_path / "store")


def _installed(prefix: Path) -> str:
    return subprocess.run([prefix / "bin" / "python3"], capture_output=True, text=True).stdout.strip()


def _wrap(tmp_path: Path, name: str, after: str) -> None:
    """fakebin/<name>: the real one, then the shell code `after` (with $out its stdout)."""
    fake = tmp_path / "fakebin"
    fake.mkdir(exist_ok=True)
    real = shutil.which(name)
    (fake / name).write_text(f'#!/bin/sh\nout=$("{real}" "$@") || exit $?\nprintf "%s\\n" "$out"\n{after}\n')
    (fake / name).chmod(0o755)


def test_replacing_an_earlier_install_says_which_and_that_added_files_go(tmp_path, store) -> None:
    prefix = tmp_path / "py"
    first = run_installer(tmp_path, store, "--version", "3.12.8", "--prefix", str(prefix))
    assert first.returncode == 0, first.stderr
    assert "install.sh: replacing" not in first.stderr
    site = prefix / "lib" / "python3.12" / "site-packages" / "mine.py"
    site.parent.mkdir(parents=True)
    site.write_text("")
    result = run_installer(tmp_path, store, "--prefix", str(prefix))
    assert result.returncode == 0, result.stderr
    base = f"file://{store}"
    assert (
        f"install.sh: replacing the earlier install at {prefix} (3.12.8 build 1 from {base}): it goes "
        "whole, with anything added to it since (packages installed into its site-packages, other files)\n"
    ) in result.stderr
    assert result.stderr.index("install.sh: replacing") < result.stderr.index("installed Python 3.13.5")
    assert _installed(prefix) == "Python 3.13.5" and not site.exists()


def test_a_planted_old_name_beside_the_prefix_is_not_followed(tmp_path, store) -> None:
    """Another user plants `<staging>.old -> trap` as soon as the staging directory exists:
    the earlier tree must not be moved into trap (and left there), but removed."""
    prefix, trap = tmp_path / "shared" / "py", tmp_path / "trap"
    trap.mkdir()
    assert run_installer(tmp_path, store, "--version", "3.12.8", "--prefix", str(prefix)).returncode == 0
    _wrap(tmp_path, "mktemp", f'case "$out" in */.install.sh.*) ln -s "{trap}" "$out.old" ;; esac')
    result = run_installer(tmp_path, store, "--prefix", str(prefix))
    assert result.returncode == 0, result.stderr
    assert _installed(prefix) == "Python 3.13.5"
    assert list(trap.iterdir()) == []
    # Beside the prefix: only the plant, which was not used.
    beside = sorted(p.name for p in prefix.parent.iterdir() if p.name != "py")
    assert len(beside) == 1 and beside[0].endswith(".old") and (prefix.parent / beside[0]).is_symlink()


def test_a_symlink_planted_at_the_prefix_once_the_earlier_tree_is_aside_is_not_followed(
    tmp_path, store
) -> None:
    """The earlier install is moved aside; a symlink to another directory appears at DIR before
    the new tree is renamed there: nothing is moved into the symlink's target (mv -T refuses
    to rename onto it), and the error says where the earlier tree is kept."""
    prefix, trap = tmp_path / "shared" / "py", tmp_path / "trap"
    trap.mkdir()
    assert run_installer(tmp_path, store, "--version", "3.12.8", "--prefix", str(prefix)).returncode == 0
    _wrap(tmp_path, "mv", f'case "$*" in *"-- {prefix} "*) ln -s "{trap}" "{prefix}" ;; esac')
    result = run_installer(tmp_path, store, "--prefix", str(prefix))
    assert result.returncode == 1
    assert list(trap.iterdir()) == []
    (kept,) = prefix.parent.glob(".install.sh.*/old")
    assert f"cannot put the new tree at {prefix} nor the earlier one back: the earlier one is at {kept}" in (
        result.stderr
    )
    assert _installed(kept) == "Python 3.12.8" and not (kept.parent / "new").exists()
