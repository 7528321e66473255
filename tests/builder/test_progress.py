"""The make phase's progress lines (builder_image/driver/progress.py): what counts as a compiled
object and a training-run test, the tracker over a step's output, the ticker that repeats the
line, and the protocol line the runners parse."""

from __future__ import annotations

import io
import re
import shutil
import sys
import time

import pytest
from builder_helpers import BUILDER_IMAGE
from driver import make, progress
from driver.process import Log, run

from buildfarm.runners.base import run_driver

# What functions/buildfarm/runners/base.py accepts (the contract both sides keep).
PROTOCOL = re.compile(r"buildfarm: progress (\S+) ([0-9]+)/([0-9]+|\?) (\S+)")

CORE = (
    "gcc -c -fno-strict-overflow -Wsign-compare -DNDEBUG -O3 -Wall -std=c11"
    " -Werror=implicit-function-declaration -fvisibility=hidden -fprofile-generate"
    " -I./Include/internal -I. -I./Include -fPIC -DPy_BUILD_CORE -o Objects/abstract.o Objects/abstract.c"
)
BUILTIN = (
    "gcc -fno-strict-overflow -DNDEBUG -O3 -DPy_BUILD_CORE_BUILTIN -c ./Modules/_json.c -o Modules/_json.o"
)
SETUP_PY = (
    "gcc -pthread -fPIC -Wno-unused-result -DNDEBUG -g -O3 -Wall -I./Include"
    " -c /tmp/Python-3.9.2/Modules/_ssl.c -o build/temp.linux-x86_64-3.9/tmp/Python-3.9.2/Modules/_ssl.o"
)


@pytest.mark.parametrize(
    ("line", "target"),
    [
        (CORE, "Objects/abstract.o"),
        (BUILTIN + "\n", "Modules/_json.o"),
        (SETUP_PY, "build/temp.linux-x86_64-3.9/tmp/Python-3.9.2/Modules/_ssl.o"),
        ("gcc -shared Modules/_json.o -o Modules/_json.cpython-313-x86_64-linux-gnu.so", None),
        ("gcc -o python Programs/python.o -Wl,-rpath,'$ORIGIN/../lib' -lm", None),
        ("./python -E -S -m sysconfig --generate-posix-vars", None),
        ("ar rcs libpython3.13.a Modules/getbuildinfo.o Parser/token.o", None),
        ("gcc -c a.c -o", None),
        ("", None),
    ],
)
def test_compiled_object(line, target):
    assert progress.compiled_object(line) == target


LTO_LINK = (
    "\tgcc -pthread -shared -Wl,-z,relro,-z,now -flto=auto -fuse-linker-plugin -Wl,-hlibpython3.9.so.1.0"
    " -o libpython3.9.so.1.0 Modules/getbuildinfo.o Parser/acceler.o -lpthread -ldl -lutil -lm"
)
INTERPRETER_LINK = (
    "gcc -pthread -fno-pie -no-pie -Wl,-z,relro,-z,now -Xlinker -export-dynamic buildfarm-spare-note.o"
    " -o python Programs/python.o Modules/getbuildinfo.o -lcrypt -lpthread -ldl -lutil -lm"
)


@pytest.mark.parametrize(
    ("line", "binary"),
    [
        (LTO_LINK, "libpython3.9.so.1.0"),
        (INTERPRETER_LINK, "python"),
        (
            "gcc -shared Modules/_json.o -o Modules/_json.cpython-313-x86_64-linux-gnu.so",
            "Modules/_json.cpython-313-x86_64-linux-gnu.so",
        ),
        (CORE, None),  # a compile
        ("gcc -o python", None),  # no objects: not a link we can tell
        ("ar rcs libpython3.13.a Modules/getbuildinfo.o Parser/token.o", None),
        ("./python -E -S -m sysconfig --generate-posix-vars", None),
        ("gcc a.o -o", None),
        ("", None),
    ],
)
def test_linked_binary(line, binary):
    assert progress.linked_binary(line) == binary


def test_tracker_shows_the_links_after_the_last_compile():
    """An LTO build's last minutes are two links and no output: the line says so, instead of
    the objects' count it stopped at; the next compile counts objects again."""
    tracker = progress.Tracker({"Objects/abstract.o", "Modules/_json.o"})
    tracker.start_step(compiles=True)
    tracker.feed(CORE)
    tracker.feed(LTO_LINK)
    assert tracker.current() == ("link", 1, None, "binaries")
    tracker.feed("./python -E -S -m sysconfig --generate-posix-vars")
    tracker.feed(INTERPRETER_LINK)
    assert tracker.current() == ("link", 2, None, "binaries")
    assert progress.progress_line(*tracker.current()) == "progress link 2/? binaries"
    tracker.feed(BUILTIN)
    assert tracker.current() == ("make", 2, 2, "objects")
    tracker.start_step(compiles=True)
    assert tracker.current() == ("make", 0, 2, "objects")
    tracker.feed(INTERPRETER_LINK)
    assert tracker.current() == ("link", 1, None, "binaries")  # counted per step


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("0:00:00 load avg: 0.54 [ 1/44] test_array", (1, 44)),
        ("0:00:03 load avg: 1.02 [ 2/44] test_base64 passed\n", (2, 44)),
        ("[44/44] test_xml_etree_c", (44, 44)),
        ("0:00:10 load avg: 1.10 [ 3/44/1] test_bytes failed (env changed)", (3, 44)),
        ("[ \u0661/44] test_array", None),  # ASCII digits only
        ("0:00:31 load avg: 1.54 running (1): test_concurrent_futures (30.1 sec)", None),
        ("[ 1/44]", None),
        ("Modules/_json.c:12: note: [ 1/2] nothing", (1, 2)),  # only read during a training run
    ],
)
def test_regrtest_progress(line, shown):
    assert progress.regrtest_progress(line) == shown


@pytest.mark.parametrize(
    ("line", "total"),
    [
        ("0:00:00 load avg: 0.50 Run 44 tests sequentially", 44),
        ("Run 43 tests in parallel using 2 worker processes", 43),
        ("Run 1 test sequentially", 1),
        # As 3.9.18, 3.11.7 and 3.13.0 print them (-m test --pgo, with and without -j2):
        ("0:00:00 load avg: 4.36 Run 3 tests sequentially in a single process (timeout: 1 min 40 sec)", 3),
        (
            "0:00:00 load avg: 4.47 Run 3 tests in parallel using 2 worker processes"
            " (timeout: 1 min 40 sec, worker timeout: 2 min 30 sec)",
            3,
        ),
        ("0:00:00 load avg: 4.38 Run tests sequentially (timeout: 1 min 40 sec)", None),
        ("0:00:00 load avg: 0.50 Run tests in parallel using 2 child processes", None),  # 3.9 to 3.11
        ("Run \u0664\u0664 tests sequentially", None),
    ],
)
def test_regrtest_start(line, total):
    assert progress.regrtest_start(line) == total


def test_progress_line_is_the_protocol():
    line = "buildfarm: " + progress.progress_line("make", 412, 1032, "objects")
    assert line == "buildfarm: progress make 412/1032 objects"
    assert PROTOCOL.fullmatch(line)
    assert progress.progress_line("pgo", 0, None, "tests") == "progress pgo 0/? tests"


def test_tracker_through_a_pgo_and_bolt_build():
    tracker = progress.Tracker({"Objects/abstract.o", "Modules/_json.o", "Python/ceval.o"})
    tracker.start_step(compiles=True, training="pgo")
    assert tracker.current() == ("make", 0, 3, "objects")
    for line in (CORE, BUILTIN, BUILTIN, SETUP_PY, "0:00:00 [ 1/2] not yet a test run"):
        tracker.feed(line)
    # The same object twice counts once; setup.py's objects are not make's.
    assert tracker.current() == ("pgo", 1, 2, "tests")
    tracker.feed("0:00:00 load avg: 0.50 Run 44 tests sequentially")
    assert tracker.current() == ("pgo", 0, 44, "tests")
    tracker.feed("0:00:09 load avg: 0.90 [12/44] test_json")
    assert tracker.current() == ("pgo", 12, 44, "tests")

    tracker.start_step(compiles=True)  # the optimized build compiles everything again
    assert tracker.current() == ("make", 0, 3, "objects")
    tracker.feed(CORE)
    tracker.feed("0:00:09 load avg: 0.90 [12/44] test_json")  # no training run in this step
    assert tracker.current() == ("make", 1, 3, "objects")

    tracker.start_step(compiles=False, training="bolt")
    assert tracker.current() == ("bolt", 0, None, "tests")
    tracker.feed("[ 7/45] test_re")
    assert tracker.current() == ("bolt", 7, 45, "tests")


def test_tracker_without_a_known_total_counts_every_object():
    tracker = progress.Tracker(None)
    for line in (CORE, BUILTIN, SETUP_PY):
        tracker.feed(line)
    assert tracker.current() == ("make", 3, None, "objects")
    assert progress.progress_line(*tracker.current()) == "progress make 3/? objects"


def test_ticker_repeats_the_line_and_ends_with_the_last_state():
    tracker = progress.Tracker({"a.o", "b.o"})
    lines: list[str] = []
    with progress.Ticker(tracker, interval=0.02, write=lines.append):
        for _ in range(3000):  # up to ~30 s, counted in sleeps (no clock: the suite runs under faketime too)
            if len(lines) >= 4:
                break
            time.sleep(0.01)
        tracker.feed("gcc -c a.c -o a.o")
    assert lines[:4] == ["progress make 0/2 objects"] * 4  # unchanged, still repeated
    assert lines[-1] == "progress make 1/2 objects"


def test_ticker_prints_protocol_lines_well_within_30_seconds(capsys):
    assert progress.INTERVAL <= 15
    with progress.Ticker(progress.Tracker(None), interval=0.01):
        time.sleep(0.05)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 2 and all(PROTOCOL.fullmatch(line) for line in lines)


def test_every_long_make_step_has_progress():
    makefile = {"LINK_PYTHON_OBJS": "", "PY3LIBRARY": "libpython3.so"}
    bolt = {"tools": "/usr/lib/llvm-16/bin", "arches": ["x86_64"], "package": "bolt-16"}
    steps = make.make_steps(2, "3.13.5", "pgo+lto", makefile, "-m test --pgo", bolt)
    steps += make.make_steps(2, "3.13.5", "none", makefile)
    shown = {what: make.STEP_PROGRESS.get(what) for what, _ in steps}
    assert shown == {
        make.PGO_STEP: (True, "pgo"),
        make.OPTIMIZED_STEP: (True, None),
        make.BOLT_STEP: (False, "bolt"),
        make.GNU_STACK_STEP: None,  # a second's work
        make.BUILD_STEP: (True, None),
    }


@pytest.mark.skipif(not shutil.which("gcc") or not shutil.which("make"), reason="needs gcc and make")
def test_a_real_make_is_counted_from_make_n_and_its_output(tmp_path):
    """make -n (with a recursive $(MAKE), as CPython's profile-opt) gives the total; the real make's
    output, streamed through process.run, the count."""
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.c").write_text(f"int {name}(void) {{ return 1; }}\n")
    (tmp_path / "Makefile").write_text(
        "all:\n\t$(MAKE) objects\n\tgcc -shared a.o b.o c.o -o libabc.so\n"
        "objects: a.o b.o c.o\n%.o: %.c\n\tgcc -c -fPIC $< -o $@\n"
    )
    env = {"PATH": "/usr/bin:/bin"}
    objects = progress.dry_run_objects(["make", "-j2"], str(tmp_path), env)
    assert objects == {"a.o", "b.o", "c.o"}
    assert not list(tmp_path.glob("*.o"))  # dry
    assert progress.dry_run_objects(["make", "-j2", "no-such-target"], str(tmp_path), env) is None

    tracker = progress.Tracker(objects)
    lines: list[str] = []
    log = Log(str(tmp_path / "build.log"))
    with progress.Ticker(tracker, interval=0.05, write=lines.append):
        run(log, "make", ["make", "-j2"], cwd=str(tmp_path), env=env, on_line=tracker.feed)
    log.close()
    assert tracker.compiled == {"a.o", "b.o", "c.o"}
    assert lines[-1] == "progress link 1/? binaries"  # the library's link came last
    assert "gcc -c -fPIC a.c -o a.o" in (tmp_path / "build.log").read_text()


def test_the_runner_reads_the_drivers_progress_lines(tmp_path):
    """The contract end to end: a driver process's ticker, read by runners.base.run_driver."""
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(BUILDER_IMAGE)!r})\n"
        "from driver import progress\n"
        "tracker = progress.Tracker({'a.o', 'b.o'})\n"
        "tracker.feed('gcc -c a.c -o a.o')\n"
        # A long interval: each block prints its line once when it starts, once when it ends.
        "with progress.Ticker(tracker, interval=100):\n"
        "    pass\n"
        "tracker.start_step(compiles=False, training='bolt')\n"
        "with progress.Ticker(tracker, interval=100):\n"
        "    pass\n"
        "tracker.feed('0:00:01 load avg: 0.5 [ 3/45] test_re')\n"
        "with progress.Ticker(tracker, interval=100):\n"
        "    pass\n"
        'print(\'buildfarm: result {"ok": true, "phase": null, "reason": null}\')\n'
    )
    seen: list[tuple[str, int, int | None, str]] = []
    result = run_driver(
        [sys.executable, "-c", script],
        {"PATH": "/usr/bin:/bin"},
        None,
        output=io.StringIO(),
        on_progress=lambda *args: seen.append(args),
    )
    assert result.ok
    expected = [("make", 1, 2, "objects"), ("bolt", 0, None, "tests"), ("bolt", 3, 45, "tests")]
    assert seen == [shown for shown in expected for _ in range(2)]
