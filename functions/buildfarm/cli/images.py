"""`buildfarm images build|import-base`: the builder images, made here as Batch gets them."""

from __future__ import annotations

import argparse
import sys

from buildfarm import images
from buildfarm.cli import CliError, arg_types
from buildfarm.platforms import UnknownPlatformError, arch_names, load_registry
from buildfarm.runners import docker_problem, host_arch


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "images",
        help="build the builder images (or their base images) on this machine's Docker engine",
        description="Builder images: the container each cell is built in. `build` builds a "
        "platform's image with the same Dockerfile and arguments as the AWS stack's image asset; "
        "`import-base` makes a Debian/Ubuntu platform's base image (e.g. debian:bookworm) from a "
        "debootstrap root, for engines that cannot pull images.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="build the builder image of each platform named")
    base = actions.add_parser("import-base", help="make the base image of each platform named")
    for sub in (build, base):
        sub.add_argument(
            "--platform", dest="platforms", action="append", required=True, metavar="P",
            help="registry platform id, e.g. debian-12 (repeat for more)",
        )  # fmt: skip
        sub.add_argument(
            "--arch",
            type=arg_types.arch,
            metavar="ARCH",
            help=f"{arch_names(' or ')} (default: this machine's)",
        )
    build.add_argument(
        "--rebuild",
        action="store_true",
        help="build even if the image exists (its tag already covers the driver, the buildfarm "
        "wheel and its pins, the base image's id and this machine's added CAs)",
    )
    build.set_defaults(func=run_images)
    base.set_defaults(func=run_images)


def run_images(args: argparse.Namespace) -> int:
    registry = load_registry()
    for platform_id in args.platforms:
        try:
            registry.get(platform_id)
        except UnknownPlatformError as error:
            raise CliError(str(error)) from None
    if problem := docker_problem():
        raise CliError(problem)
    arch = args.arch or host_arch()
    for platform_id in args.platforms:
        try:
            if args.action == "build":
                tag = images.build_image(registry, platform_id, arch, sys.stdout, rebuild=args.rebuild)
                print(f"{platform_id}/{arch}: {tag} ({images.image_id(tag)})")
            else:
                print(f"{platform_id}/{arch}: {images.import_base(registry, platform_id, arch, sys.stdout)}")
        except images.ImageError as error:
            raise CliError(str(error)) from None
    return 0
