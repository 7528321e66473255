"""cdk-nag acknowledgements: every one names the construct it applies to and why."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding (e.g. `AwsSolutions-IAM5[Resource::...]`) on `construct`;
    the recorded reason starts with the construct's path, so the audit trail names the resource."""
    Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=f"{construct.node.path}: {reason}"))


def logical_id(construct: IConstruct) -> str:
    """The CloudFormation logical id of a construct's resource, as cdk-nag prints it in finding ids."""
    from aws_cdk import CfnElement, Stack

    element = construct if isinstance(construct, CfnElement) else construct.node.default_child
    stack = Stack.of(construct)
    return str(stack.resolve(stack.get_logical_id(element)))


def acknowledge_wildcards(construct: IConstruct, resources: list[str], reason: str) -> None:
    """Acknowledge AwsSolutions-IAM5 for each wildcard resource (as cdk-nag spells it) on `construct`."""
    for resource in resources:
        acknowledge(construct, f"AwsSolutions-IAM5[Resource::{resource}]", reason)
