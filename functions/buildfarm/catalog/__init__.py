"""The published catalogs: versions.json, the source of truth (versions_json; its entries:
entries), and what is
derived from it (derived): download-metadata/<platform>.json for uv (uv_metadata), index.html
for people (status_page) and install.sh (install_script). Their keys are buildfarm.layout's.

The names importers use are re-exported here: `from buildfarm.catalog import read_versions`.
"""

from buildfarm.catalog.derived import public_url_function, regenerate_derived
from buildfarm.catalog.entries import CatalogArtifact, CatalogCell
from buildfarm.catalog.install_script import INSTALLER_PLACEHOLDER, publish_installer, render_installer
from buildfarm.catalog.shape import CatalogError
from buildfarm.catalog.status_page import FailedCells, render_index
from buildfarm.catalog.uv_metadata import uv_download_metadata, uv_key
from buildfarm.catalog.versions_json import (
    SCHEMA_VERSION,
    check_catalog,
    empty_versions,
    iter_cells,
    merge_cells,
    parse_cell,
    published_builds,
    published_platforms,
    read_versions,
    update_versions,
    versions_etag,
)
from buildfarm.layout import INDEX_KEY, INSTALLER_KEY, VERSIONS_KEY, Cell, cell_name

__all__ = [
    "INDEX_KEY",
    "INSTALLER_KEY",
    "INSTALLER_PLACEHOLDER",
    "SCHEMA_VERSION",
    "VERSIONS_KEY",
    "CatalogArtifact",
    "CatalogCell",
    "CatalogError",
    "Cell",
    "FailedCells",
    "cell_name",
    "check_catalog",
    "empty_versions",
    "iter_cells",
    "merge_cells",
    "parse_cell",
    "public_url_function",
    "publish_installer",
    "published_builds",
    "published_platforms",
    "read_versions",
    "regenerate_derived",
    "render_index",
    "render_installer",
    "update_versions",
    "uv_download_metadata",
    "uv_key",
    "versions_etag",
]
