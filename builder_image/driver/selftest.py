"""The self-test of an installed CPython tree, one function per check.

Callable on any installed tree (the driver's staged tree, or one unpacked from a
tarball): selftest(Context(...)) runs every check and returns the results; a failed
check raises SelftestError naming the check and what failed. phase() is the driver's
selftest phase: the hardening check of every ELF file (hardening.py), then selftest(). Standard library only,
Python 3.6+ (run by the driver's selftest phase, phase() below).

The CPython tests run in a scratch copy of the tree moved elsewhere: the copy also
proves relocation, and receives what the tests need but the package must not ship
(the test packages from the source when the install left them out, test-only C
modules built from the source), see series.py.
"""

import base64
import glob
import hashlib
import json
import os
import shutil
import subprocess
import time
import zipfile

from . import hardening, install, process, relocation, series
from .errors import BuildError
from .files import walk_files
from .selftest_scripts import EMBED_PROGRAM, IMPORT_SCRIPT, MOVED_SCRIPT, PYTHON_INFO_SCRIPT


class SelftestError(Exception):
    """A failed check: which one, and why."""

    def __init__(self, check, message):
        Exception.__init__(self, "{}: {}".format(check, message))
        self.check = check
        self.message = message


class Context:
    """What the self-test needs about one installed tree.

    tree: the installed prefix (bin/, lib/, include/); version: e.g. "3.13.15";
    platform: spec.platform_info() (expected_modules, missing_modules, id); source:
    the unpacked CPython source (for Lib/test and test-only C modules); work: scratch
    directory (emptied); tests: regrtest names (None: series.selftest_tests());
    log: an object with write(text); env: the base environment of every command;
    build_paths: directories (the staging root) that no file of the tree may name."""

    def __init__(self, tree, version, platform, source, work, log, env, tests=None, jobs=1, build_paths=()):
        self.tree = tree
        self.version = version
        self.platform = platform
        self.source = source
        self.work = work
        self.log = log
        self.env = dict(env)
        self.tests = list(series.selftest_tests(version) if tests is None else tests)
        self.jobs = jobs
        self.build_paths = tuple(build_paths)
        self.minor = series.minor_of(version)
        self.python_bin = "python3.{}".format(self.minor)
        self.python_info = {}
        self.modules = {}
        self.timings = {}


def run(ctx, check, argv, cwd=None, env=None):
    """Run argv (never through a shell), output into the log; SelftestError on failure."""
    try:
        code, output = process.stream(ctx.log, argv, cwd=cwd or ctx.work, env=ctx.env if env is None else env)
    except OSError as error:
        raise SelftestError(check, "cannot run {}: {}".format(argv[0], error)) from None
    if code != 0:
        raise SelftestError(check, "{} exited with status {}".format(" ".join(argv[:4]), code))
    return output


def last_line(output):
    lines = output.strip().splitlines()
    return lines[-1] if lines else ""


def selftest(ctx):
    """Every check, in order; returns {check: result text}."""
    if os.path.exists(ctx.work):
        shutil.rmtree(ctx.work)
    os.makedirs(ctx.work)
    results = {}
    results["modules"] = check_modules(ctx)
    moved = move_copy(ctx)
    moved_checks = [check_moved_interpreter(ctx, moved), check_moved_build_config(ctx, moved)]
    if series.ships_build_details(ctx.version):
        moved_checks.append(check_moved_build_details(ctx, moved))
    results["relocation"] = None  # below: its place among the results kept
    results["tests"] = check_cpython_tests(ctx, moved)
    results["pip"] = check_pip(ctx)
    results["embedding"] = "ok ({}; {})".format(check_embedding(ctx), check_pkg_config_embedding(ctx, moved))
    if ctx.build_paths:  # last: the checks above ran the tree's python (it could write bytecode)
        moved_checks.append(check_no_build_paths(ctx))
    results["relocation"] = "ok ({})".format("; ".join(moved_checks))
    return results


def check_interpreter(ctx):
    """Facts about the interpreter (for the manifest); it must be the version built."""
    python = os.path.join(ctx.tree, "bin", ctx.python_bin)
    ctx.python_info = json.loads(last_line(run(ctx, "interpreter", [python, "-c", PYTHON_INFO_SCRIPT])))
    if ctx.python_info["version"] != ctx.version:
        raise SelftestError(
            "interpreter", "it says it is {}, not {}".format(ctx.python_info["version"], ctx.version)
        )
    return ctx.python_info


def check_modules(ctx):
    """Every module the platform should have imports."""
    check_interpreter(ctx)
    python = os.path.join(ctx.tree, "bin", ctx.python_bin)
    expected = ctx.platform["expected_modules"]
    result = json.loads(last_line(run(ctx, "modules", [python, "-c", IMPORT_SCRIPT, *list(expected)])))
    ctx.modules = {
        "expected": expected,
        "imported": result["imported"],
        "missing": result["missing"],
        "excused": ctx.platform["missing_modules"],
        "extension_modules": result["extension_modules"],
    }
    if result["missing"]:
        details = "; ".join("{} ({})".format(k, v) for k, v in sorted(result["missing"].items()))
        raise SelftestError("modules", "missing modules: " + details)
    return "ok ({} imported)".format(len(result["imported"]))


def move_copy(ctx):
    """A copy of the tree at another path, as a user moves it. No space in the path:
    compiler flags are space-separated words (upstream's python3.X-config breaks on a
    prefix with a space, and pkg-config escapes it)."""
    moved = os.path.join(ctx.work, "moved", "python")
    shutil.copytree(ctx.tree, moved, symlinks=True)
    return moved


# The unversioned links install.py makes and what they point to (pip3: --with-ensurepip=install
# puts it there in every series); python3 itself already ran by its path.
LINKED_COMMANDS = tuple(
    dict.fromkeys(name for pair in install.UNVERSIONED_COMMANDS for name in pair if name != "python3")
)


def check_moved_interpreter(ctx, moved):
    """The moved tree runs, finds its prefix and its C-library modules, and its bin/
    scripts run."""
    output = run(ctx, "relocation", [os.path.join(moved, "bin", "python3"), "-c", MOVED_SCRIPT, moved])
    result = json.loads(last_line(output))
    if os.path.realpath(result["prefix"]) != os.path.realpath(moved):
        raise SelftestError("relocation", "moved tree reports prefix {!r}".format(result["prefix"]))
    if result["outside"]:
        raise SelftestError(
            "relocation",
            "sysconfig variables point outside the moved tree: "
            + "; ".join("{}={}".format(k, v) for k, v in sorted(result["outside"].items())),
        )
    # Each run through a link from outside the tree, as users link them into /usr/local/bin.
    linked = os.path.join(ctx.work, "linked")
    os.makedirs(linked, exist_ok=True)
    for name in LINKED_COMMANDS:
        path = os.path.join(moved, "bin", name)
        if not os.path.isfile(path):
            raise SelftestError("relocation", "no bin/{} in the tree".format(name))
        link = os.path.join(linked, name)
        if not os.path.lexists(link):
            os.symlink(path, link)
        run(ctx, "relocation", [link, "--version"])
    return "runs from a moved copy; sysconfig paths follow it; {} run through links".format(
        ", ".join(LINKED_COMMANDS)
    )


def check_moved_build_config(ctx, moved):
    """python3.X-config, config-3.X-*/python-config.py (run by its #! line) and the pkg-config
    files of the moved tree name the moved tree."""
    config = os.path.join(moved, "bin", ctx.python_bin + "-config")
    libpl = glob.glob(os.path.join(moved, "lib", ctx.python_bin, "config-3.*", "python-config.py"))
    if len(libpl) != 1:
        raise SelftestError("relocation", "not one config-3.X-*/python-config.py: {}".format(libpl))
    words = []
    for flags in (["--includes"], ["--ldflags", "--embed"], ["--prefix"]):
        words += run(ctx, "relocation", ["sh", config, *flags]).split()
        words += run(ctx, "relocation", [libpl[0], *flags]).split()
    pc_dir = os.path.join(moved, "lib", "pkgconfig")
    env = dict(ctx.env, PKG_CONFIG_PATH=pc_dir, PKG_CONFIG_LIBDIR=pc_dir)
    for package in ("python-3.{}".format(ctx.minor), "python-3.{}-embed".format(ctx.minor)):
        words += run(ctx, "relocation", ["pkg-config", "--cflags", "--libs", package], env=env).split()
    paths = [w[2:] if w[:2] in ("-I", "-L") else w for w in words if w.startswith(("-I/", "-L/", "/"))]
    outside = [p for p in paths if not os.path.realpath(p).startswith(os.path.realpath(moved) + os.sep)]
    outside = [p for p in outside if os.path.realpath(p) != os.path.realpath(moved)]
    if outside or not paths:
        raise SelftestError(
            "relocation", "build configuration names paths outside the moved tree: {}".format(outside)
        )
    return "python3-config and pkg-config name the moved tree"


def check_moved_build_details(ctx, moved):
    """build-details.json (PEP 739, 3.14+) of the moved tree: its paths are the moved tree's files."""
    directory = os.path.join(moved, "lib", ctx.python_bin)
    with open(os.path.join(directory, "build-details.json")) as handle:
        paths = relocation.build_details_paths(json.load(handle), directory)
    inside = os.path.realpath(moved) + os.sep
    wrong = [k for k, p in sorted(paths.items()) if not (os.path.realpath(p) + os.sep).startswith(inside)]
    wrong += [k for k, p in sorted(paths.items()) if not os.path.exists(p)]
    if wrong:
        raise SelftestError("relocation", "build-details.json: {} not in the moved tree".format(wrong))
    return "build-details.json names it"


def check_no_build_paths(ctx):
    """No file of the tree (text, .pyc, ELF) names a build directory (ctx.build_paths)."""
    needles = [os.fsencode(path) for path in ctx.build_paths]
    naming = sorted(os.path.relpath(path, ctx.tree) for path in walk_files(ctx.tree) if _names(path, needles))
    if naming:
        message = "{} files name {}: {}".format(len(naming), ctx.build_paths, " ".join(naming[:5]))
        raise SelftestError("relocation", message)
    return "no file names the staging directory"


def _names(path, needles):
    with open(path, "rb") as handle:
        data = handle.read()
    return any(needle in data for needle in needles)


def prepare_tests(ctx, moved):
    """Put what the tests need into the moved copy: test packages from the source (no
    series installs them) and test-only C modules; returns the moved python."""
    libdir = os.path.join(moved, "lib", ctx.python_bin)
    for package in series.test_packages(ctx.version):
        target = os.path.join(libdir, *package.split("/"))
        if os.path.exists(target):
            shutil.rmtree(target)
        shutil.copytree(os.path.join(ctx.source, "Lib", *package.split("/")), target, symlinks=True)
    build_test_modules(ctx, moved, os.path.join(libdir, "lib-dynload"))
    return os.path.join(moved, "bin", ctx.python_bin)


def build_test_modules(ctx, moved, dynload):
    """Compile series.selftest_c_modules() against the moved tree's headers."""
    stdlib_in = os.path.join(ctx.source, "Modules", "Setup.stdlib.in")
    text = None
    if os.path.isfile(stdlib_in):
        with open(stdlib_in) as handle:
            text = handle.read()
    sources = series.test_module_sources(ctx.version, text)
    if not sources:
        return
    python = os.path.join(moved, "bin", ctx.python_bin)
    suffix = last_line(
        run(ctx, "tests", [python, "-c", "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"])
    )
    includes = run(
        ctx, "tests", ["sh", os.path.join(moved, "bin", ctx.python_bin + "-config"), "--includes"]
    ).split()
    modules_dir = os.path.join(ctx.source, "Modules")
    for name, files in sorted(sources.items()):
        argv = ["gcc", "-shared", "-fPIC", "-O1", "-w", "-I" + modules_dir, *includes]
        argv += [os.path.join(modules_dir, f) for f in files] + ["-o", os.path.join(dynload, name + suffix)]
        run(ctx, "tests", argv)


def check_cpython_tests(ctx, moved):
    """A subset of CPython's own test suite, in the moved copy (series.py: which tests,
    where they come from, which test cases are excluded and why)."""
    if not ctx.tests:
        return "skipped (no tests selected)"
    python = prepare_tests(ctx, moved)
    excluded = series.exclusions(ctx.version, ctx.platform)
    env = dict(ctx.env)
    env.pop("PYTHONPATH", None)
    started = time.time()
    runs = [[python, *argv] for argv in series.regrtest_runs(ctx.tests, ctx.jobs, excluded)]
    run_side_by_side(ctx, "tests", runs, env)
    ctx.timings["tests"] = round(time.time() - started, 1)
    text = "passed in {:.0f} s: {}".format(ctx.timings["tests"], " ".join(ctx.tests))
    if excluded:
        reasons = sorted(set(reason for _, reason in excluded))
        text += "; excluded: {} (why: {})".format(" ".join(p for p, _ in excluded), " | ".join(reasons))
    return text


def run_side_by_side(ctx, check, argvs, env):
    """Run argvs at once: the last one's output into the log as it comes, the others' into
    files that follow it there; SelftestError for the first that failed."""
    others = []
    try:
        for index, argv in enumerate(argvs[:-1]):
            output = open(os.path.join(ctx.work, "side-{}.log".format(index)), "w+")  # noqa: SIM115
            ctx.log.write("$ {} (beside the next, output below it)\n".format(" ".join(argv)))
            child = process.popen(argv, cwd=ctx.work, env=env, stdin=subprocess.DEVNULL, stdout=output,
                                  stderr=subprocess.STDOUT)  # fmt: skip
            others.append((argv, child, output))
        failure = None
        try:
            run(ctx, check, argvs[-1], env=env)
        except SelftestError as error:
            failure = error
        for argv, child, output in others:
            code = child.wait()
            output.seek(0)
            ctx.log.write("--- output of {}\n{}".format(" ".join(argv), output.read()))
            if code != 0 and failure is None:
                failure = SelftestError(check, "{} exited with status {}".format(" ".join(argv[:4]), code))
    except OSError as error:
        raise SelftestError(check, "cannot run {}: {}".format(argvs[0][0], error)) from None
    finally:
        for _, child, output in others:
            if child.poll() is None:
                process.stop(child)  # its whole group: regrtest's -j workers too
            output.close()
    if failure:
        raise failure


def check_pip(ctx):
    """pip installs a package offline: a venv (with ensurepip's bundled pip) and a tiny
    wheel made here."""
    python = os.path.join(ctx.tree, "bin", ctx.python_bin)
    wheel = make_test_wheel(ctx.work)
    venv = os.path.join(ctx.work, "venv")
    run(ctx, "pip", [python, "-m", "venv", venv])
    venv_python = os.path.join(venv, "bin", "python")
    run(ctx, "pip", [venv_python, "-m", "pip", "install", "--no-index", wheel])
    output = run(
        ctx, "pip", [venv_python, "-c", "import buildfarm_selftest; print(buildfarm_selftest.ANSWER)"]
    )
    if last_line(output) != "42":
        raise SelftestError("pip", "pip-installed package did not import")
    run(ctx, "pip", [python, "-m", "pip", "--version"])
    return "ok (installed a wheel offline into a venv)"


def _compile_and_run_embedder(ctx, check, cflags, ldflags, libdir, home):
    source = os.path.join(ctx.work, "embed.c")
    program = os.path.join(ctx.work, "embed-" + check)
    with open(source, "w") as handle:
        handle.write(EMBED_PROGRAM)
    argv = ["gcc", *cflags, source, "-o", program, *ldflags, "-Wl,-rpath," + libdir]
    run(ctx, check, argv)
    env = dict(ctx.env, PYTHONHOME=home)  # an embedder outside the tree says where it is
    output = run(ctx, check, [program], env=env)
    if last_line(output) != "embedded " + ctx.version:
        raise SelftestError(check, "embedded interpreter printed {!r}".format(output.strip()[-200:]))


def check_embedding(ctx):
    """A C program built with python3.X-config --embed runs Python code."""
    config = os.path.join(ctx.tree, "bin", ctx.python_bin + "-config")
    cflags = run(ctx, "embedding", ["sh", config, "--cflags"]).split()
    ldflags = run(ctx, "embedding", ["sh", config, "--ldflags", "--embed"]).split()
    _compile_and_run_embedder(ctx, "embedding", cflags, ldflags, os.path.join(ctx.tree, "lib"), ctx.tree)
    return "a C program linked with python3-config --embed ran Python"


def check_pkg_config_embedding(ctx, moved):
    """The same with pkg-config from the moved tree: python-3.X-embed.pc."""
    pc_dir = os.path.join(moved, "lib", "pkgconfig")
    env = dict(ctx.env, PKG_CONFIG_PATH=pc_dir, PKG_CONFIG_LIBDIR=pc_dir)
    package = "python-3.{}-embed".format(ctx.minor)
    cflags = run(ctx, "embedding", ["pkg-config", "--cflags", package], env=env).split()
    ldflags = run(ctx, "embedding", ["pkg-config", "--libs", package], env=env).split()
    _compile_and_run_embedder(ctx, "pkg-config", cflags, ldflags, os.path.join(moved, "lib"), moved)
    return "and with pkg-config from a moved copy"


def make_test_wheel(directory):
    """A minimal pure-Python wheel, so the pip check needs no index or build backend."""
    name, version = "buildfarm_selftest", "1.0"
    dist_info = "{}-{}.dist-info".format(name, version)
    files = {
        name + "/__init__.py": b"ANSWER = 42\n",
        dist_info + "/METADATA": "Metadata-Version: 2.1\nName: {}\nVersion: {}\n".format(
            name, version
        ).encode(),
        dist_info
        + "/WHEEL": b"Wheel-Version: 1.0\nGenerator: buildfarm\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("{},sha256={},{}".format(path, digest, len(data)))
    record.append(dist_info + "/RECORD,,")
    files[dist_info + "/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = os.path.join(directory, "{}-{}-py3-none-any.whl".format(name, version))
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


# -- the driver's selftest phase ---------------------------------------------------------


def phase(build):
    """The hardening check of every ELF file (first: it takes a second), then
    selftest.py's checks on the staged tree; BUILDFARM_SELFTEST_TESTS overrides the
    series' test list (series.selftest_tests())."""
    check_hardening(build)
    tests = os.environ.get("BUILDFARM_SELFTEST_TESTS")
    context = Context(
        build.tree,
        build.version,
        build.platform,
        build.src,
        os.path.join(build.work, "selftest"),
        build.log,
        selftest_env(build),
        tests=tests.split() if tests is not None else None,
        jobs=build.jobs,
        build_paths=(build.destdir,),
    )
    try:
        build.selftest_results.update(selftest(context))
    except SelftestError as error:
        raise BuildError("selftest", str(error)) from None
    finally:
        build.python_info = context.python_info
        build.modules = context.modules
    shutil.rmtree(context.work, ignore_errors=True)


def selftest_env(build):
    env = dict(build.env)  # already an allow-list: no PYTHON*, PIP_*, LD_LIBRARY_PATH
    env["PYTHONNOUSERSITE"] = "1"
    env["PIP_NO_INDEX"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def check_hardening(build):
    """NX stack, full RELRO, PIE, canaries and FORTIFY of every ELF file the packages
    ship (hardening.py); a violation fails the build naming the file and property.
    A BOLTed interpreter is position-dependent (CPython links it -no-pie, as Debian
    links its python3): recorded with that reason, not hidden."""
    position_dependent = {}
    if build.bolt:
        position_dependent["bin/" + build.python_bin] = "BOLT, as Debian's python3"
    build.hardening, violations = hardening.check_tree(build.tree, position_dependent)
    for path, row in sorted(build.hardening.items()):
        build.log.write("hardening: {} {}\n".format(path, json.dumps(row, sort_keys=True)))
    if violations:
        raise BuildError("selftest", "hardening: " + "; ".join(violations[:10]))
    pie = ", PIE" if not position_dependent else ", PIE but the BOLTed interpreter"
    build.selftest_results["hardening"] = "ok ({} ELF files: NX stack, full RELRO{}; {} {})".format(
        len(build.hardening), pie, build.compile_commands, "compiles with a stack protector, FORTIFY, -O"
    )
