"""`buildfarm keys init|show`: the local signing key (a key file; the cloud signs with KMS);
`buildfarm verify PATH|URL --pubkey FILE`: check a published build's signature, checksums,
SBOM and provenance against pinned public keys."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from buildfarm.attest.signing import KeyFileSigner, SigningError, fingerprint, init_key, load_public_key
from buildfarm.attest.verify_build import open_build, verify_build
from buildfarm.config import ConfigError, resolve_store_location
from buildfarm.errors import UsageError

KEY_ENV = "BUILDFARM_SIGNING_KEY"
DEFAULT_KEY = Path("~/.config/buildfarm/signing-key.pem")


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
        help="verify a published build: signature, checksums, SBOM, provenance",
        description="Check a build directory (builds/<version>/<platform>/<arch>/<build>/, a path or "
        "an http(s) URL): SHA256SUMS.sig verifies with one of the pinned keys, every file matches "
        "SHA256SUMS, manifest.json's artifacts are in it, and the SBOM and provenance match the "
        "artifacts. Prints one line per problem; exit 1 if any.",
    )
    verify.add_argument("build", metavar="PATH|URL", help="the build directory or its URL")
    verify.add_argument(
        "--pubkey",
        metavar="FILE",
        action="append",
        required=True,
        help="a trusted public key (PEM); repeat for several (old keys of a rotation)",
    )
    verify.set_defaults(func=run_verify)


def key_path(explicit: str | None) -> Path:
    """--key, else $BUILDFARM_SIGNING_KEY, else ~/.config/buildfarm/signing-key.pem."""
    return Path(explicit or os.environ.get(KEY_ENV, "").strip() or DEFAULT_KEY).expanduser()


def _local_store() -> Path | None:
    """The local store a key must stay out of (None: the store is in S3 or misconfigured)."""
    try:
        location = resolve_store_location(None)
    except ConfigError:
        return None
    return None if location.startswith("s3://") else Path(location)


def run_keys_init(args: argparse.Namespace) -> int:
    path = key_path(args.key)
    shown = init_key(path, store_root=_local_store())
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


def read_public_keys(paths: list[str]) -> list[bytes]:
    keys = []
    for name in paths:
        try:
            pem = Path(name).read_bytes()
        except OSError as error:
            raise UsageError(f"--pubkey {name}: {error.strerror}") from None
        try:
            load_public_key(pem)
        except SigningError as error:
            raise UsageError(f"--pubkey {name}: {error}") from None
        keys.append(pem)
    return keys


def run_verify(args: argparse.Namespace) -> int:
    keys = read_public_keys(args.pubkey)
    files = open_build(args.build)
    problems = verify_build(files, keys)
    for problem in problems:
        print(problem)
    if problems:
        print(f"buildfarm verify: {files.where}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{files.where}: OK")
    return 0
