"""Helpers shared by the builder tests (imported by name: pytest puts this directory on sys.path)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[2]
TEST_VERSION = "3.13.5"
# One release per supported series, for the per-series unit tests (3.9-3.15).
SERIES = ["3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.15"]
VERSIONS = {"3.9": "3.9.2", "3.10": "3.10.16", "3.11": "3.11.2", "3.12": "3.12.8", "3.13": "3.13.15",
            "3.14": "3.14.0", "3.15": "3.15.0a2"}  # fmt: skip
BUILDER_IMAGE = REPO / "builder_image"
BUILD_PY = BUILDER_IMAGE / "build.py"


# A char array (a canary under -fstack-protector), a fortifiable strcpy into a known-size
# buffer and printf (both __*_chk under _FORTIFY_SOURCE=2), and a thread that reports
# whether any mapping is writable and executable (its stack is one when PT_GNU_STACK is).
PROGRAM = r"""
#include <pthread.h>
#include <stdio.h>
#include <string.h>
static void *scan(void *unused) {
    char line[512];
    long rwx = 0;
    FILE *maps = fopen("/proc/self/maps", "r");
    while (fgets(line, sizeof line, maps))
        if (strstr(line, " rwxp ")) rwx++;
    fclose(maps);
    return (void *)rwx;
}
int main(int argc, char **argv) {
    char name[64];
    void *rwx;
    pthread_t thread;
    strcpy(name, argc > 5 ? argv[5] : "ok");
    pthread_create(&thread, NULL, scan, NULL);
    pthread_join(thread, &rwx);
    printf("%s rwx=%ld\n", name, (long)rwx);
    return 0;
}
"""


def put_driver_on_path() -> None:
    """builder_image/ on sys.path, as for build.py: the driver package (`from driver import
    flags`) and the registry module the driver reads platforms.json with."""
    if str(BUILDER_IMAGE) not in sys.path:
        sys.path.insert(0, str(BUILDER_IMAGE))


def load_build_module() -> SimpleNamespace:
    """The driver's names that the real-build tests call on `build_py` (from before the driver
    became the package builder_image/driver/)."""
    put_driver_on_path()
    from driver import cell, errors, flags, packages, selftest, spec, upload

    class Build(cell.Build):
        """cell.Build with the packaging functions the rpm test calls as methods."""

        build_rpm = packages.build_rpm
        package = packages.package

    return SimpleNamespace(
        Build=Build,
        BuildError=errors.BuildError,
        load_platforms=spec.load_platforms,
        platform_info=spec.platform_info,
        makefile_variables=flags.makefile_variables,
        make_test_wheel=selftest.make_test_wheel,
        open_store=upload.open_store,
    )


def host_platform() -> str | None:
    """This machine's registry platform (debian-12 on a bookworm host), None if it is none."""
    from buildfarm.platforms import load_registry
    from buildfarm.runners import host_platform_id

    return host_platform_id(load_registry())


def cli_build_on_host(store: Path, mirror: str, *options: str) -> tuple[int, str]:
    """`buildfarm build 3.13.5` for this machine's platform with the host runner, from `mirror`
    into `store`, with more options; (exit status, stdout+stderr)."""
    argv = ["3.13.5", "--platform", str(host_platform()), "--runner", "host", "--store", str(store)]
    return cli_build([*argv, "--source-mirror", mirror, *options])


def cli_build(args: list[str], capsys_free: bool = True) -> tuple[int, str]:
    """Run `buildfarm build ...` in-process; returns (exit status, stdout+stderr)."""
    from buildfarm.cli import main

    buffer = io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = buffer
    try:
        code = main(["build", *args])
    finally:
        sys.stdout, sys.stderr = saved
    return code, buffer.getvalue()


def run_checked(argv: list[str], **kwargs) -> str:
    """Run argv; return stdout+stderr; fail the test with the output on a non-zero exit."""
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
    assert result.returncode == 0, f"{argv} exited {result.returncode}:\n{result.stdout[-4000:]}"
    return result.stdout


def elf_files(tree: Path) -> list[Path]:
    found = []
    for path in tree.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                if handle.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def needed_sonames(tree: Path) -> set[str]:
    """Every DT_NEEDED of every ELF file in tree, minus the tree's own libraries."""
    own = {p.name for p in tree.rglob("*.so*")}
    needed: set[str] = set()
    for path in elf_files(tree):
        dynamic = run_checked(["readelf", "-d", str(path)])
        needed |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic))
    return needed - own


def packages_providing(sonames: set[str], root: Path | None = None) -> dict[str, str]:
    """soname -> Debian package that ships it, per ldconfig and dpkg of root (or this machine)."""
    prefix = ["chroot", str(root)] if root else []
    cache = run_checked([*prefix, "/sbin/ldconfig", "-p"])
    paths: dict[str, str] = {}
    for line in cache.splitlines()[1:]:
        name, _, target = line.strip().partition(" => ")
        soname = name.split(" (")[0]
        if "x86-64" in name or "x86_64" in target or "(libc6," in name:
            paths.setdefault(soname, target)
    owners: dict[str, str] = {}
    for soname in sonames:
        assert soname in paths, f"{soname} is not in the ld.so cache of {root or 'this machine'}"
        # dpkg -S knows the path as packaged: /lib and /usr/lib are the same on merged-/usr systems.
        path = paths[soname]
        candidates = [path, "/usr" + path if path.startswith("/lib") else path.removeprefix("/usr")]
        if not root:
            candidates.append(str(Path(path).resolve()))
        for candidate in candidates:
            result = subprocess.run([*prefix, "dpkg", "-S", candidate], capture_output=True, text=True)
            # t64 transitions add "diversion by <pkg> from/to: <path>" lines: skip them.
            owning = [line for line in result.stdout.splitlines() if not line.startswith("diversion by")]
            if result.returncode == 0 and owning:
                owners[soname] = owning[0].split(":", 1)[0].strip()
                break
        else:
            raise AssertionError(f"no package owns {paths[soname]} ({soname})")
    return owners
