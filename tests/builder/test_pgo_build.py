"""The default pgo+lto configuration (short PGO task) of 3.13.5 for debian-12, built on the
host: complete, trained, BOLT-optimized and hardened. The build is the `pgo_build` fixture
(tests/conftest.py: taken from the farm store's killed run when the session runs it, else built
alone)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile

import pytest

from buildfarm.models import Manifest

pytestmark = [pytest.mark.build, pytest.mark.farm]


def test_pgo_lto_build_is_complete_and_runs(pgo_build, fast_build_env, tmp_path):
    """The default configuration: --enable-optimizations --with-lto, trained and working,
    and BOLT-optimized (debian-12 names bolt-16 in the registry)."""
    manifest = json.loads((pgo_build.dir / "manifest.json").read_text())
    assert Manifest.model_validate(manifest).spec.optimization == "pgo+lto"
    assert "--enable-optimizations" in manifest["configure_args"]
    assert "--with-lto" in manifest["configure_args"]
    assert "--enable-bolt" in manifest["configure_args"]
    assert manifest["modules"]["missing"] == {}
    # Trained and self-tested as the tests' environment says (conftest.fast_build_env), and so recorded.
    recorded = ("BUILDFARM_PROFILE_TASK", "BUILDFARM_SELFTEST_TESTS")
    assert manifest["driver_options"] == {name: os.environ[name] for name in recorded}
    assert "phase make done in" in pgo_build.output
    assert "buildfarm: make: BOLT instrumented run and optimization done" in pgo_build.output
    # The BOLT run saw the interpreter's code: the last count is of the applied profile.
    profiled = re.findall(r"BOLT-INFO: (\d+) out of \d+ functions .* non-empty execution", pgo_build.output)
    assert profiled and int(profiled[-1]) > 1000, profiled
    with tarfile.open(pgo_build.dir / "python-3.13.5-debian-12-x86_64.tar.gz") as archive:
        archive.extractall(tmp_path / "any where", filter="tar")
    interpreter = tmp_path / "any where" / "python" / "bin" / "python3.13"
    headers = subprocess.run(
        ["readelf", "-hS", interpreter], capture_output=True, text=True, check=True
    ).stdout
    # What ships is llvm-bolt's output (its note survives strip), linked position-dependent.
    assert ".note.bolt_info" in headers and re.search(r"Type:\s+EXEC", headers)
    # --enable-bolt links everything with -Wl,--emit-relocs: no shipped library or extension
    # module keeps a symbol table or the static relocations (.rela.text, ...) after strip.
    libraries = sorted((tmp_path / "any where" / "python").rglob("*.so*"))
    assert len(libraries) > 20
    elf = [path for path in libraries if not path.is_symlink() and path.read_bytes()[:4] == b"\x7fELF"]
    for library in [*elf, interpreter]:
        table = subprocess.run(["readelf", "-SW", library], capture_output=True, text=True, check=True).stdout
        assert ".symtab" not in table and not re.search(r"\.rela?\.(?!dyn|plt)\S*\s+RELA?\s", table), library
    python = tmp_path / "any where" / "python" / "bin" / "python3"
    out = subprocess.run(
        [
            python,
            "-c",
            "import sysconfig as s, ssl, sqlite3; "
            "print(s.get_config_var('CONFIG_ARGS'), s.get_config_var('PY_CFLAGS_NODIST'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--enable-optimizations" in out and "-flto" in out


def test_pgo_lto_build_is_hardened(pgo_build, tmp_path):
    """The BOLTed interpreter keeps a non-executable PT_GNU_STACK (llvm-bolt's
    -use-gnu-stack takes that header for its code; the driver gives it a spare one back),
    full RELRO everywhere; the self-test's table says so and its position-dependence is
    recorded, not hidden. Threads get no executable stack."""
    manifest = json.loads((pgo_build.dir / "manifest.json").read_text())
    table = manifest["hardening"]
    assert table and not [path for path, row in table.items() if row["failures"]]
    # Both PGO stages' compile commands carry the hardening flags (3.13.15: 559).
    compiles = re.search(r"; ([0-9]+) compiles with a stack protector", manifest["selftest"]["hardening"])
    assert compiles and int(compiles.group(1)) >= 400, manifest["selftest"]["hardening"]
    interpreter_row = table["bin/python3.13"]
    assert interpreter_row["nx_stack"] == "yes" and interpreter_row["relro"] == "full"
    assert interpreter_row["pie"].startswith("no (position-dependent: BOLT")
    assert "PT_GNU_STACK back into the BOLTed binaries done" in pgo_build.output
    with tarfile.open(pgo_build.dir / "python-3.13.5-debian-12-x86_64.tar.gz") as archive:
        archive.extractall(tmp_path, filter="tar")
    interpreter = tmp_path / "python" / "bin" / "python3.13"
    headers = subprocess.run(["readelf", "-lW", interpreter], capture_output=True, text=True, check=True)
    assert re.search(r"GNU_STACK\s.*\sRW\s", headers.stdout), headers.stdout
    maps = subprocess.run([interpreter, "-c", THREAD_MAPS], capture_output=True, text=True, check=True).stdout
    assert "rwxp" not in maps, maps


# From a thread (its stack is what glibc makes executable without PT_GNU_STACK).
THREAD_MAPS = """
import threading
seen = []
thread = threading.Thread(target=lambda: seen.append(open("/proc/self/maps").read()))
thread.start(); thread.join()
print(seen[0])
"""
