"""A real 3.13.5 --optimization none build on the host runner, and what it produced:
consistent artifacts, a relocatable tarball, a .deb that installs, runs and removes cleanly
in a fresh bookworm root, declared runtime dependencies that match reality, an .rpm made
from the same tree."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from builder_helpers import needed_sonames, packages_providing, run_checked
from rpm_database import capabilities, rpm_database

from buildfarm import roots
from buildfarm.models import Manifest
from buildfarm.platforms import load_registry

pytestmark = [pytest.mark.build, pytest.mark.farm]

PREFIX = "/opt/python/3.13.5"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def built(host_build):
    return host_build


@pytest.fixture(scope="module")
def manifest(built) -> dict:
    return json.loads((built.dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def extracted(built, tmp_path_factory) -> Path:
    """The tarball extracted once; returns the python/ folder."""
    target = tmp_path_factory.mktemp("extracted")
    with tarfile.open(built.dir / f"python-3.13.5-{built.platform}-x86_64.tar.gz") as archive:
        archive.extractall(target, filter="tar")
    return target / "python"


def test_artifacts_and_manifest_are_consistent(built, manifest):
    files = sorted(p.name for p in built.dir.iterdir())
    # The builder's files (no SHA256SUMS: the publish side writes and signs it, not the builder),
    # and what publishing added to this published build (the signing contract).
    made = ["build.log", "manifest.json", f"python-3.13.5-{built.platform}-x86_64.tar.gz"]
    made.append("python-3.13.5_1_amd64.deb")
    published = ["SHA256SUMS", "SHA256SUMS.sig", "provenance.json", "provenance.json.sig", "sbom.cdx.json"]
    assert files == sorted(made + published)
    model = Manifest.model_validate(manifest)  # the contract other parts read
    assert model.spec.artifact_dir == f"builds/3.13.5/{built.platform}/x86_64/1"
    assert model.spec.optimization == "none"
    assert {a.type for a in model.artifacts} == {"tarball", "deb"}
    for artifact in model.artifacts:
        path = built.dir / artifact.file
        assert path.stat().st_size == artifact.size
        assert sha256(path) == artifact.sha256
    assert manifest["python"]["version"] == "3.13.5"
    assert manifest["python"]["soabi"] == "cpython-313-x86_64-linux-gnu"
    assert manifest["platform"]["glibc"].startswith("glibc-")
    assert manifest["modules"]["missing"] == {}
    assert set(manifest["modules"]["expected"]) == set(load_registry().expected_modules(built.platform))
    assert "--enable-shared" in manifest["configure_args"]
    assert "--enable-optimizations" not in manifest["configure_args"]
    for phase in ("fetch", "verify", "configure", "make", "install", "selftest", "package"):
        assert manifest["timings"][phase] >= 0
    assert set(manifest["selftest"]) == {"hardening", "modules", "tests", "pip", "relocation", "embedding"}
    # The CLI showed every phase with its time; the log next to the artifacts is the full one.
    assert re.search(r"phase make done in [0-9.]+ s", built.output)
    assert "phase selftest" in (built.dir / "build.log").read_text()


def test_tarball_is_install_only_shaped_stripped_and_origin_relative(built, extracted):
    with tarfile.open(built.dir / f"python-3.13.5-{built.platform}-x86_64.tar.gz") as archive:
        tops = {member.name.split("/", 1)[0] for member in archive.getmembers()}
    assert tops == {"python"}
    assert (extracted / "bin" / "python3").exists()
    assert not list(extracted.rglob("libpython*.a")), "no static libpython"
    assert not (extracted / "lib" / "python3.13" / "test").exists(), "no test suite installed"
    for binary in (extracted / "bin" / "python3.13", extracted / "lib" / "libpython3.13.so.1.0"):
        dynamic = run_checked(["readelf", "-d", str(binary)])
        assert re.findall(r"Library runpath: \[([^\]]*)\]", dynamic) == ["$ORIGIN/../lib"]
        sections = run_checked(["readelf", "-S", str(binary)])
        assert ".symtab" not in sections, f"{binary.name} is not stripped"
        program_headers = run_checked(["readelf", "-l", str(binary)])
        assert "GNU_RELRO" in program_headers
        assert "BIND_NOW" in dynamic or ("FLAGS_1" in dynamic and "NOW" in dynamic)
    # The interpreter carries libpython's code itself (static TLS, no GOT detour: faster);
    # libpython.so ships for embedders.
    interpreter = str(extracted / "bin" / "python3.13")
    assert "libpython" not in run_checked(["readelf", "-d", interpreter])
    assert "Py_Initialize" in run_checked(["nm", "-D", "--defined-only", interpreter])  # for extensions
    first = (extracted / "bin" / "pip3").read_text().splitlines()[0]
    assert first == "#!/bin/sh", "bin/ scripts use the relocatable trampoline"


def test_tarball_runs_from_an_arbitrary_path_with_only_declared_deps(built, fresh_root):
    root = fresh_root("bookworm")
    deps = load_registry().get(built.platform).runtime_dependencies
    roots.apt_install(root, deps)
    place = root / "srv" / "some where" / "else"
    place.mkdir(parents=True)
    with tarfile.open(built.dir / f"python-3.13.5-{built.platform}-x86_64.tar.gz") as archive:
        archive.extractall(place, filter="tar")
    python = "/srv/some where/else/python/bin/python3"
    modules = list(load_registry().expected_modules(built.platform))
    with roots.mounted(root):
        out = roots.run_in_root(
            root,
            [
                python,
                "-c",
                "import sys, importlib; [importlib.import_module(m) for m in sys.argv[1:]];"
                " print(sys.prefix)",
                *modules,
            ],
        ).stdout
        assert out.strip().splitlines()[-1] == "/srv/some where/else/python"
        out = roots.run_in_root(root, ["/srv/some where/else/python/bin/pip3", "--version"]).stdout
        assert "python 3.13" in out


def test_deb_installs_runs_pip_and_removes_cleanly(built, fresh_root, build_py, tmp_path):
    root = fresh_root("bookworm")
    deb = built.dir / "python-3.13.5_1_amd64.deb"
    shutil.copy(deb, root / "tmp" / deb.name)
    build_py.make_test_wheel(str(root / "tmp"))
    modules = list(load_registry().expected_modules(built.platform))
    with roots.mounted(root):
        roots.run_in_root(root, ["apt-get", "update", "-qq"], roots.APT_ENV)
        roots.run_in_root(root, ["apt-get", "install", "-y", "-qq", f"/tmp/{deb.name}"], roots.APT_ENV)
        status = roots.run_in_root(root, ["dpkg-query", "-W", "-f=${Version}", "python-3.13.5"]).stdout
        assert status == "3.13.5-1"
        out = roots.run_in_root(
            root,
            [
                f"{PREFIX}/bin/python3",
                "-c",
                "import sys, importlib; [importlib.import_module(m) for m in sys.argv[1:]]; "
                "print(sys.version)",
                *modules,
            ],
        ).stdout
        assert out.startswith("3.13.5")
        # pip works offline: into a venv, from a local wheel; and the trampolined pip3 script runs.
        roots.run_in_root(root, [f"{PREFIX}/bin/python3", "-m", "venv", "/tmp/venv"])
        roots.run_in_root(
            root,
            ["/tmp/venv/bin/pip", "install", "--no-index", "/tmp/buildfarm_selftest-1.0-py3-none-any.whl"],
        )
        assert (
            roots.run_in_root(root, ["/tmp/venv/bin/python", "-c", "import buildfarm_selftest"]).returncode
            == 0
        )
        assert "pip " in roots.run_in_root(root, [f"{PREFIX}/bin/pip3", "--version"]).stdout
        # The unversioned names, also through links from /usr/local/bin, as Posit's users make them.
        for name in ("python", "pip"):
            roots.run_in_root(root, ["ln", "-sf", f"{PREFIX}/bin/{name}", f"/usr/local/bin/{name}"])
        assert roots.run_in_root(root, ["/usr/local/bin/python", "--version"]).stdout == "Python 3.13.5\n"
        pip_version = roots.run_in_root(root, ["/usr/local/bin/pip", "--version"]).stdout
        assert f"{PREFIX}/lib/python3.13" in pip_version
        roots.run_in_root(root, ["apt-get", "remove", "-y", "-qq", "python-3.13.5"], roots.APT_ENV)
    leftovers = list((root / "opt" / "python").rglob("*")) if (root / "opt" / "python").exists() else []
    assert leftovers == [], f"left behind: {leftovers[:10]}"


def test_deb_metadata_and_lintian(built, manifest):
    deb = built.dir / "python-3.13.5_1_amd64.deb"
    info = run_checked(["dpkg-deb", "-f", str(deb), "Package", "Version", "Architecture", "Depends"])
    fields = dict(line.split(": ", 1) for line in info.splitlines())
    assert fields["Package"] == "python-3.13.5"
    assert fields["Version"] == "3.13.5-1"
    assert fields["Architecture"] == "amd64"
    # dpkg-shlibdeps' Depends: versioned by the symbols the binaries use, packages the
    # registry names (3.13 has no nis: no libnsl2), none for the tree's own libpython.
    depends = fields["Depends"].split(", ")
    assert any(re.fullmatch(r"libssl3 \(>= 3\.[0-9.]+\)", entry) for entry in depends), depends
    names = {entry.split()[0] for entry in depends}
    assert names <= set(load_registry().get(built.platform).runtime_dependencies), depends
    assert {"libc6", "zlib1g"} <= names and "libnsl2" not in names
    assert manifest["platform"]["runtime_dependencies"] == depends  # what the package declares
    contents = run_checked(["dpkg-deb", "-c", str(deb)])
    assert f".{PREFIX}/bin/python3.13" in contents
    result = subprocess.run(["lintian", "--tag-display-limit", "0", str(deb)], capture_output=True, text=True)
    errors = [line for line in result.stdout.splitlines() if line.startswith("E:")]
    assert errors == [], "\n".join(errors[:20])


def test_declared_runtime_dependencies_match_the_binaries(built, extracted):
    """Every library the tree links against belongs to a package the registry declares."""
    owners = packages_providing(needed_sonames(extracted))
    # The tree was found: its extension modules need zlib and OpenSSL, the interpreter libc.
    assert {"libc.so.6", "libz.so.1"} <= set(owners) and any(s.startswith("libssl.so.") for s in owners)
    declared = set(load_registry().get(built.platform).runtime_dependencies)
    undeclared = {soname: pkg for soname, pkg in owners.items() if pkg.split(":")[0] not in declared}
    assert undeclared == {}


def test_rpm_from_the_real_tree(built, extracted, build_py, tmp_path):
    """rpmbuild packages the staged tree: name, version, release and the Requires rpm finds in
    the binaries (by symbol version), none for the tree's own libpython and no Provides. The
    phase first asks an rpm database whether a package provides each library the binaries
    need: one where a package provides what this machine's dpkg says its packages do."""
    spec = {
        "version": "3.13.5",
        "platform": "rhel-9",
        "arch": "x86_64",
        "build": 2,
        "source": {"url": "file:///dev/null", "sha256": "0" * 64},
        "prefix": PREFIX,
        "optimization": "none",
        "store": str(tmp_path / "store"),
        "artifact_dir": "builds/3.13.5/rhel-9/x86_64/2",
    }
    build = build_py.Build(spec, build_py.load_platforms(), str(tmp_path))
    staged = tmp_path / "staging" / PREFIX.lstrip("/")
    staged.parent.mkdir(parents=True)
    shutil.copytree(extracted, staged, symlinks=True)
    # What a umask of 002 or a stray bit leaves: the package phase gives all artifacts one set of modes.
    (staged / "bin" / "python3.13").chmod(0o4775)
    (staged / "lib").chmod(0o2777)
    (tmp_path / "staging" / "opt").chmod(0o775)
    build.out = str(tmp_path / "out")
    provided = capabilities(packages_providing(needed_sonames(extracted)))
    build.package(rpm_dbpath=rpm_database(tmp_path / "rpmdb", provided))
    rpm = Path(build.out) / "python-3.13.5-2.x86_64.rpm"
    modes = run_checked(
        ["rpm", "-qp", "--queryformat", "[%{FILEMODES:perms} %{FILEUSERNAME} %{FILENAMES}\n]", str(rpm)]
    )
    assert (
        f"-rwxr-xr-x root {PREFIX}/bin/python3.13\n" in modes and f"drwxr-xr-x root {PREFIX}/lib\n" in modes
    )
    assert all(line[5] != "w" and line[8] != "w" for line in modes.splitlines() if line[0] != "l"), modes
    assert all(f"lrwxrwxrwx root {PREFIX}/bin/{name}\n" in modes for name in ("python", "pip")), modes
    with tarfile.open(Path(build.out) / "python-3.13.5-rhel-9-x86_64.tar.gz") as tarball:
        members = {m.name: m for m in tarball.getmembers()}
    assert members["python/bin/python3.13"].mode == 0o755 and members["python/lib"].mode == 0o755
    assert not any(m.mode & 0o7022 for m in members.values() if not m.issym())
    info = run_checked(["rpm", "-qp", "--queryformat", "%{NAME} %{VERSION} %{RELEASE} %{ARCH}", str(rpm)])
    assert info.split()[-4:] == ["python-3.13.5", "3.13.5", "2", "x86_64"]
    requires = [
        line.strip()
        for line in run_checked(["rpm", "-qp", "--requires", str(rpm)]).splitlines()
        if line.strip() and not line.startswith(("rpmlib(", "warning"))
    ]
    assert any(re.fullmatch(r"libssl\.so\.3\(OPENSSL_3\.[0-9.]+\)\(64bit\)", line) for line in requires)
    assert "libz.so.1()(64bit)" in requires and "libc.so.6()(64bit)" in requires, requires
    assert not any("python" in line for line in requires), requires
    provides = run_checked(["rpm", "-qp", "--provides", str(rpm)]).split()
    assert not any("libpython" in line for line in provides), provides
    files = run_checked(["rpm", "-qpl", str(rpm)])
    assert f"{PREFIX}/bin/python3.13" in files
    assert "/usr/lib/.build-id" not in files
