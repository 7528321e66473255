"""Gather a build's SBOM facts where the build ran, as plain JSON: the bundled code of its
source tree, the system packages its installed tree links, the toolchain and the distribution.

    python -S -E -B -m sbom_facts.collect --source-tree SRC --installed-tree TREE --package-kind deb

(from builder_image/). Standard library only, Python 3.9+: the driver runs it with the
interpreter it has just built and stores the JSON in manifest.json's "sbom_facts"; the
publishing side turns that, with manifest.json's spec, into buildfarm.attest.sbom.SbomFacts.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .bundled import bundled_components
from .linked import owner_lookup_for, system_packages
from .toolchain import toolchain

OS_RELEASE = Path("/etc/os-release")


def parse_os_release(text: str) -> dict[str, str]:
    """os-release's KEY=value lines (values unquoted)."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            fields[key.strip()] = value.strip().strip("'\"")
    return fields


def collect_facts(
    source_tree: Path, installed_tree: Path, package_kind: str, bolt: str | None = None
) -> dict[str, Any]:
    """{"distro_id", "distro_version", "bundled", "linked", "unexplained_sonames", "toolchain"}."""
    os_release = parse_os_release(OS_RELEASE.read_text()) if OS_RELEASE.exists() else {}
    owner_of = owner_lookup_for(package_kind)
    packages, unexplained = system_packages(installed_tree, owner_of)
    return {
        "distro_id": os_release.get("ID", "unknown"),
        "distro_version": os_release.get("VERSION_ID", "unknown"),
        "bundled": [asdict(component) for component in bundled_components(source_tree)],
        "linked": [asdict(package) for package in packages],
        "unexplained_sonames": unexplained,
        "toolchain": [asdict(tool) for tool in toolchain(owner_of, bolt=bolt)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sbom_facts.collect", description=__doc__)
    parser.add_argument("--source-tree", type=Path, required=True, help="the extracted CPython source")
    parser.add_argument("--installed-tree", type=Path, required=True, help="the installed build (prefix)")
    parser.add_argument("--package-kind", choices=("deb", "rpm"), required=True)
    parser.add_argument("--bolt", help="llvm-bolt's path, when the build used one outside PATH")
    args = parser.parse_args(argv)
    for option, path in (("--source-tree", args.source_tree), ("--installed-tree", args.installed_tree)):
        if not path.is_dir():
            print(f"collect: error: {option} {path}: not a directory", file=sys.stderr)
            return 2
    facts = collect_facts(args.source_tree, args.installed_tree, args.package_kind, args.bolt)
    json.dump(facts, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
