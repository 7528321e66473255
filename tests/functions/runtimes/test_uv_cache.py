"""uv's download cache shared through the store by runtime builds beside an S3 store (cache/uv/
<platform>-<arch>.tar.gz), only where the farm enables it (BUILDFARM_RUNTIME_UV_CACHE, off by
default: uv does not re-check what it unpacked into its cache, and a real install below takes
an edited cache entry). On, it is restored into a fresh job's empty cache and saved back when uv
added to it, never used for a warm local cache or a directory store (which keeps the directory
itself); off, a build neither reads nor writes cache/uv/. A bad archive, one that would write
outside the cache, or a refused save never fails a build. The logic runs against a directory
store and moto S3."""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from runtime_definitions import write_svc_definitions

from buildfarm.layout import UV_CACHE_PREFIX, is_public, uv_cache_key
from buildfarm.runtimes import build as steps
from buildfarm.runtimes import runtime_build, uv_cache
from buildfarm.runtimes.definitions import find_definition
from buildfarm.runtimes.runtime_build import RuntimeRequest, build_runtime, find_uv
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
    before = uv_cache.prepare(s3_store, "debian-12", "x86_64", fresh, shared=True)
    assert before == {"CACHEDIR.TAG": 3} and (fresh / "CACHEDIR.TAG").read_bytes() == b"tag"
    # A warm local cache (a developer's, maybe other platforms'): used as it is, never uploaded.
    assert uv_cache.prepare(s3_store, "debian-12", "x86_64", saved, shared=True) is None
    # A directory store keeps its cache directory itself (runtimes/.cache/uv): no archive.
    local_store.put(KEY, archive_of({"CACHEDIR.TAG": b"tag"}))
    empty = tmp_path / "local" / "uv"
    assert uv_cache.prepare(local_store, "debian-12", "x86_64", empty, shared=True) is None
    assert empty.is_dir() and not any(empty.iterdir())
    # Beside an S3 store with nothing saved yet: an empty cache, saved after the build.
    assert uv_cache.prepare(s3_store, "debian-12", "aarch64", tmp_path / "arm" / "uv", shared=True) == {}
    # Not shared (the default): a fresh cache stays empty and is not saved.
    unshared = tmp_path / "unshared" / "uv"
    assert uv_cache.prepare(s3_store, "debian-12", "x86_64", unshared, shared=False) is None
    assert unshared.is_dir() and not any(unshared.iterdir())


def test_the_shared_cache_is_off_unless_the_farm_enables_it(s3_store, local_store, monkeypatch) -> None:
    monkeypatch.delenv("BUILDFARM_RUNTIME_UV_CACHE", raising=False)
    assert not uv_cache.shared(s3_store)
    monkeypatch.setenv("BUILDFARM_RUNTIME_UV_CACHE", "true")
    assert uv_cache.shared(s3_store)
    assert not uv_cache.shared(local_store)  # a directory store keeps its own cache directory


def s3_keys_used(client: Any) -> list[tuple[str, str]]:
    """(operation, key or prefix) of every S3 call `client` makes from now on."""
    calls: list[tuple[str, str]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, params.get("Key") or params.get("Prefix") or ""))

    client.meta.events.register("before-parameter-build.s3", record)
    return calls


@pytest.fixture
def stubbed_build(s3_store: S3Store, monkeypatch, tmp_path: Path) -> RuntimeRequest:
    """build_runtime's request for svc debian-12/x86_64 in the S3 store, its steps stubbed: what "assembling"
    does is add a wheel to uv's cache, as uv does; publishing returns the cell's directory."""
    monkeypatch.setattr(runtime_build, "check_placement", lambda platform, arch: None)
    monkeypatch.setattr(runtime_build, "find_uv", lambda: "uv")
    monkeypatch.setattr(runtime_build, "choose_python", lambda request: None)

    def assemble(request: RuntimeRequest, chosen: object, uv: str, work: Path) -> tuple[None, dict]:
        fill_like_uv(request.cache)
        return None, {"build": 1}

    monkeypatch.setattr(runtime_build, "assemble", assemble)
    monkeypatch.setattr(runtime_build, "publish", lambda *args: "runtimes/svc/2.1.0/debian-12/x86_64/1")
    definition = find_definition("svc", write_svc_definitions(tmp_path / "defs", "idna==3.10"))
    return RuntimeRequest(definition, "2.1.0", "debian-12", "x86_64", s3_store, tmp_path / "job" / "uv")


@pytest.mark.parametrize("setting", [None, "false"])
def test_unless_enabled_an_s3_build_neither_reads_nor_writes_the_shared_cache(
    stubbed_build: RuntimeRequest, s3_client, s3_store: S3Store, monkeypatch, setting: str | None
) -> None:
    """The default: a job of an S3 store starts with an empty cache and saves nothing (the job
    role has no cache/uv/ grant either: infra.job_roles)."""
    if setting is None:
        monkeypatch.delenv("BUILDFARM_RUNTIME_UV_CACHE", raising=False)
    else:
        monkeypatch.setenv("BUILDFARM_RUNTIME_UV_CACHE", setting)
    planted = archive_of({"archive-v0/planted/idna/__init__.py": b"planted"})
    s3_store.put(KEY, planted)
    calls = s3_keys_used(s3_client)
    request = stubbed_build
    assert build_runtime(request)[0] == "runtimes/svc/2.1.0/debian-12/x86_64/1"
    assert [call for call in calls if UV_CACHE_PREFIX in call[1]] == []  # no read, head or write
    assert not (request.cache / "archive-v0" / "planted").exists()  # not restored
    assert (request.cache / "CACHEDIR.TAG").exists()  # the build's own downloads stay in the job
    assert s3_store.read(KEY)[0] == planted  # not saved over


def test_enabled_an_s3_build_restores_and_saves_the_shared_cache(
    stubbed_build: RuntimeRequest, s3_client, s3_store: S3Store, monkeypatch
) -> None:
    monkeypatch.setenv("BUILDFARM_RUNTIME_UV_CACHE", "true")
    s3_store.put(KEY, archive_of({"archive-v0/saved/idna/__init__.py": b"saved"}))
    calls = s3_keys_used(s3_client)
    request = stubbed_build
    build_runtime(request)
    used = [operation for operation, key in calls if key.endswith(KEY)]
    assert "GetObject" in used and "PutObject" in used
    assert (request.cache / "archive-v0" / "saved" / "idna" / "__init__.py").read_bytes() == b"saved"
    with tarfile.open(fileobj=io.BytesIO(s3_store.read(KEY)[0])) as archive:
        assert "./CACHEDIR.TAG" in archive.getnames()  # what uv added, saved back


def wheel(directory: Path, code: bytes) -> Path:
    """directory/pkg-1.0-py3-none-any.whl: a one-module wheel (pkg/__init__.py is `code`)."""
    files = {
        "pkg/__init__.py": code,
        "pkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n",
        "pkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }

    def digest(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{name},sha256={digest(data)},{len(data)}\n" for name, data in files.items())
    path = directory / "pkg-1.0-py3-none-any.whl"
    directory.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("pkg-1.0.dist-info/RECORD", record + "pkg-1.0.dist-info/RECORD,,\n")
    return path


def test_uv_installs_an_edited_cache_entry_despite_the_lock_hash(tmp_path: Path) -> None:
    """Why the shared cache is off by default: uv checks a distribution's hash when it downloads
    it, not the files it unpacked into its cache. The farm's own install step, hash-checking,
    from a cache whose unpacked wheel was edited, installs the edited code."""
    uv = find_uv()
    found = wheel(tmp_path / "wheels", b"ORIGIN = 'locked'\n")
    requirements = tmp_path / "requirements.txt"
    sha256 = hashlib.sha256(found.read_bytes()).hexdigest()
    requirements.write_text(f"--no-index\n--find-links {found.parent}\npkg==1.0 --hash=sha256:{sha256}\n")
    cache = tmp_path / "cache"

    def install(name: str) -> str:
        tree = steps.Tree(tmp_path / name, f"/opt/{name}")
        venv = [uv, "venv", "--no-config", "--quiet", "--python", sys.executable, tree.path]
        subprocess.run(venv, check=True)
        steps.install_requirements(uv, tree, requirements, cache, "requirements.txt")
        origin = subprocess.check_output([tree.python, "-c", "import pkg; print(pkg.ORIGIN)"], text=True)
        return origin.strip()

    assert install("first") == "locked"
    (unpacked,) = cache.glob("archive-v0/*/pkg/__init__.py")
    unpacked.write_text("ORIGIN = 'edited in the cache'\n")
    assert install("second") == "edited in the cache"  # exit 0: no hash mismatch reported
