"""The preflight phase: the cell's build number is free in the store, and the registry's
build dependencies and the tools the later phases run are installed.
Standard library only, Python 3.6+."""

import os
import shutil

from .errors import BuildError, WouldOverwrite
from .process import run
from .spec import env_flag
from .upload import open_store

TOOLS = ("make", "tar", "strip", "readelf")
# The package phase's tools: the package builder, and what declares its dependencies (depends.py).
PACKAGE_TOOLS = {"deb": ("dpkg-deb", "dpkg-shlibdeps"), "rpm": ("rpmbuild",)}


def preflight(build):
    build.store = open_store(build.spec["store"])
    # Not logs/: a Batch retry after a Spot reclaim runs the same build number again, after
    # the interrupted attempt wrote its failure record (which write_logs never overwrites).
    if build.store.cell_exists(build.spec["artifact_dir"]):
        raise WouldOverwrite(
            "preflight",
            "{}/{} already exists; builds are never overwritten (use the next build number)".format(
                build.store.describe(), build.spec["artifact_dir"]
            ),
        )
    if env_flag(os.environ, "BUILDFARM_CHECK_BUILD_DEPS"):
        missing = missing_build_dependencies(build)
        if missing:
            raise BuildError("preflight", "missing build dependencies: " + " ".join(missing))
    tools = [*TOOLS, *PACKAGE_TOOLS[build.platform["package_format"]]]
    if build.platform.get("configure_shell"):
        tools.append(build.platform["configure_shell"])  # a path: which() then tests it alone
    # Looked up as the phases run them: on the build environment's PATH, not the caller's.
    absent = [tool for tool in tools if not shutil.which(tool, path=build.env["PATH"])]
    if absent:
        raise BuildError("preflight", "missing build tools: " + " ".join(absent))


def installed_query(package_format, package):
    """(argv, the output an installed package prints or None) of the package manager's query."""
    if package_format == "deb":
        return ["dpkg-query", "-W", "-f=${Status}\\n", package], "install ok installed"
    return ["rpm", "-q", "--whatprovides", package], None


def missing_build_dependencies(build):
    """The registry's build dependencies that the package manager says are not installed
    (none when this machine has no dpkg-query or rpm to ask)."""
    package_format = build.platform["package_format"]
    if not shutil.which(installed_query(package_format, "")[0][0], path=build.env["PATH"]):
        return []
    missing = []
    for package in build.platform["build_dependencies"]:
        argv, installed = installed_query(package_format, package)
        code, output = run(build.log, "preflight", argv, env=build.env, check=False)
        if code != 0 or (installed is not None and installed not in output):
            missing.append(package)
    return missing
