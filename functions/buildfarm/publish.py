"""The publisher: verify each planned cell's build from the store, merge the good ones into
versions.json, regenerate the uv metadata and index.html, release the plan's claims.

Each cell is decided from the store: manifest.json present under the spec's artifact_dir,
recording exactly the planned spec (execution id included: see spec_differences), and every
artifact in it present with the manifest's sha256 and size -> published;
anything else -> failed, with a reason (the workflow's result, else the builder's
failure.json, else "no manifest").
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from buildfarm.catalog import (
    CatalogArtifact,
    CatalogCell,
    Cell,
    parse_cell,
    public_url_function,
    regenerate_derived,
    update_versions,
)
from buildfarm.claims import release_claims
from buildfarm.config import FarmConfig
from buildfarm.models import BuildSpec, Manifest, ManifestArtifact
from buildfarm.plan import PlanItem, read_plan_items
from buildfarm.platforms import Registry, load_registry
from buildfarm.releases import iso
from buildfarm.store import Store, StoreError, StoreNotFound, check_key

log = logging.getLogger(__name__)

VERIFY_THREADS = 8
MAX_REASON = 500


class CellResult(BaseModel):
    """One entry of the workflow's `results` (what the Map reported for a cell)."""

    model_config = ConfigDict(extra="allow")
    cell: str
    status: Literal["succeeded", "failed"]
    error: str | None = None


class FailedCell(BaseModel):
    cell: str
    reason: str


class PublishResult(BaseModel):
    published: list[str]
    failed: list[FailedCell]
    counts: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def failure_key(version: str, platform: str, arch: str, build: int) -> str:
    return f"logs/{version}/{platform}/{arch}/{build}/failure.json"


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def _failure_reason(store: Store, item: PlanItem, result: CellResult | None) -> str:
    if result is not None and result.status == "failed":
        return _short(result.error or "build failed (no error given)")
    spec = item.spec
    try:
        raw, _ = store.read_json(failure_key(spec.version, spec.platform, spec.arch, spec.build))
    except StoreNotFound:
        raw = None
    except StoreError as error:
        return _short(f"no manifest; failure.json unreadable: {error}")
    if isinstance(raw, dict):
        for field in ("reason", "error", "message"):
            if raw.get(field):
                phase = f"{raw['phase']}: " if raw.get("phase") else ""
                return _short(f"{phase}{raw[field]}")
        return _short(json.dumps(raw))
    if result is not None and result.status == "succeeded":
        return "no manifest (the build reported success)"
    return "no manifest"


# The local chroot and docker runners (buildfarm.runners.local) hand the driver the planned
# spec with the store and a file:// source re-pointed at their mounts, and the driver records
# what it was given. These two translations are the only differences a planned build may show.
RUNNER_STORE = "/buildfarm/store"
RUNNER_SOURCE = "file:///buildfarm/source/"


def _flatten(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{path}.{key}" if path else str(key)))
        return flat
    return {path: value}


def _undo_runner_mounts(built: dict[str, Any], planned: BuildSpec) -> dict[str, Any]:
    built = {**built}
    built.setdefault("optimization", "pgo+lto")  # the driver's default, as BuildSpec's
    if built.get("store") == RUNNER_STORE and not planned.store.startswith("s3://"):
        built["store"] = planned.store
    source = built.get("source")
    if isinstance(source, dict) and isinstance(source.get("url"), str):
        url, planned_url = source["url"], planned.source.url
        same_file = url.rsplit("/", 1)[-1] == planned_url.rsplit("/", 1)[-1]
        if url.startswith(RUNNER_SOURCE) and planned_url.startswith("file://") and same_file:
            built["source"] = {**source, "url": planned_url}
    return built


def spec_differences(planned: BuildSpec, built: Any) -> list[str]:
    """How the spec a manifest records differs from the planned one ([] = the planned build).

    The whole spec is compared, not a chosen subset: every field decides what was built
    (version, platform, arch, source URL and sha256, prefix, optimization) or whose build it
    is (build, artifact_dir, store, execution_id), and a field added later is covered too."""
    if not isinstance(built, dict):
        return [f"spec is {type(built).__name__}, not an object"]
    want = _flatten(planned.model_dump(mode="json"))
    got = _flatten(_undo_runner_mounts(built, planned))
    differences = []
    for path, value in want.items():
        if path not in got:
            differences.append(f"{path} missing (plan: {value!r})")
        elif got[path] != value:
            differences.append(f"{path} {got[path]!r} (plan: {value!r})")
    differences += [f"{path} not in the plan" for path in got if path not in want]
    return differences


def _read_manifest(store: Store, item: PlanItem) -> tuple[Manifest | None, str]:
    """(manifest, "") if the build's manifest.json records exactly the planned spec, else
    (None, reason); (None, "") if there is no manifest (the caller finds the reason)."""
    try:
        raw, _ = store.read_json(f"{item.spec.artifact_dir}/manifest.json")
    except StoreNotFound:
        return None, ""
    except StoreError as error:
        return None, _short(f"manifest.json unreadable: {error}")
    if not isinstance(raw, dict):
        return None, "manifest.json invalid: not a JSON object"
    # The spec first: a build from another execution or another source is named as such,
    # not as a schema problem.
    differences = spec_differences(item.spec, raw.get("spec"))
    if differences:
        return None, _short(f"manifest spec differs from the plan: {'; '.join(differences)}")
    try:
        return Manifest.model_validate(raw), ""
    except ValidationError as error:
        first = error.errors()[0]
        return None, _short(f"manifest.json invalid: {'.'.join(map(str, first['loc']))}: {first['msg']}")


def _verify_artifact(store: Store, artifact_dir: str, artifact: ManifestArtifact) -> CatalogArtifact | str:
    """The artifact's catalog entry if the store holds it with the manifest's sha256 and size,
    else the reason it does not."""
    key = f"{artifact_dir}/{artifact.file}"
    try:
        check_key(key)
        if "/" in artifact.file:
            raise StoreError(f"artifact file name {artifact.file!r} contains '/'")
        sha256, size = store.verify_sha256_and_size(key)
    except StoreNotFound:
        return _short(f"artifact {artifact.file} is missing from the store")
    except StoreError as error:
        return _short(f"artifact {artifact.file}: {error}")
    if sha256 != artifact.sha256:
        return _short(
            f"artifact {artifact.file}: sha256 {sha256} differs from the manifest's {artifact.sha256}"
        )
    if size != artifact.size:
        return _short(f"artifact {artifact.file}: size {size} differs from the manifest's {artifact.size}")
    return CatalogArtifact(type=artifact.type, key=key, sha256=sha256, size=size)


def verify_cell(store: Store, item: PlanItem, now: datetime) -> tuple[CatalogCell | None, str]:
    """(catalog entry, "") if the build is the planned one (manifest spec == planned spec) and
    its artifacts verify, else (None, reason); (None, "") when there is no manifest."""
    spec = item.spec
    manifest, reason = _read_manifest(store, item)
    if manifest is None:
        return None, reason
    if not manifest.artifacts:
        return None, "manifest.json lists no artifacts"
    artifacts = []
    for artifact in manifest.artifacts:
        verified = _verify_artifact(store, spec.artifact_dir, artifact)
        if isinstance(verified, str):
            return None, verified
        artifacts.append(verified)
    manifest_key = f"{spec.artifact_dir}/manifest.json"
    return CatalogCell(build=spec.build, published=iso(now), manifest=manifest_key, artifacts=artifacts), ""


def publish(
    plan_summary: dict[str, Any],
    store: Store,
    config: FarmConfig,
    results: list[dict[str, Any]] | None = None,
    now: datetime | None = None,
    *,
    registry: Registry | None = None,
) -> PublishResult:
    """Publish what a plan built; return published and failed cells (failed ones with reasons)."""
    now = now or datetime.now(UTC)
    registry = registry or load_registry()
    plan_counts = plan_summary.get("counts") or {}
    skipped = {
        "skipped_published": int(plan_counts.get("skipped_published", 0)),
        "skipped_claimed": int(plan_counts.get("skipped_claimed", 0)),
    }
    if plan_summary.get("dry_run"):
        return PublishResult(
            published=[], failed=[], counts={"planned": 0, "published": 0, "failed": 0, **skipped}
        )

    items = read_plan_items(store, plan_summary["items"])
    by_cell: dict[str, CellResult] = {}
    for raw in results or []:
        try:
            result = CellResult.model_validate(raw)
        except ValidationError:
            log.warning("ignoring malformed result %r", raw)
            continue
        by_cell[result.cell] = result

    def decide(item: PlanItem) -> tuple[PlanItem, CatalogCell | None, str]:
        entry, reason = verify_cell(store, item, now)
        if entry is None and not reason:
            reason = _failure_reason(store, item, by_cell.get(item.cell))
        return item, entry, reason

    verified: dict[Cell, CatalogCell] = {}
    failed: dict[Cell, tuple[int, str]] = {}
    if items:
        with ThreadPoolExecutor(max_workers=min(VERIFY_THREADS, len(items))) as pool:
            for item, entry, reason in pool.map(decide, items):
                cell = parse_cell(item.cell)
                if entry is not None:
                    verified[cell] = entry
                else:
                    failed[cell] = (item.spec.build, reason)
                    log.warning("cell %s build %d not published: %s", item.cell, item.spec.build, reason)

    if verified:
        update_versions(store, verified, now)
    if items:
        public_url = public_url_function(store, config.public_base_url)
        regenerate_derived(store, registry, config.enabled_platforms, public_url, now, failed)
        execution_id = str(plan_summary.get("execution_id") or plan_summary.get("plan_id") or "")
        release_claims(store, [parse_cell(item.cell) for item in items], execution_id=execution_id, now=now)

    published_cells = [item.cell for item in items if parse_cell(item.cell) in verified]
    failed_cells = [
        FailedCell(cell=item.cell, reason=failed[parse_cell(item.cell)][1])
        for item in items
        if parse_cell(item.cell) in failed
    ]
    log.info("publish: %d published, %d failed", len(published_cells), len(failed_cells))
    return PublishResult(
        published=published_cells,
        failed=failed_cells,
        counts={
            "planned": len(items),
            "published": len(published_cells),
            "failed": len(failed_cells),
            **skipped,
        },
    )
