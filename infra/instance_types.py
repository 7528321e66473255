"""The build instances: the EC2 instance families each arch's Spot compute environment picks
from (infra.batch), with the largest size of each, which bounds what one job may ask for
(jobVcpus, jobMemoryMiB: infra.config checks them against it at synthesis).

Plain data, no CDK: the configuration model reads it too.
"""

from __future__ import annotations

from dataclasses import dataclass

# ECS registers an instance with the memory its kernel reports (less than the installed memory:
# an m4.large's 8192 MiB registers as 7985), and the Batch AMI keeps 32 MiB of that for the ECS
# agent; AWS Batch recommends keeping 5% for the agent and the system (AWS Batch User Guide,
# "Compute resource memory management", "Reserve system memory"). A job may ask for at most
# this share of an instance's installed memory.
JOB_MEMORY_SHARE = 0.95


@dataclass(frozen=True)
class Largest:
    """A family's largest size (EC2 "Instance type specifications"): every smaller size of the
    family has fewer vCPUs and less memory, so a job no such instance can place fits none."""

    instance_type: str
    vcpus: int
    memory_gib: int

    @property
    def job_memory_mib(self) -> int:
        """The most memory a job placed on it may ask for."""
        return int(self.memory_gib * 1024 * JOB_MEMORY_SHARE)

    def places(self, vcpus: int, memory_mib: int) -> bool:
        return vcpus <= self.vcpus and memory_mib <= self.job_memory_mib


# Current generations with the best price per vCPU for compiling; Spot picks among them.
INSTANCE_FAMILIES: dict[str, dict[str, Largest]] = {
    "x86_64": {
        "c7i": Largest("c7i.48xlarge", 192, 384),
        "c6i": Largest("c6i.32xlarge", 128, 256),
        "c7a": Largest("c7a.48xlarge", 192, 384),
        "c6a": Largest("c6a.48xlarge", 192, 384),
        "m7i": Largest("m7i.48xlarge", 192, 768),
        "m6i": Largest("m6i.32xlarge", 128, 512),
    },
    "aarch64": {
        "c8g": Largest("c8g.48xlarge", 192, 384),
        "c7g": Largest("c7g.16xlarge", 64, 128),
        "c6g": Largest("c6g.16xlarge", 64, 128),
        "m7g": Largest("m7g.16xlarge", 64, 256),
        "m6g": Largest("m6g.16xlarge", 64, 256),
    },
}


def unplaceable(arch: str, vcpus: int, memory_mib: int) -> str | None:
    """Why no instance of arch's families can place a job of vcpus and memory_mib, or None."""
    sizes = INSTANCE_FAMILIES[arch].values()
    if any(size.places(vcpus, memory_mib) for size in sizes):
        return None
    most_vcpus = max(sizes, key=lambda size: (size.vcpus, size.job_memory_mib))
    if vcpus > most_vcpus.vcpus:
        return f"no {arch} build instance has {vcpus} vCPUs (the most: {_shown(most_vcpus)})"
    roomiest = max((size for size in sizes if size.vcpus >= vcpus), key=lambda size: size.job_memory_mib)
    return (
        f"no {arch} build instance with {vcpus} vCPUs can give a job {memory_mib} MiB (the most: "
        f"{_shown(roomiest)})"
    )


def _shown(size: Largest) -> str:
    return (
        f"{size.instance_type}, {size.vcpus} vCPUs, {size.memory_gib} GiB, of which a job may ask for "
        f"{size.job_memory_mib} MiB"
    )
