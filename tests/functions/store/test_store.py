"""The store: the same semantics from the directory store and S3 (moto in-process)."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from buildfarm.store import LocalStore, S3Store, StoreConflict, StoreError, StoreNotFound, open_store

from ..conftest import BUCKET, PREFIX


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return request.getfixturevalue("s3_store")


def test_read_write_and_etags(store):
    etag = store.put("a/b.json", b'{"x": 1}')
    data, read_etag = store.read("a/b.json")
    assert data == b'{"x": 1}'
    assert read_etag == etag
    assert store.head("a/b.json").etag == etag
    assert store.head("a/b.json").size == 8
    assert store.exists("a/b.json")
    assert not store.exists("a/c.json")
    assert store.head("a/c.json") is None
    with pytest.raises(StoreNotFound):
        store.read("a/c.json")
    assert store.read_json("a/b.json")[0] == {"x": 1}


def test_create_only_write(store):
    store.put("claims/x.json", b"1", if_none_match=True)
    with pytest.raises(StoreConflict) as caught:
        store.put("claims/x.json", b"2", if_none_match=True)
    assert caught.value.key == "claims/x.json"
    assert store.read("claims/x.json")[0] == b"1"


def test_if_match_write(store):
    first = store.put("versions.json", b"v1")
    second = store.put("versions.json", b"v2", if_match=first)
    assert store.read("versions.json")[0] == b"v2"
    with pytest.raises(StoreConflict):
        store.put("versions.json", b"v3", if_match=first)  # stale ETag
    assert store.read("versions.json")[0] == b"v2"
    with pytest.raises(StoreConflict):
        store.put("missing.json", b"x", if_match=second)  # S3 answers 404 here; still a conflict
    assert not store.exists("missing.json")


def test_conditional_delete(store):
    etag = store.put("claims/y.json", b"1")
    with pytest.raises(StoreConflict):
        store.delete("claims/y.json", if_match="0" * 32)
    assert store.exists("claims/y.json")
    store.delete("claims/y.json", if_match=etag)
    assert not store.exists("claims/y.json")
    store.delete("claims/y.json")  # absent: fine


def test_list_is_sorted_and_prefix_scoped(store):
    for key in ("builds/3.13.5/a", "builds/3.12.1/b", "builds/3.13.5/c/d", "claims/e", "buildsx"):
        store.put(key, b"x")
    assert [i.key for i in store.list("builds/")] == [
        "builds/3.12.1/b",
        "builds/3.13.5/a",
        "builds/3.13.5/c/d",
    ]
    assert [i.key for i in store.list("builds/3.13")] == ["builds/3.13.5/a", "builds/3.13.5/c/d"]
    assert [i.key for i in store.list("")] == sorted(
        ["builds/3.13.5/a", "builds/3.12.1/b", "builds/3.13.5/c/d", "claims/e", "buildsx"]
    )
    assert list(store.list("nothing/")) == []


def test_list_children_is_one_level(store):
    for key in (
        "builds/c/1/manifest.json",
        "builds/c/1/x.deb",
        "builds/c/2/a/b",
        "builds/c/f",
        "builds/cx/9",
    ):
        store.put(key, b"x")
    store.calls.clear()
    assert store.list_children("builds/c") == {"1", "2", "f"}
    assert store.list_children("builds") == {"c", "cx"}
    assert store.list_children("nothing/here") == set()
    assert store.calls["list"] == 3  # one listing each (under 1,000 names)
    with pytest.raises(StoreError):
        store.list_children("builds/../x")


def test_build_numbers_are_what_builds_and_logs_hold(store):
    cell = ("3.13.5", "debian-12", "x86_64")
    assert store.build_numbers(*cell) == set()
    for key in (
        "builds/3.13.5/debian-12/x86_64/1/manifest.json",
        "builds/3.13.5/debian-12/x86_64/3/python.tar.gz",
        "logs/3.13.5/debian-12/x86_64/7/failure.json",
        # Not build numbers as artifact_dir writes them; another cell's build.
        "builds/3.13.5/debian-12/x86_64/07/x",
        "builds/3.13.5/debian-12/x86_64/0/x",
        "logs/3.13.5/debian-12/x86_64/latest",
        "builds/3.13.5/debian-12/aarch64/12/x",
    ):
        store.put(key, b"x")
    store.calls.clear()
    assert store.build_numbers(*cell) == {1, 3, 7}
    assert store.calls["list"] == 2  # builds/<cell>/ and logs/<cell>/


def test_put_big_object_and_streamed_sha256(store, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    store.put("builds/x/big.bin", big.read_bytes())
    import hashlib

    assert store.sha256_and_size("builds/x/big.bin") == (
        hashlib.sha256(big.read_bytes()).hexdigest(),
        big.stat().st_size,
    )
    with pytest.raises(StoreNotFound):
        store.sha256_and_size("builds/x/none.bin")


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "a/", "..", "a/./b", "a b", "a\\b", "a/b;rm"])
def test_bad_keys_are_rejected(store, key):
    with pytest.raises(StoreError) as caught:
        store.put(key, b"x")
    assert repr(key) in str(caught.value)


def test_locations(store):
    location = store.location_of("plans/p1/items.json")
    assert store.key_from_location(location) == "plans/p1/items.json"
    if isinstance(store, S3Store):
        assert location == {"bucket": BUCKET, "key": f"{PREFIX}/plans/p1/items.json"}
        assert store.url("versions.json") == f"s3://{BUCKET}/{PREFIX}/versions.json"
        with pytest.raises(StoreError):
            store.key_from_location({"bucket": "other", "key": f"{PREFIX}/x"})
        with pytest.raises(StoreError):
            store.key_from_location({"bucket": BUCKET, "key": "elsewhere/x"})
    else:
        assert location == {"bucket": "", "key": "plans/p1/items.json"}
        assert store.url("versions.json").startswith("file:///")
        with pytest.raises(StoreError):
            store.key_from_location({"bucket": BUCKET, "key": "x"})


def test_open_store():
    assert isinstance(open_store("s3://bucket-name/some/prefix"), S3Store)
    s3 = open_store("s3://bucket-name/some/prefix/")
    assert (s3.bucket, s3.prefix, s3.location) == (
        "bucket-name",
        "some/prefix",
        "s3://bucket-name/some/prefix",
    )
    assert open_store("s3://bucket-name").prefix == ""
    assert isinstance(open_store("./dist"), LocalStore)
    assert isinstance(open_store("file:///tmp/x"), LocalStore)
    for bad in ("s3://", "s3://Bad_Bucket/x", "http://example.com/x", "", "s3://bucket-name/../x"):
        with pytest.raises(StoreError) as caught:
            open_store(bad)
        assert bad in str(caught.value) or "empty" in str(caught.value)


def test_local_store_writes_atomically_and_hides_its_files(tmp_path):
    store = LocalStore(tmp_path / "s")
    store.put("k/v.json", b"1", if_none_match=True)
    store.put("k/v.json", b"2" * 100)
    # No temp files left, lock files are not objects.
    assert [p.name for p in (tmp_path / "s" / "k").iterdir()] == ["v.json"]
    assert [i.key for i in store.list("")] == ["k/v.json"]
    assert (tmp_path / "s" / ".locks").is_dir()


def _increment(directory: str, times: int) -> None:
    """Read-modify-write a counter with If-Match, retrying on conflict (runs in a child process)."""
    store = LocalStore(directory)
    for _ in range(times):
        while True:
            data, etag = store.read("counter")
            try:
                store.put("counter", str(int(data) + 1).encode(), if_match=etag)
                break
            except StoreConflict:
                continue


def test_local_conditional_writes_exclude_other_processes(tmp_path):
    directory = str(tmp_path / "s")
    LocalStore(directory).put("counter", b"0")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_increment, args=(directory, 40)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert LocalStore(directory).read("counter")[0] == b"160"


def test_local_create_only_excludes_other_processes(tmp_path):
    directory = str(tmp_path / "s")
    LocalStore(directory)
    context = multiprocessing.get_context("fork")
    results = context.Queue()

    def create(n: int) -> None:
        try:
            LocalStore(directory).put("claims/one.json", str(n).encode(), if_none_match=True)
            results.put(("won", n))
        except StoreConflict:
            results.put(("lost", n))

    workers = [context.Process(target=create, args=(n,)) for n in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    outcomes = [results.get(timeout=5) for _ in workers]
    winners = [n for status, n in outcomes if status == "won"]
    assert len(winners) == 1
    assert Path(directory, "claims", "one.json").read_text() == str(winners[0])


def test_s3_keeps_the_sha256_so_publish_need_not_download(s3_store, s3_client, tmp_path):
    import hashlib

    from ..conftest import count_s3_calls

    artifact = tmp_path / "python.tar.gz"
    # One PutObject with a SHA-256 checksum, as every put (and the builder's upload) sends; 9 MiB
    # is above boto3's default multipart threshold, which a single put never applies.
    artifact.write_bytes(os.urandom(9 * 1024 * 1024))
    s3_store.put("builds/x/python.tar.gz", artifact.read_bytes())
    s3_store.put("builds/x/small.json", b"{}")
    calls = count_s3_calls(s3_client)
    expected = (hashlib.sha256(artifact.read_bytes()).hexdigest(), artifact.stat().st_size)
    assert s3_store.verify_sha256_and_size("builds/x/python.tar.gz") == expected
    assert s3_store.stored_sha256("builds/x/small.json") == (hashlib.sha256(b"{}").hexdigest(), 2)
    assert dict(calls) == {"HeadObject": 2}  # no GetObject: nothing downloaded
    # An object stored without a SHA-256 checksum is streamed instead.
    s3_client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/builds/x/plain", Body=b"plain")
    assert s3_store.stored_sha256("builds/x/plain") is None
    assert s3_store.verify_sha256_and_size("builds/x/plain") == (hashlib.sha256(b"plain").hexdigest(), 5)
    with pytest.raises(StoreNotFound):
        s3_store.verify_sha256_and_size("builds/x/none")
