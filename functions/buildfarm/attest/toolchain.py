"""builder_image/sbom_facts/toolchain.py under this name (its one copy: see collect.py)."""

import sys

from buildfarm.attest.collect import collector_module

sys.modules[__name__] = collector_module("toolchain")
