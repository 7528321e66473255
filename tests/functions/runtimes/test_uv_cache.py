"""uv's download cache kept in the store for runtime builds beside an S3 store (cache/uv/
<platform>-<arch>.tar.gz): restored into a fresh job's empty cache, saved back when uv added to
it, never used for a warm local cache or a directory store (which keeps the directory itself).
A bad archive, one that would write outside the cache, or a refused save never fails a build.
The logic runs against a directory store and moto S3."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from buildfarm.layout import is_public, uv_cache_key
from buildfarm.runtimes import uv_cache
from buildfarm.store import S3Store, Store

KEY = "cache/uv/debian-12-x86_64.tar.gz"


@pytest.fixture(params=["local", "s3"])
def store(request) -> Store:
    return request.getfixturevalue("local_store" if request.param == "local" else "s3_store")


def fill_like_uv(cache: Path) -> None:
    """What a uv cache holds: a wheel unpacked in archive-v0/ and a relative symlink to it."""
    wheel = cache / "archive-v0" / "O3QrMQarTcyRvE-b" / "idna"
    wheel.mkdir(parents=True)
    (wheel / "__init__.py").write_text("from .core import *\n")
    (cache / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n")
    link = cache / "wheels-v7" / "pypi" / "idna" / "3.10-py3-none-any"
    link.parent.mkdir(parents=True)
    link.symlink_to("../../../archive-v0/O3QrMQarTcyRvE-b")


def archive_of(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return buffer.getvalue()


def test_the_key_is_per_platform_and_arch_and_never_public() -> None:
    assert uv_cache_key("debian-12", "x86_64") == KEY
    assert uv_cache_key("debian-12", "aarch64") != KEY
    assert not is_public(KEY)


def test_a_saved_cache_restores_into_a_fresh_one(store: Store, tmp_path: Path) -> None:
    first = tmp_path / "job-1" / "uv"
    assert not uv_cache.restore(store, "debian-12", "x86_64", first)  # none saved yet
    first.mkdir(parents=True)
    before = uv_cache.snapshot(first)
    fill_like_uv(first)
    assert uv_cache.save(store, "debian-12", "x86_64", first, before)
    assert store.exists(KEY) and not store.exists(uv_cache_key("debian-12", "aarch64"))

    second = tmp_path / "job-2" / "uv"
    assert uv_cache.restore(store, "debian-12", "x86_64", second)
    assert uv_cache.snapshot(second) == uv_cache.snapshot(first)
    link = second / "wheels-v7" / "pypi" / "idna" / "3.10-py3-none-any"
    assert link.is_symlink() and (link / "idna" / "__init__.py").read_text() == "from .core import *\n"


def test_an_unchanged_cache_is_not_saved_again(store: Store, tmp_path: Path) -> None:
    cache = tmp_path / "uv"
    cache.mkdir()
    fill_like_uv(cache)
    assert not uv_cache.save(store, "debian-12", "x86_64", cache, uv_cache.snapshot(cache))
    assert not store.exists(KEY)


def test_a_save_overwrites_the_previous_archive(store: Store, tmp_path: Path) -> None:
    store.put(KEY, archive_of({"old-wheel": b"old"}))
    cache = tmp_path / "uv"
    cache.mkdir()
    before = uv_cache.snapshot(cache)
    fill_like_uv(cache)
    assert uv_cache.save(store, "debian-12", "x86_64", cache, before)
    with tarfile.open(fileobj=io.BytesIO(store.read(KEY)[0])) as archive:
        names = archive.getnames()
    assert "./CACHEDIR.TAG" in names and "old-wheel" not in names


@pytest.mark.parametrize(
    "archive",
    [
        b"not a gzip stream",
        archive_of({"archive-v0/a": b"x" * 100})[:60],  # truncated
        archive_of({"../outside": b"escaped"}),
        archive_of({}, links={"wheels-v7/evil": "/etc"}),
        archive_of({}, links={"wheels-v7/evil": "../../../../outside"}),
    ],
    ids=["garbage", "truncated", "dotdot", "absolute-link", "escaping-link"],
)
def test_a_bad_or_unsafe_archive_is_not_used_and_writes_nothing(
    store: Store, tmp_path: Path, archive: bytes
) -> None:
    store.put(KEY, archive)
    job = tmp_path / "job"
    cache = job / "home" / "uv"
    assert not uv_cache.restore(store, "debian-12", "x86_64", cache)
    assert not cache.exists()
    assert [p.name for p in job.rglob("*")] == ["home"]  # nothing outside, no leftovers
    assert not (tmp_path / "outside").exists()


def test_an_absolute_member_lands_inside_the_cache(store: Store, tmp_path: Path) -> None:
    store.put(KEY, archive_of({"/abs/inside": b"kept"}))
    cache = tmp_path / "uv"
    assert uv_cache.restore(store, "debian-12", "x86_64", cache)
    assert (cache / "abs" / "inside").read_bytes() == b"kept"  # the "data" filter strips the "/"


def test_a_cache_over_the_limit_is_not_saved(store: Store, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(uv_cache, "MAX_ARCHIVE_BYTES", 64)
    cache = tmp_path / "uv"
    cache.mkdir()
    before = uv_cache.snapshot(cache)
    fill_like_uv(cache)
    assert not uv_cache.save(store, "debian-12", "x86_64", cache, before)
    assert not store.exists(KEY)


def test_a_refused_save_does_not_fail_the_build(s3_client, tmp_path: Path) -> None:
    no_bucket = S3Store("no-such-bucket", "python", client=s3_client)
    cache = tmp_path / "uv"
    cache.mkdir()
    before = uv_cache.snapshot(cache)
    fill_like_uv(cache)
    assert not uv_cache.save(no_bucket, "debian-12", "x86_64", cache, before)


def test_prepare_fills_only_a_fresh_cache_beside_an_s3_store(s3_store, local_store, tmp_path: Path) -> None:
    saved = tmp_path / "saved"
    saved.mkdir()
    fill_like_uv(saved)
    s3_store.put(KEY, archive_of({"CACHEDIR.TAG": b"tag"}))
    fresh = tmp_path / "job" / "uv"
    before = uv_cache.prepare(s3_store, "debian-12", "x86_64", fresh)
    assert before == {"CACHEDIR.TAG": 3} and (fresh / "CACHEDIR.TAG").read_bytes() == b"tag"
    # A warm local cache (a developer's, maybe other platforms'): used as it is, never uploaded.
    assert uv_cache.prepare(s3_store, "debian-12", "x86_64", saved) is None
    # A directory store keeps its cache directory itself (runtimes/.cache/uv): no archive.
    local_store.put(KEY, archive_of({"CACHEDIR.TAG": b"tag"}))
    empty = tmp_path / "local" / "uv"
    assert uv_cache.prepare(local_store, "debian-12", "x86_64", empty) is None
    assert empty.is_dir() and not any(empty.iterdir())
    # Beside an S3 store with nothing saved yet: an empty cache, saved after the build.
    assert uv_cache.prepare(s3_store, "debian-12", "aarch64", tmp_path / "arm" / "uv") == {}
