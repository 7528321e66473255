"""Fixtures for the plan/publish tests: stores (directory, moto in-process, moto over real
HTTP), a loopback python.org release API, fake builds and big published matrices."""

from __future__ import annotations

import collections
import contextlib
import hashlib
import http.server
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

from buildfarm.catalog import CatalogArtifact, CatalogCell, merge_cells
from buildfarm.config import FarmConfig
from buildfarm.models import BuildSpec
from buildfarm.platforms import DEB_ARCH, load_registry
from buildfarm.releases import iso, load_releases, load_seed, save_releases
from buildfarm.store import LocalStore, S3Store, Store
from buildfarm.versions import parse_release

DATA = Path(__file__).parent / "data"
PYTHON_ORG = DATA / "python_org"
NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
BUCKET = "farm-test-bucket"
PREFIX = "python"
REAL_3135_SHA256 = "93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640"
FAKE_SHA = "ab" * 32


@pytest.fixture
def registry():
    return load_registry()


@pytest.fixture
def config(registry, tmp_path) -> FarmConfig:
    """Defaults, but python.org is never contacted unless a test points releases_url somewhere."""
    return FarmConfig.defaults(registry, store=str(tmp_path / "store"), releases_url="http://127.0.0.1:9/api")


@pytest.fixture
def local_store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@pytest.fixture
def s3_client(aws_env) -> Iterator[Any]:
    """moto in-process S3 with the test bucket."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def s3_store(s3_client) -> S3Store:
    return S3Store(BUCKET, PREFIX, client=s3_client)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's ThreadedMotoServer on 127.0.0.1: a real HTTP S3 endpoint, whose conditional
    writes are atomic as S3's are (moto_patches.s3_conditional_puts_atomic)."""
    # Imported here: scripts that tests run in a subprocess import this module as
    # tests.functions.conftest, without tests/ on sys.path.
    from moto_patches import s3_conditional_puts_atomic

    with s3_conditional_puts_atomic():
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
        server.stop()


@pytest.fixture
def http_s3_store(moto_server, aws_env) -> S3Store:
    """An S3Store talking HTTP to the moto server, on a fresh bucket."""
    from botocore.config import Config

    client = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=moto_server,
        config=Config(max_pool_connections=64, retries={"mode": "standard", "max_attempts": 5}),
    )
    bucket = f"farm-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return S3Store(bucket, PREFIX, client=client)


def count_s3_calls(client: Any) -> collections.Counter:
    """Count every S3 API call the client makes (botocore's before-call event), by operation."""
    counter: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def hook(model: Any, **kwargs: Any) -> None:
        with lock:
            counter[model.name] += 1

    client.meta.events.register("before-call.s3", hook)
    return counter


WRITE_OPERATIONS = {
    "PutObject",
    "DeleteObject",
    "DeleteObjects",
    "CopyObject",
    "CreateMultipartUpload",
    "UploadPart",
}
READ_OPERATIONS = {"GetObject", "HeadObject", "ListObjectsV2", "ListObjects"}


def all_keys(store: Store) -> dict[str, str]:
    """{key: sha256 of content} of everything in the store (to prove nothing changed)."""
    return {info.key: hashlib.sha256(store.read(info.key)[0]).hexdigest() for info in store.list("")}


# -- python.org -----------------------------------------------------------------------------


class PythonOrgServer:
    """A loopback python.org downloads API serving the recorded answers in data/python_org/.

    overrides[(path, release_id_or_None)] = (status, body bytes, delay seconds).
    """

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.overrides: dict[tuple[str, str | None], tuple[int, bytes, float]] = {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parsed = urllib.parse.urlsplit(self.path)
                release = urllib.parse.parse_qs(parsed.query).get("release", [None])[0]
                outer.requests.append(self.path)
                status, body, delay = outer.answer(parsed.path, release)
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # Not tests/loopback.py's serve_in_background: subprocess scripts import this module as
        # tests.functions.conftest, with the repository (not tests/) on sys.path.
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/api/v2/downloads"

    def answer(self, path: str, release: str | None) -> tuple[int, bytes, float]:
        if (path, release) in self.overrides:
            return self.overrides[(path, release)]
        if path == "/api/v2/downloads/release/":
            return 200, (PYTHON_ORG / "release.json").read_bytes(), 0
        if path == "/api/v2/downloads/release_file/" and release and release.isdigit():
            file = PYTHON_ORG / f"release_file_{release}.json"
            if file.exists():
                return 200, file.read_bytes(), 0
            return 200, b"[]", 0
        return 404, b'{"detail": "Not found."}', 0

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def python_org() -> Iterator[PythonOrgServer]:
    server = PythonOrgServer()
    yield server
    server.close()


# -- fake builds and published matrices -------------------------------------------------------


def fake_build(
    store: Store,
    spec: BuildSpec | dict[str, Any],
    *,
    kinds: tuple[str, ...] = ("tarball", "deb"),
    skip_upload: str | None = None,
    wrong_sha256: str | None = None,
    spec_changes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the builder leaves in the store: small artifact files, then manifest.json
    (buildfarm.models.Manifest shape). skip_upload / wrong_sha256 name a kind to break.
    spec_changes: dotted spec paths -> the value the manifest records instead (None: left out),
    for builds that were not made from the planned spec."""
    if isinstance(spec, dict):
        spec = BuildSpec.model_validate(spec)
    names = {
        "tarball": f"python-{spec.version}-{spec.platform}-{spec.arch}.tar.gz",
        "deb": f"python-{spec.version}_{spec.build}_{DEB_ARCH[spec.arch]}.deb",
        "rpm": f"python-{spec.version}-{spec.build}.{spec.arch}.rpm",
    }
    artifacts = []
    for kind in kinds:
        content = f"{kind} of {spec.version}/{spec.platform}/{spec.arch} build {spec.build}\n".encode()
        sha = hashlib.sha256(content).hexdigest()
        if kind == wrong_sha256:
            sha = hashlib.sha256(b"something else").hexdigest()
        if kind != skip_upload:
            store.put(f"{spec.artifact_dir}/{names[kind]}", content)
        artifacts.append({"type": kind, "file": names[kind], "sha256": sha, "size": len(content)})
    recorded = spec.model_dump(mode="json")
    for path, value in (spec_changes or {}).items():
        *parents, last = path.split(".")
        target = recorded
        for name in parents:
            target = target[name]
        if value is None:
            target.pop(last, None)
        else:
            target[last] = value
    manifest = {
        "schema_version": 1,
        "spec": recorded,
        "artifacts": artifacts,
        "python": {"version": spec.version},
        # What the publish side's SBOM and provenance are made of (buildfarm.attest.build_files).
        "built_at": "2025-06-11T12:00:00Z",
        "timings": {"fetch": 1.0, "make": 60.0},
        "builder_image": "local:Debian GNU/Linux 12 (bookworm)",
        "sbom_facts": {"distro_id": "debian", "distro_version": "12"},
    }
    # The builder's other file, which the status page links (SHA256SUMS is the publish side's).
    store.put(f"{spec.artifact_dir}/build.log", b"build log\n")
    store.put_json(f"{spec.artifact_dir}/manifest.json", manifest)
    return manifest


def fake_versions(count: int) -> list[str]:
    """`count` plausible release numbers, newest first (3.13.x down to 3.9.x)."""
    versions = []
    for minor, last in ((13, 5), (12, 11), (11, 13), (10, 18), (9, 23)):
        versions += [f"3.{minor}.{patch}" for patch in range(last, -1, -1)]
    versions += [f"3.{minor}.{patch}" for minor in (14,) for patch in range(0, 40)]
    assert count <= len(versions)
    return versions[:count]


def write_releases(store: Store, versions: list[str], now: datetime = NOW) -> None:
    """releases.json listing these versions (placeholder checksums), freshly refreshed."""
    releases = {
        v: {
            "version": v,
            "sha256": FAKE_SHA,
            "url": f"https://example.invalid/{v}/Python-{v}.tar.xz",
            "prerelease": parse_release(v).is_prerelease,
        }
        for v in versions
    }
    releases.setdefault(
        "3.13.5",
        {
            "version": "3.13.5",
            "sha256": REAL_3135_SHA256,
            "url": "https://www.python.org/ftp/python/3.13.5/Python-3.13.5.tar.xz",
        },
    )
    store.put_json(
        "releases.json",
        {
            "schema_version": 1,
            "updated": iso(now),
            "checked": iso(now),
            "source": "test",
            "releases": releases,
        },
    )


def write_published_matrix(
    store: Store,
    versions: list[str],
    platforms: list[str],
    arches: list[str],
    build: int = 1,
    now: datetime = NOW,
    *,
    files: bool = False,
) -> int:
    """versions.json with every cell published at `build`; with `files`, a stand-in of each file
    it lists (manifest.json, the tarball: what reindex requires), else none. Returns cells."""
    cells = {}
    for version in versions:
        for platform in platforms:
            for arch in arches:
                adir = f"builds/{version}/{platform}/{arch}/{build}"
                cells[(version, platform, arch)] = CatalogCell(
                    build=build,
                    published=iso(now),
                    manifest=f"{adir}/manifest.json",
                    artifacts=[
                        CatalogArtifact(
                            type="tarball",
                            key=f"{adir}/python-{version}-{platform}-{arch}.tar.gz",
                            sha256=FAKE_SHA,
                            size=30_000_000,
                        )
                    ],
                )
    document, _ = merge_cells({}, cells, now)
    store.put_json("versions.json", document)
    for cell in cells.values() if files else []:
        for key in (cell.manifest, *(artifact.key for artifact in cell.artifacts)):
            store.put(key, b"stand-in\n")
    return len(cells)


def read_json(store: Store, key: str) -> Any:
    return json.loads(store.read(key)[0])


def old_catalog(store) -> dict:
    """A releases.json refreshed on 2026-11-01 holding the seed, put into the store."""
    before = {
        "schema_version": 1,
        "updated": "2026-11-01T00:00:00Z",
        "checked": "2026-11-01T00:00:00Z",
        "source": "x",
        "releases": load_seed().model_dump(mode="json")["releases"],
    }
    store.put_json("releases.json", before)
    return before


SEED_VERSIONS = {"3.13.15", "3.13.5", "3.11.2", "3.9.2"}


def refreshed(store: Store, config: FarmConfig, python_org, now: datetime = NOW):
    """releases.json loaded (refreshed from the loopback python.org when due) and saved."""
    config = config.model_copy(update={"releases_url": python_org.base})
    state = load_releases(store, config, now)
    save_releases(store, state)
    return state


def publish_fake_cell(store: Store, config: FarmConfig, signer: Any) -> None:
    """3.13.5 for debian-12/x86_64 planned, built (fake_build) and published, signed by signer."""
    from buildfarm.plan import plan
    from buildfarm.publish import publish

    write_releases(store, ["3.13.5"])
    request = {"versions": ["3.13.5"], "platforms": ["debian-12"], "arches": ["x86_64"]}
    result = plan(request, store, config, "exec-1", NOW)
    for item in result.items:
        fake_build(store, item.spec)
    publish(result.summary, store, config, now=NOW, signer=signer)
