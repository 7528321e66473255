"""Is a build the planned one? verify_cell decides one planned cell from the store.

A build verifies when its manifest.json records exactly the planned spec (execution id
included: see spec_differences), lists exactly one tarball (what uv and a non-root install
take), and every artifact it lists is in the store with the manifest's sha256 and size.
Nothing here writes.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from buildfarm.catalog import CatalogArtifact, CatalogCell
from buildfarm.errors import first_error
from buildfarm.layout import manifest_key
from buildfarm.models import BuildSpec, Manifest, ManifestArtifact
from buildfarm.plan_items import PlanItem
from buildfarm.releases import iso
from buildfarm.store import Store, StoreError, StoreNotFound, check_key

MAX_REASON = 500


def short(text: str) -> str:
    """One line of at most MAX_REASON characters (reasons end up in state output and HTML)."""
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


# The local chroot and docker runners (buildfarm.runners.base.isolated_driver) hand the driver the planned
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


def _canonical(value: Any) -> str:
    """A value as canonical JSON: equal only if the same JSON (Python's True == 1 == 1.0 would
    let "build": true or 1.0 pass for the planned build 1)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


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
        elif _canonical(got[path]) != _canonical(value):
            differences.append(f"{path} {got[path]!r} (plan: {value!r})")
    differences += [f"{path} not in the plan" for path in got if path not in want]
    return differences


def read_manifest_json(store: Store, key: str) -> dict[str, Any] | str | None:
    """The JSON object of the manifest.json at key, None if there is none, else the reason it
    cannot be read (a Python build's and a runtime build's alike)."""
    try:
        raw, _ = store.read_json(key)
    except StoreNotFound:
        return None
    except (StoreError, ValueError) as error:
        return short(f"manifest.json unreadable: {error}")
    return raw if isinstance(raw, dict) else "manifest.json invalid: not a JSON object"


def _read_manifest(store: Store, item: PlanItem) -> tuple[Manifest | None, str]:
    """(manifest, "") if the build's manifest.json records exactly the planned spec, else
    (None, reason); (None, "") if there is no manifest (the caller finds the reason)."""
    raw = read_manifest_json(store, manifest_key(item.spec.artifact_dir))
    if not isinstance(raw, dict):
        return None, raw or ""
    # The spec first: a build from another execution or another source is named as such,
    # not as a schema problem.
    differences = spec_differences(item.spec, raw.get("spec"))
    if differences:
        return None, short(f"manifest spec differs from the plan: {'; '.join(differences)}")
    try:
        return Manifest.model_validate(raw), ""
    except ValidationError as error:
        return None, short(f"manifest.json invalid: {first_error(error)}")


def verify_artifact(store: Store, artifact_dir: str, artifact: ManifestArtifact) -> CatalogArtifact | str:
    """The artifact's catalog entry if the store holds it, in the build directory, with the
    manifest's sha256 and size, else the reason it does not (a Python build's and a runtime
    build's alike)."""
    key = f"{artifact_dir}/{artifact.file}"
    try:
        check_key(key)
        if "/" in artifact.file:
            raise StoreError(f"artifact file name {artifact.file!r} contains '/'")
        sha256, size = store.verify_sha256_and_size(key)
    except StoreNotFound:
        return short(f"artifact {artifact.file} is missing from the store")
    except StoreError as error:
        return short(f"artifact {artifact.file}: {error}")
    if sha256 != artifact.sha256:
        return short(
            f"artifact {artifact.file}: sha256 {sha256} differs from the manifest's {artifact.sha256}"
        )
    if size != artifact.size:
        return short(f"artifact {artifact.file}: size {size} differs from the manifest's {artifact.size}")
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
    tarballs = [artifact.file for artifact in manifest.artifacts if artifact.type == "tarball"]
    if len(tarballs) != 1:
        # uv's metadata and install.sh without root install the cell's one tarball.
        return None, short(f"manifest.json lists {len(tarballs)} tarballs ({', '.join(tarballs)}), not one")
    artifacts = []
    for artifact in manifest.artifacts:
        verified = verify_artifact(store, spec.artifact_dir, artifact)
        if isinstance(verified, str):
            return None, verified
        artifacts.append(verified)
    manifest_at = manifest_key(spec.artifact_dir)
    return CatalogCell(build=spec.build, published=iso(now), manifest=manifest_at, artifacts=artifacts), ""
