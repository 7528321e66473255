"""`buildfarm status` names the keys that sign the store (keys/keys.json), or says it is unsigned."""

from __future__ import annotations

import json

import pytest

from buildfarm.cli import main

from ..installer.signed_store import VERSION, Key, make_signed_store, publish_keys
from ..installer.test_install_script import _tarball


@pytest.fixture(autouse=True)
def no_store_variable(monkeypatch):
    monkeypatch.delenv("BUILDFARM_STORE", raising=False)


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[Key, Key]:
    base = tmp_path_factory.mktemp("keys")
    return Key.create(base / "old"), Key.create(base / "new")


def test_status_shows_the_signing_key_and_the_older_ones(tmp_path, keys, capsys) -> None:
    old, new = keys
    store = make_signed_store(tmp_path / "s", old, {"tarball": ("python.tar.gz", _tarball(VERSION))})
    assert main(["status", "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert f"signing key: {old.fingerprint}\n" in out
    publish_keys(store.root, new, old)
    assert main(["status", "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert f"signing key: {new.fingerprint} (older keys still listed: {old.fingerprint})\n" in out
    assert main(["status", "--store", str(store.root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["signing_keys"] == [new.fingerprint, old.fingerprint]


def test_status_of_an_unsigned_store_says_so(tmp_path, capsys) -> None:
    assert main(["status", "--store", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"nothing published yet in {tmp_path}",
        "signing key: none (unsigned store)",
    ]
    assert main(["status", "--store", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["signing_keys"] == []


def test_a_malformed_keys_list_is_one_line(tmp_path, capsys) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "keys.json").write_text('{"current": "SHA256:nothex", "keys": []}')
    assert main(["status", "--store", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "keys/keys.json: current: String should match pattern" in err
