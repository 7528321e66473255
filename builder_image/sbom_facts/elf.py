"""The one ELF reader of builder_image/: struct over the file's bytes (no readelf parsing, no
pyelftools). The driver's hardening check (driver/hardening.py: program headers, dynamic
tags, imported functions) and the SBOM's linked packages (linked.py: DT_NEEDED, DT_SONAME)
both read ELF files through it.

Standard library only, Python 3.6+ (no dataclasses, no f-strings, no annotations): unlike
the rest of this package, which only the built python (3.9+) runs, the driver imports this
module, on the oldest system python of a platform (`from sbom_facts import elf`, with
builder_image/ on sys.path). It lives here, not in driver/, because the publish side's
Lambda bundle carries sbom_facts/ and not driver/ (infra/functions.py).
"""

import os
import stat
import struct

ELF_MAGIC = b"\x7fELF"
ET_REL, ET_EXEC, ET_DYN = 1, 2, 3
PT_NULL, PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE = 0, 1, 2, 3, 4
PT_GNU_STACK, PT_GNU_RELRO, PT_GNU_PROPERTY = 0x6474E551, 0x6474E552, 0x6474E553
PF_X, PF_W, PF_R = 1, 2, 4
SHT_DYNAMIC, SHT_DYNSYM = 6, 11
SHN_UNDEF = 0
DT_NULL, DT_NEEDED, DT_SONAME = 0, 1, 14
DT_BIND_NOW, DT_FLAGS, DT_FLAGS_1 = 24, 30, 0x6FFFFFFB
DF_BIND_NOW = 0x8
DF_1_NOW, DF_1_PIE = 0x1, 0x08000000
STT_NOTYPE, STT_FUNC, STT_GNU_IFUNC = 0, 2, 10
# Section header fields, in order (as unpacked: a tuple).
SH_NAME, SH_TYPE, SH_FLAGS, SH_ADDR, SH_OFFSET, SH_SIZE, SH_LINK, SH_INFO, SH_ALIGN, SH_ENTSIZE = range(10)


class ElfError(ValueError):
    """A file that starts like ELF but cannot be read as one."""


class Layout:
    """struct formats of one ELF class (wide: 64-bit) and byte order ("<" or ">")."""

    def __init__(self, wide, byte_order):
        self.wide = wide
        self.byte_order = byte_order
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

    def pack_phdr(self, p_type, flags, align):
        """A program header of p_type with flags and align, every address and size 0."""
        if self.wide:
            return self.phdr_struct.pack(p_type, flags, 0, 0, 0, 0, 0, align)
        return self.phdr_struct.pack(p_type, 0, 0, 0, 0, 0, flags, align)

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


def _string(data, offset):
    end = data.find(b"\0", offset)
    if offset >= len(data) or end < 0:
        raise ElfError("string table entry out of the file (offset {})".format(offset))
    return data[offset:end].decode("ascii", "replace")


class ElfFile:
    """One ELF image: its header fields (type, machine, wide), program headers (dicts: type,
    flags, offset, vaddr, filesz, memsz) and section headers (tuples, SH_* fields). ElfError
    for bytes that are not ELF or are cut short."""

    def __init__(self, data):
        if data[:4] != ELF_MAGIC or len(data) < 16:
            raise ElfError("not an ELF file")
        elf_class, byte_order = data[4], data[5]
        if elf_class not in (1, 2) or byte_order not in (1, 2):
            raise ElfError("unknown ELF class {} / data encoding {}".format(elf_class, byte_order))
        self.data = data
        self.layout = Layout(elf_class == 2, "<" if byte_order == 1 else ">")
        self.wide = self.layout.wide
        header = _unpack(self.layout.header, data, 16, "ELF header")
        self.type, self.machine, self.phoff, shoff = header[0], header[1], header[4], header[5]
        self.phentsize, phnum, shentsize, shnum = header[8], header[9], header[10], header[11]
        self.phdrs = []
        for index in range(phnum):
            offset = self.phoff + index * self.phentsize
            _unpack(self.layout.phdr_struct, data, offset, "program header table")
            self.phdrs.append(self.layout.phdr(data, offset))
        self.sections = [
            _unpack(self.layout.shdr, data, shoff + index * shentsize, "section header table")
            for index in range(shnum if shoff else 0)
        ]

    def _entries(self, start, size):
        """The (tag, value) pairs of a dynamic array, up to DT_NULL."""
        step = self.layout.dyn.size
        for offset in range(start, start + size - step + 1, step):
            tag, value = _unpack(self.layout.dyn, self.data, offset, "dynamic section")
            if tag == DT_NULL:
                return
            yield tag, value

    def _section(self, section_type):
        return next((s for s in self.sections if s[SH_TYPE] == section_type), None)

    def _linked_strings(self, section):
        """(offset, size) of the string table a section links to."""
        if section[SH_LINK] >= len(self.sections):
            raise ElfError("section type {} links no string table".format(section[SH_TYPE]))
        strings = self.sections[section[SH_LINK]]
        return strings[SH_OFFSET], strings[SH_SIZE]

    def dynamic_tags(self):
        """{tag: [values]} of the PT_DYNAMIC segment, or None without one (static)."""
        dynamic = [p for p in self.phdrs if p["type"] == PT_DYNAMIC]
        if not dynamic:
            return None
        tags = {}
        for tag, value in self._entries(dynamic[0]["offset"], dynamic[0]["filesz"]):
            tags.setdefault(tag, []).append(value)
        return tags

    def needed(self):
        """(DT_NEEDED sonames, DT_SONAME or None) of the dynamic section, or None without one."""
        dynamic = self._section(SHT_DYNAMIC)
        if dynamic is None:
            return None
        strings, _size = self._linked_strings(dynamic)
        needed, soname = [], None
        for tag, value in self._entries(dynamic[SH_OFFSET], dynamic[SH_SIZE]):
            if tag == DT_NEEDED:
                needed.append(_string(self.data, strings + value))
            elif tag == DT_SONAME:
                soname = _string(self.data, strings + value)
        return tuple(needed), soname

    def imported_functions(self):
        """Undefined FUNC/IFUNC/NOTYPE symbols of .dynsym (as hardening-check counts them), or
        None without a dynamic symbol table."""
        dynsym = self._section(SHT_DYNSYM)
        if dynsym is None:
            return None
        strings_offset, strings_size = self._linked_strings(dynsym)
        strings = self.data[strings_offset : strings_offset + strings_size]
        entsize = dynsym[SH_ENTSIZE] or self.layout.sym.size
        start, size = dynsym[SH_OFFSET], dynsym[SH_SIZE]
        imports = set()
        for entry in range(start, start + size - entsize + 1, entsize):
            _unpack(self.layout.sym, self.data, entry, "dynamic symbol table")
            name_offset, symbol_type, shndx = self.layout.symbol(self.data, entry)
            if (
                shndx != SHN_UNDEF
                or symbol_type not in (STT_FUNC, STT_GNU_IFUNC, STT_NOTYPE)
                or not name_offset
            ):
                continue
            end = strings.find(b"\0", name_offset)
            imports.add(strings[name_offset : end if end >= 0 else None].decode("ascii", "replace"))
        return imports


def read_file(path):
    """The ElfFile of the file at path."""
    with open(path, "rb") as handle:
        return ElfFile(handle.read())


def machine_of(head):
    """(e_machine, wide) from a file's first 20 bytes, or None if they are not ELF's."""
    if head[:4] != ELF_MAGIC or len(head) < 20 or head[5] not in (1, 2):
        return None
    return struct.unpack_from("<H" if head[5] == 1 else ">H", head, 18)[0], head[4] == 2


def is_elf(path):
    with open(path, "rb") as handle:
        return handle.read(4) == ELF_MAGIC


def elf_files(root):
    """Relative paths of the regular ELF files under root, sorted (symbolic links are left
    out, and not followed: each file is read once, under its real name)."""
    found = []
    for directory, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in filenames:
            path = os.path.join(directory, filename)
            if stat.S_ISREG(os.lstat(path).st_mode) and is_elf(path):
                found.append(os.path.relpath(path, root))
    return sorted(found)
