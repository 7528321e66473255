"""Unit tests of the build driver's pure logic: versions, spec, configure flags, names, metadata.
The make side (configured Makefiles, PGO stages, BOLT rules) is in test_make_rules.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from driver import errors, flags, main, packages, process, relocation, series, upload
from driver import spec as driver_spec

from buildfarm.platforms import load_registry

BUILD_PY = Path(__file__).resolve().parents[2] / "builder_image" / "build.py"
SHA = "93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640"


def spec_dict(**overrides):
    spec = {
        "version": "3.13.5",
        "platform": "debian-12",
        "arch": "x86_64",
        "build": 1,
        "source": {"url": "http://127.0.0.1:1/3.13.5/Python-3.13.5.tar.xz", "sha256": SHA},
        "prefix": "/opt/python/3.13.5",
        "optimization": "pgo+lto",
        "store": "/tmp/store",
        "artifact_dir": "builds/3.13.5/debian-12/x86_64/1",
        "execution_id": "exec-1",
    }
    spec.update(overrides)
    return spec


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("3.13.5", (3, 13, 5, None, 0)),
        ("3.9.23", (3, 9, 23, None, 0)),
        ("3.14.0rc2", (3, 14, 0, "rc", 2)),
        ("3.15.0a1", (3, 15, 0, "a", 1)),
        ("3.14.0b3", (3, 14, 0, "b", 3)),
    ],
)
def test_versions_parse(text, parsed):
    assert driver_spec.parse_version(text) == parsed


@pytest.mark.parametrize(
    "bad",
    ["3.13", "3.13.5.1", "2.7.18", "3.13.5-rc1", "3.14.0c1", "", " 3.13.5", None, "3.13.5\n", "3.13.\u0669"],
)
def test_malformed_versions_are_named(bad):
    with pytest.raises(errors.SpecError, match="malformed Python version"):
        driver_spec.parse_version(bad)


def test_sha256_with_a_trailing_newline_is_refused(registry_json):
    spec = spec_dict(source={"url": "http://127.0.0.1:1/x.tar.xz", "sha256": SHA + "\n"})
    with pytest.raises(errors.SpecError, match="source sha256"):
        driver_spec.parse_spec(json.dumps(spec), registry_json)


def test_configure_pgo_lto_313():
    args = flags.configure_args("3.13.5", "pgo+lto", "/opt/python/3.13.5")
    assert args == [
        "--prefix=/opt/python/3.13.5",
        "--enable-shared",
        "--with-ensurepip=install",
        "--enable-optimizations",
        "--with-lto",
        "--disable-test-modules",
        "--without-static-libpython",
    ]


def test_configure_none_adds_no_optimization_flags():
    args = flags.configure_args("3.12.11", "none", "/opt/python/3.12.11")
    assert "--enable-optimizations" not in args and "--with-lto" not in args
    assert "--enable-shared" in args and "--disable-test-modules" in args


def test_configure_39_has_no_310_options():
    args = flags.configure_args("3.9.23", "pgo+lto", "/opt/python/3.9.23")
    assert "--disable-test-modules" not in args
    assert "--without-static-libpython" not in args
    assert "--enable-optimizations" in args


def test_configure_prerelease():
    args = flags.configure_args("3.14.0rc2", "none", "/opt/python/3.14.0rc2")
    assert "--prefix=/opt/python/3.14.0rc2" in args and "--disable-test-modules" in args


def test_configure_rejects_unknown_optimization():
    with pytest.raises(errors.SpecError, match="fast"):
        flags.configure_args("3.13.5", "fast", "/opt/python/3.13.5")


def test_hardening_and_rpath_only_in_nodist_flags():
    env = flags.configure_env("3.13.5")
    assert set(env) == {"CFLAGS_NODIST", "LDFLAGS_NODIST"}
    assert "-fstack-protector" in env["CFLAGS_NODIST"]
    assert "-D_FORTIFY_SOURCE=2" in env["CFLAGS_NODIST"]
    assert "-Wl,-z,relro,-z,now" in env["LDFLAGS_NODIST"]
    # $$ for make, \ for the recipe's shell: the linker gets $ORIGIN/../lib.
    assert "-Wl,-rpath,\\$$ORIGIN/../lib" in env["LDFLAGS_NODIST"]


def test_configure_runs_under_the_familys_configure_shell(registry_json):
    """The deb family's configure runs under dash (10-15% less time than the bash autoconf
    prefers, the same Makefile and pyconfig.h); the rpm family's under configure's own pick."""
    deb = driver_spec.platform_info(registry_json, "debian-12", "x86_64")
    rpm = driver_spec.platform_info(registry_json, "rhel-9", "x86_64")
    assert (deb["configure_shell"], rpm["configure_shell"]) == ("/bin/dash", None)
    assert flags.configure_env("3.13.5", shell=deb["configure_shell"])["CONFIG_SHELL"] == "/bin/dash"
    assert "CONFIG_SHELL" not in flags.configure_env("3.13.5", shell=rpm["configure_shell"])
    assert {family.configure_shell for family in load_registry().families.values()} == {"/bin/dash", None}


def test_39_builds_without_semantic_interposition():
    """3.9's interpreter runs libpython.so's code; 3.10+ configure adds the flag itself."""
    env = flags.configure_env("3.9.2")
    assert env["CFLAGS_NODIST"].endswith(" -fno-semantic-interposition")
    assert env["LDFLAGS_NODIST"].endswith(" -fno-semantic-interposition")
    for version in ("3.10.16", "3.11.2", "3.13.5", "3.15.0a2"):
        assert "interposition" not in " ".join(flags.configure_env(version).values())


def test_configure_315_asks_for_the_static_interpreter():
    args = flags.configure_args("3.15.0a1", "pgo+lto", "/opt/python/3.15.0a1")
    assert "--enable-static-libpython-for-interpreter" in args
    assert "--enable-static-libpython-for-interpreter" not in flags.configure_args(
        "3.14.0rc2", "pgo+lto", "/opt/python/3.14.0rc2"
    )


def test_spec_roundtrip_and_default_optimization(registry_json):
    spec = spec_dict()
    del spec["optimization"]
    parsed = driver_spec.parse_spec(json.dumps(spec), registry_json)
    assert parsed["optimization"] == "pgo+lto"


def test_spec_matches_the_package_model(registry_json):
    """The driver accepts exactly what buildfarm.models.BuildSpec produces."""
    from buildfarm.models import BuildSpec

    model = BuildSpec.model_validate(
        spec_dict(
            version="3.14.0rc2",
            artifact_dir="builds/3.14.0rc2/debian-12/x86_64/1",
            prefix="/opt/python/3.14.0rc2",
        )
    )
    assert driver_spec.parse_spec(model.model_dump_json(), registry_json)["version"] == "3.14.0rc2"


def test_the_manifests_attestations_are_the_package_models():
    """manifest.json's "attestations" (the driver's copy) are buildfarm.models.Attestations'
    defaults, which the model accepts as written."""
    from driver.manifest import ATTESTATIONS

    from buildfarm.models import Attestations

    assert Attestations.model_validate(ATTESTATIONS) == Attestations()
    assert Attestations().model_dump() == ATTESTATIONS


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"version": "3.13"}, "malformed Python version '3.13'"),
        ({"platform": "debian-99"}, "unknown platform 'debian-99'"),
        ({"arch": "riscv64"}, "unknown arch 'riscv64'"),
        ({"build": 0}, "build must be a positive integer"),
        ({"build": "1"}, "build must be a positive integer"),
        ({"optimization": "O3"}, "unknown optimization 'O3'"),
        ({"prefix": "opt/python"}, "prefix must be an absolute path"),
        ({"source": {"url": "ftp://x/y", "sha256": SHA}}, "source url must be"),
        ({"source": {"url": "http://x/y", "sha256": "ABC"}}, "source sha256 must be"),
        ({"artifact_dir": "builds/../../etc"}, "artifact_dir must be"),
        ({"extra": 1}, "unknown key"),
    ],
)
def test_bad_specs_are_named(registry_json, overrides, message):
    with pytest.raises(errors.SpecError, match=message.replace("(", r"\(")):
        driver_spec.parse_spec(json.dumps(spec_dict(**overrides)), registry_json)


def test_spec_missing_key_and_not_json(registry_json):
    spec = spec_dict()
    del spec["store"]
    with pytest.raises(errors.SpecError, match="lacks 'store'"):
        driver_spec.parse_spec(json.dumps(spec), registry_json)
    with pytest.raises(errors.SpecError, match="not valid JSON"):
        driver_spec.parse_spec("{nope", registry_json)


def test_driver_without_spec_exits_2():
    result = subprocess.run(
        [sys.executable, str(BUILD_PY)], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}
    )
    assert result.returncode == 2
    assert "BUILD_SPEC is not set" in result.stdout


def test_artifact_names():
    assert packages.tarball_name("3.13.5", "debian-12", "x86_64") == "python-3.13.5-debian-12-x86_64.tar.gz"
    assert packages.deb_name("3.13.5", 2, "aarch64") == "python-3.13.5_2_arm64.deb"
    assert packages.rpm_name("3.13.5", 3, "x86_64") == "python-3.13.5-3.x86_64.rpm"


def test_package_versions_sort_prereleases_first():
    assert packages.package_version("3.13.5") == "3.13.5"
    assert packages.package_version("3.14.0rc2") == "3.14.0~rc2"

    # dpkg's own ordering: build 2 upgrades build 1, rc sorts before the final release.
    def newer(a, b):
        return subprocess.run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0

    assert newer("3.13.5-2", "3.13.5-1")
    assert newer("3.14.0-1", "3.14.0~rc2-1")


def test_deb_control_declares_the_given_depends():
    depends = ["libc6 (>= 2.34)", "libssl3 (>= 3.0.0)", "zlib1g (>= 1:1.1.4)"]
    control = packages.deb_control("3.13.5", 2, "x86_64", depends, 1234, "A <a@b.c>")
    fields = dict(line.split(": ", 1) for line in control.splitlines() if not line.startswith(" "))
    assert fields["Package"] == "python-3.13.5"
    assert fields["Version"] == "3.13.5-2"
    assert fields["Architecture"] == "amd64"
    assert fields["Installed-Size"] == "1234"
    assert fields["Depends"] == "libc6 (>= 2.34), libssl3 (>= 3.0.0), zlib1g (>= 1:1.1.4)"
    # No binary, no dependency: no field (an empty Depends is malformed).
    assert "Depends" not in packages.deb_control("3.13.5", 2, "x86_64", [], 1, "A <a@b.c>")


def test_rpm_spec_has_automatic_requires():
    text = packages.rpm_spec(
        "3.14.0rc2", 3, "aarch64", "/w/staging", "/opt/python/3.14.0rc2", ["libpython3.14.so.1.0"]
    )
    assert "Name: python-3.14.0rc2\n" in text
    assert "Version: 3.14.0~rc2\n" in text
    assert "Release: 3\n" in text
    assert "BuildArch: aarch64\n" in text
    # rpm finds the Requires in the binaries (tests/builder/test_package_dependencies.py).
    assert "AutoReqProv: yes\n" in text and "Requires:" not in text
    assert "\n%defattr(-,root,root,-)\n/opt/python/3.14.0rc2\n" in text
    # The staged tree's path is quoted for the shell and its % kept from rpm's macros.
    odd = packages.rpm_spec("3.13.5", 1, "x86_64", "/w/a b%{x}", "/opt/python/3.13.5")
    assert 'cp -a "/w/a b%%{x}/." %{buildroot}/' in odd


def test_package_modes_leave_no_special_bit_or_shared_write(tmp_path):
    """normalise_modes: directories 0755, owner-executable files 0755, others 0644; symlinks as
    they are (os.chmod would follow them to their target)."""
    tree, target = tmp_path / "tree", tmp_path / "target"
    target.write_text("")
    target.chmod(0o600)
    (tree / "bin").mkdir(parents=True, mode=0o2777)
    (tree / "bin" / "tool").write_text("")
    (tree / "bin" / "tool").chmod(0o4775)
    (tree / "data.txt").write_text("")
    (tree / "data.txt").chmod(0o666)
    (tree / "private").write_text("")
    (tree / "private").chmod(0o600)
    (tree / "bin" / "link").symlink_to(target)
    tree.chmod(0o1777)
    packages.normalise_modes(str(tree))
    modes = {
        p.relative_to(tree).as_posix(): p.lstat().st_mode & 0o7777
        for p in tree.rglob("*")
        if not p.is_symlink()
    }
    assert modes == {"bin": 0o755, "bin/tool": 0o755, "data.txt": 0o644, "private": 0o644}
    assert tree.stat().st_mode & 0o7777 == 0o755 and target.stat().st_mode & 0o7777 == 0o600


def test_expected_modules_follow_the_registry(registry_json):
    info = driver_spec.platform_info(registry_json, "debian-12", "x86_64")
    assert tuple(info["expected_modules"]) == load_registry().expected_modules("debian-12")
    patched = json.loads(json.dumps(registry_json))
    patched["platforms"]["debian-12"]["missing_modules"] = {"_tkinter": "no Tk here"}
    assert "_tkinter" not in driver_spec.platform_info(patched, "debian-12", "x86_64")["expected_modules"]


def test_build_dependencies_follow_the_registry(registry_json):
    for platform in load_registry().platforms:
        for arch in ("x86_64", "aarch64"):
            assert tuple(
                driver_spec.platform_info(registry_json, platform, arch)["build_dependencies"]
            ) == load_registry().build_dependencies(platform, arch)


def test_relocatable_shebang(tmp_path):
    script = b"#!/opt/python/3.13.5/bin/python3.13\nimport sys\nprint('hi', sys.argv[1:])\n"
    rewritten = relocation.rewrite_shebang(script, "python3.13")
    assert rewritten.startswith(b"#!/bin/sh\n")
    assert rewritten.endswith(b"import sys\nprint('hi', sys.argv[1:])\n")
    assert relocation.rewrite_shebang(b"#!/bin/sh\necho\n", "python3.13") is None
    # It really runs the interpreter next to it: a fake 'python3.13' that reports its arguments.
    bindir = tmp_path / "some dir" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "python3.13").write_text('#!/bin/sh\necho "ran $0 with $*"\n')
    (bindir / "python3.13").chmod(0o755)
    (bindir / "tool").write_bytes(rewritten)
    (bindir / "tool").chmod(0o755)
    out = subprocess.run([str(bindir / "tool"), "x"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"ran {bindir}/python3.13 with {bindir}/tool x"


def test_s3_url_split():
    assert upload.split_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    assert upload.split_s3_url("s3://bucket") == ("bucket", "")
    with pytest.raises(errors.SpecError):
        upload.split_s3_url("s3:///x")


# The SBOM fact collector (builder_image/sbom_facts/) is not the driver: the built python
# (3.9 or newer) runs it, so it has its own syntax floor (test_collector_runs_on_python39_syntax).
COLLECTOR_DIR = "sbom_facts"
# What the driver imports of the collector's package: its __init__ and the shared ELF reader.
SHARED_WITH_THE_DRIVER = (f"{COLLECTOR_DIR}/__init__.py", f"{COLLECTOR_DIR}/elf.py")
DRIVER_FILES = sorted(
    path.relative_to(BUILD_PY.parent).as_posix()
    for path in BUILD_PY.parent.rglob("*.py")
    if "__pycache__" not in path.parts
    and (
        path.relative_to(BUILD_PY.parent).parts[0] != COLLECTOR_DIR
        or path.relative_to(BUILD_PY.parent).as_posix() in SHARED_WITH_THE_DRIVER
    )
)
COLLECTOR_FILES = sorted(path.name for path in (BUILD_PY.parent / COLLECTOR_DIR).glob("*.py"))


def test_the_driver_package_is_found():
    assert {"build.py", "registry.py", "driver/__init__.py", "driver/main.py", "driver/selftest.py"} <= set(
        DRIVER_FILES
    )
    assert set(SHARED_WITH_THE_DRIVER) <= set(DRIVER_FILES)


@pytest.mark.parametrize("name", DRIVER_FILES)
def test_driver_runs_on_python36_syntax(name):
    """Every file of the driver (build.py, registry.py, driver/): no syntax newer than 3.6 (the
    system python of rhel-8 and openSUSE 15), none of the newer library names it would miss, no
    f-strings (the driver's style is .format), and the project's size limits."""
    import ast

    text = (BUILD_PY.parent / name).read_text()
    tree = ast.parse(text, feature_version=(3, 6))
    forbidden = (ast.NamedExpr, ast.JoinedStr)
    assert not [node for node in ast.walk(tree) if isinstance(node, forbidden)]
    keywords = {node.arg for node in ast.walk(tree) if isinstance(node, ast.keyword)}
    assert not keywords & {"capture_output", "text", "dirs_exist_ok"}
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not attributes & {"removeprefix", "removesuffix", "is_relative_to"}
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not imported & {"dataclass", "dataclasses", "annotations"}
    assert len(text.splitlines()) <= 500
    functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)]
    assert not [f.name for f in functions if f.end_lineno - f.lineno + 1 > 60]


def test_the_collector_is_found():
    assert {"__init__.py", "bundled.py", "collect.py", "elf.py", "linked.py", "toolchain.py"} <= set(
        COLLECTOR_FILES
    )


@pytest.mark.parametrize("name", COLLECTOR_FILES)
def test_collector_runs_on_python39_syntax(name):
    """The collector runs on the oldest python the farm builds (3.9): no newer syntax (its
    `X | None` annotations are strings under `from __future__ import annotations`), and the
    project's size limits."""
    import ast

    text = (BUILD_PY.parent / COLLECTOR_DIR / name).read_text()
    tree = ast.parse(text, feature_version=(3, 9))
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.Match)]
    if "|" in text:
        assert "from __future__ import annotations" in text
    assert len(text.splitlines()) <= 500
    functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)]
    assert not [f.name for f in functions if f.end_lineno - f.lineno + 1 > 60]


def test_failure_tail_keeps_earlier_errors(tmp_path):
    log = process.Log(str(tmp_path / "build.log"))
    log.start_phase("make")
    log.write("gcc -c a.c\nModules/a.c:12:3: error: unknown type name 'foo'\n" + "gcc -c b.c\n" * 60)
    log.write("make: *** [Makefile:3113: Modules/a.o] Error 1\n")
    tail = log.tail()
    assert tail[0] == "Modules/a.c:12:3: error: unknown type name 'foo'"
    assert tail[-1] == "make: *** [Makefile:3113: Modules/a.o] Error 1"
    log.close()
    assert "error: unknown type name" in (tmp_path / "build.log").read_text()


SETUP_STDLIB_IN = """\
# The stdlib's module lines, each behind configure's enabled-if marker.
*@MODULE_BUILDTYPE@*
@MODULE__JSON_TRUE@_json _json.c
@MODULE_MATH_TRUE@math mathmodule.c
@MODULE__SQLITE3_TRUE@_sqlite3 _sqlite/blob.c _sqlite/connection.c
@MODULE__MD5_TRUE@_md5 md5module.c -I$(srcdir)/Modules/_hacl/include _hacl/Hacl_Hash_MD5.c
"""


def test_setup_local_builds_the_chosen_modules_in():
    text = flags.setup_local(SETUP_STDLIB_IN, ("_json", "math", "_md5"))
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [
        "*static*",
        "_json _json.c",
        "math mathmodule.c",
        "_md5 md5module.c -I$(srcdir)/Modules/_hacl/include _hacl/Hacl_Hash_MD5.c",
    ]
    # The default list has no module that needs a third-party library.
    assert not {"_sqlite3", "_ssl", "_ctypes", "zlib", "binascii", "pyexpat"} & set(series.BUILTIN_MODULES)


def test_build_dependencies_command_for_the_dockerfiles(capsys):
    """What the Dockerfiles install: the registry's list for the image's platform and arch."""
    assert main.main(["--build-dependencies", "debian-12", "x86_64"]) == 0
    assert tuple(capsys.readouterr().out.split()) == load_registry().build_dependencies("debian-12", "x86_64")
    assert main.main(["--build-dependencies", "debian-12", "aarch64"]) == 0
    assert "bolt-16" not in capsys.readouterr().out.split()
    assert main.main(["--build-dependencies", "debian-99", "x86_64"]) == 2
    assert "unknown platform 'debian-99'" in capsys.readouterr().out
    assert main.main(["--build-dependencies", "debian-12", "sparc"]) == 2
    assert "unknown arch 'sparc' for platform debian-12" in capsys.readouterr().out
    assert main.main(["--build-dependencies", "debian-12"]) == 2
    assert "--build-dependencies PLATFORM ARCH" in capsys.readouterr().out


def test_the_driver_states_the_arches_and_id_rules_as_the_farm_does() -> None:
    """The driver cannot import buildfarm (standard library only): spec.py holds its one copy
    of each rule, and this test holds that copy equal to the farm's."""
    from driver import runtime_job

    from buildfarm import digests, layout, platforms

    assert driver_spec.ARCHES == platforms.ARCHES
    assert (driver_spec.DEB_ARCH, driver_spec.RPM_ARCH) == (platforms.DEB_ARCH, platforms.RPM_ARCH)
    assert driver_spec.SHA256_RE.pattern == digests.SHA256.pattern
    assert driver_spec.SHA256_RE.flags == digests.SHA256.flags
    assert driver_spec.EXECUTION_ID_RE.pattern == layout.EXECUTION_ID.pattern
    assert driver_spec.EXECUTION_ID_RE.flags == layout.EXECUTION_ID.flags
    assert runtime_job.ARCHES is driver_spec.ARCHES and runtime_job.SHA256_RE is driver_spec.SHA256_RE
    assert runtime_job.PLATFORM_ID.pattern == platforms.PLATFORM_ID.pattern
    assert runtime_job.PLATFORM_ID.flags == platforms.PLATFORM_ID.flags
    assert (packages.DEB_ARCH, packages.RPM_ARCH) == (driver_spec.DEB_ARCH, driver_spec.RPM_ARCH)
