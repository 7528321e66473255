"""Compiler and make flags of a build: ./configure's arguments and environment, the make
variables of CPython's PGO stages, the modules built into libpython. Pure functions of the
version, the optimization, the configured Makefile and the platform's BOLT entry; standard
library only, Python 3.6+."""

import re

from . import llvm_bolt, series
from .errors import SpecError
from .spec import parse_version

# -fstack-protector, not -strong, as Debian builds its python3: -strong also instruments
# most of the interpreter's hot functions (anything with a local array or address taken).
HARDENING_CFLAGS = "-fstack-protector -D_FORTIFY_SOURCE=2"
HARDENING_LDFLAGS = "-Wl,-z,relro,-z,now"
# The interpreter and its extension modules find libpython relative to themselves.
# The doubled $ survives make (which turns $$ into $), the backslash survives the
# shell that runs the link recipe; the linker then records exactly $ORIGIN/../lib.
RPATH_LDFLAG_FOR_MAKE = "-Wl,-rpath,\\$$ORIGIN/../lib"
# What CPython's configure adds to CFLAGS_NODIST/LDFLAGS_NODIST for GCC with --with-lto.
CPYTHON_GCC_LTO_FLAGS = ("-flto", "-fuse-linker-plugin", "-ffat-lto-objects", "-flto-partition=none")
# Partitioned LTO on all cores (CPython's GCC flags since 3.14, gh-132257 and gh-137403:
# "no noticeable loss in performance"), for series whose two LTO links run one after the
# other (see make_variables()).
PARALLEL_LTO_FLAGS = {"-flto": "-flto=auto", "-flto-partition=none": None}
DEBUG_FLAGS = ("-g",)
# Appended to setup.py's flags in the instrumented build (series.modules_by_setup_py()): the
# extension modules it builds then compile and link without LTO and debug info, like the core.
INSTRUMENTED_SETUP_PY_FLAGS = "-fno-lto -g0"
# CPython's --with-lto compiles fat objects (machine code beside the LTO bytecode) for the
# programs it links from them without LTO. The final PGO build compiles slim ones (GCC 12,
# 3.11.2 with its flags: ceval.c 1.0 s instead of 6.5, unicodeobject.c 1.7 s instead of 12.8):
# no series links them without LTO there (see frozen_by_bootstrap()).
FAT_LTO_FLAGS = ("-ffat-lto-objects",)
FINAL_SETUP_PY_FLAGS = "-fno-fat-lto-objects"
# The prerequisites that make the frozen modules' files wait for the programs that write them.
FROZEN_DEPS_VARIABLES = ("FREEZE_MODULE_BOOTSTRAP_DEPS", "FREEZE_MODULE_DEPS")
# GCC's share (per mille) of the profiled time whose blocks count as hot (series.PGO_HOT_PERMILLE).
PGO_HOT_PARAM = "--param=hot-bb-count-ws-permille={}"
PGO_PARTIAL_TRAINING_FLAG = "-fprofile-partial-training"

_SETUP_STDLIB_LINE = re.compile(r"^@MODULE_[A-Z0-9_]+_TRUE@(\S+)\s+(.*)$")
_MAKEFILE_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:?=(.*)$")


def bolt_config(version, optimization, platform):
    """The platform's "bolt" entry (platform_info()) when this build is BOLT-optimized, else
    None: pgo+lto builds of 3.9+ (llvm_bolt.supported()) where the platform has
    llvm-bolt for the arch ("tools": its directory)."""
    if optimization != "pgo+lto" or not llvm_bolt.supported(version):
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
        if bolt and llvm_bolt.by_configure(version):
            args.append("--enable-bolt")  # 3.9-3.11: llvm_bolt.nodist_flags() and the fragment
    elif optimization != "none":
        raise SpecError("unknown optimization {!r}".format(optimization))
    if minor >= 10:
        # 3.10 added both; for 3.9, make install leaves the tests and libpython3.9.a out
        # (series.install_variables()); it still builds the test modules.
        args += ["--disable-test-modules", "--without-static-libpython"]
    if minor >= 15:
        # Upstream's name for what make_variables() does for older versions.
        args.append("--enable-static-libpython-for-interpreter")
    return args


def configure_env(version, bolt=None, shell=None):
    """Environment for ./configure only (not make, so flags are not doubled).

    Hardening and the rpath go through the *_NODIST variables: they apply to the
    interpreter's own build but are not recorded for extensions built later. BOLT's
    tools are named by path: distributions install them versioned, off PATH. shell: the
    platform family's configure_shell (CONFIG_SHELL), where the registry names one.
    """
    parse_version(version)
    env = {
        "CFLAGS_NODIST": HARDENING_CFLAGS,
        "LDFLAGS_NODIST": HARDENING_LDFLAGS + " " + RPATH_LDFLAG_FOR_MAKE,
    }
    interposition = series.semantic_interposition_cflags(version)
    if interposition:
        env = {name: value + " " + interposition for name, value in env.items()}
    if bolt:
        env.update(bolt_tools(bolt))
        for name, flags in llvm_bolt.nodist_flags(version).items():
            env[name] += " " + flags
    if shell:
        env["CONFIG_SHELL"] = shell
    return env


def bolt_tools(bolt):
    tools = bolt["tools"].rstrip("/")
    return {"LLVM_BOLT": tools + "/llvm-bolt", "MERGE_FDATA": tools + "/merge-fdata"}


def setup_local(setup_stdlib_in, modules=series.BUILTIN_MODULES):
    """Modules/Setup.local (read by configure) building `modules` in, with CPython's own
    lines for them from Modules/Setup.stdlib.in (3.11+) minus the enabled-if marker."""
    lines = [
        "# Written by the build farm's driver (builder_image/driver): modules built into libpython.",
        "*static*",
    ]
    for line in setup_stdlib_in.splitlines():
        match = _SETUP_STDLIB_LINE.match(line)
        if match and match.group(1) in modules:
            lines.append(match.group(1) + " " + match.group(2))
    return "\n".join(lines) + "\n"


def makefile_variables(text):
    """NAME=value assignments of a configure-generated Makefile (values as written, a
    value continued over backslash-ended lines joined into one, as make reads it)."""
    variables = {}
    for line in text.replace("\\\n", " ").splitlines():
        match = _MAKEFILE_ASSIGNMENT.match(line)
        if match:
            variables[match.group(1)] = match.group(2).strip()
    return variables


def _without(value, flags):
    return _substituted(value, dict.fromkeys(flags))


def _substituted(value, substitutions):
    """value's words with substitutions applied (a word mapped to None is dropped)."""
    words = (substitutions.get(word, word) for word in value.split())
    return " ".join(word for word in words if word)


def static_interpreter(version, makefile):
    """Whether bin/python links libpython's objects: 3.15 has a configure option; older
    versions take make variables, LINK_PYTHON_OBJS where the Makefile has it (3.11-3.14)
    or else BLDLIBRARY, which the interpreter's link line names (3.9, 3.10)."""
    return parse_version(version)[1] >= 15 or "LINK_PYTHON_OBJS" in makefile or "BLDLIBRARY" in makefile


def static_interpreter_by_make(version, makefile):
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
      so the profile is the same and the single-threaded LTO link happens once. Where
      setup.py builds the extension modules, CFLAGS_NODIST/LDFLAGS_NODIST carry that to
      them (3.11.2: 25 s instead of 45 for setup.py's step);
    - where the series has one (series.pgo_hot_permille()), the final build treats more
      of the profiled code as hot than GCC's default does, and where the series says so
      (series.pgo_partial_training()) it keeps code the training never ran optimized for
      speed;
    - 3.9 and 3.10, whose interpreter waits for libpython.so, link both with partitioned
      LTO on all cores (PARALLEL_LTO_FLAGS) instead of two single-threaded links in a row.
    With bolt (bolt_config()), BOLT optimizes the interpreter alone (it no longer runs
    libpython.so's code, so a profile of that would be empty), with CPython's flags but
    for the platform's substitutions (an older llvm-bolt lacks some of them).
    """
    common = {"OPT": _without(makefile.get("OPT", ""), DEBUG_FLAGS)}
    if static_interpreter_by_make(version, makefile):
        common.update(_static_interpreter_variables(version, makefile))
    if bolt:
        common.update(_bolt_variables(version, makefile, bolt))
    final = dict(common)
    instrumented = dict(common)
    for name in ("CONFIGURE_CFLAGS_NODIST", "CONFIGURE_LDFLAGS_NODIST"):
        value = makefile.get(name, "")
        # Slim LTO objects (FAT_LTO_FLAGS); a none build has no LTO flags to drop.
        final[name] = _without(value, DEBUG_FLAGS + FAT_LTO_FLAGS)
        if static_interpreter_by_bldlibrary(version, makefile):
            final[name] = _substituted(final[name], PARALLEL_LTO_FLAGS)
        instrumented[name] = _without(value, DEBUG_FLAGS + CPYTHON_GCC_LTO_FLAGS)
    if optimization == "none":
        return final, final
    if series.modules_by_setup_py(version):
        # PGO's instrumented stage appends -fprofile-generate to these (a recursive make).
        # The PGO run is no slower for it: 3.9.2's, whose hot modules (_decimal, _datetime,
        # _pickle, _json, ...) setup.py builds, took 169 s without LTO there, 153 s with it.
        instrumented["CFLAGS_NODIST"] = instrumented["LDFLAGS_NODIST"] = INSTRUMENTED_SETUP_PY_FLAGS
    return instrumented, _final_stage_variables(version, makefile, final)


def _final_stage_variables(version, makefile, final):
    """The final PGO+LTO build's, beyond the slim objects make_variables() asks for:
    setup.py's slim too (it appends the stage's CFLAGS_NODIST to the Makefile's flags);
    where build_all freezes modules with programs linked from the objects, their files
    kept from the instrumented build instead (frozen_by_bootstrap()); the series' hot share
    of the profile (pgo_hot_permille()) and partial training (pgo_partial_training())."""
    if series.modules_by_setup_py(version):
        final["CFLAGS_NODIST"] = FINAL_SETUP_PY_FLAGS
    if frozen_by_bootstrap(makefile):
        final.update((name, "") for name in FROZEN_DEPS_VARIABLES if name in makefile)
    permille = series.pgo_hot_permille(version)
    profile_flags = [PGO_HOT_PARAM.format(permille)] if permille else []
    if series.pgo_partial_training(version):
        profile_flags.append(PGO_PARTIAL_TRAINING_FLAG)
    if profile_flags:
        # Compile and LTO link: the profile is read where the whole of it is seen.
        for name in ("CONFIGURE_CFLAGS_NODIST", "CONFIGURE_LDFLAGS_NODIST"):
            final[name] = " ".join([final[name], *profile_flags]).strip()
    return final


def frozen_by_bootstrap(makefile):
    """build_all freezes modules with _bootstrap_python and Programs/_freeze_module (3.11+:
    FREEZE_MODULE_DEPS), programs CPython links from libpython's objects without LTO, which
    slim objects cannot do. Their output (Python/frozen_modules/*.h, 3.11-3.12's
    Python/deepfreeze/deepfreeze.c) depends only on the sources, so the driver keeps the
    instrumented build's copy (make.FROZEN_KEEP_RULES) and the final build, with
    FROZEN_DEPS_VARIABLES empty, neither links those programs nor rewrites the files.
    3.9 and 3.10 only freeze in `make regen-*`, from files that come with the source."""
    return "FREEZE_MODULE_DEPS" in makefile


def static_interpreter_by_bldlibrary(version, makefile):
    """3.9, 3.10: no LINK_PYTHON_OBJS; the interpreter's rule still waits for libpython.so."""
    return static_interpreter_by_make(version, makefile) and "LINK_PYTHON_OBJS" not in makefile


def _static_interpreter_variables(version, makefile):
    """make variables that link the interpreter with libpython's objects (before 3.15)."""
    if static_interpreter_by_bldlibrary(version, makefile):
        # 3.9, 3.10: the link line's $(BLDLIBRARY) (-L. -lpython3.X) becomes the objects.
        # The interpreter still waits for libpython.so, a prerequisite of its rule.
        return {"BLDLIBRARY": "$(LIBRARY_OBJS)"}
    # Not $(LIBRARY_DEPS): the interpreter no longer waits for libpython.so, so the two
    # long LTO links run side by side (make_fragment() keeps libpython.so built).
    return {"LINK_PYTHON_OBJS": "$(LIBRARY_OBJS)", "LINK_PYTHON_DEPS": "$(LIBRARY_OBJS) $(EXPORTSYMS)"}


def _bolt_variables(version, makefile, bolt):
    """BOLT's make variables: the interpreter alone where it links libpython's objects, then
    with the regex engine BOLTed (llvm_bolt.position_dependent_flags()); CPython 3.13's flags
    where the Makefile has none or older ones (llvm_bolt.tool_flags()), with the platform's
    substitutions last; for 3.9-3.11 the tools and the -no-pie LINKCC that 3.12+ configure
    provides."""
    variables = {}
    position_dependent = static_interpreter(version, makefile)
    if position_dependent:
        variables["BOLT_BINARIES"] = "$(BUILDPYTHON)"
    own = llvm_bolt.tool_flags(version)
    substitutions = bolt.get("flag_substitutions") or {}
    for index, name in enumerate(("BOLT_INSTRUMENT_FLAGS", "BOLT_APPLY_FLAGS")):
        makefiles = makefile.get(name, "").split()
        flags = own[index].split() if own else makefiles
        if position_dependent:
            flags = llvm_bolt.position_dependent_flags(flags)
        flags = [substitutions.get(flag, flag) for flag in flags]
        if own or flags != makefiles:
            variables[name] = " ".join(flags)
    linkcc = llvm_bolt.linkcc(version, makefile.get("LINKCC"))
    if linkcc:
        variables["LINKCC"] = linkcc
        variables.update(bolt_tools(bolt))
    return variables


def make_assignments(variables):
    """make command-line arguments NAME=value (passed as argv items, never through a shell)."""
    return ["{}={}".format(name, value) for name, value in sorted(variables.items())]


def install_argv(version, optimization, makefile, destdir, bolt=None):
    """make install with the final build's variables, so nothing is rebuilt differently."""
    _, final = make_variables(version, optimization, makefile, bolt)
    final.update(series.install_variables(version, makefile))
    return ["make", "install", "DESTDIR=" + destdir, *make_assignments(final)]
