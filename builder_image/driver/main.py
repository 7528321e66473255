"""The driver's run: the build spec from the environment, every phase in order with its
timing, the failure record or the published cell, and the result line the runners read:

    buildfarm: phase NAME done in S s
    buildfarm: result {"ok": ..., "phase": ..., "reason": ...}

(functions/buildfarm/runners/base.py parses both). Standard library only, Python 3.6+."""

import json
import os
import shutil
import signal
import sys
import time
import traceback

from . import make, manifest, packages, preflight, sbom, selftest, source, workdir
from .cell import Build
from .errors import BuildError, SpecError
from .install import install
from .process import raise_when_safe, say, stop_children, utc_now
from .spec import check_environment, env_flag, load_platforms, log_dir_for, parse_spec, platform_info
from .upload import open_store, upload

# The phases in order: (name, function of the Build). BUILDFARM_STOP_AFTER names one.
PHASES = (
    ("preflight", preflight.preflight),
    ("fetch", source.fetch),
    ("verify", source.verify),
    ("configure", make.configure),
    ("make", make.make),
    ("install", install),
    ("selftest", selftest.phase),
    ("sbom", sbom.phase),
    ("package", packages.package),
    ("manifest", manifest.write_manifest),
    ("upload", upload),
)
PHASE_NAMES = tuple(name for name, _ in PHASES)
USAGE = "usage: BUILD_SPEC='{...}' build.py   (or: build.py --build-dependencies PLATFORM ARCH)"


class Interrupted(BaseException):
    """SIGTERM (a runner or Batch stopping the build)."""


def _on_signal(signum, _frame):
    # Once: a second SIGTERM must not cut short the stopping of the children and the record.
    signal.signal(signum, signal.SIG_IGN)
    raise_when_safe(Interrupted("signal {}".format(signum)))


def execute(spec, registry_json, work):
    """Run every phase (up to BUILDFARM_STOP_AFTER); on failure write logs/.../build.log and
    failure.json. Returns the result dict."""
    build = Build(spec, registry_json, work)
    say(
        "building CPython {} for {} {} (build {}, optimization {})".format(
            spec["version"], spec["platform"], spec["arch"], spec["build"], spec["optimization"]
        )
    )
    stop_after = os.environ.get("BUILDFARM_STOP_AFTER")  # checked by main()
    phases = PHASES[: PHASE_NAMES.index(stop_after) + 1] if stop_after else PHASES
    phase = "preflight"
    try:
        for phase, step in phases:
            run_phase(build, phase, step)
    except (Interrupted, KeyboardInterrupt, Exception) as error:
        stop_children()  # make, the compilers, a PGO run: before the record and the work dir go
        return report_failure(build, phase, error)
    build.log.close()
    copy_log(build.log.path)
    if stop_after and stop_after != "upload":
        say("stopped after phase {} (BUILDFARM_STOP_AFTER); nothing published".format(stop_after))
        return {"ok": True, "phase": None, "reason": None, "stopped_after": stop_after, "work": work}
    say("published {}/{}".format(build.store.describe(), spec["artifact_dir"]))
    return {"ok": True, "phase": None, "reason": None, "artifact_dir": spec["artifact_dir"]}


def run_phase(build, phase, step):
    build.log.start_phase(phase)
    say("phase {} ...".format(phase))
    started = time.monotonic()
    step(build)
    elapsed = time.monotonic() - started
    build.timings[phase] = round(elapsed, 1)
    build.log.write("phase {} done in {:.1f} s\n".format(phase, elapsed))
    say("phase {} done in {:.1f} s".format(phase, elapsed))


def report_failure(build, phase, error):
    """Print the failure and the phase's last lines, record it (unless it is one that would
    overwrite another build's files), and return the result dict."""
    if isinstance(error, BuildError):
        phase, reason = error.phase, error.reason
    elif isinstance(error, Interrupted):
        reason = "interrupted ({})".format(error)
    else:
        reason = "{}: {}".format(type(error).__name__, error)
        build.log.write(traceback.format_exc())
    tail = build.log.tail()
    build.log.write("\nFAILED in phase {}: {}\n".format(phase, reason))
    say("phase {} FAILED: {}".format(phase, reason))
    if tail:
        sys.stdout.write("buildfarm: last lines of phase {}:\n".format(phase))
        for line in tail:
            sys.stdout.write("    " + line + "\n")
    build.log.close()
    if isinstance(error, BuildError) and not error.record:  # WouldOverwrite
        copy_log(build.log.path)  # the store has nothing of this build, not even its failure
    else:
        record_failure(build, phase, reason, tail)
    return {"ok": False, "phase": phase, "reason": reason}


def copy_log(path):
    target = os.environ.get("BUILDFARM_LOG_FILE")
    if target:
        try:
            shutil.copyfile(path, target)
        except OSError as error:
            say("cannot copy the log to {}: {}".format(target, error))


def record_failure(build, phase, reason, tail):
    """logs/<v>/<p>/<a>/<b>/build.log + failure.json; nothing under builds/. failure.json goes
    from memory, so a full work disk (often the failure itself) still leaves the record."""
    copy_log(build.log.path)
    if build.log.write_error is not None:
        say("build.log is incomplete: {}".format(build.log.write_error))
    failure = {"phase": phase, "reason": reason, "tail": tail, "failed_at": utc_now()}
    content = (json.dumps(failure, indent=2) + "\n").encode()
    try:
        store = build.store or open_store(build.spec["store"])
        store.write_logs(log_dir_for(build.spec), [("build.log", build.log.path), ("failure.json", content)])
    except Exception as error:  # the failure itself is already reported; keep going
        say("cannot write the failure record to the store: {}".format(error))


def print_build_dependencies(platform_id, arch):
    """For the Dockerfiles: the registry's package list for a platform and arch, one a line."""
    try:
        print("\n".join(platform_info(load_platforms(), platform_id, arch)["build_dependencies"]))
    except SpecError as error:
        say("error: {}".format(error))
        return 2
    return 0


def read_spec():
    """(spec, registry) from BUILD_SPEC and the registry; SpecError naming what is wrong."""
    text = os.environ.get("BUILD_SPEC")
    if not text:
        raise SpecError("BUILD_SPEC is not set (the build spec JSON goes in the environment)")
    registry_json = load_platforms()
    spec = parse_spec(text, registry_json)
    if os.environ.get("BUILDFARM_STOP_AFTER", PHASE_NAMES[-1]) not in PHASE_NAMES:
        raise SpecError("BUILDFARM_STOP_AFTER must be one of: " + ", ".join(PHASE_NAMES))
    check_environment(os.environ)  # the on/off options and BUILDFARM_JOBS, before any work
    return spec, registry_json


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 3 and argv[0] == "--build-dependencies":
        return print_build_dependencies(argv[1], argv[2])
    if argv:
        say(USAGE)
        return 2
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        spec, registry_json = read_spec()
    except (SpecError, OSError, ValueError) as error:
        say("error: {}".format(error))
        return 2
    try:
        work = workdir.create(spec, os.environ)  # random, or the cell's stable one with ccache
    except OSError as error:
        say("error: cannot create a work directory under {}: {}".format(workdir.work_root(os.environ), error))
        return 2
    if work.note:
        say(work.note)
    try:
        result = execute(spec, registry_json, work.path)
    finally:
        stop_children()  # whatever else ended the build, nothing of it outlives the work dir
        if not env_flag(os.environ, "BUILDFARM_KEEP_WORK"):
            work.remove()
        else:
            until = " (until the cell's next build)" if work.stable else ""
            say("work directory kept: " + work.path + until)
        work.release()
    say("result " + json.dumps(result, sort_keys=True))
    return 0 if result["ok"] else 1
