"""One builder image per platform x arch, built from the context buildfarm.images stages
(builder_image/ and the buildfarm wheel, for runtime jobs) with the family's Dockerfile and
buildfarm.images.build_args, as `buildfarm images build` builds it. Synthesis only stages the
assets (building the wheel: uv build); `cdk deploy` builds and pushes them."""

from __future__ import annotations

from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from constructs import Construct

from buildfarm.images import build_args, staged_context
from buildfarm.platforms import DOCKER_PLATFORM, Registry

_ASSET_PLATFORM = {
    "linux/amd64": ecr_assets.Platform.LINUX_AMD64,
    "linux/arm64": ecr_assets.Platform.LINUX_ARM64,
}


class BuilderImages(Construct):
    """`images[(platform, arch)]` is the ECS container image of that cell's builder."""

    def __init__(
        self, scope: Construct, construct_id: str, *, registry: Registry, cells: tuple[tuple[str, str], ...]
    ) -> None:
        super().__init__(scope, construct_id)
        context = staged_context()  # one staging for every platform x arch
        self.images: dict[tuple[str, str], ecs.ContainerImage] = {}
        for platform_id, arch in cells:
            platform = registry.get(platform_id)
            dockerfile = registry.family_of(platform_id).dockerfile
            if not (context / dockerfile).is_file():
                raise FileNotFoundError(f"builder image for {platform_id}: {context / dockerfile} is missing")
            self.images[(platform_id, arch)] = ecs.ContainerImage.from_asset(
                str(context),
                file=dockerfile,
                build_args=build_args(platform),
                platform=_ASSET_PLATFORM[DOCKER_PLATFORM[arch]],
                exclude=["**/__pycache__", "*.pyc"],
            )
