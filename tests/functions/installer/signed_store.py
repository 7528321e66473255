"""A store signed the way the publish side signs (COMMON signing contract, issue 15), made with
buildfarm.attest.signing: the build's SHA256SUMS and versions.json with detached DER ECDSA
signatures, keys/<hex>.pub and keys/keys.json. The installer tests (on this host and in
debootstrap roots) and the status tests use it, so they do not wait for a real publish."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from buildfarm.attest.signing import KeyFileSigner, fingerprint, init_key, sign_file

VERSION = "3.13.5"
PLATFORM = "debian-12"
ARCH = "x86_64"
BUILD = 2


@dataclass
class Key:
    """A signing key: its private key file (outside the store), PEM public key, fingerprint."""

    private: Path
    public: Path
    fingerprint: str

    @property
    def hex(self) -> str:
        return self.fingerprint.removeprefix("SHA256:")

    @classmethod
    def create(cls, directory: Path) -> Key:
        directory.mkdir(parents=True, exist_ok=True)
        private = directory / "signing-key.pem"
        init_key(private)
        public = directory / "farm.pub"
        public.write_bytes(KeyFileSigner(private).public_key_pem())
        return cls(private, public, fingerprint(public.read_bytes()))

    def sign(self, path: Path) -> None:
        """(Re)write path's detached signature with this key."""
        path.with_name(path.name + ".sig").unlink(missing_ok=True)
        sign_file(KeyFileSigner(self.private), path)


@dataclass
class SignedStore:
    root: Path
    key: Key

    @property
    def build_dir(self) -> Path:
        return self.root / "builds" / VERSION / PLATFORM / ARCH / str(BUILD)

    @property
    def versions(self) -> Path:
        return self.root / "versions.json"

    @property
    def sums(self) -> Path:
        return self.build_dir / "SHA256SUMS"

    def artifact(self, kind: str) -> Path:
        entry = self.catalog()["builds"][VERSION][PLATFORM][ARCH]
        return self.root / next(a["key"] for a in entry["artifacts"] if a["type"] == kind)

    def catalog(self) -> dict:
        return json.loads(self.versions.read_text())

    def write_catalog(self, document: dict) -> None:
        self.versions.write_text(json.dumps(document, indent=1))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_sums(directory: Path, names: list[str]) -> Path:
    """SHA256SUMS in sha256sum's text format, sorted by name."""
    lines = [f"{_sha256((directory / name).read_bytes())}  {name}\n" for name in sorted(names)]
    (directory / "SHA256SUMS").write_text("".join(lines))
    return directory / "SHA256SUMS"


def publish_keys(root: Path, current: Key, *older: Key) -> None:
    """keys/<hex>.pub for each key and keys/keys.json naming the current one."""
    (root / "keys").mkdir(parents=True, exist_ok=True)
    listed = []
    for key in (*older, current):
        (root / "keys" / f"{key.hex}.pub").write_bytes(key.public.read_bytes())
        listed.append({"fingerprint": key.fingerprint, "file": f"keys/{key.hex}.pub"})
    index = {"schema_version": 1, "current": current.fingerprint, "keys": listed}
    (root / "keys" / "keys.json").write_text(json.dumps(index, indent=1))


def make_signed_store(root: Path, key: Key, artifacts: dict[str, tuple[str, bytes]]) -> SignedStore:
    """One published, signed build of VERSION for PLATFORM/ARCH: artifacts is
    {type: (file name, content)}, e.g. {"tarball": ("python-....tar.gz", data)}."""
    store = SignedStore(root, key)
    store.build_dir.mkdir(parents=True)
    entries = []
    for kind, (name, data) in artifacts.items():
        (store.build_dir / name).write_bytes(data)
        key_name = (store.build_dir / name).relative_to(root).as_posix()
        entries.append({"type": kind, "key": key_name, "sha256": _sha256(data), "size": len(data)})
    manifest = {"version": VERSION, "platform": PLATFORM, "arch": ARCH, "build": BUILD, "artifacts": entries}
    (store.build_dir / "manifest.json").write_text(json.dumps(manifest))
    key.sign(write_sums(store.build_dir, [*(name for name, _ in artifacts.values()), "manifest.json"]))
    cell = {
        "build": BUILD,
        "published": "2026-11-22T10:00:00Z",
        "manifest": (store.build_dir / "manifest.json").relative_to(root).as_posix(),
        "artifacts": entries,
    }
    store.write_catalog(
        {
            "schema_version": 1,
            "updated": "2026-11-22T10:00:00Z",
            "python_versions": [VERSION],
            "builds": {VERSION: {PLATFORM: {ARCH: cell}}},
        }
    )
    key.sign(store.versions)
    publish_keys(root, key)
    return store


def add_build(
    store: SignedStore, build: int, artifacts: dict[str, tuple[str, bytes]], key: Key | None = None
) -> Path:
    """Another build of the cell, beside the one versions.json lists, as the farm leaves an
    earlier build once a newer one is published: its artifacts, manifest.json and SHA256SUMS,
    signed by key (the store's by default); versions.json is left as it is. Its directory."""
    directory = store.build_dir.with_name(str(build))
    directory.mkdir(parents=True)
    entries = []
    for kind, (name, data) in artifacts.items():
        (directory / name).write_bytes(data)
        key_name = (directory / name).relative_to(store.root).as_posix()
        entries.append({"type": kind, "key": key_name, "sha256": _sha256(data), "size": len(data)})
    manifest = {"version": VERSION, "platform": PLATFORM, "arch": ARCH, "build": build, "artifacts": entries}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    names = [*(name for name, _ in artifacts.values()), "manifest.json"]
    (key or store.key).sign(write_sums(directory, names))
    return directory
