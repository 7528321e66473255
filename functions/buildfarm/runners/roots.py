"""Moved to buildfarm.roots (the images use it too, and the images must not import the
runners); this name stays for the tests that import it from here."""

from buildfarm.roots import (
    APT_ENV,
    RootError,
    apt_install,
    chroot_argv,
    copy_root,
    debootstrap,
    debootstrap_problem,
    host_debian_mirror,
    mirror_for,
    mirror_problem,
    mounted,
    remove_root,
    roots_dir,
    run_in_root,
    unmount_all,
)

__all__ = [
    "APT_ENV",
    "RootError",
    "apt_install",
    "chroot_argv",
    "copy_root",
    "debootstrap",
    "debootstrap_problem",
    "host_debian_mirror",
    "mirror_for",
    "mirror_problem",
    "mounted",
    "remove_root",
    "roots_dir",
    "run_in_root",
    "unmount_all",
]
