"""`buildfarm serve` closes a connection that sits idle (its handler's socket timeout)."""

from __future__ import annotations

import socket

from loopback import serve_in_background

from buildfarm.serve import PublicStoreHandler, make_server


def test_an_idle_connection_is_closed(tmp_path, monkeypatch) -> None:
    """A client that connects and sends nothing holds its thread only until the idle timeout."""
    monkeypatch.setattr(PublicStoreHandler, "timeout", 0.5)
    httpd = make_server(tmp_path, "127.0.0.1", 0)
    serve_in_background(httpd)
    try:
        with socket.create_connection(httpd.server_address[:2], timeout=10) as idle:
            assert idle.recv(1) == b""  # closed by the server, long before the client's 10 s
    finally:
        httpd.shutdown()
        httpd.server_close()
