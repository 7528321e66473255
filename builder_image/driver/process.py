"""Running programs for the driver and what it prints: never through a shell, every line
of a program's output into the build log, the last lines kept for the caller; the build
log itself; the protocol lines on stdout ("buildfarm: ...", read by the runners).
Standard library only, Python 3.6+."""

import datetime
import os
import re
import signal
import subprocess
import sys
import threading
import time

from .errors import BuildError

# Lines of output kept in memory (the log has all of them).
KEEP_LINES = 4000
# Lines of the failing phase printed on failure (and kept in failure.json).
TAIL_LINES = 40
_ERROR_LINE = re.compile(r"\berror:|\*\*\* \[|Error [0-9]+$")
# Seconds a stopped child's process group has between SIGTERM and SIGKILL.
STOP_GRACE = 3.0
# Children started by popen() and not yet reaped: stop_children() ends their process groups
# when the build stops early, before its work directory goes.
_RUNNING = []
# While the main thread is in popen() (a child forked, not yet in _RUNNING), a stop signal's
# exception waits in _DEFERRED until the child is in _RUNNING (raise_when_safe()).
_STARTING = [0]
_DEFERRED = []


def say(message):
    """A protocol line on stdout: "buildfarm: <message>" (runners/base.py parses the phase,
    progress and result lines)."""
    sys.stdout.write("buildfarm: " + message + "\n")
    sys.stdout.flush()


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Log(object):
    """The full build log (every command and its output), plus the current phase's lines."""

    def __init__(self, path):
        self.path = path
        self.handle = open(path, "w")  # noqa: SIM115 - open for the whole build, closed in close()
        self.phase_lines = []
        self.write_error = None  # why the file stopped taking lines (a full disk): kept in memory

    def write(self, text):
        if self.write_error is None:
            try:
                self.handle.write(text)
                self.handle.flush()
            except OSError as error:
                # The failure this causes must still be reported, with its reason: the lines
                # stay in memory (tail()), the file keeps what it had.
                self.write_error = error
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
        try:
            self.handle.close()
        except OSError as error:  # the last flush, on a full disk
            self.write_error = self.write_error or error


def popen(argv, **kwargs):
    """subprocess.Popen in a new session (its own process group, so stop() reaches make's
    compilers and the PGO run's workers too), remembered until it is reaped."""
    _RUNNING[:] = [child for child in _RUNNING if child.returncode is None]
    # Signal handlers run in the main thread: only its starts defer them.
    counted = 1 if threading.current_thread() is threading.main_thread() else 0
    _STARTING[0] += counted
    try:
        child = subprocess.Popen(argv, start_new_session=True, **kwargs)
        _RUNNING.append(child)
    finally:
        _STARTING[0] -= counted
        if counted and _DEFERRED:
            raise _DEFERRED.pop()
    return child


def raise_when_safe(error):
    """For a signal handler: raise error now or, when the signal came while popen() was
    starting a child, as soon as that child is in _RUNNING (so stop_children() ends it)."""
    if _STARTING[0]:
        _DEFERRED.append(error)
    else:
        raise error


def start(argv, cwd=None, env=None, stderr=subprocess.STDOUT):
    """Start argv (never through a shell) with no input and its output as text lines on
    .stdout (stderr too, unless told otherwise). OSError if it cannot start."""
    return popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        universal_newlines=True,
        errors="replace",
    )


def _exited(child):
    """Whether child has exited, without reaping it: while unreaped, its pid stays its
    process group's id and cannot be reused."""
    try:
        return os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped
        return True


def stop(child, grace=STOP_GRACE):
    """End child's whole process group: SIGTERM, up to grace seconds for child to exit,
    then SIGKILL for whatever of the group is left; child reaped."""
    if child.returncode is None:
        _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while not _exited(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal_group(child, signal.SIGKILL)
        child.wait()
    if child.stdout is not None:
        child.stdout.close()


def _signal_group(child, signum):
    try:
        os.killpg(child.pid, signum)  # child unreaped: its pid is still its group's id
    except OSError:  # not a group of its own after all: child alone
        child.send_signal(signum)


def stop_children():
    """Stop every child still running (the build failed or was interrupted)."""
    while _RUNNING:
        stop(_RUNNING.pop())


def stream(log, argv, cwd=None, env=None, on_line=None):
    """Run argv, writing the command and its output (stdout and stderr) to log, and each
    line to on_line(line) when given. Returns (exit status, the last KEEP_LINES lines).
    OSError if it cannot start."""
    log.write("$ {}\n".format(" ".join(argv)))
    child = start(argv, cwd=cwd, env=env)
    output = []
    try:  # an exception before this is caught by stop_children(): the child is in _RUNNING
        for line in child.stdout:
            log.write(line)
            if on_line is not None:
                on_line(line)
            output.append(line)
            if len(output) > KEEP_LINES:
                del output[: -KEEP_LINES // 4]
        return child.wait(), "".join(output)
    except BaseException:  # Interrupted (SIGTERM) or a failure of ours: the child goes too
        stop(child)
        raise


def run(log, phase, argv, cwd=None, env=None, check=True, on_line=None):
    """Run argv (never through a shell), output into the log; BuildError on failure."""
    try:
        code, output = stream(log, argv, cwd=cwd, env=env, on_line=on_line)
    except OSError as error:
        raise BuildError(phase, "cannot run {}: {}".format(argv[0], error)) from None
    if check and code != 0:
        raise BuildError(phase, "{} exited with status {}".format(" ".join(argv[:3]), code))
    return code, output
