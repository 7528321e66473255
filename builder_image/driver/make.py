"""The configure and make phases: unpack the source, Modules/Setup.local, ./configure with
flags.py's arguments; then make, or CPython's PGO stages (and BOLT), with a progress line
at least every 30 s (progress.py). Standard library only, Python 3.6+."""

import os
import shutil
import sys
import time

from . import buildenv, hardening, llvm_bolt, progress, relocation, series
from .errors import BuildError
from .flags import (
    configure_args,
    frozen_by_bootstrap,
    make_assignments,
    make_variables,
    setup_local,
    static_interpreter,
    static_interpreter_by_bldlibrary,
    static_interpreter_by_make,
)
from .process import run
from .spec import env_flag

HARDENING_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hardening.py")
# The steps of the make phase (make_steps()), and how each shows its progress
# (progress.Tracker.start_step()): whether it compiles the objects first, and its training
# run (PGO or BOLT), if any. The steps that restore PT_GNU_STACK and the frozen modules take
# a second: no progress.
BUILD_STEP = "build"
PGO_STEP = "instrumented build and profile run"
OPTIMIZED_STEP = "optimized build"
BOLT_STEP = "BOLT instrumented run and optimization"
GNU_STACK_STEP = "PT_GNU_STACK back into the BOLTed binaries"
FROZEN_STEP = "the instrumented build's frozen modules back"
STEP_PROGRESS = {
    BUILD_STEP: (True, None),
    PGO_STEP: (True, "pgo"),
    OPTIMIZED_STEP: (True, None),
    BOLT_STEP: (False, "bolt"),
}


def configure(build):
    run(build.log, "configure", ["tar", "-xf", build.tarball, "-C", build.work], env=build.env)
    if not os.path.isfile(os.path.join(build.src, "configure")):
        raise BuildError("configure", "the source tarball has no Python-{}/configure".format(build.version))
    build.configure_argv = configure_args(build.version, build.spec["optimization"], build.prefix, build.bolt)
    make_python_config_relocatable(build)
    stdlib_setup = os.path.join(build.src, "Modules", "Setup.stdlib.in")
    if os.path.isfile(stdlib_setup):  # 3.11+; configure turns Setup.local into rules
        with open(stdlib_setup) as handle:
            text = setup_local(handle.read(), series.builtin_modules(build.version))
        with open(os.path.join(build.src, "Modules", "Setup.local"), "w") as handle:
            handle.write(text)
        build.log.write(text)
    env = dict(build_env(build))
    env.update(build.configure_env)
    run(build.log, "configure", ["./configure", *build.configure_argv], cwd=build.src, env=env)


def make_python_config_relocatable(build):
    """Misc/python-config.sh.in, which configure turns into bin/python3.X-config, with its
    paths handled as data (relocation.relocatable_python_config()). A tree without it fails
    in configure itself, which names the file."""
    path = os.path.join(build.src, "Misc", "python-config.sh.in")
    if not os.path.isfile(path):
        return
    with open(path) as handle:
        text = handle.read()
    try:
        text = relocation.relocatable_python_config(text)
    except ValueError as error:
        raise BuildError("configure", "Misc/python-config.sh.in: {}".format(error)) from None
    with open(path, "w") as handle:
        handle.write(text)
    build.log.write("relocatable: Misc/python-config.sh.in (quoted paths)\n")


def make(build):
    profile_task = os.environ.get("BUILDFARM_PROFILE_TASK") or default_profile_task(build.jobs, build.version)
    steps = make_steps(
        build.jobs, build.version, build.spec["optimization"], build.makefile(), profile_task, build.bolt
    )
    env = make_env(build)
    # Every compiling step compiles the same objects: counted once, from the first one.
    objects = progress.dry_run_objects(steps[0][1], build.src, env)
    build.log.write(
        "progress: {} objects to compile\n".format(len(objects) if objects else "an unknown number of")
    )
    tracker = progress.Tracker(objects)
    audit = CompileAudit()

    def on_line(line):
        tracker.feed(line)
        audit.feed(line)

    stats_log = env.get("CCACHE_STATSLOG")
    stats_offset = _file_size(stats_log)
    for what, argv in steps:
        started = time.time()
        if what in STEP_PROGRESS:
            tracker.start_step(*STEP_PROGRESS[what])
            with progress.Ticker(tracker):
                run(build.log, "make", argv, cwd=build.src, env=env, on_line=on_line)
        else:
            run(build.log, "make", argv, cwd=build.src, env=env)
        build.log.write("buildfarm: make: {} done in {:.1f} s\n".format(what, time.time() - started))
        if stats_log:
            counts, stats_offset = ccache_counts(stats_log, stats_offset)
            if any(counts.values()):  # a step that compiles nothing (BOLT) says nothing
                build.log.write(
                    "buildfarm: make: {}: ccache {}\n".format(what, describe_ccache_counts(counts))
                )
    build.compile_commands = audit.check()


class CompileAudit(object):
    """The compile commands the make steps print (progress.compiled_object()), each checked
    for the hardening flags (hardening.compile_flag_gaps()), so that an object compiled
    without them fails the build even where its ELF file could not show it."""

    def __init__(self):
        self.commands = 0
        self.gaps = {}  # object file -> what its first command lacked

    def feed(self, line):
        target = progress.compiled_object(line)
        if target is None:
            return
        self.commands += 1
        gaps = hardening.compile_flag_gaps(line.split())
        if gaps:
            self.gaps.setdefault(target, gaps)

    def check(self):
        """The number of compile commands; BuildError naming the objects (up to ten) that
        lacked a flag, or if no command was seen (nothing would have been checked)."""
        if self.gaps:
            named = ["{} ({})".format(target, ", ".join(gaps)) for target, gaps in sorted(self.gaps.items())]
            raise BuildError("make", "compiled without hardening: " + "; ".join(named[:10]))
        if not self.commands:
            raise BuildError("make", "make printed no compile command: the hardening flags went unchecked")
        return self.commands


def build_env(build):
    """The children's environment, with ccache first on PATH when BUILDFARM_CCACHE=1."""
    env = dict(build.env)
    ccache = shutil.which("ccache", path=env["PATH"])
    if env_flag(os.environ, "BUILDFARM_CCACHE") and ccache:
        # ccache by masquerading (compiler names on PATH): CC stays "gcc", so the
        # sysconfig data that extensions are built with never mentions ccache.
        shims = os.path.join(build.work, "ccache-bin")
        if not os.path.isdir(shims):
            os.makedirs(shims)
            for name in ("gcc", "cc", "g++", "c++"):
                os.symlink(ccache, os.path.join(shims, name))
        env = buildenv.ccache_env(env, os.environ, shims, build.work)
        # Each compile's outcome, for the per-step counts in build.log (ccache 4.4+; older
        # ones ignore it). A file of this build's own: the cache's counters are shared.
        env.setdefault("CCACHE_STATSLOG", os.path.join(build.work, "ccache-stats.log"))
    return env


def _file_size(path):
    try:
        return os.path.getsize(path) if path else 0
    except OSError:
        return 0


def ccache_counts(path, offset):
    """({"hits", "misses", "uncacheable"}: how many compiler calls, new offset) from ccache's
    stats log (CCACHE_STATSLOG) after offset: a "# <input>" line per call, then one line per
    counter it bumped. A call with neither a hit nor cache_miss could not be cached (a link,
    an unsupported option, ...)."""
    counts = {"hits": 0, "misses": 0, "uncacheable": 0}
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read()
    except OSError:
        return counts, offset
    calls = []  # read after the step: every call of it has finished and written its lines
    for line in text.decode("utf-8", "replace").splitlines():
        if line.startswith("# "):
            calls.append(set())
        elif calls:
            calls[-1].add(line)
    for names in calls:
        if names & {"direct_cache_hit", "preprocessed_cache_hit"}:
            counts["hits"] += 1
        elif "cache_miss" in names:
            counts["misses"] += 1
        else:
            counts["uncacheable"] += 1
    return counts, offset + len(text)


def describe_ccache_counts(counts):
    return "{hits} hits, {misses} misses, {uncacheable} not cacheable".format(**counts)


def make_env(build):
    """build_env() with make_fragment() in $MAKEFILES, for make and make install."""
    env = build_env(build)
    path = os.path.join(build.work, "buildfarm.mk")
    if not os.path.isfile(path):
        fragment = make_fragment(build.version, build.makefile(), build.bolt)
        if not fragment:
            return env
        with open(path, "w") as handle:
            handle.write(fragment)
    env["MAKEFILES"] = path
    return env


# flags.frozen_by_bootstrap(): the clean between CPython's PGO stages (clean-retain-profile)
# first copies the frozen modules' files aside; a step of their own puts them back, with
# their times, before the final build (whose FROZEN_DEPS_VARIABLES are empty).
FROZEN_KEEP_DIR = "buildfarm-frozen"
FROZEN_RESTORE_TARGET = "buildfarm-restore-frozen"
FROZEN_KEEP_RULES = [
    "# The frozen modules' files outlive the clean between the PGO stages (flags.frozen_by_bootstrap).",
    ".PHONY: buildfarm-keep-frozen " + FROZEN_RESTORE_TARGET,
    "clean-retain-profile: buildfarm-keep-frozen",
    "buildfarm-keep-frozen:",
    "\trm -rf " + FROZEN_KEEP_DIR,
    "\tif [ -e Python/frozen_modules/importlib._bootstrap.h ]; then mkdir " + FROZEN_KEEP_DIR + " && \\",
    "\t  cp -p --parents Python/frozen_modules/*.h $(wildcard Python/deepfreeze/deepfreeze.c) "
    + FROZEN_KEEP_DIR
    + "; fi",
    FROZEN_RESTORE_TARGET + ":",
    "\tcp -pR " + FROZEN_KEEP_DIR + "/. .",
]


def make_steps(jobs, version, optimization, makefile, profile_task=None, bolt=None):
    """The make invocations of the make phase: [(what, argv)]. pgo+lto runs CPython's
    profile-opt in its two stages, each timed, then with bolt profile-bolt-stamp (what
    CPython's bolt-opt does after profile-opt) and restore_gnu_stack_argv()."""
    instrumented, final = make_variables(version, optimization, makefile, bolt)
    jobs_flag = "-j{}".format(max(1, int(jobs)))
    if optimization == "none":
        return [(BUILD_STEP, ["make", jobs_flag, *make_assignments(final)])]
    task = ["PROFILE_TASK=" + profile_task] if profile_task else []
    steps = [(PGO_STEP, ["make", jobs_flag, "profile-run-stamp", *task, *make_assignments(instrumented)])]
    if frozen_by_bootstrap(makefile):
        steps.append((FROZEN_STEP, ["make", FROZEN_RESTORE_TARGET]))
    steps.append((OPTIMIZED_STEP, ["make", jobs_flag, "profile-opt", *task, *make_assignments(final)]))
    if bolt:
        steps.append((BOLT_STEP, ["make", jobs_flag, "profile-bolt-stamp", *task, *make_assignments(final)]))
        steps.append((GNU_STACK_STEP, restore_gnu_stack_argv(version, makefile)))
    return steps


def make_fragment(version, makefile, bolt=None):
    """Rules added to CPython's Makefile through $MAKEFILES (GNU make reads it in every
    make, including profile-opt's sub-makes), or None when there is nothing to add.
    With bolt, a series without BOLT rules (3.9-3.11) gets CPython 3.13's profile-bolt-stamp,
    and a platform with bolt's spare_note the note's rules (spare_note_rules())."""
    rules = []
    if frozen_by_bootstrap(makefile):
        rules += FROZEN_KEEP_RULES
    testembed_on_objects = static_interpreter(version, makefile) and "LINK_PYTHON_OBJS" in makefile
    if testembed_on_objects and makefile.get("PY3LIBRARY"):
        rules += [
            "# The embedding test program links libpython.so, as upstream's shared builds do:",
            "# from the slim LTO objects it would be one more whole-program LTO link.",
            "# (libpython3.so waits for libpython.so; the fragment is read before the Makefile.)",
            "Programs/_testembed: override LINK_PYTHON_OBJS = $(BLDLIBRARY)",
            "Programs/_testembed: " + makefile["PY3LIBRARY"],
        ]
    if static_interpreter_by_make(version, makefile) and makefile.get("PY3LIBRARY"):
        rules += [
            "# The interpreter links libpython's objects; libpython.so is still built.",
            "build_all: " + makefile["PY3LIBRARY"],
        ]
    if static_interpreter_by_bldlibrary(version, makefile):
        rules += [
            "# 3.9, 3.10: BLDLIBRARY, now libpython's objects, also links the embedding test",
            "# program; it keeps libpython.so (a second LTO link of everything otherwise).",
            "Programs/_testembed: override BLDLIBRARY = " + makefile["BLDLIBRARY"],
        ]
    if bolt:
        rules += llvm_bolt.rules(version, makefile)
    if bolt and bolt.get("spare_note"):
        rules += spare_note_rules(makefile)
    if not rules:
        return None
    return "# Added by the build farm's driver (builder_image/driver/make.py).\n" + "\n".join(rules) + "\n"


SPARE_NOTE_OBJECT = "buildfarm-spare-note.o"


def spare_note_rules(makefile):
    """Makefile lines that link hardening.spare_note_assembly() into the interpreter, for a
    platform whose ld leaves a BOLTed binary no spare program header (its registry "bolt"
    entry's spare_note): the interpreter's link line is the only one that gets it."""
    buildpython = llvm_bolt.interpreter_file(makefile)
    return [
        "# ld writes no PT_GNU_PROPERTY here: a note of its own gives the BOLTed interpreter a",
        "# PT_NOTE that hardening.py --restore-gnu-stack can turn into PT_GNU_STACK.",
        "{}: {}".format(buildpython, SPARE_NOTE_OBJECT),
        "{}: private LINKFORSHARED += {}".format(buildpython, SPARE_NOTE_OBJECT),
        SPARE_NOTE_OBJECT + ":",
        "\tprintf '%s\\n' '{}' | $(CC) -c -x assembler -o $@ -".format(hardening.spare_note_assembly()),
    ]


def restore_gnu_stack_argv(version, makefile):
    """Puts a non-executable PT_GNU_STACK back into the BOLTed binaries. CPython's
    BOLT_APPLY_FLAGS have -use-gnu-stack: llvm-bolt then writes the LOAD segment of its
    new code over the PT_GNU_STACK program header, and the stack becomes executable
    (the ABI default on x86_64). Without -use-gnu-stack it moves the program header
    table into a new segment instead, which `strip` (binutils) corrupts. So BOLT keeps
    its flag and hardening.py gives PT_GNU_STACK a spare program header: the PT_NOTE
    that ld emits beside PT_GNU_PROPERTY for the same bytes, or where ld emits none the
    PT_NOTE of the note spare_note_rules() links in (see its docstring)."""
    return [sys.executable, HARDENING_PY, "--restore-gnu-stack", *bolt_binaries(version, makefile)]


def bolt_binaries(version, makefile):
    """The files llvm-bolt rewrites, relative to the build directory: the interpreter
    (BUILDPYTHON on Linux), and libpython.so where the interpreter still links it
    (CPython's default BOLT_BINARIES with --enable-shared)."""
    if static_interpreter(version, makefile):
        return ["python"]
    return ["python"] + ([makefile["INSTSONAME"]] if makefile.get("INSTSONAME") else [])


def default_profile_task(jobs, version):
    """CPython's own PGO task (regrtest --pgo), its tests spread over all cores."""
    return series.profile_task(version, jobs)
