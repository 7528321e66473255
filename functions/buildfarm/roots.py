"""Debootstrap roots: create a minimal Debian/Ubuntu root, install packages with apt
inside it, run commands in it with /proc, /sys and /dev mounted (unmounted after: exactly the
mounts made, never another run's or an operator's).

Used by the chroot runner (a cached build root per platform), `buildfarm images import-base`
and the tests' install checks in fresh roots. It imports nothing from the runners or the
images, so both can use it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from buildfarm.platforms import DEB_ARCH, Platform

DEBIAN_MIRROR_DEFAULT = "http://deb.debian.org/debian"
UBUNTU_MIRROR_DEFAULT = "http://archive.ubuntu.com/ubuntu"
# The whole environment of a process in a root, before what its caller adds: nothing of ours.
ROOT_BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LC_ALL": "C.UTF-8",
}


class RootError(Exception):
    """Creating or using a root failed; the message names the step."""


def roots_dir() -> Path:
    """Where cached roots live: $BUILDFARM_ROOTS_DIR or ~/.cache/buildfarm/roots."""
    configured = os.environ.get("BUILDFARM_ROOTS_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "buildfarm" / "roots"


def host_debian_mirror() -> str:
    """The Debian archive URI this machine's apt uses (deb822 .sources or sources.list)."""
    candidates: list[str] = []
    sources_d = Path("/etc/apt/sources.list.d")
    files = sorted(sources_d.glob("*.sources")) if sources_d.is_dir() else []
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("URIs:"):
                candidates.extend(line.split()[1:])
    legacy = [Path("/etc/apt/sources.list"), *sorted(sources_d.glob("*.list"))] if sources_d.is_dir() else []
    for path in legacy:
        if path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                words = line.split()
                if len(words) >= 3 and words[0] == "deb":
                    uri = next((w for w in words[1:] if not w.startswith("[")), "")
                    candidates.append(uri)
    for uri in candidates:
        stripped = uri.rstrip("/")
        if stripped.endswith("/debian") and "security" not in stripped:
            return stripped
    return DEBIAN_MIRROR_DEFAULT


def mirror_for(platform: Platform) -> str:
    """The archive a platform's roots come from: $BUILDFARM_UBUNTU_MIRROR or
    $BUILDFARM_DEBIAN_MIRROR, else the default (Debian: the one this machine's apt uses)."""
    if platform.os_release.id == "ubuntu":
        return os.environ.get("BUILDFARM_UBUNTU_MIRROR", UBUNTU_MIRROR_DEFAULT)
    return os.environ.get("BUILDFARM_DEBIAN_MIRROR") or host_debian_mirror()


def mirror_problem(mirror: str, codename: str, timeout: float = 10.0) -> str | None:
    """None if <mirror>/dists/<codename>/Release answers, else why not."""
    url = f"{mirror.rstrip('/')}/dists/{codename}/Release"
    try:
        request = urllib.request.Request(url, method="HEAD")  # noqa: S310 - the mirror is http(s)
        with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310
            return None
    except urllib.error.HTTPError as error:
        return f"{url} answered HTTP {error.code}"
    except OSError as error:
        return f"{url} is unreachable ({getattr(error, 'reason', error)})"


def debootstrap_problem(codename: str) -> str | None:
    """None if debootstrap can create a <codename> root on this machine, else why not."""
    if os.geteuid() != 0:
        return "debootstrap and chroot need root"
    if not shutil.which("debootstrap"):
        return "debootstrap is not installed"
    scripts = Path("/usr/share/debootstrap/scripts")
    if scripts.is_dir() and not (scripts / codename).exists():
        return f"this debootstrap does not know the release {codename!r}"
    return None


def _run(argv: Sequence[str], env: Mapping[str, str] | None, quiet: bool) -> subprocess.CompletedProcess:
    """Run argv in a process group of its own, so an interrupted farm can stop it with its
    children (debootstrap's dpkg, apt's methods); stopped here too if this thread is interrupted."""
    process = subprocess.Popen(
        list(argv),
        env=None if env is None else dict(env),
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.STDOUT if quiet else None,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        stdout, _ = process.communicate()
    except BaseException:
        stop_group(process)
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout)


def stop_group(process: subprocess.Popen, grace: float = 60) -> None:
    """SIGTERM to the process group process leads, SIGKILL if it is not gone after grace seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _check(argv: Sequence[str], step: str, env: Mapping[str, str] | None = None, quiet: bool = True) -> None:
    result = _run(argv, env, quiet)
    if result.returncode != 0:
        tail = "\n".join((result.stdout or "").splitlines()[-15:])
        raise RootError(f"{step} failed (exit {result.returncode}): {' '.join(argv[:4])} ...\n{tail}")


@contextlib.contextmanager
def root_lock(
    root: Path, waiting: Callable[[], None] | None = None, stopped: Callable[[], bool] | None = None
) -> Iterator[None]:
    """Exclusive use of root (an flock on <root>.lock, across threads and processes): builds
    sharing a root would install packages into it at once, or debootstrap into one .partial.
    waiting() is called once if another holder makes us wait; RootError if stopped() turns true
    meanwhile."""
    root = Path(root)
    lock_path = root.with_name(root.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if stopped is not None and stopped():
                    raise RootError(f"stopped while waiting for {root}") from None
                if waiting is not None and not told:
                    waiting()
                told = True
                time.sleep(0.2)
        yield  # closing the file releases the lock


def debootstrap(
    codename: str, dest: Path, mirror: str | None = None, arch: str = "x86_64", packages: Sequence[str] = ()
) -> Path:
    """A fresh --variant=minbase root at dest (which must not exist), optionally with packages.

    Built in dest.partial and renamed, so an interrupted run never leaves a half root at dest.
    """
    if problem := debootstrap_problem(codename):
        raise RootError(problem)
    dest = Path(dest)
    if dest.exists():
        raise RootError(f"{dest} already exists")
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        remove_root(partial)
    partial.parent.mkdir(parents=True, exist_ok=True)
    mirror = mirror or host_debian_mirror()
    _check(
        ["debootstrap", "--variant=minbase", f"--arch={DEB_ARCH[arch]}", codename, str(partial), mirror],
        f"debootstrap {codename}",
    )
    if packages:
        apt_install(partial, packages)
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(partial / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        (partial / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    partial.rename(dest)
    return dest


def _unescape(field: str) -> str:
    """A path as /proc/self/mountinfo writes it: space, tab, newline and backslash as \\ooo."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match[1], 8)), field)


def _mount_points() -> list[str]:
    """Every mount point of this mount namespace, in /proc/self/mountinfo's order."""
    with open("/proc/self/mountinfo") as handle:
        return [_unescape(line.split()[4]) for line in handle if len(line.split()) > 4]


def _mounted_under(root: Path) -> list[str]:
    prefix = str(root.resolve()).rstrip("/") + "/"
    return [point for point in _mount_points() if point.startswith(prefix)]


def _top_mount_id(point: Path) -> int | None:
    """The id of the mount a lookup of point reaches (the topmost one stacked there; the mount
    point's own file system if nothing is mounted on it), None if point cannot be opened."""
    try:
        fd = os.open(point, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with open(f"/proc/self/fdinfo/{fd}") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name == "mnt_id":
                    return int(value)
    finally:
        os.close(fd)
    return None


def _unmount(point: str) -> None:
    """umount, lazily if busy (a process still inside lets go of it later)."""
    if subprocess.run(["umount", point], stderr=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL)


def unmount_all(root: Path) -> None:
    """The explicit clean-up of stale mounts: unmount everything below root, whoever made it,
    deepest first (lazily if busy). For a root about to be removed (remove_root, an interrupted
    debootstrap's .partial); never on the way out of mounted(), which takes only its own."""
    for point in sorted(_mounted_under(root), key=len, reverse=True):
        _unmount(point)


def clear_stale_mounts(root: Path) -> list[str]:
    """unmount_all for a root its caller has to itself (root_lock held, so no live build uses
    it): what a build killed before its clean-up left mounted there (a second sysfs on its /sys
    would fail every later build); the mount points found."""
    stale = _mounted_under(root)
    if stale:
        unmount_all(root)
    return stale


def remove_root(root: Path) -> None:
    """Delete a root: its stale mounts are unmounted first (unmount_all); refuses while anything
    is still mounted inside it, so that nothing is deleted through a mount."""
    unmount_all(root)
    if _mounted_under(root):
        raise RootError(f"cannot remove {root}: still mounted: {_mounted_under(root)}")
    shutil.rmtree(root, ignore_errors=True)


class _OwnMounts:
    """The mounts one mounted() made, each by its mount point and the id of the mount made
    there: unmounted in reverse order, each only while it is still the one a lookup of its
    point reaches. A mount someone else made, beside ours or stacked on ours, stays (and one of
    ours under theirs stays until remove_root's clean-up: taking it would take theirs)."""

    def __init__(self) -> None:
        self.made: list[tuple[Path, int | None]] = []

    def mount(self, argv: list[str], point: Path, step: str) -> None:
        _check([*argv, str(point)], step)
        self.made.append((point, _top_mount_id(point)))

    def unmount(self) -> None:
        while self.made:
            point, mount_id = self.made.pop()
            if mount_id is not None and _top_mount_id(point) == mount_id:
                _unmount(str(point))


def _prepare_etc(root: Path) -> None:
    resolv = root / "etc" / "resolv.conf"
    with contextlib.suppress(OSError):
        if resolv.is_symlink():
            resolv.unlink()
        shutil.copyfile("/etc/resolv.conf", resolv)
    hosts = root / "etc" / "hosts"  # bullseye/bookworm roots have none: no "localhost"
    if not hosts.exists():
        hosts.write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")


@contextlib.contextmanager
def mounted(root: Path, binds: Sequence[tuple[Path, str, bool]] = ()) -> Iterator[Path]:
    """/proc, /sys, /dev (+ /dev/pts, a private /dev/shm) and extra (host path, path in root,
    read_only) bind mounts inside root; on the way out exactly these are unmounted, in reverse
    order (also when a mount fails half-way): a mount in root that another run or an operator
    made stays."""
    root = Path(root).resolve()
    _prepare_etc(root)
    own = _OwnMounts()
    try:
        own.mount(["mount", "-t", "proc", "proc"], root / "proc", "mount /proc")
        own.mount(["mount", "-t", "sysfs", "sysfs"], root / "sys", "mount /sys")
        own.mount(["mount", "--bind", "/dev"], root / "dev", "mount /dev")
        (root / "dev" / "pts").mkdir(exist_ok=True)
        own.mount(["mount", "--bind", "/dev/pts"], root / "dev" / "pts", "mount /dev/pts")
        own.mount(["mount", "-t", "tmpfs", "-o", "mode=1777", "shm"], root / "dev" / "shm", "mount /dev/shm")
        for source, target, read_only in binds:
            inside = root / target.lstrip("/")
            if Path(source).is_dir():
                inside.mkdir(parents=True, exist_ok=True)
            else:
                inside.parent.mkdir(parents=True, exist_ok=True)
                inside.touch(exist_ok=True)
            own.mount(["mount", "--bind", str(source)], inside, f"bind {source}")
            if read_only:
                _check(["mount", "-o", "remount,bind,ro", str(inside)], f"read-only {source}")
        yield root
    finally:
        own.unmount()


def chroot_command(
    root: Path, argv: Sequence[str], env: Mapping[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) that run `argv` inside root with ROOT_BASE_ENV and `env` only.
    chroot passes its environment on, so the values never become argv words, which
    /proc/PID/cmdline shows to every user (a store's credentials are among them)."""
    return ["chroot", str(root), *argv], {**ROOT_BASE_ENV, **(env or {})}


def run_in_root(
    root: Path, argv: Sequence[str], env: Mapping[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run argv inside an already mounted root; returns stdout+stderr as .stdout."""
    command, environment = chroot_command(root, argv, env)
    result = _run(command, environment, quiet=True)
    if check and result.returncode != 0:
        raise RootError(
            f"{' '.join(argv)} failed in {root} (exit {result.returncode}):\n{result.stdout[-3000:]}"
        )
    return result


APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}


def apt_install(root: Path, packages: Sequence[str], update: bool = True) -> None:
    """apt-get install packages (names or ./file.deb paths inside the root), no recommends."""
    with mounted(root):
        if update:
            run_in_root(root, ["apt-get", "update", "-qq"], APT_ENV)
        run_in_root(
            root,
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
            APT_ENV,
        )
        run_in_root(root, ["apt-get", "clean"], APT_ENV)


def copy_root(source: Path, dest: Path) -> Path:
    """A copy of a (pristine, unmounted) root, cheaper than a new debootstrap."""
    if _mounted_under(Path(source)):
        raise RootError(f"{source} has mounts inside; refusing to copy it")
    _check(["cp", "-a", "--reflink=auto", str(source), str(dest)], f"copy {source}")
    return Path(dest)
