"""install.sh --build N, run for real as test_install_signatures.py runs it (bash, awk, curl over
file://, the real openssl) against a signed store with two published builds of one cell:
versions.json lists build 2, and build 1's directory still holds its files, SHA256SUMS and
signature, as the farm leaves it. --build 1 installs build 1, its sha256 taken from its own
signed SHA256SUMS; a build that is not published or does not verify, and a --build that is not
a build number or comes without an exact version, are one line and nothing installed. The
.deb through apt, in a Debian root: test_install_signatures_roots.py."""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from buildfarm.catalog.install_script import render_installer

from .signed_store import VERSION, Key, SignedStore, add_build, make_signed_store, write_sums
from .test_install_script import run_installer

TARBALL = f"python-{VERSION}-debian-12-x86_64.tar.gz"
CELL = f"builds/{VERSION}/debian-12/x86_64"


def _tarball(build: int) -> bytes:
    """A tiny tarball in the farm's shape whose python3 and one file say which build it is; the
    same bytes on every call (gzip's header time 0), so a test can find its sha256 again."""
    files = {
        "python/bin/python3": (f"#!/bin/sh\necho Python {VERSION} build {build}\n".encode(), 0o755),
        f"python/BUILD-{build}": (f"build {build}\n".encode(), 0o644),
    }
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def signed(tmp_path, keys) -> SignedStore:
    """Builds 1 and 2 of the cell, versions.json listing build 2."""
    store = make_signed_store(tmp_path / "store", keys[0], {"tarball": (TARBALL, _tarball(2))})
    add_build(store, 1, {"tarball": (TARBALL, _tarball(1))})
    return store


def _error_line(stderr: str) -> str:
    """The one error line a refusal prints (and there is exactly one)."""
    errors = [line for line in stderr.splitlines() if line.startswith("install.sh: error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


def _tree(prefix: Path) -> dict[str, str]:
    """What landed under prefix: each file's path and content."""
    return {p.relative_to(prefix).as_posix(): p.read_text() for p in sorted(prefix.rglob("*")) if p.is_file()}


def _runs(prefix: Path) -> str:
    return subprocess.run([prefix / "bin" / "python3"], capture_output=True, text=True).stdout.strip()


def _install(tmp_path: Path, store: SignedStore, *args: str, prefix: str = "py", **kwargs):
    return run_installer(
        tmp_path, store.root, "--version", VERSION, *args, "--prefix", str(tmp_path / prefix), **kwargs
    )


def _pinned(store: SignedStore) -> list[str]:
    return ["--pubkey", str(store.key.public)]


def _assert_build_1_installed(prefix: Path) -> None:
    assert _runs(prefix) == f"Python {VERSION} build 1"
    tree = _tree(prefix)
    assert tree.pop(".buildfarm-install").startswith(f"{VERSION} build 1 from file://")
    assert tree == {"BUILD-1": "build 1\n", "bin/python3": f"#!/bin/sh\necho Python {VERSION} build 1\n"}


@pytest.mark.parametrize("pin", ["file", "fingerprint", "baked"])
def test_build_1_installs_build_1_with_its_signed_sha256sums(tmp_path, signed, pin) -> None:
    if pin == "baked":
        script = tmp_path / "published-install.sh"
        script.write_bytes(render_installer(f"file://{signed.root}", [signed.key.fingerprint]))
        result = _install(tmp_path, signed, "--build", "1", script=script)
    else:
        pubkey = str(signed.key.public) if pin == "file" else signed.key.fingerprint
        result = _install(tmp_path, signed, "--build", "1", "--pubkey", pubkey)
    assert result.returncode == 0, result.stderr
    assert f"signature verified: versions.json (key {signed.key.fingerprint})" in result.stderr
    assert f"signature verified: {CELL}/1/SHA256SUMS (key {signed.key.fingerprint})" in result.stderr
    assert "/2/SHA256SUMS" not in result.stderr
    assert "is an earlier build than the newest (build 2): its sha256 comes from its own SHA256SUMS" in (
        result.stderr
    )
    assert f"downloading Python {VERSION} build 1 for debian-12/x86_64 (tarball)" in result.stderr
    assert f"sha256 verified (against the signed {CELL}/1/SHA256SUMS)" in result.stderr
    assert f"installed Python {VERSION} build 1 into {tmp_path / 'py'}" in result.stderr
    assert "signatures not checked" not in result.stderr
    _assert_build_1_installed(tmp_path / "py")


def test_without_build_the_listed_build_is_installed_and_build_2_is_the_same(tmp_path, signed) -> None:
    newest = _install(tmp_path, signed, *_pinned(signed), prefix="newest")
    assert newest.returncode == 0, newest.stderr
    assert _runs(tmp_path / "newest") == f"Python {VERSION} build 2"
    # --build of the listed build: the catalog's sha256, checked against its SHA256SUMS as always.
    listed = _install(tmp_path, signed, "--build", "2", *_pinned(signed), prefix="listed")
    assert listed.returncode == 0, listed.stderr
    assert "sha256 verified (against versions.json and the signed SHA256SUMS)" in listed.stderr
    assert "earlier build" not in listed.stderr
    assert _runs(tmp_path / "listed") == f"Python {VERSION} build 2"
    assert (tmp_path / "listed" / "BUILD-2").exists()


def test_rolling_a_prefix_back_replaces_build_2_with_build_1(tmp_path, signed) -> None:
    assert _install(tmp_path, signed, *_pinned(signed)).returncode == 0
    result = _install(tmp_path, signed, "--build", "1", *_pinned(signed))
    assert result.returncode == 0, result.stderr
    replacing = f"replacing the earlier install at {tmp_path / 'py'} ({VERSION} build 2 from file://"
    assert replacing in result.stderr
    _assert_build_1_installed(tmp_path / "py")


@pytest.mark.parametrize("how", ["skip-signatures", "no key"])
def test_build_1_without_a_key_checks_the_sha256_its_sha256sums_lists(tmp_path, signed, how) -> None:
    """The rules of an unsigned install: the sha256s of the build's SHA256SUMS alone (the
    newest build's come from versions.json), and a line says signatures were not checked."""
    options = ["--skip-signatures"] if how == "skip-signatures" else []
    result = _install(tmp_path, signed, "--build", "1", *options)
    assert result.returncode == 0, result.stderr
    assert "signature verified" not in result.stderr and "sha256 verified\n" in result.stderr
    notes = [line for line in result.stderr.splitlines() if "signatures not checked" in line]
    if how == "skip-signatures":
        assert notes == [
            "install.sh: signatures not checked: --skip-signatures "
            f"(the sha256s in {CELL}/1/SHA256SUMS alone are trusted)"
        ]
    else:
        assert notes == [
            "install.sh: signatures not checked: no signing key is pinned (pass --pubkey FILE|SHA256:<hex>)"
        ]
    _assert_build_1_installed(tmp_path / "py")


def test_a_tampered_build_1_artifact_is_refused_without_a_key_too(tmp_path, signed) -> None:
    (signed.build_dir.with_name("1") / TARBALL).write_bytes(_tarball(666))
    for options in (_pinned(signed), ["--skip-signatures"]):
        result = _install(tmp_path, signed, "--build", "1", *options)
        assert result.returncode != 0
        line = _error_line(result.stderr)
        assert f"checksum mismatch for {TARBALL}" in line and "not installing" in line
        assert not (tmp_path / "py").exists()


def test_a_build_newer_than_the_listed_one_is_not_published(tmp_path, signed) -> None:
    """Even with its files in the store, signed by the farm's key (a build being published)."""
    add_build(signed, 3, {"tarball": (TARBALL, _tarball(3))})
    for options in (_pinned(signed), ["--skip-signatures"]):
        result = _install(tmp_path, signed, "--build", "3", *options)
        assert result.returncode != 0
        assert _error_line(result.stderr) == (
            f"install.sh: error: build 3 of {VERSION} for debian-12/x86_64 is not published: "
            "versions.json lists build 2 as its newest; nothing installed"
        )
        assert "downloading" not in result.stderr and not (tmp_path / "py").exists()


def _evil_sums(store: SignedStore, stranger: Key) -> None:
    """Build 1's tarball swapped and SHA256SUMS rewritten with its sha256; the signature left."""
    directory = store.build_dir.with_name("1")
    (directory / TARBALL).write_bytes(_tarball(666))
    write_sums(directory, [TARBALL, "manifest.json"])


def _other_sha256(store: SignedStore, stranger: Key) -> None:
    sums = store.build_dir.with_name("1") / "SHA256SUMS"
    sums.write_text(sums.read_text().replace(hashlib.sha256(_tarball(1)).hexdigest(), "0" * 64))


def _signed_by_a_stranger(store: SignedStore, stranger: Key) -> None:
    _evil_sums(store, stranger)
    stranger.sign(store.build_dir.with_name("1") / "SHA256SUMS")


def _no_signature(store: SignedStore, stranger: Key) -> None:
    (store.build_dir.with_name("1") / "SHA256SUMS.sig").unlink()


def _build_2_signature(store: SignedStore, stranger: Key) -> None:
    """The farm's signature, but of build 2's SHA256SUMS."""
    directory = store.build_dir.with_name("1")
    (directory / "SHA256SUMS.sig").write_bytes((store.build_dir / "SHA256SUMS.sig").read_bytes())


NOT_SIGNED = "SHA256SUMS is not signed by the pinned key"
UNVERIFIED = {
    "SHA256SUMS with the swapped tarball's sha256": (_evil_sums, NOT_SIGNED),
    "SHA256SUMS with another sha256": (_other_sha256, NOT_SIGNED),
    "SHA256SUMS signed by another key": (_signed_by_a_stranger, NOT_SIGNED),
    "SHA256SUMS.sig of build 2": (_build_2_signature, NOT_SIGNED),
    "SHA256SUMS.sig missing": (_no_signature, "SHA256SUMS has no signature"),
}


@pytest.mark.parametrize("tampering", sorted(UNVERIFIED))
def test_a_build_1_whose_sha256sums_does_not_verify_is_refused(tmp_path, signed, keys, tampering) -> None:
    tamper, message = UNVERIFIED[tampering]
    tamper(signed, keys[1])
    result = _install(tmp_path, signed, "--build", "1", *_pinned(signed))
    assert result.returncode != 0
    line = _error_line(result.stderr)
    assert f"install.sh: error: {CELL}/1/{message}" in line, line
    assert line.endswith("; nothing installed")
    assert "downloading" not in result.stderr and not (tmp_path / "py").exists()


def test_a_build_that_is_not_in_the_store_is_named(tmp_path, signed) -> None:
    """Build 1's directory gone (or never there): its SHA256SUMS is a 404, key or no key (and
    without it there is no sha256 to check an earlier build by)."""
    for path in sorted(signed.build_dir.with_name("1").iterdir()):
        path.unlink()
    for options in (_pinned(signed), ["--skip-signatures"]):
        result = _install(tmp_path, signed, "--build", "1", *options)
        assert result.returncode != 0
        assert _error_line(result.stderr) == (
            f"install.sh: error: build 1 of {VERSION} for debian-12/x86_64 is not in the store, or has no "
            f"SHA256SUMS ({CELL}/1/SHA256SUMS: download failed); nothing installed"
        )
        assert not (tmp_path / "py").exists()


def test_a_build_whose_sha256sums_lists_no_such_artifact_is_refused(tmp_path, signed) -> None:
    """Build 1's SHA256SUMS (signed by the farm) lists only other files: a .deb, a tarball of
    another platform, one with a longer name."""
    directory = signed.build_dir.with_name("1")
    others = [f"python-{VERSION}_1_amd64.deb", f"python-{VERSION}-debian-11-x86_64.tar.gz", f"{TARBALL}.old"]
    for name in others:
        (directory / name).write_bytes(b"other")
    (directory / TARBALL).unlink()
    signed.key.sign(write_sums(directory, [*others, "manifest.json"]))
    result = _install(tmp_path, signed, "--build", "1", *_pinned(signed))
    assert result.returncode != 0
    assert _error_line(result.stderr) == (
        f"install.sh: error: build 1 of {VERSION} for debian-12/x86_64 has no tarball: "
        f"{CELL}/1/SHA256SUMS lists no {TARBALL}; nothing installed"
    )
    assert not (tmp_path / "py").exists()


@pytest.mark.parametrize(
    ("debs", "message"),
    [
        (
            [f"python-{VERSION}_1_amd64.deb", f"python-{VERSION}_1+x_amd64.deb"],
            f"build 1 of {VERSION} for debian-12/x86_64: {CELL}/1/SHA256SUMS lists 2 files named "
            f"python-{VERSION}_*_amd64.deb, not one; nothing installed",
        ),
        (
            [f"python-{VERSION}_$(reboot)_amd64.deb"],
            f"{CELL}/1/SHA256SUMS lists a suspicious file name python-{VERSION}_\\$\\(reboot\\)_amd64.deb; "
            "nothing installed",
        ),
    ],
    ids=["two", "suspicious"],
)
def test_the_package_is_the_one_file_of_its_name_in_sha256sums(tmp_path, signed, debs, message) -> None:
    """As root without --prefix, the .deb: found in build 1's (signed) SHA256SUMS by its name,
    python-<version>_<build>_amd64.deb; more than one, or a name no build file has, is refused
    before anything is downloaded."""
    directory = signed.build_dir.with_name("1")
    for name in debs:
        (directory / name).write_bytes(b"deb")
    signed.key.sign(write_sums(directory, [*debs, TARBALL, "manifest.json"]))
    result = run_installer(
        tmp_path, signed.root, "--version", VERSION, "--build", "1", *_pinned(signed), uid=0
    )
    assert result.returncode != 0
    assert _error_line(result.stderr) == f"install.sh: error: {message}"
    assert "downloading" not in result.stderr


# "\u0661": ARABIC-INDIC DIGIT ONE, "\u00b2": SUPERSCRIPT TWO (digits to some regex classes).
NOT_BUILD_NUMBERS = ["01", "x", "\u0661", "0", "-1", "+1", "1 ", " 1", "1.0", "0x1", "1e3", "\u00b2"]


@pytest.mark.parametrize("value", [*NOT_BUILD_NUMBERS, "1234567890", "1\n", "1\x1b[2J"])
def test_a_build_that_is_not_a_build_number_is_refused(tmp_path, signed, value) -> None:
    result = _install(tmp_path, signed, "--build", value, *_pinned(signed))
    assert result.returncode == 1
    shown = "$'1\\n'" if value == "1\n" else "$'1\\E[2J'" if value == "1\x1b[2J" else f"'{value}'"
    assert result.stderr == (
        f"install.sh: error: --build {shown} is not a build number "
        "(1, 2, ...: ASCII digits, no leading zero, at most 9 of them); nothing installed\n"
    )
    assert not (tmp_path / "py").exists()


def test_the_equals_form_is_read_too(tmp_path, signed) -> None:
    prefix = ["--prefix", str(tmp_path / "py")]
    result = run_installer(tmp_path, signed.root, "--version=3.13.5", "--build=1", *prefix, *_pinned(signed))
    assert result.returncode == 0, result.stderr
    _assert_build_1_installed(tmp_path / "py")
    refused = run_installer(tmp_path, signed.root, "--version=3.13.5", "--build=01", *prefix)
    assert "--build '01' is not a build number" in _error_line(refused.stderr)


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (
            ["--version", "3.13"],
            "--build 1 needs an exact version, not the series 3.13: builds are numbered per release "
            "(--version 3.13.N); nothing installed",
        ),
        (
            [],
            "--build 1 needs the exact version it is a build of: pass --version X.Y.Z too; nothing installed",
        ),
    ],
    ids=["series", "no version"],
)
def test_build_needs_an_exact_version(tmp_path, signed, version, message) -> None:
    result = run_installer(
        tmp_path, signed.root, *version, "--build", "1", "--prefix", str(tmp_path / "py"), *_pinned(signed)
    )
    assert result.returncode == 1
    assert result.stderr == f"install.sh: error: {message}\n"
    assert not (tmp_path / "py").exists()


def test_a_malformed_build_in_the_catalog_is_not_compared_as_arithmetic(tmp_path, signed) -> None:
    """bash's (( )) would evaluate a[$(...)] in a variable's value: the catalog's build is checked
    to be a build number first (an unsigned store here, so nothing else stops it)."""
    marker = tmp_path / "ran"
    catalog = signed.catalog()
    catalog["builds"][VERSION]["debian-12"]["x86_64"]["build"] = f"a[$(touch {marker})]"
    signed.write_catalog(catalog)
    result = _install(tmp_path, signed, "--build", "1", "--skip-signatures")
    assert result.returncode != 0
    line = _error_line(result.stderr)
    assert "versions.json lists a malformed build" in line and f"for {VERSION} on debian-12/x86_64" in line
    assert not marker.exists() and not (tmp_path / "py").exists()


def test_help_documents_build(tmp_path) -> None:
    shown = run_installer(tmp_path, None, "--help")
    assert shown.returncode == 0
    assert "[--version VERSION [--build N] | --list]" in shown.stdout
    assert "\n  --build N          install build N of --version X.Y.Z (an exact version, not a series)\n" in (
        shown.stdout
    )
