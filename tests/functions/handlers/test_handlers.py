"""The Lambda handlers with the workflow's real event shapes, against moto S3."""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from datetime import timedelta

import boto3
import pytest
from moto_patches import kms_signs_digests_as_aws
from openssl_check import openssl_verifies

from buildfarm import clock
from buildfarm.attest.signing import fingerprint
from buildfarm.errors import UsageError
from buildfarm.handlers import plan as plan_handler
from buildfarm.handlers import publish as publish_handler
from buildfarm.handlers import recover as recover_handler
from buildfarm.workflow_input import InputError, asks_for_dry_run

from ..conftest import BUCKET, NOW, PREFIX, WRITE_OPERATIONS, fake_build, read_json


@dataclass
class LambdaContext:
    function_name: str = "buildfarm-plan"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:buildfarm-plan"
    memory_limit_in_mb: int = 512
    aws_request_id: str = "6f0e4c1a-0000-4000-8000-000000000000"
    log_group_name: str = "/aws/lambda/buildfarm-plan"
    log_stream_name: str = "2026/11/22/[$LATEST]abc"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@pytest.fixture(autouse=True)
def handler_clock():
    """The handlers read the time from the process's clock: a fixed day, not the test's."""
    with clock.using(clock.fixed_clock(NOW)):
        yield


@pytest.fixture
def kms_key_arn(s3_client):
    """The stack's signing key, in moto's KMS (signing digests as AWS does)."""
    with kms_signs_digests_as_aws():
        kms = boto3.client("kms", region_name="us-east-1")
        yield kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]


@pytest.fixture
def lambda_env(monkeypatch, s3_client, python_org, kms_key_arn):
    monkeypatch.setenv("BUILDFARM_KMS_KEY_ID", kms_key_arn)
    monkeypatch.setenv("BUILDFARM_STORE", f"s3://{BUCKET}/{PREFIX}")
    monkeypatch.setenv("BUILDFARM_RELEASES_URL", python_org.base)
    monkeypatch.setenv("BUILDFARM_PUBLIC_BASE_URL", "https://d111111abcdef8.cloudfront.net/python")
    monkeypatch.setenv("BUILDFARM_SOURCE_MIRROR", "https://www.python.org/ftp/python")
    # A deployment that kept a builder for debian-11 past its end of support (2026-08-31).
    monkeypatch.setenv("BUILDFARM_ENABLED_PLATFORMS", "debian-11,debian-12,rhel-9,ubuntu-2404")
    monkeypatch.setenv("BUILDFARM_CLAIM_TTL_SECONDS", "7200")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "BuildFarmTest")
    return s3_client


@pytest.fixture
def store(lambda_env):
    from buildfarm.store import S3Store

    return S3Store(BUCKET, PREFIX, client=lambda_env)


@pytest.fixture
def s3_writes():
    """Every S3 call (operation, Key) of any boto3 client made from the default session (the
    handlers' clients); the tests pick the writes out."""
    boto3.setup_default_session()
    calls = []
    boto3.DEFAULT_SESSION.events.register(
        "provide-client-params.s3", lambda model, params, **kw: calls.append((model.name, params.get("Key")))
    )
    yield calls
    boto3.DEFAULT_SESSION = None


@pytest.fixture
def handler_logs():
    """What the handlers' Powertools loggers print (their stream is bound at import, before capsys)."""
    stream = io.StringIO()
    handlers = [plan_handler.logger.registered_handler, publish_handler.logger.registered_handler]
    old = [h.setStream(stream) for h in handlers]
    yield stream
    for handler, previous in zip(handlers, old, strict=True):
        handler.setStream(previous)


def emf_metrics(output: str) -> dict[str, float]:
    """Metric values from the CloudWatch embedded-metric-format lines Powertools printed."""
    values = {}
    for line in output.splitlines():
        if line.startswith("{") and "_aws" in line:
            document = json.loads(line)
            for metric in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                value = document[metric["Name"]]
                values[metric["Name"]] = sum(value) if isinstance(value, list) else value
    return values


def _assert_planned_four_cells(summary, store, capsys, handler_logs) -> None:
    """What Plan answered, saved, logged and counted for 3.13.5 on debian-12 and rhel-9."""
    assert summary["plan_id"] == "nightly-2026-11-22"
    assert summary["items"] == {"bucket": BUCKET, "key": f"{PREFIX}/plans/nightly-2026-11-22/items.json"}
    assert summary["counts"] == {
        "cells": 4,
        "planned": 4,
        "skipped_published": 0,
        "skipped_claimed": 0,
        "skipped_failing": 0,
        "deferred": 0,
    }
    assert summary["dry_run"] is False and summary["releases"] == "refreshed (+3)"
    assert len(json.dumps(summary)) < 1024
    # The releases catalog was refreshed from the (recorded) python.org answers and saved.
    assert "3.12.11" in read_json(store, "releases.json")["releases"]
    assert '"correlation_id":"nightly-2026-11-22"' in handler_logs.getvalue().replace(" ", "")
    assert emf_metrics(capsys.readouterr().out) == {
        "CellsPlanned": 4,
        "RuntimesPlanned": 0,  # the runtimes' Python is not published yet
        "CellsDeferred": 0,
        "CellsSkipped": 0,
    }
    assert read_json(store, "runs/nightly-2026-11-22.json")["planned"] == 4  # an open run


def _assert_signed_with_the_stack_key(store, build_dir: str, tmp_path) -> None:
    """keys/ lists the stack's KMS public key, and openssl verifies the catalog, a build's
    SHA256SUMS and its provenance with it."""
    keys = read_json(store, "keys/keys.json")
    public_key = store.read(keys["keys"][0]["file"])[0]
    assert [k["fingerprint"] for k in keys["keys"]] == [keys["current"]] == [fingerprint(public_key)]
    for name in ("versions.json", f"{build_dir}/SHA256SUMS", f"{build_dir}/provenance.json"):
        assert openssl_verifies(public_key, store.read(name)[0], store.read(f"{name}.sig")[0]), name
    assert store.exists(f"{build_dir}/sbom.cdx.json")


def test_plan_then_publish_through_the_handlers(store, s3_writes, capsys, handler_logs, tmp_path):
    event = {
        "input": {"versions": ["3.13.5"], "platforms": ["debian-12", "rhel-9"]},
        "execution_id": "nightly-2026-11-22",
    }
    summary = plan_handler.handler(event, LambdaContext())
    _assert_planned_four_cells(summary, store, capsys, handler_logs)
    items = read_json(store, "plans/nightly-2026-11-22/items.json")
    assert items[0]["spec"]["store"] == f"s3://{BUCKET}/{PREFIX}"
    assert (
        items[0]["spec"]["source"]["url"] == "https://www.python.org/ftp/python/3.13.5/Python-3.13.5.tar.xz"
    )
    for item in items[:3]:
        fake_build(store, item["spec"])  # rhel-9/aarch64 is never built

    # PublishCell for each Map item, with what Batch said; the failed cell's job never ran.
    for item in items:
        failed = item["cell"] == "3.13.5/rhel-9/aarch64"
        batch = (
            {"status": "failed", "error": "CannotPullContainerError"} if failed else {"status": "succeeded"}
        )
        outcome = publish_handler.cell_handler({"item": item, "batch": batch}, LambdaContext())
        assert outcome["status"] == ("failed" if failed else "published")
    assert read_json(store, "versions.json")["python_versions"] == ["3.13.5"]  # before Finalize
    assert emf_metrics(capsys.readouterr().out) == {"CellsBuilt": 1, "CellsFailed": 1}  # one per call
    answer = publish_handler.finalize_handler({"plan": summary}, LambdaContext(function_name="publish"))
    assert answer["published"] == [
        "3.13.5/debian-12/x86_64",
        "3.13.5/debian-12/aarch64",
        "3.13.5/rhel-9/x86_64",
    ]
    assert answer["failed"] == [{"cell": "3.13.5/rhel-9/aarch64", "reason": "CannotPullContainerError"}]
    assert answer["counts"]["published"] == 3 and answer["counts"]["failed"] == 1
    assert emf_metrics(capsys.readouterr().out) == {"CellsFailed": 1, "CellsDeferred": 0}
    assert not store.exists("runs/nightly-2026-11-22.json")  # closed
    lines = [json.loads(line) for line in handler_logs.getvalue().splitlines()]
    done = next(line for line in lines if str(line["message"]).endswith(": 3 published, 1 failed"))
    assert done["correlation_id"] == "nightly-2026-11-22" and done["function_name"] == "publish"

    versions = read_json(store, "versions.json")
    assert versions["python_versions"] == ["3.13.5"]
    uv = read_json(store, "download-metadata/debian-12.json")
    assert uv["cpython-3.13.5-linux-x86_64-gnu"]["url"].startswith(
        "https://d111111abcdef8.cloudfront.net/python/builds/"
    )
    assert "failed #1" in store.read("index.html")[0].decode()

    _assert_signed_with_the_stack_key(store, items[0]["spec"]["artifact_dir"], tmp_path)

    # The next scheduled run ({}) has nothing new for published cells; the failed one waits
    # for its retry (buildfarm.retry), which the run a day later makes.
    summary = plan_handler.handler({"input": {}, "execution_id": "hourly"}, LambdaContext())
    assert summary["counts"]["skipped_failing"] == 1
    assert "3.13.5/rhel-9/aarch64" not in [i["cell"] for i in read_json(store, "plans/hourly/items.json")]
    with clock.using(clock.fixed_clock(NOW + timedelta(days=1))):
        summary = plan_handler.handler({"input": {}, "execution_id": "nightly-2026-11-23"}, LambdaContext())
    items = read_json(store, "plans/nightly-2026-11-23/items.json")
    assert "3.13.5/rhel-9/aarch64" in [i["cell"] for i in items]
    assert next(i for i in items if i["cell"] == "3.13.5/rhel-9/aarch64")["spec"]["build"] == 2
    assert summary["counts"]["skipped_published"] == 3


def test_dry_run_event_writes_nothing(store, s3_writes):
    store.put_json("releases.json", read_json_seed_fresh())
    s3_writes.clear()
    # Named versions: what {} plans depends on the day (the lifecycle policy); this does not.
    event = {"input": {"versions": ["3.13.5"], "dry_run": True}, "execution_id": "dry"}
    summary = plan_handler.handler(event, LambdaContext())
    assert summary["dry_run"] is True and summary["counts"]["planned"] == 6  # 3 live platforms x 2
    # The recorder sees the handler's client: it read the releases catalog, and wrote nothing.
    assert ("GetObject", f"{PREFIX}/releases.json") in s3_writes, s3_writes
    assert [c for c in s3_writes if c[0] in WRITE_OPERATIONS] == []
    answer = publish_handler.finalize_handler({"plan": summary}, LambdaContext())
    assert answer["counts"]["planned"] == 0
    assert recover_handler.handler({**event, "execution_arn": None}, LambdaContext())["finalized"] == []
    assert [c for c in s3_writes if c[0] in WRITE_OPERATIONS] == []


@pytest.mark.parametrize(
    ("raw", "dry"),
    [
        ({"dry_run": True}, True),
        ('{"dry_run": true, "versions": ["3.13"]}', True),  # Plan reads JSON text too
        (b'{"dry_run": true}', True),
        ({"dry_run": True, "bogus": 1}, True),  # invalid for Plan, still nothing written before it
        ({"dry_run": "yes"}, False),
        ('{"dry_run": false}', False),
        ("not json", False),
        pytest.param("[" * 5000, False, id="nested-too-deeply"),  # json.loads: RecursionError
        (None, False),
        (["dry_run"], False),
    ],
)
def test_recover_sees_a_dry_run_in_any_form_plan_accepts(raw, dry):
    assert asks_for_dry_run(raw) is dry


def test_recover_writes_nothing_for_a_dry_run_given_as_json_text(store, s3_writes):
    s3_writes.clear()
    event = {"input": '{"dry_run": true}', "execution_id": "dry-text", "execution_arn": None}
    assert recover_handler.handler(event, LambdaContext()) == {
        "finalized": [],
        "running": [],
        "published": 0,
        "failed": 0,
    }
    assert s3_writes == []


def test_a_named_end_of_life_cell_is_planned(store):
    store.put_json("releases.json", read_json_seed_fresh())
    event = {
        "input": {"versions": ["3.9.2"], "platforms": ["debian-11"], "dry_run": True},
        "execution_id": "e",
    }
    summary = plan_handler.handler(event, LambdaContext())
    assert summary["counts"]["planned"] == 2  # 3.9 and debian-11 are past their dates, but named


def read_json_seed_fresh():
    from buildfarm.releases import iso, load_seed

    # Refreshed at the moment the handlers' clock reads (handler_clock), so no refresh is due.
    now = iso(NOW)
    return load_seed().model_copy(update={"updated": now, "checked": now}).model_dump(mode="json")


# Malformed workflow inputs, each with what the error message must quote.
MALFORMED = [
    ({"versions": "3.13.5"}, "versions: Input should be a valid list, got '3.13.5'"),
    ({"versions": ["3.13.x"]}, "malformed Python version '3.13.x'"),
    ({"versions": ["3.13.05"]}, "malformed Python version '3.13.05' (no leading zeros: 3.13.5)"),
    ({"versions": ["3.13.5", 3]}, "versions[1]: Input should be a valid string, got 3"),
    ({"versions": []}, "versions: List should have at least 1 item after validation, not 0, got []"),
    ({"versions": ["3.13.99"]}, "unknown Python version '3.13.99'"),
    ({"versions": ["3.10"]}, "unknown series '3.10'"),
    ({"versions": ["3.8.20"]}, "'3.8.20' is below the lowest supported series 3.9"),
    ({"versions": ["2.7.18"]}, "unsupported Python version '2.7.18' (only CPython 3 is built; "),
    ({"versions": ["4.0"]}, "unsupported Python version '4.0' (only CPython 3 is built; "),
    ({"versions": ["2.7.\u0665"]}, "malformed Python version '2.7.\u0665'"),  # Arabic-Indic five
    ({"versions": ["3.13.5 "]}, "malformed Python version '3.13.5 '"),
    ({"versions": ["3.13.5; rm -rf /"]}, "malformed Python version '3.13.5; rm -rf /'"),
    ({"versions": ["v3.13.5"]}, "malformed Python version 'v3.13.5'"),
    ({"versions": ["3.\uff113.5"]}, "malformed Python version '3.\uff113.5'"),  # fullwidth digit one
    ({"versions": ["3.13.5", "3.13.5"]}, "duplicate version '3.13.5'"),
    ({"versions": [f"3.13.{n}" for n in range(201)]}, "versions: List should have at most 200 items"),
    ({"versions": {"3.13": True}}, 'versions: Input should be a valid list, got {"3.13": true}'),
    ({"platforms": ["debian-99"]}, "unknown platform 'debian-99'"),
    # Ended platforms are accepted when named (debian-11, kept enabled here, is); one this
    # deployment has no builder for is not.
    ({"platforms": ["ubuntu-2004"]}, "platform 'ubuntu-2004' is not enabled in this deployment (no builder"),
    ({"platforms": ["debian-13"]}, "platform 'debian-13' is not enabled in this deployment"),
    ({"versions": ["3.9.2"], "platforms": ["debian-11", "debian-13"]}, "platform 'debian-13' is not enabled"),
    ({"platforms": "debian-12"}, "platforms: Input should be a valid list, got 'debian-12'"),
    ({"platforms": [None]}, "platforms[0]: Input should be a valid string, got null"),
    ({"platforms": ["Debian-12"]}, "unknown platform 'Debian-12'"),
    ({"platforms": ["debian-12/../../x"]}, "unknown platform 'debian-12/../../x'"),
    ({"arches": ["sparc64"]}, "unknown arch 'sparc64'"),  # arm64 is an alias of aarch64
    ({"arches": ["x86_64", "aarch64", "riscv64"]}, "unknown arch 'riscv64'"),
    ({"arches": ["x86_64", "x86_64"]}, "duplicate arch 'x86_64'"),
    ({"force": "true"}, "force: Input should be a valid boolean, got 'true'"),
    ({"force": 1}, "force: Input should be a valid boolean, got 1"),
    ({"dry_run": "no"}, "dry_run: Input should be a valid boolean, got 'no'"),
    ({"forse": True}, "unknown key 'forse'"),
    ({"Versions": ["3.13.5"]}, "unknown key 'Versions'"),
    (
        {"versions": ["3.13.5"], "platforms": ["debian-12"], "arches": ["x86_64"], "extra": 1},
        "unknown key 'extra'",
    ),
    (["3.13.5"], 'expected a JSON object, got ["3.13.5"]'),
    ("3.13.5", "not a JSON object: '3.13.5'"),
    ("[" * 5000, "nested too deeply: '[[[["),  # json.loads raises RecursionError
    ('{"versions": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
    (42, "expected a JSON object, got 42"),
]


@pytest.mark.parametrize(("raw", "message"), MALFORMED, ids=[str(i) for i in range(len(MALFORMED))])
def test_malformed_input_is_rejected_naming_the_value_and_nothing_is_written(store, s3_writes, raw, message):
    store.put_json("releases.json", read_json_seed_fresh())
    before = {info.key: info.etag for info in store.list("")}
    s3_writes.clear()
    with pytest.raises(InputError) as caught:
        plan_handler.handler({"input": raw, "execution_id": "bad-input"}, LambdaContext())
    text = str(caught.value)
    assert text.startswith("invalid workflow input: ")
    assert message in text, text
    assert "\n" not in text and len(text) < 600
    assert [c for c in s3_writes if c[0] in WRITE_OPERATIONS] == []
    assert {info.key: info.etag for info in store.list("")} == before


def test_corpus_is_big_enough():
    assert len(MALFORMED) >= 25


def test_finalize_names_at_most_max_named_cells_of_each_kind_and_counts_them_all():
    from buildfarm.finalize import MAX_NAMED, FinalizedRun
    from buildfarm.publish import CellOutcome, FailedCell, PublishResult

    many = MAX_NAMED + 10
    cells = [f"3.13.{n}/debian-12/x86_64" for n in range(many)]
    result = PublishResult(
        published=cells, failed=[FailedCell(cell=c, reason="exit 1") for c in cells],
        counts={"planned": 2 * many, "published": many, "failed": many},
    )  # fmt: skip
    runtimes = [CellOutcome(cell="svc/2.1.0/debian-12/x86_64", build=1, status="published")]
    answer = FinalizedRun(result, runtimes).summary()
    assert answer["published"] == cells[:MAX_NAMED]
    assert answer["failed"] == [{"cell": c, "reason": "exit 1"} for c in cells[:MAX_NAMED]]
    assert answer["counts"] == {
        "planned": 2 * many, "published": many, "failed": many, "runtimes_published": 1, "runtimes_failed": 0,
    }  # fmt: skip
    few = FinalizedRun(
        PublishResult(published=cells[:2], failed=[], counts={"planned": 2, "published": 2, "failed": 0}),
        runtimes,
    ).summary()
    assert few["published"] == [*cells[:2], "svc/2.1.0/debian-12/x86_64"]  # runtimes named after cells


def test_publish_event_must_carry_a_plan(store):
    from aws_lambda_powertools.utilities.parser import ValidationError

    with pytest.raises(ValidationError):
        publish_handler.finalize_handler({"results": []}, LambdaContext())
    with pytest.raises(ValidationError):
        publish_handler.cell_handler({"item": {"cell": "x"}, "batch": {"status": "ok"}}, LambdaContext())


@pytest.mark.parametrize("execute_state_machine", [False, True], ids=["recorded", "executing"])
def test_step_functions_liveness_asks_about_this_state_machines_executions(execute_state_machine):
    from moto import mock_aws

    from buildfarm.handlers.executions import step_functions_liveness

    with mock_aws(config={"stepfunctions": {"execute_state_machine": execute_state_machine}}):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        machine = sfn.create_state_machine(
            name="farm",
            definition=json.dumps(
                {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 600, "End": True}}}
            ),
            roleArn="arn:aws:iam::123456789012:role/farm",
        )["stateMachineArn"]
        this = sfn.start_execution(stateMachineArn=machine, name="this-run")["executionArn"]
        other = sfn.start_execution(stateMachineArn=machine, name="other-run")["executionArn"]
        is_running = step_functions_liveness(this, client=sfn)
        assert is_running("other-run") is True
        sfn.stop_execution(executionArn=other)
        # Executing, moto ends a stopped execution on its worker thread (as Step Functions
        # does, a moment later): wait until Step Functions itself says it ended.
        for _ in range(600):  # up to ~30 s: a loaded machine (CI, xdist) is slow to end it
            if sfn.describe_execution(executionArn=other)["status"] != "RUNNING":
                break
            time.sleep(0.05)
        assert step_functions_liveness(this, client=sfn)("other-run") is False
        # Not an execution of this state machine, a local run, a name no execution can have:
        # nobody can tell, and the claim's expiry decides.
        assert is_running("never-started") is None
        assert is_running("local-host-123-20261130T000000Z") is None
        assert is_running("a:b") is None
    assert step_functions_liveness(None)("other-run") is None
    assert step_functions_liveness("arn:aws:states:us-east-1:123456789012:stateMachine:farm")("x") is None


def test_a_publisher_without_a_signing_key_refuses_to_publish(store, monkeypatch):
    """No KMS key and no key file configured: an error naming the variables, nothing written."""
    monkeypatch.delenv("BUILDFARM_KMS_KEY_ID")
    monkeypatch.delenv("BUILDFARM_SIGNING_KEY", raising=False)
    with pytest.raises(UsageError, match=r"BUILDFARM_KMS_KEY_ID.*BUILDFARM_SIGNING_KEY"):
        publish_handler.finalize_handler(
            {"plan": {"plan_id": "p", "items": {"bucket": BUCKET, "key": "k"}}}, LambdaContext()
        )
    assert not store.exists("versions.json")


def test_a_broken_runtime_definition_does_not_stop_python_builds(store, monkeypatch, tmp_path, capsys):
    definitions = tmp_path / "runtimes"
    definitions.mkdir()
    (definitions / "broken.toml").write_text('name = "broken"\nversion = \n')
    monkeypatch.setenv("BUILDFARM_RUNTIMES", str(definitions))
    store.put_json("releases.json", read_json_seed_fresh())
    event = {"input": {"versions": ["3.13.5"], "dry_run": True}, "execution_id": "broken-runtimes"}
    summary = plan_handler.handler(event, LambdaContext())
    assert summary["counts"]["planned"] == 6
    assert '"RuntimeDefinitionErrors":[1.0]' in capsys.readouterr().out  # the alarmable metric
