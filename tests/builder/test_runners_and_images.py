"""Runner selection, the debootstrap helpers, the S3 upload path (moto server) and the
builder images (hadolint)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from builder_helpers import REPO

from buildfarm import roots
from buildfarm.platforms import load_registry
from buildfarm.runners import (
    ChrootRunner,
    HostRunner,
    RunnerUnavailable,
    host_platform_id,
    select_runner,
)

HOST_PLATFORM = host_platform_id(load_registry())


@pytest.mark.skipif(HOST_PLATFORM is None, reason="this machine is not a registered platform")
def test_host_runner_for_this_machine_and_auto_prefers_it():
    assert isinstance(select_runner(HOST_PLATFORM, "host"), HostRunner)
    assert isinstance(select_runner(HOST_PLATFORM, "auto"), HostRunner)


def test_host_runner_refuses_another_platform():
    other = "rhel-9" if HOST_PLATFORM != "rhel-9" else "debian-12"
    with pytest.raises(RunnerUnavailable, match=f"host runner: this machine is .* not {other}"):
        select_runner(other, "host")


def test_unknown_runner_and_unsupported_arch():
    with pytest.raises(RunnerUnavailable, match="unknown runner 'vm'"):
        select_runner("debian-12", "vm")
    with pytest.raises(RunnerUnavailable, match="cannot run aarch64 binaries in a chroot"):
        if os.geteuid() != 0:
            pytest.skip("needs root")
        select_runner("debian-12", "chroot", arch="aarch64")


def test_chroot_only_for_debian_family():
    with pytest.raises(RunnerUnavailable, match="rhel-9 is not a Debian/Ubuntu platform"):
        select_runner("rhel-9", "chroot")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_chroot_runner_for_debian_release_with_a_mirror():
    runner = select_runner("debian-11", "chroot")
    assert isinstance(runner, ChrootRunner)
    assert runner.mirror.startswith(("http://", "https://"))
    assert "ccache" not in runner.packages("/tmp/store") or os.environ.get("BUILDFARM_CCACHE") == "1"
    assert set(load_registry().build_dependencies("debian-11", runner.arch)) <= set(
        runner.packages("/tmp/store")
    )
    assert "python3-boto3" in runner.packages("s3://bucket/prefix")


def test_ubuntu_chroot_names_the_unreachable_mirror(monkeypatch):
    # An address that refuses connections stands in for an unreachable Ubuntu mirror.
    monkeypatch.setenv("BUILDFARM_UBUNTU_MIRROR", "http://127.0.0.1:9/ubuntu")
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with pytest.raises(RunnerUnavailable, match=r"ubuntu mirror does not serve jammy: .*127\.0\.0\.1:9"):
        select_runner("ubuntu-2204", "chroot")


def test_auto_explains_every_runner_it_tried(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no docker command either
    with pytest.raises(RunnerUnavailable) as caught:
        select_runner("rhel-9", "auto")
    message = str(caught.value)
    assert "host:" in message and "chroot:" in message and "docker: no Docker engine" in message


def test_host_debian_mirror_reads_apt_sources():
    mirror = roots.host_debian_mirror()
    assert mirror.startswith(("http://", "https://")) and mirror.endswith("/debian")


def test_chroot_argv_passes_values_as_words():
    argv = roots.chroot_argv(Path("/r"), ["python3", "x.py"], {"BUILD_SPEC": '{"a": "$(rm -rf /)"}'})
    assert argv[:4] == ["chroot", "/r", "/usr/bin/env", "-i"]
    assert 'BUILD_SPEC={"a": "$(rm -rf /)"}' in argv
    assert argv[-2:] == ["python3", "x.py"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts)")
def test_mounted_root_resolves_localhost(tmp_path):
    """A bullseye debootstrap root has no /etc/hosts: without one, "localhost" does not
    resolve inside it and 3.9's test_ssl fails binding its servers (measured)."""
    for name in ("etc", "proc", "sys", "dev"):
        (tmp_path / name).mkdir()
    with roots.mounted(tmp_path):
        assert "127.0.0.1\tlocalhost" in (tmp_path / "etc" / "hosts").read_text()
    (tmp_path / "etc" / "hosts").write_text("127.0.0.1 localhost mine\n")
    with roots.mounted(tmp_path):
        pass
    assert (tmp_path / "etc" / "hosts").read_text() == "127.0.0.1 localhost mine\n"


def test_dockerfiles_are_hadolint_clean():
    hadolint = REPO / ".venv" / "bin" / "hadolint"
    families = load_registry().families
    files = sorted({str(REPO / "builder_image" / family.dockerfile) for family in families.values()})
    assert len(files) == 2
    result = subprocess.run([str(hadolint), *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for path in files:
        text = Path(path).read_text()
        assert "ARG BASE_IMAGE" in text and "FROM ${BASE_IMAGE}" in text
        assert 'ENTRYPOINT ["/opt/buildfarm/venv/bin/python", "/opt/buildfarm/build.py"]' in text
        assert "--build-dependencies" in text  # build deps come from the registry


def test_s3_upload_publishes_manifest_last_and_never_overwrites(moto_s3, build_py, tmp_path):
    client, bucket = moto_s3
    files = []
    for name in ("python-3.13.5-debian-12-x86_64.tar.gz", "SHA256SUMS", "build.log", "manifest.json"):
        (tmp_path / name).write_text(name)
        files.append((name, str(tmp_path / name)))
    store = build_py.open_store(f"s3://{bucket}/python")
    assert not store.cell_exists("builds/3.13.5/debian-12/x86_64/1")
    store.publish("builds/3.13.5/debian-12/x86_64/1", files)
    listed = client.list_objects_v2(Bucket=bucket, Prefix="python/builds/")["Contents"]
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in listed) == sorted(n for n, _ in files)
    # manifest.json is written last
    times = {o["Key"].rsplit("/", 1)[1]: o["LastModified"] for o in listed}
    assert times["manifest.json"] == max(times.values())
    assert store.cell_exists("builds/3.13.5/debian-12/x86_64/1")
    # S3 keeps each file's full SHA-256 (publish verifies against it without downloading).
    head = client.head_object(Bucket=bucket, Key=listed[0]["Key"], ChecksumMode="ENABLED")
    name = listed[0]["Key"].rsplit("/", 1)[1]
    assert base64.b64decode(head["ChecksumSHA256"]).hex() == hashlib.sha256(name.encode()).hexdigest()
    with pytest.raises(build_py.BuildError, match="never overwritten"):
        store.publish("builds/3.13.5/debian-12/x86_64/1", files)


def test_s3_failed_build_writes_only_logs(moto_s3, tmp_path, source_mirror):
    """The driver (host python + boto3) against a real S3 API: a checksum failure leaves
    logs/.../failure.json and build.log and nothing under builds/."""
    client, bucket = moto_s3
    from builder_helpers import BUILD_PY

    spec = {
        "version": "3.13.5", "platform": "debian-12", "arch": "x86_64", "build": 4,
        "source": {"url": f"{source_mirror}/3.13.5/Python-3.13.5.tar.xz", "sha256": "f" * 64},
        "prefix": "/opt/python/3.13.5", "optimization": "none", "store": f"s3://{bucket}/python",
        "artifact_dir": "builds/3.13.5/debian-12/x86_64/4",
    }  # fmt: skip
    import sys

    result = subprocess.run(
        [sys.executable, str(BUILD_PY)],
        env={**os.environ, "BUILD_SPEC": json.dumps(spec), "BUILDFARM_CHECK_BUILD_DEPS": "0"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))
    assert keys == [
        "python/logs/3.13.5/debian-12/x86_64/4/build.log",
        "python/logs/3.13.5/debian-12/x86_64/4/failure.json",
    ]
    body = client.get_object(Bucket=bucket, Key=keys[1])["Body"].read()
    assert json.loads(body)["phase"] == "verify"
