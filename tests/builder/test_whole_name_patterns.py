"""Names and tool output the builder parses are matched whole, with ASCII digits only."""

from __future__ import annotations

import pytest
from driver import hardening
from sbom_facts.toolchain import parse_version


@pytest.mark.parametrize(
    ("relpath", "required"),
    [
        ("lib/libpython3.13.so.1.0", True),
        ("lib/libpython3.7m.so.1.0", True),
        ("lib/libpython3.13t.so", True),
        ("lib/libpython3.so", False),
        ("lib/libpython3.13.so.1.0-gdb.py", False),
        ("lib/libpython3.\N{ARABIC-INDIC DIGIT THREE}.so.1.0", False),
    ],
)
def test_libpython_is_its_whole_file_name(relpath: str, required: bool) -> None:
    assert hardening.stack_protector_required(relpath, "shared object") is required


@pytest.mark.parametrize(
    ("role", "line", "version"),
    [
        ("compiler", "gcc (GCC) 12.2.0", "12.2.0"),
        ("compiler", "gcc (GCC) 12.2.0x", None),
        ("compiler", "gcc (GCC) 12.\N{ARABIC-INDIC DIGIT THREE}", None),
        ("linker", "GNU ld version 2.30-123.el8", "2.30"),
        ("linker", "GNU ld (GNU Binutils) 2.40beta", None),
    ],
)
def test_tool_versions_end_where_the_line_says(role: str, line: str, version: str | None) -> None:
    assert parse_version(role, line + "\n") == version
