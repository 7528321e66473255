"""`buildfarm reindex` (alias `publish`): rewrite a store's derived files for the URL it is
served at, building nothing; `buildfarm serve`: serve a local store's public part over HTTP."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

from buildfarm import clock
from buildfarm.attest.farm_signer import existing_local_signer, s3_reindex_signer
from buildfarm.attest.signing import Signer
from buildfarm.catalog.derived import check_base_url, reindex, store_public_url
from buildfarm.catalog.install_script import embedded_base_url, installer_base
from buildfarm.cli.plan import add_store_argument
from buildfarm.cli.store_errors import STORE_FAILURES, store_failure
from buildfarm.config import ConfigError, FarmConfig, resolve_store_location
from buildfarm.errors import BuildfarmError, UsageError
from buildfarm.layout import INSTALLER_KEY, download_metadata_key
from buildfarm.platforms import load_registry
from buildfarm.serve import make_server, parse_bind, serve_forever
from buildfarm.store import Store, StoreNotFound, open_store

DEFAULT_PORT = 8000
_PORT = re.compile(r"[0-9]{1,5}")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reindex",
        aliases=["publish"],
        help="rewrite a store's derived files for the URL it is served at (builds nothing)",
        description=(
            "Regenerate what is derived from versions.json (download-metadata/<platform>.json for "
            "uv, index.html, install.sh) with absolute URLs under the base URL: after moving or copying a "
            "store, or to serve it at a new address. Builds and publishes no cell. The base URL "
            "sticks: later runs that name none keep it."
        ),
    )
    add_store_argument(parser)
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help="the URL the store is served at (default: $BUILDFARM_PUBLIC_BASE_URL, else the "
        "http(s) URL the store was last published for, else its own file:// or S3 URL)",
    )
    parser.set_defaults(func=run_reindex)

    parser = subparsers.add_parser(
        "serve",
        help="serve a local store's public part over HTTP",
        description=(
            "Serve the public part of a local store over HTTP, as the CDN serves the bucket: "
            "catalogs, uv metadata, install.sh and builds, never claims/, plans/, logs/, runs/ "
            "or dotfiles. Installers use the URL the store was published for: run `buildfarm "
            "reindex --base-url URL` with the address people reach this server at."
        ),
    )
    parser.add_argument(
        "--store", metavar="DIR", help="the store directory (default: $BUILDFARM_STORE, else ./dist)"
    )
    parser.add_argument(
        "--port",
        default=str(DEFAULT_PORT),
        metavar="N",
        help=f"TCP port (default {DEFAULT_PORT}; 0: any free port)",
    )
    parser.add_argument(
        "--bind",
        default="127.0.0.1",
        metavar="ADDR",
        help="IP address to listen on (default 127.0.0.1; 0.0.0.0 or :: for every interface)",
    )
    parser.set_defaults(func=run_serve)


def _port(text: str) -> int:
    if not _PORT.fullmatch(text) or int(text) > 65535:
        raise UsageError(f"--port {text!r}: not a port number (0-65535)")
    return int(text)


def _base_url(args: argparse.Namespace, config: FarmConfig) -> str | None:
    if args.base_url is not None:
        return check_base_url(args.base_url, "--base-url")
    if config.public_base_url:
        return check_base_url(config.public_base_url, "BUILDFARM_PUBLIC_BASE_URL")
    return None


def _reindex_signer(store: Store, config: FarmConfig) -> Signer | None:
    """A directory store: the key `buildfarm run` signs it with (the configured one, else the
    default key file if there is one). An S3 store: the configured KMS key (the cloud's), or a
    configured key file that is already its current key, never a new one. None: a rewritten
    versions.json is left unsigned (said so)."""
    if store.location.startswith("s3://"):
        return s3_reindex_signer(config, store)
    return existing_local_signer(config)


def run_reindex(args: argparse.Namespace) -> int:
    try:
        config = FarmConfig.from_env(store=args.store)  # --store, else $BUILDFARM_STORE, else ./dist
    except ConfigError as error:
        raise UsageError(str(error)) from None
    base = _base_url(args, config)
    location = config.store
    if not location.startswith("s3://") and not os.path.isdir(location):
        raise UsageError(f"store {location}: no such directory")
    try:
        store = open_store(location)
        public_url = store_public_url(store, base)
        registry, now = load_registry(), clock.now()
        signer = _reindex_signer(store, config)
        written = reindex(store, registry, config.enabled_platforms, public_url, now, signer=signer)
    except StoreNotFound:
        raise UsageError(f"store {location}: nothing is published there (no versions.json)") from None
    except (*STORE_FAILURES, ValueError) as error:  # exit 2, as `run` of the same store
        raise store_failure(location, error) from None
    except OSError as error:
        raise BuildfarmError(f"store {location}: {error.strerror}: {error.filename}") from None
    print(f"reindexed {location} for {installer_base(public_url)}: wrote {', '.join(written)}")
    return 0


def _installer_hints(root: Path, url: str) -> list[str]:
    """What to tell people once the server listens: how to install from it, or how to make the
    store's derived files point at it."""
    try:
        embedded = embedded_base_url((root / INSTALLER_KEY).read_bytes())
    except OSError:
        embedded = None
    if embedded is None or embedded.startswith("file:"):
        return [
            f"note: this store's install.sh and uv metadata point at {embedded or 'nothing'}, not here;",
            f"  for installers to use this server: buildfarm reindex --store {root} --base-url {url}",
        ]
    return [
        f"install.sh: curl -fsSL {embedded}/install.sh | bash -s -- --list",
        f"uv:         UV_PYTHON_DOWNLOADS_JSON_URL={embedded}/{download_metadata_key('<platform>')} "
        "uv python install 3.13",
    ]


def _stop_on_sigterm() -> None:
    """Ctrl-C and SIGTERM stop the server. SIGINT is set explicitly: a process started with
    SIGINT ignored (a background job, a test runner's worker) inherits that, and Python then
    installs no KeyboardInterrupt handler of its own."""

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def run_serve(args: argparse.Namespace) -> int:
    location = resolve_store_location(args.store)
    if location.startswith("s3://"):
        raise UsageError(f"--store {location}: serve serves a local directory (the bucket has its CDN)")
    root = Path(location)
    if not root.is_dir():
        raise UsageError(f"store {location}: no such directory")
    port = _port(args.port)
    try:
        bind = parse_bind(args.bind)
    except ValueError as error:
        raise UsageError(str(error)) from None
    try:
        server = make_server(root, bind, port)
    except OSError as error:
        raise BuildfarmError(f"cannot listen on {bind} port {port}: {error.strerror}") from None
    _stop_on_sigterm()

    def announce(url: str) -> None:
        print(f"serving the public part of {root} at {url} (Ctrl-C to stop)", flush=True)
        for line in _installer_hints(root, url.rstrip("/")):
            print(line, flush=True)

    serve_forever(server, announce)
    print("buildfarm serve: stopped", file=sys.stderr)
    return 0
