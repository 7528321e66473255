"""What a command says, and exits with, when the store it was pointed at cannot be used: one
line naming the store, exit 2 (UsageError), whichever command read it. A store that cannot be
read or written (StoreError: unreadable, full, read-only, not JSON) and a versions.json of the
wrong shape (CatalogError) are the same failure to the user: `run` and `reindex` of the same
broken store end the same way, as `plan`, `status` and `releases` do."""

from __future__ import annotations

from buildfarm.catalog import CatalogError
from buildfarm.errors import UsageError
from buildfarm.store import StoreError

# What a command catches around its use of the store, to raise store_failure() for.
STORE_FAILURES: tuple[type[Exception], ...] = (StoreError, CatalogError)


def store_failure(location: str, error: Exception) -> UsageError:
    """The error a command raises for a store failure: "store LOCATION: what failed"."""
    return UsageError(f"store {location}: {error}")
