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
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time

from .errors import BuildError
from .process import say, start
from .spec import env_flag

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
# OpenPGP packet tags of a public key and a public subkey (RFC 4880 section 4.3).
_KEY_TAGS = (6, 14)
# What a v5 or v6 key's fingerprint hashes before the key packet (RFC 9580 section 5.5.4).
_V5_V6_PREFIX = {5: b"\x9a", 6: b"\x9b"}


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


def _packets(data):
    """(tag, body) of each OpenPGP packet in data (RFC 4880 section 4.2), old and new format;
    ArmorError for a truncated or partial-length one (key packets never have that)."""
    offset = 0
    while offset < len(data):
        first = data[offset]
        if not first & 0x80:
            raise ArmorError("not an OpenPGP packet at byte {}".format(offset))
        if first & 0x40:  # new format: a one, two or five-octet length
            tag, octet = first & 0x3F, _number(data, offset + 1, 1)
            if octet < 192:
                header, length = 2, octet
            elif octet < 224:
                header, length = 3, ((octet - 192) << 8) + _number(data, offset + 2, 1) + 192
            elif octet == 255:
                header, length = 6, _number(data, offset + 2, 4)
            else:
                raise ArmorError("a partial-length packet in a key file")
        else:  # old format: the length's size in the low two bits
            tag, size = (first >> 2) & 0x0F, (1, 2, 4, 0)[first & 0x03]
            if not size:
                raise ArmorError("an indeterminate-length packet in a key file")
            header, length = 1 + size, _number(data, offset + 1, size)
        if offset + header + length > len(data):
            raise ArmorError("a truncated packet in a key file")
        yield tag, data[offset + header : offset + header + length]
        offset += header + length


def _number(data, offset, size):
    """The big-endian number of size bytes at offset."""
    if offset + size > len(data):
        raise ArmorError("a truncated packet in a key file")
    return int.from_bytes(data[offset : offset + size], "big")


def key_fingerprints(packets):
    """The fingerprints (upper-case hex, as gpgv's VALIDSIG) of every key and subkey in the
    binary key packets: SHA-1 for v4 keys, SHA-256 for v5 and v6 (RFC 4880 12.2, RFC 9580 5.5.4)."""
    found = []
    for tag, body in _packets(packets):
        if tag not in _KEY_TAGS or not body:
            continue
        if body[0] == 4:
            digest = hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body)  # noqa: S324 - OpenPGP v4
        elif body[0] in _V5_V6_PREFIX:
            digest = hashlib.sha256(_V5_V6_PREFIX[body[0]] + len(body).to_bytes(4, "big") + body)
        else:
            continue  # v3 keys sign no release
        found.append(digest.hexdigest().upper())
    return found


def parse_status(text):
    """gpgv's --status-fd lines ("[GNUPG:] KEYWORD ARGS...") as (keyword, [args]) in order."""
    found = []
    for line in text.splitlines():
        if line.startswith("[GNUPG:] "):
            words = line[len("[GNUPG:] ") :].split()
            if words:
                found.append((words[0], words[1:]))
    return found


def verdict(status_text, exit_code, fingerprints=None):
    """(True, {"fingerprint", "signed_at", "key_expired"}) for a signature to accept, or
    (False, reason) for one to refuse (see the module's docstring). fingerprints: the key
    file's (key_fingerprints()); the signing key must be one of them."""
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
    if fingerprints is not None and fingerprint not in fingerprints:
        return False, "signed by {}, which is not the series' key".format(fingerprint)
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
            fingerprints = key_fingerprints(packets)
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
    return verdict(status_text, child.returncode, fingerprints)


def check(build):
    """The verify phase's signature check: build.source_signature, or BuildError."""
    required = env_flag(os.environ, REQUIRE_ENV)
    key_path = key_file(build.version)
    # The build environment's PATH, not the caller's: the gpgv that checks is the system's.
    path = build.env["PATH"]
    gpgv = next((shutil.which(name, path=path) for name in GPGV_NAMES if shutil.which(name, path=path)), None)
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
