"""What the install phase leaves in a shipped tree, on small stand-ins (no CPython build):
stripped ELF files without static relocations (BOLT links with -Wl,--emit-relocs), bytecode
named as installed rather than by the staging path, a relocatable config-3.X/python-config.py,
PEP 739's build-details.json made relative (3.14+), and the self-test's checks that fail on a
file naming the staging directory, a missing bin/python, bin/pip3 or bin/pip, or an absolute
build-details.json."""

from __future__ import annotations

import ctypes
import importlib.util
import json
import marshal
import os
import py_compile
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from builder_helpers import SERIES, VERSIONS
from driver import install, relocation, selftest, series
from driver.errors import BuildError

LIBRARY_C = r"""
#include <stdio.h>
static int counter;
int helper(int x) { return x * 3 + counter++; }
int answer(void) { char text[16]; snprintf(text, sizeof text, "%d", helper(14)); return text[0] - '0'; }
"""
PROGRAM_C = "int answer(void);\nint main(void) { return answer() == 4 ? 0 : 1; }\n"


class Log:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text


def sections(path: Path) -> list[tuple[str, str]]:
    """(name, flags) of every section, from readelf."""
    out = subprocess.run(["readelf", "-SW", str(path)], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        match = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+(\S+)\s+\S+\s+\S+\s+\S+\s+\S+\s+([A-Z]*)\s+\d", line)
        if match:
            found.append((match.group(1), match.group(3)))
    return found


def static_leftovers(path: Path) -> list[str]:
    """.symtab and relocation sections the loader does not map (no A flag)."""
    return [
        name
        for name, flags in sections(path)
        if name == ".symtab" or (name.startswith(".rel") and "A" not in flags)
    ]


def env() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}


# --- strip (install.strip_file) -----------------------------------------------------------------


def test_strip_removes_the_symbol_table_and_static_relocations_of_emit_relocs_links(tmp_path):
    """A library and a program linked with -Wl,--emit-relocs (as --enable-bolt links libpython and
    every extension module) keep neither .symtab nor .rela.text/.rela.data/...; the loader's
    .rela.dyn/.rela.plt stay, and both still run."""
    (tmp_path / "lib.c").write_text(LIBRARY_C)
    (tmp_path / "main.c").write_text(PROGRAM_C)
    library, program = tmp_path / "libanswer.so", tmp_path / "answer"
    relro = ["-Wl,-z,relro,-z,now", "-Wl,--emit-relocs"]
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", *relro, str(tmp_path / "lib.c"), "-o", str(library)], check=True
    )
    subprocess.run(
        [
            "gcc",
            "-O2",
            *relro,
            str(tmp_path / "main.c"),
            str(library),
            "-Wl,-rpath," + str(tmp_path),
            "-o",
            str(program),
        ],
        check=True,
    )
    assert ".symtab" in static_leftovers(library) and ".rela.text" in static_leftovers(
        library
    )  # what BOLT links
    log = Log()
    for path in (library, program):
        install.strip_file(str(path), log, env())
        assert static_leftovers(path) == [], sections(path)
        assert install.unstripped_sections(str(path)) == []
    assert ".rela.dyn" in dict(sections(library))
    assert ctypes.CDLL(str(library)).answer() == 4
    assert subprocess.run([str(program)]).returncode == 0


def test_strip_keeps_an_object_to_link_linkable(tmp_path):
    """config-3.9/python.o is still to be linked: it keeps its symbols and relocations."""
    (tmp_path / "main.c").write_text(PROGRAM_C)
    (tmp_path / "lib.c").write_text(LIBRARY_C)
    objects = []
    for name in ("main", "lib"):
        subprocess.run(
            ["gcc", "-c", "-fPIC", str(tmp_path / f"{name}.c"), "-o", str(tmp_path / f"{name}.o")], check=True
        )
        objects.append(str(tmp_path / f"{name}.o"))
    install.strip_file(objects[0], Log(), env())
    subprocess.run(["gcc", *objects, "-o", str(tmp_path / "linked")], check=True)
    assert subprocess.run([str(tmp_path / "linked")]).returncode == 0


def test_unstripped_sections_names_what_strip_unneeded_leaves(tmp_path):
    """The install phase's check: --strip-unneeded alone (the driver before) leaves .symtab and the
    static relocations of an --emit-relocs link, and unstripped_sections() names them."""
    (tmp_path / "lib.c").write_text(LIBRARY_C)
    library = tmp_path / "lib.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-Wl,--emit-relocs", str(tmp_path / "lib.c"), "-o", str(library)],
        check=True,
    )
    subprocess.run(["strip", "--strip-unneeded", str(library)], check=True)
    left = install.unstripped_sections(str(library))
    assert ".symtab" in left and ".rela.text" in left and ".rela.dyn" not in left


# --- bytecode named as installed, not by the staging path ---------------------------------------


def staged_tree(tmp_path: Path, minor: int = 13) -> SimpleNamespace:
    """A staging root with an interpreter (this python), an ensurepip-like package compiled the way
    pip compiles under --root (by its staged path) and a stdlib module compiled as installed."""
    destdir = tmp_path / "work" / "staging"
    prefix = f"/opt/python/3.{minor}.1"
    tree = destdir / prefix.lstrip("/")
    (tree / "bin").mkdir(parents=True)
    os.symlink(os.path.realpath(sys.executable), tree / "bin" / f"python3.{minor}")
    lib = tree / "lib" / f"python3.{minor}"
    package = lib / "site-packages" / "pipish"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "def where():\n    if __debug__:\n        return 'debug-only'\n    return __file__\n"
    )
    source = str(package / "__init__.py")
    py_compile.compile(source, doraise=True)  # co_filename: the staged path, as pip writes it
    py_compile.compile(
        source, doraise=True, optimize=1, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH
    )
    (lib / "os2.py").write_text("X = 1\n")
    py_compile.compile(str(lib / "os2.py"), dfile=f"{prefix}/lib/python3.{minor}/os2.py", doraise=True)
    names = {"tree": str(tree), "destdir": str(destdir), "prefix": prefix, "python_bin": f"python3.{minor}"}
    return SimpleNamespace(**names, log=Log(), env=env(), version=f"3.{minor}.1")


def pyc_files(tree: str) -> list[Path]:
    return sorted(Path(tree).rglob("*.pyc"))


def test_bytecode_naming_the_staging_directory_is_recompiled_as_installed(tmp_path):
    build = staged_tree(tmp_path)
    needle = build.destdir.encode()
    before = {path: path.read_bytes() for path in pyc_files(build.tree)}
    assert sum(needle in data for data in before.values()) == 2
    install.fix_bytecode_paths(build)
    assert "bytecode named as installed: 2 files" in build.log.text
    for path, old in before.items():
        data = path.read_bytes()
        assert needle not in data
        assert data[4:16] == old[4:16]  # same invalidation mode, source mtime/size or hash
        code = marshal.loads(data[16:])
        source = importlib.util.source_from_cache(str(path))
        assert code.co_filename == source[len(build.destdir) :] and code.co_filename.startswith(
            "/opt/python/"
        )
    # Each at its own level: -O compiles `if __debug__:` out.
    ours = [path for path in before if "pipish" in str(path)]
    assert [b"debug-only" in path.read_bytes() for path in ours] == [".opt-1." not in p.name for p in ours]


def test_selftest_fails_on_any_file_naming_the_staging_directory(tmp_path):
    """Bytecode or text that names the staging root fails the self-test's relocation check; the
    tree once fixed passes it."""
    build = staged_tree(tmp_path)
    ctx = selftest.Context(
        build.tree, "3.13.1", {}, "", str(tmp_path / "st"), Log(), env(), build_paths=(build.destdir,)
    )
    with pytest.raises(selftest.SelftestError, match=r"2 files name .*pipish/__pycache__/__init__"):
        selftest.check_no_build_paths(ctx)
    install.fix_bytecode_paths(build)
    assert selftest.check_no_build_paths(ctx) == "no file names the staging directory"
    record = Path(build.tree) / "lib" / "python3.13" / "site-packages" / "RECORD"
    record.write_text(f"../../../bin/pip3,,\n{build.destdir}/opt/python/3.13.1/bin/pip3,,\n")
    with pytest.raises(selftest.SelftestError, match=r"1 files name .*site-packages/RECORD"):
        selftest.check_no_build_paths(ctx)


# --- config-3.X-*/python-config.py --------------------------------------------------------------


def test_python_config_py_gets_the_relocatable_trampoline(tmp_path):
    """Its '#!/opt/python/.../python3.X' line becomes the /bin/sh trampoline that runs bin/python3.X
    three directories up, so it runs from a moved copy of the tree."""
    build = staged_tree(tmp_path)
    config_dir = Path(build.tree) / "lib" / "python3.13" / "config-3.13-x86_64-linux-gnu"
    config_dir.mkdir()
    script = config_dir / "python-config.py"
    script.write_text(
        "#!/opt/python/3.13.1/bin/python3.13\n# -*- python -*-\nimport sys\nprint('config', *sys.argv[1:])\n"
    )
    script.chmod(0o755)
    install.make_scripts_relocatable(build)
    assert script.read_text().startswith("#!/bin/sh\n")
    assert (
        "relocatable shebang: lib/python3.13/config-3.13-x86_64-linux-gnu/python-config.py" in build.log.text
    )
    moved = tmp_path / "moved" / "python"
    shutil.copytree(build.tree, moved, symlinks=True)
    shutil.rmtree(build.destdir)
    moved_script = next(moved.glob("lib/python3.13/config-3.13-*/python-config.py"))
    out = subprocess.run(
        [str(moved_script), "--includes"], capture_output=True, text=True, check=True, env=env()
    )
    assert out.stdout == "config --includes\n"


def test_python_config_py_without_a_python_line_fails_the_install(tmp_path):
    build = staged_tree(tmp_path)
    config_dir = Path(build.tree) / "lib" / "python3.13" / "config-3.13-x86_64-linux-gnu"
    config_dir.mkdir()
    (config_dir / "python-config.py").write_text("#!/bin/sh\necho\n")
    with pytest.raises(BuildError, match=r"python-config\.py has no python #! line"):
        install.make_scripts_relocatable(build)


# --- bin/python, bin/pip3 and bin/pip: there, and run through links from outside the tree -----


def test_install_links_python_and_pip_beside_python3_and_pip3(tmp_path):
    build = staged_tree(tmp_path)
    bindir = Path(build.tree) / "bin"
    os.symlink("python3.13", bindir / "python3")
    (bindir / "pip3").write_text("#!/opt/python/3.13.1/bin/python3.13\nimport sys\nprint(sys.argv[0])\n")
    (bindir / "pip3").chmod(0o755)
    install.link_unversioned_commands(build)
    install.make_scripts_relocatable(build)
    assert os.readlink(bindir / "python") == "python3" and os.readlink(bindir / "pip") == "pip3"
    moved = tmp_path / "elsewhere" / "python"
    shutil.copytree(build.tree, moved, symlinks=True)
    version = subprocess.run(
        [moved / "bin" / "python", "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert version.strip() == str(tuple(sys.version_info[:2]))
    outside = tmp_path / "usr-local-bin"
    outside.mkdir()
    os.symlink(moved / "bin" / "pip", outside / "pip")  # as users link it into /usr/local/bin
    ran = subprocess.run([outside / "pip"], capture_output=True, text=True, check=True).stdout
    assert ran.strip() == str(outside / "pip")
    install.link_unversioned_commands(build)  # a second run (or CPython's own link) keeps it
    assert os.readlink(bindir / "pip") == "pip3"


def test_install_without_pip3_fails_naming_it(tmp_path):
    build = staged_tree(tmp_path)
    os.symlink("python3.13", Path(build.tree) / "bin" / "python3")
    with pytest.raises(BuildError, match=r"install: no bin/pip3 to link bin/pip to"):
        install.link_unversioned_commands(build)


def fake_moved_tree(tmp_path: Path, present: tuple[str, ...]) -> tuple[selftest.Context, str]:
    """A moved tree whose python3 reports the moved prefix with nothing outside it, and each
    of `present` a script beside it."""
    moved = tmp_path / "moved" / "python"
    (moved / "bin").mkdir(parents=True)
    python = moved / "bin" / "python3"
    python.write_text('#!/bin/sh\necho \'{"prefix": "\'"$3"\'", "outside": {}}\'\n')
    python.chmod(0o755)
    for name in present:
        (moved / "bin" / name).write_text(f'#!/bin/sh\n[ "$0" != "{moved}/bin/{name}" ] && echo "$0"\n')
        (moved / "bin" / name).chmod(0o755)
    ctx = selftest.Context(str(tmp_path / "tree"), "3.13.1", {}, "", str(tmp_path / "st"), Log(), env())
    os.makedirs(ctx.work)  # selftest() makes it
    return ctx, str(moved)


@pytest.mark.parametrize("missing", selftest.LINKED_COMMANDS)
def test_moved_tree_without_python_pip3_or_pip_fails_the_selftest(tmp_path, missing):
    present = tuple(name for name in selftest.LINKED_COMMANDS if name != missing)
    ctx, moved = fake_moved_tree(tmp_path, present)
    with pytest.raises(selftest.SelftestError, match=f"relocation: no bin/{missing} in the tree"):
        selftest.check_moved_interpreter(ctx, moved)


def test_moved_tree_commands_run_through_links_from_outside_it(tmp_path):
    """Each script fails when run by its own path: the check must run it through a link."""
    ctx, moved = fake_moved_tree(tmp_path, selftest.LINKED_COMMANDS)
    assert selftest.check_moved_interpreter(ctx, moved).endswith("python, pip, pip3 run through links")


# --- build-details.json (PEP 739, 3.14+) --------------------------------------------------------


@pytest.mark.parametrize("key", SERIES)
def test_build_details_per_series(key):
    """3.14 and later install lib/python3.X/build-details.json with the configured prefix's paths
    (the Makefile does not pass --relative-paths): the install phase makes them relative."""
    assert series.ships_build_details(VERSIONS[key]) == (key in ("3.14", "3.15"))


def build_details(prefix: str, minor: int = 14) -> str:
    """build-details.json as generate-build-details.py writes it without --relative-paths."""
    data = {
        "schema_version": "1.0",
        "base_prefix": prefix,
        "base_interpreter": f"{prefix}/bin/python3.{minor}",
        "platform": "linux-x86_64",
        "language": {"version": f"3.{minor}", "version_info": {"major": 3, "minor": minor}},
        "implementation": {"name": "cpython", "_multiarch": "x86_64-linux-gnu"},
        "abi": {"flags": [], "extension_suffix": f".cpython-3{minor}-x86_64-linux-gnu.so"},
        "suffixes": {"source": [".py"]},
        "libpython": {
            "dynamic": f"{prefix}/lib/libpython3.{minor}.so",
            "dynamic_stableabi": f"{prefix}/lib/libpython3.so",
            "link_extensions": False,
        },
        "c_api": {
            "headers": f"{prefix}/include/python3.{minor}",
            "pkgconfig_path": f"{prefix}/lib/pkgconfig",
        },
    }
    return json.dumps(data, indent=2) + "\n"


@pytest.mark.parametrize("key", ["3.14", "3.15"])
def test_build_details_paths_become_relative(key):
    """base_prefix relative to the file's directory, the others './'-relative to base_prefix (PEP
    739's relative form, what --relative-paths writes); everything else and the key order kept."""
    minor = int(key.split(".")[1])
    prefix = "/opt/python/" + VERSIONS[key]
    installed_dir = f"{prefix}/lib/python3.{minor}"
    text = relocation.relocatable_build_details(build_details(prefix, minor), prefix, installed_dir)
    data = json.loads(text)
    assert list(data) == list(json.loads(build_details(prefix, minor)))
    assert data["base_prefix"] == "../.."
    assert data["base_interpreter"] == f"./bin/python3.{minor}"
    assert data["libpython"] == {
        "dynamic": f"./lib/libpython3.{minor}.so",
        "dynamic_stableabi": "./lib/libpython3.so",
        "link_extensions": False,
    }
    assert data["c_api"] == {"headers": f"./include/python3.{minor}", "pkgconfig_path": "./lib/pkgconfig"}
    assert data["abi"] == json.loads(build_details(prefix, minor))["abi"]
    assert prefix not in text and text.endswith("}\n")
    assert relocation.relocatable_build_details(text, prefix, installed_dir) == text  # already relative
    moved = "/somewhere/else/python"
    paths = relocation.build_details_paths(data, f"{moved}/lib/python3.{minor}")
    assert paths["base_prefix"] == moved and paths["c_api.headers"] == f"{moved}/include/python3.{minor}"
    assert paths["base_interpreter"] == f"{moved}/bin/python3.{minor}"


def test_build_details_of_another_prefix_is_refused():
    with pytest.raises(ValueError, match="base_prefix '/install' is not the prefix"):
        relocation.relocatable_build_details(
            build_details("/install"), "/opt/python/3.14.0", "/opt/python/3.14.0/lib"
        )


def test_install_rewrites_build_details_for_314_and_requires_it(tmp_path):
    build = staged_tree(tmp_path, minor=14)
    build.version = "3.14.0"
    path = Path(build.tree) / "lib" / "python3.14" / "build-details.json"
    with pytest.raises(BuildError, match=r"no lib/python3\.14/build-details\.json"):
        install.make_build_details_relocatable(build)
    path.write_text(build_details(build.prefix))
    install.make_build_details_relocatable(build)
    assert json.loads(path.read_text())["base_prefix"] == "../.."


def moved_with_build_details(tmp_path: Path, text: str) -> tuple[selftest.Context, str]:
    moved = tmp_path / "moved" / "python"
    for name in ("bin/python3.14", "lib/libpython3.14.so", "lib/libpython3.so"):
        (moved / name).parent.mkdir(parents=True, exist_ok=True)
        (moved / name).write_text("")
    for name in ("include/python3.14", "lib/pkgconfig"):
        (moved / name).mkdir(parents=True)
    (moved / "lib" / "python3.14").mkdir()
    (moved / "lib" / "python3.14" / "build-details.json").write_text(text)
    ctx = selftest.Context(str(tmp_path / "tree"), "3.14.0", {}, "", str(tmp_path / "st"), Log(), env())
    return ctx, str(moved)


def test_selftest_checks_the_moved_build_details(tmp_path):
    """The moved tree's build-details.json must name its files: absolute ones (the Makefile's) fail."""
    prefix = "/opt/python/3.14.0"
    ctx, moved = moved_with_build_details(tmp_path / "abs", build_details(prefix))
    with pytest.raises(selftest.SelftestError, match=r"build-details\.json: .*base_interpreter"):
        selftest.check_moved_build_details(ctx, moved)
    text = relocation.relocatable_build_details(build_details(prefix), prefix, prefix + "/lib/python3.14")
    ctx, moved = moved_with_build_details(tmp_path / "rel", text)
    assert selftest.check_moved_build_details(ctx, moved) == "build-details.json names it"
