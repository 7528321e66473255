"""`buildfarm keys init --key PATH`, and `buildfarm run`'s own key (BUILDFARM_SIGNING_KEY), where
no key file can be made: one line naming the path."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildfarm.cli import main
from buildfarm.runners import host_arch


@pytest.fixture(autouse=True)
def store_elsewhere(tmp_path, monkeypatch):
    """The store a key must stay out of: not where these tests put their keys."""
    monkeypatch.setenv("BUILDFARM_STORE", str(tmp_path / "store"))


def refused(capsys, key: str) -> str:
    code = main(["keys", "init", "--key", key])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def test_a_key_under_a_file_names_the_file(tmp_path, capsys):
    blocker = tmp_path / "file.pem"
    blocker.write_text("a file, not a directory\n")
    key = blocker / "sub.pem"
    assert refused(capsys, str(key)) == (
        f"buildfarm keys: error: {key}: cannot create it: {blocker} is not a directory"
    )
    assert blocker.read_text() == "a file, not a directory\n"


def test_a_key_at_a_directory_says_it_is_a_directory(tmp_path, capsys):
    directory = tmp_path / "keys"
    directory.mkdir()
    assert refused(capsys, str(directory)) == (
        f"buildfarm keys: error: {directory}: a directory, not a key file (name a file in it)"
    )
    assert list(directory.iterdir()) == []


def test_an_existing_key_is_kept_and_a_new_one_is_made_with_its_directories(tmp_path, capsys):
    key = tmp_path / "new" / "dirs" / "k.pem"
    assert main(["keys", "init", "--key", str(key)]) == 0
    assert capsys.readouterr().out.startswith(f"created {key}\nSHA256:")
    before = key.read_bytes()
    assert refused(capsys, str(key)).endswith(f"{key}: a key is already there (not overwritten)")
    assert key.read_bytes() == before


def run_refused(capsys, monkeypatch, tmp_path, key: Path) -> str:
    """`buildfarm run` with BUILDFARM_SIGNING_KEY=key: the key is made (local_key_config)
    before anything is planned. Should the run get past it, the host runner cannot build the
    other arch here, so nothing would be built either way."""
    monkeypatch.setenv("BUILDFARM_SIGNING_KEY", str(key))
    monkeypatch.delenv("BUILDFARM_KMS_KEY_ID", raising=False)
    monkeypatch.setenv("BUILDFARM_RELEASES_URL", "http://127.0.0.1:9/api")  # never python.org
    store = tmp_path / "store"
    other_arch = "aarch64" if host_arch() == "x86_64" else "x86_64"
    argv = ["run", "--store", str(store), "--versions", "3.13.5", "--platforms", "debian-12"]
    code = main([*argv, "--arches", other_arch, "--runner", "host", "--no-runtimes"])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err, out + err
    assert not (store / "claims").exists() and not (store / "runs").exists()
    return err.strip()


def test_run_with_a_key_under_a_file_stops_in_one_line(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file.pem"
    blocker.write_text("a file, not a directory\n")
    key = blocker / "sub.pem"
    assert run_refused(capsys, monkeypatch, tmp_path, key) == (
        f"buildfarm run: error: {key}: cannot create it: {blocker} is not a directory"
    )
    assert blocker.read_text() == "a file, not a directory\n"


def test_run_with_a_key_at_a_directory_stops_in_one_line(tmp_path, capsys, monkeypatch):
    directory = tmp_path / "keys"
    directory.mkdir()
    assert run_refused(capsys, monkeypatch, tmp_path, directory) == (
        f"buildfarm run: error: {directory}: a directory, not a key file (name a file in it)"
    )
    assert list(directory.iterdir()) == []
