"""CLI test fixtures: an offline environment and a store with one published build."""

from __future__ import annotations

import pytest

from buildfarm.plan import plan
from buildfarm.publish import publish

from ..conftest import NOW, fake_build, write_releases


@pytest.fixture
def offline_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """python.org is unreachable here: the releases refresh points at a closed port (it fails at
    once); no store or platform list comes from the caller's environment."""
    monkeypatch.setenv("BUILDFARM_RELEASES_URL", "http://127.0.0.1:9/api")
    monkeypatch.delenv("BUILDFARM_STORE", raising=False)
    monkeypatch.delenv("BUILDFARM_ENABLED_PLATFORMS", raising=False)


@pytest.fixture
def published_store(local_store, config, session_signer):
    """Releases 3.13.5 and 3.12.11 known; 3.13.5 for debian-12 built (fake) and published."""
    write_releases(local_store, ["3.13.5", "3.12.11"])
    result = plan({"versions": ["3.13.5"], "platforms": ["debian-12"]}, local_store, config, "exec-1", NOW)
    for item in result.items:
        fake_build(local_store, item.spec)
    publish(result.summary, local_store, config, now=NOW, signer=session_signer)
    return local_store
