"""publish_cell run again after it died between writing versions.json and signing it (a Lambda
timeout, a retried PublishCell, a killed `run`): the re-run finds its cell merged already and
still leaves versions.json.sig a good signature, which the real verifier accepts. When the
signature is good, that check costs two reads and no write."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from buildfarm.attest.signing import KeyFileSigner
from buildfarm.attest.verify_build import signature_problems
from buildfarm.catalog import update_versions
from buildfarm.catalog.versions_json import CatalogCell, record_failures
from buildfarm.cli import main
from buildfarm.layout import VERSIONS_KEY, VERSIONS_SIGNATURE_KEY
from buildfarm.plan import PlanItem, plan
from buildfarm.publish import publish_cell
from buildfarm.store import Store, StoreIOError

from .conftest import NOW, fake_build, read_json, write_releases

REQUEST = {"versions": ["3.13.5"], "platforms": ["debian-12"], "arches": ["x86_64"]}
CELL = ("3.13.5", "debian-12", "x86_64")


def planned(store: Store, config, *, built: bool = True) -> PlanItem:
    write_releases(store, ["3.13.5"])
    (item,) = plan(REQUEST, store, config, "exec-1", NOW).items
    if built:
        fake_build(store, item.spec)
    return item


def fail_signing_once(monkeypatch: pytest.MonkeyPatch, store: Store, error: BaseException) -> list[str]:
    """The store's next write of versions.json.sig raises `error` (the write before it, of
    versions.json, went through): where a publisher dies in between. Returns the keys written."""
    real_put = store._put
    written: list[str] = []

    def put(key: str, data: bytes, write) -> str:
        first = not any(k.endswith(VERSIONS_SIGNATURE_KEY) for k in written)
        written.append(key)
        if key.endswith(VERSIONS_SIGNATURE_KEY) and first:
            raise error
        return real_put(key, data, write)

    monkeypatch.setattr(store, "_put", put)
    return written


def catalog_problems(store: Store, signer: KeyFileSigner) -> list[str]:
    """The verifier's verdict on versions.json.sig (buildfarm verify's check), [] when good."""
    data, _ = store.read(VERSIONS_KEY)
    try:
        signature: bytes | None = store.read(VERSIONS_SIGNATURE_KEY)[0]
    except KeyError:
        signature = None
    keys = [signer.public_key_pem()]
    return signature_problems(VERSIONS_KEY, data, keys, VERSIONS_SIGNATURE_KEY, signature)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue("local_store" if request.param == "local" else "s3_store")


@pytest.mark.parametrize(
    "error", [KeyboardInterrupt("killed"), StoreIOError("No space left on device")], ids=["kill", "io"]
)
def test_a_rerun_after_dying_before_the_signature_signs_versions_json(
    store, config, session_signer, monkeypatch, error
) -> None:
    item = planned(store, config)
    signed_before = fail_signing_once(monkeypatch, store, error)
    with pytest.raises(type(error)):
        publish_cell(item, store, NOW, signer=session_signer)
    assert any(key.endswith(VERSIONS_KEY) for key in signed_before)  # merged, then died
    assert CELL[0] in read_json(store, VERSIONS_KEY)["builds"]
    assert catalog_problems(store, session_signer)  # what an installer would now refuse

    outcome = publish_cell(item, store, NOW, signer=session_signer)

    assert outcome.status == "published"
    assert catalog_problems(store, session_signer) == []


def test_the_whole_store_verifies_after_the_rerun(local_store, config, session_signer, monkeypatch, capsys):
    """`buildfarm verify` of the store root: the catalog's signature and the build it lists."""
    item = planned(local_store, config)
    fail_signing_once(monkeypatch, local_store, KeyboardInterrupt("killed"))
    with pytest.raises(KeyboardInterrupt):
        publish_cell(item, local_store, NOW, signer=session_signer)
    publish_cell(item, local_store, NOW, signer=session_signer)
    public_key = Path(local_store.location).parent / "farm.pub"
    public_key.write_bytes(session_signer.public_key_pem())
    status = main(["verify", local_store.location, "--pubkey", str(public_key)])
    assert status == 0, capsys.readouterr()


def test_a_failed_cell_decided_again_signs_versions_json(store, config, session_signer, monkeypatch) -> None:
    """The same for a build that failed: its `failing` entry was written, not signed."""
    item = planned(store, config, built=False)
    fail_signing_once(monkeypatch, store, StoreIOError("No space left on device"))
    with pytest.raises(StoreIOError):
        publish_cell(item, store, NOW, signer=session_signer)
    assert catalog_problems(store, session_signer)

    assert publish_cell(item, store, NOW, signer=session_signer).status == "failed"
    assert catalog_problems(store, session_signer) == []


def _merged_update(store: Store, signer: KeyFileSigner) -> Callable[[], object]:
    """update_versions with the cell exactly as versions.json has it: nothing to merge."""
    version, platform, arch = CELL
    entry = CatalogCell.model_validate(read_json(store, VERSIONS_KEY)["builds"][version][platform][arch])
    return lambda: update_versions(store, {CELL: entry}, NOW, signer=signer)


def test_nothing_to_merge_with_a_good_signature_costs_two_reads(local_store, config, session_signer) -> None:
    item = planned(local_store, config)
    publish_cell(item, local_store, NOW, signer=session_signer)
    signature = (Path(local_store.location) / VERSIONS_SIGNATURE_KEY).read_bytes()
    update = _merged_update(local_store, session_signer)
    local_store.calls.clear()

    assert update() == (read_json(local_store, VERSIONS_KEY), [])
    local_store.calls["read"] -= 1  # the read_json just above
    assert local_store.calls == {"read": 3}  # versions.json as merged, then it and its signature
    assert (Path(local_store.location) / VERSIONS_SIGNATURE_KEY).read_bytes() == signature

    local_store.calls.clear()
    record_failures(local_store, {CELL: (1, "older than the published build")}, NOW, signer=session_signer)
    assert local_store.calls == {"read": 3}


def test_without_a_signer_nothing_is_checked(local_store, config, session_signer) -> None:
    item = planned(local_store, config)
    publish_cell(item, local_store, NOW, signer=session_signer)
    entry = read_json(local_store, VERSIONS_KEY)["builds"]["3.13.5"]["debian-12"]["x86_64"]
    local_store.calls.clear()
    update_versions(local_store, {CELL: CatalogCell.model_validate(entry)}, NOW, signer=None)
    assert local_store.calls == {"read": 1}
