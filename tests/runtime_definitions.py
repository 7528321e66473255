"""A one-package runtime definition, "svc" 2.1.0 for debian-12 x86_64, written where a test
wants its definitions directory (the planner, the local farm and the cloud workflow tests).
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
