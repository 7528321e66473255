"""The ELF hardening checker (builder_image/driver/hardening.py) on real ELF files compiled
here, and the BOLT build's PT_GNU_STACK repair in the make phase (driver/make.py)."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from builder_helpers import PROGRAM
from driver import errors, flags, make

HARDENING_PY = Path(__file__).resolve().parents[2] / "builder_image" / "driver" / "hardening.py"
HARDENED = ["-O2", "-fstack-protector", "-D_FORTIFY_SOURCE=2", "-Wl,-z,relro,-z,now", "-Wl,-z,noexecstack"]
DEBIAN_NON_PIE = "BOLT, as Debian's python3"

# A small extension-like object: fortifiable calls, no char array. strcpy into a buffer of
# unknown size stays strcpy under _FORTIFY_SOURCE=2; printf always becomes __printf_chk.
LIBRARY = r"""
#include <stdio.h>
#include <string.h>
int copy(char *to, const char *from, int n) { strcpy(to, from); return printf("%d\n", n); }
"""
NO_LIBC_CALLS = "int twice(int n) { return 2 * n; }\n"
SIZE_UNKNOWN = "#include <string.h>\nchar *put(char *to, const char *from) { return strcpy(to, from); }\n"


@pytest.fixture(scope="module")
def hardening() -> ModuleType:
    spec = importlib.util.spec_from_file_location("buildfarm_hardening", HARDENING_PY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cc(tmp_path_factory):
    """compile(source, name, *flags) -> path of the ELF file gcc made."""
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed")
    directory = tmp_path_factory.mktemp("elf")

    def compile_(source: str, name: str, *flags: str) -> Path:
        source_path = directory / (name + ".c")
        source_path.write_text(source)
        output = directory / name
        subprocess.run(["gcc", *flags, str(source_path), "-o", str(output), "-pthread"], check=True)
        return output

    return compile_


def program_headers(path: Path) -> list[tuple[int, int]]:
    """(offset in the file, p_type) of each program header of a 64-bit little-endian ELF."""
    data = path.read_bytes()
    phoff, phentsize, phnum = struct.unpack_from("<Q", data, 32)[0], *struct.unpack_from("<HH", data, 54)
    return [
        (phoff + i * phentsize, struct.unpack_from("<I", data, phoff + i * phentsize)[0])
        for i in range(phnum)
    ]


def rewrite_type(path: Path, old: int, new_header: bytes | int) -> None:
    """Overwrite the first program header of type old: its p_type, or all of it."""
    data = bytearray(path.read_bytes())
    offset = next(at for at, p_type in program_headers(path) if p_type == old)
    if isinstance(new_header, int):
        struct.pack_into("<I", data, offset, new_header)
    else:
        data[offset : offset + len(new_header)] = new_header
    path.write_bytes(bytes(data))


def failures(row) -> str:
    return " | ".join(row["failures"])


def test_hardened_pie_program_passes(hardening, cc):
    row = hardening.check_file(str(cc(PROGRAM, "good", *HARDENED, "-fPIE", "-pie")), "bin/good")
    assert row == {
        "type": "executable",
        "nx_stack": "yes",
        "relro": "full",
        "pie": "yes",
        "stack_protector": "yes",
        "fortify": "yes",
        "failures": [],
    }


def test_executable_stack_fails(hardening, cc):
    path = cc(PROGRAM, "execstack", *HARDENED, "-fPIE", "-pie", "-Wl,-z,execstack", "-Wl,--no-warn-execstack")
    row = hardening.check_file(str(path), "bin/execstack")
    assert row["nx_stack"] == "no" and "PT_GNU_STACK is executable" in failures(row)


def test_missing_gnu_stack_fails(hardening, cc, tmp_path):
    path = tmp_path / "nostack"
    shutil.copy(cc(PROGRAM, "for-nostack", *HARDENED, "-fPIE", "-pie"), path)
    rewrite_type(path, hardening.PT_GNU_STACK, hardening.PT_NULL)
    row = hardening.check_file(str(path), "bin/nostack")
    assert row["nx_stack"] == "no" and failures(row) == "no PT_GNU_STACK (executable stack)"


def test_without_relro_fails(hardening, cc):
    row = hardening.check_file(
        str(
            cc(
                PROGRAM,
                "norelro",
                "-O2",
                "-fstack-protector",
                "-D_FORTIFY_SOURCE=2",
                "-fPIE",
                "-pie",
                "-Wl,-z,norelro",
            )
        ),
        "bin/norelro",
    )
    assert row["relro"] == "no" and "no PT_GNU_RELRO" in failures(row)


def test_lazy_binding_is_partial_relro_and_fails(hardening, cc):
    path = cc(
        PROGRAM,
        "lazy",
        "-O2",
        "-fstack-protector",
        "-D_FORTIFY_SOURCE=2",
        "-fPIE",
        "-pie",
        "-Wl,-z,relro,-z,lazy",
    )
    row = hardening.check_file(str(path), "bin/lazy")
    assert row["relro"] == "partial" and "no BIND_NOW" in failures(row)


def test_position_dependent_executable_fails_unless_allowed_with_a_reason(hardening, cc):
    path = str(cc(PROGRAM, "nopie", *HARDENED, "-fno-pie", "-no-pie"))
    row = hardening.check_file(path, "bin/nopie")
    assert row["pie"] == "no" and failures(row) == "not PIE (position-dependent executable)"
    allowed = hardening.check_file(path, "bin/nopie", non_pie_reason=DEBIAN_NON_PIE)
    assert (
        allowed["pie"] == "no (position-dependent: BOLT, as Debian's python3)" and allowed["failures"] == []
    )


def test_shared_object_rules(hardening, cc):
    """FORTIFY fails only with unprotected calls and no __*_chk at all; the stack protector is
    required in libpython but only reported for a small extension module."""
    unfortified = str(
        cc(
            LIBRARY,
            "unfortified.so",
            "-O2",
            "-shared",
            "-fPIC",
            "-U_FORTIFY_SOURCE",
            "-D_FORTIFY_SOURCE=0",
            "-Wl,-z,relro,-z,now",
        )
    )
    row = hardening.check_file(unfortified, "lib/python3.13/lib-dynload/_small.so")
    assert row["type"] == "shared object" and row["pie"] == "n/a (shared object)"
    assert row["fortify"] == "no" and "printf imported unchecked" in failures(row)
    assert row["stack_protector"].startswith(
        "not found (reported only"
    ) and "stack protector" not in failures(row)
    as_libpython = hardening.check_file(unfortified, "lib/libpython3.13.so.1.0")
    assert "no stack protector (__stack_chk_fail not imported)" in failures(as_libpython)

    fortified = str(
        cc(LIBRARY, "fortified.so", "-O2", "-shared", "-fPIC", "-D_FORTIFY_SOURCE=2", "-Wl,-z,relro,-z,now")
    )
    assert hardening.check_file(fortified, "lib/x.so")["fortify"] == "yes"
    plain = str(cc(NO_LIBC_CALLS, "plain.so", "-O2", "-shared", "-fPIC", "-Wl,-z,relro,-z,now"))
    plain_row = hardening.check_file(plain, "lib/plain.so")
    assert plain_row["fortify"] == "n/a (no fortifiable calls)" and plain_row["failures"] == []
    # What hardening-check calls "no, only unprotected functions found!", built with FORTIFY.
    unknown_size = str(cc(SIZE_UNKNOWN, "size.so", "-O2", "-shared", "-fPIC", "-D_FORTIFY_SOURCE=2"))
    size_row = hardening.check_file(unknown_size, "lib/size.so")
    assert size_row["fortify"] == "unverified (only size-dependent calls: strcpy)"
    assert "_FORTIFY_SOURCE" not in failures(size_row)
    assert hardening.stack_protector_required("lib/libpython3.13.so.1.0", "shared object")
    assert not hardening.stack_protector_required("lib/libpython3.so", "shared object")


def test_launcher_linked_to_libpython_needs_no_canary(hardening, cc):
    """3.9/3.10's bin/python3.X links libpython.so: its main() only calls Py_BytesMain
    there, so it has no function that needs a canary; the library is checked instead."""
    hardened = ("-O2", "-fPIC", "-Wl,-z,relro,-z,now", "-fstack-protector")
    library = cc(
        "int Py_BytesMain(int c, char **v) { return c - 1; }\n", "libfakepython.so", "-shared", *hardened
    )
    launcher = cc(
        "int Py_BytesMain(int, char **);\nint main(int c, char **v) { return Py_BytesMain(c, v); }\n",
        "python3.9",
        "-pie",
        *hardened,
        "-Wl,--no-as-needed",  # the library is named before the source that needs it
        str(library),
    )
    row = hardening.check_file(str(launcher), "bin/python3.9")
    assert row["stack_protector"].startswith("not found (reported only") and row["failures"] == []
    alone = cc("int main(void) { return 0; }\n", "python3.13", "-pie", *hardened)
    assert "no stack protector" in failures(hardening.check_file(str(alone), "bin/python3.13"))


def test_tree_table_is_json_and_names_file_and_property(hardening, cc, tmp_path):
    root = tmp_path / "python"
    (root / "bin").mkdir(parents=True)
    (root / "lib").mkdir()
    shutil.copy(cc(PROGRAM, "tree-python", *HARDENED, "-fno-pie", "-no-pie"), root / "bin" / "python3.13")
    (root / "bin" / "python3").symlink_to("python3.13")
    shutil.copy(cc(PROGRAM, "tree-tool", *HARDENED, "-fPIE", "-pie", "-Wl,-z,lazy"), root / "bin" / "tool")
    (root / "lib" / "README").write_text("not an ELF file\n")

    table, violations = hardening.check_tree(
        str(root), {"bin/python3.13": DEBIAN_NON_PIE, "bin/gone": "no such file"}
    )
    assert json.loads(json.dumps(table)) == table
    assert sorted(table) == ["bin/python3.13", "bin/tool"]  # symlinks and non-ELF files are skipped
    assert table["bin/python3.13"]["pie"] == "no (position-dependent: BOLT, as Debian's python3)"
    assert violations == [
        "bin/tool: no BIND_NOW (partial RELRO: lazy binding keeps the GOT writable)",
        "bin/gone: named as allowed to be position-dependent, but no such ELF file",
    ]
    cli = subprocess.run(
        [sys.executable, str(HARDENING_PY), str(root), "bin/python3.13=" + DEBIAN_NON_PIE],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert cli.returncode == 1 and cli.stdout.rstrip().endswith("violation: " + violations[0])


def test_malformed_and_foreign_files_are_reported(hardening, tmp_path):
    truncated = tmp_path / "truncated"
    truncated.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 20)
    assert "truncated ELF header" in failures(hardening.check_file(str(truncated)))
    odd_class = tmp_path / "odd"
    odd_class.write_bytes(b"\x7fELF\x07\x01\x01" + b"\0" * 100)
    assert "unknown ELF class 7" in failures(hardening.check_file(str(odd_class)))


def test_restore_gnu_stack_uses_a_spare_header_and_keeps_the_program_running(hardening, cc, tmp_path):
    path = tmp_path / "restored"
    shutil.copy(cc(PROGRAM, "for-restore", *HARDENED, "-fPIE", "-pie"), path)
    types = [p_type for _, p_type in program_headers(path)]
    if hardening.PT_GNU_PROPERTY not in types:
        pytest.skip("this toolchain emits no PT_GNU_PROPERTY (and so no spare PT_NOTE)")
    # What llvm-bolt -use-gnu-stack leaves: the PT_GNU_STACK slot holds another header.
    relro_at = next(at for at, p_type in program_headers(path) if p_type == hardening.PT_GNU_RELRO)
    rewrite_type(path, hardening.PT_GNU_STACK, path.read_bytes()[relro_at : relro_at + 56])
    # An mtime far from now: a rewrite that touched it would show on any clock granularity.
    os.utime(path, (1_000_000_000, 1_000_000_000))
    mtime = path.stat().st_mtime
    assert "no PT_GNU_STACK" in failures(hardening.check_file(str(path)))

    message = hardening.restore_gnu_stack(str(path))
    assert "PT_NOTE duplicating PT_GNU_PROPERTY" in message and path.stat().st_mtime == mtime
    assert hardening.check_file(str(path), "bin/restored")["failures"] == []
    assert types.count(hardening.PT_NOTE) - 1 == [t for _, t in program_headers(path)].count(
        hardening.PT_NOTE
    )
    assert subprocess.run([str(path)], stdout=subprocess.PIPE, text=True, check=True).stdout == "ok rwx=0\n"
    assert "unchanged" in hardening.restore_gnu_stack(str(path))


def test_restore_without_a_spare_header_fails(hardening, cc, tmp_path):
    path = tmp_path / "nospare"
    shutil.copy(cc(NO_LIBC_CALLS, "for-nospare.so", "-shared", "-fPIC"), path)
    types = [p_type for _, p_type in program_headers(path)]
    for p_type in (hardening.PT_GNU_STACK, hardening.PT_GNU_PROPERTY):
        if p_type in types:
            rewrite_type(path, p_type, 0x60000123)  # an OS-specific type nobody reads
    with pytest.raises(hardening.ElfError, match="no spare program header"):
        hardening.restore_gnu_stack(str(path))


def llvm_bolt() -> str | None:
    found = sorted(glob.glob("/usr/lib/llvm-*/bin/llvm-bolt"))
    return found[-1] if found else None


@pytest.mark.skipif(not llvm_bolt(), reason="llvm-bolt is not installed")
def test_bolt_use_gnu_stack_then_restore_then_strip(hardening, cc, tmp_path):
    """The real sequence of a BOLT build: llvm-bolt -use-gnu-stack over a position-dependent
    program linked with --emit-relocs, restore, then the farm's strip."""
    built = cc(PROGRAM, "for-bolt", *HARDENED, "-fno-pie", "-no-pie", "-Wl,--emit-relocs")
    bolted = tmp_path / "bolted"
    subprocess.run(
        [llvm_bolt(), str(built), "-o", str(bolted), "-use-gnu-stack", "-reorder-blocks=ext-tsp"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    assert "no PT_GNU_STACK (executable stack)" in failures(hardening.check_file(str(bolted)))
    if hardening.PT_GNU_PROPERTY not in [p_type for _, p_type in program_headers(bolted)]:
        pytest.skip("this toolchain emits no PT_GNU_PROPERTY (and so no spare PT_NOTE)")
    hardening.restore_gnu_stack(str(bolted))
    subprocess.run(["strip", "--strip-unneeded", str(bolted)], check=True)
    row = hardening.check_file(str(bolted), "bin/python3.13", non_pie_reason=DEBIAN_NON_PIE)
    assert row["failures"] == [] and row["nx_stack"] == "yes" and row["relro"] == "full"
    assert subprocess.run([str(bolted)], stdout=subprocess.PIPE, text=True, check=True).stdout == "ok rwx=0\n"


# driver/make.py: the BOLT steps.
MAKEFILE_BOLT = {
    "OPT": "-DNDEBUG -g -O3 -Wall",
    "INSTSONAME": "libpython3.13.so.1.0",
    "BOLT_APPLY_FLAGS": "-use-gnu-stack -reorder-functions=cdsort",
}


def test_bolt_binaries_follow_the_interpreter_link():
    static = dict(MAKEFILE_BOLT, LINK_PYTHON_OBJS="$(BLDLIBRARY)")
    assert make.bolt_binaries("3.13.5", static) == ["python"]
    assert make.bolt_binaries("3.15.0a1", MAKEFILE_BOLT) == ["python"]
    assert make.bolt_binaries("3.12.8", MAKEFILE_BOLT) == ["python", "libpython3.13.so.1.0"]


def test_bolt_build_restores_gnu_stack_after_bolt():
    makefile = dict(MAKEFILE_BOLT, LINK_PYTHON_OBJS="$(BLDLIBRARY)")
    bolt = {"package": "bolt-16", "tools": "/usr/lib/llvm-16/bin", "arches": ["x86_64"]}
    steps = make.make_steps(2, "3.13.5", "pgo+lto", makefile, "-m test --pgo", bolt)
    whats = [what for what, _ in steps]
    assert whats[-2:] == [
        "BOLT instrumented run and optimization",
        "PT_GNU_STACK back into the BOLTed binaries",
    ]
    argv = steps[-1][1]
    assert (
        argv[0] == sys.executable
        and Path(argv[1]) == HARDENING_PY
        and argv[2:] == ["--restore-gnu-stack", "python"]
    )
    # CPython's -use-gnu-stack stays: without it binutils' strip corrupts the BOLTed binary.
    final = flags.make_variables("3.13.5", "pgo+lto", makefile, dict(bolt, flag_substitutions={}))[1]
    assert "BOLT_APPLY_FLAGS" not in final or "-use-gnu-stack" in final["BOLT_APPLY_FLAGS"]
    for optimization, with_bolt in (("pgo+lto", None), ("none", bolt)):
        steps = make.make_steps(2, "3.13.5", optimization, makefile, None, with_bolt)
        assert all("--restore-gnu-stack" not in argv for _, argv in steps)


# --- compile commands: every object's flags (make.CompileAudit) -------------------------------

# Words added after the production compile flags -> what compile_flag_gaps() says they lack.
# gcc takes the last of each kind, and glibc drops _FORTIFY_SOURCE at -O0.
LAST_WORD_WINS = [
    ((), []),
    (("-fno-stack-protector",), ["stack protector"]),
    (("-U_FORTIFY_SOURCE",), ["_FORTIFY_SOURCE"]),
    (("-O0",), ["optimization"]),
    (("-fno-stack-protector", "-fstack-protector-strong", "-Os"), []),
]


@pytest.mark.parametrize(("words", "gaps"), LAST_WORD_WINS)
def test_compile_flag_gaps_say_what_gcc_does(hardening, cc, words, gaps):
    """What a compile command lacks, by its words, and what gcc then made of PROGRAM (a
    char array, strcpy and printf): canaries and __*_chk calls go with the words."""
    command = ["-O2", *flags.HARDENING_CFLAGS.split(), *words]
    assert hardening.compile_flag_gaps(["gcc", "-c", *command, "x.c", "-o", "x.o"]) == gaps
    name = "words" + "".join(words).replace("-", "_").replace("=", "")
    row = hardening.check_file(str(cc(PROGRAM, name, *command, "-w", "-fPIE", "-pie")), "bin/" + name)
    assert (row["stack_protector"] == "yes") == ("stack protector" not in gaps)
    assert (row["fortify"] == "yes") == (not gaps or gaps == ["stack protector"])


def test_compile_flag_gaps_of_other_commands(hardening):
    def gaps(command: str) -> list[str]:
        return hardening.compile_flag_gaps(command.split(" "))

    assert gaps("gcc -c x.c -o x.o") == ["stack protector", "_FORTIFY_SOURCE", "optimization"]
    assert gaps("gcc -O -fstack-protector-all -D_FORTIFY_SOURCE=3 -c x.c -o x.o") == []
    assert gaps("gcc -O3 -fstack-protector -D_FORTIFY_SOURCE=1 -c x.c -o x.o") == ["_FORTIFY_SOURCE"]
    # -explicit guards only functions marked __attribute__((stack_protect)).
    assert gaps("gcc -O3 -fstack-protector-explicit -D_FORTIFY_SOURCE=2 -c x.c") == ["stack protector"]
    # Assembly has no C code to protect: the spare note's command, as make prints it.
    note = make.spare_note_rules({})[-1].strip().replace("$(CC)", "gcc").replace("$@", make.SPARE_NOTE_OBJECT)
    assert gaps(note) == [] and gaps("gcc -c -xassembler -o n.o -") == []
    assert gaps("gcc -c -x c -o n.o -") == ["stack protector", "_FORTIFY_SOURCE", "optimization"]


def test_compile_audit_fails_on_an_object_without_the_flags():
    hardened = "gcc -c -O3 " + flags.HARDENING_CFLAGS + " -fPIC "
    audit = make.CompileAudit()
    for line in [
        hardened + "Objects/abstract.c -o Objects/abstract.o",
        "gcc -shared -Wl,-z,relro,-z,now Modules/_json.o -o Modules/_json.so",  # a link: not a compile
        "checking for gcc -c ... yes",
    ]:
        audit.feed(line)
    assert audit.check() == 1
    audit.feed("gcc -c -O3 -fPIC -D_FORTIFY_SOURCE=2 Modules/_ssl.c -o Modules/_ssl.o")
    audit.feed(hardened.replace("-O3", "-O0") + "Modules/x.c -o Modules/x.o")
    with pytest.raises(errors.BuildError) as failure:
        audit.check()
    assert str(failure.value).endswith(
        "compiled without hardening: Modules/_ssl.o (stack protector); Modules/x.o (optimization)"
    )
    with pytest.raises(errors.BuildError, match="no compile command"):
        make.CompileAudit().check()
