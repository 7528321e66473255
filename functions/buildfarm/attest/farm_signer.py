"""Which key signs for the farm, from its configuration (buildfarm.config.FarmConfig):

- kms_key_id (BUILDFARM_KMS_KEY_ID, the cloud): the stack's KMS key, through boto3;
- else signing_key (BUILDFARM_SIGNING_KEY): a key file;
- else nothing configured: the Lambdas refuse to publish (require_signer), and `buildfarm run`
  uses the default key file (local_key_config creates the key file when absent).

The process's signer is configured_signer(): the one the environment names, or None, for the
callers that are not handed one (the local farm's cells).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from buildfarm.config import FarmConfig
from buildfarm.errors import UsageError

from .signing import KeyFileSigner, KmsSigner, Signer, init_key

KEY_ENV = "BUILDFARM_SIGNING_KEY"
KMS_ENV = "BUILDFARM_KMS_KEY_ID"
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


def configured_signer() -> Signer | None:
    """The signer this process's environment names (BUILDFARM_KMS_KEY_ID, BUILDFARM_SIGNING_KEY),
    or None when it names none."""
    kms_key_id = (os.environ.get(KMS_ENV) or "").strip()
    signing_key = (os.environ.get(KEY_ENV) or "").strip()
    if not kms_key_id and not signing_key:
        return None
    values = {"kms_key_id": kms_key_id or None, "signing_key": signing_key or None}
    return signer_for(FarmConfig.defaults(**values))


def key_path(explicit: str | None) -> Path:
    """--key, else $BUILDFARM_SIGNING_KEY, else ~/.config/buildfarm/signing-key.pem."""
    return Path(explicit or os.environ.get(KEY_ENV, "").strip() or DEFAULT_KEY).expanduser()


def local_key_config(config: FarmConfig, store_root: Path) -> tuple[FarmConfig, str | None]:
    """(config, message) for a local run: a KMS key is used as configured; else the key file
    (BUILDFARM_SIGNING_KEY, else the default one) is created when absent, never inside the
    store, and config names it; message says that it was created, and where."""
    if config.kms_key_id:
        return config, None
    path = Path(config.signing_key or DEFAULT_KEY).expanduser()
    message = None
    if not path.exists():
        created = init_key(path, store_root=store_root)
        message = f"created the signing key {path} ({created}); its public key goes to the store's keys/"
    return config.model_copy(update={"signing_key": str(path)}), message
