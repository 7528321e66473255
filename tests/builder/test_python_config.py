"""bin/python3.X-config made from each series' real Misc/python-config.sh.in (the shared
upstream tarballs), edited by relocation.relocatable_python_config() as the driver does before
configure, then filled in as configure and the Makefile do. Run by dash (Debian's /bin/sh) and
bash in a fake installed tree: with a plain path it prints what upstream's script prints; with
a space or shell metacharacters in the path it prints the moved tree's paths (flags escaped as
pkg-config escapes them, bare paths as they are) and runs nothing. 3.10, 3.12, 3.14 and 3.15
have no tarball here: the edits check their anchors, so another text fails the configure phase."""

from __future__ import annotations

import os
import re
import subprocess
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from builder_helpers import REPO, put_driver_on_path

put_driver_on_path()
from driver import make, relocation  # noqa: E402
from driver.errors import BuildError  # noqa: E402

SOURCES = Path(os.environ.get("BUILDFARM_CPYTHON_SRC", REPO.parent / "shared" / "cpython-src"))
TARBALLS = {
    "3.9.2": "Python-3.9.2.tar.xz",
    "3.11.2": "Python-3.11.2.tgz",
    "3.13.5": "Python-3.13.5.tar.xz",
    "3.13.15": "Python-3.13.15.tar.xz",
}
SHELLS = ["dash", "bash"]
TRIPLET = "x86_64-linux-gnu"
# A directory with a space, one with what a shell would run or expand (no space), and both.
HOSTILE_DIRS = ["sp ace", "m$(touch PWNED)q'\"\\b*&#;`touch PWNED`", "a b$(touch PWNED)\\n"]
OPTIONS = [
    "--prefix",
    "--exec-prefix",
    "--includes",
    "--cflags",
    "--libs",
    "--ldflags",
    "--embed",
    "--configdir",
]


@pytest.fixture(scope="module")
def templates() -> dict[str, str]:
    """{version: Misc/python-config.sh.in} read from the shared upstream tarballs."""
    texts = {}
    for version, name in TARBALLS.items():
        with tarfile.open(SOURCES / name) as archive:
            member = archive.extractfile(f"Python-{version}/Misc/python-config.sh.in")
            texts[version] = member.read().decode()
    return texts


def configured(template: str, version: str, shared: bool) -> str:
    """The script as configure (@NAME@, the values of a farm build of 3.11.2 for this version)
    and the Makefile ($(NAME) -> ${NAME}) write it. CFLAGS names the prefix so that its
    rewrite shows."""
    minor = version.rsplit(".", 1)[0]
    prefix = f"/opt/python/{version}"
    values = {
        "prefix": prefix,
        "exec_prefix": "${prefix}",
        "includedir": "${prefix}/include",
        "libdir": "${exec_prefix}/lib",
        "CFLAGS": f"-I{prefix}/include/extra -O2",
        "VERSION": minor,
        "LIBM": "-lm",
        "LIBC": "",
        "ABIFLAGS": "",
        "LIBPYTHON": "",
        "LIBS": "-ldl ",
        "BASECFLAGS": " -Wsign-compare",
        "LDLIBRARY": "libpython${LDVERSION}.so",
        "OPT": "-DNDEBUG -g -fwrapv -O3 -Wall",
        "PY_ENABLE_SHARED": "1" if shared else "0",
        "LDVERSION": "${VERSION}${ABIFLAGS}",
        "LIBPL": f"$(prefix)/lib/python{minor}/config-$(VERSION)$(ABIFLAGS)-{TRIPLET}",
        "EXT_SUFFIX": f".cpython-{minor.replace('.', '')}-{TRIPLET}.so",
        "PYTHONFRAMEWORK": "",
    }
    text = re.sub(r"@(\w+)@", lambda match: values[match.group(1)], template)
    return re.sub(r"\$\(([A-Za-z0-9_]*)\)", r"${\1}", text)


def installed_tree(top: Path, version: str, scripts: dict[str, str]) -> SimpleNamespace:
    """top/python with bin/<name> for each script, bin/python3-config linking the first (as
    make install links it), and the directories the script reads."""
    minor = version.rsplit(".", 1)[0]
    prefix = top / "python"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "include" / f"python{minor}").mkdir(parents=True)
    libpl = prefix / "lib" / f"python{minor}" / f"config-{minor}-{TRIPLET}"
    libpl.mkdir(parents=True)
    for name, text in scripts.items():
        (prefix / "bin" / name).write_text(text)
        (prefix / "bin" / name).chmod(0o755)
    (prefix / "bin" / "python3-config").symlink_to(next(iter(scripts)))
    return SimpleNamespace(prefix=str(prefix), libpl=str(libpl), minor=minor, bin=prefix / "bin")


def run_config(shell: str, script: Path, *options: str, cwd: Path) -> str:
    result = subprocess.run(
        [shell, str(script), *options], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and not result.stderr, (options, result)
    return result.stdout


def sh_words(shell: str, script: Path, *options: str, cwd: Path) -> list[str]:
    """The output as sh reads it on a command line (make's $(shell ...) in a recipe, a
    configure-substituted FLAGS): `eval set -- $(...)`, each word NUL-terminated."""
    program = 'eval "set -- $("$0" "$@")" && printf "%s\\0" "$@"'
    result = subprocess.run(
        [shell, "-c", program, str(script), *options], cwd=cwd, capture_output=True, check=False
    )
    assert result.returncode == 0 and not result.stderr, (options, result)
    return result.stdout.decode().split("\0")[:-1]


@pytest.mark.parametrize("version", TARBALLS)
@pytest.mark.parametrize("shared", [True, False])
def test_a_plain_path_prints_what_upstreams_script_prints(templates, version, shared, tmp_path):
    upstream = configured(templates[version], version, shared)
    edited = configured(relocation.relocatable_python_config(templates[version]), version, shared)
    assert edited != upstream
    tree = installed_tree(
        tmp_path / "plain", version, {"python3.X-config": edited, "upstream-config": upstream}
    )
    combined = [
        ["--ldflags", "--embed"],
        ["--prefix", "--includes", "--libs"],
        ["--extension-suffix"],
        ["--abiflags"],
    ]
    for options in [*[[option] for option in OPTIONS if option != "--embed"], *combined]:
        expected = run_config("dash", tree.bin / "upstream-config", *options, cwd=tmp_path)
        assert run_config("dash", tree.bin / "python3-config", *options, cwd=tmp_path) == expected
    assert run_config("dash", tree.bin / "python3-config", "--prefix", cwd=tmp_path) == tree.prefix + "\n"


@pytest.mark.parametrize("version", TARBALLS)
@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("directory", HOSTILE_DIRS)
def test_a_path_with_a_space_or_metacharacters_prints_the_moved_tree(
    templates, version, shell, directory, tmp_path
):
    edited = configured(relocation.relocatable_python_config(templates[version]), version, shared=False)
    tree = installed_tree(tmp_path / directory, version, {f"python{version[:4]}-config": edited})
    script, cwd = tree.bin / "python3-config", tmp_path
    include, lib = f"-I{tree.prefix}/include/python{tree.minor}", f"-L{tree.prefix}/lib"
    # Bare paths print as they are.
    assert run_config(shell, script, "--prefix", cwd=cwd) == tree.prefix + "\n"
    assert run_config(shell, script, "--exec-prefix", cwd=cwd) == tree.prefix + "\n"
    assert run_config(shell, script, "--configdir", cwd=cwd) == tree.libpl + "\n"
    # Flags are one word each on sh's command line.
    assert sh_words(shell, script, "--includes", cwd=cwd) == [include, include]
    cflags = sh_words(shell, script, "--cflags", cwd=cwd)
    assert cflags[:3] == [include, include, "-Wsign-compare"] and f"-I{tree.prefix}/include/extra" in cflags
    assert sh_words(shell, script, "--ldflags", cwd=cwd) == [f"-L{tree.libpl}", lib, "-ldl", "-lm"]
    embed = sh_words(shell, script, "--ldflags", "--embed", cwd=cwd)
    assert embed == [f"-L{tree.libpl}", lib, f"-lpython{tree.minor}", "-ldl", "-lm"]
    assert not list(tmp_path.rglob("PWNED")), "the path ran as shell code"


def test_a_space_is_escaped_as_pkg_config_escapes_it(templates, tmp_path):
    edited = configured(relocation.relocatable_python_config(templates["3.13.15"]), "3.13.15", shared=True)
    tree = installed_tree(tmp_path / "sp ace", "3.13.15", {"python3.13-config": edited})
    escaped = tree.prefix.replace(" ", "\\ ")
    out = run_config("dash", tree.bin / "python3-config", "--includes", "--ldflags", cwd=tmp_path)
    assert (
        out
        == f"-I{escaped}/include/python3.13 -I{escaped}/include/python3.13\n -L{escaped}/lib  -ldl  -lm \n"
    )


def test_upstreams_script_breaks_on_a_space(templates, tmp_path):
    """What the edits fix (the test above fails without them)."""
    upstream = configured(templates["3.11.2"], "3.11.2", shared=True)
    tree = installed_tree(tmp_path / "sp ace", "3.11.2", {"python3.11-config": upstream})
    result = subprocess.run(
        ["dash", str(tree.bin / "python3-config"), "--includes"], capture_output=True, text=True
    )
    assert result.stdout == "-I/include/python3.11 -I/include/python3.11\n" and "can't cd" in result.stderr


@pytest.mark.parametrize("version", TARBALLS)
def test_the_edits_are_idempotent_and_leave_no_echo_or_sed(templates, version):
    edited = relocation.relocatable_python_config(templates[version])
    assert relocation.relocatable_python_config(edited) == edited
    assert edited.count(relocation.PYTHON_CONFIG_MARKER) == 1
    code = [line for line in edited.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if re.search(r"\becho\b|sed \"s#", line)]


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('RESULT=$(dirname $(cd $(dirname "$1") && pwd -P))', 'RESULT=$(dirname "$1")', "installed_prefix's"),
        (
            'libdir=$(echo "@libdir@" | sed',
            'libdir=$(echo "@libdir@" | tr a a | sed',
            "no sed line for libdir",
        ),
        ('prefix_real=$(installed_prefix "$0")', "prefix_real=/opt", "no line 'prefix_real="),
        ('echo "$LIBPL"', "echo $LIBPL", "line left as upstream's: 'echo $LIBPL'"),
    ],
)
def test_another_text_is_refused_naming_what_is_missing(templates, old, new, message):
    text = templates["3.13.15"]
    assert old in text
    with pytest.raises(ValueError, match=re.escape(message)):
        relocation.relocatable_python_config(text.replace(old, new))


class Log:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text


def test_the_driver_edits_the_source_before_configure(templates, tmp_path):
    (tmp_path / "Misc").mkdir()
    source = tmp_path / "Misc" / "python-config.sh.in"
    source.write_text(templates["3.9.2"])
    build = SimpleNamespace(src=str(tmp_path), log=Log())
    make.make_python_config_relocatable(build)
    assert source.read_text() == relocation.relocatable_python_config(templates["3.9.2"])
    assert "relocatable: Misc/python-config.sh.in" in build.log.text
    source.write_text("#!/bin/sh\necho $0\n")
    with pytest.raises(BuildError, match=r"Misc/python-config\.sh\.in: no line") as raised:
        make.make_python_config_relocatable(build)
    assert raised.value.phase == "configure"
