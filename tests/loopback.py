"""Loopback HTTP servers for tests, served from a background thread."""

from __future__ import annotations

import socketserver
import threading

# shutdown() waits for serve_forever's next poll: its default 0.5 s made every teardown wait.
SHUTDOWN_POLL_SECONDS = 0.05


def serve_in_background(server: socketserver.BaseServer) -> threading.Thread:
    """server.serve_forever() in a started daemon thread; server.shutdown() stops it promptly."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS}, daemon=True
    )
    thread.start()
    return thread
