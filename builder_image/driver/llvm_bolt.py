"""BOLT (llvm-bolt over the pgo+lto interpreter) per CPython series: data and pure functions
keyed on the version, as series.py's. Standard library only, Python 3.6+."""

from .series import minor_of

# CPython's configure has --enable-bolt from 3.12 (gh-90536); its Makefile's BOLT rules
# became today's profile-bolt-stamp (BOLT_BINARIES, a .prebolt copy, BOLT_INSTRUMENT_FLAGS and
# BOLT_APPLY_FLAGS) before 3.12.0b1 (gh-101282, GH-104709), the rule the driver runs after
# profile-opt. 3.9 to 3.11 have neither: the driver gives them what 3.13's configure adds for
# --enable-bolt (the flags below) and, through make_fragment(), the equivalent of 3.13's
# profile-bolt-stamp rule (rules()). 3.12's configure predates the -skip-funcs of
# the functions with computed gotos (gh-128472, fixed in 3.13 and 3.14 only: LLVM 19 refuses
# such PIC functions, older llvm-bolt may mis-rewrite them) and -update-debug-sections in the
# instrumenting pass (gh-128437), and says hfsort+ (newer llvm-bolt reads it as cdsort), so
# 3.9 to 3.12 get 3.13's flags (tool_flags()); 3.13+ keep their Makefile's. The regex engine
# has computed gotos from 3.11 (gh-91404): before that only the eval loop is skipped. 3.12's
# rule runs its profile task with "|| true", as the fragment does (3.13's rule does not).
# 3.11.2 (debian-12) with BOLT and partial training: 1.020x and 1.019x the build without them
# (pyperformance's suite, 2026-12-04), for BOLT's 63 s (5.0 min) and 34.3 MB instead of 32.6.
# 3.9.2 (debian-11, the registry's spare note): 1.005x the build without it (one round, the
# same day), 54 s, 22.0 MB instead of 21.0: not beyond the noise; every series alike.
BOLT_FROM = 9
BOLT_CONFIGURE_FROM = 12
BOLT_OWN_FLAGS_FROM = 13
SRE_COMPUTED_GOTOS_FROM = 11
# CPython 3.13's configure.ac (3.13.5 and 3.13.15 alike): BOLT_COMMON_FLAGS, then what
# BOLT_APPLY_FLAGS adds. The registry's flag_substitutions still apply (bolt-16: no cdsort).
# The regex engine's functions with computed gotos (3.11+), then the list CPython skips.
SRE_SKIP_FUNCS = ("sre_ucs1_match/1", "sre_ucs2_match/1", "sre_ucs4_match/1")
BOLT_SKIP_FUNCS = ("_PyEval_EvalFrameDefault", *SRE_SKIP_FUNCS)
SKIP_FUNCS = "-skip-funcs="
# The skip is for position-independent code. The driver BOLTs the interpreter alone, linked
# -no-pie: there a label table is absolute addresses with --emit-relocs relocations, which
# bolt-16 and bolt-19 rewrite, so the regex engine is BOLTed (position_dependent_flags(); the
# self-test runs test_re): 3.13.15 1.010x and 3.11.2 0.997x the build that skips it, with the
# regex benchmarks faster in both (2026-12-05, docs/builder.md "3.9's speed"). The eval loop
# stays skipped: BOLTing it too gave 3.13.15 no more (1.013x, 1.011x) and 3.9.2 1.003x, and an
# earlier try crashed the instrumented interpreter (docs/builder.md, item 4).


def _common_flags(skip_funcs):
    return ("-update-debug-sections", SKIP_FUNCS + ",".join(skip_funcs))


BOLT_COMMON_FLAGS = _common_flags(BOLT_SKIP_FUNCS)
BOLT_APPLY_ONLY_FLAGS = (
    "-reorder-blocks=ext-tsp",
    "-reorder-functions=cdsort",
    "-split-functions",
    "-icf=1",
    "-inline-all",
    "-split-eh",
    "-reorder-functions-use-hot-size",
    "-peepholes=none",
    "-jump-tables=aggressive",
    "-inline-ap",
    "-indirect-call-promotion=all",
    "-dyno-stats",
    "-use-gnu-stack",
    "-frame-opt=hot",
)
BOLT_APPLY_FLAGS = (*BOLT_COMMON_FLAGS, *BOLT_APPLY_ONLY_FLAGS)
# What 3.12+ configure adds for --enable-bolt: no hot/cold split by GCC and relocations kept
# (both needed by llvm-bolt), executables linked position-dependent (what makes BOLT pay
# off). Not its -fno-pie: in an --enable-shared build every object's compile line ends with
# CCSHARED's -fPIC, which overrides it, but 3.11's setup.py puts -fPIC first, so -fno-pie
# made its extension modules position-dependent and their links fail (measured on 3.11.2).
BOLT_CFLAGS_NODIST = ("-fno-reorder-blocks-and-partition",)
BOLT_LDFLAGS_NODIST = ("-Wl,--emit-relocs",)
BOLT_LINKCC_FLAGS = ("-fno-pie", "-no-pie")


def supported(version):
    """The series can be BOLTed by the driver (3.9+; see BOLT_FROM)."""
    return minor_of(version) >= BOLT_FROM


def by_configure(version):
    """configure knows --enable-bolt, and the Makefile has profile-bolt-stamp (3.12+)."""
    return minor_of(version) >= BOLT_CONFIGURE_FROM


def nodist_flags(version):
    """{CFLAGS_NODIST, LDFLAGS_NODIST: words} the driver adds to configure's environment for a
    BOLT build where configure has no --enable-bolt to add them itself (3.9-3.11), else {}."""
    if not supported(version) or by_configure(version):
        return {}
    return {"CFLAGS_NODIST": " ".join(BOLT_CFLAGS_NODIST), "LDFLAGS_NODIST": " ".join(BOLT_LDFLAGS_NODIST)}


def tool_flags(version):
    """(instrument, apply) llvm-bolt flags where the series' Makefile has none or older ones
    (3.9-3.12: CPython 3.13's, whose -skip-funcs names the regex engine's functions only
    where they have computed gotos), or None where the Makefile's own are used (3.13+)."""
    if not supported(version) or minor_of(version) >= BOLT_OWN_FLAGS_FROM:
        return None
    skip = BOLT_SKIP_FUNCS
    if minor_of(version) < SRE_COMPUTED_GOTOS_FROM:
        skip = tuple(name for name in skip if name not in SRE_SKIP_FUNCS)
    common = _common_flags(skip)
    return " ".join(common), " ".join(common + BOLT_APPLY_ONLY_FLAGS)


def position_dependent_flags(flags):
    """llvm-bolt flags (a list of words) for a position-dependent binary: -skip-funcs no
    longer names the regex engine, SRE_SKIP_FUNCS (a -skip-funcs left empty is dropped)."""
    kept = []
    for flag in flags:
        if flag.startswith(SKIP_FUNCS):
            names = [name for name in flag[len(SKIP_FUNCS) :].split(",") if name not in SRE_SKIP_FUNCS]
            if not names:
                continue
            flag = SKIP_FUNCS + ",".join(names)
        kept.append(flag)
    return kept


def linkcc(version, linkcc):
    """LINKCC (the configured Makefile's value) for a BOLT build: position-dependent
    executables, as 3.12+ configure makes it; None where configure does it itself."""
    if not supported(version) or by_configure(version):
        return None
    return " ".join([linkcc or "$(PURIFY) $(MAINCC)", *BOLT_LINKCC_FLAGS])


def interpreter_file(makefile):
    """The interpreter's file as a $MAKEFILES fragment must name it: the fragment is read
    before the Makefile that defines $(BUILDPYTHON). makefile: the configured Makefile's
    variables."""
    buildpython = makefile.get("BUILDPYTHON", "python$(BUILDEXE)")
    return buildpython.replace("$(BUILDEXE)", makefile.get("BUILDEXE", ""))


def rules(version, makefile):
    """Makefile lines of profile-bolt-stamp for a series whose Makefile lacks it (3.9-3.11), else
    []: CPython 3.13's rule, with $(LLVM_BOLT)/$(MERGE_FDATA) make variables where configure
    writes the tools' paths, and its profile run's failures tolerated as in 3.12's rule and
    3.11's own PGO run: with --disable-test-modules 3.11's test_sqlite3 cannot import
    _testcapi, so `-m test --pgo` ends in FAILURE (measured on 3.11.2). makefile: the
    configured Makefile's variables (interpreter_file())."""
    if not supported(version) or by_configure(version):
        return []
    return [
        "# CPython 3.13's profile-bolt-stamp (3.9-3.11 have no BOLT rules): instrument, run the",
        "# profile task, merge, optimize each of $(BOLT_BINARIES) from its .prebolt copy.",
        "profile-bolt-stamp: " + interpreter_file(makefile),
        "\tfor bin in $(BOLT_BINARIES); do \\",
        '\t  prebolt="$${bin}.prebolt"; \\',
        '\t  if [ -e "$${prebolt}" ]; then mv "$${prebolt}" "$${bin}"; fi; \\',
        '\t  cp "$${bin}" "$${prebolt}"; \\',
        "\t  rm -f $${bin}.bolt.*.fdata $${bin}.fdata; \\",
        "\tdone",
        "\tfor bin in $(BOLT_BINARIES); do \\",
        '\t  $(LLVM_BOLT) "$${bin}" -instrument -instrumentation-file-append-pid'
        " -instrumentation-file=$(abspath $${bin}.bolt) -o $${bin}.bolt_inst $(BOLT_INSTRUMENT_FLAGS); \\",
        '\t  mv "$${bin}.bolt_inst" "$${bin}"; \\',
        "\tdone",
        "\t$(RUNSHARED) ./$(BUILDPYTHON) $(PROFILE_TASK) || true",
        "\tfor bin in $(BOLT_BINARIES); do \\",
        '\t  $(MERGE_FDATA) $${bin}.*.fdata > "$${bin}.fdata"; \\',
        "\t  rm -f $${bin}.*.fdata; \\",
        "\tdone",
        "\tfor bin in $(BOLT_BINARIES); do \\",
        '\t  $(LLVM_BOLT) "$${bin}.prebolt" -o "$${bin}.bolt" -data="$${bin}.fdata" $(BOLT_APPLY_FLAGS); \\',
        '\t  mv "$${bin}.bolt" "$${bin}"; \\',
        "\tdone",
        "\ttouch $@",
    ]
