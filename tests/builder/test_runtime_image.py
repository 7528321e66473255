"""Runtime jobs in the builder images (builder_image/driver/runtime_job.py): build.py's argv
`buildfarm runtime build ...` (the cloud's RuntimeItem.command) runs with a tool Python, the
newest published farm build >= 3.11 of the job's platform and arch, and the image's buildfarm
wheel. The logic here runs the real build.py against stores on disk and in moto, with a
stand-in Python tarball (a python3 that records its argv); the real thing, in the bullseye
image (system python 3.9) against a store with a real 3.13.5, is test_docker_runtime_job.py."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from builder_helpers import BUILDER_IMAGE
from driver import runtime_job

ARCH = os.uname().machine
JOB = ["buildfarm", "runtime", "build", "tiny", "--platform", "debian-11", "--arch", ARCH]

# The stand-in tool Python: each call (`python3 -m pip ...`) appends its argv to pip-argv, one
# word a line and CALL_END after it, and makes the bin/buildfarm that the driver then execs,
# which records its own argv, one word a line.
CALL_END = "-- end of call --"
STAND_IN_PYTHON = """#!/bin/sh
printf '%s\\n' "$@" "-- end of call --" >> "$(dirname "$0")/../pip-argv"
printf 'PIP_CERT=%s\\nSSL_CERT_FILE=%s\\n' "$PIP_CERT" "$SSL_CERT_FILE" > "$(dirname "$0")/../pip-env"
cat > "$(dirname "$0")/buildfarm" <<'EOF'
#!/bin/sh
printf '%s\\n' "$@" > "$RECORD"
EOF
chmod +x "$(dirname "$0")/buildfarm"
"""


def stand_in_tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = STAND_IN_PYTHON.encode()
        info = tarfile.TarInfo("python/bin/python3")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def catalog_entry(key: str, data: bytes, build: int = 1) -> dict:
    return {
        "build": build,
        "artifacts": [
            {"type": "deb", "key": key[:-7] + ".deb", "sha256": "0" * 64, "size": 1},
            {"type": "tarball", "key": key, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)},
        ],
    }


def catalog(cells: dict[tuple[str, str, str], dict]) -> dict:
    builds: dict = {}
    for (version, platform, arch), entry in cells.items():
        builds.setdefault(version, {}).setdefault(platform, {})[arch] = entry
    return {"schema_version": 1, "builds": builds}


# -- the choice of the tool Python (a pure function over versions.json) -------------------------


def test_the_tool_python_is_the_newest_final_release_of_at_least_3_11_for_the_cell():
    tar = b"tarball"
    key = "builds/{0}/debian-11/x86_64/{1}/python.tar.gz"
    document = catalog({
        ("3.10.18", "debian-11", "x86_64"): catalog_entry(key.format("3.10.18", 1), tar),
        ("3.11.13", "debian-11", "x86_64"): catalog_entry(key.format("3.11.13", 2), tar, 2),
        ("3.13.5", "debian-11", "x86_64"): catalog_entry(key.format("3.13.5", 1), tar),
        ("3.13.10", "debian-11", "x86_64"): catalog_entry(key.format("3.13.10", 3), tar, 3),  # 10 > 5
        ("3.15.0a1", "debian-11", "x86_64"): catalog_entry(key.format("3.15.0a1", 1), tar),
        ("3.14.2", "debian-12", "x86_64"): catalog_entry(key.format("3.14.2", 1), tar),
        ("3.14.2", "debian-11", "aarch64"): catalog_entry(key.format("3.14.2", 1), tar),
    })  # fmt: skip
    chosen = runtime_job.choose_tool_python(document, "debian-11", "x86_64")
    assert chosen == {
        "version": "3.13.10",
        "build": 3,
        "key": key.format("3.13.10", 3),
        "sha256": hashlib.sha256(tar).hexdigest(),
        "size": len(tar),
    }
    assert runtime_job.choose_tool_python(document, "debian-12", "aarch64") is None
    only_old = catalog({("3.10.18", "debian-11", "x86_64"): catalog_entry(key.format("3.10.18", 1), tar)})
    assert runtime_job.choose_tool_python(only_old, "debian-11", "x86_64") is None
    assert runtime_job.choose_tool_python({}, "debian-11", "x86_64") is None


def test_entries_without_a_sound_tarball_are_not_chosen():
    good = catalog_entry("builds/3.12.11/debian-11/x86_64/1/python.tar.gz", b"x")
    broken = [
        {"build": 1, "artifacts": [{**good["artifacts"][1], "key": "../../etc/passwd"}]},
        {"build": 1, "artifacts": [{**good["artifacts"][1], "key": "/etc/passwd"}]},
        {"build": 1, "artifacts": [{**good["artifacts"][1], "sha256": "ABC"}]},
        {"build": 1, "artifacts": [{**good["artifacts"][1], "size": "12"}]},
        {"build": 1, "artifacts": [good["artifacts"][0]]},  # no tarball
        {"build": 1, "artifacts": "none"},
        "not an entry",
    ]
    for entry in broken:
        document = catalog(
            {("3.13.5", "debian-11", "x86_64"): entry, ("3.12.11", "debian-11", "x86_64"): good}
        )
        assert runtime_job.choose_tool_python(document, "debian-11", "x86_64")["version"] == "3.12.11", entry
    assert runtime_job.choose_tool_python({"builds": {"3.13.5": ["x"]}}, "debian-11", "x86_64") is None


# -- the job's argv -------------------------------------------------------------------------------


def test_the_job_is_parsed_from_its_argv_and_bad_values_are_named():
    store = ["--store", "/srv/store"]
    assert runtime_job.parse_job([*JOB, *store], "debian-11") == {
        "platform": "debian-11",
        "arch": ARCH,
        "store": "/srv/store",
    }
    assert runtime_job.parse_job([*JOB[:4], "--platform=rhel-9", "--store=s3://b/p"])["store"] == "s3://b/p"
    bad = {
        "only `buildfarm runtime build": ["buildfarm", "lambda", "layer", *store],
        "--platform None": JOB[:4] + store,
        "--platform 'debian;ls'": [*JOB[:4], "--platform", "debian;ls", *store],
        "--arch 'sparc'": [*JOB[:6], "--arch", "sparc", *store],
        "no --store": JOB,
        "--platform debian-11 in the builder image of rhel-9": [*JOB, *store],
    }
    for words, argv in bad.items():
        with pytest.raises(runtime_job.JobError, match=words.replace("(", r"\(")) as raised:
            runtime_job.parse_job(argv, "rhel-9" if "rhel-9" in words else None)
        assert raised.value.exit_code == 2 and "\n" not in str(raised.value)


def test_only_a_buildfarm_command_is_a_runtime_job():
    assert runtime_job.is_runtime_job(JOB)
    assert not runtime_job.is_runtime_job([])
    assert not runtime_job.is_runtime_job(["--build-dependencies", "debian-11", "x86_64"])


def test_options_are_read_as_argparse_reads_them():
    argv = [*JOB, "--store", "/a", "--store=/b", "--runtime-version", "--store"]
    assert runtime_job.option(argv, "--store") == "/b"  # a trailing --store has no value
    assert runtime_job.option(argv, "--build") is None
    assert runtime_job.option(["--storey", "x"], "--store") is None


def test_the_image_ca_bundle_is_named_unless_the_job_names_its_own():
    bundle = next((path for path in runtime_job.CA_BUNDLES if Path(path).is_file()), None)
    if bundle is None:
        pytest.skip("this machine keeps no CA bundle where the base images do")
    assert runtime_job.ca_environment({}) == {"PIP_CERT": bundle, "SSL_CERT_FILE": bundle}
    assert runtime_job.ca_environment({"PIP_CERT": "/mine.pem"}) == {"SSL_CERT_FILE": bundle}


# -- build.py end to end, with the stand-in tool Python -------------------------------------------


PINNED = "# pinned\n# tool-python: 3.11 3.12 3.13\nsix==1.17.0 \\\n    --hash=sha256:" + "0" * 64 + "\n"


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """A copy of builder_image/ as an image holds it: with wheels/, one (stand-in) wheel and its
    pinned requirements (as buildfarm.images.pinned_requirements writes them)."""
    image = tmp_path / "opt-buildfarm"
    shutil.copytree(BUILDER_IMAGE, image, ignore=shutil.ignore_patterns("__pycache__"))
    (image / "wheels").mkdir()
    (image / "wheels" / "python_build_farm-0.1.0-py3-none-any.whl").write_bytes(b"wheel")
    (image / "wheels" / "requirements.txt").write_text(PINNED)
    return image


def directory_store(root: Path, *versions: str) -> Path:
    """A store with the stand-in tarball published as each of versions (default 3.13.5)."""
    data, cells = stand_in_tarball(), {}
    for version in versions or ("3.13.5",):
        key = f"builds/{version}/debian-11/{ARCH}/1/python-{version}-debian-11-{ARCH}.tar.gz"
        (root / key).parent.mkdir(parents=True)
        (root / key).write_bytes(data)
        cells[(version, "debian-11", ARCH)] = catalog_entry(key, data)
    (root / "versions.json").write_text(json.dumps(catalog(cells)))
    return root


def pip_calls(tool: Path) -> list[list[str]]:
    words = (tool / "python" / "pip-argv").read_text().splitlines()
    calls: list[list[str]] = [[]]
    for word in words:
        calls[-1:] = [calls[-1], []] if word == CALL_END else [[*calls[-1], word]]
    return calls[:-1]


def run_build_py(
    image: Path, argv: list[str], tmp_path: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "RECORD": str(tmp_path / "buildfarm-argv"),
        "BUILDFARM_WORK_DIR": str(tmp_path / "work"),
        "BUILDFARM_PLATFORM": "debian-11",
        **env,
    }
    return subprocess.run(
        [sys.executable, str(image / "build.py"), *argv],
        env=environment, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip


def test_build_py_runs_the_job_with_the_tool_python_and_its_argv_untouched(image_dir, tmp_path):
    store = directory_store(tmp_path / "store with space")
    # Words a shell would act on reach buildfarm as they are (it rejects the name itself).
    job = [*JOB[:3], "tiny;touch pwned", *JOB[4:], "--build", "$(touch pwned)", "--store", str(store)]
    result = run_build_py(image_dir, job, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "buildfarm-argv").read_text().splitlines() == job[1:]
    assert not list(tmp_path.rglob("pwned"))
    assert f"tool python: Python 3.13.5 build 1 of debian-11/{ARCH}" in result.stdout
    tool = next((tmp_path / "work").glob("runtime-job-*"))
    pinned, wheel, check = pip_calls(tool)
    # The pins, hash-checked and as wheels only; then the wheel alone; then pip check.
    assert (
        pinned[:3] == wheel[:3] == ["-m", "pip", "install"] and "--no-deps" in pinned and "--no-deps" in wheel
    )
    assert pinned[-4:] == [
        "--require-hashes",
        "--only-binary=:all:",
        "-r",
        str(image_dir / "wheels" / "requirements.txt"),
    ]
    assert wheel[-2:] == [
        "--no-index",
        str(image_dir / "wheels" / "python_build_farm-0.1.0-py3-none-any.whl"),
    ]
    assert check[:3] == ["-m", "pip", "check"]
    bundle = next(path for path in runtime_job.CA_BUNDLES if Path(path).is_file())
    assert (tool / "python" / "pip-env").read_text() == f"PIP_CERT={bundle}\nSSL_CERT_FILE={bundle}\n"
    assert not (tool / "python.tar.gz").exists()


def test_without_a_published_tool_python_the_job_fails_in_one_line(image_dir, tmp_path):
    """3.14 is newer, but the image's pins have no wheels for it (a new CPython before its
    pydantic-core wheels): not chosen, and none of the pinned series is published."""
    store = directory_store(tmp_path / "store", "3.10.18", "3.14.2")
    result = run_build_py(image_dir, [*JOB, "--store", str(store)], tmp_path)
    assert result.returncode == 2
    assert result.stdout == (
        f"buildfarm: error: runtime job: no published Python 3.11 or 3.12 or 3.13 for debian-11/{ARCH} "
        f"in {store} to run buildfarm with (the series the image's pinned dependencies have wheels for; "
        "build one first)\n"
    )
    assert not (tmp_path / "work").exists() and not (tmp_path / "buildfarm-argv").exists()


def test_the_tool_python_is_of_a_series_the_pins_have_wheels_for(image_dir, tmp_path):
    store = directory_store(tmp_path / "store", "3.12.11", "3.13.5", "3.14.2")
    result = run_build_py(image_dir, [*JOB, "--store", str(store)], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"tool python: Python 3.13.5 build 1 of debian-11/{ARCH}" in result.stdout
    document = json.loads((store / "versions.json").read_text())
    assert runtime_job.choose_tool_python(document, "debian-11", ARCH)["version"] == "3.14.2"
    assert runtime_job.choose_tool_python(document, "debian-11", ARCH, ((3, 12),))["version"] == "3.12.11"
    assert runtime_job.choose_tool_python(document, "debian-11", ARCH, ((3, 15),)) is None


def test_an_image_without_pinned_requirements_runs_no_job(image_dir, tmp_path):
    store = directory_store(tmp_path / "store")
    requirements = image_dir / "wheels" / "requirements.txt"
    for text in (None, "six==1.17.0\n", "# tool-python: 3.x\n"):
        requirements.unlink(missing_ok=True)
        if text is not None:
            requirements.write_text(text)
        result = run_build_py(image_dir, [*JOB, "--store", str(store)], tmp_path)
        assert result.returncode == 1 and result.stdout.count("\n") == 1, result.stdout
        assert (
            "no pinned requirements in the image" in result.stdout
            or "names no tool Python series" in result.stdout
        )
        assert not (tmp_path / "work").exists()


def test_a_tarball_that_differs_from_versions_json_is_not_run(image_dir, tmp_path):
    store = directory_store(tmp_path / "store")
    tarball = next(store.rglob("*.tar.gz"))
    tarball.write_bytes(tarball.read_bytes() + b"\0")
    result = run_build_py(image_dir, [*JOB, "--store", str(store)], tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == (
        f"buildfarm: error: {tarball.relative_to(store)}: sha256 or size differs from versions.json; not run"
    )
    assert not (tmp_path / "buildfarm-argv").exists()


def test_an_image_without_the_wheel_or_a_store_without_versions_json_says_so(image_dir, tmp_path):
    missing = run_build_py(image_dir, [*JOB, "--store", str(tmp_path / "nowhere")], tmp_path)
    assert missing.returncode == 1 and missing.stdout.count("\n") == 1
    assert f"cannot read versions.json from {tmp_path / 'nowhere'}" in missing.stdout
    store = directory_store(tmp_path / "store")
    without_wheel = run_build_py(BUILDER_IMAGE, [*JOB, "--store", str(store)], tmp_path)
    assert without_wheel.returncode == 1 and without_wheel.stdout.count("\n") == 1
    assert "has 0 buildfarm wheels, not one" in without_wheel.stdout
    wrong_image = run_build_py(
        image_dir, [*JOB, "--store", str(store)], tmp_path, BUILDFARM_PLATFORM="rhel-9"
    )
    assert wrong_image.returncode == 2 and "builder image of rhel-9" in wrong_image.stdout


def test_the_tool_python_comes_from_an_s3_store(image_dir, tmp_path, moto_s3):
    client, bucket = moto_s3
    local = directory_store(tmp_path / "store")
    for path in (p for p in local.rglob("*") if p.is_file()):
        client.put_object(
            Bucket=bucket, Key=f"farm/{path.relative_to(local).as_posix()}", Body=path.read_bytes()
        )
    credentials = {name: os.environ[name] for name in os.environ if name.startswith("AWS_")}
    result = run_build_py(image_dir, [*JOB, "--store", f"s3://{bucket}/farm"], tmp_path, **credentials)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "buildfarm-argv").read_text().splitlines()[-1] == f"s3://{bucket}/farm"
