"""A loopback HTTPS server for install.sh tests: a self-signed certificate for 127.0.0.1 that
curl (CURL_CA_BUNDLE) and wget (WGETRC's ca_certificate) are told to trust, serving a
directory, plus redirects from /to/<scheme>/<rest> to <scheme>'s server /<rest>, and from
/to/away/<rest> to plain http on another machine (AWAY: TEST-NET-1, never routed)."""

from __future__ import annotations

import datetime
import functools
import http.server
import ipaddress
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from loopback import serve_in_background

LOOPBACK = "127.0.0.1"
AWAY = "http://192.0.2.1"  # RFC 5737's TEST-NET-1: no machine answers there
# Valid from 2000 to 2099, so a test does not depend on today's date (nor on a faked clock).
_NOT_BEFORE = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER = datetime.datetime(2099, 12, 31, tzinfo=datetime.UTC)


def write_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for IP 127.0.0.1 and its key: (cert.pem, key.pem) in directory."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class _Handler(http.server.SimpleHTTPRequestHandler):
    targets: dict[str, str] = {}  # scheme -> base URL a /to/<scheme>/ path redirects to

    def do_GET(self) -> None:
        scheme, _, rest = self.path.removeprefix("/to/").partition("/")
        if self.path.startswith("/to/") and scheme in self.targets:
            self.send_response(302)
            self.send_header("Location", f"{self.targets[scheme]}/{rest}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _server(directory: Path, targets: dict[str, str]) -> http.server.ThreadingHTTPServer:
    handler = type("Handler", (_Handler,), {"targets": targets})
    serving = functools.partial(handler, directory=str(directory))
    return http.server.ThreadingHTTPServer((LOOPBACK, 0), serving)


@contextmanager
def https_and_http_servers(directory: Path, certificate: tuple[Path, Path]) -> Iterator[tuple[str, str]]:
    """(https base, http base), both serving directory; on each, /to/https/<rest> and
    /to/http/<rest> answer 302 with the other server's (or its own) /<rest>, /to/away/<rest>
    302 with AWAY/<rest>."""
    targets: dict[str, str] = {"away": AWAY}
    plain, secure = _server(directory, targets), _server(directory, targets)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    targets["http"] = f"http://127.0.0.1:{plain.server_address[1]}"
    targets["https"] = f"https://127.0.0.1:{secure.server_address[1]}"
    for server in (plain, secure):
        serve_in_background(server)
    try:
        yield targets["https"], targets["http"]
    finally:
        for server in (plain, secure):
            server.shutdown()
            server.server_close()
