"""The sbom phase: the build's SBOM facts (bundled code, the system packages it links, the
toolchain, the distribution), for manifest.json's "sbom_facts".

The collector is builder_image/sbom_facts/, standard library only but Python 3.9+: this
driver (3.6+) cannot import it, so it runs it with the interpreter it has just built (3.9 at
the oldest), from builder_image/ (the directory every runner has: the images copy it, the
chroot runner binds it, the host runner runs it in place), without site-packages or the
environment's PYTHON* variables, writing no bytecode there. A soname the build needs that no
package of the platform explains (not in the loader's cache, or owned by no package) fails
the build: the SBOM would not say what the build links. Standard library only, Python 3.6+.
"""

import json
import os
import subprocess

from .errors import BuildError
from .flags import bolt_tools
from .process import start

BUILDER_IMAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTOR = "sbom_facts.collect"


def collector_argv(build):
    """The built python running the collector over the source and the staged tree."""
    argv = [os.path.join(build.tree, "bin", build.python_bin), "-S", "-E", "-B", "-m", COLLECTOR]
    argv += ["--source-tree", build.src, "--installed-tree", build.tree]
    argv += ["--package-kind", build.platform["package_format"]]
    if build.bolt:
        argv += ["--bolt", bolt_tools(build.bolt)["LLVM_BOLT"]]
    return argv


def parse_facts(output):
    """The collector's JSON; BuildError naming the unexplained sonames, or a malformed output."""
    try:
        facts = json.loads(output)
    except ValueError as error:
        raise BuildError("sbom", "the SBOM fact collector printed no JSON: {}".format(error)) from None
    if not isinstance(facts, dict) or not isinstance(facts.get("unexplained_sonames"), list):
        raise BuildError("sbom", "the SBOM fact collector's JSON lacks unexplained_sonames")
    if facts["unexplained_sonames"]:
        raise BuildError(
            "sbom",
            "the build needs {} that no {} package ships (or the loader cannot find)".format(
                ", ".join(facts["unexplained_sonames"]), facts.get("distro_id", "platform")
            ),
        )
    return facts


def phase(build):
    """build.sbom_facts from the collector, run by the built python."""
    argv = collector_argv(build)
    build.log.write("$ {}\n".format(" ".join(argv)))
    try:
        child = start(argv, cwd=BUILDER_IMAGE, env=build.env, stderr=subprocess.PIPE)
    except OSError as error:
        raise BuildError("sbom", "cannot run {}: {}".format(argv[0], error)) from None
    output, errors = child.communicate()
    build.log.write(errors + output)
    if child.returncode != 0:
        raise BuildError("sbom", "the SBOM fact collector exited with status {}".format(child.returncode))
    build.sbom_facts = parse_facts(output)
    linked = ", ".join(
        "{} {}".format(package["name"], package["version"]) for package in build.sbom_facts.get("linked", [])
    )
    build.log.write("links: {}\n".format(linked))
