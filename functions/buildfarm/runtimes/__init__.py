"""Runtimes: a published Python build plus a venv of locked requirements at a fixed prefix,
packaged as a tarball and the platform's package with a manifest (manifest.schema.json).

- definitions.py: the TOML definitions (runtimes/*.toml) as RuntimeDefinition.
- keys.py: the store keys under runtimes/ and whether one cell needs a new build.
- python_source.py: the newest published Python build of a cell (versions.json).
- build.py: staging, venv, hash-checked install with uv, relocation.
- selftest.py: imports, pip check, the tree at its prefix.
- package.py: tarball, .deb (rpm.py: .rpm), manifest; create-only publishing.
- planning.py: which runtime cells a farm run builds (pure).
- runtime_build.py: one runtime build end to end (`buildfarm runtime build`), only where its
  platform is what it claims (placement_problem).
- docker_job.py: `buildfarm runtime build --runner docker`: the same argv in the platform's
  builder image, as the cloud runs it.
- uv_cache.py: uv's download cache, kept beside an S3 store (cache/uv/<platform>-<arch>.tar.gz)
  only where the farm opts in (BUILDFARM_RUNTIME_UV_CACHE; off by default, uv_cache says why).
- verify.py, publish.py: the publish side: verify a build, write SHA256SUMS and its signature
  (buildfarm.attest), merge it into versions.json's `runtimes`, release its claim.
- farm_cells.py: a farm run's runtime cells: planned, claimed, built, published.
- cloud_items.py: the cloud workflow's runtime items (Plan), their decision (PublishRuntime)
  and Finalize's/Recover's decision of the rest.
"""
