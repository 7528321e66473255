"""The builder's job roles: one per platform x arch, the role of that cell's job definition.

A job's version and build number arrive at run time (in its spec or command), but its platform
and arch are its job definition's: so each role may write only its own platform and arch's keys
(buildfarm.layout spells them), and a compromised build cannot plant a build, a log or a uv
cache for another platform or arch. Its uv cache (cache/uv/<platform>-<arch>.tar.gz, read and
replaced) is granted only where runtimeUvCache shares it (buildfarm.runtimes.uv_cache: the jobs
of a platform and arch could then change what each other install); by default there is no
cache/uv/ grant at all. The bucket policy adds what IAM alone cannot enforce
(storage_cdn: create-only builds/ and runtimes/, nothing deleted there, no publisher files, no
key outside the builder's prefixes, and no key deeper than a build's files: IAM's `*` spans '/',
so builds/*/<platform>/<arch>/* alone also matches a key nested below another cell's build)."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from buildfarm import layout
from infra.nag import acknowledge_wildcards, logical_id

ANY = "*"  # one key segment in an IAM resource pattern (a version, a runtime's name, a build)


@dataclass(frozen=True)
class JobKeys:
    """A platform x arch's keys in the store, as IAM resource patterns (no bucket)."""

    platform: str
    arch: str

    @property
    def builds(self) -> str:
        """builds/*/<platform>/<arch>/*: its builds' artifacts and manifests."""
        return f"{layout.cell_build_dirs(ANY, self.platform, self.arch)[0]}/{ANY}"

    @property
    def logs(self) -> str:
        """logs/*/<platform>/<arch>/*: its failed builds' logs and failure records."""
        return f"{layout.cell_build_dirs(ANY, self.platform, self.arch)[1]}/{ANY}"

    @property
    def runtimes(self) -> str:
        """runtimes/*/*/<platform>/<arch>/*: its runtime builds."""
        return f"{layout.runtime_cell_dir(ANY, ANY, self.platform, self.arch)}/{ANY}"

    @property
    def uv_cache(self) -> str:
        """cache/uv/<platform>-<arch>.tar.gz: its runtime jobs' uv download cache."""
        return layout.uv_cache_key(self.platform, self.arch)

    @property
    def writable(self) -> tuple[str, ...]:
        return (self.builds, self.logs, self.runtimes)

    @property
    def readable(self) -> tuple[str, ...]:
        """A builder heads its own build's keys before writing; a runtime job chooses its Python
        from versions.json, reads that build's tarball and heads its own runtime build."""
        return (self.builds, self.runtimes, layout.VERSIONS_KEY)


class JobRoles(Construct):
    """`roles[(platform, arch)]`: the job role of that platform x arch's job definition."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cells: tuple[tuple[str, str], ...],
        bucket: s3.IBucket,
        uv_cache: bool = False,
    ) -> None:
        """uv_cache: grant each role its shared uv cache (InfraConfig.runtime_uv_cache)."""
        super().__init__(scope, construct_id)
        self.roles: dict[tuple[str, str], iam.Role] = {}
        replaces = ", and replaces its uv cache" if uv_cache else ""
        for platform, arch in cells:
            role = iam.Role(
                self,
                f"{platform}-{arch}",
                assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
                description=f"Builder of {platform}/{arch}: writes its builds (create-only), logs and "
                f"runtime builds{replaces}; never catalogs or claims",
            )
            self._grant(role, JobKeys(platform, arch), bucket, uv_cache=uv_cache)
            self.roles[(platform, arch)] = role

    @staticmethod
    def _grant(role: iam.Role, keys: JobKeys, bucket: s3.IBucket, *, uv_cache: bool) -> None:
        """The role's access to the store, each wildcard acknowledged with its reason (UvCache
        names one key: nothing to acknowledge)."""
        # Single PUTs only (no multipart), as the bucket policy requires under builds/.
        statements = {
            "WriteOwnCells": (["s3:PutObject"], keys.writable),
            "ReadOwnCells": (["s3:GetObject"], keys.readable),
        }
        if uv_cache:
            statements["UvCache"] = (["s3:GetObject", "s3:PutObject"], (keys.uv_cache,))
        for sid, (actions, patterns) in statements.items():
            resources = [bucket.arn_for_objects(pattern) for pattern in patterns]
            role.add_to_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources))
        # The builder refuses to overwrite a build before it starts: it lists builds/<cell>/ and
        # heads its manifest.json. No s3:prefix condition on ListBucket: S3 consults ListBucket (a
        # HEAD carries no prefix) to answer a missing key with 404 instead of 403.
        role.add_to_policy(
            iam.PolicyStatement(sid="ListStore", actions=["s3:ListBucket"], resources=[bucket.bucket_arn])
        )
        acknowledge_wildcards(
            role,
            [f"<{logical_id(bucket)}.Arn>/{pattern}" for pattern in keys.writable],
            f"the builder of {keys.platform}/{keys.arch} puts (and heads, not logs/) keys below "
            "builds/, runtimes/ and logs/ whose platform and arch segments are its own; the version, "
            "build number and runtime name come in the job's spec or command at run time, so IAM "
            "cannot name them. IAM's * also spans '/', so these patterns alone would match a key "
            "nested below another cell's build: the bucket policy NoKeysBelowABuild refuses every key "
            "deeper than <build>/<file>, which leaves only its own platform and arch's cells. It "
            "cannot write catalogs, claims, plans or releases.json (BuildersWriteOnlyTheirPrefixes); "
            "BuildsAreCreateOnly refuses any builds/ or runtimes/ write that could replace an object, "
            "PublishedBuildsStay any delete there, and OnlyThePublishSideSigns any SHA256SUMS, SBOM, "
            "provenance or .sig.",
        )
