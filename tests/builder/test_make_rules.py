"""The make side of a build, from a configured Makefile's own variables and rules
(flags.makefile_variables()/make_variables(), make.make_steps()/make_fragment()): PGO's two
stages, the static interpreter, BOLT, install; checked with `make -n` over CPython's rules
where the rules matter. Split from test_driver_logic.py."""
# ruff: noqa: E501 - MAKEFILE_313 keeps the long lines exactly as configure writes them

from __future__ import annotations

import subprocess

from driver import flags, hardening, llvm_bolt, make
from driver import spec as driver_spec

# The lines of a configured 3.13 Makefile (pgo+lto, GCC) that the driver reads.
MAKEFILE_313 = r"""
OPT=		-DNDEBUG -g -O3 -Wall
BASECFLAGS=	 -fno-strict-overflow -Wsign-compare
CONFIGURE_CFLAGS_NODIST=-fstack-protector -D_FORTIFY_SOURCE=2 -fno-semantic-interposition -flto -fuse-linker-plugin -ffat-lto-objects -flto-partition=none -g -std=c11 -fvisibility=hidden
CONFIGURE_LDFLAGS_NODIST=-Wl,-z,relro,-z,now -Wl,-rpath,\$$ORIGIN/../lib -fno-semantic-interposition -flto -fuse-linker-plugin -ffat-lto-objects -flto-partition=none -g
PY_LDFLAGS_NOLTO=$(PY_LDFLAGS) $(CONFIGURE_LDFLAGS_NOLTO) $(LDFLAGS_NODIST)
PY3LIBRARY=     libpython3.so
BOLT_BINARIES := $(BUILDPYTHON) $(INSTSONAME)
BOLT_INSTRUMENT_FLAGS :=  -update-debug-sections -skip-funcs=_PyEval_EvalFrameDefault,sre_ucs1_match/1,sre_ucs2_match/1,sre_ucs4_match/1
BOLT_APPLY_FLAGS :=  -update-debug-sections -skip-funcs=_PyEval_EvalFrameDefault,sre_ucs1_match/1,sre_ucs2_match/1,sre_ucs4_match/1  -reorder-blocks=ext-tsp -reorder-functions=cdsort -split-functions -icf=1 -inline-all -split-eh -reorder-functions-use-hot-size -peepholes=none -jump-tables=aggressive -inline-ap -indirect-call-promotion=all -dyno-stats -use-gnu-stack -frame-opt=hot
LIBRARY_DEPS=	$(LDLIBRARY) $(PY3LIBRARY) $(EXPORTSYMS)
LINK_PYTHON_DEPS=$(LIBRARY_DEPS)
libpython3.so:	libpython$(LDVERSION).so
LINK_PYTHON_OBJS=$(BLDLIBRARY)
"""
# 3.9.2's configured Makefile (./configure --enable-shared --enable-optimizations --with-lto),
# the variables and the rules that make libpython and link it, recipes as written there.
MAKEFILE_39 = """VERSION=\t3.9
ABIFLAGS=\t
LDVERSION=\t$(VERSION)$(ABIFLAGS)
OPT=\t\t-DNDEBUG -g -fwrapv -O3 -Wall
CONFIGURE_CFLAGS_NODIST= -flto -fuse-linker-plugin -ffat-lto-objects -flto-partition=none -g -std=c99
CONFIGURE_LDFLAGS_NODIST= -flto -fuse-linker-plugin -ffat-lto-objects -flto-partition=none -g
LINKCC=\t\t$(PURIFY) $(MAINCC)
MAINCC=\t\tgcc
BLDSHARED=\tgcc -shared
LIBRARY=\tlibpython$(VERSION)$(ABIFLAGS).a
LDLIBRARY=      libpython$(LDVERSION).so
BLDLIBRARY=     -L. -lpython$(LDVERSION)
PY3LIBRARY=     libpython3.so
INSTSONAME=\tlibpython$(LDVERSION).so.1.0
LIBRARY_OBJS=\tModules/getbuildinfo.o Python/ceval.o
LINKFORSHARED=\t-Xlinker -export-dynamic
$(BUILDPYTHON):\tPrograms/python.o $(LIBRARY) $(LDLIBRARY) $(PY3LIBRARY) $(EXPORTSYMS)
\t$(LINKCC) $(PY_CORE_LDFLAGS) $(LINKFORSHARED) -o $@ Programs/python.o $(BLDLIBRARY) $(LIBS) $(MODLIBS) $(SYSLIBS)
$(LIBRARY): $(LIBRARY_OBJS)
\t$(AR) $(ARFLAGS) $@ $(LIBRARY_OBJS)
libpython$(LDVERSION).so: $(LIBRARY_OBJS) $(DTRACE_OBJS)
\t$(BLDSHARED) -Wl,-h$(INSTSONAME) -o $(INSTSONAME) $(LIBRARY_OBJS) $(MODLIBS) $(SHLIBS) $(LIBC) $(LIBM)
libpython3.so:\tlibpython$(LDVERSION).so
\t$(BLDSHARED) $(NO_AS_NEEDED) -o $@ -Wl,-h$@ $^
Programs/_testembed: Programs/_testembed.o $(LIBRARY) $(LDLIBRARY) $(PY3LIBRARY) $(EXPORTSYMS)
\t$(LINKCC) $(PY_CORE_LDFLAGS) $(LINKFORSHARED) -o $@ Programs/_testembed.o $(BLDLIBRARY) $(LIBS) $(MODLIBS) $(SYSLIBS)
"""


def test_makefile_variables_reads_assignments_only():
    variables = flags.makefile_variables(MAKEFILE_313)
    assert variables["OPT"] == "-DNDEBUG -g -O3 -Wall"
    assert variables["PY3LIBRARY"] == "libpython3.so"
    assert variables["CONFIGURE_LDFLAGS_NODIST"].startswith("-Wl,-z,relro,-z,now -Wl,-rpath,\\$$ORIGIN")
    assert "libpython3.so" not in variables  # a rule, not an assignment


def test_pgo_stages_instrument_without_lto_and_optimize_with_it():
    makefile = flags.makefile_variables(MAKEFILE_313)
    instrumented, final = flags.make_variables("3.13.5", "pgo+lto", makefile)
    assert "-flto" not in instrumented["CONFIGURE_CFLAGS_NODIST"].split()
    assert "-flto" not in instrumented["CONFIGURE_LDFLAGS_NODIST"].split()
    assert "-flto-partition=none" in final["CONFIGURE_CFLAGS_NODIST"].split()
    assert "-ffat-lto-objects" not in final["CONFIGURE_LDFLAGS_NODIST"].split()  # slim objects
    for variables in (instrumented, final):
        # Hardening and the rpath survive; debug info (stripped anyway) does not.
        assert "-fstack-protector" in variables["CONFIGURE_CFLAGS_NODIST"]
        assert "-Wl,-rpath,\\$$ORIGIN/../lib" in variables["CONFIGURE_LDFLAGS_NODIST"]
        assert "-g" not in variables["CONFIGURE_CFLAGS_NODIST"].split() + variables["OPT"].split()
        assert variables["OPT"] == "-DNDEBUG -O3 -Wall"
        assert variables["LINK_PYTHON_OBJS"] == "$(LIBRARY_OBJS)"
        assert "$(LDLIBRARY)" not in variables["LINK_PYTHON_DEPS"]


def test_make_steps():
    makefile = flags.makefile_variables(MAKEFILE_313)
    steps = make.make_steps(4, "3.13.5", "pgo+lto", makefile, "-m test --pgo test_array")
    assert [what for what, _ in steps] == ["instrumented build and profile run", "optimized build"]
    (_, instrumented), (_, final) = steps
    assert instrumented[:3] == ["make", "-j4", "profile-run-stamp"]
    assert "PROFILE_TASK=-m test --pgo test_array" in instrumented
    assert final[:2] == ["make", "-j4"] and "profile-run-stamp" not in final
    ((what, argv),) = make.make_steps("2", "3.13.5", "none", makefile)
    assert what == "build" and argv[:2] == ["make", "-j2"] and "LINK_PYTHON_OBJS=$(LIBRARY_OBJS)" in argv
    assert make.default_profile_task(2, "3.13.5") == "-m test --pgo -j2 --timeout=$(TESTTIMEOUT)"


def test_bolt_only_for_pgo_lto_39_plus_where_the_platform_has_it_for_the_arch(registry_json):
    trixie = driver_spec.platform_info(registry_json, "debian-13", "x86_64")
    assert flags.bolt_config("3.13.5", "pgo+lto", trixie)["tools"] == "/usr/lib/llvm-19/bin"
    assert "bolt-19" in trixie["build_dependencies"]
    assert flags.bolt_config("3.13.5", "none", trixie) is None
    assert flags.bolt_config("3.12.11", "pgo+lto", trixie)["tools"] == "/usr/lib/llvm-19/bin"
    assert flags.bolt_config("3.11.2", "pgo+lto", trixie)["tools"] == "/usr/lib/llvm-19/bin"
    assert flags.bolt_config("3.9.2", "pgo+lto", trixie)["tools"] == "/usr/lib/llvm-19/bin"
    assert flags.bolt_config("3.9.2", "none", trixie) is None
    # bullseye's ld writes no PT_GNU_PROPERTY: its builds link the spare note for PT_GNU_STACK.
    bullseye = driver_spec.platform_info(registry_json, "debian-11", "x86_64")
    assert flags.bolt_config("3.9.2", "pgo+lto", bullseye)["spare_note"] is True
    assert "bolt-16" in bullseye["build_dependencies"]
    assert driver_spec.platform_info(registry_json, "debian-11", "aarch64")["bolt"] is None
    assert not flags.bolt_config("3.13.5", "pgo+lto", trixie).get("spare_note")
    rhel = driver_spec.platform_info(registry_json, "rhel-9", "x86_64")
    assert flags.bolt_config("3.13.5", "pgo+lto", rhel) is None
    # Debian ships bolt-16 for amd64 only: bookworm's aarch64 builds go without it.
    bookworm_arm = driver_spec.platform_info(registry_json, "debian-12", "aarch64")
    assert bookworm_arm["bolt"] is None and "bolt-16" not in bookworm_arm["build_dependencies"]
    assert "bolt-16" in driver_spec.platform_info(registry_json, "debian-12", "x86_64")["build_dependencies"]


BOLT_19 = {"package": "bolt-19", "tools": "/usr/lib/llvm-19/bin", "arches": ["x86_64", "aarch64"]}
BOLT_16 = {
    "package": "bolt-16",
    "tools": "/usr/lib/llvm-16/bin",
    "arches": ["x86_64"],
    "flag_substitutions": {"-reorder-functions=cdsort": "-reorder-functions=hfsort+"},
}


def test_bolt_configure_and_make():
    assert flags.configure_args("3.13.5", "pgo+lto", "/opt/p", BOLT_19)[-3:] == [
        "--enable-bolt",
        "--disable-test-modules",
        "--without-static-libpython",
    ]
    assert "--enable-bolt" not in flags.configure_args("3.13.5", "pgo+lto", "/opt/p")
    env = flags.configure_env("3.13.5", BOLT_19)
    assert env["LLVM_BOLT"] == "/usr/lib/llvm-19/bin/llvm-bolt"
    assert env["MERGE_FDATA"] == "/usr/lib/llvm-19/bin/merge-fdata"
    makefile = flags.makefile_variables(MAKEFILE_313)
    steps = make.make_steps(2, "3.13.5", "pgo+lto", makefile, "-m test --pgo", bolt=BOLT_19)
    assert [what for what, _ in steps] == [
        "instrumented build and profile run",
        "optimized build",
        "BOLT instrumented run and optimization",
        "PT_GNU_STACK back into the BOLTed binaries",
    ]
    _, (_, optimized), (_, bolted), (_, restore) = steps
    assert restore[-2:] == ["--restore-gnu-stack", "python"]
    assert optimized[:3] == ["make", "-j2", "profile-opt"]
    assert bolted[:3] == ["make", "-j2", "profile-bolt-stamp"]
    # The static interpreter is the only binary that runs the profile, so the only one BOLTed;
    # CPython's own BOLT flags stay (the Makefile's) but for the regex engine's -skip-funcs:
    # the interpreter is position-dependent (llvm_bolt.position_dependent_flags).
    assert "BOLT_BINARIES=$(BUILDPYTHON)" in bolted
    bolt_flags = [arg for arg in bolted if arg.startswith("BOLT_")]
    assert [arg.split("=")[0] for arg in bolt_flags] == [
        "BOLT_APPLY_FLAGS",
        "BOLT_BINARIES",
        "BOLT_INSTRUMENT_FLAGS",
    ]
    assert bolt_flags[0].split("=", 1)[1].split() == llvm_bolt.position_dependent_flags(
        makefile["BOLT_APPLY_FLAGS"].split()
    )
    assert (
        bolt_flags[2] == "BOLT_INSTRUMENT_FLAGS=-update-debug-sections -skip-funcs=_PyEval_EvalFrameDefault"
    )
    # 3.15's configure makes the static interpreter; older Makefiles keep CPython's list.
    assert flags.make_variables("3.15.0a1", "pgo+lto", {}, BOLT_19)[1]["BOLT_BINARIES"] == "$(BUILDPYTHON)"
    assert "BOLT_BINARIES" not in flags.make_variables("3.13.5", "pgo+lto", {}, BOLT_19)[1]
    install = flags.install_argv("3.13.5", "pgo+lto", makefile, "/s", BOLT_19)
    assert "BOLT_BINARIES=$(BUILDPYTHON)" in install
    assert not any(arg.startswith("BOLT_") for arg in flags.install_argv("3.13.5", "pgo+lto", makefile, "/s"))


def test_bolt_flag_substitutions_for_an_older_llvm_bolt():
    makefile = flags.makefile_variables(MAKEFILE_313)
    assert "-reorder-functions=cdsort" in makefile["BOLT_APPLY_FLAGS"].split()  # a := assignment
    _, final = flags.make_variables("3.13.5", "pgo+lto", makefile, BOLT_16)
    apply_flags = final["BOLT_APPLY_FLAGS"].split()
    assert "-reorder-functions=hfsort+" in apply_flags and "-reorder-functions=cdsort" not in apply_flags
    assert apply_flags[0] == "-update-debug-sections" and "-split-functions" in apply_flags
    # Both BOLT passes get the substitutions (a changed -skip-funcs must reach both), after
    # the position-dependent interpreter's -skip-funcs (the registry has the last word).
    assert final["BOLT_INSTRUMENT_FLAGS"] == "-update-debug-sections -skip-funcs=_PyEval_EvalFrameDefault"
    skip = {"-skip-funcs=_PyEval_EvalFrameDefault": "-skip-funcs=f"}
    _, final = flags.make_variables(
        "3.13.5", "pgo+lto", makefile, {"tools": "/t", "flag_substitutions": skip}
    )
    assert "-skip-funcs=f" in final["BOLT_INSTRUMENT_FLAGS"] and "-skip-funcs=f" in final["BOLT_APPLY_FLAGS"]


# CPython 3.12's BOLT section of Makefile.pre.in (3.12 branch; from GH-104709, merged before
# 3.12.0b1), unchanged but for ">" marking a recipe's tab. 3.13's differs only in running the
# profile task without "|| true".
MAKEFILE_PRE_IN_312_BOLT = r"""
# List of binaries that BOLT runs on.
BOLT_BINARIES := @BOLT_BINARIES@

BOLT_INSTRUMENT_FLAGS := @BOLT_INSTRUMENT_FLAGS@
BOLT_APPLY_FLAGS := @BOLT_APPLY_FLAGS@

.PHONY: clean-bolt
clean-bolt:
>	# Profile data.
>	rm -f *.fdata
>	# Pristine binaries before BOLT optimization.
>	rm -f *.prebolt
>	# BOLT instrumented binaries.
>	rm -f *.bolt_inst

profile-bolt-stamp: $(BUILDPYTHON)
>	# Ensure a pristine, pre-BOLT copy of the binary and no profile data from last run.
>	for bin in $(BOLT_BINARIES); do \
>	  prebolt="$${bin}.prebolt"; \
>	  if [ -e "$${prebolt}" ]; then \
>	    echo "Restoring pre-BOLT binary $${prebolt}"; \
>	    mv "$${bin}.prebolt" "$${bin}"; \
>	  fi; \
>	  cp "$${bin}" "$${prebolt}"; \
>	  rm -f $${bin}.bolt.*.fdata $${bin}.fdata; \
>	done
>	# Instrument each binary.
>	for bin in $(BOLT_BINARIES); do \
>	  @LLVM_BOLT@ "$${bin}" -instrument -instrumentation-file-append-pid -instrumentation-file=$(abspath $${bin}.bolt) -o $${bin}.bolt_inst $(BOLT_INSTRUMENT_FLAGS); \
>	  mv "$${bin}.bolt_inst" "$${bin}"; \
>	done
>	# Run instrumented binaries to collect data.
>	$(RUNSHARED) ./$(BUILDPYTHON) $(PROFILE_TASK) || true
>	# Merge all the data files together.
>	for bin in $(BOLT_BINARIES); do \
>	  @MERGE_FDATA@ $${bin}.*.fdata > "$${bin}.fdata"; \
>	  rm -f $${bin}.*.fdata; \
>	done
>	# Run bolt against the merged data to produce an optimized binary.
>	for bin in $(BOLT_BINARIES); do \
>	  @LLVM_BOLT@ "$${bin}.prebolt" -o "$${bin}.bolt" -data="$${bin}.fdata" $(BOLT_APPLY_FLAGS); \
>	  mv "$${bin}.bolt" "$${bin}"; \
>	done
>	touch $@

.PHONY: bolt-opt
bolt-opt:
>	$(MAKE) @PREBOLT_RULE@
>	$(MAKE) profile-bolt-stamp
""".replace("\n>\t", "\n\t")
# What configure writes into it for --enable-shared --enable-bolt (3.12's defaults: no
# instrument flags, hfsort+), and the rest of a configured Makefile the rule needs.
CONFIGURED_312 = {
    "@BOLT_BINARIES@": "$(BUILDPYTHON) $(INSTSONAME)",
    "@BOLT_INSTRUMENT_FLAGS@": "",
    "@BOLT_APPLY_FLAGS@": "-update-debug-sections -reorder-blocks=ext-tsp -reorder-functions=hfsort+ -split-functions -icf=1 -inline-all -split-eh -reorder-functions-use-hot-size -peepholes=none -jump-tables=aggressive -inline-ap -indirect-call-promotion=all -dyno-stats -use-gnu-stack -frame-opt=hot",
    "@LLVM_BOLT@": "/usr/lib/llvm-16/bin/llvm-bolt",
    "@MERGE_FDATA@": "/usr/lib/llvm-16/bin/merge-fdata",
    "@PREBOLT_RULE@": "profile-opt",
}
MAKEFILE_BASE = "BUILDEXE=\nBUILDPYTHON=\tpython$(BUILDEXE)\nRUNSHARED=\tLD_LIBRARY_PATH=/b\nLINKCC=\t\t$(PURIFY) $(MAINCC)\nLINK_PYTHON_OBJS=$(BLDLIBRARY)\nall:\n\ttrue\n"


def bolt_commands(tmp_path, version, makefile_text):
    """The llvm-bolt, merge-fdata and profile-run lines that `make -n profile-bolt-stamp` prints
    for this Makefile with the driver's fragment and make variables (bolt-16 on debian-12)."""
    (tmp_path / "Makefile").write_text(makefile_text)
    (tmp_path / "python").write_text("")
    makefile = flags.makefile_variables(makefile_text)
    _, final = flags.make_variables(version, "pgo+lto", makefile, BOLT_16)
    env = {"PATH": "/usr/bin:/bin"}
    fragment = make.make_fragment(version, makefile, BOLT_16)
    if fragment:
        (tmp_path / "fragment.mk").write_text(fragment)
        env["MAKEFILES"] = str(tmp_path / "fragment.mk")
    argv = [
        "make",
        "-n",
        "profile-bolt-stamp",
        "PROFILE_TASK=-m test --pgo",
        *flags.make_assignments(final),
    ]
    out = subprocess.run(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
    wanted = ("/llvm-bolt ", "/merge-fdata ", "./python ")
    lines = [line.replace(str(tmp_path), "<build>") for line in out.splitlines()]
    return [" ".join(line.split()) for line in lines if any(word in line for word in wanted)]


def test_312s_makefile_bolts_the_interpreter_with_313s_flags(tmp_path):
    text = MAKEFILE_BASE + MAKEFILE_PRE_IN_312_BOLT
    for name, value in CONFIGURED_312.items():
        text = text.replace(name, value)
    instrument, run, merge, apply = bolt_commands(tmp_path, "3.12.8", text)
    assert instrument.startswith('/usr/lib/llvm-16/bin/llvm-bolt "${bin}" -instrument')
    assert instrument.endswith("-update-debug-sections -skip-funcs=_PyEval_EvalFrameDefault; \\")
    assert run == "LD_LIBRARY_PATH=/b ./python -m test --pgo || true"
    assert merge.startswith("/usr/lib/llvm-16/bin/merge-fdata ${bin}.*.fdata")
    assert apply.startswith('/usr/lib/llvm-16/bin/llvm-bolt "${bin}.prebolt" -o "${bin}.bolt"')
    assert "-reorder-functions=hfsort+" in apply and "-skip-funcs=" in apply and "-use-gnu-stack" in apply
    # The loops run over the interpreter alone (its Makefile says $(BUILDPYTHON) $(INSTSONAME)).
    dry_run = subprocess.run(
        ["make", "-n", "profile-bolt-stamp", "BOLT_BINARIES=$(BUILDPYTHON)"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    assert "for bin in python; do" in dry_run


def test_311s_fragment_runs_what_312s_and_313s_rule_run(tmp_path):
    """3.11's Makefile has no BOLT rules: the fragment's rule makes the same commands as
    3.12's, whose profile run tolerates failures as 3.11 needs (--disable-test-modules leaves
    out the _testcapi that 3.11's test_sqlite3 imports: the PGO task ends in FAILURE)."""
    text = MAKEFILE_BASE + MAKEFILE_PRE_IN_312_BOLT
    for name, value in CONFIGURED_312.items():
        text = text.replace(name, value)
    (tmp_path / "312").mkdir()
    (tmp_path / "311").mkdir()
    expected = bolt_commands(tmp_path / "312", "3.12.8", text)
    commands = bolt_commands(tmp_path / "311", "3.11.2", MAKEFILE_BASE)
    assert commands == expected
    assert len(commands) == 4


def test_39s_and_311s_fragments_run_the_same_bolt_commands(tmp_path):
    """3.9 gets 3.11's rule and flags: CPython's -skip-funcs names 3.11's regex engine (3.9's
    has no computed gotos), which the position-dependent interpreter lets llvm-bolt rewrite."""
    (tmp_path / "39").mkdir()
    (tmp_path / "311").mkdir()
    commands_39 = bolt_commands(tmp_path / "39", "3.9.2", MAKEFILE_BASE)
    commands_311 = bolt_commands(tmp_path / "311", "3.11.2", MAKEFILE_BASE)
    assert len(commands_39) == 4 and commands_39 == commands_311
    skips = [
        word for line in commands_311 for word in line.replace(";", " ").split() if "-skip-funcs" in word
    ]
    assert skips == ["-skip-funcs=_PyEval_EvalFrameDefault"] * 2  # instrument, apply


def test_spare_note_is_linked_into_the_interpreter_alone(tmp_path):
    """A platform with spare_note (bullseye): the fragment assembles the note with $(CC) (a
    real gcc here) and adds it to the interpreter's link line only (`make -n` over 3.9.2's
    rules); the object holds exactly the note hardening.py looks for."""
    makefile = flags.makefile_variables(MAKEFILE_39)
    bolt = dict(BOLT_16, spare_note=True)
    _, final = flags.make_variables("3.9.2", "pgo+lto", makefile, bolt)
    (tmp_path / "Makefile").write_text("BUILDPYTHON=\tpython\nCC=\tgcc\n" + MAKEFILE_39)
    for name in ("Modules/getbuildinfo.o", "Python/ceval.o", "Programs/python.o", "Programs/_testembed.o"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("")
    (tmp_path / "fragment.mk").write_text(make.make_fragment("3.9.2", makefile, bolt))
    env = {"PATH": "/usr/bin:/bin", "MAKEFILES": str(tmp_path / "fragment.mk")}
    argv = ["make", "-n", "python", "Programs/_testembed", *flags.make_assignments(final)]
    out = subprocess.run(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
    links = {line.split(" -o ")[1].split()[0]: line for line in out.splitlines() if " -o " in line}
    assert "-export-dynamic buildfarm-spare-note.o -o python " in links["python"]
    assert make.SPARE_NOTE_OBJECT not in links["Programs/_testembed"]
    assert "buildfarm-spare-note.o" not in (make.make_fragment("3.9.2", makefile, BOLT_16) or "")
    subprocess.run(["make", make.SPARE_NOTE_OBJECT], cwd=tmp_path, env=env, check=True)
    note = tmp_path / "note.bin"
    subprocess.run(
        [
            "objcopy",
            "-O",
            "binary",
            "--only-section=.note.buildfarm.spare",
            make.SPARE_NOTE_OBJECT,
            str(note),
        ],
        cwd=tmp_path,
        check=True,
    )
    assert note.read_bytes() == hardening.spare_note_bytes()
    sections = subprocess.run(
        ["readelf", "-SW", make.SPARE_NOTE_OBJECT], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    assert ".note.GNU-stack" in sections.stdout  # else ld would make the stack executable


def test_install_uses_the_final_variables():
    makefile = flags.makefile_variables(MAKEFILE_313)
    argv = flags.install_argv("3.13.5", "pgo+lto", makefile, "/stage")
    assert argv[:3] == ["make", "install", "DESTDIR=/stage"]
    assert "LINK_PYTHON_OBJS=$(LIBRARY_OBJS)" in argv
    assert any(arg.startswith("CONFIGURE_CFLAGS_NODIST=") and "-flto" in arg for arg in argv)


def test_make_fragment():
    fragment = make.make_fragment("3.13.5", flags.makefile_variables(MAKEFILE_313)).splitlines()
    assert "Programs/_testembed: override LINK_PYTHON_OBJS = $(BLDLIBRARY)" in fragment
    assert "Programs/_testembed: libpython3.so" in fragment
    assert "build_all: libpython3.so" in fragment


def test_39s_interpreter_links_libpythons_objects_and_testembed_libpython_so(tmp_path):
    """3.9 and 3.10 have no LINK_PYTHON_OBJS: the interpreter's link line takes BLDLIBRARY,
    and the fragment keeps _testembed on libpython.so (`make -n` over 3.9.2's rules)."""
    makefile = flags.makefile_variables(MAKEFILE_39)
    assert flags.static_interpreter("3.9.2", makefile)
    _, final = flags.make_variables("3.9.2", "pgo+lto", makefile)
    assert final["BLDLIBRARY"] == "$(LIBRARY_OBJS)" and "LINK_PYTHON_OBJS" not in final
    assert final["OPT"] == "-DNDEBUG -fwrapv -O3 -Wall"
    # Its two LTO links run one after the other: each is partitioned over all cores.
    assert final["CONFIGURE_LDFLAGS_NODIST"] == "-flto=auto -fuse-linker-plugin"
    assert final["CONFIGURE_CFLAGS_NODIST"] == "-flto=auto -fuse-linker-plugin -std=c99"
    _, final_313 = flags.make_variables("3.13.5", "pgo+lto", flags.makefile_variables(MAKEFILE_313))
    assert "-flto-partition=none" in final_313["CONFIGURE_LDFLAGS_NODIST"].split()
    (tmp_path / "Makefile").write_text("BUILDPYTHON=\tpython\n" + MAKEFILE_39)
    for name in ("Modules/getbuildinfo.o", "Python/ceval.o", "Programs/python.o", "Programs/_testembed.o"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("")
    (tmp_path / "fragment.mk").write_text(make.make_fragment("3.9.2", makefile))
    argv = ["make", "-n", "python", "Programs/_testembed", *flags.make_assignments(final)]
    env = {"PATH": "/usr/bin:/bin", "MAKEFILES": str(tmp_path / "fragment.mk")}
    out = subprocess.run(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
    links = {line.split(" -o ")[1].split()[0]: line for line in out.splitlines() if " -o " in line}
    assert "Programs/python.o Modules/getbuildinfo.o Python/ceval.o" in links["python"]
    assert "-lpython" not in links["python"]
    assert "Programs/_testembed.o -L. -lpython3.9" in links["Programs/_testembed"]
    assert "libpython3.9.so.1.0" in links  # still built, for embedders
    assert flags.static_interpreter("3.15.0a1", {})  # configure does it
    assert not flags.static_interpreter("3.13.5", {})
