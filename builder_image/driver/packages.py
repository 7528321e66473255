"""The package phase: the relocatable tarball and the platform's package (.deb or .rpm) of
the staged tree, named and versioned as the store layout says. Standard library only,
Python 3.6+; dpkg-deb and rpmbuild do the packaging."""

import concurrent.futures
import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import time

from .depends import check_rpm_libraries, deb_depends, rpm_dependency_macros
from .errors import BuildError
from .files import tree_size, walk_files
from .process import run
from .spec import DEB_ARCH, RPM_ARCH, parse_version

DEB_GZIP_LEVEL = "6"


def package(build, rpm_dbpath=None):
    """The tarball and the platform's package, side by side: each compresses the staged tree
    with gzip on one core (zlib releases the GIL), so on 2 cores the phase takes about as
    long as the slower of the two instead of their sum. rpm_dbpath: build_rpm's."""
    os.makedirs(build.out, exist_ok=True)
    # One set of modes for all three artifacts, whatever umask make install ran with.
    normalise_modes(build.destdir)
    spec = build.spec
    tarball = os.path.join(build.out, tarball_name(build.version, spec["platform"], spec["arch"]))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        tarball_written = pool.submit(write_tarball, build.tree, tarball)
        if build.platform["package_format"] == "deb":
            package_path = build_deb(build)
        else:
            package_path = build_rpm(build, rpm_dbpath)
        tarball_written.result()
    build.artifacts.append(("tarball", tarball))
    build.artifacts.append((build.platform["package_format"], package_path))


def build_deb(build):
    """The .deb: the staged tree at its prefix, Debian's doc files, control and md5sums.
    Depends is what dpkg-shlibdeps finds the binaries need (depends.deb_depends), versioned:
    the registry's unversioned names let apt install it where OpenSSL is too old."""
    spec = build.spec
    root = os.path.join(build.work, "debroot")
    if os.path.exists(root):
        shutil.rmtree(root)
    shutil.copytree(build.tree, os.path.join(root, build.prefix.lstrip("/")), symlinks=True)
    write_deb_docs(root, build.version, spec["build"], os.path.join(build.src, "LICENSE"))
    control_dir = os.path.join(root, "DEBIAN")
    os.makedirs(control_dir)  # before dpkg-shlibdeps: it marks root as the package's tree
    depends = deb_depends(build.log, build.env, root, build.prefix, package_name(build.version))
    with open(os.path.join(control_dir, "control"), "w") as handle:
        handle.write(
            deb_control(
                build.version,
                spec["build"],
                spec["arch"],
                depends,
                (tree_size(root) + 1023) // 1024,
                maintainer(),
            )
        )
    normalise_modes(root)
    write_md5sums(root, os.path.join(control_dir, "md5sums"))
    output = os.path.join(build.out, deb_name(build.version, spec["build"], spec["arch"]))
    # gzip: every dpkg reads it, and it is 3x faster to make than xz for ~10 MB more. Level 6,
    # as the tarball and the rpm: dpkg-deb's default 9 took 17.5 s for 3.13.15's tree here,
    # 6 took 4.4 s for 1% more (DEB_GZIP_LEVEL).
    argv = ["dpkg-deb", "--root-owner-group", "-Zgzip", "-z" + DEB_GZIP_LEVEL, "--build", root, output]
    run(build.log, "package", argv, env=build.env)
    shutil.rmtree(root, ignore_errors=True)
    return output


def write_deb_docs(root, version, build_number, license_path):
    """usr/share/doc/<name>/ (copyright, changelog.Debian.gz) and the lintian overrides."""
    name = package_name(version)
    doc = os.path.join(root, "usr", "share", "doc", name)
    os.makedirs(doc)
    shutil.copyfile(license_path, os.path.join(doc, "copyright"))
    changelog = deb_changelog(version, build_number, maintainer(), time.gmtime())
    with gzip.GzipFile(os.path.join(doc, "changelog.Debian.gz"), "wb", mtime=0) as handle:
        handle.write(changelog.encode())
    overrides = os.path.join(root, "usr", "share", "lintian", "overrides")
    os.makedirs(overrides)
    with open(os.path.join(overrides, name), "w") as handle:
        handle.write(lintian_overrides(name))


def deb_changelog(version, build_number, maintainer_line, when):
    """The one-entry changelog.Debian; when: a time.struct_time in UTC."""
    return (
        "{name} ({ver}-{build}) unstable; urgency=medium\n\n"
        "  * Built from the upstream CPython {version} source by the Python Build Farm.\n\n"
        " -- {maint}  {date}\n"
    ).format(
        name=package_name(version),
        ver=package_version(version),
        build=build_number,
        version=version,
        maint=maintainer_line,
        date=time.strftime("%a, %d %b %Y %H:%M:%S +0000", when),
    )


def normalise_modes(root):
    """Debian policy's modes, for the .deb, the .rpm and the tarball alike: directories 0755,
    files 0755 where the owner may execute them, else 0644. So no setuid, setgid or sticky
    bit and no group or other write (a umask of 002 left pip's files group-writable); the
    packagers make every file root-owned (dpkg-deb --root-owner-group, rpm's %defattr, the
    tarball's filter)."""
    for directory, dirs, files in os.walk(root):
        for entry in dirs:
            os.chmod(os.path.join(directory, entry), 0o755)  # noqa: S103 - Debian policy
        for entry in files:
            path = os.path.join(directory, entry)
            if not os.path.islink(path):
                mode = os.lstat(path).st_mode
                os.chmod(path, 0o755 if mode & stat.S_IXUSR else 0o644)
    os.chmod(root, 0o755)  # noqa: S103 - Debian policy


def write_md5sums(root, path):
    """DEBIAN/md5sums: dpkg's list of every packaged file (DEBIAN/ itself left out)."""
    with open(path, "w") as handle:
        for file_path in sorted(walk_files(root)):
            relative = os.path.relpath(file_path, root)
            if not relative.startswith("DEBIAN" + os.sep):
                with open(file_path, "rb") as content:
                    digest = hashlib.md5(content.read()).hexdigest()  # noqa: S324 - dpkg's md5sums format
                handle.write("{}  {}\n".format(digest, relative))
    os.chmod(path, 0o644)


def build_rpm(build, rpm_dbpath=None):
    """The .rpm: rpmbuild packages the staged tree (rpm_spec(): no %build); rpm finds its
    Requires in the binaries, versioned by symbol (libssl.so.3(OPENSSL_3.0.0)(64bit)). First,
    a library the binaries need that no installed package provides fails the phase, naming
    the file (depends.check_rpm_libraries; rpm_dbpath: the rpm database that says what is
    installed, None: the platform's own)."""
    spec = build.spec
    libraries = check_rpm_libraries(build.log, build.env, build.tree, build.prefix, rpm_dbpath)
    topdir = os.path.join(build.work, "rpmbuild")
    for sub in ("SPECS", "RPMS", "BUILD", "BUILDROOT", "SOURCES"):
        os.makedirs(os.path.join(topdir, sub), exist_ok=True)
    spec_path = os.path.join(topdir, "SPECS", "python.spec")
    with open(spec_path, "w") as handle:
        handle.write(
            rpm_spec(
                build.version,
                spec["build"],
                spec["arch"],
                build.destdir,
                build.prefix,
                libraries,
            )
        )
    run(
        build.log,
        "package",
        [
            "rpmbuild",
            "-bb",
            "--target",
            RPM_ARCH[spec["arch"]],
            "--define",
            "_topdir " + topdir,
            "--define",
            "_binary_payload w6.gzdio",  # fast; every rpm reads gzip
            spec_path,
        ],
        env=build.env,
    )
    built = []
    for directory, _dirs, files in os.walk(os.path.join(topdir, "RPMS")):
        built.extend(os.path.join(directory, name) for name in files if name.endswith(".rpm"))
    if len(built) != 1:
        raise BuildError("package", "rpmbuild produced {} packages, expected 1".format(len(built)))
    output = os.path.join(build.out, rpm_name(build.version, spec["build"], spec["arch"]))
    shutil.move(built[0], output)
    shutil.rmtree(topdir, ignore_errors=True)
    return output


def write_tarball(tree, output):
    """The install_only shape uv and python-build-standalone use: top folder python/."""

    def owned_by_root(info):
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(output, "w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as archive:
        archive.add(tree, arcname="python", filter=owned_by_root)


def tarball_name(version, platform_id, arch):
    return "python-{}-{}-{}.tar.gz".format(version, platform_id, arch)


def deb_name(version, build, arch):
    return "python-{}_{}_{}.deb".format(version, build, DEB_ARCH[arch])


def rpm_name(version, build, arch):
    return "python-{}-{}.{}.rpm".format(version, build, RPM_ARCH[arch])


def package_name(version):
    return "python-" + version


def package_version(version):
    """Version usable by dpkg and rpm: pre-releases sort before the final release (~)."""
    major, minor, micro, pre, pre_n = parse_version(version)
    text = "{}.{}.{}".format(major, minor, micro)
    if pre:
        text += "~{}{}".format(pre, pre_n)
    return text


def maintainer():
    return os.environ.get("BUILDFARM_MAINTAINER") or "Python Build Farm <python-build-farm@example.org>"


def deb_control(version, build, arch, depends, installed_size_kib, maintainer):
    """DEBIAN/control: Version <version>-<build> so build 2 upgrades build 1; depends: the
    Depends entries (none: no field, an empty one is malformed)."""
    lines = [
        "Package: " + package_name(version),
        "Version: {}-{}".format(package_version(version), build),
        "Architecture: " + DEB_ARCH[arch],
        "Maintainer: " + maintainer,
        "Installed-Size: {}".format(installed_size_kib),
        *(["Depends: " + ", ".join(depends)] if depends else []),
        "Section: python",
        "Priority: optional",
        "Homepage: https://www.python.org/",
        "Description: CPython {} interpreter in /opt/python/{}".format(version, version),
        " A self-contained CPython {} built from the upstream source by the Python".format(version),
        " Build Farm, installed under /opt/python/{} so that several versions can".format(version),
        " be installed side by side. Includes pip.",
    ]
    return "\n".join(lines) + "\n"


def lintian_overrides(name):
    """Tags inherent to a self-contained interpreter under /opt, each with its reason."""
    reasons = [
        ("dir-or-file-in-opt", "", "installs under /opt/python/<version> so versions sit side by side"),
        ("package-installs-python-pycache-dir", "", "the stdlib's bytecode; no system python compiles it"),
        ("python3-script-but-no-python3-dep", "", "upstream stdlib shebangs; they run with this interpreter"),
        (
            "shell-script-fails-syntax-check",
            "[opt/python/*/bin/*]",
            "relocatable sh/python trampolines: sh execs the interpreter on line 2",
        ),
        (
            "shell-script-fails-syntax-check",
            "[opt/python/*/lib/python3.*/config-3.*/python-config.py]",
            "python-config.py is such a trampoline too (relocation.py)",
        ),
        ("embedded-library", "", "upstream CPython bundles expat, libmpdec and HACL* into its modules"),
        ("library-not-linked-against-libc", "", "a tiny extension module that needs no libc symbol"),
        ("shared-library-lacks-prerequisites", "", "extension modules take symbols from the interpreter"),
        ("unusual-interpreter", "", "upstream stdlib and pip files with '#!python' shebangs"),
        ("script-not-executable", "", "upstream pip modules with a shebang; not meant to be run"),
        ("new-package-should-not-package-python2-module", "", "python-<version> is Python 3, not a module"),
        ("initial-upload-closes-no-bugs", "", "built by the farm, never uploaded to Debian"),
    ]
    lines = []
    for tag, context, reason in reasons:
        lines.append("# " + reason)
        lines.append("{}: {}{}".format(name, tag, (" " + context) if context else ""))
    return "\n".join(lines) + "\n"


def rpm_text(value):
    """value as literal text in an rpm spec: rpm expands %name, %{...} and runs %(command) on
    every line, %% is a literal %."""
    return str(value).replace("%", "%%")


def rpm_spec(version, build, arch, staged_root, prefix, libraries=()):
    """An rpmbuild spec that packages an already staged tree (no %build); every value in it
    is data, none a macro (rpm_text; the dependency patterns hold no %). Requires and
    Provides are rpm's automatic ones, less the tree's own libraries (libraries: their
    sonames) and paths in the prefix, and anything provided from the prefix
    (depends.rpm_dependency_macros)."""
    filters = "\n".join(rpm_dependency_macros(prefix, libraries))
    return """\
Name: {name}
Version: {pversion}
Release: {build}
Summary: CPython {version} interpreter in {prefix}
License: Python-2.0
URL: https://www.python.org/
BuildArch: {arch}
AutoReqProv: yes
{filters}

# The tree is already built, stripped and self-tested: no post-processing, no
# byte-compiling with the build host's python, no debuginfo, no build-id links
# (they would collide between versions installed side by side).
%define __os_install_post %{{nil}}
%define __brp_python_bytecompile %{{nil}}
%define debug_package %{{nil}}
%global _build_id_links none

%description
A self-contained CPython {version} built from the upstream source by the
Python Build Farm, installed under {prefix} so that several versions can be
installed side by side. Includes pip.

%install
mkdir -p %{{buildroot}}
cp -a "{staged}/." %{{buildroot}}/

%files
%defattr(-,root,root,-)
{prefix}
""".format(
        name=rpm_text(package_name(version)),
        pversion=rpm_text(package_version(version)),
        build=rpm_text(build),
        version=rpm_text(version),
        prefix=rpm_text(prefix),
        arch=RPM_ARCH[arch],
        filters=filters,
        staged=rpm_text(staged_root),
    )
