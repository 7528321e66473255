"""The plan and publish Lambdas: the `buildfarm` package plus the platform registry, staged into a
directory at synth time (no Docker bundling); Powertools and pydantic come from the official
Powertools layer."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import packaging
from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

import buildfarm
from buildfarm.platforms import registry_path
from infra.config import InfraConfig
from infra.nag import acknowledge, acknowledge_wildcards, logical_id

RUNTIME = lambda_.Runtime.PYTHON_3_14
POWERTOOLS_LAYER = "AWSLambdaPowertoolsPythonV3-python314-arm64"
POWERTOOLS_ACCOUNT = "017000801446"  # the Powertools team's public layer account
PLAN_HANDLER = "buildfarm.handlers.plan.handler"
PUBLISH_HANDLER = "buildfarm.handlers.publish.handler"
METRICS_NAMESPACE = "PythonBuildFarm"

# Store keys each function touches (functions/buildfarm: plan.py, claims.py, releases.py,
# publish.py, catalog.py). Nobody but Publish writes versions.json.
PLAN_READS = ("versions.json", "releases.json", "claims/*")
PLAN_WRITES = ("releases.json", "claims/*", "plans/*")
PUBLISH_READS = ("versions.json", "plans/*", "builds/*", "logs/*", "claims/*", "install.sh")
PUBLISH_WRITES = ("versions.json", "download-metadata/*", "index.html", "install.sh", "claims/*")

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")


def stage_lambda_bundle(destination: Path | None = None) -> Path:
    """Copy the buildfarm package, the registry (at buildfarm/builder_image/platforms.json, where
    platforms.builder_image_dir() looks in an installed package) and pure-Python dependencies
    that the Powertools layer lacks into a directory, and return it."""
    root = Path(destination or tempfile.mkdtemp(prefix="buildfarm-lambda-"))
    package_dir = Path(buildfarm.__file__).resolve().parent
    shutil.copytree(package_dir, root / "buildfarm", ignore=_IGNORE, dirs_exist_ok=True)
    (root / "buildfarm" / "builder_image").mkdir(exist_ok=True)
    shutil.copy2(registry_path(), root / "buildfarm" / "builder_image" / "platforms.json")
    shutil.copytree(
        Path(packaging.__file__).resolve().parent, root / "packaging", ignore=_IGNORE, dirs_exist_ok=True
    )
    return root


class FarmFunctions(Construct):
    """`plan` and `publish` Lambda functions with least-privilege access to the store."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        bucket: s3.IBucket,
        public_base_url: str,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        code = lambda_.Code.from_asset(str(stage_lambda_bundle()))
        layer = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "Powertools",
            f"arn:{stack.partition}:lambda:{stack.region}:{POWERTOOLS_ACCOUNT}:layer:"
            f"{POWERTOOLS_LAYER}:{config.powertools_layer_version}",
        )
        environment = {
            "BUILDFARM_STORE": f"s3://{bucket.bucket_name}",
            "BUILDFARM_PUBLIC_BASE_URL": public_base_url,
            # A claim must outlive any execution that may still build its cell.
            "BUILDFARM_CLAIM_TTL_SECONDS": str(config.execution_timeout_hours * 3600),
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            **config.lambda_environment(),
        }

        def function(name: str, handler: str, timeout: Duration, description: str) -> lambda_.Function:
            role = iam.Role(
                self,
                f"{name}Role",
                assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                description=f"{name} Lambda of the build farm",
            )
            log_group = logs.LogGroup(
                self,
                f"{name}Logs",
                retention=logs.RetentionDays.THREE_MONTHS,
                removal_policy=RemovalPolicy.DESTROY,
            )
            log_group.grant_write(role)
            fn = lambda_.Function(
                self,
                name,
                description=description,
                runtime=RUNTIME,
                architecture=lambda_.Architecture.ARM_64,
                handler=handler,
                code=code,
                layers=[layer],
                role=role,
                memory_size=1024,
                timeout=timeout,
                tracing=lambda_.Tracing.ACTIVE,
                log_group=log_group,
                environment={**environment, "POWERTOOLS_SERVICE_NAME": f"buildfarm-{name.lower()}"},
            )
            return fn

        self.plan = function(
            "Plan", PLAN_HANDLER, Duration.minutes(5), "Validates the input and writes the build plan"
        )
        self.publish = function(
            "Publish",
            PUBLISH_HANDLER,
            Duration.minutes(15),
            "Verifies finished builds and publishes catalogs",
        )

        # Plan: reads the catalogs and claims, refreshes releases.json, claims cells (create-only
        # or If-Match puts), writes the plan. Publish: reads plans, builds and failure records,
        # writes the catalogs (versions.json with If-Match), releases its claims (If-Match puts).
        for fn, sid, actions, keys in (
            (self.plan, "ReadStore", ["s3:GetObject"], PLAN_READS),
            (self.plan, "WritePlanAndClaims", ["s3:PutObject"], PLAN_WRITES),
            (self.publish, "ReadStore", ["s3:GetObject"], PUBLISH_READS),
            (self.publish, "WriteCatalogsAndReleaseClaims", ["s3:PutObject"], PUBLISH_WRITES),
        ):
            self._allow(fn, bucket, sid, actions, list(keys))
        for fn in (self.plan, self.publish):
            fn.add_to_role_policy(
                iam.PolicyStatement(sid="ListStore", actions=["s3:ListBucket"], resources=[bucket.bucket_arn])
            )
            acknowledge(
                fn.role,
                "AwsSolutions-IAM5[Resource::*]",
                "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level "
                "permissions (added by tracing=ACTIVE).",
            )  # fmt: skip

    @staticmethod
    def _allow(
        fn: lambda_.Function, bucket: s3.IBucket, sid: str, actions: list[str], keys: list[str]
    ) -> None:
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid=f"{sid}", actions=actions, resources=[bucket.arn_for_objects(k) for k in keys]
            )
        )
        acknowledge_wildcards(
            fn.role,
            [f"<{logical_id(bucket)}.Arn>/{key}" for key in keys if key.endswith("*")],
            f"{', '.join(actions)} limited to named store prefixes; the keys below them are per "
            "cell, build, plan or platform and only known at run time (none of its writes is under builds/).",
        )
