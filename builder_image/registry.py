#!/usr/bin/env python3
"""The registry (platforms.json) for the Dockerfiles, before the driver is in the image.

`registry.py --build-dependencies PLATFORM ARCH` prints the packages an image of that
platform and arch installs, one a line: the family's common list, the platform's own, and
llvm-bolt's package where the platform has it for the arch (the same list as
`build.py --build-dependencies`, which calls build_dependencies() below). The Dockerfiles
copy only this file and platforms.json before their package layers, so a changed driver
reuses those layers (Docker's layer cache) instead of reinstalling them. The driver
(driver/spec.py) reads the registry through load() and build_dependencies() too.

Standard library only, Python 3.6+ (the system python3 of every platform).
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
USAGE = "usage: registry.py --build-dependencies PLATFORM ARCH"


def load(path=None):
    """The registry JSON: path, else $BUILDFARM_PLATFORMS, else platforms.json next to this file."""
    path = path or os.environ.get("BUILDFARM_PLATFORMS") or os.path.join(HERE, "platforms.json")
    with open(path) as handle:
        return json.load(handle)


def bolt(registry, platform_id, arch):
    """The platform's llvm-bolt entry where it has one for arch, else None."""
    entry = registry["platforms"][platform_id].get("bolt")
    return entry if entry and arch in entry["arches"] else None


def build_dependencies(registry, platform_id, arch):
    """The packages a build of platform_id on arch needs, or raise KeyError naming the value."""
    platform = registry["platforms"][platform_id]
    if arch not in platform["arches"]:
        raise KeyError(arch)
    family = registry["families"][platform["family"]]
    tool = bolt(registry, platform_id, arch)
    extra = [tool["package"]] if tool else []
    return list(family["common_build_dependencies"]) + list(platform["build_dependencies"]) + extra


def main(argv):
    if len(argv) != 3 or argv[0] != "--build-dependencies":
        print(USAGE, file=sys.stderr)
        return 2
    try:
        packages = build_dependencies(load(), argv[1], argv[2])
    except KeyError as error:
        print("unknown platform or arch: {}".format(error), file=sys.stderr)
        return 2
    print("\n".join(packages))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
