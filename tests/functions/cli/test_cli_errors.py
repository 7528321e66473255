"""AWS and store problems are one line saying what to set, exit 2, no traceback: no
credentials, an unknown profile, no region, an unreachable endpoint, rejected credentials,
access denied, a missing bucket or stack; a store directory that does not exist.

The credential and endpoint cases run the installed `buildfarm` with a cleared environment
(no AWS configuration, no instance metadata: nothing leaves the machine beyond loopback);
AccessDenied, unknown keys, the missing bucket and the missing stack are real answers of moto.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError
from cli_process import isolated_env, one_error_line, run_cli
from moto import mock_aws
from moto.core import enable_iam_authentication

import buildfarm.cli.plan
from buildfarm.aws_errors import AwsError, explain_aws_error
from buildfarm.cli import main

S3_STORE = "s3://farm-errors-test/python"


@pytest.mark.parametrize("command", ["status", "plan"])
def test_no_credentials(tmp_path, command):
    result = run_cli(isolated_env(tmp_path), command, "--store", S3_STORE)
    one_error_line(
        result, command, f"{S3_STORE}/", "no AWS credentials found", "AWS_PROFILE", "AWS_ACCESS_KEY_ID"
    )


def test_unknown_profile(tmp_path):
    result = run_cli(isolated_env(tmp_path, AWS_PROFILE="nonesuch"), "status", "--store", S3_STORE)
    one_error_line(result, "status", "AWS profile 'nonesuch' not found", "set AWS_PROFILE")


def test_unreachable_endpoint(tmp_path):
    env = isolated_env(
        tmp_path,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_ENDPOINT_URL="http://127.0.0.1:1",  # nothing listens on port 1
        AWS_MAX_ATTEMPTS="1",  # the user's setting wins over the store's 5 attempts
    )
    result = run_cli(env, "status", "--store", S3_STORE)
    one_error_line(result, "status", "cannot reach AWS at http://127.0.0.1:1", "AWS_ENDPOINT_URL")


def test_trigger_without_a_region_or_credentials_says_what_to_set(tmp_path):
    env = isolated_env(tmp_path)
    result = run_cli(env, "trigger", "--versions", "3.13.5")
    one_error_line(
        result, "trigger", "stack 'PythonBuildFarm'", "no AWS region set", "--region", "AWS_REGION"
    )
    result = run_cli(env, "trigger", "--versions", "3.13.5", "--region", "eu-west-1")
    one_error_line(result, "trigger", "no AWS credentials found", "AWS_PROFILE")


@pytest.fixture
def aws_without_region(monkeypatch, tmp_path) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in isolated_env(tmp_path).items():
        monkeypatch.setenv(name, value)


def test_an_untranslated_aws_error_is_one_line_from_main(aws_without_region, monkeypatch, capsys):
    """main()'s last resort: an AWS call no subcommand translated (here: a client made
    without a region, as `trigger` makes its CloudFormation client)."""

    def describe_stack(args):
        return boto3.client("cloudformation").describe_stacks(StackName="PythonBuildFarm")

    monkeypatch.setattr(buildfarm.cli.plan, "run_status", describe_stack)
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("buildfarm status: error: no AWS region set: set AWS_REGION"), err


# -- answers of AWS (moto) --------------------------------------------------------------------


@pytest.fixture
def moto_bucket(aws_env) -> Iterator[str]:
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="farm-errors-test")
        yield S3_STORE


def status_error(capsys, store: str) -> str:
    assert main(["status", "--store", store]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def test_missing_bucket(moto_bucket, capsys):
    line = status_error(capsys, "s3://no-such-farm-bucket/python")
    assert line == (
        "buildfarm status: error: S3 bucket 'no-such-farm-bucket' does not exist: "
        "check the bucket of the store (--store s3://BUCKET/PREFIX, or BUILDFARM_STORE)"
    )


def use_credentials(monkeypatch, key_id: str, secret: str) -> None:
    """The environment's credentials for the store's client (boto3's default session caches
    the ones it found first: a fresh one reads these)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


def test_access_denied(moto_bucket, monkeypatch, capsys):
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName="no-rights")  # no policy: may do nothing
    key = iam.create_access_key(UserName="no-rights")["AccessKey"]
    use_credentials(monkeypatch, key["AccessKeyId"], key["SecretAccessKey"])
    with enable_iam_authentication():
        line = status_error(capsys, moto_bucket)
    assert line.startswith(
        f"buildfarm status: error: access denied: GetObject on {moto_bucket}/versions.json (AccessDenied): "
    ), line
    assert "set AWS_PROFILE to one that has it" in line


def test_rejected_credentials(moto_bucket, monkeypatch, capsys):
    use_credentials(monkeypatch, "AKIANOTAREALKEY00000", "not-a-secret")
    with enable_iam_authentication():
        line = status_error(capsys, moto_bucket)
    assert "AWS rejected the credentials (InvalidAccessKeyId" in line and "AWS_PROFILE" in line, line


def test_missing_stack_says_how_to_name_it(aws_env):
    with mock_aws(), pytest.raises(ClientError) as raised:
        boto3.client("cloudformation", region_name="us-east-1").describe_stacks(StackName="NoSuchFarm")
    explained = explain_aws_error(raised.value, hint="pass --stack NAME or set BUILDFARM_STACK")
    assert isinstance(explained, AwsError) and explained.exit_code == 2
    assert str(explained) == (
        "CloudFormation stack 'NoSuchFarm' does not exist in this account and region: pass --stack "
        "NAME or set BUILDFARM_STACK, or set AWS_REGION (or a region for AWS_PROFILE in ~/.aws/config) "
        "to the stack's region"
    )


# -- a store directory that does not exist ---------------------------------------------------


@pytest.mark.parametrize("command", ["status", "plan"])
def test_read_only_commands_refuse_a_missing_store(tmp_path, command, capsys, monkeypatch):
    monkeypatch.setenv("BUILDFARM_RELEASES_URL", "http://127.0.0.1:9/api")
    missing = tmp_path / "dsit"
    assert main([command, "--store", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"buildfarm {command}: error: store {missing} does not exist: pass --store (or set "
        "BUILDFARM_STORE) to an existing store; `buildfarm run` creates one\n"
    )
    assert not missing.exists()


def test_status_of_an_existing_empty_store(tmp_path, capsys):
    assert main(["status", "--store", str(tmp_path)]) == 0
    assert "nothing published yet" in capsys.readouterr().out
