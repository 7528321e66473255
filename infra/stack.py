"""The build farm stack: wires the constructs together. Environment-agnostic (no lookups)."""

from __future__ import annotations

from aws_cdk import Annotations, CfnOutput, Stack
from constructs import Construct

from buildfarm.platforms import Registry
from buildfarm.workflow_names import Outputs, signing_key_alias
from infra.alarms import Alarms
from infra.batch import BuildBatch
from infra.builder_images import BuilderImages
from infra.config import InfraConfig
from infra.functions import FarmFunctions
from infra.operators import OperatorAccess
from infra.schedule import Schedule
from infra.signing import SigningKey
from infra.storage_cdn import StorageCdn
from infra.workflow import BuildWorkflow


class BuildFarmStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: InfraConfig, registry: Registry, **kwargs
    ) -> None:
        super().__init__(
            scope, construct_id, description="Python Build Farm: build, test and publish CPython", **kwargs
        )
        self.config = config
        cells = config.cells(registry)
        self._warn_unmeasured_budget()

        self.storage = StorageCdn(self, "Storage", config=config)
        self.images = BuilderImages(self, "BuilderImages", registry=registry, cells=cells)
        self.batch = BuildBatch(
            self,
            "Batch",
            config=config,
            name_prefix=self.stack_name,
            cells=cells,
            images=self.images,
            bucket=self.storage.bucket,
        )
        # Issue 15: the publish side signs with a KMS key; the Batch jobs (Python builders and
        # runtime jobs) can neither use the key nor write the files the publish side signs.
        self.signing_key = SigningKey(
            self,
            "Signing",
            alias_name=signing_key_alias(self.stack_name),
            generation=config.signing_key_generation,
        )
        builders = list(self.batch.job_roles.values())
        runtime_jobs = list(self.batch.runtime_job_roles.values())
        self.signing_key.refuse([*builders, *runtime_jobs])
        self.storage.confine_jobs(builders=builders, runtime_jobs=runtime_jobs)
        self.functions = FarmFunctions(
            self,
            "Functions",
            config=config,
            bucket=self.storage.bucket,
            public_base_url=self.storage.public_base_url,
            signing_key=self.signing_key,
        )
        self.storage.reserve_plan_record(self.functions.plan.role)
        self.workflow = BuildWorkflow(
            self,
            "Workflow",
            config=config,
            bucket=self.storage.bucket,
            functions=self.functions,
            build_batch=self.batch,
        )
        self.schedule = Schedule(self, "Schedule", config=config, state_machine=self.workflow.state_machine)
        self.alarms = Alarms(
            self, "Alarms", config=config, state_machine=self.workflow.state_machine,
            functions=self.functions.all, schedule=self.schedule.rule,
        )  # fmt: skip

        self.operators = OperatorAccess(self, "Operators", workflow=self.workflow, bucket=self.storage.bucket)

        self._outputs()

    def _warn_unmeasured_budget(self) -> None:
        """A budget larger than benchmarks/plan_matrix.py measured Plan at is a synthesis warning."""
        unmeasured = self.config.unmeasured_budget()
        if unmeasured:
            Annotations.of(self).add_warning_v2("buildfarm:unmeasuredBudget", unmeasured)

    def _outputs(self) -> None:
        """What operators and installers need from the deployed stack (workflow_names.Outputs)."""
        CfnOutput(self, Outputs.STATE_MACHINE_ARN, value=self.workflow.state_machine.state_machine_arn,
                  description="Start builds: buildfarm trigger --state-machine <this>")  # fmt: skip
        CfnOutput(self, Outputs.BUCKET_NAME, value=self.storage.bucket.bucket_name, description="The store")
        CfnOutput(self, Outputs.CDN_DOMAIN, value=self.storage.distribution.distribution_domain_name,
                  description="Serves versions.json, builds/, index.html, install.sh")  # fmt: skip
        CfnOutput(self, Outputs.OPERATOR_POLICY_ARN, value=self.operators.policy.managed_policy_arn,
                  description="Attach to the people who run the farm: trigger, follow, read")  # fmt: skip
        CfnOutput(self, Outputs.NOTIFICATION_TOPIC_ARN, value=self.alarms.topic.topic_arn,
                  description="Failed executions are published here: subscribe to it")  # fmt: skip
        CfnOutput(self, Outputs.SIGNING_KEY_ARN, value=self.signing_key.key.key_arn,
                  description="The signing key: aws kms get-public-key --key-id <this>")  # fmt: skip
