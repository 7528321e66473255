"""Unit tests of the build driver's pure logic: versions, spec, configure flags, names, metadata."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    }
    spec.update(overrides)
    return spec


@pytest.fixture(scope="module")
def registry_json(build_py):
    return build_py.load_platforms()


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
def test_versions_parse(build_py, text, parsed):
    assert build_py.parse_version(text) == parsed


@pytest.mark.parametrize("bad", ["3.13", "3.13.5.1", "2.7.18", "3.13.5-rc1", "3.14.0c1", "", " 3.13.5", None])
def test_malformed_versions_are_named(build_py, bad):
    with pytest.raises(build_py.SpecError, match="malformed Python version"):
        build_py.parse_version(bad)


def test_configure_pgo_lto_313(build_py):
    args = build_py.configure_args("3.13.5", "pgo+lto", "/opt/python/3.13.5")
    assert args == [
        "--prefix=/opt/python/3.13.5",
        "--enable-shared",
        "--with-ensurepip=install",
        "--enable-optimizations",
        "--with-lto",
        "--disable-test-modules",
        "--without-static-libpython",
    ]


def test_configure_none_adds_no_optimization_flags(build_py):
    args = build_py.configure_args("3.12.11", "none", "/opt/python/3.12.11")
    assert "--enable-optimizations" not in args and "--with-lto" not in args
    assert "--enable-shared" in args and "--disable-test-modules" in args


def test_configure_39_has_no_310_options(build_py):
    args = build_py.configure_args("3.9.23", "pgo+lto", "/opt/python/3.9.23")
    assert "--disable-test-modules" not in args
    assert "--without-static-libpython" not in args
    assert "--enable-optimizations" in args


def test_configure_prerelease(build_py):
    args = build_py.configure_args("3.14.0rc2", "none", "/opt/python/3.14.0rc2")
    assert "--prefix=/opt/python/3.14.0rc2" in args and "--disable-test-modules" in args


def test_configure_rejects_unknown_optimization(build_py):
    with pytest.raises(build_py.SpecError, match="fast"):
        build_py.configure_args("3.13.5", "fast", "/opt/python/3.13.5")


def test_hardening_and_rpath_only_in_nodist_flags(build_py):
    env = build_py.configure_env("3.13.5")
    assert set(env) == {"CFLAGS_NODIST", "LDFLAGS_NODIST"}
    assert "-fstack-protector-strong" in env["CFLAGS_NODIST"]
    assert "-D_FORTIFY_SOURCE=2" in env["CFLAGS_NODIST"]
    assert "-Wl,-z,relro,-z,now" in env["LDFLAGS_NODIST"]
    # $$ for make, \ for the recipe's shell: the linker gets $ORIGIN/../lib.
    assert "-Wl,-rpath,\\$$ORIGIN/../lib" in env["LDFLAGS_NODIST"]


def test_make_args(build_py):
    assert build_py.make_args(2) == ["make", "-j2"]
    assert build_py.make_args("4", "-m test --pgo test_array") == [
        "make",
        "-j4",
        "PROFILE_TASK=-m test --pgo test_array",
    ]


def test_spec_roundtrip_and_default_optimization(build_py, registry_json):
    spec = spec_dict()
    del spec["optimization"]
    parsed = build_py.parse_spec(json.dumps(spec), registry_json)
    assert parsed["optimization"] == "pgo+lto"


def test_spec_matches_the_package_model(build_py, registry_json):
    """The driver accepts exactly what buildfarm.models.BuildSpec produces."""
    from buildfarm.models import BuildSpec

    model = BuildSpec.model_validate(
        spec_dict(
            version="3.14.0rc2",
            artifact_dir="builds/3.14.0rc2/debian-12/x86_64/1",
            prefix="/opt/python/3.14.0rc2",
        )
    )
    assert build_py.parse_spec(model.model_dump_json(), registry_json)["version"] == "3.14.0rc2"


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
def test_bad_specs_are_named(build_py, registry_json, overrides, message):
    with pytest.raises(build_py.SpecError, match=message.replace("(", r"\(")):
        build_py.parse_spec(json.dumps(spec_dict(**overrides)), registry_json)


def test_spec_missing_key_and_not_json(build_py, registry_json):
    spec = spec_dict()
    del spec["store"]
    with pytest.raises(build_py.SpecError, match="lacks 'store'"):
        build_py.parse_spec(json.dumps(spec), registry_json)
    with pytest.raises(build_py.SpecError, match="not valid JSON"):
        build_py.parse_spec("{nope", registry_json)


def test_driver_without_spec_exits_2():
    result = subprocess.run(
        [sys.executable, str(BUILD_PY)], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}
    )
    assert result.returncode == 2
    assert "BUILD_SPEC is not set" in result.stdout


def test_artifact_names(build_py):
    assert build_py.tarball_name("3.13.5", "debian-12", "x86_64") == "python-3.13.5-debian-12-x86_64.tar.gz"
    assert build_py.deb_name("3.13.5", 2, "aarch64") == "python-3.13.5_2_arm64.deb"
    assert build_py.rpm_name("3.13.5", 3, "x86_64") == "python-3.13.5-3.x86_64.rpm"


def test_package_versions_sort_prereleases_first(build_py):
    assert build_py.package_version("3.13.5") == "3.13.5"
    assert build_py.package_version("3.14.0rc2") == "3.14.0~rc2"

    # dpkg's own ordering: build 2 upgrades build 1, rc sorts before the final release.
    def newer(a, b):
        return subprocess.run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0

    assert newer("3.13.5-2", "3.13.5-1")
    assert newer("3.14.0-1", "3.14.0~rc2-1")


def test_deb_control_from_registry(build_py, registry_json):
    info = build_py.platform_info(registry_json, "debian-12")
    control = build_py.deb_control("3.13.5", 2, "x86_64", info["runtime_dependencies"], 1234, "A <a@b.c>")
    fields = dict(line.split(": ", 1) for line in control.splitlines() if not line.startswith(" "))
    assert fields["Package"] == "python-3.13.5"
    assert fields["Version"] == "3.13.5-2"
    assert fields["Architecture"] == "amd64"
    assert fields["Installed-Size"] == "1234"
    assert fields["Depends"].split(", ") == list(load_registry().get("debian-12").runtime_dependencies)


def test_rpm_spec_from_registry(build_py, registry_json):
    info = build_py.platform_info(registry_json, "rhel-9")
    text = build_py.rpm_spec(
        "3.14.0rc2", 3, "aarch64", info["runtime_dependencies"], "/w/staging", "/opt/python/3.14.0rc2"
    )
    assert "Name: python-3.14.0rc2\n" in text
    assert "Version: 3.14.0~rc2\n" in text
    assert "Release: 3\n" in text
    assert "BuildArch: aarch64\n" in text
    requires = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("Requires:")]
    assert requires == list(load_registry().get("rhel-9").runtime_dependencies)
    assert "\n/opt/python/3.14.0rc2\n" in text


def test_expected_modules_follow_the_registry(build_py, registry_json):
    info = build_py.platform_info(registry_json, "debian-12")
    assert tuple(info["expected_modules"]) == load_registry().expected_modules("debian-12")
    patched = json.loads(json.dumps(registry_json))
    patched["platforms"]["debian-12"]["missing_modules"] = {"_tkinter": "no Tk here"}
    assert "_tkinter" not in build_py.platform_info(patched, "debian-12")["expected_modules"]


def test_build_dependencies_follow_the_registry(build_py, registry_json):
    for platform in load_registry().platforms:
        assert tuple(
            build_py.platform_info(registry_json, platform)["build_dependencies"]
        ) == load_registry().build_dependencies(platform)


def test_relocatable_shebang(build_py, tmp_path):
    script = b"#!/opt/python/3.13.5/bin/python3.13\nimport sys\nprint('hi', sys.argv[1:])\n"
    rewritten = build_py.rewrite_shebang(script, "python3.13")
    assert rewritten.startswith(b"#!/bin/sh\n")
    assert rewritten.endswith(b"import sys\nprint('hi', sys.argv[1:])\n")
    assert build_py.rewrite_shebang(b"#!/bin/sh\necho\n", "python3.13") is None
    # It really runs the interpreter next to it: a fake 'python3.13' that reports its arguments.
    bindir = tmp_path / "some dir" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "python3.13").write_text('#!/bin/sh\necho "ran $0 with $*"\n')
    (bindir / "python3.13").chmod(0o755)
    (bindir / "tool").write_bytes(rewritten)
    (bindir / "tool").chmod(0o755)
    out = subprocess.run([str(bindir / "tool"), "x"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"ran {bindir}/python3.13 with {bindir}/tool x"


def test_s3_url_split(build_py):
    assert build_py.split_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    assert build_py.split_s3_url("s3://bucket") == ("bucket", "")
    with pytest.raises(build_py.SpecError):
        build_py.split_s3_url("s3:///x")


def test_driver_runs_on_python36_syntax(build_py):
    """No syntax newer than 3.6 (the system python of rhel-8 and openSUSE 15)."""
    import ast

    tree = ast.parse(BUILD_PY.read_text(), feature_version=(3, 6))
    forbidden = (ast.NamedExpr,)
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


def test_failure_tail_keeps_earlier_errors(build_py, tmp_path):
    log = build_py.Log(str(tmp_path / "build.log"))
    log.start_phase("make")
    log.write("gcc -c a.c\nModules/a.c:12:3: error: unknown type name 'foo'\n" + "gcc -c b.c\n" * 60)
    log.write("make: *** [Makefile:3113: Modules/a.o] Error 1\n")
    tail = log.tail()
    assert tail[0] == "Modules/a.c:12:3: error: unknown type name 'foo'"
    assert tail[-1] == "make: *** [Makefile:3113: Modules/a.o] Error 1"
    log.close()
    assert "error: unknown type name" in (tmp_path / "build.log").read_text()
