"""install.sh's downloads and their redirects, with curl and with wget against real loopback
http and https servers (loopback_https.py): an https store is never left for plain http, and a
plain-http store (allowed for this machine only) is followed through no redirect at all, so it
can never send the installer to plain http on another machine."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .loopback_https import https_and_http_servers, write_certificate
from .test_install_script import make_store, run_installer


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return make_store(tmp_path / "store")


@pytest.mark.parametrize(
    ("url", "protocols"),
    [
        ("https://store.example", "=https"),
        ("http://127.0.0.1:9", "=http"),
        ("file:///srv/store", "=file"),
    ],
)
def test_downloads_and_their_redirects_keep_the_stores_protocol(tmp_path, url, protocols) -> None:
    """An https store is never left for plain http, not even by a redirect (curl --proto-redir);
    a plain-http store is followed through no redirect at all (--max-redirs 0)."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "curl").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/curl-args\nexit 22\n')
    (fake / "curl").chmod(0o755)
    result = run_installer(tmp_path, None, "--base-url", url, "--list", "--skip-signatures")
    assert result.returncode != 0 and "download failed" in result.stderr
    args = (tmp_path / "curl-args").read_text().split()
    assert args[args.index("--proto") + 1] == protocols and args[args.index("--proto-redir") + 1] == protocols
    no_redirects = "--max-redirs" in args and args[args.index("--max-redirs") + 1] == "0"
    assert no_redirects == url.startswith("http://")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    return write_certificate(tmp_path_factory.mktemp("tls"))


def _only_downloader(tmp_path: Path, tool: str, certificate: tuple[Path, Path]) -> dict[str, str]:
    """The environment of a machine with one downloader (curl or wget) that trusts certificate."""
    tools = tmp_path / f"only-{tool}"
    tools.mkdir()
    for name in (tool, "bash", "awk", "sed", "head", "mktemp", "rm", "sha256sum", "cut", "grep",
                 "tar", "gzip", "mkdir", "cat", "ls", "chmod", "mv"):  # fmt: skip
        (tools / name).symlink_to(shutil.which(name))
    (tmp_path / "wgetrc").write_text(f"ca_certificate = {certificate[0]}\n")
    return {
        "PATH": f"{tmp_path / 'fakebin'}:{tools}",
        "WGETRC": str(tmp_path / "wgetrc"),
        "CURL_CA_BUNDLE": str(certificate[0]),
        "no_proxy": "127.0.0.1",
        "NO_PROXY": "127.0.0.1",
    }


@pytest.mark.parametrize("tool", ["curl", "wget"])
def test_a_redirect_never_takes_an_https_store_to_http(tmp_path, store, certificate, tool) -> None:
    """curl refuses the redirect to http (--proto-redir); wget cannot restrict where one goes
    (its --https-only is for recursive downloads), so from an https store it follows none."""
    env = _only_downloader(tmp_path, tool, certificate)
    with https_and_http_servers(store, certificate) as (https, http):
        prefix = tmp_path / "py"
        direct = run_installer(tmp_path, None, "--base-url", https, "--prefix", str(prefix), environ=env)
        assert direct.returncode == 0, direct.stderr
        ran = subprocess.run([prefix / "bin" / "python3"], capture_output=True, text=True)
        assert ran.stdout.strip() == "Python 3.13.5"
        to_http = run_installer(tmp_path, None, "--base-url", f"{https}/to/http", "--list", environ=env)
        assert to_http.returncode != 0 and to_http.stdout == ""
        assert f"download failed: {https}/to/http/versions.json" in to_http.stderr
        to_https = run_installer(tmp_path, None, "--base-url", f"{https}/to/https", "--list", environ=env)
        if tool == "curl":
            assert to_https.stdout.split() == ["3.13.5", "3.12.8"], to_https.stderr
        else:
            assert to_https.returncode != 0 and to_https.stdout == ""
            assert "(wget follows no redirect from an https store: if it redirects, install curl)" in (
                to_https.stderr
            )
        # A (loopback) http store's redirects are followed by neither (test below), to https too.
        upgraded = run_installer(tmp_path, None, "--base-url", f"{http}/to/https", "--list", environ=env)
        assert upgraded.returncode != 0 and upgraded.stdout == "" and NO_REDIRECT in upgraded.stderr


NO_REDIRECT = (
    "(a plain-http store is followed through no redirect: if it redirects, give --base-url the URL it "
    "redirects to)"
)


@pytest.mark.parametrize("tool", ["curl", "wget"])
def test_a_loopback_http_store_is_followed_through_no_redirect(tmp_path, store, certificate, tool) -> None:
    """Plain http is allowed for this machine only: a loopback store's redirect to plain http on
    another machine (AWAY, where nothing answers: refused before any connection, or the run
    would wait for it) is not followed by curl nor wget, and neither is one to this machine."""
    env = _only_downloader(tmp_path, tool, certificate)
    with https_and_http_servers(store, certificate) as (_, http):
        direct = run_installer(tmp_path, None, "--base-url", http, "--list", environ=env)
        assert direct.returncode == 0 and direct.stdout.split() == ["3.13.5", "3.12.8"], direct.stderr
        for target in ("away", "http"):
            started = time.monotonic()
            result = run_installer(tmp_path, None, "--base-url", f"{http}/to/{target}", "--list", environ=env)
            assert result.returncode != 0 and result.stdout == "", result.stderr
            assert f"download failed: {http}/to/{target}/versions.json {NO_REDIRECT}" in result.stderr
            assert time.monotonic() - started < 20  # no connection to AWAY was waited for
