"""Unit tests of the build driver's pure logic: versions, spec, configure flags, names, metadata."""
# ruff: noqa: E501 - MAKEFILE_313 keeps the long lines exactly as configure writes them

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from driver import errors, flags, main, make, packages, process, relocation, series, upload
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


@pytest.fixture(scope="module")
def registry_json():
    return driver_spec.load_platforms()


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


def test_bolt_only_for_pgo_lto_311_plus_where_the_platform_has_it_for_the_arch(registry_json):
    trixie = driver_spec.platform_info(registry_json, "debian-13", "x86_64")
    assert flags.bolt_config("3.13.5", "pgo+lto", trixie)["tools"] == "/usr/lib/llvm-19/bin"
    assert "bolt-19" in trixie["build_dependencies"]
    assert flags.bolt_config("3.13.5", "none", trixie) is None
    assert flags.bolt_config("3.12.11", "pgo+lto", trixie)["tools"] == "/usr/lib/llvm-19/bin"
    assert flags.bolt_config("3.11.2", "pgo+lto", trixie)["tools"] == "/usr/lib/llvm-19/bin"
    assert flags.bolt_config("3.10.16", "pgo+lto", trixie) is None
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
    # CPython's own BOLT flags stay (the Makefile's) unless the platform substitutes some.
    assert "BOLT_BINARIES=$(BUILDPYTHON)" in bolted
    assert not any(arg.startswith("BOLT_APPLY_FLAGS=") for arg in bolted)
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
    # Both BOLT passes get the substitutions (a changed -skip-funcs must reach both).
    assert final["BOLT_INSTRUMENT_FLAGS"] == makefile["BOLT_INSTRUMENT_FLAGS"]
    skip = {
        "-skip-funcs=_PyEval_EvalFrameDefault,sre_ucs1_match/1,sre_ucs2_match/1,sre_ucs4_match/1": "-skip-funcs=f"
    }
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
    assert instrument.endswith(
        "-update-debug-sections -skip-funcs=_PyEval_EvalFrameDefault,sre_ucs1_match/1,sre_ucs2_match/1,sre_ucs4_match/1; \\"
    )
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


def test_deb_control_from_registry(registry_json):
    info = driver_spec.platform_info(registry_json, "debian-12", "x86_64")
    control = packages.deb_control("3.13.5", 2, "x86_64", info["runtime_dependencies"], 1234, "A <a@b.c>")
    fields = dict(line.split(": ", 1) for line in control.splitlines() if not line.startswith(" "))
    assert fields["Package"] == "python-3.13.5"
    assert fields["Version"] == "3.13.5-2"
    assert fields["Architecture"] == "amd64"
    assert fields["Installed-Size"] == "1234"
    assert fields["Depends"].split(", ") == list(load_registry().get("debian-12").runtime_dependencies)


def test_rpm_spec_from_registry(registry_json):
    info = driver_spec.platform_info(registry_json, "rhel-9", "x86_64")
    text = packages.rpm_spec(
        "3.14.0rc2", 3, "aarch64", info["runtime_dependencies"], "/w/staging", "/opt/python/3.14.0rc2"
    )
    assert "Name: python-3.14.0rc2\n" in text
    assert "Version: 3.14.0~rc2\n" in text
    assert "Release: 3\n" in text
    assert "BuildArch: aarch64\n" in text
    requires = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("Requires:")]
    assert requires == list(load_registry().get("rhel-9").runtime_dependencies)
    assert "\n/opt/python/3.14.0rc2\n" in text


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
