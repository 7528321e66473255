"""The runtime dependencies a package declares, found in its binaries rather than listed by
hand: dpkg-shlibdeps for the .deb (versioned from the libraries' symbols files, so a module
that needs OPENSSL_3.4.0 depends on libssl3t64 (>= 3.4.0)), rpm's own ELF dependency
generator for the .rpm (rpm_dependency_macros keeps the tree's own libraries and paths out
of it; check_rpm_libraries refuses a library that no installed package provides, as
dpkg-shlibdeps does for the .deb). The one copy of this code: the package phase
(packages.py) and the buildfarm package's runtime packages (buildfarm.runtimes.package
imports it from builder_image/) use it.
Standard library only, Python 3.6+."""

import os
import re
import shutil
import string
import subprocess
import tempfile

from sbom_facts import elf as elf_reader

from .errors import BuildError
from .process import run, start

_PATTERN_SAFE = frozenset(string.ascii_letters + string.digits + "._+-/")
# A soname rpm can be asked about (libstdc++.so.6, libgcc_s.so.1, ld-linux-x86-64.so.2): ASCII,
# no space, no leading "-" or "/" (an argument rpm would take for an option or a file).
_SONAME = re.compile(r"[A-Za-z0-9_.+][A-Za-z0-9_.+-]*")
# The files named for each library no package provides (the rest are counted).
NAMED_FILES = 5


def _loadable(tree):
    """(path, ElfFile) of each executable and shared object under tree (what the dynamic
    linker loads), one at a time; object files (python.o in the config directory) link
    nothing, and a file that only starts like ELF is no object at all."""
    for relpath in elf_reader.elf_files(tree):
        path = os.path.join(tree, relpath)
        try:
            elf = elf_reader.read_file(path)
        except elf_reader.ElfError:
            continue
        if elf.type in (elf_reader.ET_EXEC, elf_reader.ET_DYN):
            yield path, elf


def _dynamic(tree):
    """(path, DT_NEEDED sonames, DT_SONAME or None, 64-bit or not) of each executable and
    shared object under tree, sorted by path: each file read once."""
    found = []
    for path, elf in _loadable(tree):
        needed, soname = elf.needed() or ((), None)
        found.append((path, tuple(needed), soname, elf.wide))
    return sorted(found)


def _objects(tree):
    """(path, DT_SONAME or None) of each executable and shared object under tree, sorted by path."""
    return [(path, soname) for path, _needed, soname, _wide in _dynamic(tree)]


def linked_elf_files(tree):
    return [path for path, _soname in _objects(tree)]


def own_libraries(tree):
    """The sonames of the shared libraries the tree ships (libpython3.X.so.1.0,
    libpython3.so, a wheel's bundled library), sorted: a binary of the tree that needs one
    finds it in the tree."""
    return sorted(set(soname for _path, soname in _objects(tree) if soname))


def own_library_dirs(objects, tree, prefix):
    """The directories, as installed, of the tree's own libraries (objects: _objects(tree)),
    and prefix/lib (the Python build's libpython; a runtime's is in python/lib), sorted."""
    dirs = set(os.path.dirname(path) for path, soname in objects if soname)
    installed = set(os.path.join(prefix, os.path.relpath(directory, tree)) for directory in dirs)
    installed.add(os.path.join(prefix, "lib"))
    return sorted(os.path.normpath(directory) for directory in installed)


def deb_depends(log, env, package_root, prefix, name):
    """The Depends of the .deb whose build tree is package_root (holding DEBIAN/ and the
    tree at prefix): dpkg-shlibdeps over every executable and shared object. Libraries of
    the tree itself (libpython) are found in package_root ($ORIGIN runpaths, -l) and need no
    package. log: what has write(text) (the build log; io.StringIO for a runtime's package),
    env: the children's environment (None: this process's). BuildError naming the file when
    a library is not found or comes from no package: a .deb missing a dependency must not ship."""
    tree = os.path.join(package_root, prefix.lstrip("/"))
    objects = _objects(tree)
    files = [path for path, _soname in objects]
    if not files:
        return []
    scratch = tempfile.mkdtemp(prefix="shlibdeps-", dir=os.path.dirname(package_root.rstrip("/")))
    try:
        # dpkg-shlibdeps reads debian/control (the source and its binary packages) from its cwd.
        os.makedirs(os.path.join(scratch, "debian"))
        with open(os.path.join(scratch, "debian", "control"), "w") as handle:
            handle.write("Source: {0}\n\nPackage: {0}\nArchitecture: any\n".format(name))
        argv = ["dpkg-shlibdeps", "-O"]
        argv += ["-l" + directory for directory in own_library_dirs(objects, tree, prefix)]
        argv += ["-e" + path for path in files]
        code, output = run(log, "package", argv, cwd=scratch, env=env, check=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    problems = shlibdeps_problems(output, package_root)
    if code != 0 or problems:
        reason = "; ".join(problems) or "dpkg-shlibdeps exited with status {}".format(code)
        raise BuildError("package", "dpkg-shlibdeps cannot declare the .deb's dependencies: " + reason)
    return parse_shlibs_depends(output)


def shlibdeps_problems(output, package_root):
    """dpkg-shlibdeps' error lines, and its warnings that a library has no dependency
    information (an error in new dpkg, a warning in old), with the files' paths as
    installed (no build directory)."""
    problems = []
    for line in output.splitlines():
        named = "error:" in line or "no dependency information found" in line
        if named and "cannot continue due to the error" not in line:
            text = line.split("dpkg-shlibdeps: ", 1)[-1]
            problems.append(text.replace(package_root.rstrip("/") + "/", "/"))
    return problems


def parse_shlibs_depends(output):
    """The entries of dpkg-shlibdeps -O's "shlibs:Depends=a (>= 1), b" line, in order."""
    for line in output.splitlines():
        if line.startswith("shlibs:Depends="):
            value = line.split("=", 1)[1]
            return [entry.strip() for entry in value.split(",") if entry.strip()]
    return []


def regex_literal(text):
    """text as a POSIX extended regular expression matching itself, for an rpm spec. Only
    the spec prefix's characters (spec._PREFIX_RE): no % for rpm to expand (a %global body
    is expanded twice, so rpm_text's %% would not do), no backslash (rpm versions differ on
    keeping it); the special ones in brackets."""
    if not text or any(char not in _PATTERN_SAFE for char in text):
        raise BuildError("package", "cannot put {!r} into an rpm dependency pattern".format(text))
    return "".join("[" + char + "]" if char in ".+" else char for char in text)


def rpm_dependency_macros(prefix, libraries):
    """Spec lines that keep rpm's automatic dependencies to the system's: no Requires on the
    tree's own libraries (they are in the package: libpython3.X.so.1.0()(64bit) would need
    the system python3-libs) nor on a path in the prefix (a venv script's #!<prefix>/bin/python:
    rpm's script dependency generator requires the interpreter, a file of the package itself),
    and no Provides from the prefix (the package would offer libpython to every other package)."""
    tree = regex_literal(prefix.rstrip("/"))
    lines = ["%global __provides_exclude_from ^{}/".format(tree)]
    own_paths = "{}(/|$)".format(tree)
    if libraries:
        names = "|".join(regex_literal(name) for name in libraries)
        lines.append("%global __requires_exclude ^(({})([(]|$)|{})".format(names, own_paths))
    else:
        lines.append("%global __requires_exclude ^" + own_paths)
    return lines


def rpm_capability(soname, wide):
    """The Requires rpm's ELF dependency generator (elfdeps) records for a DT_NEEDED soname:
    soname()(64bit) from a 64-bit object (x86_64 and aarch64 alike: the marker is the ELF
    class's, not the machine's), the bare soname from a 32-bit one."""
    return soname + "()(64bit)" if wide else soname


def unprovided_libraries(objects, own, provider):
    """(path, soname, capability) of each library an object needs that neither the tree (own:
    the sonames of its libraries) nor an installed package provides, in the objects' order.
    objects: (path, DT_NEEDED sonames, 64-bit or not) of each ELF file; provider(capability):
    the package that provides it, or None (asked once per capability). A soname rpm cannot be
    asked about (_SONAME) is provided by nothing."""
    answers = {}
    missing = []
    for path, needed, wide in objects:
        for soname in needed:
            if soname in own:
                continue
            capability = rpm_capability(soname, wide)
            if capability not in answers:
                answers[capability] = provider(capability) if _SONAME.fullmatch(soname) else None
            if not answers[capability]:
                missing.append((path, soname, capability))
    return missing


def rpm_provider(log, env, capability, dbpath=None):
    """The installed packages ("name-version-release.arch", comma-separated) that provide
    capability, per the rpm database at dbpath (None: rpm's own, the platform's), or None.
    BuildError when rpm cannot read the database (it says so on "error:" lines, in the C
    locale; an unreadable database is no answer that nothing provides it)."""
    argv = ["rpm"] + (["--dbpath", dbpath] if dbpath else [])
    argv += ["-q", "--queryformat", "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\n", "--whatprovides", "--"]
    child_env = dict(os.environ if env is None else env, LC_ALL="C")
    code, output = run(log, "package", [*argv, capability], env=child_env, check=False)
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    if errors:
        raise BuildError("package", "rpm cannot say what provides {}: {}".format(capability, errors[0]))
    packages = [line for line in lines if not line.startswith("warning:")]
    return ", ".join(packages) if code == 0 and packages else None


def check_rpm_libraries(log, env, tree, prefix, dbpath=None):
    """The sonames of the tree's own libraries (for rpm_dependency_macros), once each other
    library its binaries need is provided by an installed package. BuildError naming each file
    (as installed) and library that none provides: rpm would record the Requires
    (libfoo.so.1()(64bit)) and the .rpm could not be installed, where dpkg-shlibdeps fails the
    .deb. Every ELF file is checked, as dpkg-shlibdeps checks each (rpm records the needs of
    executable ones only). dbpath: the rpm database to ask (None: the platform's, in its
    builder image; a test on a machine without one gives its own)."""
    if dbpath is not None and not (os.path.isabs(dbpath) and os.path.isdir(dbpath)):
        raise BuildError("package", "no rpm database at {}".format(dbpath))  # rpm would make one
    found = _dynamic(tree)
    own = set(soname for _path, _needed, soname, _wide in found if soname)
    objects = [
        (os.path.normpath(os.path.join(prefix, os.path.relpath(path, tree))), needed, wide)
        for path, needed, _soname, wide in found
    ]
    missing = unprovided_libraries(objects, own, lambda cap: rpm_provider(log, env, cap, dbpath))
    if missing:
        raise BuildError("package", unprovided_message(missing, dbpath))
    return sorted(own)


def unprovided_message(missing, dbpath=None):
    """What check_rpm_libraries says of unprovided_libraries' answer: each library (soname and
    the capability rpm would require) with the files that need it, in order, the first
    NAMED_FILES of them by name (a wrong database leaves libc.so.6 to every file)."""
    needed_by = {}
    for path, soname, capability in missing:
        needed_by.setdefault((soname, capability), []).append(path)
    libraries = []
    for (soname, capability), paths in needed_by.items():
        more = len(paths) - NAMED_FILES
        named = ", ".join(paths[:NAMED_FILES]) + (" and {} more".format(more) if more > 0 else "")
        libraries.append("{} ({}), needed by {}".format(soname, capability, named))
    where = " in the rpm database {}".format(dbpath) if dbpath else ""
    return "no installed package{} provides a library the .rpm's binaries need: {}".format(
        where, "; ".join(libraries)
    )


def declared_dependencies(kind, path, env=None):
    """What a built .deb (Depends) or .rpm (Requires, without rpmlib() features) declares."""
    if kind == "deb":
        argv = ["dpkg-deb", "--field", path, "Depends"]
    elif kind == "rpm":
        argv = ["rpm", "-qp", "--requires", path]
    else:
        return []
    child = start(argv, env=env, stderr=subprocess.DEVNULL)
    output = child.communicate()[0]
    if child.returncode != 0:
        raise BuildError("manifest", "{} exited with status {}".format(" ".join(argv[:3]), child.returncode))
    if kind == "deb":
        return [entry.strip() for entry in output.replace("\n", " ").split(",") if entry.strip()]
    return [line.strip() for line in output.splitlines() if line.strip() and not line.startswith("rpmlib(")]
