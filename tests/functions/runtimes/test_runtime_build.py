"""The real thing: the example runtime (FastAPI + uvicorn, runtimes/fastapi-demo.toml) built
from the farm store's own Python build (debian-12 3.13.5, the build versions.json names), its
manifest checked against the schema and the lock, its .deb installed in a fresh debootstrap
root where uvicorn serves an app on loopback. Requirements come from PyPI the first time,
then from the store's cache (the second build runs with uv offline). A bad lock hash
publishes nothing."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from buildfarm.roots import apt_install, mounted, run_in_root
from buildfarm.runtimes.definitions import find_definition
from buildfarm.runtimes.package import manifest_schema

pytestmark = [pytest.mark.build, pytest.mark.root, pytest.mark.farm]

BUILDFARM = str(Path(sys.executable).parent / "buildfarm")
RUNTIME = "fastapi-demo"
CELL_DIR = "runtimes/fastapi-demo/1.0.0/debian-12/x86_64"
PREFIX = "/opt/runtimes/fastapi-demo/1.0.0"
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^ \\]+)", re.MULTILINE)

SERVE_AND_FETCH = """
import socket, subprocess, sys, time, urllib.request
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
server = subprocess.Popen([sys.prefix + "/bin/uvicorn", "app:app", "--host", "127.0.0.1",
                           "--port", str(port), "--app-dir", "/srv"])
try:
    for _ in range(100):
        try:
            print(urllib.request.urlopen(f"http://127.0.0.1:{port}/hello/farm").read().decode())
            break
        except OSError:
            time.sleep(0.2)
finally:
    server.terminate()
    server.wait()
"""
LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m, json; print(json.dumps({d.name: d.version for d in m.distributions()}))"
)
APP = """
from fastapi import FastAPI
app = FastAPI()

@app.get("/hello/{name}")
def hello(name: str) -> dict:
    return {"hello": name}
"""


def build(store: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    argv = [BUILDFARM, "runtime", "build", *args, "--platform", "debian-12", "--store", str(store)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800)


@pytest.fixture(scope="module")
def runtime_store(farm_store, host_build, tmp_path_factory) -> Path:
    """A store of its own holding the farm's versions.json and the debian-12 build it names (the
    farm store stays as the other farm tests expect it)."""
    store = tmp_path_factory.mktemp("runtime-store")
    shutil.copyfile(farm_store.store / "versions.json", store / "versions.json")
    # The build versions.json names now: build 1 after the first run, a later one if the farm's
    # forced and pgo+lto runs came first (the farm group's order is pytest's, not this file's).
    cell = f"{host_build.version}/{host_build.platform}/{host_build.arch}"
    named = farm_store.built(
        cell,
        farm_store.versions()["builds"][host_build.version][host_build.platform][host_build.arch]["build"],
    )
    shutil.copytree(named.dir, store / named.dir.relative_to(farm_store.store))
    return store


@pytest.fixture(scope="module")
def first_build(runtime_store: Path) -> dict:
    started = time.monotonic()
    result = build(runtime_store, RUNTIME)
    print(f"runtime build: {time.monotonic() - started:.0f} s\n{result.stdout}{result.stderr}")
    assert result.returncode == 0, result.stderr
    # By hand: a standalone build, stored but not published (no run lists it).
    assert f"stored {(runtime_store / CELL_DIR / '1').as_uri()}/ (standalone: not published)" in result.stdout
    assert "runtimes" not in json.loads((runtime_store / "versions.json").read_text())
    return json.loads((runtime_store / CELL_DIR / "1" / "manifest.json").read_text())


def locked_pins() -> dict[str, str]:
    text = find_definition(RUNTIME).requirements_path.read_text()
    return {canonicalize_name(name): version for name, version in PIN.findall(text)}


def test_the_runtime_builds_and_its_manifest_lists_exactly_the_lock(runtime_store: Path, first_build) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(first_build, manifest_schema())
    installed = {canonicalize_name(p["name"]): p["version"] for p in first_build["packages"]}
    assert installed == locked_pins()
    named = json.loads((runtime_store / "versions.json").read_text())["builds"]["3.13.5"]["debian-12"][
        "x86_64"
    ]
    assert first_build["python"]["version"] == "3.13.5" and first_build["python"]["build"] == named["build"]
    assert first_build["selftest"]["moved"] == {"status": "passed", "where": PREFIX}
    assert {"fastapi", "uvicorn", "pydantic_core"} <= set(first_build["selftest"]["imports"])
    directory = runtime_store / CELL_DIR / "1"
    for artifact in first_build["artifacts"]:
        data = (directory / artifact["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == artifact["sha256"]
    assert not (directory / "SHA256SUMS").exists()  # the publish side's (runtimes.publish)
    assert first_build["attestations"] == {"checksums": "SHA256SUMS", "checksums_signature": "SHA256SUMS.sig"}
    assert [a["type"] for a in first_build["artifacts"]] == ["tarball", "deb"]


def test_the_deb_installs_in_a_fresh_root_and_serves(runtime_store: Path, first_build, fresh_root) -> None:
    root = fresh_root("bookworm")
    deb = next(a["file"] for a in first_build["artifacts"] if a["type"] == "deb")
    shutil.copyfile(runtime_store / CELL_DIR / "1" / deb, root / "tmp" / deb)
    apt_install(root, [f"/tmp/{deb}"])
    (root / "srv").mkdir(exist_ok=True)
    (root / "srv" / "app.py").write_text(APP)
    (root / "tmp" / "serve.py").write_text(SERVE_AND_FETCH)
    assert not (root / "opt" / "python").exists()  # the runtime carries its own Python
    with mounted(root):
        served = run_in_root(root, [f"{PREFIX}/bin/python", "/tmp/serve.py"])
        assert '{"hello":"farm"}' in served.stdout, served.stdout
        listed = run_in_root(root, [f"{PREFIX}/bin/python", "-c", LIST_DISTRIBUTIONS])
        version = run_in_root(root, ["dpkg-query", "-W", "-f=${Version}", "runtime-fastapi-demo-1.0.0"])
    distributions = json.loads(listed.stdout.strip().splitlines()[-1])
    assert {canonicalize_name(n): v for n, v in distributions.items()} == locked_pins()
    assert version.stdout.strip() == "1.0.0-1"


def test_a_second_build_takes_its_requirements_from_the_cache(runtime_store: Path, first_build) -> None:
    cache = runtime_store / "runtimes" / ".cache" / "uv"
    assert cache.is_dir()
    offline = {**dict(__import__("os").environ), "UV_OFFLINE": "1"}
    result = build(runtime_store, RUNTIME, env=offline)
    assert result.returncode == 0, result.stderr
    second = json.loads((runtime_store / CELL_DIR / "2" / "manifest.json").read_text())
    assert second["packages"] == first_build["packages"] and second["build"] == 2


def test_a_bad_lock_hash_is_one_line_and_publishes_nothing(
    runtime_store: Path, first_build, tmp_path
) -> None:
    definitions = tmp_path / "defs"
    (definitions / "bad").mkdir(parents=True)
    idna = locked_pins()["idna"]
    (definitions / "bad" / "requirements.txt").write_text(f"idna=={idna} --hash=sha256:{'ab' * 32}\n")
    toml = (find_definition(RUNTIME).source.read_text()
            .replace('name = "fastapi-demo"', 'name = "bad-hash"')
            .replace("fastapi-demo/requirements.txt", "bad/requirements.txt"))  # fmt: skip
    (definitions / "bad-hash.toml").write_text(toml)
    result = build(runtime_store, "bad-hash", "--definitions", str(definitions))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "buildfarm runtime: error: "
        f"hash mismatch for idna=={idna}: the download does not have the lock's sha256"
    ]
    assert not (runtime_store / "runtimes" / "bad-hash").exists()
