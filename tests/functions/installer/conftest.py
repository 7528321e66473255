"""Fixtures the installer's tests share."""

from __future__ import annotations

import pytest

from .signed_store import Key


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[Key, Key]:
    """The farm's key and a stranger's (made once per module: key generation is the slow part)."""
    base = tmp_path_factory.mktemp("keys")
    return Key.create(base / "farm"), Key.create(base / "stranger")
