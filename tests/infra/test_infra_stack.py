"""The synthesized stack, checked construct by construct (aws_cdk.assertions on the template
that `python app.py` wrote), plus cdk-nag and cfn-lint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from template_helpers import REPO, by_type, cdk_json_config, only

from buildfarm.platforms import load_registry
from buildfarm.workflow_names import STACK_NAME, Outputs, States
from infra.workflow_states import RuntimeStates

LAMBDA_ENVIRONMENT = (
    "BUILDFARM_STORE",
    "BUILDFARM_PUBLIC_BASE_URL",
    "BUILDFARM_ENABLED_PLATFORMS",
    "BUILDFARM_ENABLED_ARCHES",
    "BUILDFARM_LOWEST_SERIES",
    "BUILDFARM_RELEASES_PER_SERIES",
    "BUILDFARM_PRERELEASES",
    "BUILDFARM_CLAIM_TTL_SECONDS",
    "BUILDFARM_MAX_CONCURRENCY",
    "BUILDFARM_EXECUTION_TIMEOUT_HOURS",
    "BUILDFARM_JOB_MINUTES_ESTIMATE",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
)

# Checks of the session's CDK synthesis (`python app.py`, most of a minute): not in `-m 'not slow'`.
pytestmark = pytest.mark.slow

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "1")


@pytest.fixture(scope="module")
def assertions(template: dict[str, Any]):
    from aws_cdk.assertions import Template

    return Template.from_json(template)


# -- synthesis, cdk-nag, cfn-lint ----------------------------------------------------------


def test_app_synthesizes_without_docker_or_credentials_and_cdk_nag_passes(synthesis) -> None:
    # cdk-nag runs as a validation plugin: any unacknowledged finding makes `python app.py` exit 1.
    assert synthesis.returncode == 0, synthesis.output[-6000:]
    report = synthesis.outdir / "validation-report.json"
    if report.exists():
        violations = [v for p in json.loads(report.read_text())["pluginReports"] for v in p["violations"]]
        assert violations == []
    # Docker image assets are only staged (a build context per platform x arch), never built.
    assert list(synthesis.outdir.glob("asset.*/Dockerfile.deb"))


def test_every_acknowledgement_names_its_resource_and_a_reason(synthesis) -> None:
    metadata = json.loads((synthesis.outdir / f"{STACK_NAME}.metadata.json").read_text())
    acknowledged = {
        (path, rule): reason
        for path, entries in metadata.items()
        for entry in entries
        if entry["type"] == "aws:cdk:acknowledged-rules"
        for rule, reason in entry["data"].items()
        if "AwsSolutions-" in rule
    }
    assert len(acknowledged) >= 10
    for (path, rule), reason in acknowledged.items():
        assert reason.startswith(f"{path.lstrip('/')}: "), (path, rule, reason)
        assert len(reason.split(": ", 1)[1]) > 30, (path, rule, reason)


def test_cdk_nag_is_live_in_this_setup(tmp_path) -> None:
    """A bare bucket (no logs, no TLS policy) must be reported: the check above can fail."""
    from aws_cdk import App, Stack, Validations
    from aws_cdk import aws_s3 as s3
    from cdk_nag import AwsSolutionsChecks

    app = App(outdir=str(tmp_path))
    s3.Bucket(Stack(app, "Bare"), "Bucket")
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(Exception, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = {v["ruleName"] for p in report["pluginReports"] for v in p["violations"]}
    assert {"AwsSolutions-S1", "AwsSolutions-S10"} <= rules


def test_cfn_lint_reports_no_errors(synthesis, template: dict[str, Any]) -> None:
    result = subprocess.run(
        [str(REPO / ".venv/bin/cfn-lint"), "--format", "json", str(synthesis.template_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    findings = json.loads(result.stdout or "[]")
    errors = [f for f in findings if f["Level"] == "Error"]
    assert errors == [], json.dumps(errors, indent=1)[:4000]


# -- storage and CDN -----------------------------------------------------------------------


def test_store_bucket_is_encrypted_versioned_private_logged_and_expires_scratch(template) -> None:
    _, store = only(template, "AWS::S3::Bucket", "StorageStore")
    logs_id, _ = only(template, "AWS::S3::Bucket", "StorageAccessLogs")
    props = store["Properties"]
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": logs_id}
    expiring = {r.get("Prefix"): r.get("ExpirationInDays") for r in props["LifecycleConfiguration"]["Rules"]}
    for prefix in ("plans/", "claims/", "logs/"):
        assert expiring[prefix] and expiring[prefix] > 0
    assert not any(p and p.startswith("builds") for p in expiring)  # published builds never expire
    assert store.get("DeletionPolicy") == "Retain"


def test_store_bucket_policy_is_tls_only_and_the_cdn_reads_only_published_content(
    assertions, template
) -> None:
    """TLS only; the CDN (OAC) reads objects but may not read the workflow's working state."""
    from aws_cdk.assertions import Match

    store_id, _ = only(template, "AWS::S3::Bucket", "StorageStore")
    assertions.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": store_id},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                        ),
                        Match.object_like(
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "cloudfront.amazonaws.com"},
                                "Action": "s3:GetObject",
                                "Condition": {"StringEquals": {"AWS:SourceArn": Match.any_value()}},
                            }
                        ),
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Principal": {"Service": "cloudfront.amazonaws.com"},
                                "Action": "s3:GetObject",
                            }
                        ),
                    ]
                )
            },
        },
    )
    policy = next(
        r
        for r in by_type(template, "AWS::S3::BucketPolicy").values()
        if r["Properties"]["Bucket"] == {"Ref": store_id}
    )
    deny = next(
        s
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Sid") == "CdnServesOnlyPublishedContent"
    )
    denied = {json.dumps(r) for r in deny["Resource"]}
    assert any("/plans/*" in d for d in denied) and any("/claims/*" in d for d in denied)
    assert any("/logs/*" in d for d in denied)


def test_cdn_uses_origin_access_control_and_caches_catalogs_briefly_builds_long(template) -> None:
    _, dist = only(template, "AWS::CloudFront::Distribution")
    config = dist["Properties"]["DistributionConfig"]
    assert config["DefaultRootObject"] == "index.html"
    assert config["Origins"][0]["OriginAccessControlId"]
    assert by_type(template, "AWS::CloudFront::OriginAccessControl")
    policies = {
        lid: r["Properties"]["CachePolicyConfig"]
        for lid, r in by_type(template, "AWS::CloudFront::CachePolicy").items()
    }
    behaviors = {b["PathPattern"]: policies[b["CachePolicyId"]["Ref"]] for b in config["CacheBehaviors"]}
    day = 24 * 3600
    assert behaviors["builds/*"]["DefaultTTL"] >= 30 * day
    for pattern in ("versions.json", "download-metadata/*", "index.html", "install.sh", "releases.json"):
        assert behaviors[pattern]["DefaultTTL"] <= 600, pattern
    assert policies[config["DefaultCacheBehavior"]["CachePolicyId"]["Ref"]]["DefaultTTL"] <= 600
    for behavior in [*config["CacheBehaviors"], config["DefaultCacheBehavior"]]:
        assert behavior["ViewerProtocolPolicy"] == "redirect-to-https"
        assert behavior["AllowedMethods"] == ["GET", "HEAD"]


# -- functions, workflow, schedule, alarms, outputs -----------------------------------------


def test_lambdas_run_the_real_handlers_with_the_registry_and_powertools_layer(synthesis, template) -> None:
    functions = by_type(template, "AWS::Lambda::Function")
    handlers = {r["Properties"]["Handler"]: r["Properties"] for r in functions.values()}
    assert set(handlers) == {
        "buildfarm.handlers.recover.handler",
        "buildfarm.handlers.plan.handler",
        "buildfarm.handlers.publish.cell_handler",
        "buildfarm.handlers.publish.finalize_handler",
        "buildfarm.handlers.publish.runtime_handler",
    }
    for props in handlers.values():
        assert props["Runtime"] == "python3.14"
        assert props["Architectures"] == ["arm64"]
        assert props["TracingConfig"] == {"Mode": "Active"}
        layer = json.dumps(props["Layers"])
        assert ":017000801446:layer:AWSLambdaPowertoolsPythonV3-python314-arm64:" in layer
        env = props["Environment"]["Variables"]
        for name in LAMBDA_ENVIRONMENT:
            assert name in env, name
        bundle = synthesis.outdir / props["Code"]["S3Key"].removesuffix(".zip").join(["asset.", ""])
        if not bundle.is_dir():
            metadata = json.loads((synthesis.outdir / f"{STACK_NAME}.assets.json").read_text())["files"]
            bundle = (
                synthesis.outdir / metadata[props["Code"]["S3Key"].removesuffix(".zip")]["source"]["path"]
            )
        assert (bundle / "buildfarm/handlers/plan.py").is_file()
        assert (bundle / "buildfarm/handlers/publish.py").is_file()
        assert (bundle / "buildfarm/builder_image/platforms.json").read_text() == (
            REPO / "builder_image/platforms.json"
        ).read_text()
        assert (bundle / "packaging/version.py").is_file()
        assert not list(bundle.rglob("__pycache__"))


# A build's manifest and spec as far as the publish side's SBOM reads them.
SBOM_MANIFEST = {
    "built_at": "2025-06-11T12:00:00Z",
    "sbom_facts": {"distro_id": "debian", "distro_version": "12"},
}
SBOM_SPEC = {"version": "3.13.5", "platform": "debian-12", "arch": "x86_64", "build": 1,
             "source": {"url": "https://example.org/Python-3.13.5.tar.xz", "sha256": "ab" * 32}}  # fmt: skip


def test_bundle_imports_the_handlers_and_finds_the_registry(synthesis, template) -> None:
    """The staged Lambda code works on its own (no repository checkout next to it)."""
    (props,) = [r["Properties"] for r in by_type(template, "AWS::Lambda::Function").values()][:1]
    metadata = json.loads((synthesis.outdir / f"{STACK_NAME}.assets.json").read_text())["files"]
    bundle = synthesis.outdir / metadata[props["Code"]["S3Key"].removesuffix(".zip")]["source"]["path"]
    code = (
        "import buildfarm.platforms as p, buildfarm.handlers.plan, buildfarm.handlers.publish,"
        " buildfarm.handlers.recover, jinja2, markupsafe, sys;"
        "from buildfarm.attest.build_files import sbom_document as sbom;"
        "print(p.registry_path()); print(len(p.load_registry().platforms));"
        "print(jinja2.__file__); print(markupsafe.__file__); print(markupsafe.escape('<&>'));"
        f"sbom({SBOM_MANIFEST!r}, {SBOM_SPEC!r});"
        "print(','.join(sorted(m.__file__ for m in map(sys.modules.get, "
        "('cyclonedx', 'packageurl', 'py_serializable', 'sortedcontainers', 'defusedxml')))))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path[:0] = [{str(bundle)!r}]; {code}"],
        capture_output=True,
        text=True,
        cwd=bundle,
        env={**os.environ, "POWERTOOLS_TRACE_DISABLED": "1", "AWS_DEFAULT_REGION": "us-east-1"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    path, count, jinja, markup, escaped, sbom_dependencies = result.stdout.split()
    # The publish side's SBOM is made in the Lambda with the bundle's cyclonedx (the layer has none).
    assert all(path.startswith(str(bundle)) for path in sbom_dependencies.split(",")), sbom_dependencies
    assert path.startswith(str(bundle)) and path.endswith("buildfarm/builder_image/platforms.json")
    assert int(count) == len(load_registry().platforms)
    # The status page's template engine comes with the bundle (the layer has none), without
    # compiled code built for this machine.
    assert jinja.startswith(str(bundle)) and markup.startswith(str(bundle))
    assert escaped == "&lt;&amp;&gt;" and not list(bundle.rglob("*.so"))


def test_state_machine_logs_all_traces_and_times_out(template, lifecycle_date) -> None:
    _, machine = only(template, "AWS::StepFunctions::StateMachine")
    props = machine["Properties"]
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is True
    assert props["TracingConfiguration"] == {"Enabled": True}
    definition = "".join(p if isinstance(p, str) else "?" for p in props["DefinitionString"]["Fn::Join"][1])
    asl = json.loads(definition)
    assert asl["TimeoutSeconds"] == cdk_json_config(lifecycle_date).execution_timeout_hours * 3600
    build = asl["States"][States.BUILD]
    assert build["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert build["MaxConcurrency"] == cdk_json_config(lifecycle_date).max_concurrency
    assert build["ItemReader"]["Parameters"] == {
        "Bucket.$": "$.plan.items.bucket",
        "Key.$": "$.plan.items.key",
    }
    assert build["ItemReader"]["ReaderConfig"] == {"InputType": "JSON"}
    assert build["ResultWriter"]["Parameters"]["Prefix"].startswith("plans/")
    assert build["ItemSelector"] == {"item.$": "$$.Map.Item.Value"}
    cell = build["ItemProcessor"]["States"][States.BUILD_CELL]
    assert cell["Resource"].endswith(":states:::batch:submitJob.sync")
    assert cell["Parameters"]["ContainerOverrides"]["Environment"] == [
        {"Name": "BUILD_SPEC", "Value.$": "States.JsonToString($.item.spec)"}
    ]
    # Each cell is published as soon as its job ends, built or failed.
    item_states = build["ItemProcessor"]["States"]
    assert (
        item_states[States.CELL_BUILT]["Next"]
        == item_states[States.CELL_FAILED]["Next"]
        == States.PUBLISH_CELL
    )
    assert cell["Catch"][0]["Next"] == States.CELL_FAILED
    # The order of the workflow, and a Catch on every state that can fail.
    states = asl["States"]
    assert asl["StartAt"] == States.RECOVER
    assert states[States.RECOVER]["Next"] == states[States.RECOVER]["Catch"][0]["Next"] == States.PLAN
    any_runtimes = RuntimeStates.ANY_RUNTIME_CELLS
    assert states[States.BUILD]["Next"] == states[States.BUILD]["Catch"][0]["Next"] == any_runtimes
    runtimes_map = states[RuntimeStates.BUILD_RUNTIMES]
    assert runtimes_map["Next"] == runtimes_map["Catch"][0]["Next"] == States.FINALIZE
    assert states[States.PLAN]["Catch"][0]["Next"] == States.PLAN_FAILED
    assert states[States.FINALIZE]["Catch"][0]["Next"] == States.FINALIZE_FAILED
    for states in (asl["States"], item_states, runtimes_map["ItemProcessor"]["States"]):
        for name, state in states.items():
            if state["Type"] in ("Task", "Map"):
                assert state["Catch"][0]["ErrorEquals"] == ["States.ALL"], name


def test_runtime_items_run_their_own_command_on_the_cells_builder_then_publish(template) -> None:
    """The runtime cells (issue 16): a Choice skips either Map when Plan has no items for it; the
    BuildRuntimes Map reads the runtime items Plan wrote; each item's Batch job runs the item's
    argv as the container's command (a JSON path, never a string built here), then PublishRuntime
    decides the item whether the job succeeded or not."""
    _, machine = only(template, "AWS::StepFunctions::StateMachine")
    definition = "".join(
        p if isinstance(p, str) else "?" for p in machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    )
    states = json.loads(definition)["States"]
    anything = states[States.ANYTHING_TO_BUILD]
    assert (
        "$.plan.runtimes.planned" in json.dumps(anything["Choices"])
        and anything["Default"] == RuntimeStates.ANY_PYTHON_CELLS
    )
    python = states[RuntimeStates.ANY_PYTHON_CELLS]
    assert python["Choices"] == [
        {"Variable": "$.plan.counts.planned", "NumericGreaterThan": 0, "Next": States.BUILD}
    ]
    assert python["Default"] == RuntimeStates.ANY_RUNTIME_CELLS
    runtimes = states[RuntimeStates.ANY_RUNTIME_CELLS]
    assert runtimes["Choices"] == [
        {"Variable": "$.plan.runtimes.planned", "NumericGreaterThan": 0, "Next": RuntimeStates.BUILD_RUNTIMES}
    ]
    assert runtimes["Default"] == States.FINALIZE
    runtimes_map = states[RuntimeStates.BUILD_RUNTIMES]
    assert runtimes_map["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert runtimes_map["ItemReader"]["Parameters"] == {
        "Bucket.$": "$.plan.runtimes.items.bucket",
        "Key.$": "$.plan.runtimes.items.key",
    }
    assert runtimes_map["ResultWriter"]["Parameters"]["Prefix"].startswith("plans/")
    item_states = runtimes_map["ItemProcessor"]["States"]
    job = item_states[RuntimeStates.BUILD_RUNTIME]
    assert job["Resource"].endswith(":states:::batch:submitJob.sync")
    assert job["Parameters"]["ContainerOverrides"] == {"Command.$": "$.item.command"}
    assert job["Parameters"]["JobDefinition.$"].endswith("$.item.job_definition)")
    assert job["Parameters"]["JobQueue.$"].endswith("$.item.job_queue_arch)")
    assert job["Catch"][0]["Next"] == RuntimeStates.RUNTIME_FAILED
    assert (
        item_states[RuntimeStates.RUNTIME_BUILT]["Next"]
        == item_states[RuntimeStates.RUNTIME_FAILED]["Next"]
        == RuntimeStates.PUBLISH_RUNTIME
    )
    publish = item_states[RuntimeStates.PUBLISH_RUNTIME]
    assert publish["Catch"][0]["Next"] == RuntimeStates.RUNTIME_LEFT_TO_FINALIZE
    functions = by_type(template, "AWS::Lambda::Function")
    (publisher,) = [
        lid for lid, r in functions.items() if r["Properties"]["Handler"].endswith(".runtime_handler")
    ]
    assert "KMS_KEY_ID" in json.dumps(functions[publisher]["Properties"]["Environment"])


def test_every_log_group_keeps_its_logs_the_configured_days(template, lifecycle_date) -> None:
    # The functions' five, the builders', the state machine's and the VPC flow log's: one value.
    groups = by_type(template, "AWS::Logs::LogGroup")
    assert len(groups) == 8
    days = {lid: r["Properties"].get("RetentionInDays") for lid, r in groups.items()}
    assert set(days.values()) == {cdk_json_config(lifecycle_date).log_retention_days}, days


def test_schedule_starts_the_workflow_hourly_with_empty_input(template, lifecycle_date) -> None:
    _, rule = only(template, "AWS::Events::Rule", "Schedule")
    props = rule["Properties"]
    assert props["ScheduleExpression"] == cdk_json_config(lifecycle_date).schedule == "rate(1 hour)"
    assert props["State"] == "ENABLED"
    (target,) = props["Targets"]
    assert json.loads(target["Input"]) == {}
    assert target["Arn"]["Ref"] == only(template, "AWS::StepFunctions::StateMachine")[0]


def test_failed_executions_notify_and_alarm(template) -> None:
    topic_id, _ = only(template, "AWS::SNS::Topic")
    _, rule = only(template, "AWS::Events::Rule", "FailedExecutions")
    pattern = rule["Properties"]["EventPattern"]
    assert set(pattern["detail"]["status"]) == {"FAILED", "TIMED_OUT", "ABORTED"}
    assert rule["Properties"]["Targets"][0]["Arn"] == {"Ref": topic_id}
    _, alarm = only(template, "AWS::CloudWatch::Alarm", "ExecutionsFailed")
    # The alarm counts what the rule mails: failed, timed-out and aborted executions.
    metrics = alarm["Properties"]["Metrics"]
    (expression,) = [m["Expression"] for m in metrics if "Expression" in m]
    named = {m["Id"]: m["MetricStat"]["Metric"]["MetricName"] for m in metrics if "MetricStat" in m}
    assert named == {
        "failed": "ExecutionsFailed",
        "timedOut": "ExecutionsTimedOut",
        "aborted": "ExecutionsAborted",
    }
    # Each term filled: a metric without datapoints in the hour (no timeout, no abort) would
    # otherwise leave the sum without a datapoint, and one failure would never alarm.
    assert sorted(expression.replace(" ", "").split("+")) == sorted(f"FILL({m},0)" for m in named)
    assert all(m["MetricStat"]["Stat"] == "Sum" for m in metrics if "MetricStat" in m)
    # The rule mails the failure with its cause; the alarm, mailing too, would send it twice.
    assert not alarm["Properties"].get("AlarmActions")
    _publishers_are_the_alarm_and_the_rules_role(template, topic_id, rule)


def _publishers_are_the_alarm_and_the_rules_role(
    template: dict[str, Any], topic_id: str, rule: dict[str, Any]
) -> None:
    """The topic's policy replaces SNS's default: CloudWatch may publish for the alarm that mails
    (FarmErrors) only, and no service principal for EventBridge (which any account's rule could
    use): the rule publishes with a role of its own, which may publish to this topic with its key."""
    alarm_ids = [only(template, "AWS::CloudWatch::Alarm", "FarmErrors")[0]]
    _, policy = only(template, "AWS::SNS::TopicPolicy")
    allows = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert allows == [
        {
            "Action": "sns:Publish",
            "Condition": {
                "ArnEquals": {"aws:SourceArn": [{"Fn::GetAtt": [a, "Arn"]} for a in alarm_ids]},
                "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
            },
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Resource": {"Ref": topic_id},
            "Sid": "AlarmPublishes",
        }
    ]
    role = rule["Properties"]["Targets"][0]["RoleArn"]["Fn::GetAtt"][0]
    statements = [
        s
        for p in by_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    key_id, key = only(template, "AWS::KMS::Key", "TopicKey")
    assert statements == [
        {"Action": "sns:Publish", "Effect": "Allow", "Resource": {"Ref": topic_id}},
        {
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [key_id, "Arn"]},
        },
    ]
    services = [
        s["Principal"] for s in key["Properties"]["KeyPolicy"]["Statement"] if "Service" in s["Principal"]
    ]
    assert services == [{"Service": "cloudwatch.amazonaws.com"}]


def test_outputs_name_the_state_machine_bucket_cdn_and_topic(template) -> None:
    names = {Outputs.STATE_MACHINE_ARN, Outputs.BUCKET_NAME, Outputs.CDN_DOMAIN}
    names.add(Outputs.NOTIFICATION_TOPIC_ARN)
    assert names <= set(template["Outputs"])
