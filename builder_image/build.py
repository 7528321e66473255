#!/usr/bin/env python3
"""The build driver: one cell (version x platform x arch) from source to the store.

Runs inside every builder image and in the local runners, so it is a single
standard-library-only script that works on Python 3.6+ (the oldest system python
of a platform we build on: rhel-8 and openSUSE 15). Hence: no dataclasses, no
walrus, no capture_output/text in subprocess, no third-party imports except boto3,
imported lazily and only for an s3:// store.

Input: the build spec (JSON) in the environment variable BUILD_SPEC, never
through a shell; platform data from platforms.json next to this file (or
$BUILDFARM_PLATFORMS).

Phases: preflight -> fetch -> verify -> configure -> make -> install -> selftest
-> package -> manifest -> upload. Each phase is printed with its elapsed time
("buildfarm: phase NAME done in S s"); the full log is written to build.log
(next to the artifacts, or under logs/ with failure.json when the build fails);
on failure the last lines of the failing phase are printed.

Environment hygiene: configure, make and every other child get buildenv.child_env(),
an allow-list, never the caller's environment (OPT, CFLAGS, CC, ... change nothing).

Optional environment: BUILDFARM_WORK_DIR (scratch; default a temp dir),
BUILDFARM_JOBS (make -j; default all cores), BUILDFARM_PROFILE_TASK (PGO
training task), BUILDFARM_CCACHE=1 (use ccache if installed),
BUILDFARM_SELFTEST_TESTS (space-separated CPython tests for the self-test),
BUILDFARM_CHECK_BUILD_DEPS=0 (skip the build-dependency check),
BUILDFARM_LOG_FILE (also copy the full log there), BUILDFARM_STOP_AFTER=PHASE (stop
after that phase, publishing nothing: e.g. configure, for tests), BUILDFARM_BUILDER_IMAGE
(recorded in the manifest), BUILDFARM_KEEP_WORK=1, BUILDFARM_MAINTAINER,
AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (S3 endpoint override).
"""

import datetime
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # the sibling modules below (the runners mount all of builder_image/)
import buildenv  # noqa: E402
import hardening  # noqa: E402
import process  # noqa: E402
import relocation  # noqa: E402
import selftest  # noqa: E402
import series as by_series  # noqa: E402 - build.py has its own series() function
from selftest import EMBED_PROGRAM, IMPORT_SCRIPT, PYTHON_INFO_SCRIPT, make_test_wheel  # noqa: E402,F401

DRIVER_VERSION = "1"
PHASES = (
    "preflight",
    "fetch",
    "verify",
    "configure",
    "make",
    "install",
    "selftest",
    "package",
    "manifest",
    "upload",
)
ARCHES = ("x86_64", "aarch64")
DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
RPM_ARCH = {"x86_64": "x86_64", "aarch64": "aarch64"}
OPTIMIZATIONS = ("pgo+lto", "none")
# -fstack-protector, not -strong, as Debian builds its python3: -strong also instruments
# most of the interpreter's hot functions (anything with a local array or address taken).
HARDENING_CFLAGS = "-fstack-protector -D_FORTIFY_SOURCE=2"
HARDENING_LDFLAGS = "-Wl,-z,relro,-z,now"
# The interpreter and its extension modules find libpython relative to themselves.
# The doubled $ survives make (which turns $$ into $), the backslash survives the
# shell that runs the link recipe; the linker then records exactly $ORIGIN/../lib.
RPATH_LDFLAG_FOR_MAKE = "-Wl,-rpath,\\$$ORIGIN/../lib"
EXPECTED_RUNPATH = "$ORIGIN/../lib"
# What CPython's configure adds to CFLAGS_NODIST/LDFLAGS_NODIST for GCC with --with-lto.
CPYTHON_GCC_LTO_FLAGS = ("-flto", "-fuse-linker-plugin", "-ffat-lto-objects", "-flto-partition=none")
DEBUG_FLAGS = ("-g",)
# Extension modules built into libpython (and so into the interpreter), as Debian builds
# them: no third-party libraries, and called often. Built in, they are compiled as core
# code (the thread state without a function call, LTO across the call) instead of being
# loaded .so files that reach the interpreter through the PLT. Per series:
# by_series.builtin_modules() (none for 3.9/3.10, and why).
BUILTIN_MODULES = by_series.BUILTIN_MODULES
TAIL_LINES = 40

# Input (the spec) is matched whole (fullmatch: no trailing newline) and ASCII digits only.
_VERSION_RE = re.compile(r"3\.([0-9]{1,2})\.([0-9]{1,2})(?:(a|b|rc)([0-9]{1,2}))?")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_SETUP_STDLIB_LINE = re.compile(r"^@MODULE_[A-Z0-9_]+_TRUE@(\S+)\s+(.*)$")
_MAKEFILE_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:?=(.*)$")
_ERROR_LINE = re.compile(r"\berror:|\*\*\* \[|Error \d+$")


class BuildError(Exception):
    """A build failure: the phase it happened in and a one-line reason."""

    def __init__(self, phase, reason, record=True):
        Exception.__init__(self, "{}: {}".format(phase, reason))
        self.phase = phase
        self.reason = reason
        # False when the cell belongs to another build: then nothing at all is written.
        self.record = record


class SpecError(ValueError):
    """The build spec is malformed; the message names the bad value."""


# ---------------------------------------------------------------------------
# Pure logic: versions, spec, flags, names, package metadata (unit-tested)
# ---------------------------------------------------------------------------


def parse_version(text):
    """'3.13.5' -> (3, 13, 5, None, 0); '3.14.0rc2' -> (3, 14, 0, 'rc', 2)."""
    match = _VERSION_RE.fullmatch(text) if isinstance(text, str) else None
    if not match:
        raise SpecError("malformed Python version {!r} (expected e.g. 3.13.5 or 3.14.0rc2)".format(text))
    minor, micro, pre, pre_n = match.groups()
    return (3, int(minor), int(micro), pre, int(pre_n) if pre_n else 0)


def series(version):
    parsed = parse_version(version)
    return "{}.{}".format(parsed[0], parsed[1])


def load_platforms(path=None):
    path = path or os.environ.get("BUILDFARM_PLATFORMS") or os.path.join(HERE, "platforms.json")
    with open(path) as handle:
        return json.load(handle)


def platform_info(registry, platform_id, arch):
    """Everything the driver needs about one platform on one arch, from the registry JSON.
    "bolt" is the platform's llvm-bolt entry where it has one for this arch, else None;
    its package is then one of the build dependencies."""
    try:
        platform = registry["platforms"][platform_id]
    except KeyError:
        raise SpecError("unknown platform {!r}".format(platform_id)) from None
    if arch not in ARCHES or arch not in platform["arches"]:
        raise SpecError("unknown arch {!r} for platform {}".format(arch, platform_id))
    family = registry["families"][platform["family"]]
    missing = platform.get("missing_modules", {})
    bolt = platform.get("bolt")
    if bolt and arch not in bolt["arches"]:
        bolt = None
    return {
        "id": platform_id,
        "family": platform["family"],
        "package_format": family["package_format"],
        "build_dependencies": list(family["common_build_dependencies"])
        + list(platform["build_dependencies"])
        + ([bolt["package"]] if bolt else []),
        "runtime_dependencies": list(platform["runtime_dependencies"]),
        "expected_modules": [m for m in registry["extension_modules"]["required"] if m not in missing],
        "missing_modules": dict(missing),
        "bolt": bolt,
        "openssl": platform["openssl"],
    }


def parse_spec(text, registry):
    """Validate the BUILD_SPEC JSON (same contract as buildfarm.models.BuildSpec)."""
    try:
        spec = json.loads(text)
    except ValueError as error:
        raise SpecError("BUILD_SPEC is not valid JSON: {}".format(error)) from None
    if not isinstance(spec, dict):
        raise SpecError("BUILD_SPEC must be a JSON object")
    required = ("version", "platform", "arch", "build", "source", "prefix", "store", "artifact_dir")
    # execution_id: the planning execution's nonce, recorded in manifest.json with the rest of
    # the spec; publish (not the driver) decides whether it is the planned one.
    allowed = set(required) | {"optimization", "execution_id"}
    for key in required:
        if key not in spec:
            raise SpecError("BUILD_SPEC lacks {!r}".format(key))
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise SpecError("BUILD_SPEC has unknown key(s): {}".format(", ".join(unknown)))
    parse_version(spec["version"])
    platform_info(registry, spec["platform"], spec["arch"])  # names a bad platform or arch
    if not isinstance(spec["build"], int) or isinstance(spec["build"], bool) or spec["build"] < 1:
        raise SpecError("build must be a positive integer, not {!r}".format(spec["build"]))
    source = spec["source"]
    if not isinstance(source, dict) or set(source) != {"url", "sha256"}:
        raise SpecError('source must be {"url": ..., "sha256": ...}')
    if not isinstance(source["url"], str) or not source["url"].startswith(("http://", "https://", "file://")):
        raise SpecError("source url must be http://, https:// or file://, not {!r}".format(source["url"]))
    if not isinstance(source["sha256"], str) or not _SHA256_RE.fullmatch(source["sha256"]):
        raise SpecError("source sha256 must be 64 lowercase hex digits, not {!r}".format(source["sha256"]))
    execution_id = spec.get("execution_id", "")
    if "execution_id" in spec and not (
        isinstance(execution_id, str) and re.fullmatch(r"[A-Za-z0-9._-]{1,80}", execution_id)
    ):
        raise SpecError("execution_id must be 1-80 of [A-Za-z0-9._-], not {!r}".format(execution_id))
    spec.setdefault("optimization", "pgo+lto")
    if spec["optimization"] not in OPTIMIZATIONS:
        raise SpecError("unknown optimization {!r} (pgo+lto or none)".format(spec["optimization"]))
    prefix = spec["prefix"]
    if (
        not isinstance(prefix, str)
        or not prefix.startswith("/")
        or ".." in prefix.split("/")
        or "\n" in prefix
    ):
        raise SpecError("prefix must be an absolute path, not {!r}".format(prefix))
    expected_dir = "builds/{}/{}/{}/{}".format(spec["version"], spec["platform"], spec["arch"], spec["build"])
    if spec["artifact_dir"] != expected_dir:
        raise SpecError("artifact_dir must be {!r}, not {!r}".format(expected_dir, spec["artifact_dir"]))
    if not isinstance(spec["store"], str) or not spec["store"]:
        raise SpecError("store must be s3://bucket/prefix or a directory")
    return spec


def bolt_config(version, optimization, platform):
    """The platform's "bolt" entry (platform_info()) when this build is BOLT-optimized, else
    None: pgo+lto builds of 3.11+ (series.bolt_supported()) where the platform has
    llvm-bolt for the arch ("tools": its directory)."""
    if optimization != "pgo+lto" or not by_series.bolt_supported(version):
        return None
    return platform.get("bolt")


def configure_args(version, optimization, prefix, bolt=None):
    """./configure arguments; version-dependent options only where the version has them.

    bolt: bolt_config() of the build; CPython then runs llvm-bolt over the PGO+LTO
    interpreter with its own profile task and flags (after `make profile-opt`)."""
    parsed = parse_version(version)
    minor = parsed[1]
    args = [
        "--prefix=" + prefix,
        "--enable-shared",
        "--with-ensurepip=install",
    ]
    if optimization == "pgo+lto":
        args += ["--enable-optimizations", "--with-lto"]
        if bolt and by_series.bolt_by_configure(version):
            args.append("--enable-bolt")  # 3.11: series.bolt_nodist_flags() and the fragment
    elif optimization != "none":
        raise SpecError("unknown optimization {!r}".format(optimization))
    if minor >= 10:
        # 3.10 added both; 3.9 builds test modules and never installs a static libpython
        # with --enable-shared anyway.
        args += ["--disable-test-modules", "--without-static-libpython"]
    if minor >= 15:
        # Upstream's name for what make_variables() does for older versions.
        args.append("--enable-static-libpython-for-interpreter")
    return args


def configure_env(version, bolt=None):
    """Environment for ./configure only (not make, so flags are not doubled).

    Hardening and the rpath go through the *_NODIST variables: they apply to the
    interpreter's own build but are not recorded for extensions built later. BOLT's
    tools are named by path: distributions install them versioned, off PATH.
    """
    parse_version(version)
    env = {
        "CFLAGS_NODIST": HARDENING_CFLAGS,
        "LDFLAGS_NODIST": HARDENING_LDFLAGS + " " + RPATH_LDFLAG_FOR_MAKE,
    }
    interposition = by_series.semantic_interposition_cflags(version)
    if interposition:
        env = {name: value + " " + interposition for name, value in env.items()}
    if bolt:
        env.update(_bolt_tools(bolt))
        for name, flags in by_series.bolt_nodist_flags(version).items():
            env[name] += " " + flags
    return env


def _bolt_tools(bolt):
    tools = bolt["tools"].rstrip("/")
    return {"LLVM_BOLT": tools + "/llvm-bolt", "MERGE_FDATA": tools + "/merge-fdata"}


def setup_local(setup_stdlib_in, modules=BUILTIN_MODULES):
    """Modules/Setup.local (read by configure) building `modules` in, with CPython's own
    lines for them from Modules/Setup.stdlib.in (3.11+) minus the enabled-if marker."""
    lines = ["# Written by the build farm's driver (build.py): modules built into libpython.", "*static*"]
    for line in setup_stdlib_in.splitlines():
        match = _SETUP_STDLIB_LINE.match(line)
        if match and match.group(1) in modules:
            lines.append(match.group(1) + " " + match.group(2))
    return "\n".join(lines) + "\n"


def makefile_variables(text):
    """NAME=value assignments of a configure-generated Makefile (values as written)."""
    variables = {}
    for line in text.splitlines():
        match = _MAKEFILE_ASSIGNMENT.match(line)
        if match:
            variables[match.group(1)] = match.group(2).strip()
    return variables


def _without(value, flags):
    return " ".join(word for word in value.split() if word not in flags)


def static_interpreter(version, makefile):
    """Whether bin/python links libpython's objects: 3.15 has a configure option; older
    versions whose Makefile has LINK_PYTHON_OBJS (3.13 verified here) take make variables;
    the rest keep the shared-linked interpreter."""
    return parse_version(version)[1] >= 15 or "LINK_PYTHON_OBJS" in makefile


def _static_interpreter_by_make(version, makefile):
    """The static interpreter, made with make variables (before 3.15's configure option)."""
    return static_interpreter(version, makefile) and parse_version(version)[1] < 15


def make_variables(version, optimization, makefile, bolt=None):
    """make command-line variables for the two PGO stages: (instrumented, final).

    makefile: makefile_variables() of the configured tree. For "none" both are the
    same. Three departures from CPython's defaults, each for build time or speed:
    - no -g: every binary is stripped, so debug info only costs compile and link time;
    - the interpreter links libpython's objects instead of libpython.so (what Debian
      and python-build-standalone ship, and 3.15's --enable-static-libpython-for-
      interpreter): code in a shared library reaches the thread state through
      __tls_get_addr and its globals through the GOT (benchmarks/interpreter_speed.py:
      0.86x of Debian's python3.13 before, ~1.0x after). libpython.so is still built
      and installed for embedders;
    - the instrumented build has no LTO: GCC instruments each function before LTO,
      so the profile is the same and the single-threaded LTO link happens once.
    With bolt (bolt_config()), BOLT optimizes the interpreter alone (it no longer runs
    libpython.so's code, so a profile of that would be empty), with CPython's flags but
    for the platform's substitutions (an older llvm-bolt lacks some of them).
    """
    common = {"OPT": _without(makefile.get("OPT", ""), DEBUG_FLAGS)}
    if _static_interpreter_by_make(version, makefile):
        common["LINK_PYTHON_OBJS"] = "$(LIBRARY_OBJS)"
        # Not $(LIBRARY_DEPS): the interpreter no longer waits for libpython.so, so the
        # two long LTO links run side by side (make_fragment() keeps libpython.so built).
        common["LINK_PYTHON_DEPS"] = "$(LIBRARY_OBJS) $(EXPORTSYMS)"
    if bolt:
        common.update(_bolt_variables(version, makefile, bolt))
    final = dict(common)
    instrumented = dict(common)
    for name in ("CONFIGURE_CFLAGS_NODIST", "CONFIGURE_LDFLAGS_NODIST"):
        value = makefile.get(name, "")
        final[name] = _without(value, DEBUG_FLAGS)
        instrumented[name] = _without(value, DEBUG_FLAGS + CPYTHON_GCC_LTO_FLAGS)
    if optimization == "none":
        return final, final
    return instrumented, final


def _bolt_variables(version, makefile, bolt):
    """BOLT's make variables: the interpreter alone where it links libpython's objects;
    CPython 3.13's flags where the Makefile has none or older ones (series.bolt_flags()),
    with the platform's substitutions; for 3.11 the tools and the -no-pie LINKCC that
    3.12+ configure provides."""
    variables = {}
    if static_interpreter(version, makefile):
        variables["BOLT_BINARIES"] = "$(BUILDPYTHON)"
    own = by_series.bolt_flags(version)
    substitutions = bolt.get("flag_substitutions") or {}
    for index, name in enumerate(("BOLT_INSTRUMENT_FLAGS", "BOLT_APPLY_FLAGS")):
        if own or substitutions:
            flags = (own[index] if own else makefile.get(name, "")).split()
            variables[name] = " ".join(substitutions.get(flag, flag) for flag in flags)
    linkcc = by_series.bolt_linkcc(version, makefile.get("LINKCC"))
    if linkcc:
        variables["LINKCC"] = linkcc
        variables.update(_bolt_tools(bolt))
    return variables


def make_assignments(variables):
    """make command-line arguments NAME=value (passed as argv items, never through a shell)."""
    return ["{}={}".format(name, value) for name, value in sorted(variables.items())]


def bolt_binaries(version, makefile):
    """The files llvm-bolt rewrites, relative to the build directory: the interpreter
    (BUILDPYTHON on Linux), and libpython.so where the interpreter still links it
    (CPython's default BOLT_BINARIES with --enable-shared)."""
    if static_interpreter(version, makefile):
        return ["python"]
    return ["python"] + ([makefile["INSTSONAME"]] if makefile.get("INSTSONAME") else [])


def restore_gnu_stack_argv(version, makefile):
    """Puts a non-executable PT_GNU_STACK back into the BOLTed binaries. CPython's
    BOLT_APPLY_FLAGS have -use-gnu-stack: llvm-bolt then writes the LOAD segment of its
    new code over the PT_GNU_STACK program header, and the stack becomes executable
    (the ABI default on x86_64). Without -use-gnu-stack it moves the program header
    table into a new segment instead, which `strip` (binutils) corrupts. So BOLT keeps
    its flag and hardening.py gives PT_GNU_STACK a spare program header: the PT_NOTE
    that ld emits beside PT_GNU_PROPERTY for the same bytes (see its docstring)."""
    script = os.path.join(HERE, "hardening.py")
    return [sys.executable, script, "--restore-gnu-stack", *bolt_binaries(version, makefile)]


def make_steps(jobs, version, optimization, makefile, profile_task=None, bolt=None):
    """The make invocations of the make phase: [(what, argv)]. pgo+lto runs CPython's
    profile-opt in its two stages, each timed, then with bolt profile-bolt-stamp (what
    CPython's bolt-opt does after profile-opt) and restore_gnu_stack_argv()."""
    instrumented, final = make_variables(version, optimization, makefile, bolt)
    jobs_flag = "-j{}".format(max(1, int(jobs)))
    if optimization == "none":
        return [("build", ["make", jobs_flag, *make_assignments(final)])]
    task = ["PROFILE_TASK=" + profile_task] if profile_task else []
    steps = [
        (
            "instrumented build and profile run",
            ["make", jobs_flag, "profile-run-stamp", *task, *make_assignments(instrumented)],
        ),
        ("optimized build", ["make", jobs_flag, "profile-opt", *task, *make_assignments(final)]),
    ]
    if bolt:
        steps.append(
            (
                "BOLT instrumented run and optimization",
                ["make", jobs_flag, "profile-bolt-stamp", *task, *make_assignments(final)],
            )
        )
        steps.append(
            ("PT_GNU_STACK back into the BOLTed binaries", restore_gnu_stack_argv(version, makefile))
        )
    return steps


def make_fragment(version, makefile, bolt=None):
    """Rules added to CPython's Makefile through $MAKEFILES (GNU make reads it in every
    make, including profile-opt's sub-makes), or None when there is nothing to add.
    With bolt, a series without BOLT rules (3.11) gets CPython 3.13's profile-bolt-stamp."""
    rules = []
    if "PY_LDFLAGS_NOLTO" in makefile:
        rules += [
            "# Build-time tools link without LTO (fat LTO objects carry plain code too): each",
            "# LTO link of them is a single-threaded minute for a program nobody ships.",
            "Programs/_freeze_module Programs/_testembed: PY_CORE_LDFLAGS = $(PY_LDFLAGS_NOLTO)",
        ]
    if _static_interpreter_by_make(version, makefile) and makefile.get("PY3LIBRARY"):
        rules += [
            "# The interpreter links libpython's objects; libpython.so is still built.",
            "build_all: " + makefile["PY3LIBRARY"],
        ]
    if bolt:
        rules += by_series.bolt_rules(version, makefile)
    if not rules:
        return None
    return "# Added by the build farm's driver (build.py).\n" + "\n".join(rules) + "\n"


def default_profile_task(jobs, version):
    """CPython's own PGO task (regrtest --pgo), its tests spread over all cores."""
    return by_series.profile_task(version, jobs)


def install_argv(version, optimization, makefile, destdir, bolt=None):
    """make install with the final build's variables, so nothing is rebuilt differently."""
    _, final = make_variables(version, optimization, makefile, bolt)
    return ["make", "install", "DESTDIR=" + destdir, *make_assignments(final)]


def tarball_name(version, platform_id, arch):
    return "python-{}-{}-{}.tar.gz".format(version, platform_id, arch)


def deb_name(version, build, arch):
    return "python-{}_{}_{}.deb".format(version, build, DEB_ARCH[arch])


def rpm_name(version, build, arch):
    return "python-{}-{}.{}.rpm".format(version, build, RPM_ARCH[arch])


def package_name(version):
    return "python-" + version


def package_version(version):
    """Version usable by dpkg and rpm: pre-releases sort before the final release (~)."""
    major, minor, micro, pre, pre_n = parse_version(version)
    text = "{}.{}.{}".format(major, minor, micro)
    if pre:
        text += "~{}{}".format(pre, pre_n)
    return text


def deb_control(version, build, arch, runtime_dependencies, installed_size_kib, maintainer):
    """DEBIAN/control: Version <version>-<build> so build 2 upgrades build 1."""
    lines = [
        "Package: " + package_name(version),
        "Version: {}-{}".format(package_version(version), build),
        "Architecture: " + DEB_ARCH[arch],
        "Maintainer: " + maintainer,
        "Installed-Size: {}".format(installed_size_kib),
        "Depends: " + ", ".join(runtime_dependencies),
        "Section: python",
        "Priority: optional",
        "Homepage: https://www.python.org/",
        "Description: CPython {} interpreter in /opt/python/{}".format(version, version),
        " A self-contained CPython {} built from the upstream source by the Python".format(version),
        " Build Farm, installed under /opt/python/{} so that several versions can".format(version),
        " be installed side by side. Includes pip.",
    ]
    return "\n".join(lines) + "\n"


def rpm_spec(version, build, arch, runtime_dependencies, staged_root, prefix):
    """An rpmbuild spec that packages an already staged tree (no %build)."""
    requires = "\n".join("Requires: " + dep for dep in runtime_dependencies)
    return """\
Name: {name}
Version: {pversion}
Release: {build}
Summary: CPython {version} interpreter in {prefix}
License: Python-2.0
URL: https://www.python.org/
BuildArch: {arch}
AutoReqProv: no
{requires}

# The tree is already built, stripped and self-tested: no post-processing, no
# byte-compiling with the build host's python, no debuginfo, no build-id links
# (they would collide between versions installed side by side).
%define __os_install_post %{{nil}}
%define __brp_python_bytecompile %{{nil}}
%define debug_package %{{nil}}
%global _build_id_links none

%description
A self-contained CPython {version} built from the upstream source by the
Python Build Farm, installed under {prefix} so that several versions can be
installed side by side. Includes pip.

%install
mkdir -p %{{buildroot}}
cp -a {staged}/. %{{buildroot}}/

%files
{prefix}
""".format(
        name=package_name(version),
        pversion=package_version(version),
        build=build,
        version=version,
        prefix=prefix,
        arch=RPM_ARCH[arch],
        requires=requires,
        staged=staged_root,
    )


def relocatable_shebang(interpreter_name):
    """A /bin/sh trampoline that runs the script with the interpreter next to it
    (the form python-build-standalone uses), so bin/ scripts work from any directory."""
    return ('#!/bin/sh\n\'\'\'exec\' "$(dirname -- "$(realpath -- "$0")")/{}" "$0" "$@"\n\' \'\'\'\n').format(
        interpreter_name
    )


def rewrite_shebang(content, interpreter_name):
    """Script bytes with a '#!.../python...' first line replaced by the trampoline; None if not one."""
    first, newline, rest = content.partition(b"\n")
    if not newline or not re.match(rb"^#!\s*/\S*/python[0-9.]*\s*$", first):
        return None
    return relocatable_shebang(interpreter_name).encode() + rest


def store_kind(store):
    return "s3" if store.startswith("s3://") else "local"


def split_s3_url(url):
    """'s3://bucket/some/prefix' -> ('bucket', 'some/prefix')."""
    rest = url[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise SpecError("malformed S3 store {!r} (expected s3://bucket/prefix)".format(url))
    return bucket, prefix.strip("/")


def log_dir_for(spec):
    return "logs/{}/{}/{}/{}".format(spec["version"], spec["platform"], spec["arch"], spec["build"])


# ---------------------------------------------------------------------------
# Stores: a directory or S3 (same layout)
# ---------------------------------------------------------------------------


class LocalStore(object):
    def __init__(self, root):
        if root.startswith("file://"):
            root = root[len("file://") :]
        self.root = os.path.abspath(root)

    def describe(self):
        return self.root

    def cell_exists(self, artifact_dir):
        return os.path.lexists(os.path.join(self.root, artifact_dir))

    def publish(self, artifact_dir, files):
        """Copy files (name -> local path; manifest.json last) into a hidden staging
        directory next to the target, then rename it into place in one step."""
        final = os.path.join(self.root, artifact_dir)
        parent = os.path.dirname(final)
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".staging-{}-".format(os.path.basename(final)), dir=parent)
        try:
            for name, path in files:
                shutil.copyfile(path, os.path.join(staging, name))
                with open(os.path.join(staging, name), "rb") as handle:
                    os.fsync(handle.fileno())
            os.chmod(staging, 0o755)  # noqa: S103 - a published cell is world-readable
            if os.path.lexists(final):
                raise BuildError("upload", "{} already exists; builds are never overwritten".format(final))
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def write_logs(self, log_dir, files):
        target = os.path.join(self.root, log_dir)
        os.makedirs(target, exist_ok=True)
        for name, path in files:
            tmp = os.path.join(target, "." + name + ".tmp")
            shutil.copyfile(path, tmp)
            os.replace(tmp, os.path.join(target, name))


class S3Store(object):
    """Every PutObject is create-only (If-None-Match: *): S3 refuses to replace an existing key
    with 412, and the bucket policy refuses any write under builds/ without the header."""

    def __init__(self, url):
        self.bucket, self.prefix = split_s3_url(url)
        import boto3  # only builds that upload to S3 need it
        from botocore.config import Config

        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
        # S3 honours conditional writes only on SigV4-signed requests: pin it rather than rely
        # on the default of whichever botocore the image has.
        self.client = boto3.client("s3", endpoint_url=endpoint, config=Config(signature_version="s3v4"))
        if "IfNoneMatch" not in self._put_object_fields():
            # botocore < 1.35 (the boto3 pip gives Python 3.6 on rhel-8 / openSUSE 15) has no
            # IfNoneMatch parameter: add the header to the request before it is signed.
            events = getattr(self.client.meta, "events", None)
            if events is None:
                raise BuildError(
                    "upload", "this boto3 cannot send If-None-Match: refusing to upload", record=False
                )
            events.register("before-sign.s3.PutObject", _add_if_none_match)

    def describe(self):
        return "s3://{}/{}".format(self.bucket, self.prefix)

    def key(self, relative):
        return "{}/{}".format(self.prefix, relative) if self.prefix else relative

    def cell_exists(self, artifact_dir):
        response = self.client.list_objects_v2(
            Bucket=self.bucket, Prefix=self.key(artifact_dir) + "/", MaxKeys=1
        )
        return response.get("KeyCount", 0) > 0

    def _put(self, key, path):
        members = self._put_object_fields()
        extra = {"IfNoneMatch": "*"} if "IfNoneMatch" in members else {}
        if "ChecksumSHA256" in members:
            # S3 verifies the upload and keeps the full-object SHA-256 (publish reads it back).
            import base64

            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            extra["ChecksumSHA256"] = base64.b64encode(digest.digest()).decode()
            extra["ChecksumAlgorithm"] = "SHA256"
        try:
            with open(path, "rb") as body:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
        except Exception as error:  # botocore ClientError: 412 = the key exists
            error_info = getattr(error, "response", {}).get("Error", {})
            if error_info.get("Code") in ("PreconditionFailed", "412"):
                raise BuildError(
                    "upload",
                    "s3://{}/{} already exists; builds are never overwritten".format(self.bucket, key),
                    record=False,
                ) from None
            raise

    def _put_object_fields(self):
        # Conditional writes arrived in botocore 1.35 and checksums in 1.24; the boto3 that
        # pip installs for Python 3.6 may lack them.
        return set(self.client.meta.service_model.operation_model("PutObject").input_shape.members)

    def publish(self, artifact_dir, files):
        """Upload every file create-only, manifest.json last: publish treats a cell without a
        manifest as not built. The HEAD first fails fast, before the large uploads."""
        manifest_key = self.key(artifact_dir + "/manifest.json")
        try:
            self.client.head_object(Bucket=self.bucket, Key=manifest_key)
            raise BuildError(
                "upload", "{} already exists; builds are never overwritten".format(manifest_key), record=False
            )
        except BuildError:
            raise
        except Exception as error:  # botocore ClientError 404 = free
            code = getattr(error, "response", {}).get("Error", {}).get("Code")
            if code not in ("404", "NoSuchKey", "NotFound"):
                raise
        for name, path in files:
            self._put(self.key(artifact_dir + "/" + name), path)

    def write_logs(self, log_dir, files):
        # Create-only too: a build number's failure record is written once.
        for name, path in files:
            self._put(self.key(log_dir + "/" + name), path)


def _add_if_none_match(request, **kwargs):
    """botocore before-sign hook: the If-None-Match header that an old botocore cannot model."""
    if "If-None-Match" not in request.headers:
        request.headers["If-None-Match"] = "*"


def open_store(store):
    return S3Store(store) if store_kind(store) == "s3" else LocalStore(store)


# ---------------------------------------------------------------------------
# Running things, with a full log and phase timing
# ---------------------------------------------------------------------------


def say(message):
    sys.stdout.write("buildfarm: " + message + "\n")
    sys.stdout.flush()


class Log(object):
    """The full build log (every command and its output), plus the current phase's lines."""

    def __init__(self, path):
        self.path = path
        self.handle = open(path, "w")  # noqa: SIM115 - open for the whole build, closed in close()
        self.phase_lines = []

    def write(self, text):
        self.handle.write(text)
        self.handle.flush()
        self.phase_lines.extend(text.splitlines())
        if len(self.phase_lines) > 5000:
            del self.phase_lines[:-1000]

    def start_phase(self, phase):
        self.phase_lines = []
        self.write("\n===== phase {} ({})\n".format(phase, utc_now()))

    def tail(self, count=TAIL_LINES):
        """The phase's last lines, preceded by earlier error lines (parallel make often
        prints the real error long before it stops)."""
        last = self.phase_lines[-count:]
        earlier = self.phase_lines[:-count]
        errors = [line for line in earlier if _ERROR_LINE.search(line)][-10:]
        return [*errors, "...", *last] if errors else last

    def close(self):
        self.handle.close()


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(log, phase, argv, cwd=None, env=None, check=True):
    """Run argv (never through a shell), output into the log; BuildError on failure."""
    try:
        code, output = process.stream(log, argv, cwd=cwd, env=env)
    except OSError as error:
        raise BuildError(phase, "cannot run {}: {}".format(argv[0], error)) from None
    if check and code != 0:
        raise BuildError(phase, "{} exited with status {}".format(" ".join(argv[:3]), code))
    return code, output


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_elf(path):
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"\x7fELF"
    except OSError:
        return False


def walk_files(root):
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                yield path


def tree_size(root):
    return sum(os.lstat(path).st_size for path in walk_files(root))


# ---------------------------------------------------------------------------
# The build
# ---------------------------------------------------------------------------


class Build(object):
    def __init__(self, spec, registry, work):
        self.spec = spec
        self.registry = registry
        self.platform = platform_info(registry, spec["platform"], spec["arch"])
        self.bolt = bolt_config(spec["version"], spec["optimization"], self.platform)
        self.work = work
        self.version = spec["version"]
        self.prefix = spec["prefix"].rstrip("/") or "/"
        self.src = os.path.join(work, "Python-" + self.version)
        self.destdir = os.path.join(work, "staging")
        self.tree = os.path.join(self.destdir, self.prefix.lstrip("/"))
        self.out = os.path.join(work, "out")
        self.log = Log(os.path.join(work, "build.log"))
        self.timings = {}
        self.store = None
        self.configure_argv = []
        self._makefile = None
        self.modules = {}
        self.selftest_results = {}
        self.hardening = {}
        self.python_info = {}
        self.artifacts = []
        # An allow-list, not os.environ: nothing from the caller's shell reaches the build.
        self.home = os.path.join(work, "home")
        os.makedirs(self.home, exist_ok=True)
        self.env = buildenv.child_env(os.environ, self.home, self._has_c_utf8())

    @staticmethod
    def _has_c_utf8():
        return os.path.isdir("/usr/lib/locale/C.utf8") or os.path.isdir("/usr/lib/locale/C.UTF-8")

    @property
    def minor(self):
        return parse_version(self.version)[1]

    @property
    def python_bin(self):
        return "python{}.{}".format(3, self.minor)

    # -- phases -----------------------------------------------------------

    def preflight(self):
        self.store = open_store(self.spec["store"])
        if self.store.cell_exists(self.spec["artifact_dir"]):
            raise BuildError(
                "preflight",
                "{}/{} already exists; builds are never overwritten (use the next build number)".format(
                    self.store.describe(), self.spec["artifact_dir"]
                ),
                record=False,
            )
        if os.environ.get("BUILDFARM_CHECK_BUILD_DEPS", "1") != "0":
            missing = self.missing_build_dependencies()
            if missing:
                raise BuildError("preflight", "missing build dependencies: " + " ".join(missing))
        tools = ["make", "tar", "strip", "readelf"]
        tools.append("dpkg-deb" if self.platform["package_format"] == "deb" else "rpmbuild")
        absent = [tool for tool in tools if not shutil.which(tool)]
        if absent:
            raise BuildError("preflight", "missing build tools: " + " ".join(absent))

    def missing_build_dependencies(self):
        deps = self.platform["build_dependencies"]
        if self.platform["package_format"] == "deb":
            if not shutil.which("dpkg-query"):
                return []
            missing = []
            for dep in deps:
                code, output = run(
                    self.log,
                    "preflight",
                    ["dpkg-query", "-W", "-f=${Status}\\n", dep],
                    env=self.env,
                    check=False,
                )
                if code != 0 or "install ok installed" not in output:
                    missing.append(dep)
            return missing
        if not shutil.which("rpm"):
            return []
        missing = []
        for dep in deps:
            code, _ = run(
                self.log, "preflight", ["rpm", "-q", "--whatprovides", dep], env=self.env, check=False
            )
            if code != 0:
                missing.append(dep)
        return missing

    def fetch(self):
        url = self.spec["source"]["url"]
        self.tarball = os.path.join(self.work, url.rstrip("/").rsplit("/", 1)[-1] or "source.tar.xz")
        self.log.write("fetching {}\n".format(url))
        if url.startswith("file://"):
            shutil.copyfile(url[len("file://") :], self.tarball)
            return
        import urllib.request  # not in Debian's python3-minimal; only needed here

        last_error = None
        for attempt in range(3):
            try:
                request = urllib.request.Request(url, headers={"User-Agent": "python-build-farm"})  # noqa: S310
                response = urllib.request.urlopen(request, timeout=60)  # noqa: S310 - http(s) only
                with response, open(self.tarball, "wb") as out:
                    shutil.copyfileobj(response, out, 1 << 20)
                return
            except Exception as error:  # network errors and HTTP errors alike; retried
                last_error = error
                self.log.write("attempt {} failed: {}\n".format(attempt + 1, error))
                code = getattr(error, "code", None)
                if code in (403, 404):
                    break
                time.sleep(2 * (attempt + 1))
        raise BuildError("fetch", "cannot download {}: {}".format(url, last_error))

    def verify(self):
        expected = self.spec["source"]["sha256"]
        actual = sha256_of(self.tarball)
        self.log.write("sha256 {} (expected {})\n".format(actual, expected))
        if actual != expected:
            raise BuildError(
                "verify", "sha256 mismatch for {}: expected {}, got {}".format(self.tarball, expected, actual)
            )

    def configure(self):
        run(self.log, "configure", ["tar", "-xf", self.tarball, "-C", self.work], env=self.env)
        if not os.path.isfile(os.path.join(self.src, "configure")):
            raise BuildError(
                "configure", "the source tarball has no Python-{}/configure".format(self.version)
            )
        self.configure_argv = configure_args(self.version, self.spec["optimization"], self.prefix, self.bolt)
        stdlib_setup = os.path.join(self.src, "Modules", "Setup.stdlib.in")
        if os.path.isfile(stdlib_setup):  # 3.11+; configure turns Setup.local into rules
            with open(stdlib_setup) as handle:
                text = setup_local(handle.read(), by_series.builtin_modules(self.version))
            with open(os.path.join(self.src, "Modules", "Setup.local"), "w") as handle:
                handle.write(text)
            self.log.write(text)
        env = dict(self.build_env())
        env.update(configure_env(self.version, self.bolt))
        run(self.log, "configure", ["./configure", *self.configure_argv], cwd=self.src, env=env)

    def build_env(self):
        env = dict(self.env)
        ccache = shutil.which("ccache", path=env["PATH"])
        if os.environ.get("BUILDFARM_CCACHE") == "1" and ccache:
            # ccache by masquerading (compiler names on PATH): CC stays "gcc", so the
            # sysconfig data that extensions are built with never mentions ccache.
            shims = os.path.join(self.work, "ccache-bin")
            if not os.path.isdir(shims):
                os.makedirs(shims)
                for name in ("gcc", "cc", "g++", "c++"):
                    os.symlink(ccache, os.path.join(shims, name))
            env = buildenv.ccache_env(env, os.environ, shims, self.work)
        return env

    @property
    def jobs(self):
        return os.environ.get("BUILDFARM_JOBS") or str(os.cpu_count() or 1)

    def makefile(self):
        """The configured Makefile's variables (read once; configure ran before)."""
        if self._makefile is None:
            with open(os.path.join(self.src, "Makefile")) as handle:
                self._makefile = makefile_variables(handle.read())
        return self._makefile

    def make_env(self):
        env = self.build_env()
        path = os.path.join(self.work, "buildfarm.mk")
        if not os.path.isfile(path):
            fragment = make_fragment(self.version, self.makefile(), self.bolt)
            if not fragment:
                return env
            with open(path, "w") as handle:
                handle.write(fragment)
        env["MAKEFILES"] = path
        return env

    def make(self):
        profile_task = os.environ.get("BUILDFARM_PROFILE_TASK") or default_profile_task(
            self.jobs, self.version
        )
        steps = make_steps(
            self.jobs, self.version, self.spec["optimization"], self.makefile(), profile_task, self.bolt
        )
        env = self.make_env()
        for what, argv in steps:
            started = time.time()
            run(self.log, "make", argv, cwd=self.src, env=env)
            self.log.write("buildfarm: make: {} done in {:.1f} s\n".format(what, time.time() - started))

    def install(self):
        if os.path.exists(self.destdir):
            shutil.rmtree(self.destdir)
        run(
            self.log,
            "install",
            install_argv(self.version, self.spec["optimization"], self.makefile(), self.destdir, self.bolt),
            cwd=self.src,
            env=self.make_env(),
        )
        if not os.path.isfile(os.path.join(self.tree, "bin", self.python_bin)):
            raise BuildError("install", "no bin/{} in the staged tree".format(self.python_bin))
        self.strip_binaries()
        self.make_scripts_relocatable()
        self.make_config_relocatable()
        self.check_linkage()

    def strip_binaries(self):
        for path in walk_files(self.tree):
            if is_elf(path):
                mode = os.stat(path).st_mode
                os.chmod(path, mode | stat.S_IWUSR)
                run(self.log, "install", ["strip", "--strip-unneeded", path], env=self.env)
                if ".so" in os.path.basename(path):
                    mode &= ~(stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)  # libraries are not programs
                os.chmod(path, mode)

    def make_scripts_relocatable(self):
        bindir = os.path.join(self.tree, "bin")
        for name in sorted(os.listdir(bindir)):
            path = os.path.join(bindir, name)
            if os.path.islink(path) or not os.path.isfile(path) or is_elf(path):
                continue
            with open(path, "rb") as handle:
                content = handle.read()
            rewritten = rewrite_shebang(content, self.python_bin)
            if rewritten is not None:
                with open(path, "wb") as handle:
                    handle.write(rewritten)
                self.log.write("relocatable shebang: bin/{}\n".format(name))

    def make_config_relocatable(self):
        """sysconfig data and pkg-config files computed relative to the tree (relocation.py)."""
        libdir = os.path.join(self.tree, "lib", self.python_bin)
        for name in sorted(os.listdir(libdir)):
            if name.startswith("_sysconfigdata_") and name.endswith(".py"):
                self._rewrite(os.path.join(libdir, name), relocation.relocatable_sysconfigdata)
                python = os.path.join(self.tree, "bin", self.python_bin)
                # Refresh its bytecode (all three levels install wrote), named as installed.
                installed_dir = os.path.join(self.prefix, "lib", self.python_bin)
                argv = [python, "-c", RECOMPILE_SCRIPT, os.path.join(libdir, name), installed_dir]
                run(self.log, "install", argv, env=self.env)
        pkgconfig = os.path.join(self.tree, "lib", "pkgconfig")
        for name in sorted(os.listdir(pkgconfig)):
            path = os.path.join(pkgconfig, name)
            if name.endswith(".pc") and not os.path.islink(path):
                self._rewrite(path, relocation.relocatable_pc)

    def _rewrite(self, path, transform):
        with open(path) as handle:
            text = handle.read()
        with open(path, "w") as handle:
            handle.write(transform(text, self.prefix))
        self.log.write("relocatable: {}\n".format(os.path.relpath(path, self.tree)))

    def check_linkage(self):
        binary = os.path.join(self.tree, "bin", self.python_bin)
        _, output = run(self.log, "install", ["readelf", "-d", binary], env=self.env)
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", output)
        links_libpython = any(name.startswith("libpython") for name in needed)
        if static_interpreter(self.version, self.makefile()) == links_libpython:
            raise BuildError(
                "install",
                "bin/{} {} libpython.so, expected the opposite".format(
                    self.python_bin, "needs" if links_libpython else "does not need"
                ),
            )
        if not any(name.startswith("libpython3.") for name in os.listdir(os.path.join(self.tree, "lib"))):
            raise BuildError("install", "no libpython3.x.so in lib/ (embedders need it)")
        match = re.search(r"\((?:RUNPATH|RPATH)\)\s+Library (?:runpath|rpath): \[([^\]]*)\]", output)
        runpath = match.group(1) if match else None
        if runpath != EXPECTED_RUNPATH:
            raise BuildError(
                "install",
                "bin/{} has runpath {!r}, expected {!r}".format(self.python_bin, runpath, EXPECTED_RUNPATH),
            )

    def selftest_env(self):
        env = dict(self.env)  # already an allow-list: no PYTHON*, PIP_*, LD_LIBRARY_PATH
        env["PYTHONNOUSERSITE"] = "1"
        env["PIP_NO_INDEX"] = "1"
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        return env

    def selftest(self):
        """The hardening check of every ELF file (first: it takes a second), then
        selftest.py's checks on the staged tree; BUILDFARM_SELFTEST_TESTS overrides the
        series' test list (series.selftest_tests())."""
        self.check_hardening()
        tests = os.environ.get("BUILDFARM_SELFTEST_TESTS")
        context = selftest.Context(
            self.tree,
            self.version,
            self.platform,
            self.src,
            os.path.join(self.work, "selftest"),
            self.log,
            self.selftest_env(),
            tests=tests.split() if tests is not None else None,
            jobs=self.jobs,
        )
        try:
            self.selftest_results.update(selftest.selftest(context))
        except selftest.SelftestError as error:
            raise BuildError("selftest", str(error)) from None
        finally:
            self.python_info = context.python_info
            self.modules = context.modules
        shutil.rmtree(context.work, ignore_errors=True)

    def check_hardening(self):
        """NX stack, full RELRO, PIE, canaries and FORTIFY of every ELF file the packages
        ship (hardening.py); a violation fails the build naming the file and property.
        A BOLTed interpreter is position-dependent (CPython links it -no-pie, as Debian
        links its python3): recorded with that reason, not hidden."""
        position_dependent = {}
        if self.bolt:
            position_dependent["bin/" + self.python_bin] = "BOLT, as Debian's python3"
        self.hardening, violations = hardening.check_tree(self.tree, position_dependent)
        for path, row in sorted(self.hardening.items()):
            self.log.write("hardening: {} {}\n".format(path, json.dumps(row, sort_keys=True)))
        if violations:
            raise BuildError("selftest", "hardening: " + "; ".join(violations[:10]))
        self.selftest_results["hardening"] = "ok ({} ELF files: NX stack, full RELRO{})".format(
            len(self.hardening), ", PIE" if not position_dependent else ", PIE but the BOLTed interpreter"
        )

    def package(self):
        os.makedirs(self.out, exist_ok=True)
        spec = self.spec
        tarball = os.path.join(self.out, tarball_name(self.version, spec["platform"], spec["arch"]))
        write_tarball(self.tree, tarball)
        self.artifacts.append(("tarball", tarball))
        if self.platform["package_format"] == "deb":
            self.artifacts.append(("deb", self.build_deb()))
        else:
            self.artifacts.append(("rpm", self.build_rpm()))

    def build_deb(self):
        spec = self.spec
        root = os.path.join(self.work, "debroot")
        if os.path.exists(root):
            shutil.rmtree(root)
        target = os.path.join(root, self.prefix.lstrip("/"))
        shutil.copytree(self.tree, target, symlinks=True)
        name = package_name(self.version)
        doc = os.path.join(root, "usr", "share", "doc", name)
        os.makedirs(doc)
        shutil.copyfile(os.path.join(self.src, "LICENSE"), os.path.join(doc, "copyright"))
        changelog = (
            "{name} ({ver}-{build}) unstable; urgency=medium\n\n"
            "  * Built from the upstream CPython {version} source by the Python Build Farm.\n\n"
            " -- {maint}  {date}\n"
        ).format(
            name=name,
            ver=package_version(self.version),
            build=spec["build"],
            version=self.version,
            maint=maintainer(),
            date=time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()),
        )
        with gzip.GzipFile(os.path.join(doc, "changelog.Debian.gz"), "wb", mtime=0) as handle:
            handle.write(changelog.encode())
        overrides = os.path.join(root, "usr", "share", "lintian", "overrides")
        os.makedirs(overrides)
        with open(os.path.join(overrides, name), "w") as handle:
            handle.write(lintian_overrides(name))
        control_dir = os.path.join(root, "DEBIAN")
        os.makedirs(control_dir)
        with open(os.path.join(control_dir, "control"), "w") as handle:
            handle.write(
                deb_control(
                    self.version,
                    spec["build"],
                    spec["arch"],
                    self.platform["runtime_dependencies"],
                    (tree_size(root) + 1023) // 1024,
                    maintainer(),
                )
            )
        # Debian policy: files root-owned, directories 0755, no group/other write.
        for directory, dirs, files in os.walk(root):
            for entry in dirs:
                os.chmod(os.path.join(directory, entry), 0o755)  # noqa: S103 - Debian policy
            for entry in files:
                path = os.path.join(directory, entry)
                if not os.path.islink(path):
                    mode = os.lstat(path).st_mode
                    os.chmod(path, 0o755 if mode & stat.S_IXUSR else 0o644)
        os.chmod(root, 0o755)  # noqa: S103 - Debian policy
        with open(os.path.join(control_dir, "md5sums"), "w") as handle:
            for path in sorted(walk_files(root)):
                relative = os.path.relpath(path, root)
                if not relative.startswith("DEBIAN" + os.sep):
                    with open(path, "rb") as content:
                        digest = hashlib.md5(content.read()).hexdigest()  # noqa: S324 - dpkg's md5sums format
                        handle.write("{}  {}\n".format(digest, relative))
        os.chmod(os.path.join(control_dir, "md5sums"), 0o644)
        output = os.path.join(self.out, deb_name(self.version, spec["build"], spec["arch"]))
        # gzip: every dpkg reads it, and it is 3x faster to make than xz for ~10 MB more.
        run(
            self.log,
            "package",
            ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, output],
            env=self.env,
        )
        shutil.rmtree(root, ignore_errors=True)
        return output

    def build_rpm(self):
        spec = self.spec
        topdir = os.path.join(self.work, "rpmbuild")
        for sub in ("SPECS", "RPMS", "BUILD", "BUILDROOT", "SOURCES"):
            os.makedirs(os.path.join(topdir, sub), exist_ok=True)
        spec_path = os.path.join(topdir, "SPECS", "python.spec")
        with open(spec_path, "w") as handle:
            handle.write(
                rpm_spec(
                    self.version,
                    spec["build"],
                    spec["arch"],
                    self.platform["runtime_dependencies"],
                    self.destdir,
                    self.prefix,
                )
            )
        run(
            self.log,
            "package",
            [
                "rpmbuild",
                "-bb",
                "--target",
                RPM_ARCH[spec["arch"]],
                "--define",
                "_topdir " + topdir,
                "--define",
                "_binary_payload w6.gzdio",  # fast; every rpm reads gzip
                spec_path,
            ],
            env=self.env,
        )
        built = []
        for directory, _dirs, files in os.walk(os.path.join(topdir, "RPMS")):
            built.extend(os.path.join(directory, name) for name in files if name.endswith(".rpm"))
        if len(built) != 1:
            raise BuildError("package", "rpmbuild produced {} packages, expected 1".format(len(built)))
        output = os.path.join(self.out, rpm_name(self.version, spec["build"], spec["arch"]))
        shutil.move(built[0], output)
        shutil.rmtree(topdir, ignore_errors=True)
        return output

    def write_manifest(self):
        entries = []
        for kind, path in self.artifacts:
            entries.append(
                {
                    "type": kind,
                    "file": os.path.basename(path),
                    "sha256": sha256_of(path),
                    "size": os.path.getsize(path),
                }
            )
        sums = os.path.join(self.out, "SHA256SUMS")
        with open(sums, "w") as handle:
            for entry in entries:
                handle.write("{}  {}\n".format(entry["sha256"], entry["file"]))
        manifest = {
            "schema_version": 1,
            "spec": self.spec,
            "python": self.python_info,
            "platform": {
                "id": self.spec["platform"],
                "family": self.platform["family"],
                "arch": self.spec["arch"],
                "glibc": self.python_info.get("glibc"),
                "compiler": compiler_version(self.env),
                "os_release": os_release_pretty(),
                "runtime_dependencies": self.platform["runtime_dependencies"],
            },
            "configure_args": self.configure_argv,
            "configure_env": configure_env(self.version, self.bolt),
            "modules": self.modules,
            "selftest": self.selftest_results,
            "hardening": self.hardening,
            "timings": dict(self.timings),
            "artifacts": entries,
            "builder_image": os.environ.get("BUILDFARM_BUILDER_IMAGE") or "local:" + os_release_pretty(),
            "driver_version": DRIVER_VERSION,
            "driver_python": sys.version.split()[0],
            "built_at": utc_now(),
        }
        self.manifest_path = os.path.join(self.out, "manifest.json")
        self.manifest = manifest
        self.sums_path = sums

    def upload(self):
        # The manifest records timings up to here; its own upload is the last step.
        with open(self.manifest_path, "w") as handle:
            json.dump(self.manifest, handle, indent=2, sort_keys=True)
            handle.write("\n")
        self.log.write("publishing to {}/{}\n".format(self.store.describe(), self.spec["artifact_dir"]))
        self.log.handle.flush()
        files = [(os.path.basename(path), path) for _, path in self.artifacts]
        files += [
            ("SHA256SUMS", self.sums_path),
            ("build.log", self.log.path),
            ("manifest.json", self.manifest_path),
        ]
        self.store.publish(self.spec["artifact_dir"], files)


RECOMPILE_SCRIPT = r"""
import compileall, sys
for level in (0, 1, 2):
    compileall.compile_file(sys.argv[1], ddir=sys.argv[2], force=True, quiet=1, optimize=level)
"""


def write_tarball(tree, output):
    """The install_only shape uv and python-build-standalone use: top folder python/."""

    def owned_by_root(info):
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(output, "w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as archive:
        archive.add(tree, arcname="python", filter=owned_by_root)


def lintian_overrides(name):
    """Tags inherent to a self-contained interpreter under /opt, each with its reason."""
    reasons = [
        ("dir-or-file-in-opt", "", "installs under /opt/python/<version> so versions sit side by side"),
        ("package-installs-python-pycache-dir", "", "the stdlib's bytecode; no system python compiles it"),
        ("python3-script-but-no-python3-dep", "", "upstream stdlib shebangs; they run with this interpreter"),
        (
            "shell-script-fails-syntax-check",
            "[opt/python/*/bin/*]",
            "relocatable sh/python trampolines: sh execs the interpreter on line 2",
        ),
        ("embedded-library", "", "upstream CPython bundles expat, libmpdec and HACL* into its modules"),
        ("library-not-linked-against-libc", "", "a tiny extension module that needs no libc symbol"),
        ("shared-library-lacks-prerequisites", "", "extension modules take symbols from the interpreter"),
        ("unusual-interpreter", "", "upstream stdlib and pip files with '#!python' shebangs"),
        ("script-not-executable", "", "upstream pip modules with a shebang; not meant to be run"),
        ("new-package-should-not-package-python2-module", "", "python-<version> is Python 3, not a module"),
        ("initial-upload-closes-no-bugs", "", "built by the farm, never uploaded to Debian"),
    ]
    lines = []
    for tag, context, reason in reasons:
        lines.append("# " + reason)
        lines.append("{}: {}{}".format(name, tag, (" " + context) if context else ""))
    return "\n".join(lines) + "\n"


def maintainer():
    return os.environ.get("BUILDFARM_MAINTAINER") or "Python Build Farm <python-build-farm@example.org>"


def compiler_version(env):
    try:
        child = subprocess.Popen(
            ["gcc", "--version"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            universal_newlines=True,
            env=env,
        )
        output = child.communicate()[0]
        return output.splitlines()[0] if output else None
    except OSError:
        return None


def os_release_pretty():
    try:
        with open("/etc/os-release") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown"


# ---------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------


class Interrupted(BaseException):
    pass


def _on_signal(signum, _frame):
    raise Interrupted("signal {}".format(signum))


def execute(spec, registry, work):
    """Run every phase; on failure write logs/.../build.log + failure.json. Returns a result dict."""
    build = Build(spec, registry, work)
    steps = (
        ("preflight", build.preflight),
        ("fetch", build.fetch),
        ("verify", build.verify),
        ("configure", build.configure),
        ("make", build.make),
        ("install", build.install),
        ("selftest", build.selftest),
        ("package", build.package),
        ("manifest", build.write_manifest),
        ("upload", build.upload),
    )
    say(
        "building CPython {} for {} {} (build {}, optimization {})".format(
            spec["version"], spec["platform"], spec["arch"], spec["build"], spec["optimization"]
        )
    )
    stop_after = os.environ.get("BUILDFARM_STOP_AFTER")  # checked by main()
    if stop_after:
        steps = steps[: [name for name, _ in steps].index(stop_after) + 1]
    phase = "preflight"
    try:
        for phase, step in steps:
            build.log.start_phase(phase)
            say("phase {} ...".format(phase))
            started = time.monotonic()
            step()
            elapsed = time.monotonic() - started
            build.timings[phase] = round(elapsed, 1)
            build.log.write("phase {} done in {:.1f} s\n".format(phase, elapsed))
            say("phase {} done in {:.1f} s".format(phase, elapsed))
    except (BuildError, Interrupted, KeyboardInterrupt, Exception) as error:
        if isinstance(error, BuildError):
            failed_phase, reason = error.phase, error.reason
        elif isinstance(error, Interrupted):
            failed_phase, reason = phase, "interrupted ({})".format(error)
        else:
            failed_phase, reason = phase, "{}: {}".format(type(error).__name__, error)
            build.log.write(traceback.format_exc())
        tail = build.log.tail()
        build.log.write("\nFAILED in phase {}: {}\n".format(failed_phase, reason))
        say("phase {} FAILED: {}".format(failed_phase, reason))
        if tail:
            sys.stdout.write("buildfarm: last lines of phase {}:\n".format(failed_phase))
            for line in tail:
                sys.stdout.write("    " + line + "\n")
        build.log.close()
        if getattr(error, "record", True):
            record_failure(build, failed_phase, reason, tail)
        else:
            copy_log(build.log.path)
        return {"ok": False, "phase": failed_phase, "reason": reason}
    build.log.close()
    copy_log(build.log.path)
    if stop_after and stop_after != "upload":
        say("stopped after phase {} (BUILDFARM_STOP_AFTER); nothing published".format(stop_after))
        return {"ok": True, "phase": None, "reason": None, "stopped_after": stop_after, "work": work}
    say("published {}/{}".format(build.store.describe(), spec["artifact_dir"]))
    return {"ok": True, "phase": None, "reason": None, "artifact_dir": spec["artifact_dir"]}


def copy_log(path):
    target = os.environ.get("BUILDFARM_LOG_FILE")
    if target:
        try:
            shutil.copyfile(path, target)
        except OSError as error:
            say("cannot copy the log to {}: {}".format(target, error))


def record_failure(build, phase, reason, tail):
    """logs/<v>/<p>/<a>/<b>/build.log + failure.json; nothing under builds/."""
    copy_log(build.log.path)
    failure_path = os.path.join(build.work, "failure.json")
    with open(failure_path, "w") as handle:
        json.dump({"phase": phase, "reason": reason, "tail": tail, "failed_at": utc_now()}, handle, indent=2)
        handle.write("\n")
    try:
        store = build.store or open_store(build.spec["store"])
        store.write_logs(
            log_dir_for(build.spec), [("build.log", build.log.path), ("failure.json", failure_path)]
        )
    except Exception as error:  # the failure itself is already reported; keep going
        say("cannot write the failure record to the store: {}".format(error))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 3 and argv[0] == "--build-dependencies":
        # For the Dockerfiles: the registry's package list for a platform and arch, one per line.
        try:
            print("\n".join(platform_info(load_platforms(), argv[1], argv[2])["build_dependencies"]))
        except SpecError as error:
            say("error: {}".format(error))
            return 2
        return 0
    if argv:
        say("usage: BUILD_SPEC='{...}' build.py   (or: build.py --build-dependencies PLATFORM ARCH)")
        return 2
    signal.signal(signal.SIGTERM, _on_signal)
    text = os.environ.get("BUILD_SPEC")
    if not text:
        say("error: BUILD_SPEC is not set (the build spec JSON goes in the environment)")
        return 2
    try:
        registry = load_platforms()
        spec = parse_spec(text, registry)
        if os.environ.get("BUILDFARM_STOP_AFTER", PHASES[-1]) not in PHASES:
            raise SpecError("BUILDFARM_STOP_AFTER must be one of: " + ", ".join(PHASES))
    except (SpecError, OSError, ValueError) as error:
        say("error: {}".format(error))
        return 2
    work_parent = os.environ.get("BUILDFARM_WORK_DIR")
    if work_parent:
        os.makedirs(work_parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix="build-{}-{}-".format(spec["version"], spec["platform"]), dir=work_parent)
    try:
        result = execute(spec, registry, work)
    finally:
        if os.environ.get("BUILDFARM_KEEP_WORK") != "1":
            shutil.rmtree(work, ignore_errors=True)
        else:
            say("work directory kept: " + work)
    say("result " + json.dumps(result, sort_keys=True))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
