"""Builder images (buildfarm.images, `buildfarm images`) and the docker runner's choices that
need no engine; the builds in an engine are in test_docker_build.py and
tests/infra/test_batch_container.py."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from buildfarm import images
from buildfarm.platforms import load_registry

REPO = Path(__file__).resolve().parents[2]
BUILDFARM = [str(Path(sys.executable).parent / "buildfarm")]


def stand_in_engine(monkeypatch: pytest.MonkeyPatch, ids: dict[str, str]) -> None:
    """images._docker answering `image inspect` with these images' ids, and nothing else."""

    def docker(*argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        if argv[:2] == ("image", "inspect") and argv[-1] in ids:
            return subprocess.CompletedProcess(argv, 0, ids[argv[-1]] + "\n", "")
        return subprocess.CompletedProcess(argv, 1, "", f"Error: No such image: {argv[-1]}")

    monkeypatch.setattr(images, "_docker", docker)


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every base image present (one id each), and no local CAs."""
    registry = load_registry()
    bases = {registry.get(p).base_image for p in registry.platforms}
    stand_in_engine(monkeypatch, {base: f"sha256:{base}" for base in bases})
    monkeypatch.setattr(images, "LOCAL_CA_DIR", tmp_path / "no-local-cas")


def test_build_args_name_the_base_image_the_platform_and_the_job_user_the_dockerfile_requires():
    registry = load_registry()
    for platform_id in registry.platforms:
        platform = registry.get(platform_id)
        assert images.build_args(platform) == {
            "BASE_IMAGE": platform.base_image,
            "PLATFORM": platform_id,
            "JOB_UID": str(images.JOB_UID),
        }
    dockerfiles = {registry.family_of(p).dockerfile for p in registry.platforms}
    for dockerfile in dockerfiles:
        text = (REPO / "builder_image" / dockerfile).read_text()
        assert "ARG BASE_IMAGE" in text and "ARG PLATFORM" in text and "--build-arg PLATFORM" in text
        # The jobs' user (infra/batch.py runs every job as it) exists, and no setuid or setgid
        # program is left to regain root with.
        assert "ARG JOB_UID" in text and '--uid "${JOB_UID}"' in text and "--build-arg JOB_UID" in text
        assert "-perm /6000 -type f -exec chmod ug-s {} +" in text


def test_image_tag_covers_everything_the_dockerfile_copies(engine):
    registry = load_registry()
    context = REPO / "builder_image"
    files = {path.relative_to(context).as_posix() for path in images.context_files(registry, "debian-12")}
    driver = [*context.glob("*.py"), *context.glob("driver/*.py"), *context.glob("sbom_facts/*.py")]
    driver += context.glob("keys/*.asc")
    copied = {path.relative_to(context).as_posix() for path in driver}
    assert files == copied | {"platforms.json", "Dockerfile.deb"}
    tag = images.image_tag(registry, "debian-12", "x86_64")
    assert tag.startswith("buildfarm-builder:debian-12-x86_64-") and len(tag.rsplit("-", 1)[1]) == 12
    assert images.image_tag(registry, "debian-11", "x86_64") != tag


def test_local_certificate_authorities_are_passed_as_pem(tmp_path):
    assert images.local_ca_certificates(tmp_path / "missing") == ""
    (tmp_path / "proxy.crt").write_text("-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n")
    (tmp_path / "notes.txt").write_text("not a certificate")
    (tmp_path / "empty.crt").write_text("")
    assert (
        images.local_ca_certificates(tmp_path)
        == "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----"
    )


def test_without_an_engine_the_docker_runner_says_so_in_one_line(tmp_path):
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    for argv in (
        ["build", "3.13.5", "--platform", "debian-12", "--runner", "docker", "--store", str(tmp_path / "s")],
        ["images", "build", "--platform", "debian-12"],
    ):
        result = subprocess.run([*BUILDFARM, *argv], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert result.returncode == 2, result
        assert result.stderr.count("\n") == 1 and "no Docker engine" in result.stderr, result.stderr
        assert not (tmp_path / "s").exists()


def test_images_names_an_unknown_platform():
    result = subprocess.run(
        [*BUILDFARM, "images", "import-base", "--platform", "debian-99"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "unknown platform 'debian-99'" in result.stderr


def test_registry_py_lists_the_build_dependencies_the_driver_and_the_model_list(build_py, capsys):
    """The Dockerfiles install registry.py's list (before the driver is copied, so a changed
    driver reuses the package layers): the same as build.py's and the typed registry's."""
    registry_py = REPO / "builder_image" / "registry.py"
    registry = load_registry()
    raw = json.loads((REPO / "builder_image" / "platforms.json").read_text())
    for platform_id, platform in registry.platforms.items():
        for arch in platform.arches:
            listed = subprocess.run(
                [sys.executable, str(registry_py), "--build-dependencies", platform_id, arch],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            driver = build_py.platform_info(raw, platform_id, arch)["build_dependencies"]
            assert listed == driver == list(registry.build_dependencies(platform_id, arch)), platform_id
    for argv in (["--build-dependencies", "debian-99", "x86_64"], ["--build-dependencies", "debian-12"]):
        result = subprocess.run([sys.executable, str(registry_py), *argv], capture_output=True, text=True)
        assert result.returncode == 2 and result.stderr and not result.stdout, argv
    for dockerfile in ("Dockerfile.deb", "Dockerfile.rpm"):
        text = (REPO / "builder_image" / dockerfile).read_text()
        run = re.search(r"python3 /\S+/registry\.py --build-dependencies", text)
        assert run and text.index("COPY registry.py platforms.json") < run.start(), dockerfile
        assert text.index("pip install --no-cache-dir boto3") < text.index("COPY *.py platforms.json")


def test_the_package_list_stage_carries_the_label_cleanup_prunes_by():
    """images._remove_older prunes a platform's stages by this label (run against the engine in
    test_docker_image_cleanup)."""
    assert 'LABEL buildfarm.packages="${PLATFORM}"' in (REPO / "builder_image" / "Dockerfile.deb").read_text()


def test_the_image_tag_covers_the_buildfarm_wheels_sources(monkeypatch, engine):
    """A runtime job runs the image's buildfarm wheel: a changed package file is a new image."""
    registry = load_registry()
    sources = images.wheel_sources(REPO)
    names = {path.relative_to(REPO).as_posix() for path in sources}
    assert {"pyproject.toml", "README.md", "functions/buildfarm/images.py", "builder_image/build.py"} <= names
    assert "runtimes/fastapi-demo.toml" in names  # the wheel carries the definitions
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    tag = images.image_tag(registry, "debian-12", "x86_64")
    monkeypatch.setattr(images, "wheel_sources", lambda repository: sources[:-1])
    assert images.image_tag(registry, "debian-12", "x86_64") != tag


def test_the_image_tag_covers_the_base_images_content_the_local_cas_and_the_pins(monkeypatch, tmp_path):
    """A re-run import-base (a new root under the same name), another CA bundle passed as
    EXTRA_CA_CERTS or another pinned dependency is another image, not the stale one reused."""
    registry = load_registry()
    cas = tmp_path / "cas"
    monkeypatch.setattr(images, "LOCAL_CA_DIR", cas)
    stand_in_engine(monkeypatch, {"debian:bookworm": "sha256:" + "a" * 64})
    first = images.image_tag(registry, "debian-12", "x86_64")
    assert images.image_tag(registry, "debian-12", "x86_64") == first
    stand_in_engine(monkeypatch, {"debian:bookworm": "sha256:" + "b" * 64})  # import-base again
    reimported = images.image_tag(registry, "debian-12", "x86_64")
    assert reimported != first
    cas.mkdir()
    (cas / "proxy.crt").write_text("-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n")
    with_ca = images.image_tag(registry, "debian-12", "x86_64")
    (cas / "proxy.crt").write_text("-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n")
    other_ca = images.image_tag(registry, "debian-12", "x86_64")
    assert len({reimported, with_ca, other_ca}) == 3
    pins = images.pinned_closure()
    monkeypatch.setattr(images, "pinned_closure", lambda: {**pins, "pydantic": "0.0.1"})
    assert images.image_tag(registry, "debian-12", "x86_64") != other_ca
    stand_in_engine(monkeypatch, {})
    with pytest.raises(images.ImageError, match="no image debian:bookworm"):
        images.image_tag(registry, "debian-12", "x86_64")


@pytest.mark.slow  # uv build: hatchling from PyPI or uv's cache
def test_the_staged_context_holds_the_wheel_built_from_exactly_those_sources(tmp_path):
    """stage_context (what `buildfarm images build` and the CDK asset build from): builder_image/
    and one wheel, every file of which comes from wheel_sources; the Dockerfiles copy it last,
    after the package layers."""
    import zipfile

    context = images.stage_context(tmp_path / "context")
    assert {p.name for p in (REPO / "builder_image").iterdir() if p.name != "__pycache__"} < {
        p.name for p in context.iterdir()
    }
    (wheel,) = (context / images.WHEELS_DIR).glob("*.whl")
    sources = {path.relative_to(REPO).as_posix() for path in images.wheel_sources(REPO)}
    where = {"buildfarm/builder_image/": "builder_image/", "buildfarm/runtime_definitions/": "runtimes/"}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if ".dist-info/" in name:
                continue
            prefix = next((p for p in where if name.startswith(p)), "buildfarm/")
            source = where.get(prefix, "functions/buildfarm/") + name[len(prefix) :]
            assert source in sources, name
    for dockerfile in ("Dockerfile.deb", "Dockerfile.rpm"):
        copies = [
            line for line in (context / dockerfile).read_text().splitlines() if line.startswith("COPY ")
        ]
        assert copies[-1] == "COPY wheels/*.whl /opt/buildfarm/wheels/", dockerfile


# -- the wheel's dependencies, pinned and hashed for runtime jobs (wheels/requirements.txt) ------


@pytest.fixture(autouse=True)
def index_cache(tmp_path, monkeypatch) -> Path:
    """Each test's own cache of the index's answers: a made-up index is not kept for the next."""
    monkeypatch.setattr(images, "INDEX_CACHE_DIR", tmp_path / "index")
    return tmp_path / "index"


def test_a_releases_wheels_are_asked_of_the_index_once(monkeypatch, index_cache):
    """Every synthesis stages a context: only the first asks the index for a pin's wheels."""
    asked = []

    def counting_index(name: str) -> list[tuple[str, str]]:
        asked.append(name)
        return fake_index(name)

    monkeypatch.setattr(images, "_index_files", counting_index)
    first = images.pinned_requirements()
    assert sorted(asked) == sorted(pins())
    assert images.pinned_requirements() == first
    assert len(asked) == len(pins())  # the second came from the cache
    assert list(index_cache.glob("*/*.json"))


@cache
def pins() -> dict[str, str]:
    return images.pinned_closure()  # what this environment has installed


def fake_index(name: str) -> list[tuple[str, str]]:
    """What images._index_files reads from PyPI, made up: pydantic-core has Linux wheels of
    3.11-3.13 on both arches (3.14 only on x86_64, 3.13 also for a newer glibc, and Windows and
    musl ones), uv a py3 wheel per arch, every other pin a pure wheel; each its sdist and an
    older version's wheel too."""
    version = pins()[name]
    stem = name.replace("-", "_")
    if name == "pydantic-core":
        wheels = [f"cp3{m}-cp3{m}-manylinux_2_17_{a}" for m in (11, 12, 13) for a in ("x86_64", "aarch64")]
        wheels += ["cp314-cp314-manylinux_2_17_x86_64", "cp313-cp313-manylinux_2_39_x86_64"]
        wheels += ["cp313-cp313-win_amd64", "cp313-cp313-musllinux_1_2_x86_64"]
    elif name == "uv":
        wheels = ["py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64", "py3-none-manylinux_2_28_aarch64"]
    else:
        wheels = ["py3-none-any"]
    files = [f"{stem}-{version}-{tags}.whl" for tags in wheels]
    files += [f"{stem}-{version}.tar.gz", f"{stem}-0.0.0-py3-none-any.whl"]
    return [(file, hashlib.sha256(file.encode()).hexdigest()) for file in files]


def pinned_blocks(text: str) -> dict[str, tuple[str, set[str]]]:
    """name -> (version, sha256s) of a requirements file's `name==version \\ --hash=...` blocks."""
    blocks: dict[str, tuple[str, set[str]]] = {}
    for block in re.split(r"\n(?=[^ #])", text.strip()):
        if block.startswith("#"):
            continue
        first, *hashes = [line.strip(" \\") for line in block.splitlines()]
        name, version = first.split("==")
        assert all(line.startswith("--hash=sha256:") for line in hashes), block
        blocks[name] = (version, {line.removeprefix("--hash=sha256:") for line in hashes})
    return blocks


def test_the_pinned_requirements_are_the_installed_closure_with_their_linux_wheels_hashes(monkeypatch):
    """Every dependency of the wheel, and theirs (extras, markers), at the version installed
    here, with the sha256 of each of its wheels a Linux CPython >= 3.11 on x86_64 or aarch64
    installs (never an sdist, Windows, musl or a manylinux newer than rhel-8's glibc); the header
    names the series that have a wheel of every pin on both arches."""
    monkeypatch.setattr(images, "_index_files", fake_index)
    text = images.pinned_requirements()
    assert text.splitlines()[2] == "# tool-python: 3.11 3.12 3.13"
    blocks = pinned_blocks(text)
    for name, (version, hashes) in blocks.items():
        assert version == metadata.version(name), name
        files = [file for file, _ in fake_index(name)]
        expected = [f for f in files if f.endswith(".whl") and "0.0.0" not in f]
        if name == "pydantic-core":
            expected = [f for f in expected if not re.search("win|musl|2_39", f)]
        assert hashes == {hashlib.sha256(f.encode()).hexdigest() for f in expected}, name
    # Complete: what pyproject.toml asks and what each pin requires here are pinned, satisfied.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = [Requirement(line) for line in project]
    extras: dict[str, set[str]] = {}
    for requirement in wanted:
        extras.setdefault(canonicalize_name(requirement.name), set()).update(requirement.extras)
    for name in blocks:
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in extras.get(name, set()) | {""}):
                wanted.append(requirement)
    for requirement in wanted:
        version, _ = blocks[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version, prereleases=True), requirement
    assert {"pydantic-core", "cryptography", "cffi", "botocore"} <= set(blocks)


def test_a_series_is_left_out_when_its_closure_or_its_wheels_are_not_here(monkeypatch, index_cache):
    version = metadata.version("typing-extensions")
    newer_only = ['typing-extensions; python_version >= "3.13"']
    assert images._closure(newer_only, "3.12") == {}
    assert images._closure(newer_only, "3.13") == {"typing-extensions": version}
    assert images._closure(["no-such-distribution-here"], "3.13") is None

    def index_of(*tags: str) -> Callable[[str], list[tuple[str, str]]]:
        """pydantic-core with only these wheels, the others as fake_index has them."""

        def files(name: str) -> list[tuple[str, str]]:
            if name != "pydantic-core":
                return fake_index(name)
            return [(f"pydantic_core-{pins()[name]}-{t}.whl", "0" * 64) for t in tags]

        return files

    monkeypatch.setattr(images, "_index_files", index_of("cp310-cp310-manylinux1_x86_64"))
    with pytest.raises(images.ImageError, match=r"pydantic-core .*: no wheel on .* for a Linux CPython"):
        images.pinned_requirements()
    shutil.rmtree(index_cache)  # another index: forget what the last one said
    split = index_of("cp311-cp311-manylinux_2_17_x86_64", "cp312-cp312-manylinux_2_17_aarch64")
    monkeypatch.setattr(images, "_index_files", split)  # no series has it on both arches
    with pytest.raises(images.ImageError, match=r"no CPython >= 3\.11 has wheels of every dependency"):
        images.pinned_requirements()


def test_the_staged_context_holds_the_pinned_requirements_the_dockerfiles_copy(monkeypatch, tmp_path):
    def build_wheel(repository: Path, destination: Path) -> Path:
        destination.mkdir(parents=True)
        (destination / "python_build_farm-0.1.0-py3-none-any.whl").write_bytes(b"wheel")
        return destination / "python_build_farm-0.1.0-py3-none-any.whl"

    monkeypatch.setattr(images, "build_wheel", build_wheel)
    monkeypatch.setattr(images, "pinned_requirements", lambda: "# tool-python: 3.13\nsix==1.0 \\\n")
    context = images.stage_context(tmp_path / "context")
    assert (context / "wheels" / "requirements.txt").read_text() == "# tool-python: 3.13\nsix==1.0 \\\n"
    for dockerfile in ("Dockerfile.deb", "Dockerfile.rpm"):
        copies = [line for line in (context / dockerfile).read_text().splitlines() if line.startswith("COPY")]
        assert copies[-2:] == [
            "COPY wheels/requirements.txt /opt/buildfarm/wheels/",
            "COPY wheels/*.whl /opt/buildfarm/wheels/",
        ], dockerfile
