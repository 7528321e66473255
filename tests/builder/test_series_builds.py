"""Real `none` builds of one release per series that this machine can build (3.9.2, 3.11.2,
3.13.15 for debian-12 on the host), from the shared upstream tarballs; each passes its
self-test (the driver runs it) and its moved tarball runs, imports the registry's modules,
builds an sdist with a C extension with pip, and embeds Python with pkg-config. Also: the
self-test fails on a broken tree, and a hostile caller environment changes nothing that
configure records.

Each series has its own session-scoped build fixture (works alone): `buildfarm build
VERSION --platform debian-12 --runner host --optimization none` against the shared sources
served over loopback HTTP (the `source_mirror` fixture), so the catalog's file (.tar.xz or
.tgz), the download and the sha256 check are the real ones. setuptools for the sdist comes
from a wheel cache (<test cache>/wheels, filled once from PyPI with pip download).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from builder_helpers import REPO, load_build_module, run_checked

pytestmark = [pytest.mark.build, pytest.mark.xdist_group("series")]

SOURCES = Path(os.environ.get("BUILDFARM_CPYTHON_SRC", REPO.parent / "shared" / "cpython-src"))
TEST_CACHE = Path(os.environ.get("BUILDFARM_TEST_CACHE") or REPO / ".cache")
WHEELS = TEST_CACHE / "wheels"
BUILDFARM = str(Path(sys.executable).parent / "buildfarm")
FILES = {"3.9.2": "Python-3.9.2.tar.xz", "3.11.2": "Python-3.11.2.tgz", "3.13.15": "Python-3.13.15.tar.xz"}
# The CI may shorten the self-test's CPython tests (BUILDFARM_SELFTEST_TESTS); the full
# per-series list was run on these builds by hand (see series.py and the issue report).
CI_TESTS = os.environ.get("BUILDFARM_SERIES_SELFTEST_TESTS")


def sha256_of(name: str) -> str:
    for line in (SOURCES / "SHA256SUMS").read_text().splitlines():
        digest, _, file = line.partition("  ")
        if file.strip() == name:
            return digest
    raise LookupError(f"{name} is not in {SOURCES}/SHA256SUMS")


def driver_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDFARM_")}
    env.update(BUILDFARM_CCACHE="1", BUILDFARM_CHECK_BUILD_DEPS="0")
    env["CCACHE_DIR"] = str(TEST_CACHE / "ccache")
    if CI_TESTS is not None:
        env["BUILDFARM_SELFTEST_TESTS"] = CI_TESTS
    env.update(extra or {})
    return env


def spec_for(version: str, store: Path, build: int = 1) -> str:
    file = FILES[version]
    return json.dumps(
        {
            "version": version,
            "platform": "debian-12",
            "arch": "x86_64",
            "build": build,
            "source": {"url": (SOURCES / file).as_uri(), "sha256": sha256_of(file)},
            "prefix": f"/opt/python/{version}",
            "optimization": "none",
            "store": str(store),
            "artifact_dir": f"builds/{version}/debian-12/x86_64/{build}",
        }
    )


def run_driver(spec: str, env: dict[str, str]) -> str:
    env = dict(env, BUILD_SPEC=spec)
    result = subprocess.run(
        [sys.executable, str(REPO / "builder_image" / "build.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-6000:]
    return result.stdout


class SeriesBuild:
    def __init__(self, version: str, root: Path, mirror: str, keep_work: bool = False) -> None:
        self.version = version
        self.minor = version.split(".")[1]
        store = root / "store"
        argv = [BUILDFARM, "build", version, "--platform", "debian-12", "--runner", "host"]
        argv += ["--optimization", "none", "--source-mirror", mirror, "--store", str(store)]
        # keep_work: the work tree stays (configured and built), where the hostile-environment
        # test reads what configure recorded in a clean environment.
        self.work = root / "work"
        kept = {"BUILDFARM_KEEP_WORK": "1", "BUILDFARM_WORK_DIR": str(self.work)} if keep_work else {}
        env = driver_env(kept)
        result = subprocess.run(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800
        )
        assert result.returncode == 0, result.stdout[-6000:]
        assert "with the host runner" in result.stdout
        self.output = result.stdout
        self.dir = store / "builds" / version / "debian-12" / "x86_64" / "1"
        self.manifest = json.loads((self.dir / "manifest.json").read_text())
        self.moved = root / "unpacked somewhere" / "python"
        with tarfile.open(self.dir / f"python-{version}-debian-12-x86_64.tar.gz") as archive:
            archive.extractall(self.moved.parent, filter="tar")
        self.python = self.moved / "bin" / f"python3.{self.minor}"


def _build(version: str, tmp_path_factory, mirror: str, keep_work: bool = False) -> SeriesBuild:
    if platform.machine() != "x86_64" or not (SOURCES / FILES[version]).is_file():
        pytest.skip(f"needs x86_64 and {SOURCES / FILES[version]}")
    if "VERSION_CODENAME=bookworm" not in Path("/etc/os-release").read_text():
        pytest.skip("the host runner builds debian-12 on debian-12 only")
    return SeriesBuild(version, tmp_path_factory.mktemp("series-" + version), mirror, keep_work)


@pytest.fixture(scope="session")
def build_39(tmp_path_factory, source_mirror) -> SeriesBuild:
    return _build("3.9.2", tmp_path_factory, source_mirror)


@pytest.fixture(scope="session")
def build_311(tmp_path_factory, source_mirror) -> SeriesBuild:
    return _build("3.11.2", tmp_path_factory, source_mirror)


@pytest.fixture(scope="session")
def build_313(tmp_path_factory, source_mirror) -> SeriesBuild:
    return _build("3.13.15", tmp_path_factory, source_mirror, keep_work=True)


SERIES_FIXTURES = ["build_39", "build_311", "build_313"]


def setuptools_wheels() -> Path:
    if not list(WHEELS.glob("setuptools-*.whl")):
        WHEELS.mkdir(parents=True, exist_ok=True)
        run_checked(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--only-binary=:all:",
                "--dest",
                str(WHEELS),
                "setuptools>=70,<81",
            ]
        )
    return WHEELS


EXT_C = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static PyObject *add(PyObject *self, PyObject *args) {
    long a, b;
    if (!PyArg_ParseTuple(args, "ll", &a, &b)) return NULL;
    return PyLong_FromLong(a + b);
}
static PyMethodDef methods[] = {{"add", add, METH_VARARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "bfext", NULL, -1, methods};
PyMODINIT_FUNC PyInit_bfext(void) { return PyModule_Create(&module); }
"""


def make_sdist(directory: Path) -> Path:
    """bfext-1.0.tar.gz: setup.py + a C extension, built by pip through setuptools."""
    project = directory / "bfext-1.0"
    project.mkdir(parents=True)
    (project / "bfext.c").write_text(EXT_C)
    (project / "setup.py").write_text(
        "from setuptools import Extension, setup\n"
        "setup(name='bfext', version='1.0', ext_modules=[Extension('bfext', ['bfext.c'])])\n"
    )
    (project / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools"]\n')
    (project / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: bfext\nVersion: 1.0\n")
    sdist = directory / "bfext-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        archive.add(project, arcname="bfext-1.0")
    return sdist


def clean_env(**extra: str) -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "LC_ALL": "C.UTF-8"}
    env.update(extra)
    return env


@pytest.mark.parametrize("fixture", SERIES_FIXTURES)
def test_series_builds_and_passes_its_selftest(fixture, request):
    built: SeriesBuild = request.getfixturevalue(fixture)
    manifest = built.manifest
    assert manifest["python"]["version"] == built.version
    assert set(manifest["selftest"]) == {"hardening", "modules", "tests", "pip", "relocation", "embedding"}
    assert manifest["hardening"] and all(not row["failures"] for row in manifest["hardening"].values())
    # make's compile commands, each checked for the flags (3.9.2 on debian-11: 256, 3.13.15: 281).
    hardened = manifest["selftest"]["hardening"]
    compiles = re.search(r"; ([0-9]+) compiles with a stack protector, FORTIFY, -O\)$", hardened)
    assert compiles and int(compiles.group(1)) >= 200, hardened
    assert manifest["selftest"]["tests"].startswith("passed")
    assert "pkg-config" in manifest["selftest"]["embedding"]
    assert not manifest["modules"]["missing"]
    # No series ships the test suite or a static libpython (3.9: make install's variables); only 3.9,
    # which has no --disable-test-modules, still ships its test C modules.
    lib = built.moved / "lib" / f"python3.{built.minor}"
    test_dirs = ("test", "sqlite3/test", "ctypes/test", "unittest/test")
    assert not [path for path in test_dirs if (lib / path).exists()]
    assert (lib / "sqlite3" / "__init__.py").is_file() and (lib / "unittest" / "__init__.py").is_file()
    assert bool(list(lib.glob("lib-dynload/_testcapi*"))) == (built.minor == "9")
    assert not list(built.moved.glob("lib/**/libpython*.a"))  # 3.10+: --without-static-libpython
    # No shipped file names make install's staging root (ensurepip's pip compiled under --root).
    assert "no file names the staging directory" in manifest["selftest"]["relocation"]
    staged = b"/staging/opt/python/"
    assert not [
        p for p in built.moved.rglob("*") if p.is_file() and not p.is_symlink() and staged in p.read_bytes()
    ]
    assert (built.moved / "bin" / "pip3").is_file()
    assert os.readlink(built.moved / "bin" / "python") == "python3"
    assert os.readlink(built.moved / "bin" / "pip") == "pip3"


@pytest.mark.parametrize("fixture", SERIES_FIXTURES)
def test_moved_tarball_runs_and_imports_the_registry_modules(fixture, request, build_py_module):
    built: SeriesBuild = request.getfixturevalue(fixture)
    registry = build_py_module.load_platforms()
    expected = build_py_module.platform_info(registry, "debian-12", "x86_64")["expected_modules"]
    script = "import importlib, sys, sysconfig\nfor m in sys.argv[1:]: importlib.import_module(m)\n"
    script += "print(sys.prefix)\nfor name in ('INCLUDEPY', 'LIBDIR'): print(sysconfig.get_config_var(name))"
    out = run_checked([str(built.python), "-c", script, *expected], env=clean_env()).split("\n")
    assert out[0] == str(built.moved)
    assert out[1] == f"{built.moved}/include/python3.{built.minor}" and out[2] == f"{built.moved}/lib"


@pytest.mark.parametrize("fixture", SERIES_FIXTURES)
def test_pip_builds_an_sdist_with_a_c_extension(fixture, request, tmp_path):
    built: SeriesBuild = request.getfixturevalue(fixture)
    wheels = setuptools_wheels()
    venv = tmp_path / "venv"
    env = clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")
    run_checked([str(built.python), "-m", "venv", str(venv)], env=env)
    sdist = make_sdist(tmp_path / "src")
    run_checked(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--no-index",
            "--find-links",
            str(wheels),
            str(sdist),
        ],
        env=env,
    )
    out = run_checked([str(venv / "bin" / "python"), "-c", "import bfext; print(bfext.add(40, 2))"], env=env)
    assert out.strip().splitlines()[-1] == "42"


EMBED_C = r"""
#include <Python.h>
int main(void) {
    Py_Initialize();
    int failed = PyRun_SimpleString("import sys, sqlite3; print('embedded', sys.version.split()[0])");
    return Py_FinalizeEx() < 0 || failed;
}
"""


@pytest.mark.parametrize("fixture", SERIES_FIXTURES)
def test_pkg_config_from_the_moved_tree_embeds_python(fixture, request, tmp_path):
    built: SeriesBuild = request.getfixturevalue(fixture)
    pc = str(built.moved / "lib" / "pkgconfig")
    env = clean_env(PKG_CONFIG_PATH=pc, PKG_CONFIG_LIBDIR=pc)
    flags = run_checked(["pkg-config", "--cflags", "--libs", f"python-3.{built.minor}-embed"], env=env)
    # pkg-config escapes the space in "unpacked somewhere" for a shell; split as one would.
    flags = shlex.split(flags)
    paths = [f for f in flags if f.startswith(("-I", "-L"))]
    assert paths and all(f[2:].startswith(str(built.moved)) for f in paths), flags
    (tmp_path / "embed.c").write_text(EMBED_C)
    program = tmp_path / "embed"
    run_checked(["gcc", str(tmp_path / "embed.c"), *flags, "-o", str(program)], env=env)
    out = run_checked(
        [str(program)], env=clean_env(LD_LIBRARY_PATH=str(built.moved / "lib"), PYTHONHOME=str(built.moved))
    )
    assert out.strip() == f"embedded {built.version}"


@pytest.mark.parametrize("fixture", SERIES_FIXTURES)
def test_python_config_of_the_moved_tree(fixture, request, tmp_path):
    """python3.X-config computes its prefix from its own path (upstream's shell script, its
    paths quoted by the driver): from a copy in a plain path and in one with a space, whose
    -I/-L paths it escapes as pkg-config does."""
    built: SeriesBuild = request.getfixturevalue(fixture)
    moved = tmp_path / "elsewhere"
    shutil.copytree(built.moved, moved, symlinks=True)
    config = str(moved / "bin" / "python3-config")
    includes = run_checked(["sh", config, "--includes"]).split()
    assert includes[0] == f"-I{moved}/include/python3.{built.minor}"
    ldflags = run_checked(["sh", config, "--ldflags", "--embed"]).split()
    assert f"-L{moved}/lib" in ldflags and f"-lpython3.{built.minor}" in ldflags
    spaced = tmp_path / "sp ace" / "python"
    shutil.copytree(built.moved, spaced, symlinks=True)
    config = str(spaced / "bin" / "python3-config")
    assert run_checked(["sh", config, "--prefix"]).strip() == str(spaced)
    include = f"-I{spaced}/include/python3.{built.minor}".replace(" ", "\\ ")
    assert run_checked(["sh", config, "--includes"]).strip() == f"{include} {include}"
    ldflags = shlex.split(run_checked(["sh", config, "--ldflags", "--embed"]))
    assert f"-L{spaced}/lib" in ldflags and f"-lpython3.{built.minor}" in ldflags
    # config-3.X-*/python-config.py runs by its own #! line (the trampoline to bin/python3.X).
    (script,) = moved.glob(f"lib/python3.{built.minor}/config-3.{built.minor}-*/python-config.py")
    assert run_checked([str(script), "--includes"]).split()[0] == f"-I{moved}/include/python3.{built.minor}"


@pytest.fixture(scope="session")
def build_py_module():
    return load_build_module()


def test_selftest_fails_naming_a_removed_module(build_313, build_py_module, tmp_path):
    """The self-test, called on an installed tree without _sqlite3, fails naming it."""
    from driver import selftest

    broken = tmp_path / "broken"
    shutil.copytree(build_313.moved, broken, symlinks=True)
    for path in (broken / "lib" / "python3.13" / "lib-dynload").glob("_sqlite3*.so"):
        path.unlink()
    with tarfile.open(SOURCES / FILES["3.13.15"]) as archive:
        archive.extractall(tmp_path, filter="data")
    platform_info = build_py_module.platform_info(build_py_module.load_platforms(), "debian-12", "x86_64")

    class Log:
        text = ""

        def write(self, text):
            Log.text += text

    context = selftest.Context(
        str(broken),
        "3.13.15",
        platform_info,
        str(tmp_path / "Python-3.13.15"),
        str(tmp_path / "work"),
        Log(),
        clean_env(),
        tests=["test_sqlite3"],
    )
    with pytest.raises(selftest.SelftestError) as failure:
        selftest.selftest(context)
    assert failure.value.check == "modules" and "_sqlite3" in failure.value.message


CONFIGURE_VARIABLES = (
    "CONFIG_ARGS",
    "OPT",
    "CC",
    "CFLAGS",
    "CPPFLAGS",
    "LDFLAGS",
    "LIBS",
    "CONFIGURE_CFLAGS",
    "CONFIGURE_LDFLAGS",
    "CONFIGURE_CPPFLAGS",
    "PY_CFLAGS",
    "LDSHARED",
)
HOSTILE = {
    "OPT": "pgo+lto",
    "CFLAGS": "-O0 -DHOSTILE",
    "CPPFLAGS": "-DHOSTILE_CPP",
    "LDFLAGS": "-L/hostile",
    "CC": "clang",
    "LIBS": "-lhostile",
    "PYTHONPATH": "/hostile",
    "CONFIG_SITE": "/hostile/config.site",
    "CONFIG_SHELL": "/bin/bash",
    "PATH": "/hostile/bin:" + os.environ.get("PATH", "/usr/bin:/bin"),
}


def configured(tmp_path: Path, name: str, extra: dict[str, str]) -> tuple[dict[str, str], str]:
    """Run the driver up to configure (BUILDFARM_STOP_AFTER); the Makefile's recorded
    variables and config.log's command line."""
    work = tmp_path / name
    env = driver_env(
        {
            "BUILDFARM_STOP_AFTER": "configure",
            "BUILDFARM_KEEP_WORK": "1",
            "BUILDFARM_WORK_DIR": str(work),
            **extra,
        }
    )
    run_driver(spec_for("3.13.15", tmp_path / ("store-" + name)), env)
    return configure_records(work)


def configure_records(work: Path) -> tuple[dict[str, str], str]:
    """The Makefile's recorded variables, config.log's shell (as "SHELL") and its command
    line, in a driver's work directory (its build's path in them replaced by WORK)."""
    (src,) = work.glob("build-*/Python-3.13.15")
    variables = build_py_module_variables((src / "Makefile").read_text())
    log = (src / "config.log").read_text().splitlines()
    command = next(line for line in log if line.startswith("  $ "))
    recorded = {
        name: variables.get(name, "").replace(str(src.parent), "WORK") for name in CONFIGURE_VARIABLES
    }
    recorded["SHELL"] = next(line for line in log if line.startswith("SHELL="))
    return recorded, command.replace(str(src.parent), "WORK")


def build_py_module_variables(text: str) -> dict[str, str]:
    return load_build_module().makefile_variables(text)


def test_hostile_environment_changes_nothing_configure_records(tmp_path, build_313):
    clean, clean_command = configure_records(build_313.work)  # the series build, clean environment
    hostile, hostile_command = configured(tmp_path, "hostile", HOSTILE)
    assert hostile_command == clean_command
    assert hostile == clean
    assert clean["SHELL"] == "SHELL='/bin/dash'"  # the registry's configure_shell, not the caller's
    assert "pgo+lto" not in json.dumps(hostile) and "HOSTILE" not in json.dumps(hostile).upper()
