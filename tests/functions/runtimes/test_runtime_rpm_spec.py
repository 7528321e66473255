"""The runtime .rpm's spec carries package metadata as text, never as rpm macros: rpmbuild
(real, from Debian's rpm) builds a tree whose description holds a %(command), a macro and a
line that would open a section; the command does not run and the package says them literally."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from buildfarm.runtimes.rpm import make_rpm, rpm_file_name, rpm_literal


def test_rpm_literal_escapes_macros_and_indents_what_would_open_a_section() -> None:
    assert rpm_literal("a %{name} b") == "a %%{name} b"
    assert rpm_literal("one\n%files\ntwo") == "one\n %%files\ntwo"


def test_metadata_in_the_spec_is_text_not_macros(tmp_path: Path) -> None:
    if not shutil.which("rpmbuild"):
        pytest.skip("rpmbuild is not installed (scripts/setup installs rpm)")
    marker = tmp_path / "ran"
    root = tmp_path / "root"
    (root / "opt" / "svc").mkdir(parents=True)
    (root / "opt" / "svc" / "README").write_text("hello\n")
    description = f"holds svc %(touch {marker})\n%files\nand %{{_topdir}} too"
    fields = {
        "name": "svc", "version": "1.0.0", "release": "1", "arch": "x86_64",
        "summary": "svc %(touch " + str(marker) + ")", "description": description, "filters": "",
    }  # fmt: skip
    dest = tmp_path / rpm_file_name("svc", "1.0.0", 1, "x86_64")
    make_rpm(root, "/opt/svc", fields, tmp_path / "work", dest)
    assert dest.is_file() and not marker.exists()
    query = ["rpm", "-qp", "--queryformat", "%{SUMMARY}\n%{DESCRIPTION}", str(dest)]
    said = subprocess.run(query, capture_output=True, text=True, check=True).stdout
    assert said == f"svc %(touch {marker})\nholds svc %(touch {marker})\n %files\nand %{{_topdir}} too"
