"""What depends on the CPython series, as data and pure functions keyed on the version.

Standard library only, Python 3.6+ (imported by the driver, which runs on the oldest
system python of a builder). Checked against the tarballs of 3.9.2, 3.11.2, 3.13.5 and
3.13.15 and, for the other series, against CPython's repository history:
- --disable-test-modules (don't build or install test modules) is new in 3.10
  (bpo-27640, GH-23886); 3.9 always builds the test C modules and installs Lib/test.
- Modules/Setup.stdlib.in (configure's module table) is new in 3.11; setup.py still builds
  the shared extension modules in 3.9-3.11 (removed in 3.12).
- sqlite3's tests: Lib/sqlite3/test/, run by Lib/test/test_sqlite.py, up to 3.10; a
  package Lib/test/test_sqlite3/ from 3.11 (bpo-10572, GH-29304).
- ctypes' tests: Lib/ctypes/test/, run by Lib/test/test_ctypes.py, up to 3.11; a
  package Lib/test/test_ctypes/ from 3.12 (gh-93839, GH-94041).
- test_sqlite3's test_dbapi imports _testcapi at module level in 3.11 and in 3.12 up
  to the fix of gh-116303 (March 2024; 3.13 imports it lazily).
- build-details.json (PEP 739) is installed from 3.14 (gh-107956, GH-130069).
"""

import re

from .spec import parse_version

# Extension modules built into libpython (and so into the interpreter) from 3.11 on: called
# often, and needing no third-party library. Built in, they are compiled as core code (the
# thread state without a function call, LTO across the call) instead of being loaded .so
# files that reach the interpreter through the PLT (flags.setup_local()). Debian builds in
# these and more (trixie's python3.13 also zlib, binascii, pyexpat, _elementtree, the hashlib
# modules, syslog); pyexpat and _elementtree measured about 0.3% of the speed suite's mean
# (docs/builder.md, "What the measurements led to", item 8).
BUILTIN_MODULES = (
    "_bisect",
    "_csv",
    "_datetime",
    "_heapq",
    "_json",
    "_opcode",
    "_pickle",
    "_posixsubprocess",
    "_random",
    "_socket",
    "_statistics",
    "_struct",
    "array",
    "cmath",
    "fcntl",
    "grp",
    "math",
    "select",
    "unicodedata",
)
# Why 3.9 and 3.10 build nothing in: they have no Modules/Setup.stdlib.in, so the lines
# would be hand-written data per series; Modules/Setup's commented-out lines are not
# enough (math and cmath both list _math.c, a duplicate symbol when both are static;
# _random, math and cmath include internal headers without -I Include/internal).
# Measured on 3.9.2 with such lines (2026-12-01, debian-11, pgo+lto, the interpreter also
# linked -no-pie as Debian's python3.9 is): 0.980x of the same series' build without either
# (benchmarks/interpreter_speed.py --against, 3 rounds; json_roundtrip no faster), so 3.9
# keeps them as shared modules.
BUILTINS_FROM = 11

# The self-test's subset of CPython's own tests: the C libraries the build links
# against and the stdlib parts users rely on. Names that differ per series are
# resolved by selftest_tests(). Longest first: regrtest's workers take the tests in this
# order, so a long one last ends the run alone (3.11.2 on bookworm: test_venv, 12 s, began
# when the others were done).
SELFTEST_TESTS = (
    "test_ssl",
    "test_venv",
    "test_decimal",
    "test_lzma",
    "test_bz2",
    "{sqlite}",
    "test_ctypes",
    "test_zlib",
    "test_hashlib",
    "test_json",
    "test_uuid",
    "test_dbm",
    "test_dbm_gnu",
    "test_dbm_ndbm",
    "test_readline",
    "test_struct",
    "test_re",  # the regex engine, which llvm-bolt rewrites (llvm_bolt.position_dependent_flags)
)

_SSL39 = (
    "3.9.2's test_ssl predates OpenSSL 3 (measured on debian-12, OpenSSL 3.0): {}; "
    "later 3.9 releases adapted the tests (bpo-43794 and follow-ups)"
)
_PACKED = (
    "imports _testcapi unguarded, which --disable-test-modules leaves out; 3.13+ build it "
    "from ~35 sources with internal headers, so the self-test does not build it (the rest "
    "of test_ctypes runs with _ctypes_test)"
)
# Test cases excluded from the self-test: (series, platforms, regrtest --ignore pattern
# (a full test id), reason). platforms is "*" or {registry field: value} that the
# platform's entry in platforms.json must match (e.g. its "openssl" series). Only
# failures outside our control belong here, each with why. Selected by exclusions().
_SSL39_CASES = (
    ("BasicSocketTests.test_openssl_version", "it parses OpenSSL 3's version number the 1.x way"),
    ("ContextTests.test_load_cert_chain", "OpenSSL 3 reports the password callback's error differently"),
    ("ContextTests.test_load_verify_cadata", "OpenSSL 3 ends PEM data with another error code"),
    ("SimpleBackgroundTests.test_connect_cadata", "OpenSSL 3 ends PEM data with another error code"),
    ("ThreadedTests.test_PROTOCOL_TLS", "TLS 1.0/1.1 are disabled at OpenSSL 3's security level"),
    ("ThreadedTests.test_echo", "TLS 1.0/1.1 are disabled at OpenSSL 3's security level"),
    ("ThreadedTests.test_min_max_version_tlsv1_1", "TLS 1.1 is disabled at OpenSSL 3's security level"),
    ("ThreadedTests.test_min_max_version_mismatch", "OpenSSL 3.5 (debian-13) refuses a TLS 1.0 client early"),
    ("ThreadedTests.test_protocol_tlsv1", "TLS 1.0 is disabled at OpenSSL 3's security level"),
    ("ThreadedTests.test_protocol_tlsv1_1", "TLS 1.1 is disabled at OpenSSL 3's security level"),
)
_PHA311 = (
    "3.11.2's test expects 'certificate required' or 'EOF occurred'; OpenSSL 3.5 (measured on "
    "debian-13) ends the refused post-handshake authentication with '[SYS] unknown error'"
)
EXCLUSIONS = (
    *(("3.9", {"openssl": "3"}, "test.test_ssl." + case, _SSL39.format(why)) for case, why in _SSL39_CASES),
    ("3.11", {"openssl": "3"}, "test.test_ssl.TestPostHandshakeAuth.test_pha_required_nocert", _PHA311),
    *(
        (key, "*", "test.test_ctypes.test_structures.StructureTestCase.test_packed_c_limits", _PACKED)
        for key in ("3.13", "3.14", "3.15")
    ),
)


def minor_of(version):
    """'3.13.5' -> 13, '3.15.0a2' -> 15 (the series' minor number); SpecError (a ValueError)
    for anything that is not a whole version."""
    return parse_version(version)[1]


def builtin_modules(version):
    """Extension modules built into libpython for this series (see BUILTINS_FROM)."""
    return BUILTIN_MODULES if minor_of(version) >= BUILTINS_FROM else ()


# setup.py builds the shared extension modules up to 3.11 (3.12 builds them with make,
# gh-93939). It compiles and links them with the configured Makefile's flags as sysconfig
# parses them from the file, so the make variables the driver passes on make's command line
# do not reach them; CFLAGS_NODIST and LDFLAGS_NODIST do, being undefined in the Makefile:
# sysconfig takes them from the environment, where make exports its command line.
SETUP_PY_UNTIL = 11


def modules_by_setup_py(version):
    """setup.py builds the shared extension modules (3.9-3.11; see SETUP_PY_UNTIL)."""
    return minor_of(version) <= SETUP_PY_UNTIL


# PEP 739's lib/python3.X/build-details.json, installed from 3.14. Its generator
# (Tools/build/generate-build-details.py, 3.14 and main) writes paths relative to the file on
# POSIX only with --relative-paths, which the Makefile's rule does not pass: 3.14's rule runs it
# with the output path alone (python-build-standalone patches that rule in for every 3.14+, its
# tree of 2026-08 included). So they name the configured prefix, and install.py rewrites them
# (relocation.relocatable_build_details(); a file already relative is left as it is).
BUILD_DETAILS_FROM = 14


def ships_build_details(version):
    """make install writes lib/python3.X/build-details.json (3.14+; see BUILD_DETAILS_FROM)."""
    return minor_of(version) >= BUILD_DETAILS_FROM


def has_test_modules_option(version):
    """configure knows --disable-test-modules (3.10+)."""
    return minor_of(version) >= 10


# Path components of the LIBSUBDIRS entries that hold tests: exactly the directories 3.10+
# list apart as TESTSUBDIRS (checked against 3.11.2's Makefile.pre.in), plus 3.9's own
# sqlite3/test and distutils/tests.
_TEST_DIR_PARTS = frozenset(("test", "tests", "idle_test"))


def is_test_dir(entry):
    """A LIBSUBDIRS entry (a directory under Lib/) that holds tests or their data."""
    return any(part in _TEST_DIR_PARTS for part in entry.split("/"))


def install_variables(version, makefile):
    """make install variables that leave out what 3.10+ configure leaves out with
    --disable-test-modules --without-static-libpython, for 3.9, which has neither:
    - LIBSUBDIRS without its test directories. The tree then has no Lib/test in any series
      (3.9.2's tarball: 52.7 MB with it); the self-test copies the tests it runs from the
      source (test_packages());
    - an empty LIBRARY: libainstall skips libpython3.9.a when `test -d $(LIBRARY)` holds,
      which the shell's one-argument test does (the fat LTO archive: 24 MB in pgo+lto).
    makefile: the configured Makefile's variables; {} for 3.10+."""
    if has_test_modules_option(version) or "LIBSUBDIRS" not in makefile:
        return {}
    kept = [entry for entry in makefile["LIBSUBDIRS"].split() if not is_test_dir(entry)]
    return {"LIBSUBDIRS": " ".join(kept), "LIBRARY": ""}


def selftest_tests(version):
    """The self-test's CPython tests for the series, in regrtest's names."""
    minor = minor_of(version)
    names = []
    for name in SELFTEST_TESTS:
        if name == "{sqlite}":
            name = "test_sqlite" if minor <= 10 else "test_sqlite3"
        names.append(name)
    if minor >= 13:
        names.insert(names.index("test_dbm_ndbm") + 1, "test_dbm_sqlite3")  # dbm.sqlite3, new in 3.13
    return tuple(names)


def test_packages(version):
    """Source directories (relative to Lib/) the tests need, copied into a scratch copy
    of the installed tree (no series installs them, see install_variables()): Lib/test, plus the
    packages that kept their tests next to the code (sqlite3 until 3.10, ctypes until
    3.11). They go into the tree's own lib/python3.X, not onto PYTHONPATH: the loaders
    of test_sqlite/test_ctypes require test packages under one top-level directory
    ("Path must be within the project" otherwise)."""
    minor = minor_of(version)
    packages = ["test"]
    if minor <= 11:
        packages.append("ctypes/test")
    if minor <= 10:
        packages.append("sqlite3/test")
    return tuple(packages)


# Test-only C modules that --disable-test-modules leaves out but the self-test's tests
# need: built by the self-test from the source into the scratch copy only, never
# shipped. Sources come from Modules/Setup.stdlib.in (3.11+) or this table (3.10).
_TEST_MODULE_SOURCES_310 = {
    "_testcapi": ("_testcapimodule.c",),
    "_ctypes_test": ("_ctypes/_ctypes_test.c",),
}


def selftest_c_modules(version):
    """Names of the test-only C modules the self-test builds for this series:
    _ctypes_test wherever test modules are disabled (most of test_ctypes skips without
    it); _testcapi where test_sqlite3 imports it at module level (3.11, 3.12)."""
    minor = minor_of(version)
    if not has_test_modules_option(version):
        return ()  # 3.9 builds and installs them itself
    names = ["_ctypes_test"]
    if minor in (11, 12):
        names.insert(0, "_testcapi")
    return tuple(names)


_STDLIB_LINE = re.compile(r"^@MODULE_[A-Z0-9_]+_TRUE@(\S+)\s+(.*)$")


def test_module_sources(version, setup_stdlib_in=None):
    """{module: [source paths relative to Modules/]} for selftest_c_modules(version),
    from CPython's Setup.stdlib.in text (3.11+) or the 3.10 table."""
    wanted = selftest_c_modules(version)
    if not wanted:
        return {}
    if setup_stdlib_in is None:
        return {name: list(_TEST_MODULE_SOURCES_310[name]) for name in wanted}
    found = {}
    for line in setup_stdlib_in.splitlines():
        match = _STDLIB_LINE.match(line)
        if match and match.group(1) in wanted and match.group(1) not in found:
            found[match.group(1)] = match.group(2).split("#", 1)[0].split()
    missing = [name for name in wanted if name not in found]
    if missing:
        raise ValueError("Setup.stdlib.in has no line for " + ", ".join(missing))
    return found


def exclusions(version, platform):
    """[(pattern, reason)] of test cases the self-test skips for this version on this
    platform (its registry entry, or spec.platform_info(): a dict with "openssl")."""
    key = ".".join(version.split(".")[:2])
    return [
        (pattern, reason)
        for series_key, facts, pattern, reason in EXCLUSIONS
        if series_key == key
        and (facts == "*" or all(platform.get(name) == value for name, value in facts.items()))
    ]


def semantic_interposition_cflags(version):
    """-fno-semantic-interposition for 3.9: without it GCC may not inline or bypass the PLT
    between libpython.so's own exported functions (what embedders run; the interpreter
    links the objects). 3.10+ configure adds it itself with --enable-optimizations (bpo-38980, which
    measured up to 1.3x for such shared builds); the driver adds it to 3.9's *_NODIST flags."""
    return "-fno-semantic-interposition" if minor_of(version) <= 9 else ""


def regrtest_argv(tests, jobs, excluded=(), match=None):
    """python -m test arguments: parallel, each test with a timeout, failures re-run
    verbosely (-w), only the test cases of a --match pattern when given, excluded test cases
    by --ignore pattern (regrtest has -i/--ignore since 3.8). --match comes first: 3.13's
    regrtest applies its patterns in order, the last that matches deciding."""
    argv = ["-m", "test", "-j{}".format(max(1, int(jobs))), "--timeout=900", "-w"]
    if match:
        argv += ["--match", match]
    for pattern, _reason in excluded:
        argv += ["--ignore", pattern]
    return argv + list(tests)


# test_ssl is the self-test's longest module, mostly its ThreadedTests, and regrtest gives a
# module to one worker. That class waits rather than computes: each test's echo server looks
# for its stop flag once a second (its socket's 1 s accept timeout), so most of its tests take
# 1-4 s of an idle core (3.13.15 on bookworm: 49 s, 0.85 s of it CPU). Its tests therefore run
# in regrtests of their own, split by name (SPLIT_SHARDS), beside the rest, which gets every
# worker: 3.13.15's self-test took 19.2 s instead of 44.5 (the class 4-10 s per regrtest,
# 37.7 in one). Every test runs exactly once: the shards' patterns are disjoint (regrtest
# matches them case-sensitively), and the last of the class's regrtests takes what their
# patterns leave.
SPLIT_MODULE = "test_ssl"
SPLIT_CLASS = "test.test_ssl.ThreadedTests.*"
SPLIT_SHARDS = ("test_[a-c]*", "test_[d-p]*", "test_[q-rt-z]*")


def regrtest_runs(tests, jobs, excluded=()):
    """The self-test's regrtest invocations (regrtest_argv()), to run side by side: one, or
    with 2+ jobs and test_ssl among the tests, its ThreadedTests in one-worker regrtests
    split by name (SPLIT_SHARDS, then the rest of the class) and everything else in `jobs`
    workers beside them."""
    jobs = max(1, int(jobs))
    if jobs < 2 or SPLIT_MODULE not in tests:
        return [regrtest_argv(tests, jobs, excluded)]
    prefix = SPLIT_CLASS[: -len("*")]
    shards = [(prefix + shard, "run by a regrtest of its own") for shard in SPLIT_SHARDS]
    split = [regrtest_argv([SPLIT_MODULE], 1, excluded, pattern) for pattern, _ in shards]
    split.append(regrtest_argv([SPLIT_MODULE], 1, [*excluded, *shards], SPLIT_CLASS))
    rest = [*excluded, (SPLIT_CLASS, "run by regrtests of its own")]
    return [*split, regrtest_argv(tests, jobs, rest)]


def profile_task(version, jobs):
    """The PGO training task: CPython's own (regrtest --pgo, the same from 3.9 to 3.15),
    its tests spread over all cores; $(TESTTIMEOUT) is each series' Makefile value."""
    minor_of(version)
    return "-m test --pgo -j{} --timeout=$(TESTTIMEOUT)".format(max(1, int(jobs)))


# --- PGO: how much of the profiled code GCC optimizes for speed -------------------------------
# With -fprofile-use GCC optimizes for speed only the blocks that make up the hottest part of
# the training run's time (--param hot-bb-count-ws-permille, GCC's default 990: 99%); the rest
# of what the run executed is optimized for size, like code it never ran. Under LTO the
# interpreter and its built-in modules (BUILTIN_MODULES) form one profile, dominated by the
# eval loop, so code that CPython's --pgo task runs only briefly falls below that line: in
# 3.11.2 the json scanner's helpers (_PyUnicodeWriter_Init became `rep stos`, 4% of the json
# benchmark's samples) and others the benchmarks take (nbody's most). Debian's shared
# _json.so is profiled alone, and its PGO task is the whole test suite. Raising the line to
# 99.9% for the final LTO build restores them (3.11.2, debian-12, the same profile relinked
# without BOLT, CPU-time minima of benchmarks/interpreter_speed.py's suite against bookworm's
# python3.11, four runs: 0.99-1.00x -> 1.03-1.05x; nbody 0.85-0.89x -> 0.98-1.05x, json
# 0.92-0.98x -> 0.98-1.05x; the interpreter grows 7%). 1000 (every executed block hot)
# measured the same overall but nbody 0.83-0.85x. 3.13.15 (debian-13, with BOLT; two runs of
# interpreter_speed.py --against, the builds swapped, 2026-12-01): 999 over the default 1.029x
# and 1.035x, against trixie's python3.13 1.060x and 1.121x where the default build ran 1.030x
# and 1.084x (json 0.98-1.01x -> 1.09-1.13x). 3.13 counts every executed block hot (1000) since
# 2026-12-05: the regex engine's search loops then inline charset() as trixie's python3.13 does
# (the --pgo task runs them too rarely for 999), and 3.13.15 with 1000 ran 1.014x (debian-12)
# and 1.010x (debian-13) the 999 build in two runs of two rounds (1.027x trixie's python3.13
# where the 999 build ran 1.017x); the tarball grows 1.4%. Series not listed keep GCC's
# default: 3.9.2 with 999 ran at 0.976x of the same build with the default (one run,
# 2026-12-01: fannkuch 0.90x, regex 0.91x); the others are not measured here.
PGO_HOT_PERMILLE = {11: 999, 13: 1000}


def pgo_hot_permille(version):
    """--param hot-bb-count-ws-permille for the series' final PGO+LTO build, or None for
    GCC's default (see PGO_HOT_PERMILLE)."""
    return PGO_HOT_PERMILLE.get(minor_of(version))


# -fprofile-partial-training in the final PGO+LTO build: code the training run never executed
# is optimized as without a profile instead of for size. 3.13.15 (debian-13, BOLT, two runs of
# interpreter_speed.py --suite pyperformance --against the build without it, 2026-12-04):
# 1.014x and 1.012x the build without it, 1.048x and 1.051x trixie's python3.13 where that
# build ran 1.034x and 1.039x (generators 0.87-0.90x -> 0.97-1.01x); the tarball grows 2%
# (29.1 MB against 28.5). 3.9.2: 0.999x, so GCC's default; 3.11.2: 1.008x alone, 1.020x and
# 1.019x with BOLT (below). 3.10, 3.12, 3.14 and 3.15 are not measured (no source here).
PGO_PARTIAL_TRAINING = {11, 13}


def pgo_partial_training(version):
    """Whether the series' final PGO+LTO build keeps untrained code optimized for speed."""
    return minor_of(version) in PGO_PARTIAL_TRAINING
