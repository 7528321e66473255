"""The deployed workflow's names, stated once: the stack, its outputs, the state machine's states
and the errors its Fail states end with.

infra/ builds the stack with them; `buildfarm trigger` finds the state machine by the stack's
output and reads Plan's and Finalize's results from the execution history by state name; the
tests look them up here. Renaming one is a change to what a deployed farm answers (a trigger
of another version reads the history by these names).
"""

from __future__ import annotations

from typing import Final

# The default CloudFormation stack name (cdk.json's buildfarm:stackName overrides it); also the
# prefix of the Batch job definitions and job queues.
STACK_NAME: Final = "PythonBuildFarm"


def signing_key_alias(stack_name: str) -> str:
    """The KMS alias of the stack's signing key (`aws kms get-public-key --key-id <this>`)."""
    return f"alias/{stack_name}-signing"


class Outputs:
    """The stack's CloudFormation outputs."""

    STATE_MACHINE_ARN: Final = "StateMachineArn"
    BUCKET_NAME: Final = "BucketName"
    CDN_DOMAIN: Final = "CdnDomain"
    SIGNING_KEY_ARN: Final = "SigningKeyArn"
    NOTIFICATION_TOPIC_ARN: Final = "NotificationTopicArn"
    OPERATOR_POLICY_ARN: Final = "OperatorPolicyArn"


class States:
    """The state machine's states (DESIGN "Workflow"), in execution order."""

    RECOVER: Final = "Recover"
    PLAN: Final = "Plan"
    PLAN_FAILED: Final = "PlanFailed"
    ANYTHING_TO_BUILD: Final = "AnythingToBuild"
    NOTHING_TO_BUILD: Final = "NothingToBuild"
    BUILD: Final = "Build"  # the Distributed Map; one item per cell:
    BUILD_CELL: Final = "BuildCell"
    CELL_BUILT: Final = "CellBuilt"
    CELL_FAILED: Final = "CellFailed"
    PUBLISH_CELL: Final = "PublishCell"
    CELL_LEFT_TO_FINALIZE: Final = "CellLeftToFinalize"
    FINALIZE: Final = "Finalize"
    FINALIZE_FAILED: Final = "FinalizeFailed"
    ALL_PUBLISHED: Final = "AllPublished"
    CELLS_FAILED: Final = "CellsFailed"
    PUBLISHED: Final = "Published"


class Errors:
    """The error names a failed execution ends with (besides the Plan Lambda's own, e.g. InputError)."""

    CELLS_FAILED: Final = "CellsFailed"
    FINALIZE_FAILED: Final = "FinalizeFailed"
