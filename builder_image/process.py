"""Running a program for the driver: never through a shell, every line of its output
into the build log, the last lines kept for the caller. Standard library only, Python 3.6+."""

import subprocess

# Lines of output kept in memory (the log has all of them).
KEEP_LINES = 4000


def stream(log, argv, cwd=None, env=None):
    """Run argv, writing the command and its output (stdout and stderr) to log.
    Returns (exit status, the last KEEP_LINES lines). OSError if it cannot start."""
    log.write("$ {}\n".format(" ".join(argv)))
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        universal_newlines=True,
        errors="replace",
    )
    output = []
    for line in process.stdout:
        log.write(line)
        output.append(line)
        if len(output) > KEEP_LINES:
            del output[: -KEEP_LINES // 4]
    return process.wait(), "".join(output)
