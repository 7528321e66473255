"""Which key signs for the farm, from its configuration (buildfarm.config.FarmConfig, the one
place that reads BUILDFARM_KMS_KEY_ID and BUILDFARM_SIGNING_KEY):

- kms_key_id (the cloud): the stack's KMS key, through boto3;
- else signing_key: a key file;
- else nothing configured: the Lambdas refuse to publish (require_signer), and `buildfarm run`
  uses the default key file (local_key_config creates the key file when absent), as `buildfarm
  reindex` of a directory store does when it exists (existing_local_signer; an S3 store is
  signed with a configured key only, never with a laptop's default file, and with a configured
  key file only when that is already the store's current key: s3_reindex_signer).

Whoever publishes is handed its signer (signer_for(config), require_signer(config)); nothing
below the entry points looks the key up. A signer of None publishes unsigned (a library caller
or a test with no key): the attestations and checksums without their signatures. Such a build
stays unsigned: published builds are never revisited, and no command signs one afterwards. To
have a signed build of that cell, rebuild it with a key configured (`buildfarm run --force
--versions ...`, or the workflow input {"force": true, ...}): that publishes a new build number,
signed; versions.json is signed again by the next signing publish, as every write signs it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from buildfarm.config import FarmConfig
from buildfarm.errors import UsageError
from buildfarm.keys_index import read_keys_index
from buildfarm.store import Store

from .signing import KeyFileSigner, KmsSigner, Signer, fingerprint, init_key, key_path_problem

KEY_ENV = FarmConfig.environment_variables()["signing_key"]  # BUILDFARM_SIGNING_KEY
KMS_ENV = FarmConfig.environment_variables()["kms_key_id"]  # BUILDFARM_KMS_KEY_ID
DEFAULT_KEY = Path("~/.config/buildfarm/signing-key.pem")


@functools.cache
def _kms_signer(key_id: str) -> KmsSigner:
    import boto3  # the cloud path only

    return KmsSigner(boto3.client("kms"), key_id)


def signer_for(config: FarmConfig) -> Signer | None:
    """The configured signer (KMS first, then a key file), None when neither is set."""
    if config.kms_key_id:
        return _kms_signer(config.kms_key_id)
    if config.signing_key:
        return KeyFileSigner(Path(config.signing_key))
    return None


def require_signer(config: FarmConfig) -> Signer:
    """The configured signer; UsageError naming the variables when there is none (a publisher
    never publishes unsigned because a variable is missing)."""
    signer = signer_for(config)
    if signer is None:
        raise UsageError(f"no signing key: set {KMS_ENV} (a KMS key) or {KEY_ENV} (a key file)")
    return signer


def key_path(explicit: str | None) -> Path:
    """--key, else $BUILDFARM_SIGNING_KEY, else ~/.config/buildfarm/signing-key.pem: `buildfarm
    keys`' own default, read without the rest of the configuration (a key is made or shown
    whatever else the environment says)."""
    return Path(explicit or os.environ.get(KEY_ENV, "").strip() or DEFAULT_KEY).expanduser()


def existing_local_signer(config: FarmConfig) -> Signer | None:
    """The signer `buildfarm run` signs a directory store with, for a command that publishes no
    build (reindex): the configured one (signer_for), else the default key file if there is
    one; never created here (None: there is none). A path in the way is a UsageError, as for
    run."""
    if config.kms_key_id or config.signing_key:
        return signer_for(config)
    path = DEFAULT_KEY.expanduser()
    if not path.exists() and not path.is_symlink():
        return None
    if problem := key_path_problem(path):
        raise UsageError(problem)
    return KeyFileSigner(path)


def s3_reindex_signer(config: FarmConfig, store: Store) -> Signer | None:
    """The signer `buildfarm reindex` signs an S3 store with: the KMS key as configured (the
    cloud's own); a key file only when its key is already the store's current key. Signing
    lists the signer's key as the current one (keys/keys.json), which install.sh bakes in and
    installers trust, and a reindex publishes no build: it never makes a local key the farm's.
    UsageError naming the file and its key otherwise; None when no key is configured."""
    signer = signer_for(config)
    if not isinstance(signer, KeyFileSigner):
        return signer
    key = fingerprint(signer.public_key_pem())
    current = read_keys_index(store)[0].current
    if key != current:
        raise UsageError(
            f"{KEY_ENV} {signer.path}: its key {key} is not the current signing key of "
            f"{store.location} ({current or 'none'}): reindex publishes no key to an S3 store; "
            f"unset {KEY_ENV} to reindex without it"
        )
    return signer


def local_key_config(config: FarmConfig, store_root: Path) -> tuple[FarmConfig, str | None]:
    """(config, message) for a local run: a KMS key is used as configured; else the key file
    (BUILDFARM_SIGNING_KEY, else the default one) is created when absent, never inside the
    store, and config names it; message says that it was created, and where. UsageError or
    SigningError (one line naming the path) when no key file can be there."""
    if config.kms_key_id:
        return config, None
    path = Path(config.signing_key or DEFAULT_KEY).expanduser()
    # A directory "exists" and a path under a file does not: refused here, in one line, before
    # the run builds anything (not a traceback from mkdir, or a failed read after the builds).
    if problem := key_path_problem(path):
        raise UsageError(problem)
    message = None
    if not path.exists():
        created = init_key(path, store_root=store_root)
        message = f"created the signing key {path} ({created}); its public key goes to the store's keys/"
    return config.model_copy(update={"signing_key": str(path)}), message
