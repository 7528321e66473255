"""How `buildfarm verify` reads a build: each document it parses is the one it hashes (a server
answering twice cannot swap one in), and a read that fails (a truncated body, a server that
does not speak HTTP, a bad URL, a directory where a file should be) is one error line, exit 2."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import socketserver
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import test_verify_build as built
from loopback import serve_in_background

OTHER_DIR = built.CELL_DIR.replace(f"/{built.BUILD}", f"/{built.BUILD + 1}")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _Forging(_QuietHandler):
    """Serves the directory, but answers the first GET of a path in `first` with its bytes;
    counts the GETs of each path in `gets`."""

    def __init__(self, *args: object, first: dict[str, bytes], gets: Counter[str], **kwargs: object) -> None:
        self.first, self.gets = first, gets
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self.gets[self.path] += 1
        data = self.first.pop(self.path, None)
        if data is None:
            super().do_GET()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Truncated(_QuietHandler):
    """Serves the directory, but sends only the first half of the bodies of `cut` (the
    Content-Length promises all of it) and closes the connection."""

    def __init__(self, *args: object, cut: set[str], **kwargs: object) -> None:
        self.cut = cut
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        if self.path not in self.cut:
            super().do_GET()
            return
        data = Path(self.translate_path(self.path)).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.close_connection = True


class _NotHttp(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.rfile.readline()
        self.wfile.write(b"SSH-2.0-OpenSSH_9.2p1\r\n")


@contextmanager
def serving(handler: type[socketserver.BaseRequestHandler], **kwargs: object) -> Iterator[str]:
    """The base URL of a loopback server with that handler (its keyword arguments)."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), functools.partial(handler, **kwargs))
    server.daemon_threads = True
    serve_in_background(server)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_forged_first_answer_is_not_taken_for_the_signed_manifest(
    signed_store: Path, farm_pub: Path, capsys
) -> None:
    """Build 1 moved to build 2's directory, served by a server that answers the first GET of
    its manifest.json with one saying it is build 2 (and the signed one after): verify must
    hash the manifest it parsed, not fetch it again."""
    build = signed_store / OTHER_DIR
    build.parent.mkdir(parents=True, exist_ok=True)
    (signed_store / built.CELL_DIR).rename(build)
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["spec"]["artifact_dir"] = OTHER_DIR
    forged = json.dumps(manifest).encode()
    first = {f"/{OTHER_DIR}/manifest.json": forged}
    with serving(_Forging, directory=str(signed_store), first=first, gets=Counter()) as base:
        status, out, _ = built.run_cli(capsys, "verify", f"{base}/{OTHER_DIR}/", "--pubkey", str(farm_pub))
    assert not first, "the forged manifest was never fetched"
    listed = built.sha256(build / "manifest.json")
    assert (status, out.splitlines()) == (
        1,
        [f"manifest.json: sha256 {hashlib.sha256(forged).hexdigest()} differs from SHA256SUMS's {listed}"],
    )


def test_each_document_is_fetched_once(signed_store: Path, farm_pub: Path, capsys) -> None:
    """What verify parses (and the signatures it checks) it fetches once and hashes: a second
    GET could be answered with another document than the one checked."""
    gets: Counter[str] = Counter()
    with serving(_Forging, directory=str(signed_store), first={}, gets=gets) as base:
        status, _, _ = built.run_cli(capsys, "verify", f"{base}/{built.CELL_DIR}/", "--pubkey", str(farm_pub))
    assert status == 0
    parsed = ["manifest.json", "sbom.cdx.json", "provenance.json", "provenance.json.sig"]
    assert {name: gets[f"/{built.CELL_DIR}/{name}"] for name in parsed} == dict.fromkeys(parsed, 1)


def verify_fails_with_one_error(capsys: pytest.CaptureFixture[str], location: str, pub: Path) -> str:
    """verify's exit 2 and its one error line, which it returns."""
    status, out, err = built.run_cli(capsys, "verify", location, "--pubkey", str(pub))
    assert (status, out) == (2, ""), (status, out, err)
    assert err.startswith("buildfarm verify: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("name", ["manifest.json", built.TARBALL])
def test_a_truncated_body_is_one_error(name: str, signed_store: Path, farm_pub: Path, capsys) -> None:
    with serving(_Truncated, directory=str(signed_store), cut={f"/{built.CELL_DIR}/{name}"}) as base:
        err = verify_fails_with_one_error(capsys, f"{base}/{built.CELL_DIR}/", farm_pub)
    assert f"{built.CELL_DIR}/{name}: cannot fetch (truncated: " in err


def test_a_server_not_speaking_http_is_one_error(farm_pub: Path, capsys) -> None:
    with serving(_NotHttp) as base:
        err = verify_fails_with_one_error(capsys, f"{base}/{built.CELL_DIR}/", farm_pub)
    assert "cannot fetch" in err


@pytest.mark.parametrize("url", ["http://127.0.0.1:abc/x/", "http://[::1/x/"])
def test_a_bad_url_is_one_error(url: str, farm_pub: Path, capsys) -> None:
    err = verify_fails_with_one_error(capsys, url, farm_pub)
    assert f"{url!r}: not a valid URL" in err


@pytest.mark.parametrize("name", ["sbom.cdx.json", "SHA256SUMS", built.TARBALL])
def test_a_directory_where_a_file_should_be_is_one_error(
    name: str, signed_store: Path, farm_pub: Path, capsys
) -> None:
    build = signed_store / built.CELL_DIR
    (build / name).unlink()
    (build / name).mkdir()
    err = verify_fails_with_one_error(capsys, str(build), farm_pub)
    assert f"{build / name}: cannot read (" in err
