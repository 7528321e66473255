"""AWS Batch: the network, one Spot compute environment + job queue per arch, and two job
definitions per enabled platform x arch, the Python build's and the runtime jobs' (the same image,
each with a job role of its own: infra.job_roles), named deterministically so the workflow can
address them with States.Format (see job_definition_name / job_queue_name)."""

from __future__ import annotations

from aws_cdk import Duration, Size, Stack
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from buildfarm.images import JOB_USER
from infra.builder_images import BuilderImages
from infra.config import InfraConfig
from infra.instance_types import INSTANCE_FAMILIES
from infra.job_roles import JobRoles, RuntimeJobRoles
from infra.log_groups import log_group
from infra.nag import acknowledge, acknowledge_wildcards

# Each arch's instance families (infra.instance_types, which also bounds a job's size).
INSTANCE_CLASSES = {
    arch: tuple(ec2.InstanceClass[family.upper()] for family in families)
    for arch, families in INSTANCE_FAMILIES.items()
}


# Batch runs an ECS-on-EC2 job in host network mode (AWS Batch User Guide, "Networking modes
# for AWS Batch jobs"): the job shares the instance's network, so no hop limit keeps it from the
# instance metadata service and the instance role there, the ECS agent's (with which a job could
# pose as the agent and be handed the role credentials of the other jobs on the instance). Every
# job runs as an unprivileged user (buildfarm.images.JOB_USER, the job definitions' `user`), and
# this rule, set at every boot before the ECS agent starts (a cloud-boothook), refuses the
# service to every user but root: the agent and the OS. Fail closed: an instance that cannot set
# the rule shuts down (Batch replaces it) instead of running jobs. IMDS's IPv6 endpoint is off
# (the launch template leaves it disabled).
BOOTHOOK = 'text/cloud-boothook; charset="us-ascii"'
IMDS_GUARD = """#cloud-boothook
#!/bin/bash
rule=(OUTPUT --destination 169.254.169.254/32 --match owner ! --uid-owner 0 --jump REJECT)
if ! { iptables -w -C "${rule[@]}" 2>/dev/null || iptables -w -I "${rule[@]}"; }; then
    echo "buildfarm: cannot keep the jobs from the instance metadata service; shutting down" >&2
    shutdown -h now
fi
"""

# Batch applies the first rule that matches (at most 5). Infrastructure losses are retried: Spot
# reclaim / instance loss ("Host EC2 ... terminated"), and a container that never started on a
# fresh host (the task's "Task failed to start"; the container's CannotPullContainerError or
# DockerTimeoutError). A compile or test failure exits: retrying it would only burn the compute
# again. Patterns: letters, digits, '.', ':' and spaces, up to 512 characters, a trailing '*'.
RETRY_STRATEGIES = [
    batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.SPOT_INSTANCE_RECLAIMED),
    batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.custom(on_status_reason="Task failed to start*")),
    batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.CANNOT_PULL_CONTAINER),
    batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.custom(on_reason="DockerTimeoutError*")),
    batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.custom(on_reason="*")),
]


def _runnable_limits(config: InfraConfig) -> list[batch.JobStateTimeLimitAction]:
    """Cancel a job blocked RUNNABLE at the head of its queue for runnableTimeoutMinutes, for each
    reason Batch reports a block: no Spot capacity, a job larger than the compute environment's
    maxvCpus, or than any of its instance types. The cell then fails like any other job."""
    return [
        batch.JobStateTimeLimitAction(
            action=batch.JobStateTimeLimitActionsAction.CANCEL,
            max_time=Duration.minutes(config.runnable_timeout_minutes),
            reason=reason,
            state=batch.JobStateTimeLimitActionsState.RUNNABLE,
        )
        for reason in (
            batch.JobStateTimeLimitActionsReason.INSUFFICIENT_INSTANCE_CAPACITY,
            batch.JobStateTimeLimitActionsReason.COMPUTE_ENVIRONMENT_MAX_RESOURCE,
            batch.JobStateTimeLimitActionsReason.JOB_RESOURCE_REQUIREMENT,
        )
    ]


def pass_image_reference(job: batch.EcsJobDefinition) -> None:
    """Add BUILDFARM_BUILDER_IMAGE (recorded by the driver in manifest.json as builder_image):
    the ECR URI of the image asset the container bound, content-addressed, so a manifest names
    the exact image. It exists only once the container is constructed, hence the override."""
    image_uri = job.container.node.find_child("AssetImage").image_uri  # ContainerImage.from_asset's
    with_image = {**(job.container.environment or {}), "BUILDFARM_BUILDER_IMAGE": image_uri}
    job.node.default_child.add_property_override(
        "ContainerProperties.Environment", [{"Name": k, "Value": v} for k, v in with_image.items()]
    )


def job_definition_prefix(prefix: str, *, runtime: bool = False) -> str:
    """What a job definition's name has before the plan item's job_definition (`<platform>-<arch>`):
    `<prefix>-` for a Python build's, `<prefix>-runtime-` for a runtime job's. The Map that
    submits the item decides which (infra.workflow_states), not the item."""
    return f"{prefix}-runtime-" if runtime else f"{prefix}-"


def job_definition_name(prefix: str, platform: str, arch: str, *, runtime: bool = False) -> str:
    """`<prefix>-<platform>-<arch>`, or `<prefix>-runtime-<platform>-<arch>` for runtime jobs."""
    return f"{job_definition_prefix(prefix, runtime=runtime)}{platform}-{arch}"


def job_queue_name(prefix: str, arch: str) -> str:
    """`<prefix>-<arch>`: the plan item's job_queue_arch is `<arch>`."""
    return f"{prefix}-{arch}"


class BuildBatch(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        name_prefix: str,
        cells: tuple[tuple[str, str], ...],
        images: BuilderImages,
        bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        self.name_prefix = name_prefix

        subnets = self._network(config)
        self._instances(config)
        self._compute(config, cells, subnets)
        self._roles(config, cells, bucket)
        self._job_definitions(config, cells, images)

    def _network(self, config: InfraConfig) -> ec2.SubnetSelection:
        """The VPC (the configured one, else a new one with public subnets only) and the
        subnets the builders run in."""
        if config.vpc_id:
            self.vpc = ec2.Vpc.from_vpc_attributes(
                self,
                "Vpc",
                vpc_id=config.vpc_id,
                availability_zones=[f"az{i}" for i in range(len(config.subnet_ids))],
                public_subnet_ids=list(config.subnet_ids),
            )
            subnets = ec2.SubnetSelection(
                subnets=[
                    ec2.Subnet.from_subnet_id(self, f"Subnet{i}", sid)
                    for i, sid in enumerate(config.subnet_ids)
                ]
            )
        else:
            # Public subnets only: builders need the internet (sources, pip self-test) and a NAT
            # gateway would cost more than the builds. No inbound rule anywhere.
            self.vpc = ec2.Vpc(
                self,
                "Vpc",
                max_azs=3,
                nat_gateways=0,
                subnet_configuration=[
                    ec2.SubnetConfiguration(name="builders", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=20)
                ],
                gateway_endpoints={
                    "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
                },
            )
            self.vpc.add_flow_log(
                "FlowLog",
                destination=ec2.FlowLogDestination.to_cloud_watch_logs(
                    log_group(self, "FlowLogGroup", config)
                ),
                traffic_type=ec2.FlowLogTrafficType.REJECT,
            )
            subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC)
        return subnets

    def _instances(self, config: InfraConfig) -> None:
        """The build instances' security group (no inbound) and launch template."""
        self.security_group = ec2.SecurityGroup(
            self,
            "BuilderSecurityGroup",
            vpc=self.vpc,
            description="Builders: no inbound",
            allow_all_outbound=True,
        )

        user_data = ec2.MultipartUserData()  # Batch takes a launch template's user data as MIME
        user_data.add_part(ec2.MultipartBody.from_raw_body(content_type=BOOTHOOK, body=IMDS_GUARD))
        self.launch_template = ec2.LaunchTemplate(
            self,
            "BuilderLaunchTemplate",
            require_imdsv2=True,
            # A hop limit keeps bridge-mode containers from the metadata service; Batch's jobs
            # share the instance's network (host mode): IMDS_GUARD keeps them from it.
            http_put_response_hop_limit=1,
            user_data=user_data,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        config.root_volume_gib,
                        encrypted=True,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        delete_on_termination=True,
                    ),
                )
            ],
        )

    def _compute(
        self, config: InfraConfig, cells: tuple[tuple[str, str], ...], subnets: ec2.SubnetSelection
    ) -> None:
        """One Spot compute environment and job queue per arch that has cells."""
        self.queues: dict[str, batch.JobQueue] = {}
        self.compute_environments: dict[str, batch.ManagedEc2EcsComputeEnvironment] = {}
        for arch in dict.fromkeys(a for _, a in cells):
            env = batch.ManagedEc2EcsComputeEnvironment(
                self,
                f"Spot-{arch}",
                vpc=self.vpc,
                vpc_subnets=subnets,
                security_groups=[self.security_group],
                spot=True,
                allocation_strategy=batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED,
                use_optimal_instance_classes=False,
                instance_classes=list(INSTANCE_CLASSES[arch]),
                images=[batch.EcsMachineImage(image_type=batch.EcsMachineImageType.ECS_AL2023)],
                launch_template=self.launch_template,
                minv_cpus=0,  # scale to zero between runs
                maxv_cpus=config.max_vcpus_per_arch,
                update_to_latest_image_version=True,
            )
            acknowledge(
                env.instance_role,
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonEC2ContainerServiceforEC2Role]",
                "the AWS-managed ECS container-instance policy is what Batch "
                "requires for its ECS agent; build jobs run with their own job role.",
            )
            self.compute_environments[arch] = env
            self.queues[arch] = batch.JobQueue(
                self,
                f"Queue-{arch}",
                job_queue_name=job_queue_name(self.name_prefix, arch),
                compute_environments=[batch.OrderedComputeEnvironment(compute_environment=env, order=1)],
                job_state_time_limit_actions=_runnable_limits(config),
            )

    def _roles(self, config: InfraConfig, cells: tuple[tuple[str, str], ...], bucket: s3.IBucket) -> None:
        """The build log group, the execution role (image pulls, logs) and the job roles (each
        platform x arch's builder's, and its runtime jobs', access to the store)."""
        self.log_group = log_group(self, "BuildLogs", config)
        self.execution_role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="Pulls the builder images and writes container logs",
        )
        acknowledge_wildcards(
            self.execution_role,
            ["*"],
            "ecr:GetAuthorizationToken has no resource-level permissions; image pulls "
            "are limited to the CDK asset repository.",
        )
        self.job_roles = JobRoles(self, "JobRole", cells=cells, bucket=bucket).roles
        # Without cloudRuntimes Plan plans no runtime cell: no runtime job role or definition.
        self.runtime_job_roles = (
            RuntimeJobRoles(
                self, "RuntimeJobRole", cells=cells, bucket=bucket, uv_cache=config.runtime_uv_cache
            ).roles
            if config.cloud_runtimes
            else {}
        )

    def _job_definitions(
        self, config: InfraConfig, cells: tuple[tuple[str, str], ...], images: BuilderImages
    ) -> None:
        """Per platform x arch, the Python build's job definition `<prefix>-<platform>-<arch>` and
        (with cloudRuntimes) the runtime jobs' `<prefix>-runtime-<platform>-<arch>`: the same image,
        container and limits but the timeout, each with its own job role (a runtime's build code
        never runs as the builder)."""
        self.job_definitions: dict[tuple[str, str], batch.EcsJobDefinition] = {}
        self.runtime_job_definitions: dict[tuple[str, str], batch.EcsJobDefinition] = {}
        for platform_id, arch in cells:
            self.job_definitions[(platform_id, arch)] = self._job_definition(
                config, images, platform_id, arch, runtime=False
            )
            if config.cloud_runtimes:
                self.runtime_job_definitions[(platform_id, arch)] = self._job_definition(
                    config, images, platform_id, arch, runtime=True
                )

    def _job_definition(
        self, config: InfraConfig, images: BuilderImages, platform_id: str, arch: str, *, runtime: bool
    ) -> batch.EcsJobDefinition:
        kind = "Runtime" if runtime else ""
        roles = self.runtime_job_roles if runtime else self.job_roles
        name = job_definition_name(self.name_prefix, platform_id, arch, runtime=runtime)
        job = batch.EcsJobDefinition(
            self,
            f"{kind}Job-{platform_id}-{arch}",
            job_definition_name=name,
            container=batch.EcsEc2ContainerDefinition(
                self,
                f"{kind}Container-{platform_id}-{arch}",
                image=images.images[(platform_id, arch)],
                cpu=config.job_vcpus,
                memory=Size.mebibytes(config.job_memory_mib),
                job_role=roles[(platform_id, arch)],
                execution_role=self.execution_role,
                user=JOB_USER,  # not root: IMDS_GUARD
                logging=ecs.LogDriver.aws_logs(
                    stream_prefix=name.removeprefix(f"{self.name_prefix}-"), log_group=self.log_group
                ),
                environment={
                    "BUILDFARM_PLATFORM": platform_id,
                    "BUILDFARM_ARCH": arch,
                    **config.job_environment(),
                },
            ),
            timeout=Duration.minutes(
                config.runtime_job_timeout_minutes if runtime else config.job_timeout_minutes
            ),
            retry_attempts=config.job_attempts,
            retry_strategies=RETRY_STRATEGIES,
            propagate_tags=True,
        )
        pass_image_reference(job)
        return job

    def job_definition_arns(self) -> list[str]:
        """For batch:SubmitJob, each of this stack's job definitions by name with any revision
        (`name:*`). Batch authorizes a submit by name on the revision it resolves to
        (`job-definition/<name>:<N>`), never on the bare name: AWS Batch User Guide, "Resource:
        Restrict to job definition prefix on job submission", "Accounting for job definition
        revisions". (The bare name matches no request: listed too, for both kinds of job
        definition, it would take the workflow role's inline policies past IAM's 10,240
        characters.)"""
        stack = Stack.of(self)
        return [
            stack.format_arn(service="batch", resource="job-definition", resource_name=f"{name}:*")
            for name in self.job_definition_names()
        ]

    def job_definition_names(self) -> list[str]:
        """The name of each job definition, the Python builds' then the runtime jobs' (known at
        synthesis)."""
        prefix = self.name_prefix
        return [
            *(job_definition_name(prefix, *cell) for cell in self.job_definitions),
            *(job_definition_name(prefix, *cell, runtime=True) for cell in self.runtime_job_definitions),
        ]
