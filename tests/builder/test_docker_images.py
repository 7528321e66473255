"""Builder images (buildfarm.images, `buildfarm images`) and the docker runner's choices that
need no engine; the builds in an engine are in test_docker_builds.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    names = {path.name for path in images.context_files(registry, "debian-12")}
    copied = {path.name for path in (REPO / "builder_image").glob("*.py")} | {
        "platforms.json",
        "Dockerfile.deb",
    }
    assert names == copied
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
