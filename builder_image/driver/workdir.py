"""The build's scratch directory (cell.Build's `work`): where the source is unpacked,
configured and compiled.

Without ccache it is a fresh random directory (mkdtemp) under $BUILDFARM_WORK_DIR (else the
temporary directory), removed at the end unless BUILDFARM_KEEP_WORK=1.

With ccache (BUILDFARM_CCACHE=1) it is a stable directory named after the cell,
`build-<version>-<platform>-<arch>-<optimization>` under $BUILDFARM_STABLE_BUILD_ROOT (else
the work root), so that a later build of the cell compiles at the same path. ccache's
CCACHE_BASEDIR/CCACHE_NOHASHDIR make most compiles independent of the directory, but not
`-fprofile-generate` (PGO's instrumented build): its object embeds the absolute path of its
.gcda file, so ccache hashes the directory, and a hit from another directory would be wrong
(the profile would be written to the old build's path). At one path, the instrumented build of
a repeated pgo+lto build hits the cache, correctly.

The stable directory is this build's alone: it is locked (flock on the directory itself, held
until the driver exits; the kernel drops it when the process dies, even by SIGKILL) and
emptied first, since a previous build's files, above all its .gcda profiles, must never reach
this one (stale profile data would poison PGO). When another build holds the lock, or the
path is not a plain directory of ours (a symlink, another user's), or cannot be emptied, the
build takes a random directory as before: correct, only without those cache hits.
Standard library only, Python 3.6+."""

import contextlib
import fcntl
import os
import re
import shutil
import stat
import tempfile

from .spec import env_flag

STABLE_ROOT_VARIABLE = "BUILDFARM_STABLE_BUILD_ROOT"
# Characters kept in a directory name made from the spec ("pgo+lto" -> "pgo-lto").
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class WorkDir(object):
    """A build's scratch directory: its path, and for a stable one the open, locked
    descriptor of the directory (None for a random one); `note` says which, and why."""

    def __init__(self, path, lock_fd=None, note=""):
        self.path = path
        self.lock_fd = lock_fd
        self.note = note

    @property
    def stable(self):
        return self.lock_fd is not None

    def remove(self):
        """Remove what the build left: a random directory entirely; a stable one is emptied
        (the directory, which the lock is on, stays for the cell's next build)."""
        if self.stable:
            # On failure the next build of the cell empties it again, or falls back.
            with contextlib.suppress(OSError):
                empty_directory(self.path)
        else:
            shutil.rmtree(self.path, ignore_errors=True)

    def release(self):
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # closing the last descriptor drops the flock
            self.lock_fd = None


def work_root(environ):
    """Where random work directories go: $BUILDFARM_WORK_DIR, else the temporary directory."""
    return environ.get("BUILDFARM_WORK_DIR") or tempfile.gettempdir()


def stable_name(spec):
    """build-<version>-<platform>-<arch>-<optimization>, e.g. build-3.13.5-debian-12-x86_64-pgo-lto
    (never the shape of a random one: mkdtemp adds 8 characters after the platform)."""
    words = (spec["version"], spec["platform"], spec["arch"], spec["optimization"])
    return "build-" + "-".join(_UNSAFE.sub("-", word) for word in words)


def stable_path(spec, environ):
    """The cell's stable build directory, or None when ccache is off (nothing to gain)."""
    if not env_flag(environ, "BUILDFARM_CCACHE"):
        return None
    root = environ.get(STABLE_ROOT_VARIABLE) or work_root(environ)
    return os.path.join(os.path.abspath(root), stable_name(spec))


def create(spec, environ):
    """This build's WorkDir: the cell's stable directory when ccache is on and it is free,
    else a fresh random one (as without ccache)."""
    path = stable_path(spec, environ)
    note = ""
    if path is not None:
        lock_fd, problem = take_stable_directory(path)
        if lock_fd is not None:
            return WorkDir(path, lock_fd, "stable build directory (compiler cache): " + path)
        note = "stable build directory {} {}; building in a random one".format(path, problem)
    parent = work_root(environ)
    os.makedirs(parent, exist_ok=True)
    prefix = "build-{}-{}-".format(spec["version"], spec["platform"])
    return WorkDir(tempfile.mkdtemp(prefix=prefix, dir=parent), None, note)


def take_stable_directory(path):
    """(descriptor holding the directory's lock, None) once path is an empty directory of
    ours that no other build holds; else (None, why not)."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        # O_NOFOLLOW: a symlink planted at the path is refused, not followed.
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as error:
        return None, "cannot be opened ({})".format(error.strerror or error)
    problem = _lock_and_empty(fd, path)
    if problem:
        os.close(fd)
        return None, problem
    return fd, None


def _lock_and_empty(fd, path):
    """None once fd is locked, still what path names, and emptied; else why not."""
    opened = os.fstat(fd)
    if not stat.S_ISDIR(opened.st_mode) or opened.st_uid != os.geteuid():
        return "is not a directory of this user"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return "is in use by another build"
    try:
        # A build that finished between our open() and flock() may have removed the path.
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
            return "was replaced while it was being locked"
        empty_directory(path)
        if os.listdir(path):
            return "could not be emptied"
    except OSError as error:
        return "could not be emptied ({})".format(error.strerror or error)
    return None


def empty_directory(path):
    """Remove everything in path (not following symlinks), keeping path itself."""
    for name in os.listdir(path):
        entry = os.path.join(path, name)
        if os.path.isdir(entry) and not os.path.islink(entry):
            _make_removable(entry)
            shutil.rmtree(entry)
        else:
            os.unlink(entry)


def _make_removable(top):
    """Give the owner rwx on every directory under top (a test or a package step may leave
    one read-only, which rmtree cannot empty); symlinks are neither changed nor followed."""
    os.chmod(top, stat.S_IMODE(os.lstat(top).st_mode) | stat.S_IRWXU)
    for parent, directories, _files in os.walk(top):
        for name in directories:
            child = os.path.join(parent, name)
            mode = os.lstat(child).st_mode
            if stat.S_ISDIR(mode):
                os.chmod(child, stat.S_IMODE(mode) | stat.S_IRWXU)
