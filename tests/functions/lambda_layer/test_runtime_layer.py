"""The provided.al2023 runtime layer from the farm store's first real build (debian-12, a
stand-in for amazonlinux-2023 that runs here; the target is its glibc, `--glibc`, as `lambda
layer` refuses a Python built on a newer glibc than the target's): its zip, and its bootstrap
driven by a Runtime API server in the test through the real awslambdaric (from PyPI, installed
by the dependency builder), as Lambda drives it: a handler's result and a handler's exception
each arrive as Lambda would receive them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from runtime_api import API, FUNCTION_ARN, Post, RuntimeApi

pytestmark = [pytest.mark.build, pytest.mark.root, pytest.mark.farm]

BUILDFARM = str(Path(sys.executable).parent / "buildfarm")
# The deps layer's one package: compiled (its C speedups must load in our Python), from PyPI.
DEPENDENCY = "markupsafe==3.0.2"

HANDLER = """import os
import sys

import markupsafe
import markupsafe._speedups


def handler(event, context):
    if event.get("fail"):
        raise ValueError("no such order: " + event["order"])
    return {
        "order": event["order"],
        "escaped": markupsafe.escape("<" + event["order"] + ">"),
        "markupsafe": markupsafe.__file__,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "request_id": context.aws_request_id,
        "function_arn": context.invoked_function_arn,
        "time_left": context.get_remaining_time_in_millis() > 0,
        "task_root": os.environ["LAMBDA_TASK_ROOT"],
    }
"""


def tarball_of(build) -> Path:
    return build.dir / f"python-{build.version}-{build.platform}-{build.arch}.tar.gz"


def glibc_of(build) -> str:
    """The glibc the build was made on ("2.36"), from its manifest ("glibc-2.36")."""
    return json.loads((build.dir / "manifest.json").read_text())["platform"]["glibc"].removeprefix("glibc-")


def layer_argv(build, out: Path) -> list[str]:
    """`buildfarm lambda layer` for the build's tarball, targeting the glibc it runs here on."""
    python = ["--python", str(tarball_of(build)), "--glibc", glibc_of(build)]
    return [BUILDFARM, "lambda", "layer", *python, "--out", str(out)]


@pytest.fixture(scope="module")
def runtime_layer(host_build, tmp_path_factory) -> Path:
    """`buildfarm lambda layer` for the first build's tarball: the output directory."""
    out = tmp_path_factory.mktemp("lambda-layer") / "out"
    requirements = out.parent / "requirements.txt"
    requirements.write_text(f"{DEPENDENCY}\n")
    argv = [*layer_argv(host_build, out), "--requirements", str(requirements)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def unpack_layer(layer_zip: Path, opt: Path) -> None:
    """Unpack as Lambda does into /opt: modes and symlinks kept (unzip, not zipfile)."""
    subprocess.run(["unzip", "-q", str(layer_zip), "-d", str(opt)], check=True)


def drive_bootstrap(opt: Path, task_root: Path, events: list[tuple[str, dict]]) -> list[Post]:
    """Run opt/bootstrap against a loopback Runtime API serving `events` (request id, event);
    what the runtime posted, one post per event (then the runtime is stopped)."""
    api = RuntimeApi().start()
    deadline_ms = int(time.time() * 1000) + 600_000
    for request_id, event in events:
        api.invoke(request_id, event, deadline_ms)
    env = {
        "PATH": os.environ["PATH"],
        "_HANDLER": "handler.handler",
        "LAMBDA_TASK_ROOT": str(task_root),
        "AWS_LAMBDA_RUNTIME_API": api.address,
    }
    log = task_root.parent / "bootstrap.log"
    with log.open("wb") as output:
        process = subprocess.Popen([str(opt / "bootstrap")], env=env, stdout=output, stderr=output)
    try:
        posts = []
        for _ in events:
            try:
                posts.append(api.posts.get(timeout=120))
            except Exception:
                raise AssertionError(f"no post from the runtime; its output:\n{log.read_text()}") from None
        return posts
    finally:
        process.kill()
        process.wait(timeout=30)
        api.stop()


def test_the_bootstrap_posts_a_result_and_an_error_as_lambda_receives_them(
    runtime_layer, host_build, tmp_path
):
    opt, task_root = tmp_path / "opt", tmp_path / "task"
    unpack_layer(runtime_layer / "runtime-layer.zip", opt)
    unpack_layer(runtime_layer / "deps-layer.zip", opt)  # layers merge into /opt
    task_root.mkdir()
    (task_root / "handler.py").write_text(HANDLER)

    result, error = drive_bootstrap(
        opt, task_root, [("req-1", {"order": "A1"}), ("req-2", {"order": "B2", "fail": True})]
    )

    assert result.path == f"{API}/invocation/req-1/response"
    series = ".".join(host_build.version.split(".")[:2])
    site = opt / "python" / "lib" / f"python{series}" / "site-packages"
    assert result.json() == {
        "order": "A1",
        "escaped": "&lt;A1&gt;",
        "markupsafe": str(site / "markupsafe" / "__init__.py"),
        "python": host_build.version,
        "executable": str(opt / "python" / "bin" / "python3"),
        "request_id": "req-1",
        "function_arn": FUNCTION_ARN,
        "time_left": True,
        "task_root": str(task_root),
    }
    assert error.path == f"{API}/invocation/req-2/error"
    body = error.json()
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "no such order: B2"
    assert any("handler.py" in frame for frame in body["stackTrace"]), body
    cause = json.loads(error.headers["lambda-runtime-function-xray-error-cause"])
    assert cause["exceptions"][0]["type"] == "ValueError"
    assert cause["exceptions"][0]["message"] == "no such order: B2"


def test_a_handler_that_cannot_be_imported_is_an_init_error(runtime_layer, tmp_path):
    opt, task_root = tmp_path / "opt", tmp_path / "task"
    unpack_layer(runtime_layer / "runtime-layer.zip", opt)
    task_root.mkdir()  # no handler.py

    (init_error,) = drive_bootstrap(opt, task_root, [("req-1", {"order": "A1"})])

    assert init_error.path == f"{API}/init/error"
    assert init_error.json()["errorType"] == "Runtime.ImportModuleError"
    assert "handler" in init_error.json()["errorMessage"]


def test_the_runtime_layer_holds_python_bootstrap_and_awslambdaric(runtime_layer, host_build):
    report = json.loads((runtime_layer / "lambda-layers.json").read_text())
    layer, deps = report["layers"]
    assert (layer["name"], deps["name"]) == ("runtime", "deps")
    series = ".".join(host_build.version.split(".")[:2])
    assert report["python"]["version"] == host_build.version
    glibc = glibc_of(host_build)
    assert report["target"] == {
        "python": series, "arch": host_build.arch, "glibc": glibc,
        "platforms": report["target"]["platforms"],
    }  # fmt: skip
    assert report["target"]["platforms"][0] == f"manylinux_{glibc.replace('.', '_')}_{host_build.arch}"
    ric = next(p for p in layer["packages"] if p["name"] == "awslambdaric")
    assert ric["outcome"] == "wheel"
    assert any(tag.startswith(f"cp{series.replace('.', '')}-") for tag in ric["tags"])
    (markupsafe,) = deps["packages"]
    assert (markupsafe["name"], markupsafe["outcome"]) == ("markupsafe", "wheel")
    assert any(
        tag.startswith(f"cp{series.replace('.', '')}-cp") and "manylinux" in tag for tag in markupsafe["tags"]
    )
    total = layer["unzipped_bytes"] + deps["unzipped_bytes"]
    assert total == report["unzipped_total_bytes"] <= report["unzipped_limit_bytes"] == 262_144_000
    with zipfile.ZipFile(runtime_layer / layer["file"]) as archive:
        entries = {info.filename: info for info in archive.infolist()}
    assert stat.S_IMODE(entries["bootstrap"].external_attr >> 16) == 0o755
    assert stat.S_ISLNK(entries["python/bin/python3"].external_attr >> 16)
    site = f"python/lib/python{series}/site-packages/"
    assert f"{site}awslambdaric/__main__.py" in entries
    assert layer["zipped_bytes"] == (runtime_layer / layer["file"]).stat().st_size


def test_a_runtime_layer_over_the_size_limit_writes_nothing(host_build, tmp_path):
    out = tmp_path / "out"
    argv = [*layer_argv(host_build, out), "--limit-bytes", "10000000"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("buildfarm lambda: error: the layers take "), line
    assert line.endswith("over the limit of 9.5 MB (10000000 bytes): nothing written"), line
    assert not out.exists()
