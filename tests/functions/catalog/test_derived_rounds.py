"""regenerate_derived renders again while versions.json changes under it, at most max_rounds
times: past that it stops and says so (a warning: the publisher that keeps changing
versions.json writes the derived files again after each of its writes, so failing would only
fail a Finalize beside a busy publisher). What it returns names each key it wrote once, in the
order first written, however many rounds it took.

A real directory store; the concurrent publisher really rewrites versions.json (a new ETag)
right after an index.html write, as a publisher merging a cell at that moment would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from buildfarm.catalog.derived import public_url_function, regenerate_derived
from buildfarm.layout import INDEX_KEY, INSTALLER_KEY, VERSIONS_KEY
from buildfarm.plan import plan
from buildfarm.publish import publish
from buildfarm.store import LocalStore

from ..conftest import NOW, fake_build, write_releases

BASE = "https://cdn.example.org/py"


class ConcurrentPublisher(LocalStore):
    """A directory store that another publisher writes versions.json to, right after each of
    the first `writes` index.html writes (the same catalog written out again: a new ETag)."""

    def __init__(self, directory: Path | str, writes: int) -> None:
        super().__init__(directory)
        self.writes = writes
        self.index_writes = 0

    def put(self, key: str, data: bytes, **kwargs: object) -> str:
        etag = super().put(key, data, **kwargs)  # type: ignore[arg-type]
        if key == INDEX_KEY:
            self.index_writes += 1
            if self.writes:
                self.writes -= 1
                document = json.loads((self.root / VERSIONS_KEY).read_bytes())
                (self.root / VERSIONS_KEY).write_text(json.dumps(document, indent=self.index_writes))
        return etag


@pytest.fixture
def published(tmp_path: Path, config) -> Path:
    """3.13.5 and 3.12.11 on debian-11 and debian-12, both arches, published (unsigned)."""
    store = LocalStore(tmp_path / "store")
    write_releases(store, ["3.13.5", "3.12.11"])
    request = {"versions": ["3.13.5", "3.12.11"], "platforms": ["debian-11", "debian-12"]}
    result = plan(request, store, config, "exec-1", NOW)
    for item in result.items:
        fake_build(store, item.spec)
    publish(result.summary, store, config, now=NOW, signer=None)
    return store.root


def _regenerate(store: LocalStore, registry, **kwargs: int) -> list[str]:
    public_url = public_url_function(store, BASE)
    return regenerate_derived(store, registry, ["debian-11", "debian-12"], public_url, NOW, **kwargs)


def test_a_catalog_that_keeps_changing_stops_after_max_rounds_and_says_so(
    published, registry, caplog
) -> None:
    store = ConcurrentPublisher(published, writes=100)
    with caplog.at_level("WARNING", logger="buildfarm.catalog.derived"):
        keys = _regenerate(store, registry, max_rounds=3)
    assert store.index_writes == 3
    assert keys == list(dict.fromkeys(keys)) and INDEX_KEY in keys
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert f"{store.url(VERSIONS_KEY)} changed while its derived files" in warnings[0], warnings
    assert "3 times in a row" in warnings[0]


def test_the_last_allowed_round_that_catches_up_returns(published, registry) -> None:
    store = ConcurrentPublisher(published, writes=2)
    keys = _regenerate(store, registry, max_rounds=3)
    assert store.index_writes == 3
    assert INDEX_KEY in keys


def test_the_keys_written_are_named_once_in_the_order_first_written(published, registry) -> None:
    store = ConcurrentPublisher(published, writes=2)
    keys = _regenerate(store, registry)
    assert store.index_writes == 3  # each derived file written three times, named once
    metadata = ["download-metadata/debian-11.json", "download-metadata/debian-12.json"]
    assert keys == [INSTALLER_KEY, *metadata, INDEX_KEY]
