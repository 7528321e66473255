"""A runtime job in a builder image: the cloud's BuildRuntimes Map runs each runtime cell as a
Batch job on its platform's builder image with the command

    buildfarm runtime build NAME --platform P --arch A ... --store LOCATION

which reaches build.py as its argv (the image's entry point). The image's python is the
platform's system python (3.6 on rhel-8 and openSUSE 15, 3.9 on bullseye), too old for the
buildfarm package (>= 3.11), so this module bootstraps a tool Python first:

1. the newest published farm build (a final release >= 3.11) of the job's platform and arch
   whose series the image's pinned dependencies have wheels for (wheels/requirements.txt's
   "# tool-python:" line), chosen from the store's versions.json (choose_tool_python: a pure
   function);
2. its tarball, copied out of the store (a directory or S3, through the image's boto3) and
   checked against versions.json's sha256 and size, unpacked in a scratch directory (the
   tarballs are relocatable);
3. the image's buildfarm wheel (/opt/buildfarm/wheels/, staged by buildfarm.images) installed
   into it with its pip: first its dependencies as wheels/requirements.txt pins them (the
   versions of the machine that built the image, each with its wheels' sha256) from PyPI
   through the image's CA bundle, with --require-hashes --no-deps --only-binary=:all:, so
   nothing a job installs depends on PyPI's state the day it runs; then the wheel alone;
4. exec of its `buildfarm` with the job's own argv (never a shell).

No such Python published: one line naming the platform, arch and store, exit 2.
Standard library only, Python 3.6+ (boto3 lazily, for an s3:// store only).
"""

import glob
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from .process import say
from .spec import ARCHES, SHA256_RE
from .upload import split_s3_url, store_kind

COMMAND = ("buildfarm", "runtime", "build")
TOOL_MINIMUM = (3, 11)  # the buildfarm package's requires-python
PLATFORM_ID = re.compile(r"[a-z0-9][a-z0-9.-]{0,62}", re.ASCII)  # buildfarm.platforms.PLATFORM_ID
FINAL_RELEASE = re.compile(r"([0-9]{1,4})\.([0-9]{1,4})\.([0-9]{1,4})")  # prereleases may lack wheels
STORE_KEY = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]*(/[A-Za-z0-9_+-][A-Za-z0-9._+-]*)*")
VERSIONS_KEY = "versions.json"  # functions/buildfarm/layout.py's VERSIONS_KEY
REQUIREMENTS = "requirements.txt"  # in wheels/: functions/buildfarm/images.py's REQUIREMENTS_FILE
SERIES_HEADER = "# tool-python:"  # images.py's TOOL_SERIES_HEADER: the series the pins fit
SERIES = re.compile(r"([0-9]{1,4})\.([0-9]{1,4})")
CHUNK = 1024 * 1024
PROGRESS_SECONDS = 10  # the runners count on a progress line at least every 30 s
# Where the base images keep their CA bundle (with the certificates an image build added):
# Debian/Ubuntu, RHEL clones and Amazon Linux, openSUSE.
CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/var/lib/ca-certificates/ca-bundle.pem",
)


class JobError(Exception):
    """A runtime job that cannot start: one line; exit_code 2 for a bad job, 1 otherwise."""

    def __init__(self, message, exit_code=1):
        Exception.__init__(self, message)
        self.exit_code = exit_code


def is_runtime_job(argv):
    """Whether build.py's argv is a `buildfarm ...` command rather than a Python build."""
    return bool(argv) and argv[0] == COMMAND[0]


def option(argv, name):
    """The value of --name in argv ("--name V" or "--name=V"; the last one wins, as in
    argparse), else None."""
    value = None
    for index, word in enumerate(argv):
        if word == name and index + 1 < len(argv):
            value = argv[index + 1]
        elif word.startswith(name + "="):
            value = word[len(name) + 1 :]
    return value


def parse_job(argv, image_platform=None):
    """{"platform", "arch", "store"} of a runtime job's argv; JobError (exit 2) naming a bad value.
    image_platform: the platform this image is for ($BUILDFARM_PLATFORM), if known."""
    if tuple(argv[: len(COMMAND)]) != COMMAND:
        raise JobError(
            "the builder image runs only `buildfarm runtime build ...`, not {!r}".format(" ".join(argv[:3])),
            2,
        )
    platform = option(argv, "--platform")
    arch = option(argv, "--arch") or "x86_64"
    store = option(argv, "--store") or os.environ.get("BUILDFARM_STORE")
    if platform is None or not PLATFORM_ID.fullmatch(platform):
        raise JobError("runtime job: --platform {!r} is not a platform id".format(platform), 2)
    if arch not in ARCHES:
        raise JobError("runtime job: --arch {!r} is not one of {}".format(arch, ", ".join(ARCHES)), 2)
    if not store:
        raise JobError("runtime job: no --store (and no BUILDFARM_STORE)", 2)
    if image_platform and image_platform != platform:
        raise JobError(
            "runtime job: --platform {} in the builder image of {}".format(platform, image_platform), 2
        )
    return {"platform": platform, "arch": arch, "store": store}


def _tarball(entry):
    """The checked tarball artifact of a versions.json build entry, else None."""
    artifacts = entry.get("artifacts") if isinstance(entry, dict) else None
    for artifact in artifacts if isinstance(artifacts, list) else []:
        if not isinstance(artifact, dict) or artifact.get("type") != "tarball":
            continue
        key, sha256, size = artifact.get("key"), artifact.get("sha256"), artifact.get("size")
        if (
            isinstance(key, str)
            and STORE_KEY.fullmatch(key)
            and ".." not in key.split("/")
            and isinstance(sha256, str)
            and SHA256_RE.fullmatch(sha256)
            and isinstance(size, int)
            and size > 0
        ):
            return {"key": key, "sha256": sha256, "size": size}
    return None


def choose_tool_python(catalog, platform, arch, series=None):
    """The newest published final release >= 3.11 of platform/arch in a versions.json document,
    of one of `series` ((major, minor) pairs) if given: {"version", "build", "key", "sha256",
    "size"} (its tarball), or None."""
    found = []
    for version, platforms in (catalog.get("builds") or {}).items():
        match = FINAL_RELEASE.fullmatch(version)
        arches = platforms.get(platform) if isinstance(platforms, dict) else None
        entry = arches.get(arch) if isinstance(arches, dict) else None
        if not match or not isinstance(entry, dict):
            continue
        numbers = tuple(int(part) for part in match.groups())
        tarball = _tarball(entry)
        wanted = numbers[:2] in series if series is not None else True
        if numbers[:2] >= TOOL_MINIMUM and wanted and tarball is not None:
            found.append((numbers, version, entry.get("build"), tarball))
    if not found:
        return None
    _, version, build, tarball = max(found, key=lambda item: item[0])
    chosen = {"version": version, "build": build}
    chosen.update(tarball)
    return chosen


class StoreReader(object):
    """Reads a store's objects by key: a directory (or file://) or s3://bucket/prefix."""

    def __init__(self, location):
        self.location = location
        self.client = None
        if store_kind(location) == "s3":
            self.bucket, self.prefix = split_s3_url(location)
            import boto3  # the image's venv has it; only S3 stores need it

            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
            self.client = boto3.client("s3", endpoint_url=endpoint)
        else:
            root = location[len("file://") :] if location.startswith("file://") else location
            self.root = os.path.abspath(root)

    def open(self, key):
        """A binary stream of the object (read(n)); JobError if it is not there."""
        try:
            if self.client is None:
                return open(os.path.join(self.root, key), "rb")
            full_key = "{}/{}".format(self.prefix, key) if self.prefix else key
            return self.client.get_object(Bucket=self.bucket, Key=full_key)["Body"]
        except Exception as error:  # OSError, botocore's ClientError: one line either way
            raise JobError("cannot read {} from {}: {}".format(key, self.location, error)) from None


def read_catalog(reader):
    stream = reader.open(VERSIONS_KEY)
    try:
        return json.loads(stream.read().decode("utf-8"))
    except ValueError as error:
        raise JobError("{} in {} is not JSON: {}".format(VERSIONS_KEY, reader.location, error)) from None
    finally:
        stream.close()


def fetch_checked(reader, tarball, dest):
    """Copy the tarball out of the store to dest, a progress line every PROGRESS_SECONDS;
    JobError unless its sha256 and size are versions.json's."""
    digest, done = hashlib.sha256(), 0
    megabytes = (tarball["size"] + CHUNK - 1) // CHUNK
    last = time.monotonic()
    stream = reader.open(tarball["key"])
    try:
        with open(dest, "wb") as out:
            chunk = stream.read(CHUNK)
            while chunk:
                digest.update(chunk)
                out.write(chunk)
                done += len(chunk)
                if time.monotonic() - last >= PROGRESS_SECONDS:
                    say("progress download {}/{} MB".format(done // CHUNK, megabytes))
                    last = time.monotonic()
                chunk = stream.read(CHUNK)
    finally:
        stream.close()
    if digest.hexdigest() != tarball["sha256"] or done != tarball["size"]:
        raise JobError("{}: sha256 or size differs from versions.json; not run".format(tarball["key"]))


def ca_environment(environ):
    """PIP_CERT and SSL_CERT_FILE (uv and Python's ssl) naming the image's CA bundle, which holds
    the certificates the image build added, unless the job's environment names its own."""
    found = [path for path in CA_BUNDLES if os.path.isfile(path)]
    if not found:
        return {}
    return {name: found[0] for name in ("PIP_CERT", "SSL_CERT_FILE") if not environ.get(name)}


def run(argv, what, env=None):
    """Run one bootstrap step (argv, never a shell), its output in the job's log."""
    started = time.monotonic()
    say("tool python: {}".format(what))
    code = subprocess.call(argv, env=env, stdin=subprocess.DEVNULL)
    if code != 0:
        raise JobError("tool python: {} failed (exit {})".format(what, code))
    say("tool python: {} done in {:.0f} s".format(what, time.monotonic() - started))


def buildfarm_wheel(image_dir):
    wheels = sorted(glob.glob(os.path.join(image_dir, "wheels", "*.whl")))
    if len(wheels) != 1:
        raise JobError(
            "runtime job: {} has {} buildfarm wheels, not one (an image built by "
            "buildfarm.images has it)".format(os.path.join(image_dir, "wheels"), len(wheels))
        )
    return wheels[0]


def pinned_series(requirements):
    """The (major, minor) series the pinned requirements file has wheels for (its header);
    JobError if the image has no such file (built before the pins: rebuild it)."""
    try:
        with open(requirements) as lines:
            header = [line for line in lines if line.startswith(SERIES_HEADER)]
    except OSError as error:
        raise JobError("runtime job: no pinned requirements in the image: {}".format(error)) from None
    words = header[0][len(SERIES_HEADER) :].split() if header else []
    matches = [SERIES.fullmatch(word) for word in words]
    if not matches or not all(matches):
        raise JobError("runtime job: {} names no tool Python series".format(requirements))
    return tuple((int(match.group(1)), int(match.group(2))) for match in matches)


def install_tool_python(reader, chosen, wheel, scratch, env):
    """Unpack the chosen build in scratch and install into it the pinned, hashed dependencies
    (wheels/requirements.txt beside the wheel), then the wheel; its `buildfarm`."""
    tarball = os.path.join(scratch, "python.tar.gz")
    say("tool python: downloading {} ({} MB)".format(chosen["key"], chosen["size"] // CHUNK))
    fetch_checked(reader, chosen, tarball)
    run(["tar", "-xzf", tarball, "-C", scratch, "python/"], "unpacking Python {}".format(chosen["version"]))
    os.remove(tarball)
    python = os.path.join(scratch, "python", "bin", "python3")
    pip = [python, "-m", "pip", "install", "--no-input", "--no-cache-dir", "--progress-bar", "off"]
    pip += ["--disable-pip-version-check", "--no-warn-script-location", "--no-deps"]
    # Exactly the image's pins, checked against their sha256; never an sdist (nothing is built).
    requirements = os.path.join(os.path.dirname(wheel), REQUIREMENTS)
    pinned = [*pip, "--require-hashes", "--only-binary=:all:", "-r", requirements]
    run(pinned, "installing the pinned dependencies (PyPI, hash-checked)", env)
    run([*pip, "--no-index", wheel], "installing {}".format(os.path.basename(wheel)), env)
    run([python, "-m", "pip", "check", "--disable-pip-version-check"], "checking the dependencies", env)
    return os.path.join(scratch, "python", "bin", "buildfarm")


def prepare(argv, environ, image_dir):
    """Everything before the exec: (the tool's buildfarm, its environment)."""
    job = parse_job(argv, environ.get("BUILDFARM_PLATFORM"))
    machine = os.uname().machine
    if machine != job["arch"]:
        raise JobError("runtime job: --arch {} on a {} machine".format(job["arch"], machine), 2)
    wheel = buildfarm_wheel(image_dir)
    series = pinned_series(os.path.join(image_dir, "wheels", REQUIREMENTS))
    reader = StoreReader(job["store"])
    chosen = choose_tool_python(read_catalog(reader), job["platform"], job["arch"], series)
    if chosen is None:
        wanted = " or ".join("{}.{}".format(*pair) for pair in series)
        raise JobError(
            "runtime job: no published Python {} for {}/{} in {} to run buildfarm with (the series "
            "the image's pinned dependencies have wheels for; build one first)".format(
                wanted, job["platform"], job["arch"], job["store"]
            ),
            2,
        )
    say(
        "tool python: Python {} build {} of {}/{}".format(
            chosen["version"], chosen["build"], job["platform"], job["arch"]
        )
    )
    env = dict(environ)
    env.update(ca_environment(environ))
    env.setdefault("PIP_ROOT_USER_ACTION", "ignore")  # root in a throwaway Python: nothing to warn of
    work_parent = environ.get("BUILDFARM_WORK_DIR") or None
    if work_parent:
        os.makedirs(work_parent, exist_ok=True)
    # Never removed: the exec replaces this process, and the container's filesystem goes with it.
    scratch = tempfile.mkdtemp(prefix="runtime-job-", dir=work_parent)
    return install_tool_python(reader, chosen, wheel, scratch, env), env


def main(argv, image_dir):
    """Run a runtime job (argv: build.py's, starting with "buildfarm"); returns an exit code
    only when it cannot start, else the tool's buildfarm replaces this process."""
    try:
        buildfarm, env = prepare(argv, os.environ, image_dir)
    except JobError as error:
        say("error: {}".format(error))
        return error.exit_code
    say("tool python: running " + " ".join(argv[:3]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(buildfarm, [buildfarm, *argv[1:]], env)  # noqa: S606 - an argv, no shell
    return 1  # not reached
