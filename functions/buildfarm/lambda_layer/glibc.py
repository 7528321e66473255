"""Whether a wheel built on this machine runs on the target's glibc: its shared objects' needed
symbol versions (GLIBC_2.N, from their .gnu.version_r section as `readelf --version-info`
prints it) must be no newer than the target's glibc. A linux_<arch> tag says nothing of the
glibc it was built against; an extension compiled on a newer glibc than Lambda's can need
symbols (memfd_create, arc4random, the 2.34 pthread_*) that Lambda's lacks at import."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from buildfarm.lambda_layer.tags import Target

ELF_MAGIC = b"\x7fELF"
# A needed version in readelf's "Version needs section": "  0x0020:   Name: GLIBC_2.34  Flags: ...".
NEEDED_GLIBC = re.compile(r"\bName: GLIBC_([0-9]+(?:\.[0-9]+)+)\b")


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def host_glibc() -> str:
    """This machine's glibc version ("2.36"), "" if it has none (or will not say)."""
    try:
        name, _, version = os.confstr("CS_GNU_LIBC_VERSION").partition(" ")  # "glibc 2.36"
    except (ValueError, OSError):
        return ""
    return version if name == "glibc" else ""


def needed_glibc(shared_object: Path) -> str | None:
    """The newest GLIBC_ symbol version `shared_object` needs ("2.34"), None if it needs none.
    OSError if readelf (binutils) cannot read it."""
    readelf = shutil.which("readelf")
    if readelf is None:
        raise OSError("readelf (binutils) is not installed")
    run = subprocess.run(
        [readelf, "--version-info", "--wide", str(shared_object)], capture_output=True, text=True, check=False
    )
    if run.returncode != 0:
        raise OSError(run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit {run.returncode}")
    versions = NEEDED_GLIBC.findall(run.stdout)
    return max(versions, key=version_tuple) if versions else None


def glibc_problem(wheel: Path, target: Target) -> str | None:
    """Why the wheel built here cannot run on the target's glibc (its first shared object that
    needs a newer GLIBC_ version, named with both versions and this machine's), else None."""
    with tempfile.TemporaryDirectory(prefix="glibc-check-") as scratch, zipfile.ZipFile(wheel) as archive:
        for index, member in enumerate(archive.infolist()):
            if member.is_dir():
                continue
            with archive.open(member) as stream:
                if stream.read(len(ELF_MAGIC)) != ELF_MAGIC:
                    continue
            extracted = Path(scratch) / str(index)
            extracted.write_bytes(archive.read(member))
            try:
                needed = needed_glibc(extracted)
            except OSError as error:
                return f"cannot read the glibc symbol versions {member.filename} needs: {error}"
            if needed and version_tuple(needed) > version_tuple(target.glibc):
                host = host_glibc() or "unknown"
                return (
                    f"{member.filename} needs GLIBC_{needed} (compiled here against glibc {host}), "
                    f"newer than the target's glibc {target.glibc}"
                )
    return None
