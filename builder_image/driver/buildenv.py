"""The environment of everything the driver runs (configure, make, the self-test, the
packagers): decided by the spec and the registry, never inherited from the caller.

CPython's configure reads OPT, CFLAGS, CPPFLAGS, LDFLAGS, LIBS, CC, CXX, CPP, AR,
PKG_CONFIG_PATH, ... from the environment, and make passes them on; the runners may
start the driver with a whole shell environment. So the child environment is built
from an allow-list (child_env()), not copied from os.environ. Pure functions, standard
library only, Python 3.6+.
"""

import os

STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The driver's own options that a child may need to see (e.g. a nested driver); the
# driver reads all of them itself from os.environ.
DRIVER_OPTIONS = (
    "BUILDFARM_WORK_DIR",
    "BUILDFARM_STABLE_BUILD_ROOT",
    "BUILDFARM_JOBS",
    "BUILDFARM_PROFILE_TASK",
    "BUILDFARM_CCACHE",
    "BUILDFARM_SELFTEST_TESTS",
    "BUILDFARM_CHECK_BUILD_DEPS",
    "BUILDFARM_BUILDER_IMAGE",
    "BUILDFARM_KEEP_WORK",
    "BUILDFARM_MAINTAINER",
)
# Passed through unchanged when set: where temporary files go.
PASSED = ("TMPDIR",)
# The caller's ccache settings that reach the compiles: where the cache is and how big.
# Never the others: CCACHE_PREFIX runs every compile through a program of the caller's,
# CCACHE_COMPILER swaps the compiler, CCACHE_SLOPPINESS makes wrong hits possible.
CCACHE_PASSED = ("CCACHE_DIR", "CCACHE_MAXSIZE")


def child_env(environ, home, c_utf8=True):
    """The base environment of the driver's children: a standard PATH, HOME (the
    driver's scratch home, so no ~/.config/pip or ~/.pydistutils.cfg of the caller is
    read by ensurepip or the self-test), TMPDIR, a C locale, the driver's options.
    Nothing else: no OPT/CFLAGS/CC/LIBS, no PYTHON*, no PIP_*, no AWS_* (the S3
    upload runs in the driver's own process, with os.environ)."""
    env = {"PATH": STANDARD_PATH, "HOME": home, "LC_ALL": "C.UTF-8" if c_utf8 else "C"}
    env["LANG"] = env["LC_ALL"]
    for name in PASSED + DRIVER_OPTIONS:
        if environ.get(name):
            env[name] = environ[name]
    return env


def ccache_env(env, environ, shims, basedir):
    """env with ccache by masquerading: the shim directory (gcc, cc, ... -> ccache)
    first on PATH, so CC stays "gcc" and sysconfig never mentions ccache; of the caller's
    ccache settings only the cache directory and its size (CCACHE_PASSED), the cache
    directory made explicit (the children's HOME is not the caller's)."""
    env = dict(env)
    env["PATH"] = shims + os.pathsep + env["PATH"]
    for name in CCACHE_PASSED:
        if environ.get(name):
            env[name] = environ[name]
    if not env.get("CCACHE_DIR"):
        env["CCACHE_DIR"] = os.path.join(os.path.expanduser("~"), ".cache", "ccache")
    # No configuration file: with CCACHE_CONFIGPATH set, ccache reads neither
    # $CCACHE_DIR/ccache.conf nor the system one (prefix_command, compiler, compiler_check,
    # sloppiness, ... are then ccache's defaults); /dev/null reads as empty.
    env["CCACHE_CONFIGPATH"] = os.devnull
    env["CCACHE_BASEDIR"] = basedir
    env["CCACHE_NOHASHDIR"] = "true"
    env.setdefault("CCACHE_MAXSIZE", "5G")
    return env
