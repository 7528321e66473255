"""Serving the public part of a local store over HTTP (`buildfarm serve`), the way the CDN
serves the bucket: catalogs, uv metadata, install.sh and builds, with their content types;
never claims/, plans/, logs/, runs/ or a local store's .locks/ and .tmp-* files
(buildfarm.layout.is_public). No directory listings: "/" is index.html.

Good for a lab, an air-gapped mirror or a test; in production put a real web server or a CDN
in front of the bucket.
"""

from __future__ import annotations

import email.utils
import http.server
import ipaddress
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

from buildfarm.attest.build_files import CONTENT_TYPES as BUILD_FILE_TYPES
from buildfarm.attest.build_files import SIGNATURE_TYPE
from buildfarm.catalog.install_script import INSTALLER_TYPE
from buildfarm.layout import INDEX_KEY, INSTALLER_KEY, SIGNATURE_SUFFIX, is_public
from buildfarm.store import StoreError, check_key

# The types the writers store a file kind with, by file name: the publish side's SHA256SUMS,
# sbom.cdx.json and provenance.json (attest.build_files), and install.sh (catalog.install_script).
# They win over the suffixes below, as the bucket serves what the writers stored.
WRITTEN_TYPES: dict[str, str] = {**BUILD_FILE_TYPES, INSTALLER_KEY: INSTALLER_TYPE}
# Suffix -> Content-Type for the rest, first match wins (.tar.gz before .gz); signatures as
# attest.build_files stores them. A key not listed here is served as application/octet-stream.
CONTENT_TYPES: tuple[tuple[str, str], ...] = (
    (".tar.gz", "application/gzip"),
    (".tgz", "application/gzip"),
    (".json", "application/json"),
    (".html", "text/html; charset=utf-8"),
    (".sh", "text/x-shellscript; charset=utf-8"),
    (".deb", "application/vnd.debian.binary-package"),
    (".rpm", "application/x-rpm"),
    (".log", "text/plain; charset=utf-8"),
    (".txt", "text/plain; charset=utf-8"),
    (".asc", "application/pgp-signature"),
    (SIGNATURE_SUFFIX, SIGNATURE_TYPE),
)
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def content_type(key: str) -> str:
    """The Content-Type a key is served with."""
    name = key.rsplit("/", 1)[-1]
    if name in WRITTEN_TYPES:
        return WRITTEN_TYPES[name]
    return next((kind for suffix, kind in CONTENT_TYPES if name.endswith(suffix)), DEFAULT_CONTENT_TYPE)


def public_file(root: Path, request_path: str) -> Path | None:
    """The file a request path names inside the store, if it may be served; None otherwise
    (404). The path is percent-decoded once; it must then be a valid store key (no '.', '..',
    empty or odd segments), public, and resolve (symlinks followed) to a public file inside
    the store."""
    path = request_path.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        return None
    try:
        key = unquote(path[1:], errors="strict") or INDEX_KEY
        check_key(key)
    except (StoreError, UnicodeDecodeError):
        return None
    if not is_public(key):
        return None
    real_root = root.resolve()
    try:
        target = root.joinpath(*key.split("/")).resolve(strict=True)
        inside = target.relative_to(real_root).as_posix()
    except (OSError, ValueError, RuntimeError):  # absent, a symlink loop, or outside the store
        return None
    return target if is_public(inside) and target.is_file() else None


IDLE_TIMEOUT_SECONDS = 60


class PublicStoreHandler(http.server.BaseHTTPRequestHandler):
    """GET and HEAD of the store's public files; 404 for everything else."""

    server_version = "buildfarm-serve"
    store_root: Path = Path()  # set by handler_for()
    # Seconds a connection may sit idle (socket timeout): a client that opens connections and
    # sends nothing would otherwise hold a thread each, for good (`--bind 0.0.0.0` serves a LAN).
    timeout = IDLE_TIMEOUT_SECONDS

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _answer(self, with_body: bool) -> None:
        target = public_file(self.store_root, self.path)
        if target is None:
            self.send_error(404, "Not Found")
            return
        try:
            handle = target.open("rb")
        except OSError:
            self.send_error(404, "Not Found")
            return
        with handle:
            stat = target.stat()
            self.send_response(200)
            self.send_header("Content-Type", content_type(target.name))
            self.send_header("Content-Length", str(stat.st_size))
            self.send_header("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True))
            self.end_headers()
            if with_body:
                shutil.copyfileobj(handle, self.wfile)


def handler_for(root: Path) -> type[PublicStoreHandler]:
    return type("StoreHandler", (PublicStoreHandler,), {"store_root": Path(root)})


def parse_bind(text: str) -> str:
    """An IP address to listen on; ValueError naming it otherwise."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"--bind {text!r}: not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::)") from None


def make_server(root: Path, bind: str, port: int) -> http.server.ThreadingHTTPServer:
    """A threaded HTTP server for the store's public part, listening (OSError if it cannot)."""

    class Server(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        daemon_threads = True

    return Server((bind, port), handler_for(root))


def server_url(server: http.server.HTTPServer) -> str:
    host, port = server.server_address[:2]
    host = f"[{host}]" if ":" in str(host) else host
    return f"http://{host}:{port}/"


def serve_forever(server: http.server.HTTPServer, announce: Callable[[str], None]) -> None:
    """Serve until Ctrl-C (or SIGTERM raised as KeyboardInterrupt), then close the socket."""
    announce(server_url(server))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
