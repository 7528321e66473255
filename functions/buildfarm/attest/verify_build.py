"""Verify a published build directory (builds/<version>/<platform>/<arch>/<build>/), local or
over http(s), against pinned public keys:

- SHA256SUMS.sig is a signature of SHA256SUMS by one of the keys;
- every file SHA256SUMS lists is there with that sha256;
- every artifact manifest.json lists is in SHA256SUMS with the same sha256;
- every attestation manifest.json lists ("attestations": buildfarm.models.Attestations) is
  there: the SBOM and the provenance listed in SHA256SUMS with their sha256, the provenance's
  signature a signature of it; a role the list leaves out is not looked for (a runtime build
  lists SHA256SUMS and its signature only). A manifest without that list (a builder older than
  it, an older runtime build) is held to the default names: sbom.cdx.json and provenance.json
  when present;
- the SBOM's CPython has the version and source sha256 that manifest.json records, and the
  provenance's subjects are the build's files with their sha256 and its invocationId is the
  manifest's execution id. A <file>.sig beside the SBOM is checked too;
- where the directory can be listed (a local one; over http(s) there is no listing), it holds
  nothing else: every file is listed in SHA256SUMS or is one of the files beside it (SHA256SUMS
  and the signatures the attestations name, the builder's build.log). A published build is
  immutable, and whatever is in its directory is served.

verify_build returns one line per problem, each starting with the file it is about; [] means
the build verifies. Names read from the build are checked before they become paths or URLs.
A file that is parsed is read once, and its sha256 is that of the bytes parsed (a server may
answer two GETs of one file differently). A file that cannot be read (other than missing) is
a UsageError: one line, not a verdict on the build.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from pydantic import ValidationError

from buildfarm.digests import SHA256_HEX
from buildfarm.errors import UsageError, first_error
from buildfarm.layout import (
    BUILD_LOG_FILE,
    FILE_NAME_PATTERN,
    LOCAL_TEMP_PREFIX,
    MANIFEST_FILE,
    PROVENANCE_FILE,
    SBOM_FILE,
    SIGNATURE_SUFFIX,
    SUMS_FILE,
    runtime_artifact_dir,
)
from buildfarm.models import Attestations

from .provenance import statement_subjects
from .sbom import CPYTHON_REF
from .signing import fingerprint, verify_signature

HTTP_TIMEOUT_SECONDS = 30
_FILE_NAME = re.compile(FILE_NAME_PATTERN, re.ASCII)  # fullmatch
_SUMS_LINE = re.compile(rf"({SHA256_HEX}) [ *](\S+)", re.ASCII)


class BuildFiles(Protocol):
    """Where a build's files are read from: read(name) -> bytes and sha256(name) -> hex (read
    in chunks: artifacts are tens of MB), each None when there is no such file; names() ->
    every name in the directory, None where it cannot be listed (http)."""

    where: str

    def read(self, name: str) -> bytes | None: ...

    def sha256(self, name: str) -> str | None: ...

    def names(self) -> set[str] | None: ...


def _digest_chunks(handle: Any) -> str:
    digest = hashlib.sha256()
    while chunk := handle.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


class LocalBuild:
    def __init__(self, directory: Path) -> None:
        if not directory.is_dir():
            raise UsageError(f"{directory}: not a directory")
        self.directory = directory
        self.where = str(directory)

    def read(self, name: str) -> bytes | None:
        return self._open(name, lambda handle: handle.read())

    def sha256(self, name: str) -> str | None:
        return self._open(name, _digest_chunks)

    def names(self) -> set[str] | None:
        """Every entry of the directory (sub-directories too), but a directory store's writes in
        flight (layout.LOCAL_TEMP_PREFIX), which are not files of the build."""
        try:
            entries = list(self.directory.iterdir())
        except OSError as error:
            raise UsageError(f"{self.directory}: cannot list ({error.strerror or error})") from None
        return {entry.name for entry in entries if not entry.name.startswith(LOCAL_TEMP_PREFIX)}

    def _open(self, name: str, consume: Any) -> Any:
        path = self.directory / name
        try:
            with path.open("rb") as handle:
                return consume(handle)
        except FileNotFoundError:
            return None
        except OSError as error:  # a directory or an unreadable file where the build's file should be
            raise UsageError(f"{path}: cannot read ({error.strerror or error})") from None


class HttpBuild:
    def __init__(self, url: str) -> None:
        try:
            parsed = urllib.parse.urlsplit(url)
            parsed.port  # noqa: B018 - raises ValueError for a port that is not a number 0-65535
        except ValueError as error:
            raise UsageError(f"{url!r}: not a valid URL ({error})") from None
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise UsageError(f"{url!r}: not a directory or an http(s) URL")
        self.base = url if url.endswith("/") else url + "/"
        self.where = self.base

    def read(self, name: str) -> bytes | None:
        return self._get(name, lambda response: response.read())

    def sha256(self, name: str) -> str | None:
        return self._get(name, _digest_response)

    def names(self) -> set[str] | None:
        return None  # a server answers for files; it lists no directory

    def _get(self, name: str, consume: Any) -> Any:
        url = urllib.parse.urljoin(self.base, urllib.parse.quote(name))
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310 - http(s) only
                return consume(response)
        except urllib.error.HTTPError as error:
            if error.code in (403, 404):  # S3 and CloudFront answer 403 for a missing key
                return None
            raise UsageError(f"{url}: HTTP {error.code} {error.reason}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise UsageError(f"{url}: cannot fetch ({reason})") from None
        except http.client.IncompleteRead as error:
            raise UsageError(f"{url}: cannot fetch (truncated: {error.expected} bytes short)") from None
        except (http.client.HTTPException, ValueError) as error:  # not HTTP, a bad URL
            # repr: what a server that does not speak HTTP sent may hold line breaks
            raise UsageError(f"{url}: cannot fetch ({error!r})") from None


def _digest_response(response: http.client.HTTPResponse) -> str:
    digest = _digest_chunks(response)
    if response.length:  # read(amt) leaves a body short of its Content-Length unreported
        raise http.client.IncompleteRead(b"", response.length)
    return digest


def is_url(location: str) -> bool:
    """Whether a build's location is a URL, "<scheme>://..." with any scheme (HttpBuild then
    refuses all but http(s) by name); else it is a local path ("dist:1", "C:/x" are paths)."""
    # The scheme of the text before the first '/' only: urlsplit raises ValueError for a
    # malformed host ("http://[::1"), which HttpBuild reports as not a valid URL.
    scheme = urllib.parse.urlsplit(location.partition("/")[0]).scheme
    return bool(scheme) and location[len(scheme) :].startswith("://")


def open_build(location: str) -> BuildFiles:
    """A build directory by path or http(s) URL."""
    if is_url(location):
        return HttpBuild(location)
    return LocalBuild(Path(location))


def parse_sums(text: str) -> tuple[dict[str, str], list[str]]:
    """SHA256SUMS (sha256sum's format) -> (file -> sha256, problems)."""
    sums: dict[str, str] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _SUMS_LINE.fullmatch(line)
        if not match or not _FILE_NAME.fullmatch(match.group(2)):
            problems.append(f"{SUMS_FILE}: line {number} is not '<sha256>  <file name>': {line[:80]!r}")
        elif match.group(2) in sums:
            problems.append(f"{SUMS_FILE}: {match.group(2)} is listed twice")
        else:
            sums[match.group(2)] = match.group(1)
    return sums, problems


def check_signature(
    files: BuildFiles, name: str, data: bytes, keys: Sequence[bytes], signature_name: str | None = None
) -> list[str]:
    """signature_name (default <name>.sig) is a signature of data, the bytes of name."""
    signature_name = signature_name or name + SIGNATURE_SUFFIX
    return signature_problems(name, data, keys, signature_name, files.read(signature_name))


def signature_problems(
    name: str, data: bytes, keys: Sequence[bytes], signature_name: str, signature: bytes | None
) -> list[str]:
    """check_signature's verdict on the signature read (None: missing)."""
    if signature is None:
        return [f"{signature_name}: missing"]
    if verify_signature(data, signature, keys) is None:
        shown = ", ".join(fingerprint(key) for key in keys)
        return [f"{signature_name}: not a signature of {name} by any given key ({shown})"]
    return []


def check_listed_files(
    files: BuildFiles, sums: dict[str, str], read: Mapping[str, bytes | None] | None = None
) -> tuple[list[str], dict[str, str]]:
    """(problems, file -> its actual sha256) for every file SHA256SUMS lists. A file in `read`
    (the bytes read of it to be parsed, None when missing) is not fetched again: a server could
    answer a second GET with another file than the one checked."""
    read = read or {}
    problems, actual = [], {}
    for name, listed in sorted(sums.items()):
        if name in read:
            data = read[name]
            digest = None if data is None else hashlib.sha256(data).hexdigest()
        else:
            digest = files.sha256(name)
        if digest is None:
            problems.append(f"{name}: missing (listed in {SUMS_FILE})")
            continue
        actual[name] = digest
        if digest != listed:
            problems.append(f"{name}: sha256 {digest} differs from {SUMS_FILE}'s {listed}")
    return problems, actual


def parse_json(name: str, data: bytes) -> tuple[Any, list[str]]:
    try:
        return json.loads(data), []
    except (ValueError, UnicodeDecodeError) as error:
        return None, [f"{name}: not JSON ({error})"]


def check_manifest(manifest: Any, sums: dict[str, str]) -> list[str]:
    artifacts = manifest.get("artifacts") if isinstance(manifest, dict) else None
    if not isinstance(artifacts, list) or not artifacts:
        return [f"{MANIFEST_FILE}: lists no artifacts"]
    problems = []
    for artifact in artifacts:
        name, sha256 = (
            (artifact.get("file"), artifact.get("sha256")) if isinstance(artifact, dict) else (None, None)
        )
        if name not in sums:
            problems.append(f"{MANIFEST_FILE}: artifact {name!r} is not in {SUMS_FILE}")
        elif sha256 != sums[name]:
            problems.append(f"{MANIFEST_FILE}: artifact {name} has sha256 {sha256}, {SUMS_FILE} {sums[name]}")
    return problems


def _dig(document: Any, *keys: str) -> Any:
    """document[k1][k2]... or None where a level is missing or not an object."""
    for key in keys:
        document = document.get(key) if isinstance(document, dict) else None
    return document


def manifest_facts(manifest: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(CPython version, source sha256, execution id) as manifest.json records them."""
    version = _dig(manifest, "python", "version") or _dig(manifest, "spec", "version")
    return version, _dig(manifest, "spec", "source", "sha256"), _dig(manifest, "spec", "execution_id")


def check_sbom(sbom: Any, manifest: dict[str, Any], sbom_name: str = SBOM_FILE) -> list[str]:
    version, source_sha256, _ = manifest_facts(manifest)
    components = _dig(sbom, "components")
    components = components if isinstance(components, list) else []
    cpython = next((c for c in components if isinstance(c, dict) and c.get("bom-ref") == CPYTHON_REF), None)
    if cpython is None:
        return [f"{sbom_name}: no CPython component (bom-ref {CPYTHON_REF!r})"]
    problems = []
    if cpython.get("version") != version:
        problems.append(f"{sbom_name}: CPython {cpython.get('version')}, {MANIFEST_FILE} says {version}")
    listed = cpython.get("hashes") if isinstance(cpython.get("hashes"), list) else []
    hashes = {h.get("alg"): h.get("content") for h in listed if isinstance(h, dict)}
    if hashes.get("SHA-256") != source_sha256:
        problems.append(
            f"{sbom_name}: source sha256 {hashes.get('SHA-256')}, {MANIFEST_FILE} says {source_sha256}"
        )
    return problems


def check_provenance(
    statement: Any, manifest: dict[str, Any], sums: dict[str, str], provenance_name: str = PROVENANCE_FILE
) -> list[str]:
    """The subjects against SHA256SUMS (which check_listed_files holds the files to)."""
    try:
        subjects = statement_subjects(statement if isinstance(statement, dict) else {})
    except ValueError as error:
        return [f"{provenance_name}: {error}"]
    problems = []
    for name, sha256 in sorted(subjects.items()):
        if name not in sums:
            problems.append(f"{provenance_name}: subject {name!r} is not in {SUMS_FILE}")
        elif sums[name] != sha256:
            problems.append(
                f"{provenance_name}: subject {name} has sha256 {sha256}, {SUMS_FILE} {sums[name]}"
            )
    for artifact in manifest.get("artifacts") or []:
        if isinstance(artifact, dict) and artifact.get("file") not in subjects:
            problems.append(f"{provenance_name}: artifact {artifact.get('file')} is not a subject")
    invocation = _dig(statement, "predicate", "runDetails", "metadata", "invocationId")
    execution_id = manifest_facts(manifest)[2]
    if invocation != execution_id:
        problems.append(f"{provenance_name}: invocationId {invocation}, {MANIFEST_FILE} says {execution_id}")
    return problems


def listed_attestations(manifest: Any) -> tuple[Attestations, bool, list[str]]:
    """(the attestation names manifest.json lists (Attestations.listed: a role left out is
    None), whether it lists them, problems): the default names when it has no list or a bad one
    (that one named)."""
    if not isinstance(manifest, dict) or "attestations" not in manifest:
        return Attestations(), False, []
    try:
        return Attestations.listed(manifest["attestations"]), True, []
    except ValidationError as error:
        return Attestations(), False, [f"{MANIFEST_FILE}: {first_error(error, under='attestations')}"]


def check_attestation(
    files: BuildFiles,
    name: str,
    data: bytes,
    sums: dict[str, str],
    keys: Sequence[bytes],
    signature_name: str | None = None,
) -> list[str]:
    """An attestation (SBOM, provenance) is signed through SHA256SUMS, and by its signature:
    signature_name, which must be there, else <name>.sig if there is one."""
    problems = [] if name in sums else [f"{name}: not listed in {SUMS_FILE} (unsigned)"]
    required = signature_name is not None
    signature_name = signature_name or name + SIGNATURE_SUFFIX
    signature = files.read(signature_name)  # once: the bytes looked for are the bytes checked
    if required or signature is not None:
        problems += signature_problems(name, data, keys, signature_name, signature)
    return problems


def read_documents(files: BuildFiles, manifest: Any) -> dict[str, bytes | None]:
    """The SBOM and the provenance manifest.json names (None: missing), read once for both
    their sha256 and their checks."""
    if not isinstance(manifest, dict):
        return {}
    names, _, _ = listed_attestations(manifest)
    return {name: files.read(name) for name in (names.sbom, names.provenance) if name is not None}


def check_documents(
    files: BuildFiles,
    manifest: dict[str, Any],
    sums: dict[str, str],
    keys: Sequence[bytes],
    documents: Mapping[str, bytes | None],
) -> list[str]:
    """The SBOM and the provenance (as read_documents read them) against manifest.json: each
    one manifest.json lists must be there (one that SHA256SUMS lists, check_listed_files names
    missing), signed, and agree."""
    names, listed, problems = listed_attestations(manifest)
    signatures = {names.sbom: None, names.provenance: names.provenance_signature if listed else None}
    for name, signature_name in signatures.items():
        if name is None:
            continue  # a role the list leaves out: the build has no such file
        data = documents.get(name)
        if data is None:
            if listed and name not in sums:
                problems.append(f"{name}: missing (listed in {MANIFEST_FILE})")
            continue
        problems += check_attestation(files, name, data, sums, keys, signature_name)
        document, json_problems = parse_json(name, data)
        problems += json_problems
        if json_problems:
            continue
        if name == names.sbom:
            problems += check_sbom(document, manifest, name)
        else:
            problems += check_provenance(document, manifest, sums, name)
    return problems


def unlisted_files(files: BuildFiles, sums: dict[str, str], manifest: Any) -> list[str]:
    """A line for each file in the build's directory that SHA256SUMS does not list and that is
    not one of the files beside it: SHA256SUMS, the signatures manifest.json's attestations name
    (and a <file>.sig of the SBOM or provenance, which check_attestation checks), manifest.json
    (said apart when unlisted), build.log. [] where the directory cannot be listed."""
    present = files.names()
    if present is None:
        return []
    names, _, _ = listed_attestations(manifest)
    documents = [name for name in (names.sbom, names.provenance) if name is not None]
    beside = {*names.names(), *(name + SIGNATURE_SUFFIX for name in documents), MANIFEST_FILE, BUILD_LOG_FILE}
    return [
        f"{name}: not listed in {names.checksums}, and not a file of the build"
        for name in sorted(present - set(sums) - beside)
    ]


class CheckedBuild(NamedTuple):
    """What check_build found: the problems, and the checksum list and manifest it checked
    (empty or None where they are missing) for a caller's further checks."""

    problems: list[str]
    sums: dict[str, str]
    manifest: Any


def verify_build(files: BuildFiles, public_keys: Sequence[bytes]) -> list[str]:
    """Every problem of the build at `files`, one line each ([] when it verifies)."""
    return check_build(files, public_keys).problems


def check_build(files: BuildFiles, public_keys: Sequence[bytes]) -> CheckedBuild:
    """verify_build's checks, with the SHA256SUMS and manifest.json they read."""
    manifest_data = files.read(MANIFEST_FILE)
    manifest, manifest_problems = (
        (None, []) if manifest_data is None else parse_json(MANIFEST_FILE, manifest_data)
    )
    names, _, _ = listed_attestations(manifest)
    sums_data = files.read(names.checksums)
    if sums_data is None:
        return CheckedBuild([f"{names.checksums}: missing (is {files.where} a build directory?)"], {}, None)
    problems = check_signature(files, names.checksums, sums_data, public_keys, names.checksums_signature)
    sums, sums_problems = parse_sums(sums_data.decode("utf-8", errors="replace"))
    documents = read_documents(files, manifest)
    file_problems, _ = check_listed_files(files, sums, {MANIFEST_FILE: manifest_data, **documents})
    problems += sums_problems + file_problems + unlisted_files(files, sums, manifest)
    if manifest_data is None:
        return CheckedBuild([*problems, f"{MANIFEST_FILE}: missing"], sums, None)
    if MANIFEST_FILE not in sums:
        problems.append(f"{MANIFEST_FILE}: not listed in {names.checksums} (unsigned)")
    problems += manifest_problems or check_manifest(manifest, sums)
    if isinstance(manifest, dict):
        problems += check_documents(files, manifest, sums, public_keys, documents)
    return CheckedBuild(problems, sums, manifest)


def manifest_directory(manifest: Any) -> str | None:
    """The store directory a build's manifest says it was published in: a Python build's
    spec.artifact_dir, a runtime build's runtimes/<name>/<version>/<platform>/<arch>/<build>;
    None when it says neither."""
    directory = _dig(manifest, "spec", "artifact_dir")
    if isinstance(directory, str):
        return directory
    cell = [_dig(manifest, "runtime", "name"), _dig(manifest, "runtime", "version")]
    cell += [_dig(manifest, "platform"), _dig(manifest, "arch")]
    build = _dig(manifest, "build")
    if all(isinstance(part, str) for part in cell) and isinstance(build, int):
        return runtime_artifact_dir(*cell, build)
    return None
