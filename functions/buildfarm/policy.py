"""The version and platform policy: which cells a plan covers, decided by the lifecycle data in
the registry (builder_image/platforms.json: each series' end of life, each platform's end of
support and unbuildable series) and the day of the plan.

The schedule ({}) builds the newest N releases of each live series on the live enabled
platforms. Naming versions or platforms sets the dates aside (end-of-life cells stay buildable
on request) but never the registry's unbuildable series or the lowest-series floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from pydantic import BaseModel, ConfigDict

from buildfarm.config import FarmConfig
from buildfarm.platforms import Registry
from buildfarm.releases import Release, ReleaseCatalog, admitted, resolve_versions
from buildfarm.versions import series_of
from buildfarm.workflow_input import InputError, WorkflowInput


class Dropped(BaseModel):
    """Something the policy left out of the matrix, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    what: str  # "series 3.9", "platform debian-11", "3.9.2 on rhel-10"
    reason: str


class PolicyReport(BaseModel):
    """What the policy applied: shown by `buildfarm plan` and kept in the plan record."""

    model_config = ConfigDict(extra="forbid")
    day: date
    releases_per_series: int | None  # None: versions were named
    series: list[str]  # the series the versions come from, newest first
    platforms: list[str]
    platforms_named: bool
    dropped: list[Dropped] = []

    def lines(self) -> list[str]:
        """The report as a few human-readable lines."""
        if self.releases_per_series is None:
            versions = (
                f"versions as named (series {', '.join(self.series) or '-'}; lifecycle dates not applied)"
            )
        else:
            versions = (
                f"newest {self.releases_per_series} release(s) of each live series: "
                f"{', '.join(self.series) or 'none'}"
            )
        platforms = "as named" if self.platforms_named else "live and enabled"
        lines = [
            f"policy on {self.day.isoformat()}: {versions}",
            f"platforms ({platforms}): {', '.join(self.platforms) or 'none'}",
        ]
        lines += [f"not built: {d.what}: {d.reason}" for d in self.dropped]
        return lines


def series_drop_reason(registry: Registry, series: str, day: date) -> str | None:
    """Why the schedule does not build `series` on `day` (None: it is live)."""
    end = registry.series_end_of_life.get(series)
    if end is None:
        return "no end-of-life date in the registry (builder_image/platforms.json series)"
    if day > end:
        return f"end of life {end.isoformat()}"
    return None


def policy_releases(
    catalog: ReleaseCatalog, config: FarmConfig, registry: Registry, day: date
) -> tuple[list[Release], list[str], list[Dropped]]:
    """The newest config.releases_per_series releases of each live series (newest first), the
    live series, and the series dropped with their reason.

    A series' pre-releases count only while it has no final release (and only with
    config.prereleases, as admitted() decides): 3.15.0rc2 is not built once 3.15.0 exists.
    """
    by_series: dict[str, list[Release]] = {}
    for release in admitted(catalog, config):  # newest first, >= the lowest series
        by_series.setdefault(series_of(release.version), []).append(release)
    chosen: list[Release] = []
    live: list[str] = []
    dropped: list[Dropped] = []
    for series, releases in by_series.items():
        reason = series_drop_reason(registry, series, day)
        if reason is not None:
            dropped.append(Dropped(what=f"series {series}", reason=reason))
            continue
        live.append(series)
        finals = [r for r in releases if not r.prerelease]
        chosen += (finals or releases)[: config.releases_per_series]
    return chosen, live, dropped


def policy_platforms(config: FarmConfig, registry: Registry, day: date) -> tuple[list[str], list[Dropped]]:
    """The enabled platforms still supported on `day`, and those dropped with their end date."""
    live = list(registry.live_platforms(day, among=config.enabled_platforms))
    dropped = [
        Dropped(
            what=f"platform {pid}",
            reason=f"end of support {registry.get(pid).end_of_support.isoformat()}",
        )
        for pid in config.enabled_platforms
        if pid not in live
    ]
    return live, dropped


@dataclass
class Selection:
    """The cells a plan covers (release, platform, arch) and the report of how they were chosen."""

    matrix: list[tuple[Release, str, str]]
    releases: list[Release]
    report: PolicyReport


def select_cells(
    request: WorkflowInput, catalog: ReleaseCatalog, config: FarmConfig, registry: Registry, day: date
) -> Selection:
    """Apply the policy to a validated request. ReleaseLookupError names an unknown version;
    InputError names a cell that was named explicitly (version and platform) but cannot be built."""
    dropped: list[Dropped] = []
    if request.versions is None:
        releases, series, dropped_series = policy_releases(catalog, config, registry, day)
        dropped += dropped_series
    else:
        releases = resolve_versions(request.versions, catalog, config)
        series = list(dict.fromkeys(series_of(r.version) for r in releases))
    if request.platforms is None:
        platforms, dropped_platforms = policy_platforms(config, registry, day)
        dropped += dropped_platforms
    else:
        platforms = list(request.platforms)
    arches = list(request.arches or config.enabled_arches)

    matrix: list[tuple[Release, str, str]] = []
    for release in releases:
        for platform in platforms:
            reason = registry.unbuildable_reason(platform, series_of(release.version))
            if reason is not None:
                if request.versions is not None and request.platforms is not None:
                    raise InputError(
                        f"invalid workflow input: {release.version} cannot be built on {platform}: {reason}"
                    )
                dropped.append(Dropped(what=f"{release.version} on {platform}", reason=reason))
                continue
            supported = registry.get(platform).arches
            matrix += [(release, platform, arch) for arch in arches if arch in supported]
    report = PolicyReport(
        day=day,
        releases_per_series=config.releases_per_series if request.versions is None else None,
        series=series,
        platforms=platforms,
        platforms_named=request.platforms is not None,
        dropped=dropped,
    )
    return Selection(matrix=matrix, releases=releases, report=report)
