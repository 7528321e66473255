"""Running programs for the driver and what it prints: never through a shell, every line
of a program's output into the build log, the last lines kept for the caller; the build
log itself; the protocol lines on stdout ("buildfarm: ...", read by the runners).
Standard library only, Python 3.6+."""

import datetime
import re
import subprocess
import sys

from .errors import BuildError

# Lines of output kept in memory (the log has all of them).
KEEP_LINES = 4000
# Lines of the failing phase printed on failure (and kept in failure.json).
TAIL_LINES = 40
_ERROR_LINE = re.compile(r"\berror:|\*\*\* \[|Error [0-9]+$")


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

    def write(self, text):
        self.handle.write(text)
        self.handle.flush()
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
        self.handle.close()


def start(argv, cwd=None, env=None, stderr=subprocess.STDOUT):
    """Start argv (never through a shell) with no input and its output as text lines on
    .stdout (stderr too, unless told otherwise). OSError if it cannot start."""
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        universal_newlines=True,
        errors="replace",
    )


def stream(log, argv, cwd=None, env=None, on_line=None):
    """Run argv, writing the command and its output (stdout and stderr) to log, and each
    line to on_line(line) when given. Returns (exit status, the last KEEP_LINES lines).
    OSError if it cannot start."""
    log.write("$ {}\n".format(" ".join(argv)))
    child = start(argv, cwd=cwd, env=env)
    output = []
    for line in child.stdout:
        log.write(line)
        if on_line is not None:
            on_line(line)
        output.append(line)
        if len(output) > KEEP_LINES:
            del output[: -KEEP_LINES // 4]
    return child.wait(), "".join(output)


def run(log, phase, argv, cwd=None, env=None, check=True, on_line=None):
    """Run argv (never through a shell), output into the log; BuildError on failure."""
    try:
        code, output = stream(log, argv, cwd=cwd, env=env, on_line=on_line)
    except OSError as error:
        raise BuildError(phase, "cannot run {}: {}".format(argv[0], error)) from None
    if check and code != 0:
        raise BuildError(phase, "{} exited with status {}".format(" ".join(argv[:3]), code))
    return code, output
