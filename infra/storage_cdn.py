"""The store (S3) and the CDN that serves it (CloudFront with Origin Access Control)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from buildfarm import layout
from buildfarm.layout import under
from buildfarm.platforms import ARCHES
from infra.config import InfraConfig
from infra.nag import acknowledge

# Keys served to the public through the CDN (buildfarm.layout); everything else is internal.
CATALOG_PATTERNS = (*layout.CATALOG_KEYS, under(layout.DOWNLOAD_METADATA_PREFIX))
PUBLISHED_BUILDS = under(layout.BUILDS_PREFIX)
PUBLISHED_RUNTIMES = under(layout.RUNTIMES_PREFIX)  # create-only like builds/ (issue 16)
# A failed build's log and failure record: written once per build number (the driver's
# create-only write_logs), which the publish side then reads as the build's outcome.
FAILURE_RECORDS = under(layout.LOGS_PREFIX)
# Working state of the workflow: never served (plans, claims and logs also expire; an open run
# marker stays until Recover or Finalize closes it).
INTERNAL_PREFIXES = layout.INTERNAL_PREFIXES
# Written by the publish side only (issue 15), under builds/ and runtimes/ alike, and the
# catalog with its signature and the public keys.
PUBLISHER_KEYS = (
    *(f"{under(prefix)}/{name}" for prefix in (layout.BUILDS_PREFIX, layout.RUNTIMES_PREFIX)
      for name in layout.PUBLISHER_BUILD_FILES),
    f"{layout.VERSIONS_KEY}*",
    under(layout.KEYS_PREFIX),
)  # fmt: skip


# Never deleted, by anyone: published builds and runtime builds, and the public keys that
# verify their signatures.
PERMANENT_KEYS = (PUBLISHED_BUILDS, PUBLISHED_RUNTIMES, under(layout.KEYS_PREFIX))


def builder_writable_keys() -> tuple[str, ...]:
    """The only keys a Python builder's role may write (infra.job_roles narrows each role to its
    own platform and arch): its builds, and its logs and failure records."""
    return tuple(under(prefix) for prefix in layout.BUILDER_PREFIXES)


def runtime_job_writable_keys(uv_cache: bool) -> tuple[str, ...]:
    """The only keys a runtime job's role may write (narrowed likewise): its runtime builds, and
    its uv cache where runtimeUvCache shares it (else the bucket refuses cache/uv/ to them too)."""
    prefixes = (layout.RUNTIMES_PREFIX, *([layout.UV_CACHE_PREFIX] if uv_cache else []))
    return tuple(under(prefix) for prefix in prefixes)


# Keys deeper than the layout's deepest, builds/<version>/<platform>/<arch>/<build>/<file> (logs/
# alike) and runtimes/<name>/<version>/<platform>/<arch>/<build>/<file>: each pattern matches a
# key with at least one segment more. IAM's `*` spans '/', so the job roles' per-platform grants
# (infra.job_roles) alone would also match a key nested below another cell's build.
_ANY = "*"
TOO_DEEP_KEYS = tuple(
    f"{directory}/{_ANY}/{_ANY}"
    for directory in (
        layout.artifact_dir(_ANY, _ANY, _ANY, _ANY),
        layout.log_dir(_ANY, _ANY, _ANY, _ANY),
        layout.runtime_artifact_dir(_ANY, _ANY, _ANY, _ANY, _ANY),
    )
)
# A plan's items (the Distributed Maps' ItemReader reads them) and its record (Recover reads it):
# Plan's alone to write.
# Keys at the layout's depth whose build segment is an arch: a cell's directory moved one
# segment down (builds/3.13.5/rhel-9/debian-12/x86_64/<file>), which the debian-12/x86_64 job
# roles' patterns would match, since IAM's `*` spans '/' (builds/*/debian-12/x86_64/*). No
# layout key has an arch there (it holds the build number); with TOO_DEEP_KEYS this leaves each
# job role only its own platform and arch's cells.
OUT_OF_PLACE_KEYS = tuple(
    f"{directory}/{arch}/{_ANY}"
    for arch in ARCHES
    for directory in (
        layout.cell_build_dirs(_ANY, _ANY, _ANY)[0],
        layout.cell_build_dirs(_ANY, _ANY, _ANY)[1],
        layout.runtime_cell_dir(_ANY, _ANY, _ANY, _ANY),
    )
)
PLAN_ITEMS_KEYS = (layout.items_key(_ANY), layout.runtime_items_key(_ANY))
PLAN_RECORD_KEYS = (layout.plan_record_key(_ANY), *PLAN_ITEMS_KEYS)


class StorageCdn(Construct):
    """Artifacts bucket (the store), its access-log bucket, and the CloudFront distribution."""

    def __init__(self, scope: Construct, construct_id: str, *, config: InfraConfig) -> None:
        super().__init__(scope, construct_id)
        self._runtime_job_writable = runtime_job_writable_keys(config.runtime_uv_cache)

        self._log_bucket()
        self._store(config)
        self._cdn(config)
        self._store_policies()
        self._layout_depth_policy()

    def _log_bucket(self) -> None:
        # Access logs of the store and of CloudFront. CloudFront standard logging writes with ACLs,
        # hence object ownership "bucket owner preferred" (not "enforced") on this bucket only.
        self.log_bucket = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(365))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.log_bucket,
            "AwsSolutions-S1",
            "this is the access-log bucket itself; logging it into itself would loop.",
        )

    def _store(self, config: InfraConfig) -> None:
        """The store: versioned, private, logged; the workflow's scratch prefixes expire."""
        self.bucket = s3.Bucket(
            self,
            "Store",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix="s3/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-plans",
                    prefix=layout.PLANS_PREFIX,
                    expiration=Duration.days(config.scratch_expiry_days),
                ),
                # Claims expire logically after BUILDFARM_CLAIM_TTL_SECONDS; this only cleans up.
                s3.LifecycleRule(
                    id="expire-claims",
                    prefix=layout.CLAIMS_PREFIX,
                    expiration=Duration.days(config.scratch_expiry_days),
                ),
                s3.LifecycleRule(
                    id="expire-logs",
                    prefix=layout.LOGS_PREFIX,
                    expiration=Duration.days(config.log_expiry_days),
                ),
                # A runtime job replaces its uv cache archive (cache/uv/, where runtimeUvCache
                # shares it) after each build: a replaced archive is of no use (the bucket is
                # versioned, so expire those).
                s3.LifecycleRule(
                    id="expire-replaced-caches",
                    prefix=layout.CACHE_PREFIX,
                    noncurrent_version_expiration=Duration.days(1),
                ),
                # versions.json and the catalogs are rewritten on every publish: keep old copies a while.
                s3.LifecycleRule(
                    id="expire-noncurrent-versions",
                    noncurrent_version_expiration=Duration.days(90),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _cdn(self, config: InfraConfig) -> None:
        """CloudFront over the store (OAC): catalogs cached briefly, published builds long; at
        the team's own domain (with its ACM certificate) when one is configured."""
        catalogs_cache = cloudfront.CachePolicy(
            self,
            "CatalogsCache",
            comment="Catalogs change on every publish: cache briefly",
            default_ttl=Duration.minutes(5),
            min_ttl=Duration.seconds(0),
            max_ttl=Duration.hours(1),
            enable_accept_encoding_gzip=True,
            enable_accept_encoding_brotli=True,
        )
        builds_cache = cloudfront.CachePolicy(
            self,
            "BuildsCache",
            comment="Published builds are immutable (a rebuild gets a new build number)",
            default_ttl=Duration.days(365),
            min_ttl=Duration.days(1),
            max_ttl=Duration.days(365),
            enable_accept_encoding_gzip=True,
            enable_accept_encoding_brotli=True,
        )
        origin = origins.S3BucketOrigin.with_origin_access_control(self.bucket)

        def behavior(cache_policy: cloudfront.ICachePolicy) -> cloudfront.BehaviorOptions:
            return cloudfront.BehaviorOptions(
                origin=origin,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                cache_policy=cache_policy,
                response_headers_policy=cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
                compress=True,
            )

        self.distribution = cloudfront.Distribution(
            self,
            "Cdn",
            comment="Python Build Farm downloads",
            default_root_object=layout.INDEX_KEY,
            default_behavior=behavior(catalogs_cache),
            additional_behaviors={
                PUBLISHED_BUILDS: behavior(builds_cache),
                **{pattern: behavior(catalogs_cache) for pattern in CATALOG_PATTERNS},
            },
            enable_logging=True,
            log_bucket=self.log_bucket,
            log_file_prefix="cloudfront/",
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            **self._custom_domain(config),
        )
        self.domain_name = config.domain_name or self.distribution.distribution_domain_name
        self._acknowledge_cdn(custom_domain=bool(config.domain_name))

    def _custom_domain(self, config: InfraConfig) -> dict[str, Any]:
        """The distribution's alias and certificate (SNI, TLS 1.2 and up), if the team has a name."""
        if not (config.domain_name and config.certificate_arn):
            return {}
        certificate = acm.Certificate.from_certificate_arn(self, "Certificate", config.certificate_arn)
        return {
            "domain_names": [config.domain_name],
            "certificate": certificate,
            "minimum_protocol_version": cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
            "ssl_support_method": cloudfront.SSLMethod.SNI,
        }

    def _acknowledge_cdn(self, *, custom_domain: bool) -> None:
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR1",
            "serves open-source Python builds worldwide; no geo restriction is wanted.",
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR2",
            "serves static, public, read-only files (GET/HEAD only); a WAF web ACL adds cost, "
            "not protection.",
        )
        if not custom_domain:  # with one, the distribution has TLSv1.2_2021 and CFR4 passes
            acknowledge(
                self.distribution,
                "AwsSolutions-CFR4",
                "uses the default *.cloudfront.net certificate, whose TLS policy CloudFront fixes; "
                "buildfarm:domainName and buildfarm:certificateArn give it the team's own name, its "
                "ACM certificate and TLSv1.2_2021.",
            )

    def _store_policies(self) -> None:
        # OAC grants the distribution GetObject on the whole bucket; the workflow's working state
        # (plans, claims, build logs) is not for the public.
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CdnServesOnlyPublishedContent",
                effect=iam.Effect.DENY,
                principals=[iam.ServicePrincipal("cloudfront.amazonaws.com")],
                actions=["s3:GetObject"],
                resources=[self.bucket.arn_for_objects(under(prefix)) for prefix in INTERNAL_PREFIXES],
            )
        )
        # Published builds are immutable (DESIGN "Integrity rules"), enforced here, not only by the
        # builder's code: S3 refuses, whoever asks, any write under builds/ (and runtimes/, whose
        # builds and publish-side files are all created once, and logs/, whose failure records
        # the publish side reads as a build's outcome) that is not create-only
        # (If-None-Match: *), so nothing published or recorded can be replaced. Multipart parts
        # cannot carry the header, so multipart uploads under builds/ are refused too; the
        # builder sends single PUTs.
        # What is published stays: no one deletes under builds/, runtimes/ or keys/. In a
        # versioned bucket a delete leaves a delete marker, and a create-only PUT over a delete
        # marker succeeds: a deleted build could be replaced under its old name (and the CDN
        # serves builds/ from its cache for a year). Deleting a version would erase it for good.
        deletes = ["s3:DeleteObject", "s3:DeleteObjectVersion"]
        self._deny_everyone("PublishedBuildsStay", deletes, PERMANENT_KEYS)
        self._deny_everyone(
            "BuildsAreCreateOnly",
            ["s3:PutObject"],
            (PUBLISHED_BUILDS, PUBLISHED_RUNTIMES, FAILURE_RECORDS),
            {"Null": {"s3:if-none-match": "true"}},
        )

    def _deny_everyone(
        self, sid: str, actions: list[str], keys: Sequence[str], conditions: dict | None = None
    ) -> None:
        """A bucket-policy Deny of actions on the objects at keys (patterns), for every principal
        (but where conditions exempt one)."""
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid=sid,
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=actions,
                resources=[self.bucket.arn_for_objects(key) for key in keys],
                conditions=conditions,
            )
        )

    def _layout_depth_policy(self) -> None:
        # No one writes a key deeper than the layout's (nothing the farm writes is): a key
        # nested below another cell's build directory would make that cell's builder refuse the
        # build as taken, and PublishedBuildsStay would keep it there for good.
        self._deny_everyone("NoKeysBelowABuild", ["s3:PutObject"], TOO_DEEP_KEYS)
        self._deny_everyone("NoCellDirectoryOutOfPlace", ["s3:PutObject"], OUT_OF_PLACE_KEYS)

    def reserve_plan_record(self, planner: iam.IRole) -> None:
        """Only Plan's role writes a plan's record and items (plans/<execution>/plan.json,
        items.json, runtime-items.json), whatever IAM grants anyone else: the Maps build what
        the items say and Recover publishes by the record. (An operator who must rewrite one
        edits this statement first.)"""
        conditions = {"ArnNotEquals": {"aws:PrincipalArn": planner.role_arn}}
        self._deny_everyone("OnlyPlanWritesThePlan", ["s3:PutObject"], PLAN_RECORD_KEYS, conditions)

    def confine_jobs(self, *, builders: Sequence[iam.IRole], runtime_jobs: Sequence[iam.IRole]) -> None:
        """What the Batch jobs' roles may not write, enforced by the bucket whatever IAM grants
        them later (DESIGN "Integrity rules": only the publish side writes catalogs and claims):
        - a Python builder: anything outside builds/ and logs/;
        - a runtime job: anything outside runtimes/ and (where runtimeUvCache shares them) the uv
          caches; above all builds/, where a runtime's build code (run as root in its job) could
          otherwise pre-place a future build number of its platform's Python, which that build
          would then find taken;
        - either: catalogs, install.sh, claims, plans, run markers, releases.json, and what the
          publish side writes and signs: a build's SHA256SUMS, SBOM, provenance and signatures,
          versions.json(.sig) and keys/. A job cannot pre-place a checksum list or a signature
          that publishing would then find in its way."""
        arns = self.bucket.arn_for_objects
        own_prefixes = (
            ("BuildersWriteOnlyTheirPrefixes", builders, builder_writable_keys()),
            ("RuntimeJobsWriteOnlyTheirPrefixes", runtime_jobs, self._runtime_job_writable),
        )
        for sid, roles, writable in own_prefixes:
            self._deny_job_roles(sid, roles, not_resources=[arns(k) for k in writable])
        self._deny_job_roles(
            "OnlyThePublishSideSigns", [*builders, *runtime_jobs], resources=[arns(k) for k in PUBLISHER_KEYS]
        )

    def _deny_job_roles(self, sid: str, roles: Sequence[iam.IRole], **where: list[str]) -> None:
        """A bucket-policy Deny of PutObject to these roles, on `resources` or `not_resources`
        (none without roles: no runtime jobs without cloudRuntimes)."""
        if not roles:
            return
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid=sid,
                effect=iam.Effect.DENY,
                principals=[iam.ArnPrincipal(role.role_arn) for role in roles],
                actions=["s3:PutObject"],
                **where,
            )
        )

    @property
    def public_base_url(self) -> str:
        return f"https://{self.domain_name}"
