"""The install phase: make install into a staging directory with the final build's make
variables, then the tree made ready to ship: stripped, bin/ scripts and the build
configuration relocatable (relocation.py), the interpreter's linkage checked.
Standard library only, Python 3.6+."""

import os
import re
import shutil
import stat

from . import relocation
from .errors import BuildError
from .files import is_elf, walk_files
from .flags import install_argv, static_interpreter
from .make import make_env
from .process import run

EXPECTED_RUNPATH = "$ORIGIN/../lib"
# Refreshes a rewritten module's bytecode (all three levels install wrote), named as installed.
RECOMPILE_SCRIPT = r"""
import compileall, sys
for level in (0, 1, 2):
    compileall.compile_file(sys.argv[1], ddir=sys.argv[2], force=True, quiet=1, optimize=level)
"""


def install(build):
    if os.path.exists(build.destdir):
        shutil.rmtree(build.destdir)
    run(
        build.log,
        "install",
        install_argv(build.version, build.spec["optimization"], build.makefile(), build.destdir, build.bolt),
        cwd=build.src,
        env=make_env(build),
    )
    if not os.path.isfile(os.path.join(build.tree, "bin", build.python_bin)):
        raise BuildError("install", "no bin/{} in the staged tree".format(build.python_bin))
    strip_binaries(build)
    make_scripts_relocatable(build)
    make_config_relocatable(build)
    check_linkage(build)


def strip_binaries(build):
    for path in walk_files(build.tree):
        if is_elf(path):
            mode = os.stat(path).st_mode
            os.chmod(path, mode | stat.S_IWUSR)
            run(build.log, "install", ["strip", "--strip-unneeded", path], env=build.env)
            if ".so" in os.path.basename(path):
                mode &= ~(stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)  # libraries are not programs
            os.chmod(path, mode)


def make_scripts_relocatable(build):
    bindir = os.path.join(build.tree, "bin")
    for name in sorted(os.listdir(bindir)):
        path = os.path.join(bindir, name)
        if os.path.islink(path) or not os.path.isfile(path) or is_elf(path):
            continue
        with open(path, "rb") as handle:
            content = handle.read()
        rewritten = relocation.rewrite_shebang(content, build.python_bin)
        if rewritten is not None:
            with open(path, "wb") as handle:
                handle.write(rewritten)
            build.log.write("relocatable shebang: bin/{}\n".format(name))


def make_config_relocatable(build):
    """sysconfig data and pkg-config files computed relative to the tree (relocation.py)."""
    libdir = os.path.join(build.tree, "lib", build.python_bin)
    for name in sorted(os.listdir(libdir)):
        if name.startswith("_sysconfigdata_") and name.endswith(".py"):
            rewrite(build, os.path.join(libdir, name), relocation.relocatable_sysconfigdata)
            python = os.path.join(build.tree, "bin", build.python_bin)
            # Refresh its bytecode (all three levels install wrote), named as installed.
            installed_dir = os.path.join(build.prefix, "lib", build.python_bin)
            argv = [python, "-c", RECOMPILE_SCRIPT, os.path.join(libdir, name), installed_dir]
            run(build.log, "install", argv, env=build.env)
    pkgconfig = os.path.join(build.tree, "lib", "pkgconfig")
    for name in sorted(os.listdir(pkgconfig)):
        path = os.path.join(pkgconfig, name)
        if name.endswith(".pc") and not os.path.islink(path):
            rewrite(build, path, relocation.relocatable_pc)


def rewrite(build, path, transform):
    """path's text through transform, replaced in one step with its mode kept: a transform
    that fails leaves the file as it was."""
    with open(path) as handle:
        text = transform(handle.read(), build.prefix)
    tmp = path + ".relocatable.tmp"
    try:
        with open(tmp, "w") as handle:
            handle.write(text)
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    build.log.write("relocatable: {}\n".format(os.path.relpath(path, build.tree)))


def check_linkage(build):
    binary = os.path.join(build.tree, "bin", build.python_bin)
    _, output = run(build.log, "install", ["readelf", "-d", binary], env=build.env)
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", output)
    links_libpython = any(name.startswith("libpython") for name in needed)
    if static_interpreter(build.version, build.makefile()) == links_libpython:
        raise BuildError(
            "install",
            "bin/{} {} libpython.so, expected the opposite".format(
                build.python_bin, "needs" if links_libpython else "does not need"
            ),
        )
    if not any(name.startswith("libpython3.") for name in os.listdir(os.path.join(build.tree, "lib"))):
        raise BuildError("install", "no libpython3.x.so in lib/ (embedders need it)")
    match = re.search(r"\((?:RUNPATH|RPATH)\)\s+Library (?:runpath|rpath): \[([^\]]*)\]", output)
    runpath = match.group(1) if match else None
    if runpath != EXPECTED_RUNPATH:
        raise BuildError(
            "install",
            "bin/{} has runpath {!r}, expected {!r}".format(build.python_bin, runpath, EXPECTED_RUNPATH),
        )
