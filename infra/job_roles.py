"""The Batch jobs' roles, one per platform x arch and per kind of job: the Python builder's
(JobRoles) and the runtime jobs' (RuntimeJobRoles), each the role of its own job definitions.

A job's version, build number and runtime name arrive at run time (in its spec or command), but
its platform and arch are its job definition's: so each role may write only its own platform
and arch's keys (buildfarm.layout spells them), and a compromised job cannot plant a build, a log
or a uv cache for another platform or arch. The two kinds never share a role: a runtime's locked
build code (third-party build backends, run as root in its job) could otherwise put a future
build number of its platform's Python under builds/, which that build would then find taken;
and a Python build has no business under runtimes/.

- The builder writes its builds (builds/*/<platform>/<arch>/*, create-only) or, failed, its log
  and failure record (logs/...), and heads its own build's manifest.json before uploading.
- A runtime job writes its runtime builds (runtimes/*/*/<platform>/<arch>/*; a failed one
  writes nothing to the store: its output is in the job's log, its failure is PublishRuntime's
  outcome); it reads versions.json, the tarball of the Python build it runs on and builds with
  (builds/..., read only) and its own earlier attempt. Its uv cache
  (cache/uv/<platform>-<arch>.tar.gz, read and replaced) is granted only where runtimeUvCache
  shares it (buildfarm.runtimes.uv_cache: the runtime jobs of a platform and arch could then
  change what each other install); by default there is no cache/uv/ grant at all.

The bucket policy adds what IAM alone cannot enforce (storage_cdn: create-only builds/ and
runtimes/, nothing deleted there, each kind confined to its own prefixes, no publisher files,
and no key deeper than a build's files: IAM's `*` spans '/', so builds/*/<platform>/<arch>/*
alone also matches a key nested below another cell's build)."""

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
    def python_tarballs(self) -> str:
        """builds/*/<platform>/<arch>/*/python-*-<platform>-<arch>.tar.gz: its Python builds'
        tarballs (driver/packages.py tarball_name), what a runtime job builds on."""
        return f"{self.builds}/python-{ANY}-{self.platform}-{self.arch}.tar.gz"

    @property
    def runtimes(self) -> str:
        """runtimes/*/*/<platform>/<arch>/*: its runtime builds."""
        return f"{layout.runtime_cell_dir(ANY, ANY, self.platform, self.arch)}/{ANY}"

    @property
    def uv_cache(self) -> str:
        """cache/uv/<platform>-<arch>.tar.gz: its runtime jobs' uv download cache."""
        return layout.uv_cache_key(self.platform, self.arch)


# Both kinds: single PUTs only (no multipart), as the bucket policy requires under builds/ and
# runtimes/. ListBucket without an s3:prefix condition: S3 consults it (a HEAD carries no prefix)
# to answer a missing key with 404 instead of 403, and the jobs list their own build's directory
# (the builder's preflight, a runtime job's earlier attempt).
_ONLY_THEIRS = (
    "IAM's * also spans '/', so these patterns alone would match a key nested below another "
    "cell's build or a cell directory moved down a segment: the bucket policy NoKeysBelowABuild "
    "refuses every key deeper than <build>/<file> and NoCellDirectoryOutOfPlace every key whose "
    "build segment is an arch, which leaves only its own platform and arch's cells. It cannot "
    "write catalogs, claims, plans or releases.json ({confined}); BuildsAreCreateOnly refuses any "
    "builds/, runtimes/ or logs/ write that could replace an object, PublishedBuildsStay any "
    "delete under builds/ or runtimes/, and "
    "OnlyThePublishSideSigns any SHA256SUMS, SBOM, provenance or .sig."
)


Statements = dict[str, tuple[list[str], tuple[str, ...]]]  # sid -> (actions, key patterns)


def _grant(role: iam.Role, bucket: s3.IBucket, statements: Statements) -> None:
    """The role's access to the store: each statement's actions on its key patterns, and
    ListBucket on the bucket."""
    for sid, (actions, patterns) in statements.items():
        resources = [bucket.arn_for_objects(pattern) for pattern in patterns]
        role.add_to_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources))
    role.add_to_policy(
        iam.PolicyStatement(sid="ListStore", actions=["s3:ListBucket"], resources=[bucket.bucket_arn])
    )


def _job_role(scope: Construct, platform: str, arch: str, description: str) -> iam.Role:
    return iam.Role(
        scope,
        f"{platform}-{arch}",
        assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
        description=description,
    )


class JobRoles(Construct):
    """`roles[(platform, arch)]`: the job role of that platform x arch's Python build job
    definition. It writes builds/ and logs/ of its platform and arch, nothing under runtimes/."""

    def __init__(
        self, scope: Construct, construct_id: str, *, cells: tuple[tuple[str, str], ...], bucket: s3.IBucket
    ) -> None:
        super().__init__(scope, construct_id)
        self.roles: dict[tuple[str, str], iam.Role] = {}
        for platform, arch in cells:
            keys = JobKeys(platform, arch)
            role = _job_role(
                self, platform, arch,
                f"Builder of {platform}/{arch}: writes its Python builds (create-only) and their logs; "
                "never runtimes, catalogs or claims",
            )  # fmt: skip
            # The builder heads its own build's manifest.json before uploading (driver/upload.py).
            _grant(role, bucket, {
                "WriteOwnCells": (["s3:PutObject"], (keys.builds, keys.logs)),
                "ReadOwnCells": (["s3:GetObject"], (keys.builds,)),
            })  # fmt: skip
            acknowledge_wildcards(
                role,
                [f"<{logical_id(bucket)}.Arn>/{pattern}" for pattern in (keys.builds, keys.logs)],
                f"the builder of {platform}/{arch} puts (and heads, not logs/) keys below builds/ and "
                "logs/ whose platform and arch segments are its own; the version and build number "
                "come in the job's spec at run time, so IAM cannot name them. "
                + _ONLY_THEIRS.format(confined="BuildersWriteOnlyTheirPrefixes, which also refuses "
                                      "it runtimes/"),
            )  # fmt: skip
            self.roles[(platform, arch)] = role


class RuntimeJobRoles(Construct):
    """`roles[(platform, arch)]`: the job role of that platform x arch's runtime job definition.
    It writes runtimes/ of its platform and arch, reads (never writes) builds/."""

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
            keys = JobKeys(platform, arch)
            role = _job_role(
                self, platform, arch,
                f"Runtime jobs of {platform}/{arch}: write its runtime builds (create-only){replaces}; "
                "read its Python builds; never builds, catalogs or claims",
            )  # fmt: skip
            # It chooses its Python from versions.json, reads that build's tarball (the bootstrap
            # in driver/runtime_job.py, then runtimes/python_source.py) and reads its own earlier
            # attempt's manifest.json (runtimes/runtime_build.py). UvCache names one key.
            statements = {
                "WriteOwnRuntimes": (["s3:PutObject"], (keys.runtimes,)),
                "ReadOwnRuntimesAndPythons": (
                    ["s3:GetObject"], (keys.runtimes, keys.python_tarballs, layout.VERSIONS_KEY)
                ),
            }  # fmt: skip
            if uv_cache:
                statements["UvCache"] = (["s3:GetObject", "s3:PutObject"], (keys.uv_cache,))
            _grant(role, bucket, statements)
            self._acknowledge(role, keys, bucket)
            self.roles[(platform, arch)] = role

    @staticmethod
    def _acknowledge(role: iam.Role, keys: JobKeys, bucket: s3.IBucket) -> None:
        bucket_arn = f"<{logical_id(bucket)}.Arn>"
        acknowledge_wildcards(
            role,
            [f"{bucket_arn}/{keys.runtimes}"],
            f"the runtime jobs of {keys.platform}/{keys.arch} put (and read) keys below runtimes/ "
            "whose platform and arch segments are their own; the runtime's name, version and build "
            "number come in the job's command at run time, so IAM cannot name them. "
            + _ONLY_THEIRS.format(confined="RuntimeJobsWriteOnlyTheirPrefixes, which also refuses "
                                  "them builds/ and logs/"),
        )  # fmt: skip
        acknowledge_wildcards(
            role,
            [f"{bucket_arn}/{keys.python_tarballs}"],
            f"s3:GetObject only: a runtime job of {keys.platform}/{keys.arch} reads the tarball of "
            "the published Python build of its own platform and arch that versions.json names "
            "(version and build number known at run time), no other file of it; it cannot write "
            "under builds/ (no PutObject grant, and RuntimeJobsWriteOnlyTheirPrefixes in the bucket "
            "policy).",
        )
