"""A SHA-256 digest as the farm writes and reads it everywhere (manifests, catalogs, python.org's
listing, SBOMs, provenance, SHA256SUMS): 64 lowercase hex digits, nothing before or after."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

SHA256_HEX = "[0-9a-f]{64}"
"""The rule, unanchored: to build a larger pattern from (a SHA256SUMS line, a key fingerprint)."""
SHA256 = re.compile(SHA256_HEX, re.ASCII)
"""The rule as a regex: use it with fullmatch."""
Sha256 = Annotated[str, StringConstraints(pattern=f"^{SHA256_HEX}$")]
"""The rule as a pydantic field type (pydantic's Rust regex: $ is the very end, so no trailing
newline passes)."""
