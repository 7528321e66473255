"""The manifest phase: manifest.json, what was built, how, and what it contains, with each
artifact's sha256 and size (DESIGN.md "manifest.json"). manifest.json is written to disk by the
upload phase, so that it records the timings up to there. SHA256SUMS, the SBOM and the
provenance are the publish side's (signed there, where the builder has no key): the manifest
lists their names ("attestations"), and the publish side writes exactly those. Standard
library only, Python 3.6+."""

import os
import subprocess
import sys

from .depends import declared_dependencies
from .files import sha256_of
from .process import start, utc_now

DRIVER_VERSION = "1"
# The driver options that change what is built or tested (buildenv.DRIVER_OPTIONS): a build
# trained on a shorter PGO task, or self-tested with other CPython tests, says so.
RECORDED_OPTIONS = ("BUILDFARM_PROFILE_TASK", "BUILDFARM_SELFTEST_TESTS")
# manifest.json's "attestations": the files the publish side writes into this build's
# directory, by role (buildfarm.models.Attestations, whose defaults these are: the driver
# cannot import the package; tests/builder/test_driver_logic.py holds them equal).
ATTESTATIONS = {
    "sbom": "sbom.cdx.json",
    "provenance": "provenance.json",
    "checksums": "SHA256SUMS",
    "checksums_signature": "SHA256SUMS.sig",
    "provenance_signature": "provenance.json.sig",
}


def write_manifest(build):
    """build.manifest (the dict) for the upload phase."""
    entries = [artifact_entry(kind, path) for kind, path in build.artifacts]
    manifest = {
        "schema_version": 1,
        "spec": build.spec,
        "python": build.python_info,
        "platform": {
            "id": build.spec["platform"],
            "family": build.platform["family"],
            "arch": build.spec["arch"],
            "glibc": build.python_info.get("glibc"),
            "compiler": compiler_version(build.env),
            "os_release": os_release_pretty(),
            # What the .deb/.rpm declares (found in its binaries), not the registry's list.
            "runtime_dependencies": package_dependencies(build),
        },
        "configure_args": build.configure_argv,
        "configure_env": build.configure_env,
        "modules": build.modules,
        "selftest": build.selftest_results,
        "hardening": build.hardening,
        "source_signature": build.source_signature,
        "sbom_facts": build.sbom_facts,
        "timings": dict(build.timings),
        "artifacts": entries,
        "attestations": dict(ATTESTATIONS),
        "builder_image": os.environ.get("BUILDFARM_BUILDER_IMAGE") or "local:" + os_release_pretty(),
        "driver_version": DRIVER_VERSION,
        "driver_options": {name: os.environ[name] for name in RECORDED_OPTIONS if name in os.environ},
        "driver_python": sys.version.split()[0],
        "built_at": utc_now(),
    }
    build.manifest_path = os.path.join(build.out, "manifest.json")
    build.manifest = manifest


def package_dependencies(build):
    """The dependencies the build's .deb or .rpm declares, read back from the package."""
    for kind, path in build.artifacts:
        if kind in ("deb", "rpm"):
            return declared_dependencies(kind, path, build.env)
    return []


def artifact_entry(kind, path):
    return {
        "type": kind,
        "file": os.path.basename(path),
        "sha256": sha256_of(path),
        "size": os.path.getsize(path),
    }


def compiler_version(env):
    """gcc --version's first line, or None."""
    try:
        output = start(["gcc", "--version"], env=env, stderr=subprocess.DEVNULL).communicate()[0]
        return output.splitlines()[0] if output else None
    except OSError:
        return None


def os_release_pretty():
    try:
        with open("/etc/os-release") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown"
