"""The build spec (BUILD_SPEC, the same contract as buildfarm.models.BuildSpec) and what the
registry says about its platform. Pure functions, standard library only, Python 3.6+."""

import json
import os
import re

import registry  # builder_image/registry.py: also run alone by the Dockerfiles

from .errors import SpecError

# The arches and their Debian and RPM names, as buildfarm.platforms states them (the driver
# cannot import it: tests/builder/test_driver_logic.py holds the two equal).
ARCHES = ("x86_64", "aarch64")
DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
RPM_ARCH = {"x86_64": "x86_64", "aarch64": "aarch64"}
OPTIMIZATIONS = ("pgo+lto", "none")
REQUIRED_KEYS = ("version", "platform", "arch", "build", "source", "prefix", "store", "artifact_dir")
# execution_id: the planning execution's nonce, recorded in manifest.json with the rest of
# the spec; publish (not the driver) decides whether it is the planned one.
OPTIONAL_KEYS = ("optimization", "execution_id")

# Input (the spec) is matched whole (fullmatch: no trailing newline) and ASCII digits only.
_VERSION_RE = re.compile(r"3\.([0-9]{1,2})\.([0-9]{1,2})(?:(a|b|rc)([0-9]{1,2}))?")
# buildfarm.digests.SHA256 and buildfarm.layout.EXECUTION_ID, held equal by the same test.
SHA256_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
EXECUTION_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,80}", re.ASCII)
# An absolute, normalized path of letters, digits and . _ + - (the runtime definitions' rule):
# it goes unquoted into configure, the rpm spec (where %(...) would run a command), shell
# scripts (python3.x-config does not quote it), the .pc files.
_PREFIX_RE = re.compile(r"(?:/[A-Za-z0-9._+-]+)+")
PREFIX_MAX = 200
# The spec's fields that are strings (checked before anything looks them up).
STRING_KEYS = ("version", "platform", "arch", "prefix", "store", "artifact_dir", "optimization")
# The driver's on/off options and their value when unset or empty; otherwise 1 (on) or 0 (off),
# anything else a SpecError: a security setting must never read "true" as off.
FLAGS = {
    "BUILDFARM_REQUIRE_SOURCE_SIGNATURE": False,
    "BUILDFARM_CCACHE": False,
    "BUILDFARM_KEEP_WORK": False,
    "BUILDFARM_CHECK_BUILD_DEPS": True,
}
# make -j and the self-test's workers: unset or empty, every core; else 1..JOBS_MAX, ASCII digits.
JOBS_VARIABLE = "BUILDFARM_JOBS"
JOBS_MAX = 1024
_JOBS_RE = re.compile(r"[0-9]+")


def parse_version(text):
    """'3.13.5' -> (3, 13, 5, None, 0); '3.14.0rc2' -> (3, 14, 0, 'rc', 2)."""
    match = _VERSION_RE.fullmatch(text) if isinstance(text, str) else None
    if not match:
        raise SpecError("malformed Python version {!r} (expected e.g. 3.13.5 or 3.14.0rc2)".format(text))
    minor, micro, pre, pre_n = match.groups()
    return (3, int(minor), int(micro), pre, int(pre_n) if pre_n else 0)


def env_flag(environ, name):
    """The on/off option `name` (one of FLAGS) of the environment mapping environ: unset or
    empty, its default; "1", True; "0", False; anything else a SpecError naming it."""
    value = environ.get(name, "")
    if value == "":
        return FLAGS[name]
    if value in ("0", "1"):
        return value == "1"
    raise SpecError("{} must be 1 or 0, not {!r}".format(name, value))


def env_jobs(environ):
    """BUILDFARM_JOBS of the environment mapping environ as an int: unset or empty, the CPU
    count; else ASCII digits, 1 to JOBS_MAX, or a SpecError naming it."""
    value = environ.get(JOBS_VARIABLE, "")
    if value == "":
        return os.cpu_count() or 1
    # Length first: int() of thousands of digits is slow, or a ValueError (Python 3.11+).
    if not _JOBS_RE.fullmatch(value) or len(value.lstrip("0")) > 4 or not 1 <= int(value) <= JOBS_MAX:
        message = "{} must be a whole number from 1 to {} (ASCII digits), not {!r}"
        raise SpecError(message.format(JOBS_VARIABLE, JOBS_MAX, value))
    return int(value)


def check_environment(environ):
    """Every on/off option and BUILDFARM_JOBS, before any work: SpecError naming a bad one."""
    for name in FLAGS:
        env_flag(environ, name)
    env_jobs(environ)


def load_platforms(path=None):
    """The registry JSON (platforms.json, or $BUILDFARM_PLATFORMS)."""
    return registry.load(path)


def platform_info(registry_json, platform_id, arch):
    """Everything the driver needs about one platform on one arch, from the registry JSON.
    "bolt" is the platform's llvm-bolt entry where it has one for this arch, else None;
    its package is then one of the build dependencies."""
    try:
        platform = registry_json["platforms"][platform_id]
    except (KeyError, TypeError):  # TypeError: not a string (a list is not hashable)
        raise SpecError("unknown platform {!r}".format(platform_id)) from None
    if arch not in ARCHES or arch not in platform["arches"]:
        raise SpecError("unknown arch {!r} for platform {}".format(arch, platform_id))
    family = registry_json["families"][platform["family"]]
    missing = platform.get("missing_modules", {})
    required = registry_json["extension_modules"]["required"]
    return {
        "id": platform_id,
        "family": platform["family"],
        "package_format": family["package_format"],
        "configure_shell": family.get("configure_shell"),
        "build_dependencies": registry.build_dependencies(registry_json, platform_id, arch),
        "runtime_dependencies": list(platform["runtime_dependencies"]),
        "expected_modules": [name for name in required if name not in missing],
        "missing_modules": dict(missing),
        "bolt": registry.bolt(registry_json, platform_id, arch),
        "openssl": platform["openssl"],
    }


def parse_spec(text, registry_json):
    """Validate the BUILD_SPEC JSON; returns the spec dict with the default optimization."""
    try:
        spec = json.loads(text)
    except ValueError as error:
        raise SpecError("BUILD_SPEC is not valid JSON: {}".format(error)) from None
    if not isinstance(spec, dict):
        raise SpecError("BUILD_SPEC must be a JSON object")
    for key in REQUIRED_KEYS:
        if key not in spec:
            raise SpecError("BUILD_SPEC lacks {!r}".format(key))
    unknown = sorted(set(spec) - set(REQUIRED_KEYS + OPTIONAL_KEYS))
    if unknown:
        raise SpecError("BUILD_SPEC has unknown key(s): {}".format(", ".join(unknown)))
    for key in STRING_KEYS:
        if key in spec and not isinstance(spec[key], str):
            raise SpecError("{} must be a string, not {!r}".format(key, spec[key]))
    parse_version(spec["version"])
    platform_info(registry_json, spec["platform"], spec["arch"])  # names a bad platform or arch
    if not isinstance(spec["build"], int) or isinstance(spec["build"], bool) or spec["build"] < 1:
        raise SpecError("build must be a positive integer, not {!r}".format(spec["build"]))
    _check_source(spec["source"])
    execution_id = spec.get("execution_id", "")
    if "execution_id" in spec and not (
        isinstance(execution_id, str) and EXECUTION_ID_RE.fullmatch(execution_id)
    ):
        raise SpecError("execution_id must be 1-80 of [A-Za-z0-9._-], not {!r}".format(execution_id))
    spec.setdefault("optimization", "pgo+lto")
    if spec["optimization"] not in OPTIMIZATIONS:
        raise SpecError("unknown optimization {!r} (pgo+lto or none)".format(spec["optimization"]))
    _check_prefix(spec["prefix"])
    expected_dir = artifact_dir(spec)
    if spec["artifact_dir"] != expected_dir:
        raise SpecError("artifact_dir must be {!r}, not {!r}".format(expected_dir, spec["artifact_dir"]))
    if not isinstance(spec["store"], str) or not spec["store"]:
        raise SpecError("store must be s3://bucket/prefix or a directory")
    return spec


def _check_source(source):
    if not isinstance(source, dict) or set(source) != {"url", "sha256"}:
        raise SpecError('source must be {"url": ..., "sha256": ...}')
    if not isinstance(source["url"], str) or not source["url"].startswith(("http://", "https://", "file://")):
        raise SpecError("source url must be http://, https:// or file://, not {!r}".format(source["url"]))
    if not isinstance(source["sha256"], str) or not SHA256_RE.fullmatch(source["sha256"]):
        raise SpecError("source sha256 must be 64 lowercase hex digits, not {!r}".format(source["sha256"]))


def _check_prefix(prefix):
    if (
        not isinstance(prefix, str)
        or len(prefix) > PREFIX_MAX
        or not _PREFIX_RE.fullmatch(prefix)
        or any(segment in (".", "..") for segment in prefix.split("/"))
    ):
        raise SpecError(
            "prefix must be an absolute path like /opt/python/3.13.5 (at most {} characters, "
            "segments of letters, digits and . _ + -, no . or ..), not {!r}".format(PREFIX_MAX, prefix)
        )


# The store keys the builder writes: the same as buildfarm.layout's artifact_dir() and log_dir()
# (tests/functions/test_layout.py checks it; the driver cannot import the package).
def artifact_dir(spec):
    return "builds/{}/{}/{}/{}".format(spec["version"], spec["platform"], spec["arch"], spec["build"])


def log_dir_for(spec):
    return "logs/{}/{}/{}/{}".format(spec["version"], spec["platform"], spec["arch"], spec["build"])
