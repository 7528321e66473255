"""What install.sh says about the trust it could establish, run for real against a signed store:
--skip-signatures says that is why nothing was checked (A7); a check made with the key baked
into install.sh, fetched over plain http from another machine, says the key came with the
script itself (A5), over HTTP served on this machine's non-loopback address."""

from __future__ import annotations

import functools
import http.server
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback import serve_in_background

from buildfarm.catalog.install_script import render_installer

from .signed_store import VERSION, Key, SignedStore, make_signed_store
from .test_install_script import _tarball, run_installer

NOTE = "(signatures checked with the key that came with install.sh itself, over plain http: pin it with "


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Key:
    return Key.create(tmp_path_factory.mktemp("keys") / "farm")


@pytest.fixture
def signed(tmp_path, key) -> SignedStore:
    return make_signed_store(tmp_path / "store", key, {"tarball": ("python.tar.gz", _tarball(VERSION))})


def _baked(tmp_path: Path, base: str, store: SignedStore) -> Path:
    script = tmp_path / "published-install.sh"
    script.write_bytes(render_installer(base, [store.key.fingerprint]))
    return script


def test_skip_signatures_says_it_is_the_reason(tmp_path, signed) -> None:
    script = _baked(tmp_path, f"file://{signed.root}", signed)
    result = run_installer(
        tmp_path, None, "--skip-signatures", "--prefix", str(tmp_path / "py"), script=script
    )
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "signatures not checked" in line]
    assert notes == [
        "install.sh: signatures not checked: --skip-signatures"
        " (the sha256s in versions.json alone are trusted)"
    ]


def _this_machine_address() -> str | None:
    """An address of this machine that is not loopback (the one a route out would use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served_away(signed) -> Iterator[str]:
    """The signed store over plain http at this machine's non-loopback address."""
    address = _this_machine_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    handler = functools.partial(_Quiet, directory=str(signed.root))
    try:
        server = http.server.ThreadingHTTPServer((address, 0), handler)
    except OSError as error:
        pytest.skip(f"cannot serve on {address}: {error}")
    serve_in_background(server)
    try:
        yield f"http://{address}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_baked_key_over_plain_http_to_another_machine_says_where_the_key_came_from(
    tmp_path, signed, served_away
) -> None:
    prefix = tmp_path / "py"
    script = _baked(tmp_path, served_away, signed)
    result = run_installer(tmp_path, None, "--prefix", str(prefix), script=script)
    assert result.returncode == 0, result.stderr
    assert f"signature verified: versions.json (key {signed.key.fingerprint})" in result.stderr
    success = next(line for line in result.stderr.splitlines() if line.startswith("install.sh: installed"))
    assert success.startswith(
        f"install.sh: installed Python {VERSION} into {prefix}: run {prefix}/bin/python3 "
    )
    assert NOTE in success and "make the check independent of the transport)" in success
    # The key pinned by the user: no note.
    pinned = run_installer(
        tmp_path, None, "--prefix", str(prefix), "--pubkey", signed.key.fingerprint, script=script
    )
    assert pinned.returncode == 0, pinned.stderr
    assert "signature verified: versions.json" in pinned.stderr and NOTE not in pinned.stderr


def test_a_baked_key_over_loopback_or_file_has_no_note(tmp_path, signed, http_dir_server) -> None:
    for base in (f"file://{signed.root}", http_dir_server(signed.root)):
        result = run_installer(
            tmp_path, None, "--prefix", str(tmp_path / "py"), script=_baked(tmp_path, base, signed)
        )
        assert result.returncode == 0, result.stderr
        assert "signature verified: versions.json" in result.stderr and NOTE not in result.stderr
