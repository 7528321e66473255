#!/usr/bin/env python3
"""The build driver's entry point: one cell (version x platform x arch) from source to the store.

Runs inside every builder image and in the local runners (the chroot runner binds
builder_image/ read-only and runs this file; the images copy it to /opt/buildfarm/). The
driver itself is the package driver/ next to this file: standard library only, Python 3.6+
(the oldest system python of a platform we build on: rhel-8 and openSUSE 15); its
__init__.py maps the phases to their modules.

Input: the build spec (JSON) in the environment variable BUILD_SPEC, never
through a shell; platform data from platforms.json next to this file (or
$BUILDFARM_PLATFORMS). `build.py --build-dependencies PLATFORM ARCH` prints the registry's
build dependencies instead; `build.py buildfarm runtime build ...` (a runtime job: the cloud's
BuildRuntimes Map passes its command so) runs that command with a farm-built Python >= 3.11 and
the image's buildfarm wheel (driver/runtime_job.py).

Phases: preflight -> fetch -> verify -> configure -> make -> install -> selftest
-> sbom -> package -> manifest -> upload. Each phase is printed with its elapsed time
("buildfarm: phase NAME done in S s"); the full log is written to build.log
(next to the artifacts, or under logs/ with failure.json when the build fails);
on failure the last lines of the failing phase are printed. During make and the PGO and
BOLT training runs a line "buildfarm: progress WHAT DONE/TOTAL UNIT" comes at least every
30 s (driver/progress.py).

Environment hygiene: configure, make and every other child get driver/buildenv.py's child_env(),
an allow-list, never the caller's environment (OPT, CFLAGS, CC, ... change nothing).

Optional environment: BUILDFARM_WORK_DIR (scratch; default a temp dir),
BUILDFARM_JOBS (make -j; default all cores), BUILDFARM_PROFILE_TASK (PGO
training task), BUILDFARM_CCACHE=1 (use ccache if installed),
BUILDFARM_SELFTEST_TESTS (space-separated CPython tests for the self-test),
BUILDFARM_CHECK_BUILD_DEPS=0 (skip the build-dependency check),
BUILDFARM_LOG_FILE (also copy the full log there), BUILDFARM_REQUIRE_SOURCE_SIGNATURE=1
(fail unless the source's OpenPGP signature verifies: driver/signature.py), BUILDFARM_STOP_AFTER=PHASE (stop
after that phase, publishing nothing: e.g. configure, for tests), BUILDFARM_BUILDER_IMAGE
(recorded in the manifest), BUILDFARM_KEEP_WORK=1, BUILDFARM_MAINTAINER,
AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (S3 endpoint override).
"""

import os
import sys

# The driver package sits next to this file (the runners mount all of builder_image/, the
# images copy it with this file); a script's own directory is on sys.path already, but not
# when this file is imported by path.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from driver import runtime_job
from driver.main import main

if __name__ == "__main__":
    ARGUMENTS = sys.argv[1:]
    if runtime_job.is_runtime_job(ARGUMENTS):
        sys.exit(runtime_job.main(ARGUMENTS, os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
