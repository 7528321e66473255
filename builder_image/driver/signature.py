"""The source's OpenPGP signature: python.org signs each release tarball (Python-<v>.<ext>.asc
beside it, up to 3.13; 3.14 on are signed with Sigstore only, PEP 761), and the farm keeps the
release managers' keys in builder_image/keys/<series>.asc (armored, as Debian ships them).

The fetch phase downloads the .asc when the mirror has one; the verify phase, after the
sha256, checks it with gpgv against the series' key. A bad signature fails the build before
configure. Otherwise the status goes into manifest.json ("source_signature"):

    verified  gpgv accepted the signature, made by the series' key while the key was valid
    missing   the mirror has no .asc for this tarball
    no-key    the farm keeps no key for this series
    no-gpgv   this builder has no gpgv (the check could not run)

BUILDFARM_REQUIRE_SOURCE_SIGNATURE=1 makes every status but "verified" a failure.

An expired key: release managers' keys expire after the release was signed (3.13's did, in
2026). gpgv still checks the signature cryptographically (VALIDSIG) and says EXPKEYSIG instead
of GOODSIG; that is accepted when the signature was made before every expiry gpgv reports
(KEYEXPIRED): the key was valid when it signed. Revoked keys, expired signatures and anything
without VALIDSIG are refused. Standard library only, Python 3.6+.
"""

import base64
import os
import re
import shutil
import subprocess
import tempfile
import time

from .errors import BuildError
from .process import say, start

REQUIRE_ENV = "BUILDFARM_REQUIRE_SOURCE_SIGNATURE"
KEYS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "keys")
GPGV_NAMES = ("gpgv", "gpgv2")
# Status keywords that refuse the signature whatever else gpgv says (GnuPG's doc/DETAILS).
REFUSED = ("BADSIG", "ERRSIG", "NO_PUBKEY", "REVKEYSIG", "EXPSIG")
_ARMOR = re.compile(
    r"-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n(.*?)-----END PGP PUBLIC KEY BLOCK-----", re.DOTALL
)
_DIGITS = re.compile(r"[0-9]{1,12}")
_FINGERPRINT = re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}")


class ArmorError(ValueError):
    """A key file that is not a valid ASCII-armored OpenPGP public key block."""


def crc24(data):
    """OpenPGP's CRC-24 (RFC 4880 section 6.1), the checksum line of an armored block."""
    crc = 0xB704CE
    for byte in bytearray(data):
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def dearmor(text):
    """The binary key packets of every armored public key block in text (gpgv reads only
    binary keyrings), each block's CRC-24 checked."""
    blocks = _ARMOR.findall(text)
    if not blocks:
        raise ArmorError("no PGP PUBLIC KEY BLOCK")
    packets = b""
    for block in blocks:
        # Armor headers ("Comment: ...") have a colon, which base64 never has.
        lines = [line.strip() for line in block.splitlines() if line.strip() and ":" not in line]
        checksum = lines.pop() if lines and lines[-1].startswith("=") else None
        try:
            data = base64.b64decode("".join(lines), validate=True)
        except ValueError as error:
            raise ArmorError("bad base64: {}".format(error)) from None
        if checksum is not None and base64.b64decode(checksum[1:]) != crc24(data).to_bytes(3, "big"):
            raise ArmorError("checksum mismatch")
        packets += data
    return packets


def parse_status(text):
    """gpgv's --status-fd lines ("[GNUPG:] KEYWORD ARGS...") as (keyword, [args]) in order."""
    found = []
    for line in text.splitlines():
        if line.startswith("[GNUPG:] "):
            words = line[len("[GNUPG:] ") :].split()
            if words:
                found.append((words[0], words[1:]))
    return found


def verdict(status_text, exit_code):
    """(True, {"fingerprint", "signed_at", "key_expired"}) for a signature to accept, or
    (False, reason) for one to refuse (see the module's docstring)."""
    status = parse_status(status_text)
    keywords = [keyword for keyword, _ in status]
    refused = [keyword for keyword in REFUSED if keyword in keywords]
    if refused:
        return False, "gpgv says " + " ".join(refused)
    valid = [args for keyword, args in status if keyword == "VALIDSIG"]
    if exit_code != 0 or not valid or len(valid) != keywords.count("NEWSIG") or len(valid[0]) < 3:
        return False, "gpgv exited {} without a valid signature".format(exit_code)
    signed = valid[0][2]
    expiries = [args[0] for keyword, args in status if keyword == "KEYEXPIRED" and args]
    if not all(_DIGITS.fullmatch(stamp) for stamp in [signed, *expiries]):
        return False, "unreadable timestamps in gpgv's status: {} {}".format(signed, expiries)
    if any(int(expiry) <= int(signed) for expiry in expiries):
        return False, "the signature was made after the key expired"
    fingerprint = valid[0][-1] if len(valid[0]) >= 10 else valid[0][0]
    if not _FINGERPRINT.fullmatch(fingerprint):
        return False, "unreadable fingerprint in gpgv's status: {!r}".format(fingerprint)
    return True, {
        "fingerprint": fingerprint,
        "signed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(signed))),
        "key_expired": "EXPKEYSIG" in keywords,
    }


def key_file(version):
    """builder_image/keys/<series>.asc for the version's series, or None."""
    series = ".".join(version.split(".")[:2])
    path = os.path.join(KEYS_DIR, series + ".asc")
    return path if os.path.isfile(path) else None


def status_before_gpgv(has_signature, has_key, has_gpgv):
    """The status when the check cannot run (missing, no-key, no-gpgv), else None: run gpgv."""
    if not has_signature:
        return "missing"
    if not has_key:
        return "no-key"
    return None if has_gpgv else "no-gpgv"


def allowed(status, required):
    """Whether a status lets the build go on: "verified" always, the others unless required."""
    return status == "verified" or not required


def gpgv_verify(gpgv, key_path, signature_path, data_path, env, log):
    """(accepted, details or reason): gpgv with only the series' key, in a scratch home."""
    with open(key_path) as handle:
        try:
            packets = dearmor(handle.read())
        except ArmorError as error:
            raise BuildError("verify", "key file {}: {}".format(key_path, error)) from None
    scratch = tempfile.mkdtemp(prefix="gpgv-")
    try:
        keyring = os.path.join(scratch, "keyring.gpg")
        with open(keyring, "wb") as handle:
            handle.write(packets)
        argv = [gpgv, "--homedir", scratch, "--status-fd", "1", "--keyring", keyring]
        argv += [signature_path, data_path]
        log.write("$ {}\n".format(" ".join(argv)))
        try:
            child = start(argv, env=env, stderr=subprocess.PIPE)
        except OSError as error:
            raise BuildError("verify", "cannot run {}: {}".format(gpgv, error)) from None
        status_text, messages = child.communicate()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.write(messages + status_text)
    return verdict(status_text, child.returncode)


def check(build):
    """The verify phase's signature check: build.source_signature, or BuildError."""
    required = os.environ.get(REQUIRE_ENV) == "1"
    key_path = key_file(build.version)
    gpgv = next((shutil.which(name) for name in GPGV_NAMES if shutil.which(name)), None)
    status = status_before_gpgv(build.signature is not None, key_path is not None, gpgv is not None)
    record = {"status": status, "signature_url": build.signature_url, "key": None}
    if status is None:
        record["key"] = "keys/" + os.path.basename(key_path)
        accepted, details = gpgv_verify(gpgv, key_path, build.signature, build.tarball, build.env, build.log)
        if not accepted:
            raise BuildError(
                "verify", "OpenPGP signature of {}: {}".format(os.path.basename(build.tarball), details)
            )
        record.update(details, status="verified")
    build.source_signature = record
    build.log.write("source signature: {}\n".format(record))
    fingerprint = " ({})".format(record["fingerprint"]) if record["status"] == "verified" else ""
    say("source signature: {}{}".format(record["status"], fingerprint))
    if not allowed(record["status"], required):
        raise BuildError(
            "verify",
            "source signature {} and {}=1".format(record["status"], REQUIRE_ENV),
        )
