"""The two stages of a pgo+lto build as make runs them (flags.make_variables(),
make.make_steps(), make.make_fragment()): what setup.py's extension modules are built with,
slim LTO objects in the final stage, and the frozen modules' files kept between the stages,
checked per series 3.9-3.15 and, for the make rules, by GNU make itself."""

from __future__ import annotations

import os
import subprocess

import pytest
from builder_helpers import SERIES, VERSIONS
from driver import flags, make, series


@pytest.mark.parametrize("key", SERIES)
def test_setup_py_modules_are_built_like_the_core_per_series(key):
    """Up to 3.11 setup.py builds the shared modules with the configured Makefile's flags
    (fat LTO objects and -g included); only CFLAGS_NODIST/LDFLAGS_NODIST reach it: the
    instrumented stage turns LTO and -g off there, the final one fat objects. 3.12+ build
    them with make (no setup.py)."""
    version = VERSIONS[key]
    by_setup_py = key in ("3.9", "3.10", "3.11")
    assert series.modules_by_setup_py(version) == by_setup_py
    lto = "-flto -fuse-linker-plugin -ffat-lto-objects -flto-partition=none -g"
    makefile = {"CONFIGURE_CFLAGS_NODIST": lto, "CONFIGURE_LDFLAGS_NODIST": lto}
    instrumented, final = flags.make_variables(version, "pgo+lto", makefile)
    plain = flags.make_variables(version, "none", makefile)[1]
    for name in ("CFLAGS_NODIST", "LDFLAGS_NODIST"):
        # Last on setup.py's command lines (before the stage's -fprofile-*), so they win.
        assert instrumented.get(name) == ("-fno-lto -g0" if by_setup_py else None)
        assert name not in plain
    assert final.get("CFLAGS_NODIST") == ("-fno-fat-lto-objects" if by_setup_py else None)
    assert "LDFLAGS_NODIST" not in final
    # The core's objects are slim in the final stage, in every series.
    for name in ("CONFIGURE_CFLAGS_NODIST", "CONFIGURE_LDFLAGS_NODIST"):
        assert "-ffat-lto-objects" not in final[name] and "-flto" in final[name]


@pytest.mark.parametrize("key", SERIES)
def test_final_stage_keeps_the_frozen_modules_per_series(key):
    """3.11+ freeze modules in build_all with programs linked from the objects without LTO
    (FREEZE_MODULE_DEPS): the final stage takes the instrumented build's files instead
    (their prerequisites on those programs emptied), restored by a step of its own."""
    version = VERSIONS[key]
    makefile = {"CONFIGURE_CFLAGS_NODIST": "-flto", "LINK_PYTHON_OBJS": "$(BLDLIBRARY)"}
    frozen = key not in ("3.9", "3.10")
    if frozen:
        makefile["FREEZE_MODULE_DEPS"] = "_bootstrap_python"
        makefile["FREEZE_MODULE_BOOTSTRAP_DEPS"] = "Programs/_freeze_module"
    assert flags.frozen_by_bootstrap(makefile) == frozen
    instrumented, final = flags.make_variables(version, "pgo+lto", makefile)
    none = flags.make_variables(version, "none", makefile)[1]
    for name in flags.FROZEN_DEPS_VARIABLES:
        assert name not in instrumented and name not in none
        assert final.get(name) == ("" if frozen else None)
    steps = [what for what, _ in make.make_steps(2, version, "pgo+lto", makefile)]
    assert steps == [make.PGO_STEP, *([make.FROZEN_STEP] if frozen else []), make.OPTIMIZED_STEP]
    assert make.make_steps(2, version, "none", makefile)[0][0] == make.BUILD_STEP
    fragment = make.make_fragment(version, makefile) or ""
    assert ("clean-retain-profile: buildfarm-keep-frozen" in fragment) == frozen


# 3.13's rules for two frozen modules and the clean between the PGO stages, as configured
# (FREEZE_MODULE_* as configure writes them for a native build), with stand-ins for the
# programs: a run of either shows as a line in ran.log.
MAKEFILE_FROZEN = """FREEZE_MODULE_BOOTSTRAP=./Programs/_freeze_module
FREEZE_MODULE_BOOTSTRAP_DEPS=Programs/_freeze_module
FREEZE_MODULE=./_bootstrap_python $(srcdir)/Programs/_freeze_module.py
FREEZE_MODULE_DEPS=_bootstrap_python $(srcdir)/Programs/_freeze_module.py
srcdir=.
FROZEN_FILES_OUT = Python/frozen_modules/importlib._bootstrap.h Python/frozen_modules/abc.h
all: Python/frozen.o
Python/frozen.o: $(FROZEN_FILES_OUT)
\techo frozen.o >> ran.log; touch $@
Programs/_freeze_module:
\techo link _freeze_module >> ran.log; touch $@
_bootstrap_python:
\techo link _bootstrap_python >> ran.log; touch $@
Python/frozen_modules/importlib._bootstrap.h: Lib/importlib/_bootstrap.py $(FREEZE_MODULE_BOOTSTRAP_DEPS)
\techo freeze importlib >> ran.log; echo importlib > $@
Python/frozen_modules/abc.h: Lib/abc.py $(FREEZE_MODULE_DEPS)
\techo freeze abc >> ran.log; echo abc > $@
clean-retain-profile:
\trm -f Python/frozen.o Programs/_freeze_module _bootstrap_python
\t-rm -f Python/frozen_modules/*.h
"""


def test_frozen_modules_outlive_the_clean_between_the_stages(tmp_path):
    """GNU make over the rules above with the driver's fragment: the instrumented build
    freezes with the programs; clean-retain-profile keeps the files aside; the restore step
    puts them back with their times; the final build's make (FROZEN_DEPS_VARIABLES empty)
    compiles with them and neither links the programs nor freezes again."""
    (tmp_path / "Makefile").write_text(MAKEFILE_FROZEN)
    for name in ("Lib/importlib/_bootstrap.py", "Lib/abc.py", "Programs/_freeze_module.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
        os.utime(tmp_path / name, (1_000_000_000, 1_000_000_000))  # the tarball's old times
    (tmp_path / "Python/frozen_modules").mkdir(parents=True)
    makefile = flags.makefile_variables(MAKEFILE_FROZEN)
    (tmp_path / "buildfarm.mk").write_text(make.make_fragment("3.13.15", makefile))
    env = {"PATH": "/usr/bin:/bin", "MAKEFILES": str(tmp_path / "buildfarm.mk")}

    def run_make(*argv: str) -> list[str]:
        log = tmp_path / "ran.log"
        log.unlink(missing_ok=True)
        subprocess.run(["make", *argv], cwd=tmp_path, env=env, check=True, stdout=subprocess.DEVNULL)
        return log.read_text().splitlines() if log.exists() else []

    assert run_make("clean-retain-profile") == []  # a fresh tree: nothing to keep
    instrumented = run_make("all")
    programs_and_freezes = {"link _freeze_module", "link _bootstrap_python", "freeze importlib", "freeze abc"}
    assert programs_and_freezes <= set(instrumented)
    header = tmp_path / "Python/frozen_modules/abc.h"
    made = header.stat().st_mtime_ns
    run_make("clean-retain-profile")
    assert not header.exists()
    steps = dict(make.make_steps(2, "3.13.15", "pgo+lto", makefile))
    assert run_make(*steps[make.FROZEN_STEP][1:]) == []
    assert header.read_text() == "abc\n" and header.stat().st_mtime_ns == made
    _, final = flags.make_variables("3.13.15", "pgo+lto", makefile)
    assert run_make("all", *flags.make_assignments(final)) == ["frozen.o"]
    assert not (tmp_path / "Programs/_freeze_module").exists()


def test_restoring_without_kept_files_fails(tmp_path):
    """A final build whose frozen files were not kept stops at the restore step."""
    (tmp_path / "Makefile").write_text(MAKEFILE_FROZEN)
    makefile = flags.makefile_variables(MAKEFILE_FROZEN)
    (tmp_path / "buildfarm.mk").write_text(make.make_fragment("3.13.15", makefile))
    env = {"PATH": "/usr/bin:/bin", "MAKEFILES": str(tmp_path / "buildfarm.mk")}
    done = subprocess.run(["make", make.FROZEN_RESTORE_TARGET], cwd=tmp_path, env=env, capture_output=True)
    assert done.returncode != 0
