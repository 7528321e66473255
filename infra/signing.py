"""The farm's signing key (issue 15): an AWS KMS asymmetric key, ECDSA P-256, that the publish
side signs SHA256SUMS, provenance.json and versions.json with (buildfarm.attest.signing's
KmsSigner: Sign with MessageType DIGEST, then GetPublicKey for keys/<hex>.pub).

The private key never leaves KMS. Only the publishing functions may sign; the builder's role
is refused by the key policy itself, whatever IAM grants it later gets, so nothing a build runs
can sign what it built.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from buildfarm.attest.signing import KMS_KEY_SPEC, KMS_SIGNING_ALGORITHM
from buildfarm.config import FarmConfig

KMS_KEY_VARIABLE = FarmConfig.environment_variables()["kms_key_id"]
"""The publishing functions' environment variable naming the key (BUILDFARM_KMS_KEY_ID)."""
# KmsSigner sends the SHA-256 digest, never the file (no 4 KiB message limit, the file stays home).
SIGN_CONDITIONS = {
    "StringEquals": {"kms:SigningAlgorithm": KMS_SIGNING_ALGORITHM, "kms:MessageType": "DIGEST"}
}


class SigningKey(Construct):
    """The KMS key, its alias, and the grants around it."""

    def __init__(self, scope: Construct, construct_id: str, *, alias_name: str, generation: int = 1) -> None:
        super().__init__(scope, construct_id)
        # RETAIN: a deleted key would leave every published signature unverifiable against a
        # key nobody can read again; old public keys also stay under keys/ in the store.
        # No automatic rotation: KMS rotates only symmetric keys. Rotating = the next
        # generation (signingKeyGeneration, docs/signing.md "Rotating the key"): a new key
        # here, the old one retained by CloudFormation and its public key kept in
        # keys/keys.json, so its signatures still verify.
        self.key = kms.Key(
            self,
            "Key" if generation == 1 else f"Key{generation}",
            description="Python Build Farm: signs SHA256SUMS, provenance.json and versions.json "
            "(ECDSA P-256 over SHA-256; public key under keys/ in the store)",
            key_spec=kms.KeySpec(KMS_KEY_SPEC),  # ECC_NIST_P256, as KmsSigner requires
            key_usage=kms.KeyUsage.SIGN_VERIFY,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # A sibling of the key, not its child: its logical id stays the same across generations,
        # so a rotation re-points it (an update) rather than creating a second alias of the
        # same name before deleting the first (which CloudFormation would refuse).
        self.alias = kms.Alias(self, "Alias", alias_name=alias_name, target_key=self.key)

    def grant_signing(self, role: iam.IRole) -> None:
        """Sign (the digest, with ECDSA_SHA_256 only) and read the public key; nothing else."""
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="SignWithFarmKey",
                actions=["kms:Sign"],
                resources=[self.key.key_arn],
                conditions=SIGN_CONDITIONS,
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadFarmPublicKey", actions=["kms:GetPublicKey"], resources=[self.key.key_arn]
            )
        )

    def refuse(self, roles: Sequence[iam.IRole]) -> None:
        """The key policy denies these roles every use of the key (the Batch jobs' roles: Python
        builders and runtime jobs)."""
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="BatchJobsCannotUseSigningKey",
                effect=iam.Effect.DENY,
                principals=[iam.ArnPrincipal(role.role_arn) for role in roles],
                actions=["kms:*"],
                resources=["*"],  # in a key policy, "*" is this key
            )
        )
