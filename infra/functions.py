"""The workflow's Lambdas (Recover, Plan, PublishCell, PublishRuntime, Finalize): the
`buildfarm` package plus the platform registry and the runtime definitions, staged into a
directory at synth time (no Docker bundling); Powertools and pydantic come from the official
Powertools layer, and so does cryptography (the signatures' ECDSA), compiled for the layer's
Python and arch: the v3 layer carries aws-encryption-sdk and
its cryptography (powertools-lambda-python pull request #4630)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cyclonedx
import defusedxml
import jinja2
import markupsafe
import packageurl
import packaging
import py_serializable
import sortedcontainers
from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

import buildfarm
from buildfarm import layout
from buildfarm.attest.collect import PACKAGE_DIR as COLLECTOR_DIR
from buildfarm.config import FarmConfig
from buildfarm.layout import under
from buildfarm.platforms import builder_image_dir, registry_path
from buildfarm.runtimes.definitions import PACKAGED_DEFINITIONS, default_definitions
from buildfarm.scratch import process_directory
from infra.config import InfraConfig
from infra.log_groups import log_group
from infra.nag import acknowledge, logical_id
from infra.signing import KMS_KEY_VARIABLE, SigningKey
from infra.storage_cdn import PLAN_RECORD_KEYS

RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64
# The Powertools layer built for that runtime and architecture (AWSLambdaPowertoolsPythonV3-python314-arm64).
POWERTOOLS_LAYER = f"AWSLambdaPowertoolsPythonV3-{RUNTIME.name.replace('.', '')}-{ARCHITECTURE.name}"
POWERTOOLS_ACCOUNT = "017000801446"  # the Powertools team's public layer account
RECOVER_HANDLER = "buildfarm.handlers.recover.handler"
PLAN_HANDLER = "buildfarm.handlers.plan.handler"
PUBLISH_CELL_HANDLER = "buildfarm.handlers.publish.cell_handler"
FINALIZE_HANDLER = "buildfarm.handlers.publish.finalize_handler"
PUBLISH_RUNTIME_HANDLER = "buildfarm.handlers.publish.runtime_handler"
METRICS_NAMESPACE = "PythonBuildFarm"

# Store keys each function reads, writes (PutObject) and deletes (functions/buildfarm: plan.py,
# claims.py, releases.py, publish.py, verify.py, catalog.py, recovery.py, attest/). Only the
# publishing functions write versions.json, its signature and keys/; under builds/ they write
# only the publish side's files (SBOM, provenance, SHA256SUMS, signatures), none under logs/.
# Under plans/ only Plan writes the plan's record and items; the publishing functions write
# only the run's outcomes (publish.py, runtimes/cloud_items.py). Key patterns, from the store
# layout (buildfarm.layout).
_ANY = "*"
_VERSIONS, _RELEASES, _INSTALLER = layout.VERSIONS_KEY, layout.RELEASES_KEY, layout.INSTALLER_KEY
_BUILDS, _LOGS = under(layout.BUILDS_PREFIX), under(layout.LOGS_PREFIX)
_CLAIMS, _PLANS, _RUNS = under(layout.CLAIMS_PREFIX), under(layout.PLANS_PREFIX), under(layout.RUNS_PREFIX)
_RUNTIMES = under(layout.RUNTIMES_PREFIX)
# plans/*/outcomes/*/*/*/*.json and plans/*/runtime-outcomes/*/*/*/*.json: a decided cell.
CELL_OUTCOMES = layout.outcome_key(_ANY, _ANY, (_ANY, _ANY, _ANY))
RUNTIME_OUTCOMES = layout.runtime_outcome_key(_ANY, layout.runtime_cell_name(_ANY, _ANY, _ANY, _ANY))
# What signing a build and the catalog writes: builds/*/SHA256SUMS, ..., keys/*, versions.json.sig.
PUBLISHER_BUILD_KEYS = tuple(f"{_BUILDS}/{name}" for name in layout.PUBLISHER_BUILD_FILES)
_SIGNED = (*PUBLISHER_BUILD_KEYS, layout.VERSIONS_SIGNATURE_KEY, under(layout.KEYS_PREFIX))
# The same files of a runtime build (runtimes/*/SHA256SUMS, *.sig, ...): PublishRuntime's, and
# Finalize's for the runtime items PublishRuntime did not decide.
PUBLISHER_RUNTIME_KEYS = tuple(f"{_RUNTIMES}/{name}" for name in layout.PUBLISHER_BUILD_FILES)
_STORE_SIGNATURES = (layout.VERSIONS_SIGNATURE_KEY, under(layout.KEYS_PREFIX))
PLAN_KEYS = {
    "reads": (_VERSIONS, _RELEASES, _CLAIMS, _RUNS),
    "writes": (_RELEASES, _CLAIMS, *PLAN_RECORD_KEYS, _RUNS),
    "deletes": (_RUNS,),
}
# install.sh: after a signing-key rotation, the first signed write of versions.json also pins
# the new key in the served install.sh (catalog.install_script.pin_signing_key), so installs do
# not refuse the catalog until Finalize.
PUBLISH_CELL_KEYS = {
    "reads": (_VERSIONS, _BUILDS, _LOGS, _CLAIMS, _INSTALLER, *_STORE_SIGNATURES),
    "writes": (_VERSIONS, _CLAIMS, CELL_OUTCOMES, _INSTALLER, *_SIGNED),
    "deletes": (),
}
_DERIVED = (under(layout.DOWNLOAD_METADATA_PREFIX), *layout.DERIVED_KEYS)
# Finalize decides the cells and runtime items the per-item functions did not.
FINALIZE_KEYS = {
    "reads": (_VERSIONS, _PLANS, _BUILDS, _LOGS, _CLAIMS, _INSTALLER, _RUNTIMES, *_STORE_SIGNATURES),
    "writes": (_VERSIONS, _CLAIMS, CELL_OUTCOMES, RUNTIME_OUTCOMES, *_DERIVED, *_SIGNED,
               *PUBLISHER_RUNTIME_KEYS),
    "deletes": (_RUNS,),
}  # fmt: skip
# PublishRuntime: verify a runtime build, sign it, merge it, release its claim, record the outcome.
PUBLISH_RUNTIME_KEYS = {
    "reads": (_VERSIONS, _RUNTIMES, _CLAIMS, _INSTALLER, *_STORE_SIGNATURES),
    "writes": (_VERSIONS, _CLAIMS, RUNTIME_OUTCOMES, _INSTALLER, *PUBLISHER_RUNTIME_KEYS, *_STORE_SIGNATURES),
    "deletes": (),
}
# Recover finalizes ended runs: Finalize's access, plus reading the open-run markers.
RECOVER_KEYS = {**FINALIZE_KEYS, "reads": (*FINALIZE_KEYS["reads"], _RUNS)}
_ACTIONS = {"reads": "s3:GetObject", "writes": "s3:PutObject", "deletes": "s3:DeleteObject"}
_SIDS = {"reads": "ReadStore", "writes": "WriteStore", "deletes": "CloseRuns"}

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")
# Pure-Python dependencies the Powertools layer lacks: the status page's jinja2, the SBOM's
# cyclonedx-python-lib and what it imports. markupsafe's compiled speedups are built for this
# machine, not the Lambda's arch and Python: left out, it uses its pure-Python code.
_DEPENDENCIES = (
    packaging,
    jinja2,
    markupsafe,
    cyclonedx,
    packageurl,
    py_serializable,
    sortedcontainers,
    defusedxml,
)
_DEPENDENCY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", "*.so", "*.c")


def stage_lambda_bundle(destination: Path | None = None, *, runtime_definitions: bool = True) -> Path:
    """Copy the buildfarm package, the registry and the SBOM fact collector (at
    buildfarm/builder_image/platforms.json and sbom_facts/, where platforms.builder_image_dir()
    looks in an installed package), the runtime definitions if runtime_definitions (at
    buildfarm/runtime_definitions, where runtimes.definitions looks outside a checkout: Plan's)
    and pure-Python dependencies that the Powertools layer lacks into destination (default: a
    directory removed when the process exits, once CDK has copied it); returns it."""
    root = destination or process_directory("buildfarm-lambda-")
    package_dir = Path(buildfarm.__file__).resolve().parent
    shutil.copytree(package_dir, root / "buildfarm", ignore=_IGNORE, dirs_exist_ok=True)
    image_dir = root / "buildfarm" / "builder_image"
    image_dir.mkdir(exist_ok=True)
    shutil.copy2(registry_path(), image_dir / "platforms.json")
    # The SBOM fact collector's one copy (buildfarm.attest loads its dataclasses from there):
    # the publish side makes each build's SBOM with them.
    collector = builder_image_dir() / COLLECTOR_DIR
    shutil.copytree(collector, image_dir / COLLECTOR_DIR, ignore=_IGNORE, dirs_exist_ok=True)
    definitions = default_definitions()
    if runtime_definitions and definitions.is_dir():
        shutil.copytree(
            definitions, root / "buildfarm" / PACKAGED_DEFINITIONS, ignore=_IGNORE, dirs_exist_ok=True
        )
    for dependency in _DEPENDENCIES:
        source = Path(dependency.__file__).resolve().parent
        shutil.copytree(source, root / dependency.__name__, ignore=_DEPENDENCY_IGNORE, dirs_exist_ok=True)
    return root


class FarmFunctions(Construct):
    """The workflow's Lambda functions, each with least-privilege access to the store."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        bucket: s3.IBucket,
        public_base_url: str,
        signing_key: SigningKey,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        # Without definitions in the bundle, Plan plans no runtime cell (cloudRuntimes off).
        code = lambda_.Code.from_asset(str(stage_lambda_bundle(runtime_definitions=config.cloud_runtimes)))
        layer = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "Powertools",
            f"arn:{stack.partition}:lambda:{stack.region}:{POWERTOOLS_ACCOUNT}:layer:"
            f"{POWERTOOLS_LAYER}:{config.powertools_layer_version}",
        )
        environment = {
            "BUILDFARM_STORE": f"s3://{bucket.bucket_name}",
            FarmConfig.environment_variables()["public_base_url"]: public_base_url,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            **config.lambda_environment(),
        }

        # The functions that publish (publish_cell, publish_runtime, publish, recover) sign with
        # the stack's key.
        signing = {**environment, KMS_KEY_VARIABLE: signing_key.key.key_arn}

        def function(
            name: str, handler: str, timeout: Duration, description: str, env: dict[str, str] = environment
        ) -> lambda_.Function:
            return self._function(name, handler, timeout, description, config, code, layer, env)

        # (name, handler, timeout, description[, environment]): one line each.
        # fmt: off
        self.recover = function("Recover", RECOVER_HANDLER, Duration.minutes(15),
                                "Finalizes the runs whose execution ended", signing)
        self.plan = function("Plan", PLAN_HANDLER, Duration.minutes(5),
                             "Validates the input and writes the build plan")
        self.publish_cell = function("PublishCell", PUBLISH_CELL_HANDLER, Duration.minutes(5),
                                     "Verifies, signs and publishes one built cell", signing)
        self.finalize = function("Finalize", FINALIZE_HANDLER, Duration.minutes(15),
                                 "Decides the rest of a run, writes and signs the catalogs", signing)
        self.publish_runtime = function("PublishRuntime", PUBLISH_RUNTIME_HANDLER, Duration.minutes(5),
                                        "Verifies, signs and publishes one built runtime cell", signing)
        # fmt: on
        self.all = (self.recover, self.plan, self.publish_cell, self.publish_runtime, self.finalize)
        self.publishers = (self.recover, self.publish_cell, self.publish_runtime, self.finalize)
        self._grant_store(bucket)
        for fn in self.publishers:
            signing_key.grant_signing(fn.role)

    def _function(
        self,
        name: str,
        handler: str,
        timeout: Duration,
        description: str,
        config: InfraConfig,
        code: lambda_.Code,
        layer: lambda_.ILayerVersion,
        environment: dict[str, str],
    ) -> lambda_.Function:
        """One function with its own role and log group."""
        role = iam.Role(
            self,
            f"{name}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{name} Lambda of the build farm",
        )
        function_logs = log_group(self, f"{name}Logs", config)
        function_logs.grant_write(role)
        return lambda_.Function(
            self,
            name,
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=handler,
            code=code,
            layers=[layer],
            role=role,
            memory_size=1024,
            timeout=timeout,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=function_logs,
            environment={**environment, "POWERTOOLS_SERVICE_NAME": f"buildfarm-{name.lower()}"},
        )

    def _grant_store(self, bucket: s3.IBucket) -> None:
        """Each function's store keys (the *_KEYS tables), and listing the store."""
        for fn, keys in (
            (self.recover, RECOVER_KEYS),
            (self.plan, PLAN_KEYS),
            (self.publish_cell, PUBLISH_CELL_KEYS),
            (self.publish_runtime, PUBLISH_RUNTIME_KEYS),
            (self.finalize, FINALIZE_KEYS),
        ):
            actions_on: dict[str, list[str]] = {}
            for kind, patterns in keys.items():
                if patterns:
                    resources = [bucket.arn_for_objects(key) for key in patterns]
                    fn.add_to_role_policy(
                        iam.PolicyStatement(sid=_SIDS[kind], actions=[_ACTIONS[kind]], resources=resources)
                    )
                for key in patterns:
                    actions_on.setdefault(key, []).append(_ACTIONS[kind])
            self._acknowledge_store_keys(fn, bucket, actions_on)
        for fn in self.all:
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
    def _acknowledge_store_keys(
        fn: lambda_.Function, bucket: s3.IBucket, actions_on: dict[str, list[str]]
    ) -> None:
        """One acknowledgement per wildcard key pattern, naming every action the function has on it."""
        for key, actions in actions_on.items():
            if "*" not in key:
                continue
            acknowledge(
                fn.role,
                f"AwsSolutions-IAM5[Resource::<{logical_id(bucket)}.Arn>/{key}]",
                f"{' and '.join(sorted(actions))} on {key} in its own store only: each * stands for what is "
                "known only at run time (a version, platform, arch, build, execution, runtime name or "
                "key id). A write it has under builds/ or runtimes/ is one of the publish side's "
                "SHA256SUMS, SBOM, provenance or .sig files; under plans/, Plan alone writes a plan's "
                "record and items, the publishing functions only the run's outcomes.",
            )
