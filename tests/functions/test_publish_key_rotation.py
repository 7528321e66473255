"""A rotated signing key and install.sh: the first publish signed with the new key pins it in
install.sh (which checks versions.json.sig with the keys it pins), not only Finalize, hours
later: until then every install refused versions.json as "not signed by the pinned key"."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from buildfarm.attest.signing import KeyFileSigner, fingerprint, init_key, verify_signature
from buildfarm.catalog.install_script import embedded_base_url, embedded_fingerprints
from buildfarm.plan import plan
from buildfarm.publish import publish, publish_cell

from .conftest import NOW, fake_build, write_releases


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("rotation-keys")
    for name in ("old", "new"):
        init_key(directory / f"{name}.pem")
    return {name: directory / f"{name}.pem" for name in ("old", "new")}


def _publish_one(store, config, arch: str, execution: str, signer, now, *, finalize: bool) -> None:
    request = {"versions": ["3.13.5"], "platforms": ["debian-12"], "arches": [arch]}
    the_plan = plan(request, store, config, execution, now)
    (item,) = the_plan.items
    fake_build(store, item.spec)
    assert publish_cell(item, store, now, signer=signer).status == "published"
    if finalize:
        publish(the_plan.summary, store, config, now, signer=signer)


def _pinned_keys(store) -> list[bytes]:
    """The public keys install.sh pins, as it fetches them (keys/<hex>.pub)."""
    pinned = embedded_fingerprints(store.read("install.sh")[0])
    return [store.read(f"keys/{name.split(':', 1)[1]}.pub")[0] for name in pinned]


@pytest.mark.parametrize("backend", ["local_store", "s3_store"])
def test_a_rotated_key_is_pinned_in_install_sh_by_its_first_publish(backend, request, config, keys) -> None:
    local_store = request.getfixturevalue(backend)  # the S3 one: conditional writes as moto does them
    old, new = KeyFileSigner(keys["old"]), KeyFileSigner(keys["new"])
    new_key = fingerprint(new.public_key_pem())
    write_releases(local_store, ["3.13.5"])
    _publish_one(local_store, config, "x86_64", "exec-1", old, NOW, finalize=True)
    installer = local_store.read("install.sh")[0]
    assert embedded_fingerprints(installer) == [fingerprint(old.public_key_pem())]

    # The key is rotated; the next execution's first cell is published, its Finalize is hours
    # away (or fails). install.sh must already verify the versions.json that cell's publish signed.
    later = NOW + timedelta(hours=1)
    _publish_one(local_store, config, "aarch64", "exec-2", new, later, finalize=False)
    catalog, signature = local_store.read("versions.json")[0], local_store.read("versions.json.sig")[0]
    assert verify_signature(catalog, signature, _pinned_keys(local_store)) == new_key
    rewritten = local_store.read("install.sh")[0]
    assert new_key in embedded_fingerprints(rewritten)
    assert embedded_base_url(rewritten) == embedded_base_url(installer)  # nothing else changes
    # The old key stays pinned (builds it signed keep verifying), as Finalize pins them.
    assert fingerprint(old.public_key_pem()) in embedded_fingerprints(rewritten)


def test_finalize_keeps_the_install_sh_the_publish_pinned(local_store, config, keys) -> None:
    """What the publish wrote is what Finalize would write: Finalize does not rewrite it."""
    old, new = KeyFileSigner(keys["old"]), KeyFileSigner(keys["new"])
    write_releases(local_store, ["3.13.5"])
    _publish_one(local_store, config, "x86_64", "exec-1", old, NOW, finalize=True)
    _publish_one(local_store, config, "aarch64", "exec-2", new, NOW + timedelta(hours=1), finalize=False)
    pinned_by_publish = local_store.read("install.sh")
    forced = plan(
        {"versions": ["3.13.5"], "platforms": ["debian-12"], "force": True},
        local_store,
        config,
        "exec-3",
        NOW + timedelta(hours=2),
    )
    for item in forced.items:
        fake_build(local_store, item.spec)
    publish(forced.summary, local_store, config, NOW + timedelta(hours=2), signer=new)
    assert local_store.read("install.sh") == pinned_by_publish


def test_an_install_sh_that_pins_no_key_is_left_to_finalize(local_store, config, keys) -> None:
    """An unsigned store's install.sh checks no signature: a signed publish does not start
    pinning before Finalize does (it would refuse the store's unsigned builds mid-run)."""
    write_releases(local_store, ["3.13.5"])
    _publish_one(local_store, config, "x86_64", "exec-1", None, NOW, finalize=True)
    unsigned = local_store.read("install.sh")[0]
    assert embedded_fingerprints(unsigned) == []
    signer = KeyFileSigner(keys["new"])
    _publish_one(local_store, config, "aarch64", "exec-2", signer, NOW + timedelta(hours=1), finalize=False)
    assert local_store.read("install.sh")[0] == unsigned
