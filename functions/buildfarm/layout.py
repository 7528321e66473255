"""The store layout: every key and prefix the farm reads or writes, defined here and only here.

Keys are '/'-separated paths relative to the store root (buildfarm.store); every prefix below
ends with '/'. A cell is (version, platform, arch), named "<version>/<platform>/<arch>" in keys;
a build is one numbered attempt at a cell (1, 2, ...: no sign, no leading zero).

Published (served by the CDN; DESIGN.md "Store layout"):

- versions.json: the published catalog, the source of truth (buildfarm.catalog).
- releases.json: upstream releases known to the farm, with source sha256 (buildfarm.releases).
- download-metadata/<platform>.json: uv's python downloads list, one per platform (derived).
- index.html: the build matrix status page (derived).
- install.sh: the installer, pointed at the store's public URL (derived).
- builds/<version>/<platform>/<arch>/<build>/: one build's files, create-only (the bucket
  refuses overwrites): the builder's tarball, deb or rpm, build.log, manifest.json (last);
  then the publish side's sbom.cdx.json, provenance.json, SHA256SUMS and their .sig files.
- versions.json.sig, keys/<hex>.pub, keys/keys.json: the catalog's signature, the public keys.
- runtimes/<name>/<version>/<platform>/<arch>/<build>/: one runtime build (buildfarm.runtimes),
  the same shape; runtimes/.cache/uv/ is a directory store's download cache (never served).

Internal (never served; the bucket's lifecycle rules expire plans/, claims/ and logs/):

- logs/<version>/<platform>/<arch>/<build>/: a failed build's build.log and failure.json.
- claims/<version>/<platform>/<arch>.json: a cell's claim marker (buildfarm.claims).
- plans/<execution>/plan.json: the plan's record; plans/<execution>/items.json: its items,
  read by the workflow's Distributed Map.
- plans/<execution>/outcomes/<published|failed>/<version>/<platform>/<arch>.json: a decided
  cell (the status is in the key: one listing tells a run's progress).
- plans/results/: the Distributed Map's ResultWriter output (infra).
- runs/<execution>.json: an open run, from Plan until Finalize (buildfarm.recovery).

Who writes what (DESIGN.md "Integrity rules"): the builder writes only under builds/ and logs/
(BUILDER_PREFIXES); the publishing side writes the catalogs, claims, plans and run markers.
The builder (builder_image/, stdlib-only, Python 3.6) spells builds/ and logs/ keys itself;
tests/functions/test_layout.py checks that it spells them as this module does.
"""

from __future__ import annotations

import re

Cell = tuple[str, str, str]  # (version, platform, arch)

# -- published catalogs (public) -------------------------------------------------------------

VERSIONS_KEY = "versions.json"
"""The published catalog: every published build, by version, platform and arch."""
RELEASES_KEY = "releases.json"
"""Upstream CPython releases the farm knows, with their source URL and sha256."""
INDEX_KEY = "index.html"
"""The build matrix status page (derived from versions.json)."""
INSTALLER_KEY = "install.sh"
"""The installer script (derived: it embeds the store's public base URL)."""
DOWNLOAD_METADATA_PREFIX = "download-metadata/"
"""uv metadata, one document per platform: download_metadata_key()."""

# -- builds and their logs -------------------------------------------------------------------

BUILDS_PREFIX = "builds/"
"""Builds: builds/<version>/<platform>/<arch>/<build>/<file> (artifact_dir())."""
LOGS_PREFIX = "logs/"
"""Failed builds' logs: logs/<version>/<platform>/<arch>/<build>/<file> (log_dir())."""
MANIFEST_FILE = "manifest.json"
"""In a build's artifact_dir, written last: what was built, how, and its artifacts."""
BUILD_LOG_FILE = "build.log"
"""In a build's artifact_dir (the builder's, beside manifest.json; a runtime build has none) and
in a failed build's log_dir: the build's log. The one file of a build directory that neither
SHA256SUMS lists nor the publish side writes."""
FAILURE_FILE = "failure.json"
"""In a build's log_dir: why the build failed (phase, reason)."""
BUILD_NUMBER = re.compile(r"[1-9][0-9]{0,8}")
"""A build number as a key segment (fullmatch): no sign, no leading zero."""
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", re.ASCII)
"""An S3 bucket name (fullmatch): the BUCKET of an s3://BUCKET/PREFIX store."""
EXECUTION_ID_CHARACTERS = "A-Za-z0-9._-"
"""What an execution id is made of (a regex character range): plan.safe_id makes one of any text."""
EXECUTION_ID_MAX_LENGTH = 80
EXECUTION_ID = re.compile(f"[{EXECUTION_ID_CHARACTERS}]{{1,{EXECUTION_ID_MAX_LENGTH}}}", re.ASCII)
"""The nonce of the execution that planned a build (fullmatch), which its manifest records."""
FILE_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}"
"""A file name in a build directory (fullmatch; no path, nothing hidden): the one rule the
manifest's artifacts and attestations (models.FileName), the provenance's subjects and
`buildfarm verify`'s SHA256SUMS lines share. Narrower than a store key segment, so every such
name is also a valid key."""

LOCAL_TEMP_PREFIX = ".tmp-"
"""A directory store's write in flight: a temp file beside its key, renamed into place (never a
key; listings leave it out)."""

# -- runtimes (Python plus a locked venv; buildfarm.runtimes) ---------------------------------

RUNTIMES_PREFIX = "runtimes/"
"""Runtime builds: runtimes/<name>/<version>/<platform>/<arch>/<build>/ (runtime_artifact_dir())."""
RUNTIME_CACHE_DIR = "runtimes/.cache/uv"
"""A directory store's uv cache, relative to its root (not a store key: '.' is never public)."""
CACHE_PREFIX = "cache/"
"""Build caches kept in the store (internal, overwritten): cache/uv/ (uv_cache_key())."""
UV_CACHE_PREFIX = f"{CACHE_PREFIX}uv/"
"""uv's download cache of runtime builds beside an S3 store, one archive per platform and arch."""

# -- the workflow's working state (internal) -------------------------------------------------

CLAIMS_PREFIX = "claims/"
"""Claim markers: claims/<version>/<platform>/<arch>.json (claim_key())."""
PLANS_PREFIX = "plans/"
"""Plans: plans/<execution>/{plan.json, items.json, outcomes/...}."""
MAP_RESULTS_PREFIX = f"{PLANS_PREFIX}results/"
"""The Distributed Map's ResultWriter output (Step Functions writes it, nothing reads it)."""
RUNS_PREFIX = "runs/"
"""Open-run markers: runs/<execution>.json (run_marker_key())."""
OUTCOME_STATES = ("published", "failed")
"""The statuses an outcome key can carry (outcome_key())."""

# -- who may touch what (infra's IAM grants, bucket policy and lifecycle rules) ---------------

CATALOG_KEYS = (VERSIONS_KEY, RELEASES_KEY, INDEX_KEY, INSTALLER_KEY)
"""The published single-object catalogs (served briefly cached)."""
DERIVED_KEYS = (INDEX_KEY, INSTALLER_KEY)
"""Single objects regenerated from versions.json by Finalize (besides DOWNLOAD_METADATA_PREFIX)."""
BUILDER_PREFIXES = (BUILDS_PREFIX, LOGS_PREFIX)
"""Everything the builder writes: its own build's artifacts, or its log and failure record."""
INTERNAL_PREFIXES = (PLANS_PREFIX, CLAIMS_PREFIX, LOGS_PREFIX, RUNS_PREFIX, CACHE_PREFIX)
"""The workflow's working state, build logs and build caches: never served to the public."""

# -- what only the publish side writes (issue 15: SBOM, provenance, signatures) ---------------

SUMS_FILE = "SHA256SUMS"
SIGNATURE_SUFFIX = ".sig"
"""A detached signature sits beside its file: SHA256SUMS -> SHA256SUMS.sig."""
SBOM_FILE = "sbom.cdx.json"
PROVENANCE_FILE = "provenance.json"
PUBLISHER_BUILD_FILES = (SUMS_FILE, SBOM_FILE, PROVENANCE_FILE, f"*{SIGNATURE_SUFFIX}")
"""Names (an IAM/fnmatch pattern for the signatures) the publish side writes in a build dir,
never the builder: infra denies them to the builder's role."""
KEYS_PREFIX = "keys/"
"""The store's public keys: keys/<hex>.pub and keys/keys.json (the list, the current key)."""
KEYS_INDEX_KEY = f"{KEYS_PREFIX}keys.json"
"""The list of signing keys (buildfarm.keys_index reads it, attest.store_keys writes it)."""
VERSIONS_SIGNATURE_KEY = f"{VERSIONS_KEY}{SIGNATURE_SUFFIX}"


def public_key_key(key_fingerprint: str) -> str:
    """keys/<64 hex>.pub of a "SHA256:<hex>" fingerprint."""
    return f"{KEYS_PREFIX}{key_fingerprint.removeprefix('SHA256:')}.pub"


def is_public(key: str) -> bool:
    """Whether a key may be served to the public: nothing under INTERNAL_PREFIXES, and no
    segment that is empty or starts with '.' (a local store's .locks/ and .tmp-* files,
    '.' and '..'). The one statement of the rule `buildfarm serve` applies; the bucket's
    policy denies the same prefixes."""
    segments = key.split("/")
    if any(not segment or segment.startswith(".") for segment in segments):
        return False
    return not any(f"{key}/".startswith(prefix) for prefix in INTERNAL_PREFIXES)


def under(prefix: str) -> str:
    """The wildcard pattern of every key below a prefix ("claims/" -> "claims/*"), as IAM
    resources, bucket policies and CloudFront path patterns spell it."""
    return f"{prefix}*"


# -- keys ------------------------------------------------------------------------------------


def cell_name(version: str, platform: str, arch: str) -> str:
    """A cell as a key path (and as plans and outcomes name it): <version>/<platform>/<arch>."""
    return f"{version}/{platform}/{arch}"


def download_metadata_key(platform: str) -> str:
    """download-metadata/<platform>.json."""
    return f"{DOWNLOAD_METADATA_PREFIX}{platform}.json"


def cell_build_dirs(version: str, platform: str, arch: str) -> tuple[str, str]:
    """builds/<cell> and logs/<cell>: the folders whose children are the cell's build numbers."""
    cell = cell_name(version, platform, arch)
    return f"{BUILDS_PREFIX}{cell}", f"{LOGS_PREFIX}{cell}"


def artifact_dir(version: str, platform: str, arch: str, build: int) -> str:
    """builds/<version>/<platform>/<arch>/<build>: one build's files (no trailing '/')."""
    return f"{BUILDS_PREFIX}{cell_name(version, platform, arch)}/{build}"


def log_dir(version: str, platform: str, arch: str, build: int) -> str:
    """logs/<version>/<platform>/<arch>/<build>: a failed build's log and failure record."""
    return f"{LOGS_PREFIX}{cell_name(version, platform, arch)}/{build}"


def manifest_key(artifact_dir: str) -> str:
    """<artifact_dir>/manifest.json."""
    return f"{artifact_dir}/{MANIFEST_FILE}"


def failure_log_key(version: str, platform: str, arch: str, build: int) -> str:
    """logs/<version>/<platform>/<arch>/<build>/build.log."""
    return f"{log_dir(version, platform, arch, build)}/{BUILD_LOG_FILE}"


def failure_key(version: str, platform: str, arch: str, build: int) -> str:
    """logs/<version>/<platform>/<arch>/<build>/failure.json."""
    return f"{log_dir(version, platform, arch, build)}/{FAILURE_FILE}"


def claim_key(version: str, platform: str, arch: str) -> str:
    """claims/<version>/<platform>/<arch>.json."""
    return f"{CLAIMS_PREFIX}{cell_name(version, platform, arch)}.json"


def plan_record_key(plan_id: str) -> str:
    """plans/<execution>/plan.json."""
    return f"{PLANS_PREFIX}{plan_id}/plan.json"


def items_key(plan_id: str) -> str:
    """plans/<execution>/items.json."""
    return f"{PLANS_PREFIX}{plan_id}/items.json"


def outcomes_prefix(plan_id: str) -> str:
    """plans/<execution>/outcomes/."""
    return f"{PLANS_PREFIX}{plan_id}/outcomes/"


def outcome_key(plan_id: str, status: str, cell: Cell) -> str:
    """plans/<execution>/outcomes/<published|failed>/<version>/<platform>/<arch>.json."""
    return f"{outcomes_prefix(plan_id)}{status}/{cell_name(*cell)}.json"


# Beside the Python items (items_key), whose shape stays what the Build Map reads.
def runtime_items_key(plan_id: str) -> str:
    """plans/<execution>/runtime-items.json."""
    return f"{PLANS_PREFIX}{plan_id}/runtime-items.json"


def uv_cache_key(platform: str, arch: str) -> str:
    """cache/uv/<platform>-<arch>.tar.gz: the uv cache a runtime build of that cell restores
    and saves (an S3 store; a directory store keeps the directory itself, RUNTIME_CACHE_DIR)."""
    return f"{UV_CACHE_PREFIX}{platform}-{arch}.tar.gz"


def runtime_outcomes_prefix(plan_id: str) -> str:
    """plans/<execution>/runtime-outcomes/."""
    return f"{PLANS_PREFIX}{plan_id}/runtime-outcomes/"


def runtime_outcome_key(plan_id: str, cell: str) -> str:
    """plans/<execution>/runtime-outcomes/<name>/<version>/<platform>/<arch>.json."""
    return f"{runtime_outcomes_prefix(plan_id)}{cell}.json"


def parse_outcome_key(plan_id: str, key: str) -> tuple[str, str] | None:
    """An outcome key of plan_id -> (status, cell name); None for any other key."""
    status, _, rest = key.removeprefix(outcomes_prefix(plan_id)).partition("/")
    if status in OUTCOME_STATES and rest.endswith(".json"):
        return status, rest.removesuffix(".json")
    return None


def run_marker_key(plan_id: str) -> str:
    """runs/<execution>.json."""
    return f"{RUNS_PREFIX}{plan_id}.json"


def run_marker_id(key: str) -> str | None:
    """A run marker's key -> its execution id; None for any other key under runs/."""
    if key.startswith(RUNS_PREFIX) and key.endswith(".json"):
        return key.removeprefix(RUNS_PREFIX).removesuffix(".json")
    return None


def runtime_cell_name(name: str, version: str, platform: str, arch: str) -> str:
    """<name>/<version>/<platform>/<arch>: a runtime cell in keys, claims and plans."""
    return f"{name}/{version}/{platform}/{arch}"


def runtime_cell_dir(name: str, version: str, platform: str, arch: str) -> str:
    """runtimes/<name>/<version>/<platform>/<arch>: the folder whose children are build numbers."""
    return f"{RUNTIMES_PREFIX}{runtime_cell_name(name, version, platform, arch)}"


def runtime_artifact_dir(name: str, version: str, platform: str, arch: str, build: int) -> str:
    """runtimes/<name>/<version>/<platform>/<arch>/<build> (no trailing '/')."""
    return f"{runtime_cell_dir(name, version, platform, arch)}/{build}"


def runtime_claim_key(name: str, version: str, platform: str, arch: str) -> str:
    """claims/runtimes/<name>/<version>/<platform>/<arch>.json (the farm's claim marker)."""
    return f"{CLAIMS_PREFIX}{RUNTIMES_PREFIX}{runtime_cell_name(name, version, platform, arch)}.json"
