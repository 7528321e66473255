"""BOLT on bullseye (debian-11): its ld (binutils 2.35) writes no PT_GNU_PROPERTY, so a BOLTed
program has no spare program header for PT_GNU_STACK, unless the driver's spare note is linked
in (make.spare_note_rules(), the registry's "spare_note"). The real sequence in a bullseye root:
the fragment's rule assembles the note, gcc links a position-dependent program with
--emit-relocs, bolt-16's llvm-bolt -use-gnu-stack rewrites it, hardening.py restores
PT_GNU_STACK, strip, and the program runs there with no writable and executable mapping."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from buildfarm import roots
from buildfarm.platforms import load_registry

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
HARDENING_PY = REPO / "builder_image" / "driver" / "hardening.py"
PACKAGES = ("bolt-16", "gcc", "libc6-dev", "make", "binutils")
# A thread that counts the writable and executable mappings: its stack is one when the
# program has no PT_GNU_STACK.
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
int main(void) {
    void *rwx;
    pthread_t thread;
    pthread_create(&thread, NULL, scan, NULL);
    pthread_join(thread, &rwx);
    printf("ok rwx=%ld\n", (long)rwx);
    return 0;
}
"""
LINK = [
    "gcc",
    "-O2",
    "-fstack-protector",
    "-D_FORTIFY_SOURCE=2",
    "-pthread",
    "-fno-pie",
    "-no-pie",
    "-Wl,--emit-relocs",
    "-Wl,-z,relro,-z,now",
]
BOLT = "/usr/lib/llvm-16/bin/llvm-bolt"


@pytest.fixture(scope="module")
def hardening() -> ModuleType:
    spec = importlib.util.spec_from_file_location("buildfarm_hardening", HARDENING_PY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_registry_gives_bullseye_bolt_with_the_spare_note():
    bolt = load_registry().platforms["debian-11"].bolt
    assert bolt is not None and bolt.spare_note and bolt.arches == ("x86_64",)
    assert not load_registry().platforms["debian-12"].bolt.spare_note


def test_bolted_program_keeps_a_non_executable_stack_on_bullseye(fresh_root, hardening):
    from driver import make  # builder_image/ is on sys.path (tests/builder/conftest.py)

    root = fresh_root("bullseye", PACKAGES)
    work = root / "work"
    work.mkdir()
    (work / "program.c").write_text(PROGRAM)
    (work / "fragment.mk").write_text("\n".join(make.spare_note_rules({"BUILDPYTHON": "python"})) + "\n")

    def run(*argv: str):
        return roots.run_in_root(root, ["sh", "-c", 'cd /work && "$@"', "sh", *argv])

    with roots.mounted(root):
        run("make", "-f", "fragment.mk", "CC=gcc", make.SPARE_NOTE_OBJECT)
        run(*LINK, "-o", "with-note", "program.c", make.SPARE_NOTE_OBJECT)
        run(*LINK, "-o", "without-note", "program.c")
        for name in ("with-note", "without-note"):
            run(BOLT, name, "-o", name + ".bolt", "-use-gnu-stack", "-reorder-blocks=ext-tsp")
        types = [p["type"] for p in hardening.elf_reader.read_file(str(work / "with-note.bolt")).phdrs]
        assert hardening.PT_GNU_PROPERTY not in types and hardening.PT_GNU_STACK not in types
        # Without the note there is no header to spare: the build would fail, naming the file.
        with pytest.raises(hardening.ElfError, match="no spare program header"):
            hardening.restore_gnu_stack(str(work / "without-note.bolt"))
        message = hardening.restore_gnu_stack(str(work / "with-note.bolt"))
        assert "(PT_NOTE of the spare note) is now PT_GNU_STACK RW" in message
        run("strip", "--strip-unneeded", "with-note.bolt")
        assert run("./with-note.bolt").stdout == "ok rwx=0\n"
    row = hardening.check_file(str(work / "with-note.bolt"), "bin/python3.9", non_pie_reason="BOLT")
    assert row["failures"] == [] and row["nx_stack"] == "yes" and row["relro"] == "full"
    shutil.rmtree(work)
