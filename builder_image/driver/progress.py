"""Progress of the make phase's long steps, printed as protocol lines at least every 30 s:

    buildfarm: progress <what> <done>/<total> <unit>

what is "make" while objects compile (unit "objects"), "link" once the step's latest
compiler command links (unit "binaries": the links the step has started; an LTO link of
the interpreter can take minutes after the last compile), "pgo" or "bolt" during a training
run (unit "tests": regrtest's "[ k/N] test_x" lines); total is "?" while unknown. The
objects to compile are what `make -n` prints for the step (dry_run_objects()); a Tracker
counts them, and the training run's tests, from the step's output lines; a Ticker prints
the tracker's line from a thread, also when nothing changed (a minute-long LTO link prints
nothing). The runners parse these lines (functions/buildfarm/runners/base.py).
Standard library only, Python 3.6+.
"""

import re
import subprocess
import threading
import time

from .process import say, start

INTERVAL = 10  # seconds between two lines; the runners count on one at least every 30 s
POLL_STEP = 0.05  # seconds: how soon the ticker notices that the block ended
DRY_RUN_TIMEOUT = 120
MAKE = "make"  # the phase's name, shown while objects compile
LINK = "link"
OBJECTS, TESTS, BINARIES = "objects", "tests", "binaries"

# regrtest's progress: "0:00:05 load avg: 1.20 [ 2/43] test_base64 passed", "[ 3/43/1] test_x"
_REGRTEST_PROGRESS = re.compile(r"(?:.* )?\[ *([0-9]+)/([0-9]+)(?:/[0-9]+)?\] \S.*")
# regrtest's start (3.12+ name the count): "Run 43 tests sequentially", "Run 43 tests in parallel ..."
_REGRTEST_START = re.compile(r"(?:.* )?Run ([0-9]+) tests? (?:sequentially|in parallel).*")


def compiled_object(line):
    """The object file a compiler command line makes ("cc ... -c ... -o X.o ..."), else None."""
    words = line.split()
    if "-c" not in words or "-o" not in words:
        return None
    index = words.index("-o") + 1
    if index < len(words) and words[index].endswith(".o"):
        return words[index]
    return None


def linked_binary(line):
    """The program or library a compiler's link command makes ("cc ... -o X a.o b.o", no -c),
    else None. Objects among the words tell a link from any other command with -o."""
    words = line.split()
    if "-c" in words or "-o" not in words:
        return None
    index = words.index("-o") + 1
    if index >= len(words) or words[index].endswith(".o"):
        return None
    if not any(word.endswith(".o") for word in words):
        return None
    return words[index]


def objects_in(lines):
    """The object files that these command lines (make -n's output) compile."""
    return {target for target in map(compiled_object, lines) if target is not None}


def regrtest_progress(line):
    """(k, N) of a regrtest progress line "[ k/N] test_x", else None."""
    match = _REGRTEST_PROGRESS.fullmatch(line.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def regrtest_start(line):
    """N of regrtest's "Run N tests ..." line, else None."""
    match = _REGRTEST_START.fullmatch(line.strip())
    return int(match.group(1)) if match else None


def progress_line(what, done, total, unit):
    """The protocol line without its "buildfarm: " prefix: "progress make 412/1032 objects"."""
    return "progress {} {}/{} {}".format(what, done, "?" if total is None else total, unit)


class Tracker(object):
    """What the current make step has done, from its output lines (feed(), in the thread that
    reads them); current() is read by the Ticker's thread, so each change is one assignment."""

    def __init__(self, objects=None):
        self.objects = frozenset(objects) if objects else None
        self.compiled = set()
        self.training = None
        self.tests = None  # (what, done, total) once the training run shows
        self.start_step(compiles=True)

    def start_step(self, compiles, training=None):
        """A new step: it compiles the objects first (then runs `training`, if any), or it
        starts with its training run."""
        self.compiled = set()
        self.links = 0  # link commands this step has started
        self.linking = False  # its latest compiler command links
        self.training = training
        self.tests = None if compiles else (training, 0, None)

    def feed(self, line):
        target = compiled_object(line)
        if target is not None:
            self.linking = False
            if self.objects is None or target in self.objects:
                self.compiled.add(target)
            return
        if linked_binary(line) is not None:
            self.links, self.linking = self.links + 1, True
            return
        if self.training is None:
            return
        shown = regrtest_progress(line)
        if shown is not None:
            self.tests = (self.training, *shown)
            return
        total = regrtest_start(line)
        if total is not None:
            self.tests = (self.training, 0, total)

    def current(self):
        """(what, done, total or None, unit)."""
        tests = self.tests
        if tests is not None:
            return (*tests, TESTS)
        if self.linking:
            return (LINK, self.links, None, BINARIES)
        total = len(self.objects) if self.objects is not None else None
        return (MAKE, len(self.compiled), total, OBJECTS)


class Ticker(object):
    """While the with-block runs: the tracker's line now, every `interval` seconds, and once
    more at the end."""

    def __init__(self, tracker, interval=INTERVAL, write=say):
        self.tracker = tracker
        self.interval = interval
        self.write = write
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def _loop(self):
        stopping = False
        while True:
            try:
                self.write(progress_line(*self.tracker.current()))
            except (OSError, ValueError):  # stdout gone: the build goes on without progress lines
                return
            if stopping:
                return
            stopping = self._pause()

    def _pause(self):
        """Wait `interval` seconds, or less if the block ends: True when it ended. Short
        sleeps, counted, rather than Event.wait(interval): under libfaketime (which shifts the
        monotonic clock too) a timed Event.wait never times out, and the line never repeats."""
        steps = max(1, round(self.interval / POLL_STEP))
        for _ in range(steps):
            if self._stop.is_set():
                return True
            time.sleep(min(POLL_STEP, self.interval))
        return self._stop.is_set()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_exc_info):
        self._stop.set()
        self._thread.join()
        return False


def dry_run_objects(argv, cwd, env, timeout=DRY_RUN_TIMEOUT):
    """The objects that the make command argv compiles, from `make -n` (which still runs
    $(MAKE) sub-makes, dry too), or None when it cannot tell."""
    dry = [argv[0], "-n"] + [arg for arg in argv[1:] if not arg.startswith("-j")]
    try:
        child = start(dry, cwd=cwd, env=env, stderr=subprocess.DEVNULL)
    except OSError:
        return None
    try:
        output = child.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        return None
    if child.returncode != 0:
        return None
    return objects_in(output.splitlines()) or None
