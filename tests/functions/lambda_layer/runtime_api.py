"""A minimal Lambda Runtime API (the 2018-06-01 interface a custom runtime talks to) on
loopback: it hands out queued events at GET /runtime/invocation/next with Lambda's headers, and
records what the runtime posts to /response, /error and /init/error. Once the queue is empty,
/next blocks, as Lambda freezes an idle environment."""

from __future__ import annotations

import contextlib
import http.server
import json
import queue
import sys
import threading
from dataclasses import dataclass, field

from loopback import serve_in_background

API = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:buildfarm-test"


@dataclass
class Post:
    """One POST from the runtime."""

    path: str
    headers: dict[str, str]  # names in lower case (HTTP header names are case-insensitive)
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # the runtime was stopped: expected
            super().handle_error(request, client_address)


@dataclass
class RuntimeApi:
    events: queue.Queue = field(default_factory=queue.Queue)
    posts: queue.Queue = field(default_factory=queue.Queue)
    stopping: threading.Event = field(default_factory=threading.Event)
    server: http.server.ThreadingHTTPServer | None = None

    def invoke(self, request_id: str, event: object, deadline_ms: int) -> None:
        self.events.put((request_id, json.dumps(event).encode(), deadline_ms))

    @property
    def address(self) -> str:
        """host:port, as AWS_LAMBDA_RUNTIME_API gives it."""
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> RuntimeApi:
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the runtime client's curl expects

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != f"{API}/invocation/next":
                    self._reply(404, b'{"errorType":"NotFound"}')
                    return
                while not api.stopping.is_set():
                    try:
                        request_id, body, deadline_ms = api.events.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    headers = {
                        "Lambda-Runtime-Aws-Request-Id": request_id,
                        "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                        "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                        "Lambda-Runtime-Trace-Id": f"Root=1-00000000-{request_id[:24]:0<24};Sampled=0",
                        "Content-Type": "application/json",
                    }
                    self._reply(200, body, headers)
                    return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                api.posts.put(Post(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self._reply(202, b'{"status":"OK"}')

            def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the test stopped it
                    self.send_response(status)
                    for name, value in (headers or {"Content-Type": "application/json"}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

        self.server = _Server(("127.0.0.1", 0), Handler)
        serve_in_background(self.server)
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
