"""BOLT on bullseye (debian-11): its ld (binutils 2.35) writes no PT_GNU_PROPERTY, so a BOLTed
program has no spare program header for PT_GNU_STACK, unless the driver's spare note is linked
in (make.spare_note_rules(), the registry's "spare_note"). The real sequence in a bullseye root:
the fragment's rule assembles the note, gcc links a position-dependent program with
--emit-relocs, bolt-16's llvm-bolt -use-gnu-stack rewrites it, hardening.py restores
PT_GNU_STACK, strip, and the program runs there with no writable and executable mapping."""

from __future__ import annotations

import shutil

import pytest
from builder_helpers import PROGRAM
from driver import hardening, make

from buildfarm import roots
from buildfarm.platforms import load_registry

pytestmark = pytest.mark.root

PACKAGES = ("bolt-16", "gcc", "libc6-dev", "make", "binutils")
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


def test_registry_gives_bullseye_bolt_with_the_spare_note():
    bolt = load_registry().platforms["debian-11"].bolt
    assert bolt is not None and bolt.spare_note and bolt.arches == ("x86_64",)
    assert not load_registry().platforms["debian-12"].bolt.spare_note


def test_bolted_program_keeps_a_non_executable_stack_on_bullseye(fresh_root):
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
