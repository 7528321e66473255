"""The CLI as a user meets it, for four defects: a bad BUILDFARM_PLATFORMS, trigger's AWS_REGION,
a bad BUILDFARM_DRIVER_PYTHON and output into a closed pipe. Each is one line naming the value
(or, for a closed pipe, nothing at all), never a traceback.

Most cases run the installed `buildfarm` in a subprocess with an environment of its own (no
AWS configuration, python.org unreachable at once); the trigger's region is read off the
requests it sends to a loopback endpoint (the SigV4 credential scope names the region).
"""

from __future__ import annotations

import http.server
import io
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_process import BUILDFARM, isolated_env, one_error_line, run_cli

from buildfarm import aws_errors
from buildfarm.cli import main
from buildfarm.errors import UsageError
from buildfarm.models import BuildSpec
from buildfarm.platforms import REGISTRY_ENV, RegistryError, load_registry, registry_path
from buildfarm.runners.host import DRIVER_PYTHON_ENV, HostRunner, driver_python, host_platform_id


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


# -- D1: a bad BUILDFARM_PLATFORMS -------------------------------------------------------------


def bad_registries(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the error says about it)."""
    good = json.loads(registry_path().read_text())
    first = next(iter(good["platforms"]))
    good["platforms"][first]["end_of_support"] = "soon"
    files = {
        "missing": (tmp_path / "nonexistent.json", None, "cannot read it: No such file or directory"),
        "not json": (tmp_path / "broken.json", "{", "not valid JSON: Expecting property name"),
        "empty object": (tmp_path / "empty.json", "{}", "no 'families', 'platforms', 'extension_modules'"),
        "a list": (tmp_path / "list.json", "[1, 2]", "not a JSON object but list"),
        "bad field": (
            tmp_path / "field.json",
            json.dumps(good),
            f"platforms.{first}.end_of_support: Input should be a valid date",
        ),
    }
    for path, text, _ in files.values():
        if text is not None:
            path.write_text(text)
    return {name: (path, said) for name, (path, _, said) in files.items()}


@pytest.mark.parametrize("case", ["missing", "not json", "empty object", "a list", "bad field"])
def test_a_bad_registry_is_one_line_naming_the_variable_and_the_file(tmp_path, case):
    path, said = bad_registries(tmp_path)[case]
    store = tmp_path / "store"
    store.mkdir()
    env = isolated_env(tmp_path, **{REGISTRY_ENV: str(path)})
    for argv in (["platforms"], ["plan", "--store", str(store)], ["status", "--store", str(store)]):
        line = one_error_line(run_cli(env, *argv), argv[0], f"{REGISTRY_ENV}={str(path)!r}", said)
        assert "valid platform registry" in line or "JSON" in line or "cannot read" in line
    assert files_under(store) == []


def test_a_registry_that_is_a_directory(tmp_path):
    env = isolated_env(tmp_path, **{REGISTRY_ENV: str(tmp_path)})
    one_error_line(
        run_cli(env, "platforms"), "platforms", f"{REGISTRY_ENV}={str(tmp_path)!r}", "Is a directory"
    )


def test_load_registry_raises_a_usage_error(tmp_path, monkeypatch):
    path, _ = bad_registries(tmp_path)["empty object"]
    with pytest.raises(RegistryError) as raised:
        load_registry(path)  # not chosen by the variable: named as the registry file
    assert isinstance(raised.value, UsageError) and raised.value.exit_code == 2
    assert str(raised.value).startswith(f"platform registry {path}: not a valid platform registry")
    monkeypatch.setenv(REGISTRY_ENV, str(path))
    with pytest.raises(RegistryError, match=re.escape(f"{REGISTRY_ENV}={str(path)!r}")):
        load_registry(path)


def test_the_registry_of_the_checkout_still_loads():
    registry = load_registry(registry_path())
    assert registry.platforms and registry.required_modules and registry.families


# -- D2: trigger takes --region, else AWS_REGION, else AWS_DEFAULT_REGION ------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every request as CloudFormation does for a missing stack; keeps the regions."""

    regions: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        scope = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/", self.headers.get("Authorization", ""))
        type(self).regions.append(scope[1] if scope else "?")
        body = (
            b"<ErrorResponse><Error><Type>Sender</Type><Code>ValidationError</Code>"
            b"<Message>Stack with id PythonBuildFarm does not exist</Message></Error></ErrorResponse>"
        )
        self.send_response(400)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_aws() -> Iterator[tuple[str, list[str]]]:
    regions: list[str] = []
    handler = type("Recorder", (_Recorder,), {"regions": regions})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", regions
    finally:
        server.shutdown()
        server.server_close()


def trigger_env(home: Path, endpoint: str, **region: str) -> dict[str, str]:
    return isolated_env(
        home,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_ENDPOINT_URL=endpoint,
        AWS_MAX_ATTEMPTS="1",
        **region,
    )


@pytest.mark.parametrize(
    ("region_env", "option", "used"),
    [
        ({"AWS_REGION": "eu-west-1"}, [], "eu-west-1"),
        ({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-east-2"}, [], "eu-west-1"),
        ({"AWS_DEFAULT_REGION": "us-east-2"}, [], "us-east-2"),
        (
            {"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-east-2"},
            ["--region", "ap-south-1"],
            "ap-south-1",
        ),
    ],
)
def test_trigger_asks_aws_in_the_region_the_user_set(tmp_path, fake_aws, region_env, option, used):
    endpoint, regions = fake_aws
    result = run_cli(
        trigger_env(tmp_path, endpoint, **region_env), "trigger", "--versions", "3.13.5", *option
    )
    one_error_line(result, "trigger", "CloudFormation stack 'PythonBuildFarm' does not exist", "AWS_REGION")
    assert regions == [used]


def test_trigger_with_aws_region_and_no_credentials_gets_past_the_region(tmp_path):
    """What the audit saw: AWS_REGION alone was "no AWS region set"; now the next thing is missing."""
    result = run_cli(isolated_env(tmp_path, AWS_REGION="eu-west-1"), "trigger", "--versions", "3.13.5")
    line = one_error_line(result, "trigger", "no AWS credentials found")
    assert "region" not in line
    result = run_cli(isolated_env(tmp_path), "trigger", "--versions", "3.13.5")
    one_error_line(result, "trigger", "no AWS region set: pass --region or set AWS_REGION")


def test_aws_region_order(monkeypatch):
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert aws_errors.aws_region() is None
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-2")
    assert aws_errors.aws_region() == "us-east-2"
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert aws_errors.aws_region() == "eu-west-1"
    assert aws_errors.aws_region("ap-south-1") == "ap-south-1"


@pytest.mark.parametrize("before", [None, "us-east-2"])
def test_every_command_honours_aws_region_and_puts_the_environment_back(monkeypatch, before):
    """botocore reads AWS_DEFAULT_REGION only: while a command runs, AWS_REGION is that too."""
    import boto3

    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    if before is None:
        monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    else:
        monkeypatch.setenv("AWS_DEFAULT_REGION", before)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    with aws_errors.honour_aws_region():
        assert boto3.session.Session().region_name == "eu-west-1"
    assert os.environ.get("AWS_DEFAULT_REGION") == before


def test_the_region_messages_name_what_is_read(tmp_path):
    """ "set AWS_REGION" is true of a command without --region too (here: a KMS client)."""
    env = isolated_env(tmp_path, AWS_REGION="eu-west-1")
    code = (
        "import boto3, buildfarm.aws_errors as a\n"
        "with a.honour_aws_region():\n"
        "    print(boto3.client('kms').meta.region_name)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "eu-west-1"


# -- D4: a bad BUILDFARM_DRIVER_PYTHON ---------------------------------------------------------

ON_A_REGISTERED_PLATFORM = host_platform_id(load_registry()) is not None


@pytest.mark.skipif(not ON_A_REGISTERED_PLATFORM, reason="the host runner needs a registered platform")
@pytest.mark.parametrize("value", ["/nonexistent", "no-such-python-here", "directory"])
def test_build_with_a_bad_driver_python_is_one_line_and_writes_nothing(tmp_path, value):
    if value == "directory":
        value = str(tmp_path)
    store = tmp_path / "store"
    store.mkdir()
    platform = host_platform_id(load_registry())
    env = isolated_env(tmp_path, **{DRIVER_PYTHON_ENV: value})
    argv = ["build", "3.13.5", "--platform", str(platform), "--runner", "host", "--store", str(store)]
    argv += ["--optimization", "none", "--source-mirror", "http://127.0.0.1:9/", "--source-sha256", "a" * 64]
    result = run_cli(env, *argv)
    one_error_line(result, "build", f"{DRIVER_PYTHON_ENV}={value!r} is not an executable file")
    assert result.stdout == ""
    assert files_under(store) == []


def test_driver_python_defaults_to_this_python_and_takes_a_name_on_path(monkeypatch):
    monkeypatch.delenv(DRIVER_PYTHON_ENV, raising=False)
    assert driver_python() == sys.executable
    monkeypatch.setenv(DRIVER_PYTHON_ENV, "sh")
    assert driver_python() == "sh"
    monkeypatch.setenv(DRIVER_PYTHON_ENV, "/nonexistent")
    with pytest.raises(UsageError, match="BUILDFARM_DRIVER_PYTHON='/nonexistent'"):
        HostRunner(load_registry().get("debian-12"))


def test_a_driver_python_that_cannot_start_fails_the_build_in_preflight(tmp_path):
    """An executable file that is no program (no #!): the build fails naming it, no traceback."""
    python = tmp_path / "python"
    python.write_bytes(b"\x00\x01 not a program")
    python.chmod(0o755)
    spec = BuildSpec.model_validate(
        {
            "version": "3.13.5", "platform": "debian-12", "arch": "x86_64", "build": 1,
            "source": {"url": (tmp_path / "Python-3.13.5.tar.xz").as_uri(), "sha256": "a" * 64},
            "prefix": "/opt/python/3.13.5", "optimization": "none", "store": str(tmp_path / "store"),
            "artifact_dir": "builds/3.13.5/debian-12/x86_64/1", "execution_id": "local-1",
        }
    )  # fmt: skip
    result = HostRunner(load_registry().get("debian-12"), python=str(python)).run(spec, output=io.StringIO())
    assert (result.ok, result.failed_phase) == (False, "preflight")
    assert result.reason.startswith(f"cannot run the driver's python {str(python)!r}: "), result.reason


# -- D10: output into a closed pipe --------------------------------------------------------------


def run_into_closed_pipe(env: dict[str, str], *argv: str) -> tuple[int, str]:
    """Run with stdout a pipe whose reader is already gone (as `| head -c1` after its byte)."""
    read, write = os.pipe()
    os.close(read)
    try:
        process = subprocess.run(
            [BUILDFARM, *argv],
            env=env,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write)
    return process.returncode, process.stderr


@pytest.fixture
def empty_store(tmp_path) -> Path:
    store = tmp_path / "store"
    store.mkdir()
    return store


@pytest.mark.parametrize(
    "argv",
    [["platforms"], ["status", "--json"], ["plan", "--json", "--versions", "3.13.5"], ["--help"]],
    ids=["platforms", "status --json", "plan --json", "--help"],
)
def test_output_into_a_closed_pipe_ends_quietly(tmp_path, empty_store, argv):
    if argv[0] in ("status", "plan"):
        argv = [*argv, "--store", str(empty_store)]
    code, stderr = run_into_closed_pipe(isolated_env(tmp_path), *argv)
    for text in ("Traceback", "BrokenPipeError", "Broken pipe", "Exception ignored"):
        assert text not in stderr, stderr
    # plan may say python.org is unreachable (this test's releases URL); nothing else is said
    said = [line for line in stderr.splitlines() if not line.startswith("releases refresh from")]
    assert (code, said) == (1, [])


def test_platforms_into_head_in_a_shell(tmp_path):
    """As the user types it: the pipeline's first command exits 1 at most, and says nothing."""
    script = f'{BUILDFARM} platforms | head -c1 >/dev/null; echo "${{PIPESTATUS[0]}}"'
    env = isolated_env(tmp_path)
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() in ("0", "1") and result.stderr == "", result


def test_main_returns_1_when_stdout_is_gone(monkeypatch, capsys):
    class Gone(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Gone())
    assert main(["platforms"]) == 1
