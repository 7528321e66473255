"""Shared fixtures: the loopback source mirror and paths to the shared sources."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CPYTHON_SRC = SHARED / "cpython-src"
TEST_VERSION = "3.13.5"


def _sha256sums() -> dict[str, str]:
    sums = {}
    for line in (CPYTHON_SRC / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        sums[name.lstrip("*")] = digest
    return sums


@pytest.fixture(scope="session")
def source_sha256() -> str:
    """The upstream sha256 of Python-3.13.5.tar.xz."""
    return _sha256sums()[f"Python-{TEST_VERSION}.tar.xz"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def http_dir_server() -> Iterator[callable]:
    """serve(directory) -> base URL of a loopback HTTP server for it; all stopped at the end."""
    servers = []

    def serve(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()


@pytest.fixture(scope="session")
def source_mirror(tmp_path_factory: pytest.TempPathFactory, http_dir_server) -> str:
    """A python.org-shaped mirror of ../shared/cpython-src served over loopback HTTP:
    <base>/<version>/Python-<version>.tar.xz."""
    root = tmp_path_factory.mktemp("mirror")
    for tarball in CPYTHON_SRC.glob("Python-*.tar.xz"):
        version = tarball.name.removeprefix("Python-").removesuffix(".tar.xz")
        (root / version).mkdir()
        (root / version / tarball.name).symlink_to(tarball)
    return http_dir_server(root)
