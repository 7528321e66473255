"""The install phase: make install into a staging directory with the final build's make
variables, then the tree made ready to ship: stripped (static relocations too), bin/python
and bin/pip linked, bin/ scripts, python-config.py and the build configuration relocatable
(relocation.py), bytecode named as installed (not by the staging path), the interpreter's
linkage checked. Standard library only, Python 3.6+."""

import glob
import os
import re
import shutil
import stat

from sbom_facts import elf as elf_reader

from . import relocation, series
from .errors import BuildError
from .files import is_elf, walk_files
from .flags import install_argv, static_interpreter
from .make import make_env
from .process import run

EXPECTED_RUNPATH = "$ORIGIN/../lib"
# Linked files (programs, libraries, extension modules) lose every symbol and their static
# relocation sections: --enable-bolt links all of them with -Wl,--emit-relocs (llvm-bolt reads
# those; it has run by now, in the make phase), and --strip-unneeded keeps .symtab and the
# .rela.text/.rela.data/... sections for them (BOLT builds shipped libpython at 10.05 MB instead
# of 7.43). --remove-relocations (binutils 2.28+; bullseye has 2.35) drops only the relocations
# of sections: the loader's .rela.dyn/.rela.plt are sections of their own and stay.
STRIP_LINKED = ("--strip-all", "--remove-relocations=*")
# Objects still to be linked (config-3.X/python.o in 3.9) keep what a link needs.
STRIP_OBJECT = ("--strip-unneeded",)
SHT_SYMTAB, SHT_RELA, SHT_REL, SHF_ALLOC = 2, 4, 9, 0x2
# Refreshes a rewritten module's bytecode (all three levels install wrote), named as installed.
RECOMPILE_SCRIPT = r"""
import compileall, sys
for level in (0, 1, 2):
    compileall.compile_file(sys.argv[1], ddir=sys.argv[2], force=True, quiet=1, optimize=level)
"""
# Recompiles every .pyc under argv[1] that names the staging directory argv[2] (ensurepip's
# pip/setuptools: pip compiles what it installs under --root=$(DESTDIR) by the staged path),
# named as installed, at its own optimization level and invalidation mode (py_compile 3.7+:
# the built interpreter is 3.9+), so a traceback names the installed file.
FIX_BYTECODE_SCRIPT = r"""
import importlib.util, os, py_compile, sys
tree, staging = sys.argv[1], sys.argv[2]
needle = os.fsencode(staging)
modes = {0: py_compile.PycInvalidationMode.TIMESTAMP, 1: py_compile.PycInvalidationMode.UNCHECKED_HASH,
         3: py_compile.PycInvalidationMode.CHECKED_HASH}
fixed = 0
for directory, _dirs, files in os.walk(tree):
    for name in files:
        pyc = os.path.join(directory, name)
        if not name.endswith(".pyc") or os.path.islink(pyc):
            continue
        with open(pyc, "rb") as handle:
            data = handle.read()
        if needle not in data:
            continue
        source = importlib.util.source_from_cache(pyc)
        if not source.startswith(staging + os.sep):
            raise SystemExit("{} is not under {}".format(source, staging))
        level = int(name.split(".opt-")[1].split(".")[0]) if ".opt-" in name else 0
        py_compile.compile(source, cfile=pyc, dfile=source[len(staging):], doraise=True, optimize=level,
                           invalidation_mode=modes[int.from_bytes(data[4:8], "little")])
        fixed += 1
print("bytecode named as installed:", fixed, "files")
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
    link_unversioned_commands(build)
    make_scripts_relocatable(build)
    make_config_relocatable(build)
    fix_bytecode_paths(build)
    check_linkage(build)


# The unversioned names Posit's trees have, and what their users type (Posit's docs:
# `/opt/python/3.13.5/bin/python`, `ln -s .../bin/pip /usr/local/bin/pip`): make install
# stops at python3 and pip3. Relative links, so they move with the tree; the pip scripts find
# their interpreter through realpath (relocation.rewrite_shebang), so a link to a link works.
UNVERSIONED_COMMANDS = (("python", "python3"), ("pip", "pip3"))


def link_unversioned_commands(build):
    bindir = os.path.join(build.tree, "bin")
    for name, target in UNVERSIONED_COMMANDS:
        if not os.path.lexists(os.path.join(bindir, target)):
            raise BuildError("install", "no bin/{} to link bin/{} to".format(target, name))
        if not os.path.lexists(os.path.join(bindir, name)):
            os.symlink(target, os.path.join(bindir, name))


def strip_binaries(build):
    for path in walk_files(build.tree):
        if is_elf(path):
            mode = os.stat(path).st_mode
            os.chmod(path, mode | stat.S_IWUSR)
            strip_file(path, build.log, build.env)
            if ".so" in os.path.basename(path):
                mode &= ~(stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)  # libraries are not programs
            os.chmod(path, mode)


def strip_file(path, log, env):
    """Strips one ELF file (STRIP_LINKED or STRIP_OBJECT); BuildError if a linked file still
    has a symbol table or static relocations (a strip that ignored the option)."""
    linked = elf_reader.read_file(path).type != elf_reader.ET_REL
    run(log, "install", ["strip", *(STRIP_LINKED if linked else STRIP_OBJECT), path], env=env)
    left = unstripped_sections(path) if linked else []
    if left:
        raise BuildError("install", "strip left {} in {}".format(", ".join(left), os.path.basename(path)))


def unstripped_sections(path):
    """Names of the sections of an ELF file that a stripped linked file has none of: the
    symbol table and relocation sections the loader does not read (not SHF_ALLOC)."""
    elf = elf_reader.read_file(path)
    names_index = elf.layout.header.unpack_from(elf.data, 16)[12]  # e_shstrndx
    names = elf.sections[names_index][elf_reader.SH_OFFSET] if names_index < len(elf.sections) else None
    found = []
    for section in elf.sections:
        kind, flags = section[elf_reader.SH_TYPE], section[elf_reader.SH_FLAGS]
        if kind == SHT_SYMTAB or (kind in (SHT_RELA, SHT_REL) and not flags & SHF_ALLOC):
            if names is None:
                found.append("section type {}".format(kind))
                continue
            start = names + section[elf_reader.SH_NAME]
            found.append(elf.data[start : elf.data.index(b"\0", start)].decode("ascii", "replace"))
    return found


def make_scripts_relocatable(build):
    bindir = os.path.join(build.tree, "bin")
    for name in sorted(os.listdir(bindir)):
        path = os.path.join(bindir, name)
        if os.path.islink(path) or not os.path.isfile(path) or is_elf(path):
            continue
        relocate_script(build, path, build.python_bin)
    # config-3.X-<triplet>/python-config.py is a Python script too (python3.X-config is upstream's
    # shell script): '#!/opt/python/.../python3.X', then bin/python3.X three directories up.
    pattern = os.path.join(build.tree, "lib", build.python_bin, "config-3.*", "python-config.py")
    for path in sorted(glob.glob(pattern)):
        interpreter = os.path.relpath(os.path.join(bindir, build.python_bin), os.path.dirname(path))
        if not relocate_script(build, path, interpreter):
            raise BuildError("install", "{} has no python #! line".format(os.path.relpath(path, build.tree)))


def relocate_script(build, path, interpreter):
    """The script's '#!/.../python' line made the trampoline (relocation.rewrite_shebang());
    False if it has none."""
    with open(path, "rb") as handle:
        rewritten = relocation.rewrite_shebang(handle.read(), interpreter)
    if rewritten is None:
        return False
    with open(path, "wb") as handle:
        handle.write(rewritten)
    build.log.write("relocatable shebang: {}\n".format(os.path.relpath(path, build.tree)))
    return True


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
    if series.ships_build_details(build.version):
        make_build_details_relocatable(build)


def make_build_details_relocatable(build):
    """lib/python3.X/build-details.json (PEP 739, 3.14+) with relative paths: the Makefile
    writes the configured prefix's (series.BUILD_DETAILS_FROM)."""
    path = os.path.join(build.tree, "lib", build.python_bin, "build-details.json")
    if not os.path.isfile(path):
        raise BuildError("install", "no lib/{}/build-details.json (3.14+ have it)".format(build.python_bin))
    installed_dir = os.path.join(build.prefix, "lib", build.python_bin)

    def transform(text, prefix):
        return relocation.relocatable_build_details(text, prefix, installed_dir)

    rewrite(build, path, transform)


def fix_bytecode_paths(build):
    """Every .pyc that names the staging directory recompiled, named as installed
    (FIX_BYTECODE_SCRIPT), by the built interpreter (its bytecode format)."""
    python = os.path.join(build.tree, "bin", build.python_bin)
    argv = [python, "-I", "-B", "-c", FIX_BYTECODE_SCRIPT, build.tree, build.destdir]
    run(build.log, "install", argv, env=build.env)


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
