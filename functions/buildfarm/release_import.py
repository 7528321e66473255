"""Releases given by hand (`buildfarm releases add`) or by a mirror's SHA256SUMS (`buildfarm
releases import`), and their conditional write into the store's releases.json.

An air-gapped farm has no python.org to refresh from: these are how it learns of a release.
A known release's sha256 is never changed silently (the refresh never changes one either):
a different digest for it is refused, naming both, unless the caller forces the change.
"""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import Version

from buildfarm.config import DEFAULT_SOURCE_MIRROR
from buildfarm.digests import SHA256_HEX
from buildfarm.python_org import SOURCE_SUFFIXES, source_file_name
from buildfarm.releases import Release, ReleaseCatalog, source_url, stored_catalog, write_catalog
from buildfarm.store import Store, StoreConflict, StoreError
from buildfarm.versions import VersionError, parse_release

# The digest rule in either case (what people paste and other tools print); stored lowercase.
_ANY_CASE_SHA256 = f"(?i:{SHA256_HEX})"
_SHA256 = re.compile(_ANY_CASE_SHA256)
# sha256sum's output, text (two spaces) or binary (' *') mode, and BSD's `sha256 -r`-less form.
_GNU_LINE = re.compile(rf"({_ANY_CASE_SHA256}) [ *](\S.*)")
_BSD_LINE = re.compile(rf"SHA256 \((.+)\) = ({_ANY_CASE_SHA256})")
_SOURCE_FILE = re.compile(r"Python-(3\.[0-9]{1,2}\.[0-9]{1,2}(?:(?:a|b|rc)[0-9]{1,2})?)(\.tar\.xz|\.tgz)")
MAX_SUMS_BYTES = 4 * 1024 * 1024
WRITE_ATTEMPTS = 5


class ReleaseInputError(ValueError):
    """A bad release, digest, file name or SHA256SUMS, or a digest that contradicts a known one.
    The message is one line naming the value; nothing has been written."""


def new_release(version: str, sha256: str, file: str | None = None) -> Release:
    """The catalog entry of a release given by hand: exact version (ASCII digits), the sha256
    (64 hex digits; stored lowercase) of its source file, Python-VERSION.tar.xz (default) or .tgz."""
    try:
        parsed = parse_release(version)
    except VersionError as error:
        raise ReleaseInputError(str(error)) from None
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise ReleaseInputError(f"malformed sha256 {sha256!r} (expected 64 hex digits)")
    allowed = [source_file_name(version, suffix) for suffix in SOURCE_SUFFIXES]
    file = file or allowed[0]
    if file not in allowed:
        raise ReleaseInputError(f"file {file!r} is not one of {', '.join(allowed)}")
    return Release(
        version=version,
        sha256=sha256.lower(),
        url=source_url(version, DEFAULT_SOURCE_MIRROR, file),  # where python.org has it
        file=file,
        prerelease=parsed.is_prerelease,
    )


def parse_sha256sums(text: str, where: str) -> tuple[list[Release], int]:
    """(the CPython source releases a SHA256SUMS lists, how many other files it lists: names
    python.org does not give a release's source, e.g. Python-3.13.05.tar.xz, are other files). A
    release listed as both .tar.xz and .tgz is taken as .tar.xz. ReleaseInputError names the
    first line that is not a checksum line (blank lines and # comments are skipped), or that
    gives a file listed before a different digest."""
    found: dict[str, dict[str, str]] = {}  # version -> suffix -> sha256
    others = 0
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if gnu := _GNU_LINE.fullmatch(stripped):
            digest, name = gnu.groups()
        elif bsd := _BSD_LINE.fullmatch(stripped):
            name, digest = bsd.groups()
        else:
            shown = stripped if len(stripped) <= 60 else stripped[:57] + "..."
            raise ReleaseInputError(f"{where} line {number} is not '<sha256>  <file>': {shown!r}")
        source = _SOURCE_FILE.fullmatch(name.rsplit("/", 1)[-1])
        if source is None or not _is_release(source.group(1)):
            others += 1  # not a CPython source tarball's name (3.13.05: python.org never spells one so)
            continue
        version, suffix = source.groups()
        digests = found.setdefault(version, {})
        if digests.get(suffix, digest).lower() != digest.lower():
            # The digest every later build of the release trusts: two of them is a broken file.
            raise ReleaseInputError(
                f"{where} line {number} gives {name.rsplit('/', 1)[-1]} a second, different sha256"
            )
        digests[suffix] = digest
    releases = []
    for version, digests in found.items():
        suffix = next(suffix for suffix in SOURCE_SUFFIXES if suffix in digests)  # .tar.xz first
        releases.append(new_release(version, digests[suffix], source_file_name(version, suffix)))
    return sorted(releases, key=lambda r: Version(r.version), reverse=True), others


def _is_release(version: str) -> bool:
    try:
        parse_release(version)
    except VersionError:
        return False
    return True


def read_sha256sums(source: str, timeout: float = 10.0) -> str:
    """The text of a SHA256SUMS file: a path, or an http(s):// or file:// URL (at most 4 MiB)."""
    is_url = source.startswith(("http://", "https://", "file://"))
    if "://" in source and not is_url:
        raise ReleaseInputError(f"{source!r}: use a file, or an http://, https:// or file:// URL")
    try:
        if is_url:
            with urllib.request.urlopen(source, timeout=timeout) as response:  # noqa: S310 (scheme checked)
                data = response.read(MAX_SUMS_BYTES + 1)
        else:
            with Path(source).open("rb") as handle:
                data = handle.read(MAX_SUMS_BYTES + 1)
    except (OSError, ValueError) as error:  # URLError and HTTPError are OSErrors
        reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or error
        raise ReleaseInputError(f"cannot read {source}: {reason}") from None
    if len(data) > MAX_SUMS_BYTES:
        raise ReleaseInputError(f"{source} is larger than {MAX_SUMS_BYTES} bytes: not a SHA256SUMS file")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise ReleaseInputError(f"{source} is not text: not a SHA256SUMS file") from None


@dataclass
class CatalogChange:
    """What adding releases did to releases.json."""

    added: list[Release] = field(default_factory=list)
    replaced: list[Release] = field(default_factory=list)  # a known sha256 changed (--force)
    unchanged: list[str] = field(default_factory=list)  # already known with the same digest

    @property
    def written(self) -> bool:
        return bool(self.added or self.replaced)


def merged(catalog: ReleaseCatalog, new: list[Release], force: bool) -> tuple[ReleaseCatalog, CatalogChange]:
    """The catalog with `new` in it. A release already known with another digest or file is a
    ReleaseInputError naming both, unless `force` (then it is replaced)."""
    change = CatalogChange()
    releases = dict(catalog.releases)
    for release in new:
        old = releases.get(release.version)
        if old is not None and (old.sha256, old.file) == (release.sha256, release.file):
            change.unchanged.append(release.version)
            continue
        if old is not None and not force:
            raise ReleaseInputError(
                f"{release.version} is already in releases.json as {old.file} sha256 {old.sha256}, "
                f"not {release.file} sha256 {release.sha256}: nothing written (--force replaces it)"
            )
        if old is not None:
            release = release.model_copy(update={"release_date": old.release_date})  # kept
        (change.replaced if old is not None else change.added).append(release)
        releases[release.version] = release
    return catalog.model_copy(update={"releases": releases}), change


def add_releases(store: Store, new: list[Release], *, force: bool = False) -> CatalogChange:
    """Add releases to the store's releases.json (created from the seed if absent), all or
    none: a conditional write over the version read, read again if another writer won."""
    for _ in range(WRITE_ATTEMPTS):
        catalog, etag = stored_catalog(store)
        updated, change = merged(catalog, new, force)
        if not change.written:
            return change
        try:
            write_catalog(store, updated, etag)
        except StoreConflict:
            continue
        return change
    raise StoreError(f"releases.json in {store.location} kept changing during {WRITE_ATTEMPTS} attempts")
