"""Hardening check of the ELF files a build ships; standard library only.

Runs inside the builder with the driver, so it keeps to Python 3.6 and reads ELF
headers with struct itself (no readelf parsing, no pyelftools). For each ELF file:

- nx_stack: a PT_GNU_STACK header without PF_X. Without the header glibc and the
  kernel fall back to the ABI default, which is an executable stack on x86_64;
- relro: PT_GNU_RELRO and BIND_NOW (DT_BIND_NOW, DF_BIND_NOW or DF_1_NOW), so the
  whole GOT is read-only after start-up ("full"); GNU_RELRO alone is "partial";
- stack_protector: imports __stack_chk_fail. -fstack-protector only instruments
  functions with char arrays, so it is required where such functions certainly
  exist (executables, libpython3.X.so) and only reported for the other objects;
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
import stat
import struct
import sys

ELF_MAGIC = b"\x7fELF"
ET_REL, ET_EXEC, ET_DYN = 1, 2, 3
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
PT_NULL, PT_NOTE = 0, 4
PT_GNU_STACK, PT_GNU_RELRO, PT_GNU_PROPERTY = 0x6474E551, 0x6474E552, 0x6474E553
PF_X, PF_W, PF_R = 1, 2, 4
SHT_DYNSYM = 11
SHN_UNDEF = 0
DT_NULL, DT_BIND_NOW, DT_FLAGS, DT_FLAGS_1 = 0, 24, 30, 0x6FFFFFFB
DF_BIND_NOW = 0x8
DF_1_NOW, DF_1_PIE = 0x1, 0x08000000
STT_FUNC, STT_GNU_IFUNC, STT_NOTYPE = 2, 10, 0

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

_LIBPYTHON = re.compile(r"libpython[0-9]+\.[0-9]+")


class ElfError(Exception):
    """The file starts like an ELF file but cannot be read as one."""


class _Layout:
    """struct formats of one ELF class and byte order."""

    def __init__(self, elf_class, byte_order):
        wide = elf_class == 2
        self.wide = wide
        # e_type .. e_shstrndx, after the 16-byte e_ident.
        self.header = struct.Struct(byte_order + ("HHIQQQIHHHHHH" if wide else "HHIIIIIHHHHHH"))
        # (type, flags, offset, vaddr, filesz, memsz) are picked out by phdr().
        self.phdr_struct = struct.Struct(byte_order + ("IIQQQQQQ" if wide else "IIIIIIII"))
        self.shdr = struct.Struct(byte_order + ("IIQQQQIIQQ" if wide else "IIIIIIIIII"))
        self.dyn = struct.Struct(byte_order + ("qQ" if wide else "iI"))
        self.sym = struct.Struct(byte_order + ("IBBHQQ" if wide else "IIIBBH"))

    def phdr(self, data, offset):
        fields = self.phdr_struct.unpack_from(data, offset)
        if self.wide:
            p_type, flags, p_offset, vaddr, _paddr, filesz, memsz, _align = fields
        else:
            p_type, p_offset, vaddr, _paddr, filesz, memsz, flags, _align = fields
        return {
            "type": p_type,
            "flags": flags,
            "offset": p_offset,
            "vaddr": vaddr,
            "filesz": filesz,
            "memsz": memsz,
        }

    def symbol(self, data, offset):
        """(name offset, type, section index) of one symbol table entry."""
        fields = self.sym.unpack_from(data, offset)
        if self.wide:
            name, info, _other, shndx = fields[:4]
        else:
            name, info, shndx = fields[0], fields[3], fields[5]
        return name, info & 0xF, shndx


def _unpack(layout_struct, data, offset, what):
    if offset < 0 or offset + layout_struct.size > len(data):
        raise ElfError("truncated {}".format(what))
    return layout_struct.unpack_from(data, offset)


def read_elf(path):
    """The parts of an ELF file the checks need: {"type", "phdrs", "dynamic" (tag -> [values])
    or None without PT_DYNAMIC, "imports" (undefined function names of the dynamic symbol
    table) or None without section headers}. Raises ElfError for a malformed file."""
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:4] != ELF_MAGIC or len(data) < 16:
        raise ElfError("not an ELF file")
    elf_class, byte_order = data[4], data[5]
    if elf_class not in (1, 2) or byte_order not in (1, 2):
        raise ElfError("unknown ELF class {} / data encoding {}".format(elf_class, byte_order))
    layout = _Layout(elf_class, "<" if byte_order == 1 else ">")
    header = _unpack(layout.header, data, 16, "ELF header")
    e_type, e_phoff, e_shoff = header[0], header[4], header[5]
    e_phentsize, e_phnum, e_shentsize, e_shnum = header[8], header[9], header[10], header[11]
    phdrs = []
    for index in range(e_phnum):
        offset = e_phoff + index * e_phentsize
        _unpack(layout.phdr_struct, data, offset, "program header table")
        phdrs.append(layout.phdr(data, offset))
    sections = []
    for index in range(e_shnum if e_shoff else 0):
        sections.append(_unpack(layout.shdr, data, e_shoff + index * e_shentsize, "section header table"))
    return {
        "type": e_type,
        "phdrs": phdrs,
        "dynamic": _dynamic_tags(data, layout, phdrs),
        "imports": _imported_functions(data, layout, sections),
    }


def _dynamic_tags(data, layout, phdrs):
    dynamic = [p for p in phdrs if p["type"] == PT_DYNAMIC]
    if not dynamic:
        return None
    tags = {}
    start, size = dynamic[0]["offset"], dynamic[0]["filesz"]
    for offset in range(start, start + size - layout.dyn.size + 1, layout.dyn.size):
        tag, value = _unpack(layout.dyn, data, offset, "dynamic section")
        if tag == DT_NULL:
            break
        tags.setdefault(tag, []).append(value)
    return tags


def _imported_functions(data, layout, sections):
    """Undefined FUNC/IFUNC/NOTYPE symbols of .dynsym, as hardening-check counts them."""
    # Section header fields: name, type, flags, addr, offset, size, link, info, align, entsize.
    dynsyms = [s for s in sections if s[1] == SHT_DYNSYM]
    if not dynsyms:
        return None
    _name, _type, _flags, _addr, offset, size, link, _info, _align, entsize = dynsyms[0]
    if link >= len(sections):
        raise ElfError("dynamic symbol table links to a missing string table")
    strings_offset, strings_size = sections[link][4], sections[link][5]
    strings = data[strings_offset : strings_offset + strings_size]
    entsize = entsize or layout.sym.size
    imports = set()
    for entry in range(offset, offset + size - entsize + 1, entsize):
        _unpack(layout.sym, data, entry, "dynamic symbol table")
        name_offset, symbol_type, shndx = layout.symbol(data, entry)
        if shndx != SHN_UNDEF or symbol_type not in (STT_FUNC, STT_GNU_IFUNC, STT_NOTYPE) or not name_offset:
            continue
        end = strings.find(b"\0", name_offset)
        imports.add(strings[name_offset : end if end >= 0 else None].decode("ascii", "replace"))
    return imports


def is_elf(path):
    with open(path, "rb") as handle:
        return handle.read(4) == ELF_MAGIC


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
    if _LIBPYTHON.match(os.path.basename(relpath)):
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


def elf_files(root):
    """Relative paths of the regular ELF files under root, sorted (symlinks are not
    followed: each file is checked once, under its real name)."""
    found = []
    for directory, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in filenames:
            path = os.path.join(directory, filename)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode) and is_elf(path):
                found.append(os.path.relpath(path, root))
    return sorted(found)


def check_tree(root, non_pie_allowed=None):
    """(table, violations) for every ELF file under root. non_pie_allowed: {relative path:
    reason} of executables that may be position-dependent. A reason for a file that is
    not there is itself a violation, so a moved interpreter cannot slip through."""
    non_pie_allowed = dict(non_pie_allowed or {})
    table = {}
    violations = []
    for relpath in elf_files(root):
        row = check_file(os.path.join(root, relpath), relpath, non_pie_allowed.pop(relpath, None))
        table[relpath] = row
        violations += ["{}: {}".format(relpath, failure) for failure in row["failures"]]
    for relpath in sorted(non_pie_allowed):
        violations.append(
            "{}: named as allowed to be position-dependent, but no such ELF file".format(relpath)
        )
    return table, violations


def _spare_program_header(phdrs):
    """Index of a program header the loader does not need: a PT_NULL, or the PT_NOTE that
    duplicates PT_GNU_PROPERTY (ld emits both for .note.gnu.property; the kernel and
    glibc >= 2.32 read the properties through PT_GNU_PROPERTY and skip that PT_NOTE)."""
    for index, phdr in enumerate(phdrs):
        if phdr["type"] == PT_NULL:
            return index
    where = ("offset", "vaddr", "filesz", "memsz")
    properties = [tuple(p[key] for key in where) for p in phdrs if p["type"] == PT_GNU_PROPERTY]
    for index, phdr in enumerate(phdrs):
        if phdr["type"] == PT_NOTE and tuple(phdr[key] for key in where) in properties:
            return index
    return None


def restore_gnu_stack(path):
    """Give an executable that lost its PT_GNU_STACK (llvm-bolt -use-gnu-stack turns it
    into the LOAD segment of its new code) a non-executable one again, in a spare program
    header: the table cannot grow in place (.interp follows it). Keeps the file's mtime,
    so make does not see the BOLTed binary as changed. Returns what it did, one line."""
    elf = read_elf(path)
    if any(p["type"] == PT_GNU_STACK for p in elf["phdrs"]):
        return "{}: has PT_GNU_STACK, unchanged".format(path)
    index = _spare_program_header(elf["phdrs"])
    if index is None:
        raise ElfError("{}: no PT_GNU_STACK and no spare program header to put one in".format(path))
    with open(path, "rb") as handle:
        ident = handle.read(16)
    layout = _Layout(ident[4], "<" if ident[5] == 1 else ">")
    with open(path, "rb") as handle:
        handle.seek(16)
        header = layout.header.unpack(handle.read(layout.header.size))
    e_phoff, e_phentsize = header[4], header[8]
    align = 16
    if layout.wide:
        entry = layout.phdr_struct.pack(PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 0, 0, align)
    else:
        entry = layout.phdr_struct.pack(PT_GNU_STACK, 0, 0, 0, 0, 0, PF_R | PF_W, align)
    before = os.stat(path)
    with open(path, "r+b") as handle:
        handle.seek(e_phoff + index * e_phentsize)
        handle.write(entry)
    os.utime(path, (before.st_atime, before.st_mtime))
    replaced = "PT_NULL" if elf["phdrs"][index]["type"] == PT_NULL else "PT_NOTE duplicating PT_GNU_PROPERTY"
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
