"""`buildfarm keys init|show`: the local signing key (a key file; the cloud signs with KMS);
`buildfarm verify PATH|URL --pubkey FILE|SHA256:<hex>`: check a published build's signature,
checksums, SBOM and provenance, or a store's signed versions.json and its builds, against
pinned public keys."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from buildfarm.attest.farm_signer import DEFAULT_KEY, KEY_ENV, key_path
from buildfarm.attest.signing import KeyFileSigner, fingerprint, init_key
from buildfarm.attest.verify_build import BuildFiles, open_build
from buildfarm.attest.verify_store import (
    is_store_root,
    read_pinned_keys,
    store_root_of,
    verify_located_build,
    verify_store,
)
from buildfarm.config import ConfigError, resolve_store_location


def register(subparsers: argparse._SubParsersAction) -> None:
    keys = subparsers.add_parser(
        "keys",
        help="create or show the local signing key",
        description="The key file that signs a local store's SHA256SUMS, provenance and versions.json "
        "(the cloud signs with its KMS key). Publish its public key (keys show --public) and pin it "
        "where builds are verified.",
    )
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    init = actions.add_parser("init", help="create the key file (mode 0600, never overwritten)")
    show = actions.add_parser("show", help="print the key's fingerprint (and its public key)")
    for parser in (init, show):
        parser.add_argument(
            "--key",
            metavar="FILE",
            help=f"the key file (default: ${KEY_ENV}, else {DEFAULT_KEY})",
        )
    show.add_argument("--public", action="store_true", help="also print the public key (PEM)")
    init.set_defaults(func=run_keys_init)
    show.set_defaults(func=run_keys_show)

    verify = subparsers.add_parser(
        "verify",
        help="verify a published build or a whole store: signatures, checksums, SBOM, provenance",
        description="Check a build directory (builds/<version>/<platform>/<arch>/<build>/, a path or "
        "an http(s) URL): SHA256SUMS.sig verifies with one of the pinned keys, every file matches "
        "SHA256SUMS, manifest.json's artifacts are in it, the SBOM and provenance match the "
        "artifacts, and (a directory) it holds no file beyond them. Or a store's root: "
        "versions.json.sig verifies, and so does every build it lists "
        "(--catalog-only: the signature alone). Prints one line per problem; exit 1 if any.",
    )
    verify.add_argument("build", metavar="PATH|URL", help="the build directory, or the store root")
    verify.add_argument(
        "--pubkey",
        metavar="FILE|SHA256:HEX",
        action="append",
        required=True,
        help="a trusted public key: its PEM file, or its fingerprint (the store's keys/<hex>.pub is "
        "fetched and checked); repeat for several (old keys of a rotation)",
    )
    verify.add_argument(
        "--catalog-only",
        action="store_true",
        help="for a store root: check versions.json's signature only, not the builds it lists",
    )
    verify.set_defaults(func=run_verify)


def _local_store() -> Path | None:
    """The local store a key must stay out of (None: the store is in S3 or misconfigured)."""
    try:
        location = resolve_store_location(None)
    except ConfigError:
        return None
    return None if location.startswith("s3://") else Path(location)


def run_keys_init(args: argparse.Namespace) -> int:
    path = key_path(args.key)
    shown = init_key(path, store_root=_local_store())  # a path it cannot use: one error line
    print(f"created {path}")
    print(shown)
    return 0


def run_keys_show(args: argparse.Namespace) -> int:
    signer = KeyFileSigner(key_path(args.key))
    public = signer.public_key_pem()
    print(fingerprint(public))
    if args.public:
        sys.stdout.write(public.decode())
    return 0


def _root_of(location: str, files: BuildFiles) -> BuildFiles | None:
    """The store root a --pubkey fingerprint is looked up in: the location itself when it is
    a store root, else the root of the build directory it names."""
    if is_store_root(files):
        return files
    root = store_root_of(location)
    return open_build(root) if root else None


def run_verify(args: argparse.Namespace) -> int:
    files = open_build(args.build)
    keys = read_pinned_keys(args.pubkey, lambda: _root_of(args.build, files))
    if is_store_root(files):
        problems = verify_store(args.build, files, keys, builds=not args.catalog_only)
    else:
        problems = verify_located_build(args.build, files, keys)
    for problem in problems:
        print(problem)
    if problems:
        print(f"buildfarm verify: {files.where}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{files.where}: OK")
    return 0
