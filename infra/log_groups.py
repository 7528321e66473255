"""The stack's CloudWatch log groups: one retention for all of them (buildfarm:logRetentionDays)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import InfraConfig


def log_group(scope: Construct, construct_id: str, config: InfraConfig) -> logs.LogGroup:
    """A log group kept config.log_retention_days days, deleted with the stack."""
    group = logs.LogGroup(scope, construct_id, removal_policy=RemovalPolicy.DESTROY)
    # The number itself (one of CloudWatch's values, checked by InfraConfig) rather than a
    # RetentionDays member: the enum's Python members carry names, not days.
    resource = group.node.default_child
    assert isinstance(resource, logs.CfnLogGroup)
    resource.retention_in_days = config.log_retention_days
    return group
