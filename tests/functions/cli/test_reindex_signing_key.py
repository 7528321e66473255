"""`buildfarm reindex` signs a directory store with the key `buildfarm run` signs it with: the
configured key file, else ~/.config/buildfarm/signing-key.pem when it exists (never created
by reindex). So it repairs a missing or stale versions.json.sig, and keeps the signature good
when it rewrites versions.json. An S3 store is signed only with a configured key (the cloud's
KMS key), never with the default file of the machine reindex runs on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from buildfarm.attest.signing import KeyFileSigner, fingerprint, init_key, verify_signature
from buildfarm.attest.store_keys import publish_key
from buildfarm.cli import main
from buildfarm.layout import VERSIONS_KEY, VERSIONS_SIGNATURE_KEY
from buildfarm.plan import plan
from buildfarm.publish import publish
from buildfarm.store import LocalStore

from ..conftest import (
    BUCKET,
    NOW,
    PREFIX,
    all_keys,
    fake_build,
    read_json,
    write_published_matrix,
    write_releases,
)

BUILDFARM = str(Path(sys.executable).parent / "buildfarm")
DEFAULT_KEY = Path(".config/buildfarm/signing-key.pem")  # under HOME, as `buildfarm run` makes it
UNSET = ("BUILDFARM_SIGNING_KEY", "BUILDFARM_KMS_KEY_ID", "BUILDFARM_PUBLIC_BASE_URL", "BUILDFARM_STORE")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A HOME holding the default key file, as a machine that ran `buildfarm run` has."""
    home = tmp_path / "home"
    init_key(home / DEFAULT_KEY)
    return home


def cli(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """The real command, with no key configured: only HOME says where the default key is."""
    env = {name: value for name, value in os.environ.items() if name not in UNSET}
    env["HOME"] = str(home)
    return subprocess.run([BUILDFARM, *argv], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def store(tmp_path: Path, home: Path, config) -> LocalStore:
    """3.13.5 for debian-12 published and signed with the default key (what `run` leaves)."""
    store = LocalStore(tmp_path / "dist")
    write_releases(store, ["3.13.5"])
    result = plan({"versions": ["3.13.5"], "platforms": ["debian-12"]}, store, config, "exec-1", NOW)
    for item in result.items:
        fake_build(store, item.spec)
    publish(result.summary, store, config, now=NOW, signer=KeyFileSigner(home / DEFAULT_KEY))
    return store


def verify_catalog(home: Path, store: LocalStore) -> subprocess.CompletedProcess[str]:
    public_key = home / "farm.pub"
    public_key.write_bytes(KeyFileSigner(home / DEFAULT_KEY).public_key_pem())
    return cli(home, "verify", str(store.root), "--pubkey", str(public_key))


def test_the_store_verifies_to_begin_with(home, store) -> None:
    assert verify_catalog(home, store).returncode == 0


def test_reindex_restores_a_missing_catalog_signature_with_the_default_key(home, store) -> None:
    (store.root / VERSIONS_SIGNATURE_KEY).unlink()
    assert verify_catalog(home, store).returncode == 1

    result = cli(home, "reindex", "--store", str(store.root))

    assert result.returncode == 0, result.stderr
    assert VERSIONS_SIGNATURE_KEY in result.stdout
    checked = verify_catalog(home, store)
    assert checked.returncode == 0, checked.stdout


def test_reindex_signs_the_versions_json_it_rewrites(home, store) -> None:
    document = read_json(store, VERSIONS_KEY)
    document["python_versions"] = ["3.9.0"]  # its derived view off: reindex rewrites it
    store.put_json(VERSIONS_KEY, document)

    result = cli(home, "reindex", "--store", str(store.root))

    assert result.returncode == 0, result.stderr
    assert "without a signing key" not in result.stderr
    assert read_json(store, VERSIONS_KEY)["python_versions"] == ["3.13.5"]
    checked = verify_catalog(home, store)
    assert checked.returncode == 0, checked.stdout


def test_without_a_default_key_reindex_makes_none_and_says_the_signature_is_stale(tmp_path, store) -> None:
    keyless = tmp_path / "keyless-home"
    keyless.mkdir()
    document = read_json(store, VERSIONS_KEY)
    document["python_versions"] = []
    store.put_json(VERSIONS_KEY, document)

    result = cli(keyless, "reindex", "--store", str(store.root))

    assert result.returncode == 0, result.stderr
    assert "versions.json rewritten without a signing key" in result.stderr
    assert not (keyless / DEFAULT_KEY).exists() and not (keyless / ".config").exists()


def test_a_directory_where_the_default_key_belongs_is_one_line(tmp_path, store) -> None:
    odd = tmp_path / "odd-home"
    (odd / DEFAULT_KEY).mkdir(parents=True)
    before = (store.root / VERSIONS_KEY).read_bytes()
    result = cli(odd, "reindex", "--store", str(store.root))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"buildfarm reindex: error: {odd / DEFAULT_KEY}: a directory, not a key file (name a file in it)"
    ]
    assert (store.root / VERSIONS_KEY).read_bytes() == before


def test_an_s3_store_is_not_signed_with_the_default_key(s3_store, home, monkeypatch) -> None:
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    write_published_matrix(s3_store, ["3.13.5"], ["debian-12"], ["x86_64"], files=True)
    store_url = f"s3://{BUCKET}/{PREFIX}"
    assert main(["reindex", "--store", store_url, "--base-url", "https://cdn.example.org/py"]) == 0
    assert not s3_store.exists(VERSIONS_SIGNATURE_KEY)
    assert not s3_store.exists("keys/keys.json")


def test_an_s3_store_is_not_given_a_key_file_it_does_not_list(s3_store, home, monkeypatch, capsys) -> None:
    """The cloud signs with its KMS key (DESIGN, docs/signing.md): a key file named by
    BUILDFARM_SIGNING_KEY would become the S3 store's current key, the one install.sh bakes in
    and installers are told to trust, by a reindex that publishes no build. Refused in one line
    naming the file and its key, before anything is written."""
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    laptop = home / DEFAULT_KEY
    monkeypatch.setenv("BUILDFARM_SIGNING_KEY", str(laptop))
    write_published_matrix(s3_store, ["3.13.5"], ["debian-12"], ["x86_64"], files=True)
    before = all_keys(s3_store)
    store_url = f"s3://{BUCKET}/{PREFIX}"
    assert main(["reindex", "--store", store_url, "--base-url", "https://cdn.example.org/py"]) == 2
    key = fingerprint(KeyFileSigner(laptop).public_key_pem())
    assert capsys.readouterr().err.splitlines() == [
        f"buildfarm reindex: error: BUILDFARM_SIGNING_KEY {laptop}: its key {key} is not the current "
        f"signing key of {store_url} (none): reindex publishes no key to an S3 store; unset "
        "BUILDFARM_SIGNING_KEY to reindex without it"
    ]
    assert all_keys(s3_store) == before


def test_an_s3_store_is_signed_with_the_key_file_that_is_its_current_key(s3_store, home, monkeypatch) -> None:
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    signer = KeyFileSigner(home / DEFAULT_KEY)
    monkeypatch.setenv("BUILDFARM_SIGNING_KEY", str(signer.path))
    write_published_matrix(s3_store, ["3.13.5"], ["debian-12"], ["x86_64"], files=True)
    publish_key(s3_store, signer)
    listed = s3_store.read("keys/keys.json")[0]
    store_url = f"s3://{BUCKET}/{PREFIX}"
    assert main(["reindex", "--store", store_url, "--base-url", "https://cdn.example.org/py"]) == 0
    signature, catalog = s3_store.read(VERSIONS_SIGNATURE_KEY)[0], s3_store.read(VERSIONS_KEY)[0]
    public = signer.public_key_pem()
    assert verify_signature(catalog, signature, [public]) == fingerprint(public)
    assert s3_store.read("keys/keys.json")[0] == listed
