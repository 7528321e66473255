"""Runner selection and availability (the registry), the driver's output protocol (phases,
progress, result), what a root or container is given, the debootstrap helpers, the S3 upload
path (moto server) and the builder images (hadolint)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from builder_helpers import REPO

from buildfarm import images, roots
from buildfarm.models import BuildSpec
from buildfarm.platforms import load_registry
from buildfarm.runners import (
    RUNNER_CHOICES,
    RUNNERS,
    ChrootRunner,
    DockerRunner,
    HostRunner,
    RunnerUnavailable,
    availability,
    host_platform_id,
    select_runner,
)
from buildfarm.runners.base import isolated_driver, run_driver
from buildfarm.runners.docker import emulation_problem

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
    if os.geteuid() != 0:
        pytest.skip("needs root")
    other_arch = "aarch64" if roots_arch() == "x86_64" else "x86_64"
    with pytest.raises(RunnerUnavailable, match=f"cannot run {other_arch} binaries in a chroot"):
        select_runner("debian-12", "chroot", arch=other_arch)


def test_chroot_only_for_debian_family():
    with pytest.raises(RunnerUnavailable, match="rhel-9 is not a Debian/Ubuntu platform"):
        select_runner("rhel-9", "chroot")


@pytest.mark.root  # and the host's Debian mirror, which select_runner asks: not in the offline fast suite
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


def test_a_chroot_command_carries_values_in_its_environment_only(monkeypatch):
    """Never argv words (which /proc/PID/cmdline shows everyone), never shell text, and nothing
    of the caller's environment."""
    monkeypatch.setenv("CALLERS_SECRET", "s3cret")
    values = {"BUILD_SPEC": '{"a": "$(rm -rf /)"}', "AWS_SECRET_ACCESS_KEY": "k3y"}
    argv, env = roots.chroot_command(Path("/r"), ["python3", "x.py"], values)
    assert argv == ["chroot", "/r", "python3", "x.py"]
    assert env == {**roots.ROOT_BASE_ENV, **values}


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


def test_the_registry_holds_each_runner_under_its_name_in_auto_order():
    assert list(RUNNERS) == ["host", "chroot", "docker"]
    assert {"host": HostRunner, "chroot": ChrootRunner, "docker": DockerRunner} == RUNNERS
    assert all(kind.name == name for name, kind in RUNNERS.items())
    assert RUNNER_CHOICES == ("auto", "host", "chroot", "docker")


def test_availability_says_what_select_runner_says(monkeypatch):
    """Cells whose chroot answer needs no mirror: an rpm platform, and an arch this machine
    cannot run. A runner available there is the one select_runner gives; otherwise both
    name the same reason."""
    registry = load_registry()
    other_arch = "aarch64" if roots_arch() == "x86_64" else "x86_64"
    for platform_id, arch in (("rhel-9", roots_arch()), ("debian-12", other_arch)):
        answers = availability(registry.get(platform_id), arch, registry)
        assert list(answers) == list(RUNNERS)
        for name, reason in answers.items():
            assert reason is None or "\n" not in reason
            if reason is None:
                assert isinstance(select_runner(platform_id, name, arch), RUNNERS[name])
            else:
                with pytest.raises(RunnerUnavailable, match=f"^{name} runner: {re.escape(reason)}$"):
                    select_runner(platform_id, name, arch)
        assert answers["host"] == f"this machine is {HOST_PLATFORM} {roots_arch()}, not {platform_id} {arch}"
    rhel = availability(registry.get("rhel-9"), roots_arch(), registry)
    assert rhel["chroot"] == "rhel-9 is not a Debian/Ubuntu platform (debootstrap builds only those)"
    monkeypatch.setenv("PATH", "/nonexistent")
    answers = availability(registry.get("rhel-9"), roots_arch(), registry)
    assert answers["docker"] == "no Docker engine (the docker command is not installed)"


def test_docker_runs_another_arch_only_with_an_emulator(tmp_path):
    here = roots_arch()
    other = "aarch64" if here == "x86_64" else "x86_64"
    assert emulation_problem(here, tmp_path / "missing") is None
    missing = f"cannot run {other} containers on this {here} machine (no binfmt_misc handler for {other}"
    assert emulation_problem(other, tmp_path / "missing").startswith(missing)
    (tmp_path / f"qemu-{other}").write_text(f"disabled\ninterpreter /usr/bin/qemu-{other}\n")
    assert emulation_problem(other, tmp_path).startswith(missing)
    (tmp_path / f"qemu-{other}").write_text(f"enabled\ninterpreter /usr/bin/qemu-{other}\n")
    assert emulation_problem(other, tmp_path) is None


def test_availability_of_an_arch_the_platform_lacks_names_its_arches():
    registry = load_registry()
    answers = availability(registry.get("debian-12"), "riscv64", registry)
    reason = "debian-12 is not built for riscv64 (arches: x86_64, aarch64)"
    assert answers == dict.fromkeys(RUNNERS, reason)
    with pytest.raises(RunnerUnavailable, match=re.escape(reason)):
        select_runner("debian-12", "auto", "riscv64")


def roots_arch() -> str:
    from buildfarm.runners import host_arch

    return host_arch()


# What a driver may print; the comment is what run_driver makes of each line.
DRIVER_LINES = [
    "buildfarm: progress make 0/640 objects",  # make 0 of 640
    "compiling Objects/listobject.c",  # log only
    "buildfarm: progress pgo 3/? tests",  # total unknown
    "buildfarm: progress bolt 1/2 runs",
    "buildfarm: progress make \u0661/640 objects",  # ignored: not an ASCII digit
    "buildfarm: progress make 1/640 objects and more",  # ignored: not the whole line
    " buildfarm: progress make 1/640 objects",  # ignored: not the whole line
    "buildfarm: progress make 1234567890123/640 objects",  # ignored: more digits than a count has
    "buildfarm: progress make -1/640 objects",  # ignored
    "buildfarm: progress make 1/640",  # ignored: no unit
    "buildfarm: phase make done in 1.2.3 s",  # ignored: not a duration
    "buildfarm: phase make done in 42.5 s",  # make took 42.5 s
    'buildfarm: result {"ok": true, "phase": null, "reason": null}',
]


def fake_driver(tmp_path: Path, lines: list[str], status: int = 0) -> list[str]:
    script = tmp_path / "driver.py"
    script.write_text(f"import sys\nfor line in {lines!r}:\n    print(line)\nsys.exit({status})\n")
    return [sys.executable, str(script)]


def test_run_driver_reports_progress_phases_and_the_result(tmp_path):
    progress: list[tuple] = []
    phases: list[tuple] = []
    output = io.StringIO()
    result = run_driver(
        fake_driver(tmp_path, DRIVER_LINES),
        {},
        None,
        on_phase=lambda *args: phases.append(args),
        output=output,
        on_progress=lambda *args: progress.append(args),
    )
    assert progress == [("make", 0, 640, "objects"), ("pgo", 3, None, "tests"), ("bolt", 1, 2, "runs")]
    assert phases == [("make", 42.5)]
    assert result.ok and result.timings == {"make": 42.5} and result.failed_phase is None
    assert output.getvalue() == "".join(line + "\n" for line in DRIVER_LINES)  # the log keeps every line
    # Without callbacks the same lines are only logged.
    assert run_driver(fake_driver(tmp_path, DRIVER_LINES), {}, None, output=io.StringIO()).ok


def test_run_driver_without_a_result_line_fails_with_the_exit_status(tmp_path):
    lines = ["buildfarm: progress make 5/9 objects", "buildfarm: result {not json}"]
    result = run_driver(fake_driver(tmp_path, lines), {}, None, output=io.StringIO())
    assert not result.ok and result.reason == "the build driver exited with status 0"
    failed = 'buildfarm: result {"ok": false, "phase": "make", "reason": "make failed"}'
    result = run_driver(fake_driver(tmp_path, [failed], status=1), {}, None, output=io.StringIO())
    assert (result.ok, result.failed_phase, result.reason) == (False, "make", "make failed")


def test_the_host_runner_passes_progress_on(tmp_path, monkeypatch):
    """HostRunner.run with a stand-in interpreter that prints as the driver does."""
    lines = ["buildfarm: progress pgo 7/43 tests", 'buildfarm: result {"ok": true}']
    driver = fake_driver(tmp_path, lines)
    launcher = tmp_path / "python"
    launcher.write_text(f"#!/bin/sh\nexec {driver[0]} {driver[1]}\n")
    launcher.chmod(0o755)
    progress: list[tuple] = []
    runner = HostRunner(load_registry().get("debian-12"), python=str(launcher))
    result = runner.run(spec_in(tmp_path), output=io.StringIO(), on_progress=lambda *a: progress.append(a))
    assert result.ok and progress == [("pgo", 7, 43, "tests")]


def spec_in(tmp_path: Path, store: str | None = None) -> BuildSpec:
    source = tmp_path / "mirror" / "Python-3.13.5.tar.xz"
    return BuildSpec.model_validate(
        {
            "version": "3.13.5", "platform": "debian-12", "arch": "x86_64", "build": 1,
            "source": {"url": source.as_uri(), "sha256": "a" * 64},
            "prefix": "/opt/python/3.13.5", "optimization": "none",
            "store": store or str(tmp_path / "store"),
            "artifact_dir": "builds/3.13.5/debian-12/x86_64/1", "execution_id": "local-1",
        }
    )  # fmt: skip


def test_a_root_or_container_gets_the_spec_at_its_mounts(tmp_path, monkeypatch, temp_dir):
    monkeypatch.setenv("BUILDFARM_CCACHE", "1")
    monkeypatch.setenv("CCACHE_DIR", str(tmp_path / "ccache"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("BUILDFARM_JOBS", raising=False)
    spec = spec_in(tmp_path)
    driver = isolated_driver(spec)
    inside = BuildSpec.model_validate_json(driver.env["BUILD_SPEC"])
    assert inside.store == "/buildfarm/store"
    assert inside.source.url == "file:///buildfarm/source/Python-3.13.5.tar.xz"
    assert inside.model_copy(update={"store": spec.store, "source": spec.source}) == spec
    # A directory store is never mounted: the driver writes into an empty outbox in its place.
    assert driver.outbox is not None and driver.outbox.store == tmp_path / "store"
    assert list(driver.outbox.directory.iterdir()) == []
    assert [(m.source, m.target, m.read_only) for m in driver.mounts] == [
        (driver.outbox.directory, "/buildfarm/store", False),
        (tmp_path / "mirror", "/buildfarm/source", True),
        (tmp_path / "ccache", "/buildfarm/ccache", False),
        (driver.log_path.parent, "/buildfarm/log", False),
    ]
    assert not any(m.source in (tmp_path / "store", *(tmp_path / "store").parents) for m in driver.mounts)
    assert (tmp_path / "store").is_dir() and (tmp_path / "ccache").is_dir()
    driver.outbox.discard()
    assert driver.env["CCACHE_DIR"] == "/buildfarm/ccache"
    assert driver.env["BUILDFARM_LOG_FILE"] == "/buildfarm/log/build.log"
    assert driver.env["AWS_SECRET_ACCESS_KEY"] == "secret" and "BUILDFARM_JOBS" not in driver.env
    # An S3 store is the driver's own business: nothing mounted, the spec keeps it.
    monkeypatch.setenv("BUILDFARM_CCACHE", "0")
    driver = isolated_driver(spec_in(tmp_path, store="s3://bucket/python"))
    assert json.loads(driver.env["BUILD_SPEC"])["store"] == "s3://bucket/python"
    assert [m.target for m in driver.mounts] == ["/buildfarm/source", "/buildfarm/log"]
    assert driver.outbox is None


FAKE_DOCKER = """#!/bin/sh
# Stands in for the docker client: an engine with the images (none with NO_IMAGES set, and
# nothing to pull); `run` records what it was given.
case "$1 $2" in
  "info ") exit 0 ;;
  "network inspect") exit 0 ;;
  "image inspect") [ -n "$NO_IMAGES" ] && exit 1; [ "$3" = "--format" ] && echo sha256:feedface; exit 0 ;;
  "run "*)
    printf '%s\\n' "$@" > "$RECORD_DIR/argv"
    env > "$RECORD_DIR/env"
    # The driver's build, in what the container sees as its store.
    for word in "$@"; do
      case "$word" in
        type=bind,source=*,target=/buildfarm/store)
          store="${word#type=bind,source=}"; store="${store%,target=/buildfarm/store}"
          mkdir -p "$store/$ARTIFACT_DIR" && echo {} > "$store/$ARTIFACT_DIR/manifest.json" ;;
      esac
    done
    echo "buildfarm: progress make 3/9 objects"
    echo 'buildfarm: result {"ok": true}'
    exit 0 ;;
esac
exit 1
"""


def use_fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("RECORD_DIR", str(tmp_path))
    monkeypatch.setenv("ARTIFACT_DIR", "builds/3.13.5/debian-12/x86_64/1")  # spec_in's
    monkeypatch.setenv("BUILDFARM_CCACHE", "0")


def test_the_docker_runner_passes_values_in_the_environment_never_in_argv(tmp_path, monkeypatch):
    """DockerRunner.run against a stand-in docker client (no engine needed): the argv names
    the variables, the mounts and the image; the values, the spec's JSON among them, travel
    in the client's environment; the driver's progress reaches on_progress."""
    use_fake_docker(tmp_path, monkeypatch)
    registry = load_registry()
    runner = select_runner("debian-12", "docker", "x86_64")
    assert isinstance(runner, DockerRunner)
    progress: list[tuple] = []
    result = runner.run(spec_in(tmp_path), output=io.StringIO(), on_progress=lambda *a: progress.append(a))
    assert result.ok and progress == [("make", 3, 9, "objects")]
    argv = (tmp_path / "argv").read_text().splitlines()
    tag = runner.image_tag()
    assert tag == images.image_tag(registry, "debian-12", "x86_64")
    assert argv[:6] == ["run", "--rm", "--network", "default", "--platform", "linux/amd64"]
    assert argv[-1] == tag
    names = [argv[i + 1] for i, word in enumerate(argv) if word == "-e"]
    assert {"BUILD_SPEC", "BUILDFARM_LOG_FILE", "BUILDFARM_BUILDER_IMAGE"} <= set(names)
    assert not any("=" in name for name in names) and not any("{" in word for word in argv)
    mounts = [argv[i + 1] for i, word in enumerate(argv) if word == "--mount"]
    # Not the store: an outbox the runner publishes from (create-only) and then removes.
    (outbox,) = [m.split(",")[1].removeprefix("source=") for m in mounts if m.endswith("/buildfarm/store")]
    assert Path(outbox).name == "store" and Path(outbox).parent.name.startswith("buildfarm-outbox-")
    assert not Path(outbox).exists() and not any(str(tmp_path / "store") in m for m in mounts)
    assert (tmp_path / "store" / "builds/3.13.5/debian-12/x86_64/1/manifest.json").read_text() == "{}\n"
    assert f"type=bind,source={tmp_path / 'mirror'},target=/buildfarm/source,readonly" in mounts
    env = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines() if "=" in line)
    assert env["BUILDFARM_BUILDER_IMAGE"] == f"{tag}@sha256:feedface"
    assert json.loads(env["BUILD_SPEC"])["store"] == "/buildfarm/store"


def test_the_image_tag_covers_what_the_copy_lines_take(tmp_path):
    """A driver split into a package (COPY driver/) is part of the image, so of its tag."""
    for name in (
        "build.py",
        "notes.txt",
        "driver/cell.py",
        "driver/sub/flags.py",
        "driver/__pycache__/x.pyc",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM x AS packages\nCOPY --from=packages /build-dependencies /tmp/\n"
        "COPY --chown=0:0 *.py /opt/buildfarm/\nCOPY driver/ /opt/buildfarm/driver/\n"
    )
    copied = images._copied_from_context(dockerfile, tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in copied) == [
        "build.py",
        "driver/cell.py",
        "driver/sub/flags.py",
    ]


def test_an_image_that_cannot_be_made_fails_the_preflight_phase(tmp_path, monkeypatch):
    use_fake_docker(tmp_path, monkeypatch)
    monkeypatch.setenv("NO_IMAGES", "1")
    runner = select_runner("debian-12", "docker", "x86_64")
    output = io.StringIO()
    result = runner.run(spec_in(tmp_path), output=output)
    assert (result.ok, result.failed_phase, result.log_path) == (False, "preflight", None)
    assert result.reason == (
        "base image debian:bookworm of debian-12 is not here; "
        "`buildfarm images import-base --platform debian-12` makes it from a debootstrap root"
    )
    assert not (tmp_path / "argv").exists()  # nothing was run
