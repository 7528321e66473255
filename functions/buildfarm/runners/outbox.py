"""A directory store's outbox: what a driver in a root or a container gets instead of the store.

The chroot and docker runners mount, at the driver's store path, an empty private directory
(the outbox) and never the store itself: nothing a build runs (configure, make, the test
suite, pip in the self-test) can reach another build, a catalog, a claim or a plan. The driver
writes there as into any directory store (builds/<cell>/<build>/ in one rename when it
succeeds, logs/<cell>/<build>/ when it fails). After the driver has exited, the runner, outside
the build's reach, publishes from it into the store:

- only the spec's own directory: its builds/<cell>/<build>/ when the driver reported success
  (a success that left none is a failure), else its logs/<cell>/<build>/ failure record;
- only regular files with plain names, each opened without following a symbolic link (the
  build made them: a link could name any file of this machine) and copied to a snapshot the
  build never sees;
- with the directory store's own create-only writes (builder_image/driver/upload.py's
  LocalStore: a build directory appears complete in one rename, never over an existing one; a
  failure record's files are hard-linked, never replacing one): WouldOverwrite fails the build.

Before the driver starts, a build number the store already holds fails the preflight phase as
the driver's own check would (the driver only sees the empty outbox).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import IO, TYPE_CHECKING

from buildfarm.layout import FILE_NAME_PATTERN, MANIFEST_FILE, log_dir
from buildfarm.models import BuildSpec

if TYPE_CHECKING:
    from buildfarm.runners.base import BuildResult

_FILE_NAME = re.compile(FILE_NAME_PATTERN)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # no FIFO blocks the open


class OutboxError(Exception):
    """What the build left in its outbox is not a build's plain files; the message says what."""


def driver_module(name: str) -> ModuleType:
    """builder_image/driver/<name>.py (the directory store's publish lives there)."""
    from buildfarm.runtimes.package import driver_module as load  # imports the driver package once

    return load(name)


def taken_message(store: Path, artifact_dir: str) -> str | None:
    """The driver's preflight refusal if the store holds the build's directory, else None."""
    local = driver_module("upload").LocalStore(str(store))
    if not local.cell_exists(artifact_dir):
        return None
    where = f"{local.describe()}/{artifact_dir}"
    return f"{where} already exists; builds are never overwritten (use the next build number)"


def _open_dir(base: Path, key: str) -> int | None:
    """A descriptor of base/key, each component opened without following a link; None if a
    component is missing; OutboxError if one is not a directory."""
    fd = os.open(base, _DIR_FLAGS)
    for part in key.split("/"):
        try:
            inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            inner = None
        except OSError as error:  # ELOOP (a link) or ENOTDIR
            raise OutboxError(f"{part} in {key} is not a directory ({error.strerror})") from None
        finally:
            os.close(fd)
        if inner is None:
            return None
        fd = inner
    return fd


def _copy_out(directory: int, name: str, key: str, dest: Path) -> None:
    if not _FILE_NAME.fullmatch(name):
        raise OutboxError(f"{key}/{name}: not a build file's name")
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=directory)
    except OSError as error:
        raise OutboxError(f"{key}/{name} is not a regular file ({error.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OutboxError(f"{key}/{name} is not a regular file")
    created = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    with os.fdopen(fd, "rb") as source, open(os.open(dest, created, 0o644), "wb") as out:
        shutil.copyfileobj(source, out, 1024 * 1024)


@dataclass(frozen=True)
class Outbox:
    """A build's outbox (work/store, mounted as the driver's store) and its snapshot
    (work/taken, never mounted) in one private temporary directory; `store` is the real one."""

    store: Path
    spec: BuildSpec
    work: Path

    @classmethod
    def create(cls, store: Path, spec: BuildSpec) -> Outbox:
        work = Path(tempfile.mkdtemp(prefix="buildfarm-outbox-"))
        (work / "store").mkdir()
        return cls(store, spec, work)

    @property
    def directory(self) -> Path:
        return self.work / "store"

    def discard(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    def take(self, key: str) -> list[tuple[str, str]] | None:
        """[(name, snapshot path)] of the plain files the build left in key (manifest.json
        last), None if it left no such directory; OutboxError if it holds anything else."""
        directory = _open_dir(self.directory, key)
        if directory is None:
            return None
        taken = self.work / "taken" / key
        taken.mkdir(parents=True)
        try:
            names = sorted(os.listdir(directory), key=lambda name: (name == MANIFEST_FILE, name))
            for name in names:
                _copy_out(directory, name, key, taken / name)
        finally:
            os.close(directory)
        return [(name, str(taken / name)) for name in names]

    def publish(self, result: BuildResult, output: IO[str]) -> BuildResult:
        """Publish what the driver left (see the module), after it exited; the build's result,
        failed in the upload phase if its build could not be published."""
        local = driver_module("upload").LocalStore(str(self.store))
        if not result.ok:
            spec = self.spec
            failure_dir = log_dir(spec.version, spec.platform, spec.arch, spec.build)
            try:
                if files := self.take(failure_dir):
                    local.write_logs(failure_dir, files)
            except Exception as error:  # the failure itself is already reported; as the driver does
                output.write(f"buildfarm: cannot write the failure record to the store: {error}\n")
            return result
        would_overwrite = driver_module("errors").WouldOverwrite
        try:
            files = self.take(self.spec.artifact_dir)
            if not files or files[-1][0] != MANIFEST_FILE:
                left = f"{self.spec.artifact_dir}/{MANIFEST_FILE}"
                raise OutboxError(f"the driver reported success but left no {left}")
            local.publish(self.spec.artifact_dir, files)
        except would_overwrite as error:
            return replace(result, ok=False, failed_phase="upload", reason=error.reason)
        except (OutboxError, OSError) as error:
            return replace(result, ok=False, failed_phase="upload", reason=f"nothing published: {error}")
        return result
