"""install.sh with a pinned signing key, on this host (bash, awk, curl over file://, the real
openssl): what it verifies, what it refuses with which line, and that a refusal installs
nothing. The same checks in a fresh debootstrap root, through apt: test_install_signatures_roots.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from buildfarm.catalog.install_script import render_installer

from .signed_store import VERSION, Key, SignedStore, make_signed_store, publish_keys, write_sums
from .test_install_script import INSTALL_SH, _tarball, run_installer

TARBALL = f"python-{VERSION}-debian-12-x86_64.tar.gz"


@pytest.fixture
def signed(tmp_path, keys) -> SignedStore:
    return make_signed_store(tmp_path / "store", keys[0], {"tarball": (TARBALL, _tarball(VERSION))})


def _error_line(stderr: str) -> str:
    """The one error line a refusal prints (and there is exactly one)."""
    errors = [line for line in stderr.splitlines() if line.startswith("install.sh: error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


def _installed(prefix: Path) -> str:
    return subprocess.run([prefix / "bin" / "python3"], capture_output=True, text=True).stdout.strip()


def _published_script(tmp_path: Path, store: SignedStore, *fingerprints: str) -> Path:
    script = tmp_path / "published-install.sh"
    script.write_bytes(render_installer(f"file://{store.root}", fingerprints))
    return script


@pytest.mark.parametrize("pin", ["file", "fingerprint"])
def test_a_good_store_installs_with_the_key_pinned(tmp_path, signed, pin) -> None:
    pubkey = str(signed.key.public) if pin == "file" else signed.key.fingerprint
    prefix = tmp_path / "py"
    result = run_installer(tmp_path, signed.root, "--pubkey", pubkey, "--prefix", str(prefix))
    assert result.returncode == 0, result.stderr
    assert f"signature verified: versions.json (key {signed.key.fingerprint})" in result.stderr
    sums = f"builds/{VERSION}/debian-12/x86_64/2/SHA256SUMS"
    assert f"signature verified: {sums} (key {signed.key.fingerprint})" in result.stderr
    assert "sha256 verified (against versions.json and the signed SHA256SUMS)" in result.stderr
    assert "signatures not checked" not in result.stderr
    assert _installed(prefix) == f"Python {VERSION}"


def test_the_key_baked_in_at_publishing_is_checked_without_pubkey(tmp_path, signed, keys) -> None:
    script = _published_script(tmp_path, signed, signed.key.fingerprint)
    good = run_installer(tmp_path, None, "--prefix", str(tmp_path / "py"), script=script)
    assert good.returncode == 0, good.stderr
    assert f"signature verified: versions.json (key {signed.key.fingerprint})" in good.stderr
    # A swap of the catalog alone (re-signed with another key) is refused by the baked key.
    keys[1].sign(signed.versions)
    swapped = run_installer(tmp_path, None, "--prefix", str(tmp_path / "other"), script=script)
    assert swapped.returncode != 0
    assert "versions.json is not signed by the pinned key" in _error_line(swapped.stderr)
    assert not (tmp_path / "other").exists()


def _tamper_artifact(store: SignedStore, stranger: Key) -> None:
    store.artifact("tarball").write_bytes(_tarball("evil"))


def _tamper_artifact_and_catalog(store: SignedStore, stranger: Key) -> None:
    """The artifact and its sha256 in versions.json both swapped: the signature catches it."""
    store.artifact("tarball").write_bytes(_tarball("evil"))
    catalog = store.catalog()
    entry = catalog["builds"][VERSION]["debian-12"]["x86_64"]["artifacts"][0]
    entry["sha256"] = hashlib.sha256(_tarball("evil")).hexdigest()
    store.write_catalog(catalog)


def _tamper_catalog(store: SignedStore, stranger: Key) -> None:
    store.versions.write_text(store.versions.read_text().replace('"updated"', '"updated" ', 1))


def _tamper_sums(store: SignedStore, stranger: Key) -> None:
    store.sums.write_text(store.sums.read_text() + f"{'0' * 64}  extra\n")


def _tamper_sums_signature(store: SignedStore, stranger: Key) -> None:
    stranger.sign(store.sums)


def _garble_sums_signature(store: SignedStore, stranger: Key) -> None:
    store.sums.with_name("SHA256SUMS.sig").write_bytes(b"\x30\x06\x02\x01\x01\x02\x01\x01")


def _drop_catalog_signature(store: SignedStore, stranger: Key) -> None:
    store.versions.with_name("versions.json.sig").unlink()


def _drop_sums(store: SignedStore, stranger: Key) -> None:
    store.sums.unlink()


def _unlisted_artifact(store: SignedStore, stranger: Key) -> None:
    """SHA256SUMS re-made (and re-signed by the farm's key) without the tarball."""
    store.key.sign(write_sums(store.build_dir, ["manifest.json"]))


def _sums_disagree_with_catalog(store: SignedStore, stranger: Key) -> None:
    """Both files signed by the farm's key, but for different artifacts (a mixed-up publish)."""
    store.artifact("tarball").write_bytes(_tarball("other"))
    store.key.sign(write_sums(store.build_dir, [store.artifact("tarball").name, "manifest.json"]))


TAMPERINGS: dict[str, tuple[Callable[[SignedStore, Key], None], str]] = {
    "artifact": (_tamper_artifact, f"checksum mismatch for {TARBALL}"),
    "artifact and catalog": (_tamper_artifact_and_catalog, "versions.json is not signed by the pinned key"),
    "versions.json": (_tamper_catalog, "versions.json is not signed by the pinned key"),
    "SHA256SUMS": (_tamper_sums, "/2/SHA256SUMS is not signed by the pinned key"),
    "SHA256SUMS.sig by another key": (
        _tamper_sums_signature,
        "/2/SHA256SUMS is not signed by the pinned key",
    ),
    "SHA256SUMS.sig garbled": (_garble_sums_signature, "/2/SHA256SUMS is not signed by the pinned key"),
    "versions.json.sig missing": (_drop_catalog_signature, "versions.json has no signature"),
    "SHA256SUMS missing": (_drop_sums, "/2/SHA256SUMS: download failed (a build published before signing"),
    "artifact not in SHA256SUMS": (_unlisted_artifact, f"/2/SHA256SUMS does not list {TARBALL}"),
    "SHA256SUMS disagrees": (_sums_disagree_with_catalog, f"{TARBALL}: versions.json says sha256"),
}


@pytest.mark.parametrize("tampering", sorted(TAMPERINGS))
def test_a_tampered_store_is_refused_with_one_line_and_nothing_installed(tmp_path, signed, keys, tampering):
    tamper, message = TAMPERINGS[tampering]
    tamper(signed, keys[1])
    prefix = tmp_path / "py"
    result = run_installer(tmp_path, signed.root, "--pubkey", str(keys[0].public), "--prefix", str(prefix))
    assert result.returncode != 0
    line = _error_line(result.stderr)
    assert message in line, line
    assert "not installing" in line or "nothing installed" in line
    assert not prefix.exists()


def test_a_tampered_catalog_is_refused_by_list_too(tmp_path, signed, keys) -> None:
    _tamper_catalog(signed, keys[1])
    result = run_installer(tmp_path, signed.root, "--pubkey", signed.key.fingerprint, "--list")
    assert result.returncode != 0 and result.stdout == ""
    assert "(if the store was updated in the last minutes, retry later)" in _error_line(result.stderr)


def test_a_wrong_pubkey_is_refused(tmp_path, signed, keys) -> None:
    stranger = keys[1]
    by_file = run_installer(
        tmp_path, signed.root, "--pubkey", str(stranger.public), "--prefix", str(tmp_path / "p")
    )
    assert by_file.returncode != 0
    assert f"versions.json is not signed by the pinned key ({stranger.fingerprint})" in _error_line(
        by_file.stderr
    )
    # A fingerprint the store does not publish a key for.
    absent = run_installer(
        tmp_path, signed.root, "--pubkey", stranger.fingerprint, "--prefix", str(tmp_path / "p")
    )
    assert f"the store has no key {stranger.fingerprint}" in _error_line(absent.stderr)
    # The store's keys/<hex>.pub swapped for another key: its fingerprint gives it away.
    (signed.root / "keys" / f"{signed.key.hex}.pub").write_bytes(stranger.public.read_bytes())
    swapped = run_installer(
        tmp_path, signed.root, "--pubkey", signed.key.fingerprint, "--prefix", str(tmp_path / "p")
    )
    line = _error_line(swapped.stderr)
    assert (
        f"keys/{signed.key.hex}.pub is key {stranger.fingerprint}, not the pinned {signed.key.fingerprint}"
        in line
    )
    assert not (tmp_path / "p").exists()


def test_a_rotated_key_still_verifies_the_builds_it_signed(tmp_path, signed, keys) -> None:
    """versions.json re-signed by the new key; the old build's SHA256SUMS keeps the old key's
    signature: pinning both (as publishing bakes every listed key) installs it."""
    old, new = keys
    new.sign(signed.versions)
    publish_keys(signed.root, new, old)
    script = _published_script(tmp_path, signed, new.fingerprint, old.fingerprint)
    result = run_installer(tmp_path, None, "--prefix", str(tmp_path / "py"), script=script)
    assert result.returncode == 0, result.stderr
    assert f"signature verified: versions.json (key {new.fingerprint})" in result.stderr
    assert f"SHA256SUMS (key {old.fingerprint})" in result.stderr
    only_new = run_installer(
        tmp_path, signed.root, "--pubkey", new.fingerprint, "--prefix", str(tmp_path / "q")
    )
    assert "SHA256SUMS is not signed by the pinned key" in _error_line(only_new.stderr)


@pytest.mark.parametrize("published", [False, True])
def test_no_key_pinned_checks_sha256_and_says_signatures_were_not_checked(
    tmp_path, signed, published
) -> None:
    """Neither --pubkey nor a baked key: this copy of the script, or one published for a store
    without keys/keys.json."""
    script = _published_script(tmp_path, signed) if published else INSTALL_SH
    result = run_installer(tmp_path, signed.root, "--prefix", str(tmp_path / "py"), script=script)
    assert result.returncode == 0, result.stderr
    assert "sha256 verified\n" in result.stderr
    notes = [line for line in result.stderr.splitlines() if "signatures not checked" in line]
    assert notes == [
        "install.sh: signatures not checked: no signing key is pinned (pass --pubkey FILE|SHA256:<hex>)"
    ]


def _path_without_openssl(tmp_path: Path) -> str:
    """A PATH with the tools install.sh uses, but no openssl."""
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("bash", "awk", "sed", "head", "mktemp", "rm", "curl", "sha256sum", "cut", "grep",
                 "tar", "gzip", "mkdir", "cp", "cat", "sh", "ls", "chmod", "mv"):  # fmt: skip
        (tools / name).symlink_to(shutil.which(name))
    return str(tools)


def test_a_pinned_key_without_openssl_is_a_clear_error(tmp_path, signed) -> None:
    env = {"PATH": f"{tmp_path / 'fakebin'}:{_path_without_openssl(tmp_path)}"}
    script = _published_script(tmp_path, signed, signed.key.fingerprint)
    result = run_installer(tmp_path, None, "--prefix", str(tmp_path / "py"), script=script, environ=env)
    assert result.returncode != 0
    line = _error_line(result.stderr)
    assert (
        f"a signing key is pinned (the published key {signed.key.fingerprint}) but openssl is not installed"
        in line
    )
    assert "--skip-signatures" in line and not (tmp_path / "py").exists()
    # Saying so, the user trusts the sha256s alone.
    skipped = run_installer(
        tmp_path, None, "--skip-signatures", "--prefix", str(tmp_path / "py"), script=script, environ=env
    )
    assert skipped.returncode == 0, skipped.stderr
    assert "signatures not checked" in skipped.stderr


@pytest.mark.parametrize(
    ("pubkey", "message"),
    [
        ("SHA256:abc", "--pubkey 'SHA256:abc' is not a key fingerprint"),
        ("SHA256:" + "A" * 64, "is not a key fingerprint (SHA256: and 64 lowercase hex digits"),
        ("SHA256:" + "0" * 63 + "g", "is not a key fingerprint"),
        ("/nonexistent/farm.pub", "--pubkey '/nonexistent/farm.pub': no such readable file"),
        ("PRIVATE", "': not a PEM public key"),
    ],
)
def test_a_bad_pubkey_is_named(tmp_path, signed, pubkey, message) -> None:
    if pubkey == "PRIVATE":
        pubkey = str(signed.key.private)  # a private key is not what --pubkey takes
    result = run_installer(tmp_path, signed.root, "--pubkey", pubkey, "--prefix", str(tmp_path / "p"))
    assert result.returncode != 0
    assert message in _error_line(result.stderr)
    assert not (tmp_path / "p").exists()


def test_pubkey_and_skip_signatures_contradict(tmp_path, signed) -> None:
    result = run_installer(
        tmp_path, signed.root, "--pubkey", signed.key.fingerprint, "--skip-signatures", "--list"
    )
    assert result.returncode != 0
    assert "--pubkey and --skip-signatures contradict each other" in _error_line(result.stderr)


def test_help_shows_the_published_keys(tmp_path, signed) -> None:
    script = _published_script(tmp_path, signed, signed.key.fingerprint)
    shown = run_installer(tmp_path, None, "--help", script=script)
    assert shown.returncode == 0
    assert f"published with:\n                     {signed.key.fingerprint}\n" in shown.stdout
    assert (
        "(none: signatures are checked only with --pubkey)" in run_installer(tmp_path, None, "--help").stdout
    )


# -- publishing bakes the store's keys in ------------------------------------------------------


def test_publish_bakes_every_listed_key_current_first(tmp_path, keys) -> None:
    from buildfarm.catalog import public_url_function, publish_installer
    from buildfarm.catalog.install_script import embedded_fingerprints, store_fingerprints
    from buildfarm.store import LocalStore

    store = LocalStore(tmp_path / "s")
    url = public_url_function(store, "https://cdn.example.org/python")
    assert publish_installer(store, url)
    assert embedded_fingerprints((tmp_path / "s" / "install.sh").read_bytes()) == []
    old, new = keys
    publish_keys(tmp_path / "s", new, old)
    assert store_fingerprints(store) == [new.fingerprint, old.fingerprint]
    assert publish_installer(store, url)  # a new key: install.sh is rewritten
    script = (tmp_path / "s" / "install.sh").read_bytes()
    assert embedded_fingerprints(script) == [new.fingerprint, old.fingerprint]
    assert f'BAKED_FINGERPRINTS="{new.fingerprint} {old.fingerprint}"' in script.decode()
    assert not publish_installer(store, url)


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({"current": "SHA256:abc", "keys": []}, "current: String should match pattern"),
        ({"current": "SHA256:" + "a" * 64, "keys": [{"fingerprint": "$(reboot)"}]}, "keys/0/fingerprint"),
        ({"keys": []}, "current: Field required"),
    ],
)
def test_a_malformed_keys_list_is_named_not_baked(tmp_path, document, named) -> None:
    from buildfarm.catalog.install_script import store_fingerprints
    from buildfarm.store import LocalStore, StoreError

    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "keys.json").write_text(json.dumps(document))
    with pytest.raises(StoreError, match=r"keys/keys\.json: ") as raised:
        store_fingerprints(LocalStore(tmp_path))
    assert named in str(raised.value)


def test_only_fingerprints_are_baked_in() -> None:
    with pytest.raises(ValueError, match="not a key fingerprint"):
        render_installer("https://x.org", ['SHA256:"; reboot; "'])


def test_store_fingerprints_of_an_unsigned_store_is_empty(tmp_path) -> None:
    from buildfarm.catalog.install_script import store_fingerprints
    from buildfarm.store import LocalStore

    assert store_fingerprints(LocalStore(tmp_path)) == []
    assert os.listdir(tmp_path) == []


# -- what the publish side writes is what install.sh checks -------------------------------------


def test_a_store_the_publish_side_signed_passes_every_check(tmp_path, local_store, config, keys) -> None:
    """plan, the builder's files (fake artifacts), publish with the farm's key: the install.sh
    it leaves at the store's root has the key baked in, and every signature and sha256 checks
    out (the fake tarball is not a real one, so only extracting it fails)."""
    from buildfarm.attest.signing import KeyFileSigner
    from buildfarm.plan import plan
    from buildfarm.publish import publish

    from ..conftest import NOW, fake_build, write_releases

    write_releases(local_store, [VERSION])
    planned = plan({"versions": [VERSION], "platforms": ["debian-12"]}, local_store, config, "exec-1", NOW)
    for item in planned.items:
        fake_build(local_store, item.spec)
    result = publish(planned.summary, local_store, config, now=NOW, signer=KeyFileSigner(keys[0].private))
    assert len(result.published) == 2, result
    script = local_store.root / "install.sh"
    ran = run_installer(tmp_path, None, "--prefix", str(tmp_path / "py"), script=script)
    assert f"signature verified: versions.json (key {keys[0].fingerprint})" in ran.stderr, ran.stderr
    assert f"/x86_64/1/SHA256SUMS (key {keys[0].fingerprint})" in ran.stderr
    assert "sha256 verified (against versions.json and the signed SHA256SUMS)" in ran.stderr
    # The one error: the fake tarball does not unpack (and the prefix is not made).
    errors = [line for line in ran.stderr.splitlines() if line.startswith("install.sh: error")]
    assert len(errors) == 1 and "cannot unpack" in errors[0] and not (tmp_path / "py").exists()
    assert not list(tmp_path.glob(".install.sh.*"))  # the half-unpacked tree is gone too
