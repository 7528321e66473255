"""Hardening check of the ELF files a build ships; standard library only.

Runs inside the builder with the driver, so it keeps to Python 3.6, and reads ELF files
with builder_image/'s one ELF reader, sbom_facts/elf.py (struct over the bytes; the SBOM's
linked packages read DT_NEEDED with it too). For each ELF file:

- nx_stack: a PT_GNU_STACK header without PF_X. Without the header glibc and the
  kernel fall back to the ABI default, which is an executable stack on x86_64;
- relro: PT_GNU_RELRO and BIND_NOW (DT_BIND_NOW, DF_BIND_NOW or DF_1_NOW), so the
  whole GOT is read-only after start-up ("full"); GNU_RELRO alone is "partial";
- stack_protector: imports __stack_chk_fail. -fstack-protector only instruments
  functions with char arrays, so it is required where such functions certainly
  exist (executables, libpython3.X.so) and only reported for the other objects; that
  they were compiled with it is checked on their compile commands (compile_flag_gaps(),
  in the make phase), as FORTIFY and the optimization it needs are;
- fortify: hardening-check's verdicts: "yes" with any __*_chk import. Its "no, only
  unprotected functions found" fails here only when one of them is a printf-like
  function that _FORTIFY_SOURCE=2 always checks; otherwise it is recorded as
  "unverified" (see _fortify(): modules built with FORTIFY show it too);
- pie: executables are ET_DYN (DF_1_PIE, or a PT_INTERP). A position-dependent
  executable passes only when the caller names it with a reason (the BOLTed
  interpreter, like Debian's python3), and the table records that reason.

check_tree() walks a tree and returns (table, violations): the table is JSON-able,
keyed by relative path, for manifest.json; each violation is one line naming the
file and the property. Run as a script it prints both and exits 1 on violations.
"""

import json
import os
import re
import struct
import sys

if not __package__:
    # Run as a script (make.py's BOLT step runs this file): builder_image/, where the shared
    # ELF reader is, is then not on sys.path (driver/ is).
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from sbom_facts import elf as elf_reader
from sbom_facts.elf import (
    DF_1_NOW,
    DF_1_PIE,
    DF_BIND_NOW,
    DT_BIND_NOW,
    DT_FLAGS,
    DT_FLAGS_1,
    ET_DYN,
    ET_EXEC,
    PF_R,
    PF_W,
    PF_X,
    PT_GNU_PROPERTY,
    PT_GNU_RELRO,
    PT_GNU_STACK,
    PT_INTERP,
    PT_NOTE,
    PT_NULL,
    ElfError,
)

# hardening-check's list (devscripts 2.23): libc functions that have a __NAME_chk
# variant under _FORTIFY_SOURCE.
_FORTIFIABLE_NAMES = """asprintf confstr dprintf fdelt fgets fgets_unlocked fgetws fgetws_unlocked fprintf
    fread fread_unlocked fwprintf getcwd getdomainname getgroups gethostname getlogin_r
    gets getwd longjmp mbsnrtowcs mbsrtowcs mbstowcs memcpy memmove mempcpy memset
    obstack_printf obstack_vprintf poll ppoll pread64 pread printf ptsname_r read
    readlink readlinkat realpath recv recvfrom snprintf sprintf stpcpy stpncpy strcat
    strcpy strncat strncpy swprintf syslog ttyname_r vasprintf vdprintf vfprintf
    vfwprintf vprintf vsnprintf vsprintf vswprintf vsyslog vwprintf wcpcpy wcpncpy
    wcrtomb wcscat wcscpy wcsncat wcsncpy wcsnrtombs wcsrtombs wcstombs wctomb wmemcpy
    wmemmove wmempcpy wmemset wprintf"""
FORTIFIABLE = frozenset(_FORTIFIABLE_NAMES.split())
# The ones glibc routes to __NAME_chk unconditionally at _FORTIFY_SOURCE=2 (they check
# %n, not an object size): importing them plain means code built without FORTIFY. The
# rest stay plain where the compiler cannot see the object's size (memmove into a
# malloc'ed buffer), so importing only those proves nothing.
_ALWAYS_CHECKED_NAMES = """asprintf dprintf fprintf fwprintf obstack_printf obstack_vprintf printf syslog
    vasprintf vdprintf vfprintf vfwprintf vprintf vsyslog vwprintf wprintf"""
ALWAYS_CHECKED = frozenset(_ALWAYS_CHECKED_NAMES.split())

# libpython3.X's file name (fullmatch): its ABI flags (3.7's m, d, t) and soname versions, as
# libpython3.13t.so.1.0; never libpython3.so.
_LIBPYTHON = re.compile(r"libpython[0-9]+\.[0-9]+[a-z]*\.so(\.[0-9]+)*")
# The words of a compiler command that decide its canaries, FORTIFY and optimization: the
# last of each kind wins, as with gcc.
_STACK_PROTECTOR_WORD = re.compile(r"-f(no-)?stack-protector(-[a-z]+)?")
# -fstack-protector-explicit protects only functions marked with an attribute: none here.
STACK_PROTECTORS = ("-fstack-protector", "-fstack-protector-strong", "-fstack-protector-all")
_FORTIFY_WORD = re.compile(r"-[DU]_FORTIFY_SOURCE(=.*)?")
_FORTIFY_ON = re.compile(r"-D_FORTIFY_SOURCE=[2-9]")
_OPTIMIZE_WORD = re.compile(r"-O([0-9]+|[sgz]|fast)?")


def compile_flag_gaps(words):
    """What one compiler command (its words) lacks of the hardening every object of a build
    is compiled with: "stack protector" (the last -f[no-]stack-protector* word is one of
    STACK_PROTECTORS), "_FORTIFY_SOURCE" (the last -D/-U_FORTIFY_SOURCE word defines 2 or
    more) and "optimization" (glibc ignores _FORTIFY_SOURCE at -O0, gcc's default). The ELF
    check cannot tell a module whose code needs no canary from one compiled without them;
    its compile commands can (make.CompileAudit). Assembly (-x assembler: the driver's spare
    note, make.spare_note_rules()) has no C code for either: it lacks nothing."""

    pairs = (words[index : index + 2] for index in range(len(words)))
    if "-xassembler" in words or ["-x", "assembler"] in pairs:
        return []

    def last(pattern):
        matching = [word for word in words if pattern.fullmatch(word)]
        return matching[-1] if matching else None

    gaps = []
    protector = last(_STACK_PROTECTOR_WORD)
    if protector not in STACK_PROTECTORS:
        gaps.append("stack protector")
    fortify = last(_FORTIFY_WORD)
    if fortify is None or not _FORTIFY_ON.fullmatch(fortify):
        gaps.append("_FORTIFY_SOURCE")
    if last(_OPTIMIZE_WORD) in (None, "-O0"):
        gaps.append("optimization")
    return gaps


def read_elf(path):
    """The parts of an ELF file the checks need: {"type", "phdrs", "dynamic" (tag -> [values])
    or None without PT_DYNAMIC, "imports" (undefined function names of the dynamic symbol
    table) or None without section headers}. Raises ElfError for a malformed file."""
    elf = elf_reader.read_file(path)
    return {
        "type": elf.type,
        "phdrs": elf.phdrs,
        "dynamic": elf.dynamic_tags(),
        "imports": elf.imported_functions(),
    }


def _kind(elf):
    """The file's kind: "executable", "shared object" or None (relocatable objects and
    the rest are not checked)."""
    flags_1 = _flag_bits(elf, DT_FLAGS_1)
    has_interp = any(p["type"] == PT_INTERP for p in elf["phdrs"])
    if elf["type"] == ET_EXEC or (elf["type"] == ET_DYN and (flags_1 & DF_1_PIE or has_interp)):
        return "executable"
    if elf["type"] == ET_DYN:
        return "shared object"
    return None


def _flag_bits(elf, tag):
    bits = 0
    for value in (elf["dynamic"] or {}).get(tag, []):
        bits |= value
    return bits


def _nx_stack(elf):
    stacks = [p for p in elf["phdrs"] if p["type"] == PT_GNU_STACK]
    if not stacks:
        return "no", "no PT_GNU_STACK (executable stack)"
    if any(p["flags"] & PF_X for p in stacks):
        return "no", "PT_GNU_STACK is executable (RWE)"
    return "yes", None


def _relro(elf):
    has_relro = any(p["type"] == PT_GNU_RELRO for p in elf["phdrs"])
    dynamic = elf["dynamic"]
    if dynamic is None:
        # A static executable has no lazy binding to turn off.
        return ("yes", None) if has_relro else ("no", "no PT_GNU_RELRO (no RELRO)")
    bind_now = (
        DT_BIND_NOW in dynamic
        or _flag_bits(elf, DT_FLAGS) & DF_BIND_NOW
        or _flag_bits(elf, DT_FLAGS_1) & DF_1_NOW
    )
    if has_relro and bind_now:
        return "full", None
    if has_relro:
        return "partial", "no BIND_NOW (partial RELRO: lazy binding keeps the GOT writable)"
    return "no", "no PT_GNU_RELRO (no RELRO)"


def _pie(elf, kind, non_pie_reason):
    if kind == "shared object":
        return "n/a (shared object)", None
    if elf["type"] == ET_DYN:
        return "yes", None
    if non_pie_reason:
        return "no (position-dependent: {})".format(non_pie_reason), None
    return "no", "not PIE (position-dependent executable)"


def _stack_protector(imports, required):
    if imports is None:
        return "unknown (no dynamic symbol table)", (
            "no dynamic symbol table to check the stack protector" if required else None
        )
    if "__stack_chk_fail" in imports:
        return "yes", None
    if required:
        return "no", "no stack protector (__stack_chk_fail not imported)"
    # -fstack-protector leaves functions without char arrays alone; a small module may
    # have none, so this is reported, as hardening-check does, but not failed.
    return "not found (reported only: no function of this object needed a canary)", None


def _fortify(imports):
    """hardening-check's verdicts, but its "no, only unprotected functions found!" fails
    only with an ALWAYS_CHECKED function among them: calibrated on Debian's own
    lib-dynload and ours, where modules built with -D_FORTIFY_SOURCE=2 import only
    memmove, strcpy, fread or poll (sizes unknown at compile time)."""
    if imports is None:
        return "unknown (no dynamic symbol table)", None
    if any("__{}_chk".format(name) in imports for name in FORTIFIABLE):
        return "yes", None
    unprotected = sorted(name for name in FORTIFIABLE if name in imports)
    certain = [name for name in unprotected if name in ALWAYS_CHECKED]
    if certain:
        return "no", "no _FORTIFY_SOURCE ({} imported unchecked, and no __*_chk function)".format(
            ", ".join(certain[:5])
        )
    if unprotected:
        return "unverified (only size-dependent calls: {})".format(", ".join(unprotected[:5])), None
    return "n/a (no fortifiable calls)", None


# What a launcher that links libpython.so imports instead of containing the interpreter.
_LAUNCHER_IMPORTS = ("Py_BytesMain", "Py_Main")


def stack_protector_required(relpath, kind, imports=None):
    """Executables that contain the interpreter and libpython3.X.so certainly have
    functions with char arrays. Not: libpython3.so (the stable ABI's forwarding library,
    no code), nor an interpreter that links libpython.so (3.9, 3.10: its main() only
    calls Py_BytesMain there, so it has no function that needs a canary)."""
    if _LIBPYTHON.fullmatch(os.path.basename(relpath)):
        return True
    launcher = bool(imports) and any(name in imports for name in _LAUNCHER_IMPORTS)
    return kind == "executable" and not launcher


def check_file(path, relpath=None, non_pie_reason=None):
    """One file's row of the hardening table: {"type", "nx_stack", "relro", "pie",
    "stack_protector", "fortify", "failures": [property messages]}. non_pie_reason: why
    this executable may be position-dependent (recorded in "pie"), or None."""
    relpath = relpath or os.path.basename(path)
    try:
        elf = read_elf(path)
    except (ElfError, struct.error) as error:
        return {"type": "unreadable ELF", "failures": ["not a readable ELF file ({})".format(error)]}
    kind = _kind(elf)
    if kind is None:
        return {"type": "not checked (ELF type {})".format(elf["type"]), "failures": []}
    row = {"type": kind}
    checks = (
        ("nx_stack", _nx_stack(elf)),
        ("relro", _relro(elf)),
        ("pie", _pie(elf, kind, non_pie_reason)),
        (
            "stack_protector",
            _stack_protector(elf["imports"], stack_protector_required(relpath, kind, elf["imports"])),
        ),
        ("fortify", _fortify(elf["imports"])),
    )
    failures = []
    for name, (value, failure) in checks:
        row[name] = value
        if failure:
            failures.append(failure)
    row["failures"] = failures
    return row


def check_tree(root, non_pie_allowed=None):
    """(table, violations) for every ELF file under root. non_pie_allowed: {relative path:
    reason} of executables that may be position-dependent. A reason for a file that is
    not there is itself a violation, so a moved interpreter cannot slip through."""
    non_pie_allowed = dict(non_pie_allowed or {})
    table = {}
    violations = []
    for relpath in elf_reader.elf_files(root):
        row = check_file(os.path.join(root, relpath), relpath, non_pie_allowed.pop(relpath, None))
        table[relpath] = row
        violations += ["{}: {}".format(relpath, failure) for failure in row["failures"]]
    for relpath in sorted(non_pie_allowed):
        violations.append(
            "{}: named as allowed to be position-dependent, but no such ELF file".format(relpath)
        )
    return table, violations


# The note the driver links into a BOLTed interpreter where ld writes no PT_GNU_PROPERTY,
# and so no redundant PT_NOTE (binutils 2.35, bullseye): that ld gives a note section
# aligned to 8, unlike the 4-aligned build-id and ABI-tag notes, a PT_NOTE of its own, which
# restore_gnu_stack() may reuse. Owner "BuildFarm", type 1, no descriptor: 24 bytes in all.
SPARE_NOTE_OWNER = "BuildFarm"
SPARE_NOTE_TYPE = 1
SPARE_NOTE_SECTION = ".note.buildfarm.spare"


def spare_note_bytes(byte_order="<"):
    owner = SPARE_NOTE_OWNER.encode("ascii") + b"\0"
    padding = b"\0" * (-len(owner) % 4)
    return struct.pack(byte_order + "III", len(owner), 0, SPARE_NOTE_TYPE) + owner + padding


def spare_note_assembly():
    """The spare note as one line of GNU as (statements separated by ';'), with the
    non-executable-stack marker an assembled object needs (without it ld makes the stack
    executable)."""
    return (
        '.section {},"a",@note; .balign 8; .long {}, 0, {}; .asciz "{}"; .balign 8; '
        '.section .note.GNU-stack,"",@progbits'
    ).format(SPARE_NOTE_SECTION, len(SPARE_NOTE_OWNER) + 1, SPARE_NOTE_TYPE, SPARE_NOTE_OWNER)


def _spare_program_header(elf):
    """(index, what) of a program header the loader does not need, or None: a PT_NULL; the
    PT_NOTE that duplicates PT_GNU_PROPERTY (ld emits both for .note.gnu.property; the kernel
    and glibc >= 2.32 read the properties through PT_GNU_PROPERTY and skip that PT_NOTE); or
    the PT_NOTE of the driver's spare note alone (SPARE_NOTE_SECTION)."""
    phdrs = elf.phdrs
    for index, phdr in enumerate(phdrs):
        if phdr["type"] == PT_NULL:
            return index, "PT_NULL"
    where = ("offset", "vaddr", "filesz", "memsz")
    properties = [tuple(p[key] for key in where) for p in phdrs if p["type"] == PT_GNU_PROPERTY]
    for index, phdr in enumerate(phdrs):
        if phdr["type"] == PT_NOTE and tuple(phdr[key] for key in where) in properties:
            return index, "PT_NOTE duplicating PT_GNU_PROPERTY"
    spare = spare_note_bytes(elf.layout.byte_order)
    for index, phdr in enumerate(phdrs):
        # The size first: slicing every LOAD segment's bytes would copy the whole file.
        start, size = phdr["offset"], len(spare)
        if phdr["type"] == PT_NOTE and phdr["filesz"] == size and elf.data[start : start + size] == spare:
            return index, "PT_NOTE of the spare note"
    return None


def restore_gnu_stack(path):
    """Give an executable that lost its PT_GNU_STACK (llvm-bolt -use-gnu-stack turns it
    into the LOAD segment of its new code) a non-executable one again, in a spare program
    header: the table cannot grow in place (.interp follows it). Keeps the file's mtime,
    so make does not see the BOLTed binary as changed. Returns what it did, one line."""
    elf = elf_reader.read_file(path)
    if any(p["type"] == PT_GNU_STACK for p in elf.phdrs):
        return "{}: has PT_GNU_STACK, unchanged".format(path)
    spare = _spare_program_header(elf)
    if spare is None:
        raise ElfError("{}: no PT_GNU_STACK and no spare program header to put one in".format(path))
    index, replaced = spare
    entry = elf.layout.pack_phdr(PT_GNU_STACK, PF_R | PF_W, 16)
    before = os.stat(path)
    with open(path, "r+b") as handle:
        handle.seek(elf.phoff + index * elf.phentsize)
        handle.write(entry)
    os.utime(path, (before.st_atime, before.st_mtime))
    return "{}: program header {} ({}) is now PT_GNU_STACK RW".format(path, index, replaced)


def main(argv=None):
    """hardening.py ROOT [RELPATH=REASON ...]: print the table as JSON, then the violations.
    hardening.py --restore-gnu-stack FILE...: restore_gnu_stack() on each FILE."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--restore-gnu-stack"]:
        try:
            for path in argv[1:]:
                print(restore_gnu_stack(path))
        except (ElfError, OSError) as error:
            sys.stderr.write("hardening.py: {}\n".format(error))
            return 1
        return 0
    if not argv:
        sys.stderr.write(
            "usage: hardening.py ROOT [RELPATH=NON_PIE_REASON ...] | --restore-gnu-stack FILE...\n"
        )
        return 2
    allowed = dict(item.split("=", 1) for item in argv[1:])
    table, violations = check_tree(argv[0], allowed)
    print(json.dumps(table, indent=1, sort_keys=True))
    for violation in violations:
        print("violation: " + violation)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
