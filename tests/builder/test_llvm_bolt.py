"""Unit tests of BOLT per CPython series (builder_image/driver/llvm_bolt.py, and what flags.py
and make.py make of it): every series 3.9 to 3.15. `make -n` over CPython's own BOLT rules is in
test_make_rules.py; the real sequence on bullseye's toolchain in test_bolt_bullseye.py."""

from __future__ import annotations

import pytest
from builder_helpers import SERIES, VERSIONS
from driver import flags, llvm_bolt, make


@pytest.mark.parametrize("key", SERIES)
def test_bolt_eligibility_per_series(key):
    platform = {"bolt": {"package": "bolt-16", "tools": "/usr/lib/llvm-16/bin", "arches": ["x86_64"]}}
    version = VERSIONS[key]
    eligible = flags.bolt_config(version, "pgo+lto", platform) is not None
    assert eligible == (int(key.split(".")[1]) >= 9) == llvm_bolt.supported(version)
    assert flags.bolt_config(version, "none", platform) is None


BOLT_16 = {
    "package": "bolt-16",
    "tools": "/usr/lib/llvm-16/bin",
    "arches": ["x86_64"],
    "flag_substitutions": {"-reorder-functions=cdsort": "-reorder-functions=hfsort+"},
}
# A configured Makefile's variables as the driver reads them (3.11+'s; BOLT_* only from 3.12).
MAKEFILE_VARIABLES = {
    "OPT": "-DNDEBUG -g -O3 -Wall",
    "LINKCC": "$(PURIFY) $(MAINCC)",
    "BUILDPYTHON": "python$(BUILDEXE)",
    "BUILDEXE": "",
    "LINK_PYTHON_OBJS": "$(BLDLIBRARY)",
    "PY3LIBRARY": "libpython3.so",
    "CONFIGURE_CFLAGS_NODIST": "-fstack-protector -fno-reorder-blocks-and-partition",
}
MAKEFILE_BOLT = {"BOLT_INSTRUMENT_FLAGS": "", "BOLT_APPLY_FLAGS": "-reorder-functions=cdsort -use-gnu-stack"}


@pytest.mark.parametrize("key", SERIES)
def test_bolt_build_per_series(key):
    """3.12+ configure --enable-bolt (its compile/link flags) and run the Makefile's
    profile-bolt-stamp; 3.9-3.11 get those flags from the driver and the rule from the
    fragment. 3.9-3.12 get CPython 3.13's llvm-bolt flags (3.12's lack the computed-goto
    -skip-funcs); 3.13+ keep their Makefile's. The interpreter is position-dependent, so
    -skip-funcs names the eval loop alone. The platform's substitutions apply to all."""
    version, minor = VERSIONS[key], int(key.split(".")[1])
    makefile = dict(MAKEFILE_VARIABLES, **(MAKEFILE_BOLT if minor >= 12 else {}))
    assert ("--enable-bolt" in flags.configure_args(version, "pgo+lto", "/p", BOLT_16)) == (minor >= 12)
    env = flags.configure_env(version, BOLT_16)
    assert env["LLVM_BOLT"] == "/usr/lib/llvm-16/bin/llvm-bolt"
    own_flags = env["CFLAGS_NODIST"].endswith(" -fno-reorder-blocks-and-partition")
    assert own_flags == ("-Wl,--emit-relocs" in env["LDFLAGS_NODIST"]) == (minor <= 11)
    assert env["CFLAGS_NODIST"].startswith("-fstack-protector -D_FORTIFY_SOURCE=2")
    for variables in flags.make_variables(version, "pgo+lto", makefile, BOLT_16):
        assert variables["BOLT_BINARIES"] == "$(BUILDPYTHON)"
        apply = variables["BOLT_APPLY_FLAGS"].split()
        assert "-reorder-functions=hfsort+" in apply and "-use-gnu-stack" in apply
        own_apply = llvm_bolt.position_dependent_flags(llvm_bolt.BOLT_APPLY_FLAGS)
        assert (apply == [BOLT_16["flag_substitutions"].get(f, f) for f in own_apply]) == (minor <= 12)
        assert ("-skip-funcs=_PyEval_EvalFrameDefault" in apply) == (minor <= 12)
        assert (variables.get("LINKCC") == "$(PURIFY) $(MAINCC) -fno-pie -no-pie") == (minor <= 11)
        assert ("LLVM_BOLT" in variables) == (minor <= 11)
    fragment = make.make_fragment(version, makefile, BOLT_16) or ""
    assert ("profile-bolt-stamp: python" in fragment.splitlines()) == (minor <= 11)
    assert "profile-bolt-stamp" not in (make.make_fragment(version, makefile) or "")
    steps = make.make_steps(2, version, "pgo+lto", makefile, "-m test --pgo", BOLT_16)
    assert [argv[2] for _, argv in steps[:3]] == ["profile-run-stamp", "profile-opt", "profile-bolt-stamp"]
    assert steps[3][1][-2:] == ["--restore-gnu-stack", "python"]


def test_bolt_for_311_is_313s_configure_and_flags():
    """What 3.13's configure.ac adds for --enable-bolt and its default llvm-bolt flags
    (checked against the 3.13.5 and 3.13.15 tarballs), as the driver gives them to 3.9-3.11."""
    # Not 3.13's -fno-pie: CCSHARED's -fPIC comes after it on every compile line but those
    # of 3.11's setup.py, whose extension modules it made position-dependent (unlinkable).
    assert llvm_bolt.nodist_flags("3.11.2") == {
        "CFLAGS_NODIST": "-fno-reorder-blocks-and-partition",
        "LDFLAGS_NODIST": "-Wl,--emit-relocs",
    }
    assert (
        llvm_bolt.nodist_flags("3.10.16")
        == llvm_bolt.nodist_flags("3.9.2")
        == llvm_bolt.nodist_flags("3.11.2")
    )
    assert llvm_bolt.nodist_flags("3.12.8") == {}
    assert llvm_bolt.linkcc("3.11.2", "$(PURIFY) $(MAINCC)") == "$(PURIFY) $(MAINCC) -fno-pie -no-pie"
    assert llvm_bolt.linkcc("3.13.15", "$(PURIFY) $(CC) -fno-pie -no-pie") is None
    instrument, apply = llvm_bolt.tool_flags("3.11.2")
    assert llvm_bolt.tool_flags("3.12.8") == (instrument, apply) and llvm_bolt.tool_flags("3.13.15") is None
    assert instrument == (
        "-update-debug-sections "
        "-skip-funcs=_PyEval_EvalFrameDefault,sre_ucs1_match/1,sre_ucs2_match/1,sre_ucs4_match/1"
    )
    assert apply.startswith(instrument + " -reorder-blocks=ext-tsp -reorder-functions=cdsort ")
    assert apply.endswith(" -dyno-stats -use-gnu-stack -frame-opt=hot")
    # Before 3.11 the regex engine has no computed gotos: only the eval loop is skipped.
    instrument_39, apply_39 = llvm_bolt.tool_flags("3.9.2")
    assert llvm_bolt.tool_flags("3.10.16") == (instrument_39, apply_39)
    assert instrument_39 == "-update-debug-sections -skip-funcs=_PyEval_EvalFrameDefault"
    assert apply_39 == apply.replace(instrument, instrument_39)
    assert llvm_bolt.rules("3.12.8", {}) == []
    assert llvm_bolt.rules("3.10.16", {}) == llvm_bolt.rules("3.9.2", {}) == llvm_bolt.rules("3.11.2", {})
    assert llvm_bolt.rules("3.11.2", {"BUILDPYTHON": "python$(BUILDEXE)", "BUILDEXE": ".exe"})[2] == (
        "profile-bolt-stamp: python.exe"
    )


def test_position_dependent_flags_bolt_the_regex_engine_but_not_the_eval_loop():
    """Our BOLTed interpreter is linked -no-pie: its label tables are relocated data that
    llvm-bolt rewrites, so only the eval loop stays in -skip-funcs (CPython's list is for PIC)."""
    assert llvm_bolt.position_dependent_flags(list(llvm_bolt.BOLT_APPLY_FLAGS)) == [
        "-update-debug-sections",
        "-skip-funcs=_PyEval_EvalFrameDefault",
        *llvm_bolt.BOLT_APPLY_ONLY_FLAGS,
    ]
    regex_only = ["-skip-funcs=sre_ucs1_match/1,sre_ucs4_match/1", "-icf=1"]
    assert llvm_bolt.position_dependent_flags(regex_only) == ["-icf=1"]
    assert llvm_bolt.position_dependent_flags(["-skip-funcs=f,sre_ucs2_match/1"]) == ["-skip-funcs=f"]
    assert llvm_bolt.position_dependent_flags([]) == []
