"""What a farm planner asks about runtimes, as pure functions over data it already read: the
definitions, versions.json, and the newest published manifest of each runtime cell.

A runtime cell (name, version, platform, arch) is planned when it was never built, when its
lock changed, or when the newest published Python build of its series for that platform and
arch is not the one its published build used (a new patch release or a rebuild). A cell whose
Python is not published yet waits (it is not a failure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from buildfarm.runtimes.definitions import RuntimeDefinition
from buildfarm.runtimes.keys import RuntimeCell, needs_build, runtime_cell_name
from buildfarm.runtimes.python_source import PythonBuild, newest_published


@dataclass(frozen=True)
class RuntimePlanItem:
    """One runtime cell to build, with the Python build it is to use and why."""

    cell: RuntimeCell
    python: PythonBuild
    lock_sha256: str
    reason: str

    @property
    def name(self) -> str:
        return runtime_cell_name(*self.cell)


@dataclass(frozen=True)
class RuntimePlan:
    build: list[RuntimePlanItem]
    waiting: list[tuple[RuntimeCell, str]]  # cells whose Python is not published, and which
    current: list[RuntimeCell]  # cells whose published build is up to date


def plan_runtimes(
    definitions: Iterable[RuntimeDefinition],
    catalog: Mapping[str, Any],
    published: Mapping[RuntimeCell, Mapping[str, Any]],
    versions: Mapping[str, str] | None = None,
) -> RuntimePlan:
    """Every cell of every definition, sorted into build / waiting / current. `published` maps a
    cell to its newest published manifest; `versions` gives a definition's resolved version
    when it is not in the TOML (version = "git-tag")."""
    plan = RuntimePlan([], [], [])
    for definition in definitions:
        version = (versions or {}).get(definition.name) or definition.version
        lock = definition.lock_sha256()
        for platform in definition.platforms:
            for arch in definition.arches:
                cell = (definition.name, version, platform, arch)
                python = newest_published(dict(catalog), definition.python, platform, arch)
                if python is None:
                    plan.waiting.append(
                        (cell, f"no published Python {definition.python} for {platform}/{arch}")
                    )
                    continue
                reason = needs_build(published.get(cell), lock, python.version, python.build or 0)
                if reason is None:
                    plan.current.append(cell)
                else:
                    plan.build.append(RuntimePlanItem(cell, python, lock, reason))
    return plan
