"""The .rpm of a runtime (rpm platforms), made with rpmbuild from the staging root: the tree at
its prefix, rpm's automatic requirements (AutoReqProv: what the binaries need, versioned by
symbol: libssl.so.3(OPENSSL_3.0.0)(64bit)) less the tree's own libraries and its own paths (a
venv script's #!<prefix>/bin/python), and no provides from the prefix (the filters:
package.rpm_dependency_filters, which first refuses a library that no installed package
provides, with the Python build's rpm_dependency_macros), and none of rpmbuild's post-install
rewriting (strip, bytecompile, shebang mangling: the tree is tested as it is)."""

from __future__ import annotations

import shutil
from pathlib import Path

from buildfarm.platforms import RPM_ARCH
from buildfarm.runtimes.build import RuntimeBuildError, run_step

SPEC = """\
%global __os_install_post %{{nil}}
%global debug_package %{{nil}}
%global _build_id_links none
Name: {name}
Version: {version}
Release: {release}
Summary: {summary}
License: PSF-2.0 AND the licenses of the packages it holds
AutoReqProv: yes
{filters}
%description
{description}

%install
cp -a %{{staging}}/. %{{buildroot}}/

%files
%defattr(-,root,root,-)
{prefix}
"""


def rpm_literal(text: str) -> str:
    """Text from package metadata as literal spec text: rpm expands %name and %{...} and runs
    %(command) on every line (%% is a literal %), and a line that then begins with % could
    open a section, so each such line is indented."""
    escaped = text.replace("%", "%%")
    return "\n".join(f" {line}" if line.startswith("%") else line for line in escaped.split("\n"))


def rpm_version(version: str) -> str:
    """An rpm Version: no '-' (it separates Version from Release)."""
    return version.replace("-", "_")


def rpm_file_name(package: str, version: str, build: int, arch: str) -> str:
    """What rpmbuild names it: <name>-<version>-<release>.<arch>.rpm."""
    return f"{package}-{rpm_version(version)}-{build}.{RPM_ARCH[arch]}.rpm"


def make_rpm(root: Path, prefix: str, fields: dict[str, str], work: Path, dest: Path) -> None:
    """rpmbuild -bb of the staging root; fields: name, version, release, arch, summary,
    description, filters (the spec's dependency filter lines)."""
    if not shutil.which("rpmbuild"):
        raise RuntimeBuildError("rpmbuild is not installed: the .rpm of an rpm platform needs it")
    top = work / "rpmbuild"
    (top / "SPECS").mkdir(parents=True)
    spec = top / "SPECS" / "runtime.spec"
    spec.write_text(
        SPEC.format(
            name=fields["name"],
            version=rpm_version(fields["version"]),
            release=fields["release"],
            summary=rpm_literal(fields["summary"]),
            filters=fields["filters"],
            description=rpm_literal(fields["description"]),
            prefix=prefix,
        )
    )
    argv = [
        "rpmbuild", "-bb", "--quiet", "--target", f"{RPM_ARCH[fields['arch']]}-linux",
        "--define", f"_topdir {top}", "--define", f"staging {root}", spec,
    ]  # fmt: skip
    run_step(argv, "making the .rpm")
    built = top / "RPMS" / RPM_ARCH[fields["arch"]] / dest.name
    if not built.is_file():
        raise RuntimeBuildError(f"rpmbuild made no {dest.name}")
    shutil.move(built, dest)
    shutil.rmtree(top)
