"""Portable stores without a build: `buildfarm reindex` rewrites the derived files for a new
base URL (and a no-op publish does when the store moved), `buildfarm serve` serves only the
public part of a store with the right content types. Stores are published by the real
publisher from fake builds (conftest.fake_build); the server runs for real on loopback."""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback import serve_in_background

from buildfarm.catalog.derived import public_url_function, refresh_if_outdated, warn_local_base
from buildfarm.catalog.install_script import embedded_base_url
from buildfarm.cli import main
from buildfarm.layout import is_public
from buildfarm.plan import plan
from buildfarm.publish import publish
from buildfarm.serve import content_type, make_server
from buildfarm.store import LocalStore

from ..conftest import BUCKET, NOW, PREFIX, fake_build, read_json, write_published_matrix, write_releases

BUILDFARM = str(Path(sys.executable).parent / "buildfarm")
UV = str(Path(sys.executable).parent / "uv")
BUILD_DIR = "builds/3.13.5/debian-12/x86_64/1"
TARBALL = f"{BUILD_DIR}/python-3.13.5-debian-12-x86_64.tar.gz"
DEB = f"{BUILD_DIR}/python-3.13.5_1_amd64.deb"
RPM = "builds/3.13.5/rhel-9/x86_64/1/python-3.13.5-1.x86_64.rpm"
PRIVATE_FILES = (
    "claims/3.13.6/debian-12/x86_64.json",
    "plans/exec-9/plan.json",
    "logs/3.13.6/debian-12/x86_64/1/build.log",
    "logs/3.13.6/debian-12/x86_64/1/failure.json",
    "runs/exec-9.json",
    ".locks/00.lock",
    "builds/3.13.5/debian-12/x86_64/1/.tmp-abc123",
    ".hidden",
)
DERIVED = ("install.sh", "index.html", "download-metadata/debian-12.json", "download-metadata/rhel-9.json")


@pytest.fixture
def published(tmp_path, config, session_signer) -> LocalStore:
    """A store published by the real publisher with its file:// default (as `buildfarm run`
    leaves ./dist without BUILDFARM_PUBLIC_BASE_URL), plus the internal state a farm keeps."""
    store = LocalStore(tmp_path / "made-here")
    write_releases(store, ["3.13.5"])
    request = {"versions": ["3.13.5"], "platforms": ["debian-12", "rhel-9"], "arches": ["x86_64"]}
    the_plan = plan(request, store, config, "exec-1", NOW)
    for item in the_plan.items:
        fake_build(store, item.spec, kinds=("tarball", "deb", "rpm"))
    publish(the_plan.summary, store, config, now=NOW, signer=session_signer)
    for key in PRIVATE_FILES:
        path = store.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("private\n")
    return store


def moved(store: LocalStore, tmp_path: Path) -> LocalStore:
    target = tmp_path / "moved" / "dist"
    shutil.copytree(store.root, target)
    return LocalStore(target)


def derived_text(store: LocalStore) -> str:
    return "".join((store.root / key).read_text() for key in DERIVED)


# -- reindex -----------------------------------------------------------------------------------


def test_reindex_points_a_moved_store_at_its_new_base_url(published, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BUILDFARM_PUBLIC_BASE_URL", raising=False)
    assert f"file://{published.root}/" in derived_text(published)
    store = moved(published, tmp_path)
    versions_before = (store.root / "versions.json").read_bytes()

    assert main(["reindex", "--store", str(store.root), "--base-url", "http://127.0.0.1:8123/py/"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"reindexed {store.root} for http://127.0.0.1:8123/py: wrote install.sh, ")

    assert "file:///" not in derived_text(store)
    metadata = read_json(store, "download-metadata/debian-12.json")
    assert metadata["cpython-3.13.5-linux-x86_64-gnu"]["url"] == f"http://127.0.0.1:8123/py/{TARBALL}"
    assert embedded_base_url((store.root / "install.sh").read_bytes()) == "http://127.0.0.1:8123/py"
    # versions.json holds keys, not URLs: it is already right and left alone.
    assert (store.root / "versions.json").read_bytes() == versions_before
    # The original is untouched.
    assert f"file://{published.root}/" in derived_text(published)


def test_reindex_defaults_to_the_configured_public_base_url(published, capsys, monkeypatch):
    monkeypatch.setenv("BUILDFARM_PUBLIC_BASE_URL", "https://cdn.example.org/python")
    assert main(["publish", "--store", str(published.root)]) == 0  # the alias
    assert embedded_base_url((published.root / "install.sh").read_bytes()) == "https://cdn.example.org/python"
    assert "file:///" not in derived_text(published)


def test_reindex_repairs_versions_json_derived_view(published, capsys):
    document = read_json(published, "versions.json")
    document["python_versions"] = ["3.9.0"]
    published.put_json("versions.json", document)
    assert main(["reindex", "--store", str(published.root), "--base-url", "https://x.example"]) == 0
    assert "wrote versions.json, install.sh" in capsys.readouterr().out
    assert read_json(published, "versions.json")["python_versions"] == ["3.13.5"]


def test_reindex_of_an_s3_store(s3_store, capsys, monkeypatch):
    # The session's key file is not this store's key: reindex would refuse to publish it.
    monkeypatch.delenv("BUILDFARM_SIGNING_KEY", raising=False)
    write_published_matrix(s3_store, ["3.13.5", "3.12.8"], ["debian-12"], ["x86_64", "aarch64"], files=True)
    location = f"s3://{BUCKET}/{PREFIX}"
    assert main(["reindex", "--store", location, "--base-url", "https://cdn.example.org/python"]) == 0
    metadata = read_json(s3_store, "download-metadata/debian-12.json")
    assert metadata["cpython-3.12.8-linux-aarch64-gnu"]["url"].startswith(
        "https://cdn.example.org/python/builds/3.12.8/debian-12/aarch64/1/"
    )
    assert 'DEFAULT_BASE_URL="https://cdn.example.org/python"' in s3_store.read("install.sh")[0].decode()


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ("ftp://mirror.example/python", "not an http://, https:// or file:// URL"),
        ("127.0.0.1:8000", "not an http://, https:// or file:// URL"),
        ("http:///python", "no host"),
        ("http://x.example:99999/", "Port out of range"),
        ("http://x.example/python?v=1", "a base URL has no query or fragment"),
        ("http://x.example/python#top", "a base URL has no query or fragment"),
        ("http://x.example/$(reboot)", "only letters, digits and"),
        ("http://x.example/a b", "only letters, digits and"),
        # What is before the '@' is no host, though install.sh could take it for one.
        ("http://localhost:x@example.invalid/s", "a base URL has no user info (an '@' before the host)"),
        ("http://[::1]@example.com", "a base URL has no user info (an '@' before the host)"),
        ("https://user@cdn.example.org/python", "a base URL has no user info (an '@' before the host)"),
    ],
)
def test_a_bad_base_url_is_one_line_and_writes_nothing(published, base, message):
    before = {p: p.read_bytes() for p in published.root.rglob("*") if p.is_file()}
    result = subprocess.run(
        [BUILDFARM, "reindex", "--store", str(published.root), "--base-url", base],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"buildfarm reindex: error: --base-url {base!r}: {message}"), line
    assert {p: p.read_bytes() for p in published.root.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://[::1]:8000/", "http://[::1]:8000"),
        ("https://cdn.example.org/python/", "https://cdn.example.org/python"),
        ("file:///srv/dist", "file:///srv/dist"),
        ("http://mirror.lan:8080/~py@3/3%2B", "http://mirror.lan:8080/~py@3/3%2B"),  # '@' in the path
    ],
)
def test_good_base_urls_are_baked_into_install_sh(base, expected):
    from buildfarm.catalog.derived import check_base_url
    from buildfarm.catalog.install_script import render_installer

    assert check_base_url(base) == expected
    assert embedded_base_url(render_installer(expected)) == expected


def test_a_bad_public_base_url_variable_is_named(published, monkeypatch, capsys):
    monkeypatch.setenv("BUILDFARM_PUBLIC_BASE_URL", "https://x.example/`id`")
    assert main(["reindex", "--store", str(published.root)]) == 2
    assert "BUILDFARM_PUBLIC_BASE_URL: 'https://x.example/`id`'" in capsys.readouterr().err


def test_reindex_of_a_missing_or_empty_store_is_one_line(tmp_path):
    for store, message in [
        (tmp_path / "absent", "no such directory"),
        (tmp_path, "nothing is published there (no versions.json)"),
    ]:
        result = subprocess.run([BUILDFARM, "reindex", "--store", str(store)], capture_output=True, text=True)
        assert result.returncode == 2
        assert result.stderr.splitlines() == [f"buildfarm reindex: error: store {store}: {message}"]


def test_a_file_base_warns_once_and_says_how_to_set_one(published, tmp_path):
    store = moved(published, tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "BUILDFARM_PUBLIC_BASE_URL"}
    result = subprocess.run(
        [BUILDFARM, "reindex", "--store", str(store.root)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"buildfarm: warning: install.sh and the uv metadata point at file://{store.root}, which only "
        "this machine can read: set BUILDFARM_PUBLIC_BASE_URL (or run `buildfarm reindex --base-url "
        "URL`) to the URL the store is served at"
    ]
    # The store is repaired for where it is now, if only for this machine.
    assert f"file://{store.root}/" in derived_text(store) and str(published.root) not in derived_text(store)
    quiet = subprocess.run(
        [BUILDFARM, "reindex", "--store", str(store.root), "--base-url", "https://x.example"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_the_warning_is_given_once_per_process(published, config, caplog):
    """A local run publishes twice in one process (recovery, then its own Finalize)."""
    from buildfarm.catalog.derived import regenerate_derived
    from buildfarm.platforms import load_registry

    warn_local_base.cache_clear()
    public_url = public_url_function(published, None)
    with caplog.at_level(logging.WARNING, logger="buildfarm.catalog.derived"):
        for _ in range(3):
            regenerate_derived(published, load_registry(), ["debian-12"], public_url, NOW)
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
    assert "file://" in caplog.records[0].getMessage()


# -- a publish with nothing planned repairs a moved store ---------------------------------------


NOTHING_PLANNED = {"plan_id": "exec-2", "dry_run": False, "counts": {"planned": 0, "skipped_published": 2}}


def test_a_no_op_publish_rewrites_derived_files_written_for_another_base(
    published, config, tmp_path, session_signer
):
    store = moved(published, tmp_path)
    publish(NOTHING_PLANNED, store, config, now=NOW, signer=session_signer)
    assert str(published.root) not in derived_text(store)
    assert f"file://{store.root}/{TARBALL}" in (store.root / "download-metadata/debian-12.json").read_text()

    with_cdn = config.model_copy(update={"public_base_url": "https://cdn.example.org/python"})
    publish(NOTHING_PLANNED, store, with_cdn, now=NOW, signer=session_signer)
    assert embedded_base_url((store.root / "install.sh").read_bytes()) == "https://cdn.example.org/python"
    assert "file:///" not in derived_text(store)


def test_an_http_base_url_sticks_until_another_is_named(
    published, config, tmp_path, monkeypatch, capsys, session_signer
):
    """After `reindex --base-url`, runs and reindexes that name no base URL keep it, also when
    the directory moves (it is still served at that URL); naming another replaces it."""
    monkeypatch.delenv("BUILDFARM_PUBLIC_BASE_URL", raising=False)
    assert main(["reindex", "--store", str(published.root), "--base-url", "http://mirror.lan:8000"]) == 0
    store = moved(published, tmp_path)
    publish(NOTHING_PLANNED, store, config, now=NOW, signer=session_signer)  # a no-op run
    assert main(["reindex", "--store", str(store.root)]) == 0
    assert "for http://mirror.lan:8000: wrote" in capsys.readouterr().out
    request = {"versions": ["3.13.5"], "platforms": ["debian-11"], "arches": ["x86_64"]}
    the_plan = plan(request, store, config, "exec-3", NOW)
    fake_build(store, the_plan.items[0].spec)
    publish(the_plan.summary, store, config, now=NOW, signer=session_signer)  # a run that publishes a cell
    assert "file:///" not in derived_text(store)
    assert (
        "http://mirror.lan:8000/builds/3.13.5/debian-11/"
        in (store.root / "download-metadata/debian-11.json").read_text()
    )
    assert main(["reindex", "--store", str(store.root), "--base-url", f"file://{store.root}"]) == 0
    assert "http://mirror.lan" not in derived_text(store)


def test_a_no_op_publish_of_a_current_store_reads_one_object_and_writes_nothing(
    published, config, session_signer
):
    store = LocalStore(published.root)
    publish(NOTHING_PLANNED, store, config, now=NOW, signer=session_signer)
    assert store.calls["put"] == 0 and store.calls["read"] == 1, store.calls
    # A dry run touches nothing at all; neither does an empty store.
    store.calls.clear()
    publish({**NOTHING_PLANNED, "dry_run": True}, store, config, now=NOW, signer=session_signer)
    assert sum(store.calls.values()) == 0
    empty = LocalStore(published.root.parent / "empty")
    assert refresh_if_outdated(empty, None, [], None, NOW) == []
    assert not empty.root.exists()


# -- serve ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "public"),
    [
        ("versions.json", True),
        ("install.sh", True),
        ("download-metadata/debian-12.json", True),
        (TARBALL, True),
        (f"{BUILD_DIR}/build.log", True),
        ("claims", False),
        ("claims/3.13.5/debian-12/x86_64.json", False),
        ("plans/exec-1/items.json", False),
        ("plans", False),
        ("logs/3.13.5/debian-12/x86_64/1/build.log", False),
        ("runs/exec-1.json", False),
        (".locks/00.lock", False),
        (f"{BUILD_DIR}/.tmp-x1y2", False),
        ("builds/../claims/x.json", False),
        ("builds//x", False),
        ("claimsfoo.json", True),
    ],
)
def test_what_is_public(key, public):
    assert is_public(key) is public


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("versions.json", "application/json"),
        ("install.sh", "text/x-shellscript; charset=utf-8"),
        ("index.html", "text/html; charset=utf-8"),
        ("python-3.13.5-debian-12-x86_64.tar.gz", "application/gzip"),
        ("Python-3.11.2.tgz", "application/gzip"),
        ("python-3.13.5_1_amd64.deb", "application/vnd.debian.binary-package"),
        ("python-3.13.5-1.x86_64.rpm", "application/x-rpm"),
        ("SHA256SUMS", "text/plain; charset=utf-8"),
        ("build.log", "text/plain; charset=utf-8"),
        ("something.bin", "application/octet-stream"),
    ],
)
def test_content_types(name, expected):
    assert content_type(f"builds/x/{name}") == expected


@pytest.fixture
def server(published) -> Iterator[tuple[str, int]]:
    httpd = make_server(published.root, "127.0.0.1", 0)
    serve_in_background(httpd)
    yield httpd.server_address[:2]
    httpd.shutdown()
    httpd.server_close()


def fetch(address: tuple[str, int], path: str, method: str = "GET") -> tuple[int, str, bytes]:
    """A raw request: the path goes out exactly as given (no client-side normalising)."""
    connection = http.client.HTTPConnection(*address, timeout=10)
    connection.putrequest(method, path, skip_accept_encoding=True)
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, response.getheader("Content-Type") or "", body


def test_serve_answers_public_files_with_their_content_types(server, published):
    for path, kind in [
        ("/versions.json", "application/json"),
        ("/download-metadata/debian-12.json", "application/json"),
        ("/install.sh", "text/x-shellscript; charset=utf-8"),
        ("/index.html", "text/html; charset=utf-8"),
        ("/", "text/html; charset=utf-8"),
        (f"/{TARBALL}", "application/gzip"),
        (f"/{DEB}", "application/vnd.debian.binary-package"),
        (f"/{RPM}", "application/x-rpm"),
        (f"/{BUILD_DIR}/SHA256SUMS", "text/plain; charset=utf-8"),
        ("/versions.json?cache=no", "application/json"),
    ]:
        status, content, body = fetch(server, path)
        assert (status, content) == (200, kind), path
        key = path.split("?")[0].lstrip("/") or "index.html"
        assert body == (published.root / key).read_bytes(), path
    status, content, body = fetch(server, f"/{TARBALL}", method="HEAD")
    assert (status, content, body) == (200, "application/gzip", b"")


@pytest.mark.parametrize("key", PRIVATE_FILES)
def test_serve_never_answers_internal_state(server, key):
    assert fetch(server, f"/{key}")[0] == 404
    assert fetch(server, f"/{key}", method="HEAD")[0] == 404


@pytest.mark.parametrize(
    "path",
    [
        "/claims/",
        "/plans/",
        "/logs/",
        "/builds/",
        "/builds/3.13.5/",
        "/../made-here/versions.json",
        "/builds/../claims/3.13.6/debian-12/x86_64.json",
        "/builds/%2e%2e/claims/3.13.6/debian-12/x86_64.json",
        "/builds%2F..%2Fclaims%2F3.13.6%2Fdebian-12%2Fx86_64.json",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/%252e%252e/etc/passwd",
        "//etc/passwd",
        "/etc/passwd",
        "/.locks/00.lock",
        "/%2elocks/00.lock",
        "/versions.json%00.txt",
        "/%ff%fe",
        "/builds/escape",
        "/builds/to-claims",
        "no-leading-slash",
    ],
)
def test_serve_refuses_listings_traversal_and_escaping_links(server, published, path):
    (published.root / "builds" / "escape").symlink_to("/etc/passwd")
    (published.root / "builds" / "to-claims").symlink_to(published.root / "claims" / "3.13.6")
    assert fetch(server, path)[0] in (400, 404), path


def test_serve_command_prints_its_url_serves_and_stops_on_ctrl_c(published, tmp_path):
    # Started with SIGINT ignored, as a background job (or a test runner's worker) starts it:
    # Ctrl-C must stop it all the same.
    process = subprocess.Popen(
        [BUILDFARM, "serve", "--store", str(published.root), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "access.log").open("w"),
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        first = process.stdout.readline()
        assert first.startswith(f"serving the public part of {published.root} at http://127.0.0.1:"), first
        url = first.split(" at ", 1)[1].split()[0]
        # The store was published for file://: the server says how to point it here.
        assert process.stdout.readline().startswith("note: this store's install.sh and uv metadata point")
        hint = process.stdout.readline()
        wanted = f"buildfarm reindex --store {published.root} --base-url {url.rstrip('/')}"
        assert hint.strip() == f"for installers to use this server: {wanted}"
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        assert fetch((host, int(port)), "/versions.json")[0] == 200
        assert fetch((host, int(port)), "/claims/3.13.6/debian-12/x86_64.json")[0] == 404
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    log = (tmp_path / "access.log").read_text()
    assert "Traceback" not in log and log.rstrip().endswith("buildfarm serve: stopped")


def test_served_metadata_after_reindex_is_what_uv_lists(published, tmp_path):
    """The real uv reads the reindexed download metadata over HTTP, with URLs into the server."""
    httpd = make_server(published.root, "127.0.0.1", 0)
    serve_in_background(httpd)
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        assert main(["reindex", "--store", str(published.root), "--base-url", base]) == 0
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "UV_CACHE_DIR": str(tmp_path / "uv")}
        listed = subprocess.run(
            [UV, "python", "list", "--only-downloads", "--all-platforms", "--all-arches",
             "--output-format", "json", "--python-downloads-json-url",
             f"{base}/download-metadata/debian-12.json"],
            capture_output=True, text=True, env=env, timeout=60, check=True,
        )  # fmt: skip
    finally:
        httpd.shutdown()
        httpd.server_close()
    urls = {d["key"]: d["url"] for d in json.loads(listed.stdout)}
    assert urls["cpython-3.13.5-linux-x86_64-gnu"] == f"{base}/{TARBALL}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "99999"], "--port '99999': not a port number (0-65535)"),
        (["--port", "\uff18\uff10"], "--port '\uff18\uff10': not a port number (0-65535)"),
        (["--bind", "example.org"], "--bind 'example.org': not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::)"),
        (["--store", "s3://bucket/python"], "--store s3://bucket/python: serve serves a local directory"),
    ],
)
def test_serve_bad_arguments_are_one_line(published, args, message):
    result = subprocess.run(
        [BUILDFARM, "serve", "--store", str(published.root), *args], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr


def test_serve_on_a_busy_port_or_a_missing_store_is_one_line(published, server, tmp_path):
    busy = subprocess.run(
        [BUILDFARM, "serve", "--store", str(published.root), "--port", str(server[1])],
        capture_output=True,
        text=True,
    )
    assert busy.returncode == 1
    assert busy.stderr.splitlines() == [
        f"buildfarm serve: error: cannot listen on 127.0.0.1 port {server[1]}: Address already in use"
    ]
    missing = subprocess.run(
        [BUILDFARM, "serve", "--store", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        f"buildfarm serve: error: store {tmp_path / 'nope'}: no such directory"
    ]
