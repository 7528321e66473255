"""The planner's claims under the per-execution cap (newest versions first, dated or not) and
against a cell another execution publishes while this plan is claiming."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from buildfarm.claims import claim_key
from buildfarm.cli import main
from buildfarm.layout import VERSIONS_KEY
from buildfarm.plan import items_key, plan
from buildfarm.publish import publish_cell
from buildfarm.store import LocalStore

from .conftest import NOW, fake_build, read_json

ONE_CELL = {"versions": ["3.13.5"], "platforms": ["debian-12"], "arches": ["x86_64"]}


def test_a_release_added_by_hand_is_claimed_first_under_the_cap(local_store, config, capsys):
    """`releases add` stores no release date; 3.13.16 is still the newest and goes first."""
    local_store.root.mkdir(parents=True)
    assert main(["releases", "add", "3.13.16", "--sha256", "ab" * 32, "--store", str(local_store.root)]) == 0
    capped = config.model_copy(update={"max_cells_per_execution": 40})
    result = plan({}, local_store, capped, "exec-1", NOW)
    # The schedule's versions (seed + 3.13.16): 3.13.16, 3.13.15, 3.11.2 x 10 live platforms x 2.
    assert result.versions == ["3.13.16", "3.13.15", "3.11.2"]
    assert (result.counts["cells"], result.counts["planned"], result.deferred) == (60, 40, 20)
    assert {item.spec.version for item in result.items} == {"3.13.16", "3.13.15"}


class PublishingStore(LocalStore):
    """A directory store that runs `between` once, right after the next read of versions.json:
    another execution acting between the planner's catalog read and its claims."""

    between: Callable[[], None] | None = None

    def read(self, key: str) -> tuple[bytes, str]:
        try:
            return super().read(key)
        finally:
            if key == VERSIONS_KEY and self.between is not None:
                action, self.between = self.between, None
                action()


def test_a_cell_published_between_the_catalog_read_and_the_claim_is_not_rebuilt(tmp_path, config):
    store = PublishingStore(tmp_path / "store")
    first = plan(ONE_CELL, store, config, "exec-a", NOW)
    (item,) = first.items
    fake_build(store, item.spec)
    # exec-a's PublishCell: versions.json gets the cell, then its claim is released.
    store.between = lambda: publish_cell(item, store, NOW + timedelta(minutes=30), signer=None)
    second = plan(ONE_CELL, store, config, "exec-b", NOW + timedelta(minutes=30))
    assert store.between is None  # the publish did run between the two
    assert second.items == [] and second.counts["skipped_published"] == 1
    assert second.skipped[0].build == 1 and second.skipped[0].detail.startswith("published build 1")
    # Nothing left claimed, planned or open: the cell is published and free.
    marker = read_json(store, claim_key(*item.cell.split("/")))
    assert marker["released"] is True
    assert not store.exists(items_key("exec-b")) and not store.exists("runs/exec-b.json")
    again = plan(ONE_CELL, store, config, "exec-c", NOW + timedelta(minutes=31))
    assert again.items == [] and again.skipped[0].detail == "published build 1"


def test_force_still_rebuilds_a_cell_published_meanwhile(tmp_path, config):
    store = PublishingStore(tmp_path / "store")
    (item,) = plan(ONE_CELL, store, config, "exec-a", NOW).items
    fake_build(store, item.spec)
    store.between = lambda: publish_cell(item, store, NOW, signer=None)
    forced = plan({**ONE_CELL, "force": True}, store, config, "exec-b", NOW)
    assert [i.spec.build for i in forced.items] == [2]
