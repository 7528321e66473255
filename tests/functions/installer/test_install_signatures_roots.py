"""install.sh with a pinned key in a fresh Debian 12 root, as a user runs it
(`curl -fsSL <base>/install.sh | bash -s -- ...` as root, so the .deb goes through apt), against a
signed store served over loopback HTTP: a good store installs; a tampered artifact, SHA256SUMS,
SHA256SUMS.sig or versions.json, or a wrong --pubkey, is refused and nothing is installed.

One root for the module (a copy of the session's pristine root, with curl and openssl added
once); each test gets its own store, and a test that installs removes the package again."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from buildfarm import roots
from buildfarm.catalog.install_script import render_installer

from .signed_store import VERSION, Key, SignedStore, make_signed_store
from .test_install_script import _tarball

pytestmark = [pytest.mark.root, pytest.mark.xdist_group("installer-signatures-root")]

PACKAGE = f"python-{VERSION}"
PYTHON = f"/opt/python/{VERSION}/bin/python3"


@pytest.fixture(scope="module")
def root(pristine_roots, tmp_path_factory) -> Iterator[Path]:
    path = roots.copy_root(pristine_roots("bookworm"), tmp_path_factory.mktemp("root") / "bookworm")
    roots.apt_install(path, ["curl", "ca-certificates", "openssl"])
    with roots.mounted(path):
        yield path
    roots.remove_root(path)


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[Key, Key]:
    base = tmp_path_factory.mktemp("keys")
    return Key.create(base / "farm"), Key.create(base / "stranger")


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> bytes:
    """A tiny .deb in the farm's shape: /opt/python/<version>/bin/python3, no dependencies."""
    tree = tmp_path_factory.mktemp("deb") / "tree"
    (tree / "DEBIAN").mkdir(parents=True)
    control = {
        "Package": PACKAGE,
        "Version": f"{VERSION}-2",
        "Architecture": "amd64",
        "Maintainer": "farm <farm@example.org>",
        "Description": f"Python {VERSION} (test)",
    }
    (tree / "DEBIAN" / "control").write_text("".join(f"{k}: {v}\n" for k, v in control.items()))
    python = tree / PYTHON.lstrip("/")
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\necho Python {VERSION}\n")
    python.chmod(0o755)
    out = tree.parent / "python.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(tree), str(out)], check=True, capture_output=True
    )
    return out.read_bytes()


@pytest.fixture
def signed(tmp_path, keys, deb, http_dir_server) -> tuple[SignedStore, str]:
    """A signed store with the .deb and a tarball, served over HTTP, with an install.sh that
    has the farm's key baked in (as publishing writes it); (store, base URL)."""
    names = {"deb": f"{PACKAGE}_{VERSION}-2_amd64.deb", "tarball": f"python-{VERSION}.tar.gz"}
    store = make_signed_store(
        tmp_path / "store",
        keys[0],
        {"deb": (names["deb"], deb), "tarball": (names["tarball"], _tarball(VERSION))},
    )
    base = http_dir_server(store.root)
    (store.root / "install.sh").write_bytes(render_installer(base, [store.key.fingerprint]))
    return store, base


def install_sh(root: Path, base: str, *args: str) -> subprocess.CompletedProcess:
    """`curl -fsSL <base>/install.sh | bash -s -- ARGS` inside root, as root (values as argv)."""
    script = 'base="$1"; shift; curl -fsSL "$base/install.sh" | bash -s -- "$@"'
    return roots.run_in_root(root, ["bash", "-c", script, "install", base, *args], check=False)


def installed_version(root: Path) -> str | None:
    query = roots.run_in_root(root, ["dpkg-query", "-W", "-f=${Version}", PACKAGE], check=False)
    return query.stdout.strip() if query.returncode == 0 else None


@pytest.fixture
def removes_the_package(root) -> Iterator[None]:
    yield
    roots.run_in_root(root, ["apt-get", "purge", "-y", "-qq", PACKAGE], roots.APT_ENV, check=False)


def _pubkey_in_root(root: Path, key: Key) -> str:
    (root / "tmp" / "pinned.pub").write_bytes(key.public.read_bytes())
    return "/tmp/pinned.pub"


def test_a_good_store_installs_with_the_published_key(root, signed, removes_the_package) -> None:
    store, base = signed
    result = install_sh(root, base, "--version", VERSION)
    assert result.returncode == 0, result.stdout
    assert f"signature verified: versions.json (key {store.key.fingerprint})" in result.stdout
    assert (
        "SHA256SUMS (key " in result.stdout
        and "against versions.json and the signed SHA256SUMS" in result.stdout
    )
    assert installed_version(root) == f"{VERSION}-2"
    assert roots.run_in_root(root, [PYTHON]).stdout.strip() == f"Python {VERSION}"


def test_a_key_pinned_by_fingerprint_installs(root, signed, removes_the_package) -> None:
    store, base = signed
    (store.root / "install.sh").write_bytes(render_installer(base))  # nothing baked in
    result = install_sh(root, base, "--pubkey", store.key.fingerprint, "--version", VERSION)
    assert result.returncode == 0, result.stdout
    assert f"signature verified: versions.json (key {store.key.fingerprint})" in result.stdout
    assert installed_version(root) == f"{VERSION}-2"


def _garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


TAMPERED = {
    "the .deb": (lambda store: _garble(store.artifact("deb")), "checksum mismatch for"),
    "SHA256SUMS": (lambda store: _garble(store.sums), "/2/SHA256SUMS is not signed by the pinned key"),
    "SHA256SUMS.sig": (
        lambda store: _garble(store.sums.with_name("SHA256SUMS.sig")),
        "/2/SHA256SUMS is not signed by the pinned key",
    ),
    "versions.json": (lambda store: _garble(store.versions), "versions.json is not signed by the pinned key"),
}


@pytest.mark.parametrize("tampered", sorted(TAMPERED))
def test_a_tampered_store_is_refused_and_nothing_installed(root, signed, tampered) -> None:
    store, base = signed
    tamper, message = TAMPERED[tampered]
    tamper(store)
    result = install_sh(root, base, "--version", VERSION)
    assert result.returncode != 0
    errors = [line for line in result.stdout.splitlines() if line.startswith("install.sh: error: ")]
    assert len(errors) == 1 and message in errors[0], result.stdout
    assert installed_version(root) is None
    assert roots.run_in_root(root, ["test", "-e", "/opt/python"], check=False).returncode != 0


def test_a_wrong_pubkey_is_refused(root, signed, keys) -> None:
    _, base = signed
    result = install_sh(root, base, "--pubkey", _pubkey_in_root(root, keys[1]), "--version", VERSION)
    assert result.returncode != 0
    assert f"versions.json is not signed by the pinned key ({keys[1].fingerprint})" in result.stdout
    assert installed_version(root) is None
