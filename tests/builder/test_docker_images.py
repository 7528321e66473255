"""Builder images (buildfarm.images, `buildfarm images`) and the docker runner's choices that
need no engine; the builds in an engine are in test_docker_build.py and
tests/infra/test_batch_container.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from buildfarm import images
from buildfarm.platforms import load_registry

REPO = Path(__file__).resolve().parents[2]
BUILDFARM = [str(Path(sys.executable).parent / "buildfarm")]


def test_build_args_name_the_base_image_and_the_platform_the_dockerfile_requires():
    registry = load_registry()
    for platform_id in registry.platforms:
        platform = registry.get(platform_id)
        assert images.build_args(platform) == {"BASE_IMAGE": platform.base_image, "PLATFORM": platform_id}
    dockerfiles = {registry.family_of(p).dockerfile for p in registry.platforms}
    for dockerfile in dockerfiles:
        text = (REPO / "builder_image" / dockerfile).read_text()
        assert "ARG BASE_IMAGE" in text and "ARG PLATFORM" in text and "--build-arg PLATFORM" in text


def test_image_tag_covers_everything_the_dockerfile_copies():
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


def test_the_image_tag_covers_the_buildfarm_wheels_sources(monkeypatch):
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
