"""One-package runtime definitions written where a test wants its definitions directory: "svc"
2.1.0 for debian-12 x86_64 (the planner, the local farm and the cloud workflow tests; a
stand-in hash), and "tiny" (six with its real hash, for the docker runtime jobs that install it).
`from runtime_definitions import ...`: pytest puts tests/ on sys.path."""

from __future__ import annotations

from pathlib import Path

SVC_TOML = """name = "svc"
version = "2.1.0"
python = "3.13"
requirements = "svc/requirements.txt"
prefix = "/opt/runtimes/svc/2.1.0"
platforms = ["debian-12"]
arches = ["x86_64"]
"""
LOCKED_HASH = "--hash=sha256:" + "ab" * 32


def write_svc_definitions(directory: Path, requirement: str = "six==1.17.0") -> Path:
    """directory/svc.toml and its requirements (one hash-pinned line); returns directory."""
    (directory / "svc").mkdir(parents=True)
    (directory / "svc" / "requirements.txt").write_text(f"{requirement} {LOCKED_HASH}\n")
    (directory / "svc.toml").write_text(SVC_TOML)
    return directory


SIX_LOCKED = "six==1.17.0 --hash=sha256:4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274\n"


def write_tiny_definitions(directory: Path, version: str, platform: str, arch: str) -> Path:
    """directory/tiny.toml (runtime "tiny" `version` of Python 3.13 for platform/arch) and its
    lock (six 1.17.0 with its real hash); returns directory."""
    (directory / "tiny").mkdir(parents=True)
    (directory / "tiny" / "requirements.txt").write_text(SIX_LOCKED)
    (directory / "tiny.toml").write_text(
        f'name = "tiny"\nversion = "{version}"\npython = "3.13"\nrequirements = "tiny/requirements.txt"\n'
        f'prefix = "/opt/runtimes/tiny/{version}"\nplatforms = ["{platform}"]\narches = ["{arch}"]\n'
    )
    return directory
