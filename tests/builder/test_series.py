"""Unit tests of what depends on the CPython series (builder_image/driver/series.py), of the
relocatable build configuration (relocation.py) and of the child environment
(buildenv.py): every series 3.9 to 3.15. The 3.6 syntax check of every driver file is in
test_driver_logic.py."""

from __future__ import annotations

import fnmatch
import json
import os
import sys
from pathlib import Path

import pytest
from builder_helpers import SERIES, VERSIONS
from driver import buildenv, flags, make, relocation, selftest, series

BUILDER = Path(__file__).resolve().parents[2] / "builder_image"


# --- configure flags, built-ins, static interpreter, PGO (flags.py, make.py; BOLT: test_llvm_bolt.py)

CONFIGURE = {
    "3.9": [],
    "3.10": ["--disable-test-modules", "--without-static-libpython"],
    "3.11": ["--disable-test-modules", "--without-static-libpython"],
    "3.12": ["--disable-test-modules", "--without-static-libpython"],
    "3.13": ["--disable-test-modules", "--without-static-libpython"],
    "3.14": ["--disable-test-modules", "--without-static-libpython"],
    "3.15": [
        "--disable-test-modules",
        "--without-static-libpython",
        "--enable-static-libpython-for-interpreter",
    ],
}


@pytest.mark.parametrize("key", SERIES)
def test_configure_flags_per_series(key):
    version = VERSIONS[key]
    base = ["--prefix=/opt/python/" + version, "--enable-shared", "--with-ensurepip=install"]
    assert flags.configure_args(version, "none", "/opt/python/" + version) == base + CONFIGURE[key]
    optimized = flags.configure_args(version, "pgo+lto", "/opt/python/" + version)
    assert optimized == [*base, "--enable-optimizations", "--with-lto", *CONFIGURE[key]]


@pytest.mark.parametrize("key", SERIES)
def test_builtin_modules_per_series(key):
    """3.9/3.10 have no Modules/Setup.stdlib.in: nothing is built in (series.py says why)."""
    modules = series.builtin_modules(VERSIONS[key])
    if key in ("3.9", "3.10"):
        assert modules == ()
    else:
        assert modules == series.BUILTIN_MODULES and "_json" in modules
    stdlib_in = "@MODULE__JSON_TRUE@_json _json.c\n@MODULE_MATH_TRUE@math mathmodule.c\n"
    text = flags.setup_local(stdlib_in, modules)
    assert ("_json _json.c" in text) == bool(modules)


@pytest.mark.parametrize("key", SERIES)
def test_static_interpreter_per_series(key):
    """3.11+ Makefiles have LINK_PYTHON_OBJS (3.11.2 and 3.13 tarballs checked); 3.15 asks
    configure; 3.9 and 3.10 link the objects through BLDLIBRARY (3.9.2 checked)."""
    version = VERSIONS[key]
    old = key in ("3.9", "3.10")
    makefile = {"BLDLIBRARY": "-L. -lpython$(LDVERSION)"}
    if not old:
        makefile["LINK_PYTHON_OBJS"] = "$(BLDLIBRARY)"
    assert flags.static_interpreter(version, makefile)
    variables, _ = flags.make_variables(version, "none", dict(makefile, OPT="-g -O3"))
    assert ("LINK_PYTHON_OBJS" in variables) == (key not in ("3.9", "3.10", "3.15"))
    assert (variables.get("BLDLIBRARY") == "$(LIBRARY_OBJS)") == old


@pytest.mark.parametrize("key", SERIES)
def test_pgo_task_per_series(key):
    """CPython's own task, regrtest --pgo, the same option from 3.9 to 3.15."""
    expected = "-m test --pgo -j2 --timeout=$(TESTTIMEOUT)"
    assert series.profile_task(VERSIONS[key], 2) == expected
    assert make.default_profile_task(2, VERSIONS[key]) == expected


@pytest.mark.parametrize("key", SERIES)
def test_pgo_hot_share_per_series(key):
    """The final PGO+LTO build (compile and LTO link) counts the hottest 99.9% of the profiled
    time as hot for 3.11 and all of it for 3.13, instead of GCC's 99%; the instrumented build,
    `none` builds and the other series keep GCC's default."""
    version = VERSIONS[key]
    permille = {"3.11": 999, "3.13": 1000}.get(key)
    added = [f"--param=hot-bb-count-ws-permille={permille}"] if permille else []
    assert series.pgo_hot_permille(version) == permille
    makefile = {"CONFIGURE_CFLAGS_NODIST": "-fstack-protector -flto", "CONFIGURE_LDFLAGS_NODIST": "-flto"}
    instrumented, final = flags.make_variables(version, "pgo+lto", makefile)
    plain = flags.make_variables(version, "none", makefile)[1]
    for name in ("CONFIGURE_CFLAGS_NODIST", "CONFIGURE_LDFLAGS_NODIST"):
        hot_share = [flag for flag in final[name].split() if flag != "-fprofile-partial-training"]
        assert hot_share == makefile[name].split() + added
        assert "permille" not in instrumented[name] and "permille" not in plain[name]


@pytest.mark.parametrize("key", SERIES)
def test_pgo_partial_training_per_series(key):
    """3.11's and 3.13's final PGO+LTO builds (compile and LTO link) keep code the training
    never ran optimized for speed, after the hot share; the instrumented build, `none` builds
    and the other series do not."""
    version = VERSIONS[key]
    trained = key in ("3.11", "3.13")
    makefile = {"CONFIGURE_CFLAGS_NODIST": "-flto", "CONFIGURE_LDFLAGS_NODIST": "-flto"}
    instrumented, final = flags.make_variables(version, "pgo+lto", makefile)
    plain = flags.make_variables(version, "none", makefile)[1]
    assert series.pgo_partial_training(version) == trained
    for name in makefile:
        assert ("-fprofile-partial-training" in final[name].split()) == trained
        if trained:
            assert final[name].split()[-2:] == [
                f"--param=hot-bb-count-ws-permille={series.pgo_hot_permille(version)}",
                "-fprofile-partial-training",
            ]
        assert "partial" not in instrumented[name] and "partial" not in plain[name]


# --- the self-test: tests, where they come from, test-only modules, exclusions ---------------

REQUIRED = {"ssl", "sqlite", "ctypes", "zlib", "lzma", "bz2", "hashlib", "json", "uuid", "dbm",
            "readline", "decimal", "struct", "venv"}  # fmt: skip


@pytest.mark.parametrize("key", SERIES)
def test_selftest_tests_per_series(key):
    tests = series.selftest_tests(VERSIONS[key])
    sqlite = "test_sqlite" if key in ("3.9", "3.10") else "test_sqlite3"
    assert sqlite in tests and {"test_sqlite", "test_sqlite3"} - {sqlite} not in tests
    covered = {name[len("test_") :] for name in tests}
    assert {name.replace("sqlite3", "sqlite") for name in covered} >= REQUIRED
    assert ("test_dbm_sqlite3" in tests) == (key not in ("3.9", "3.10", "3.11", "3.12"))
    assert "test_re" in tests  # the regex engine, which BOLT rewrites
    assert len(tests) == len(set(tests))


@pytest.mark.parametrize("key", SERIES)
def test_test_layout_per_series(key):
    """The self-test copies the tests from the source in every series, with sqlite3's tests
    in Lib/sqlite3/test up to 3.10 and ctypes' in Lib/ctypes/test up to 3.11."""
    version = VERSIONS[key]
    packages = series.test_packages(version)
    assert packages[0] == "test"
    assert ("sqlite3/test" in packages) == (key in ("3.9", "3.10"))
    assert ("ctypes/test" in packages) == (key in ("3.9", "3.10", "3.11"))


@pytest.mark.parametrize("key", SERIES)
def test_test_only_c_modules_per_series(key):
    """Built by the self-test, never shipped: _ctypes_test wherever test modules are
    disabled, _testcapi where test_sqlite3 imports it at module level (3.11, 3.12)."""
    version = VERSIONS[key]
    expected = {"3.9": (), "3.10": ("_ctypes_test",), "3.11": ("_testcapi", "_ctypes_test"),
                "3.12": ("_testcapi", "_ctypes_test")}.get(key, ("_ctypes_test",))  # fmt: skip
    assert series.selftest_c_modules(version) == expected


def test_test_module_sources_from_setup_stdlib():
    text = (
        "@MODULE__TESTCAPI_TRUE@_testcapi _testcapimodule.c _testcapi/vectorcall.c\n"
        "*shared*\n@MODULE__TESTCAPI_TRUE@_testcapi _testcapimodule.c _testcapi/vectorcall.c\n"
        "@MODULE__CTYPES_TEST_TRUE@_ctypes_test _ctypes/_ctypes_test.c\n"
    )
    assert series.test_module_sources("3.12.8", text) == {
        "_testcapi": ["_testcapimodule.c", "_testcapi/vectorcall.c"],
        "_ctypes_test": ["_ctypes/_ctypes_test.c"],
    }
    assert series.test_module_sources("3.13.15", text) == {"_ctypes_test": ["_ctypes/_ctypes_test.c"]}
    assert series.test_module_sources("3.10.16") == {"_ctypes_test": ["_ctypes/_ctypes_test.c"]}
    assert series.test_module_sources("3.9.2", text) == {}
    with pytest.raises(ValueError, match="_ctypes_test"):
        series.test_module_sources("3.11.2", "@MODULE__TESTCAPI_TRUE@_testcapi _testcapimodule.c\n")


@pytest.mark.parametrize("key", SERIES)
def test_exclusions_per_series_and_platform(key):
    """3.9's test_ssl against OpenSSL 3 (measured with 3.9.2 on debian-12; the registry's
    "openssl" says which platforms have it); 3.13+'s one test_ctypes case that imports
    _testcapi unguarded (measured with 3.13.15)."""
    version = VERSIONS[key]
    registry = json.loads((BUILDER / "platforms.json").read_text())["platforms"]
    for platform in ("debian-11", "debian-12", "debian-13"):
        excluded = series.exclusions(version, registry[platform])
        if key == "3.9" and platform != "debian-11":
            assert excluded and all(p.startswith("test.test_ssl.") and "OpenSSL 3" in r for p, r in excluded)
        elif key == "3.11" and platform != "debian-11":
            assert [p for p, _ in excluded] == [
                "test.test_ssl.TestPostHandshakeAuth.test_pha_required_nocert"
            ]
        elif key in ("3.13", "3.14", "3.15"):
            assert [p for p, _ in excluded] == [
                "test.test_ctypes.test_structures.StructureTestCase.test_packed_c_limits"
            ]
        else:
            assert excluded == []


def test_regrtest_argv():
    argv = series.regrtest_argv(["test_json", "test_ssl"], "2", [("test.test_ssl.X.test_y", "why")])
    assert argv == ["-m", "test", "-j2", "--timeout=900", "-w", "--ignore", "test.test_ssl.X.test_y",
                    "test_json", "test_ssl"]  # fmt: skip


def test_regrtest_runs_split_test_ssls_threaded_tests_by_name_into_regrtests_of_their_own():
    excluded = [("test.test_ssl.X.test_y", "why")]
    *split, rest = series.regrtest_runs(["test_json", "test_ssl"], 2, excluded)
    head = ["-m", "test", "-j1", "--timeout=900", "-w", "--match"]
    cls = "test.test_ssl.ThreadedTests."
    ignored = ["--ignore", "test.test_ssl.X.test_y"]
    assert split == [
        [*head, cls + "test_[a-c]*", *ignored, "test_ssl"],
        [*head, cls + "test_[d-p]*", *ignored, "test_ssl"],
        [*head, cls + "test_[q-rt-z]*", *ignored, "test_ssl"],
        # The class's last regrtest takes what the shards leave (test_PROTOCOL_TLS, test_s*).
        [*head, cls + "*", *ignored, "--ignore", cls + "test_[a-c]*", "--ignore", cls + "test_[d-p]*",
         "--ignore", cls + "test_[q-rt-z]*", "test_ssl"],
    ]  # fmt: skip
    # The rest has every worker: the class's regrtests mostly wait.
    assert rest == ["-m", "test", "-j2", "--timeout=900", "-w", "--ignore", "test.test_ssl.X.test_y",
                    "--ignore", "test.test_ssl.ThreadedTests.*", "test_json", "test_ssl"]  # fmt: skip
    assert series.regrtest_runs(["test_json", "test_ssl"], 4)[-1][2] == "-j4"
    # One core, or no test_ssl: one regrtest, as before.
    assert series.regrtest_runs(["test_json", "test_ssl"], 1, excluded) == [
        series.regrtest_argv(["test_json", "test_ssl"], 1, excluded)
    ]
    assert series.regrtest_runs(["test_json"], 2) == [series.regrtest_argv(["test_json"], 2)]


THREADED_TEST_NAMES = [
    "test_PROTOCOL_TLS", "test_alpn_protocols", "test_crl_check", "test_dh_params", "test_psk",
    "test_read_write_after_close_raises_valuerror", "test_rude_shutdown", "test_session", "test_starttls",
    "test_tls1_3", "test_wrong_cert_tls13", "test_z", "test_", "test__private", "test_9",
]  # fmt: skip


@pytest.mark.parametrize("name", THREADED_TEST_NAMES)
def test_each_threaded_test_runs_in_exactly_one_of_the_split_regrtests(name):
    """regrtest's own matching (fnmatch patterns, case-sensitive; --ignore after --match)."""
    test_id = "test.test_ssl.ThreadedTests." + name
    *split, _ = series.regrtest_runs(["test_ssl"], 2)

    def selects(argv):
        accept = [argv[i + 1] for i, word in enumerate(argv) if word == "--match"]
        ignore = [argv[i + 1] for i, word in enumerate(argv) if word == "--ignore"]
        return any(fnmatch.fnmatchcase(test_id, p) for p in accept) and not any(
            fnmatch.fnmatchcase(test_id, p) for p in ignore
        )

    assert sum(map(selects, split)) == 1


def test_side_by_side_runs_report_a_failure_of_either_with_both_outputs_logged(tmp_path):

    class Log:
        text = ""

        def write(self, text):
            Log.text += text

    context = selftest.Context("/tree", "3.13.5", {}, "/src", str(tmp_path), Log(), {"PATH": "/usr/bin:/bin"})
    side = [sys.executable, "-c", "import sys, time; time.sleep(0.5); print('side ran'); sys.exit(3)"]
    main = [sys.executable, "-c", "print('main ran')"]
    with pytest.raises(selftest.SelftestError, match="exited with status 3") as failure:
        selftest.run_side_by_side(context, "tests", [side, main], context.env)
    assert failure.value.check == "tests"
    # The side's output (a line of its own, not the command's echo) follows the main one's.
    assert Log.text.index("\nmain ran\n") < Log.text.index("\nside ran\n")
    selftest.run_side_by_side(context, "tests", [main, main], context.env)
    with pytest.raises(selftest.SelftestError, match="exited with status 4"):
        selftest.run_side_by_side(
            context, "tests", [main, [sys.executable, "-c", "raise SystemExit(4)"]], context.env
        )


def test_malformed_version():
    for version in ("3", "3.13.5garbage", "3.13.5\n", "3.1\u0663.5"):
        with pytest.raises(ValueError, match="malformed"):
            series.minor_of(version)


# --- relocation --------------------------------------------------------------------------


def test_sysconfigdata_follows_its_file(tmp_path):
    text = (
        "# system configuration\nbuild_time_vars = {'INCLUDEPY': '/opt/python/3.9.2/include/python3.9',\n"
        " 'LIBS': '-L/opt/python/3.9.2/lib -L/opt/python/3.9.22/lib', 'prefix': '/opt/python/3.9.2',\n"
        " 'CONFIG_ARGS': \"'--prefix=/opt/python/3.9.2'\", 'SIZEOF_INT': 4}\n"
    )
    rewritten = relocation.relocatable_sysconfigdata(text, "/opt/python/3.9.2")
    assert relocation.relocatable_sysconfigdata(rewritten, "/opt/python/3.9.2") == rewritten
    for root, expected in ((tmp_path / "moved", str(tmp_path / "moved")), (None, "/opt/python/3.9.2")):
        path = (root or Path("/opt/python/3.9.2")) / "lib" / "python3.9" / "_sysconfigdata__linux_.py"
        namespace = {"__file__": str(path)}
        exec(compile(rewritten, str(path), "exec"), namespace)
        variables = namespace["build_time_vars"]
        assert variables["INCLUDEPY"] == expected + "/include/python3.9"
        assert variables["prefix"] == expected
        assert variables["LIBS"] == f"-L{expected}/lib -L/opt/python/3.9.22/lib"
        assert variables["CONFIG_ARGS"] == "'--prefix=/opt/python/3.9.2'"  # a record, kept
        assert variables["SIZEOF_INT"] == 4 and set(namespace) >= {"build_time_vars"}
    with pytest.raises(ValueError):
        relocation.relocatable_sysconfigdata("x = 1\n", "/opt/python/3.9.2")


def test_pc_file_relative_to_pcfiledir():
    text = (
        "prefix=/opt/python/3.13.15\nexec_prefix=${prefix}\nlibdir=/opt/python/3.13.15/lib\n"
        "includedir=${prefix}/include\n\nName: Python\nLibs: -L${libdir} -lpython3.13\n"
        "Cflags: -I${includedir}/python3.13\n"
    )
    rewritten = relocation.relocatable_pc(text, "/opt/python/3.13.15/")
    assert "prefix=${pcfiledir}/../..\n" in rewritten
    assert "libdir=${prefix}/lib\n" in rewritten and "/opt/python" not in rewritten
    with pytest.raises(ValueError):
        relocation.relocatable_pc("Name: x\n", "/opt/python/3.13.15")


# --- the child environment ------------------------------------------------------------------

HOSTILE = {"OPT": "pgo+lto", "CFLAGS": "-O0", "CPPFLAGS": "-DX", "LDFLAGS": "-lnothing", "CC": "clang",
           "LIBS": "-lm", "PYTHONPATH": "/nowhere", "PIP_INDEX_URL": "http://x", "AWS_SECRET_ACCESS_KEY": "s",
           "LD_LIBRARY_PATH": "/x", "PATH": "/evil/bin:/usr/bin", "CCACHE_DIR": "/cache",
           "CCACHE_PREFIX": "/evil/wrap", "CCACHE_PREFIX_CPP": "/evil/wrap", "CCACHE_COMPILER": "/evil/cc",
           "CCACHE_SLOPPINESS": "time_macros", "CCACHE_CONFIGPATH": "/evil/ccache.conf",
           "CCACHE_COMPILERCHECK": "/evil/check", "CONFIG_SHELL": "/bin/bash"}  # fmt: skip


def test_child_env_is_an_allow_list():
    env = buildenv.child_env(dict(HOSTILE, TMPDIR="/tmp/t", BUILDFARM_JOBS="2", HOME="/root"), "/w/home")
    assert env == {"PATH": buildenv.STANDARD_PATH, "HOME": "/w/home", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8",
                   "TMPDIR": "/tmp/t", "BUILDFARM_JOBS": "2"}  # fmt: skip
    assert buildenv.child_env({}, "/h", c_utf8=False)["LC_ALL"] == "C"


def test_ccache_env_only_adds_ccache():
    base = buildenv.child_env(HOSTILE, "/w/home")
    env = buildenv.ccache_env(base, HOSTILE, "/w/ccache-bin", "/w")
    assert env["PATH"] == "/w/ccache-bin:" + buildenv.STANDARD_PATH
    assert env["CCACHE_DIR"] == "/cache" and env["CCACHE_BASEDIR"] == "/w"
    assert {k for k in env if k not in base} == {
        "CCACHE_DIR",
        "CCACHE_BASEDIR",
        "CCACHE_NOHASHDIR",
        "CCACHE_MAXSIZE",
        "CCACHE_CONFIGPATH",
    }
    # Of the caller's CCACHE_* only the cache directory; no ccache.conf is read either.
    assert env["CCACHE_CONFIGPATH"] == os.devnull and env["CCACHE_MAXSIZE"] == "5G"
    assert "/evil" not in json.dumps(env)
    assert (
        buildenv.ccache_env(base, {**HOSTILE, "CCACHE_MAXSIZE": "20G"}, "/s", "/w")["CCACHE_MAXSIZE"] == "20G"
    )
    default = buildenv.ccache_env(base, {}, "/s", "/w")
    assert default["CCACHE_DIR"] == os.path.join(os.path.expanduser("~"), ".cache", "ccache")


# An excerpt of 3.9.2's configured Makefile: LIBSUBDIRS over continued lines, mixing runtime
# packages, test directories and a variable reference.
MAKEFILE_39_LIBSUBDIRS = """\
LIBRARY=\tlibpython$(VERSION)$(ABIFLAGS).a
LIBSUBDIRS=	tkinter tkinter/test tkinter/test/test_tkinter \\
		tkinter/test/test_ttk site-packages test \\
		test/audiodata test/libregrtest test/support \\
		sqlite3 sqlite3/test \\
		lib2to3 lib2to3/fixes lib2to3/pgen2 lib2to3/tests \\
		lib2to3/tests/data \\
		ctypes ctypes/test ctypes/macholib \\
		idlelib idlelib/Icons idlelib/idle_test \\
		distutils distutils/command distutils/tests $(XMLLIBSUBDIRS) \\
		unittest unittest/test unittest/test/testmock \\
		venv venv/scripts venv/scripts/common venv/scripts/posix
MACHDEPS=	$(PLATDIR)
"""


@pytest.mark.parametrize("key", SERIES)
def test_install_leaves_the_test_suite_out_in_every_series(key):
    """3.9 has no --disable-test-modules --without-static-libpython: make install gets
    LIBSUBDIRS without the test directories (what 3.10+ list apart as TESTSUBDIRS) and no
    LIBRARY to install; 3.10+ need nothing."""
    makefile = flags.makefile_variables(MAKEFILE_39_LIBSUBDIRS)
    argv = flags.install_argv(VERSIONS[key], "none", makefile, "/staging")
    assignments = dict(arg.split("=", 1) for arg in argv[2:])
    if key != "3.9":
        assert "LIBSUBDIRS" not in assignments and "LIBRARY" not in assignments
        return
    assert assignments["LIBRARY"] == ""
    assert assignments["LIBSUBDIRS"].split() == [
        "tkinter", "site-packages", "sqlite3", "lib2to3", "lib2to3/fixes", "lib2to3/pgen2", "ctypes",
        "ctypes/macholib", "idlelib", "idlelib/Icons", "distutils", "distutils/command",
        "$(XMLLIBSUBDIRS)", "unittest", "venv", "venv/scripts", "venv/scripts/common", "venv/scripts/posix",
    ]  # fmt: skip
    assert makefile["MACHDEPS"] == "$(PLATDIR)"  # the next assignment is still read on its own


def test_test_directories_are_what_311_lists_as_testsubdirs():
    """Every TESTSUBDIRS entry of 3.11.2 is a test directory; none of its runtime packages is."""
    for entry in ("test", "test/support", "ctypes/test", "idlelib/idle_test", "lib2to3/tests/data",
                  "tkinter/test/test_ttk", "unittest/test/testmock", "test/test_sqlite3"):  # fmt: skip
        assert series.is_test_dir(entry), entry
    for entry in ("tkinter", "ctypes/macholib", "unittest", "sqlite3", "email/mime", "site-packages",
                  "importlib/metadata", "testing", "lib2to3/fixes"):  # fmt: skip
        assert not series.is_test_dir(entry), entry
