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

from .signed_store import VERSION, Key, SignedStore, add_build, make_signed_store, write_sums
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


def _make_deb(directory: Path, revision: int, says: str) -> bytes:
    """A tiny .deb in the farm's shape, version <VERSION>-<revision> (the build), whose
    /opt/python/<version>/bin/python3 prints says; no dependencies."""
    tree = directory / "tree"
    (tree / "DEBIAN").mkdir(parents=True)
    control = {
        "Package": PACKAGE,
        "Version": f"{VERSION}-{revision}",
        "Architecture": "amd64",
        "Maintainer": "farm <farm@example.org>",
        "Description": f"Python {VERSION} (test)",
    }
    (tree / "DEBIAN" / "control").write_text("".join(f"{k}: {v}\n" for k, v in control.items()))
    python = tree / PYTHON.lstrip("/")
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\necho {says}\n")
    python.chmod(0o755)
    out = directory / "python.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(tree), str(out)], check=True, capture_output=True
    )
    return out.read_bytes()


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> bytes:
    """The .deb of build 2, the one versions.json lists."""
    return _make_deb(tmp_path_factory.mktemp("deb"), 2, f"Python {VERSION}")


@pytest.fixture(scope="module")
def deb_1(tmp_path_factory) -> bytes:
    """The .deb of build 1, an earlier build of the same cell (--build 1)."""
    return _make_deb(tmp_path_factory.mktemp("deb-1"), 1, f"Python {VERSION} build 1")


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


# -- --build N: an earlier build of the version, through apt ------------------------------------

DEB_1 = f"python-{VERSION}_1_amd64.deb"  # as the builder names it (deb_name)


def _add_build_1(store: SignedStore, deb_1: bytes) -> Path:
    return add_build(
        store, 1, {"deb": (DEB_1, deb_1), "tarball": (f"python-{VERSION}.tar.gz", _tarball(VERSION))}
    )


def test_build_1_rolls_the_package_back_to_build_1(root, signed, deb_1, removes_the_package) -> None:
    """Build 2 installed, then --build 1: apt replaces it with build 1's .deb (a downgrade)."""
    store, base = signed
    _add_build_1(store, deb_1)
    newest = install_sh(root, base, "--version", VERSION)
    assert newest.returncode == 0, newest.stdout
    assert installed_version(root) == f"{VERSION}-2"
    rolled = install_sh(root, base, "--version", VERSION, "--build", "1")
    assert rolled.returncode == 0, rolled.stdout
    sums = f"builds/{VERSION}/debian-12/x86_64/1/SHA256SUMS"
    assert f"signature verified: {sums} (key {store.key.fingerprint})" in rolled.stdout
    assert f"sha256 verified (against the signed {sums})" in rolled.stdout
    assert f"installed Python {VERSION} build 1: {PYTHON}" in rolled.stdout
    assert installed_version(root) == f"{VERSION}-1"
    assert roots.run_in_root(root, [PYTHON]).stdout.strip() == f"Python {VERSION} build 1"


def test_a_build_1_whose_sha256sums_was_tampered_is_refused_and_build_2_stays(
    root, signed, deb_1, removes_the_package
) -> None:
    store, base = signed
    directory = _add_build_1(store, deb_1)
    assert install_sh(root, base, "--version", VERSION).returncode == 0
    # Another .deb in build 1's place, and SHA256SUMS rewritten with its sha256 (not re-signed).
    (directory / DEB_1).write_bytes(store.artifact("deb").read_bytes())
    write_sums(directory, [DEB_1, f"python-{VERSION}.tar.gz", "manifest.json"])
    result = install_sh(root, base, "--version", VERSION, "--build", "1")
    assert result.returncode != 0
    errors = [line for line in result.stdout.splitlines() if line.startswith("install.sh: error: ")]
    assert errors == [
        f"install.sh: error: builds/{VERSION}/debian-12/x86_64/1/SHA256SUMS is not signed by the pinned key "
        f"({store.key.fingerprint}): refusing it; nothing installed"
    ], result.stdout
    assert "downloading" not in result.stdout
    assert installed_version(root) == f"{VERSION}-2"
