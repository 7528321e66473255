"""`buildfarm keys init --key PATH` where no key file can be made: one line naming the path."""

from __future__ import annotations

import pytest

from buildfarm.cli import main


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
