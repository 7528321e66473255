"""The status page's links to what a user verifies a download with: beside the packages, the
files the publish side wrote into the build's directory (SHA256SUMS and its .sig, the SBOM, the
provenance and its .sig) as the catalog entry records them ("attestations": role -> file name,
manifest.json's shape), with hrefs built as the other files beside the manifest; none the entry
does not record (an entry without the record keeps SHA256SUMS, the manifest and build.log)."""

from __future__ import annotations

from pathlib import Path

import pytest
from html_links import page_links

from buildfarm.attest.build_files import manifest_attestations
from buildfarm.attest.signing import KeyFileSigner, init_key
from buildfarm.catalog import CatalogArtifact, CatalogCell, empty_versions, merge_cells, render_index
from buildfarm.catalog.versions_json import RuntimeCatalogCell, merge_runtime_cells, read_versions
from buildfarm.models import Attestations
from buildfarm.plan import plan
from buildfarm.publish import publish_cell
from buildfarm.store import LocalStore

from ..conftest import FAKE_SHA, NOW, fake_build, write_releases

ADIR = "builds/3.13.5/debian-12/x86_64/1"
CELL = ("3.13.5", "debian-12", "x86_64")
SIGNATURES = ("checksums_signature", "provenance_signature")
EVERY_ROLE = Attestations().model_dump()  # the contract's names, every role: a signed build's


def page_of(registry, attestations: object = None, *, recorded: bool = True) -> str:
    """The page of one published build of CELL whose entry holds `attestations` as it stands in
    versions.json, whatever it is (or, with recorded False, has no such field: an entry from
    before the publish side recorded it)."""
    entry = CatalogCell(
        build=1,
        published="2026-11-22T09:00:00Z",
        manifest=f"{ADIR}/manifest.json",
        artifacts=[CatalogArtifact(type="tarball", key=f"{ADIR}/p.tar.gz", sha256=FAKE_SHA, size=2048)],
    )
    document, _ = merge_cells(empty_versions(), {CELL: entry}, NOW)
    if recorded:
        document["builds"]["3.13.5"]["debian-12"]["x86_64"]["attestations"] = attestations
    return render_index(document, registry, ["debian-12"], NOW)


def build_links(page: str) -> list[str]:
    """The file names the page links in ADIR, in page order."""
    return [link.removeprefix(f"{ADIR}/") for link in page_links(page) if link.startswith(f"{ADIR}/")]


def test_a_signed_build_links_its_checksums_signatures_sbom_and_provenance(registry):
    page = page_of(registry, EVERY_ROLE)
    assert build_links(page) == [
        "p.tar.gz",
        "SHA256SUMS",
        "SHA256SUMS.sig",
        "manifest.json",
        "sbom.cdx.json",
        "provenance.json",
        "provenance.json.sig",
        "build.log",
    ]
    assert f'<a href="{ADIR}/SHA256SUMS.sig">SHA256SUMS.sig</a>' in page
    assert f'<a href="{ADIR}/sbom.cdx.json" title="sbom.cdx.json">SBOM</a>' in page
    assert f'<a href="{ADIR}/provenance.json.sig" title="provenance.json.sig">provenance.sig</a>' in page


@pytest.mark.parametrize(
    ("attestations", "recorded", "linked"),
    [
        # Published unsigned: the signatures left out, or null (as models.Attestations dumps them).
        (
            {role: name for role, name in EVERY_ROLE.items() if role not in SIGNATURES},
            True,
            ["SHA256SUMS", "manifest.json", "sbom.cdx.json", "provenance.json"],
        ),
        (
            {**EVERY_ROLE, **dict.fromkeys(SIGNATURES)},
            True,
            ["SHA256SUMS", "manifest.json", "sbom.cdx.json", "provenance.json"],
        ),
        # A runtime-like record: the checksums and their signature only.
        (
            {"checksums": "SHA256SUMS", "checksums_signature": "SHA256SUMS.sig"},
            True,
            ["SHA256SUMS", "SHA256SUMS.sig", "manifest.json"],
        ),
        # No record (older catalogs): what the page always linked, nothing else.
        (None, False, ["SHA256SUMS", "manifest.json"]),
        ("not a record", True, ["SHA256SUMS", "manifest.json"]),
    ],
    ids=["unsigned", "unsigned-null", "checksums-only", "no-record", "malformed"],
)
def test_only_the_files_the_entry_records_are_linked(registry, attestations, recorded, linked):
    assert build_links(page_of(registry, attestations, recorded=recorded)) == [
        "p.tar.gz",
        *linked,
        "build.log",
    ]


def test_recorded_names_are_file_names_of_the_builds_own_directory_each_linked_once(registry):
    hostile = {
        "sbom": "../../../../versions.json",  # not a file name: left out
        "provenance": "elsewhere/provenance.json",
        "provenance_signature": '"><script>x</script>.sig',
        "checksums": 7,
        "checksums_signature": "manifest.json",  # another file's name: that file, once
        "extra": "evil.sig",  # a role the page does not know
    }
    page = page_of(registry, hostile)
    assert [link for link in page_links(page) if link.startswith("builds/")] == [
        f"{ADIR}/{name}" for name in ("p.tar.gz", "manifest.json", "build.log")
    ]
    assert "<script>x" not in page and "evil.sig" not in page and "elsewhere" not in page


def test_a_runtime_build_links_its_recorded_checksum_signature_and_no_build_log(registry):
    directory = "runtimes/svc/1.0.0/debian-12/x86_64/1"
    entry = RuntimeCatalogCell(
        build=1,
        published="2026-11-22T09:00:00Z",
        manifest=f"{directory}/manifest.json",
        python={"version": "3.13.5", "build": 1},
        requirements={"kind": "requirements.txt", "sha256": FAKE_SHA},
        artifacts=[{"type": "tarball", "key": f"{directory}/r.tar.gz", "sha256": FAKE_SHA, "size": 1}],
        attestations={"checksums": "SHA256SUMS", "checksums_signature": "SHA256SUMS.sig"},
    )
    document, _ = merge_runtime_cells(empty_versions(), {("svc", "1.0.0", "debian-12", "x86_64"): entry}, NOW)
    links = page_links(render_index(document, registry, ["debian-12"], NOW))
    assert [link for link in links if link.startswith(directory)] == [
        f"{directory}/{name}" for name in ("r.tar.gz", "SHA256SUMS", "SHA256SUMS.sig", "manifest.json")
    ]


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_recorded_as_the_publish_side_wrote_them_every_link_is_a_file_of_the_build(
    signed, local_store: LocalStore, config, registry, tmp_path: Path
):
    """A build published by the real publish_cell (signed or not) records what the publish side
    wrote (the signatures only when signed): every link into the build's directory is a file
    the publish side or the builder wrote there."""
    write_releases(local_store, ["3.13.5"])
    (item,) = plan({"versions": ["3.13.5"], "platforms": ["debian-12"], "arches": ["x86_64"]},
                   local_store, config, "exec-1", NOW).items  # fmt: skip
    fake_build(local_store, item.spec)
    if signed:
        init_key(tmp_path / "farm.pem")
    signer = KeyFileSigner(tmp_path / "farm.pem") if signed else None
    assert publish_cell(item, local_store, NOW, signer=signer).status == "published"
    document, _ = read_versions(local_store)
    manifest, _ = local_store.read_json(f"{item.spec.artifact_dir}/manifest.json")
    names = manifest_attestations(manifest, {}).model_dump()  # what the publish side wrote, by role
    record = {role: name for role, name in names.items() if signed or role not in SIGNATURES}
    assert document["builds"]["3.13.5"]["debian-12"]["x86_64"]["attestations"] == record
    links = [link for link in page_links(render_index(document, registry, ["debian-12"], NOW))
             if link.startswith(item.spec.artifact_dir + "/")]  # fmt: skip
    assert len(links) == (9 if signed else 7)  # tar.gz, .deb, manifest, build.log and the publish side's
    assert [link for link in links if not local_store.exists(link)] == []
