"""The builder images, Batch job definitions, compute environments and queues of the
synthesized stack (template assertions on the session's synthesis)."""

from __future__ import annotations

import json
import re

import pytest
from template_helpers import by_type, cdk_json_config, only

from buildfarm.platforms import DOCKER_PLATFORM, load_registry
from buildfarm.workflow_names import STACK_NAME

pytestmark = pytest.mark.slow


def test_one_builder_image_per_platform_and_arch_from_the_registry(synthesis, lifecycle_date) -> None:
    registry = load_registry()
    cells = cdk_json_config(lifecycle_date).cells(registry)
    images = json.loads((synthesis.outdir / f"{STACK_NAME}.assets.json").read_text())["dockerImages"]
    staged = {
        (s["dockerBuildArgs"]["BASE_IMAGE"], s["dockerBuildArgs"]["PLATFORM"], s["dockerFile"], s["platform"])
        for s in (image["source"] for image in images.values())
    }
    # The Dockerfile refuses to build without PLATFORM: the asset passes it, as `buildfarm images` does.
    expected = {
        (registry.get(p).base_image, p, registry.family_of(p).dockerfile, DOCKER_PLATFORM[a])
        for p, a in cells
    }
    assert staged == expected
    assert len(images) == len(cells)


def test_builder_images_carry_the_buildfarm_wheel_and_the_bundle_the_runtime_definitions(synthesis) -> None:
    """cloudRuntimes is on (cdk.json): runtime jobs run `buildfarm runtime build` in the builder
    images, so every image context holds the buildfarm wheel, copied last; Plan reads the
    runtime definitions from the Lambda bundle."""
    contexts = [path.parent for path in synthesis.outdir.glob("asset.*/Dockerfile.deb")]
    assert contexts
    for context in contexts:
        assert len(list((context / "wheels").glob("python_build_farm-*.whl"))) == 1, context
        for dockerfile in ("Dockerfile.deb", "Dockerfile.rpm"):
            copies = [
                line for line in (context / dockerfile).read_text().splitlines() if line.startswith("COPY ")
            ]
            assert copies[-1] == "COPY wheels/*.whl /opt/buildfarm/wheels/", dockerfile
    assert list(synthesis.outdir.glob("asset.*/buildfarm/runtime_definitions/fastapi-demo.toml"))


def test_job_definitions_are_enabled_platforms_times_arches_with_config_resources(
    template, lifecycle_date
) -> None:
    config = cdk_json_config(lifecycle_date)
    cells = config.cells(load_registry())
    definitions = by_type(template, "AWS::Batch::JobDefinition")
    names = {r["Properties"]["JobDefinitionName"] for r in definitions.values()}
    # The Python build's and the runtime jobs' (each with a job role of its own: infra.job_roles).
    assert names == {f"{STACK_NAME}-{kind}{p}-{a}" for p, a in cells for kind in ("", "runtime-")}
    assert len(cells) == len(config.platforms(load_registry())) * 2
    for resource in definitions.values():
        props = resource["Properties"]
        requirements = {r["Type"]: r["Value"] for r in props["ContainerProperties"]["ResourceRequirements"]}
        assert requirements == {"VCPU": str(config.job_vcpus), "MEMORY": str(config.job_memory_mib)}
        runtime = props["JobDefinitionName"].startswith(f"{STACK_NAME}-runtime-")
        minutes = config.runtime_job_timeout_minutes if runtime else config.job_timeout_minutes
        assert props["Timeout"]["AttemptDurationSeconds"] == minutes * 60
        assert props["PlatformCapabilities"] == ["EC2"]


def test_retry_strategy_retries_infrastructure_loss_and_exits_on_anything_else(
    template, lifecycle_date
) -> None:
    """Batch applies the first matching rule (at most 5): Spot reclaim / instance loss, and a
    container that never started on its host (image pull, Docker timeout), are retried; anything
    else, a compile or test failure first, exits."""
    definitions = by_type(template, "AWS::Batch::JobDefinition")
    assert definitions
    for resource in definitions.values():
        strategy = resource["Properties"]["RetryStrategy"]
        assert strategy["Attempts"] == cdk_json_config(lifecycle_date).job_attempts
        rules = strategy["EvaluateOnExit"]
        assert rules == [
            {"Action": "RETRY", "OnStatusReason": "Host EC2*"},
            {"Action": "RETRY", "OnStatusReason": "Task failed to start*"},
            {"Action": "RETRY", "OnReason": "CannotPullContainerError:*"},
            {"Action": "RETRY", "OnReason": "DockerTimeoutError*"},
            {"Action": "EXIT", "OnReason": "*"},
        ]
        # Batch's pattern syntax: letters, digits, '.', ':', white space, a trailing '*'; 512 at most.
        for rule in rules:
            for field in ("OnStatusReason", "OnReason"):
                if field in rule:
                    assert re.fullmatch(r"[A-Za-z0-9.: \t]*\*?", rule[field]), rule
                    assert len(rule[field]) <= 512


def test_a_job_fits_a_compute_instance_of_its_vcpus(template) -> None:
    """An 8-vCPU compute-optimized instance (c7i.2xlarge, ...) has 16 GiB, of which ECS registers
    less (kernel, agent; Batch keeps 5 % spare): a job asking for all 16 GiB fits none of them."""
    for resource in by_type(template, "AWS::Batch::JobDefinition").values():
        container = resource["Properties"]["ContainerProperties"]
        requirements = {r["Type"]: int(r["Value"]) for r in container["ResourceRequirements"]}
        instance_mib = requirements["VCPU"] * 2048  # the c-classes' 2 GiB per vCPU
        assert requirements["MEMORY"] <= instance_mib * 0.95, requirements


def test_a_job_blocked_in_its_queue_is_cancelled_after_the_configured_wait(template, lifecycle_date) -> None:
    """No Spot capacity, or a job larger than any instance or the compute environment: Batch
    cancels it after runnableTimeoutMinutes, the cell fails, and the execution goes on to Finalize
    instead of waiting out its timeout."""
    wait = cdk_json_config(lifecycle_date).runnable_timeout_minutes * 60
    queues = by_type(template, "AWS::Batch::JobQueue")
    assert len(queues) == 2
    for queue in queues.values():
        actions = queue["Properties"]["JobStateTimeLimitActions"]
        assert sorted(actions, key=lambda a: a["Reason"]) == [
            {"Action": "CANCEL", "MaxTimeSeconds": wait, "Reason": reason, "State": "RUNNABLE"}
            for reason in (
                "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY",
                "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE",
                "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
            )
        ]


def test_spot_compute_per_arch_imdsv2_encrypted_gp3_no_ssh(template) -> None:
    envs = by_type(template, "AWS::Batch::ComputeEnvironment")
    assert len(envs) == 2
    kinds = {}
    for resource in envs.values():
        compute = resource["Properties"]["ComputeResources"]
        assert compute["Type"] == "SPOT"
        assert compute["AllocationStrategy"] == "SPOT_PRICE_CAPACITY_OPTIMIZED"
        assert compute["MinvCpus"] == 0
        assert "Ec2KeyPair" not in compute
        graviton = all(t[-1] == "g" or t[-2:] == "gn" for t in compute["InstanceTypes"])
        x86 = not any("g" in t[2:] for t in compute["InstanceTypes"])
        kinds["aarch64" if graviton else "x86_64" if x86 else "mixed"] = compute
    assert set(kinds) == {"x86_64", "aarch64"}
    _, template_resource = only(template, "AWS::EC2::LaunchTemplate")
    data = template_resource["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert "KeyName" not in data
    (root,) = data["BlockDeviceMappings"]
    assert root["Ebs"]["Encrypted"] is True
    assert root["Ebs"]["VolumeType"] == "gp3"
    assert root["Ebs"]["VolumeSize"] >= 100
    for group in by_type(template, "AWS::EC2::SecurityGroup").values():
        assert not group["Properties"].get("SecurityGroupIngress")


def test_job_queues_are_named_per_arch_and_use_that_arch_compute(template) -> None:
    queues = by_type(template, "AWS::Batch::JobQueue")
    envs = by_type(template, "AWS::Batch::ComputeEnvironment")
    names = {}
    for resource in queues.values():
        props = resource["Properties"]
        (order,) = props["ComputeEnvironmentOrder"]
        env = envs[order["ComputeEnvironment"]["Fn::GetAtt"][0]]
        names[props["JobQueueName"]] = env["Properties"]["ComputeResources"]["InstanceTypes"]
    assert set(names) == {f"{STACK_NAME}-x86_64", f"{STACK_NAME}-aarch64"}
    assert all(t.endswith("g") for t in names[f"{STACK_NAME}-aarch64"])
    assert not any(t.endswith("g") for t in names[f"{STACK_NAME}-x86_64"])


def test_every_registry_arch_has_instance_classes() -> None:
    """A compute environment per enabled arch picks from these: an arch the registry adds needs
    its instance classes here (else synthesis fails with a KeyError)."""
    from buildfarm.platforms import ARCHES
    from infra.batch import INSTANCE_CLASSES

    assert set(INSTANCE_CLASSES) == set(ARCHES)
    assert all(INSTANCE_CLASSES[arch] for arch in ARCHES)
