"""The build driver: one cell (version x platform x arch) from source to the store.

builder_image/build.py is the entry point; this package is the driver, one module per
phase, run in this order by main.PHASES:

    preflight  preflight.py  the cell is free, the build dependencies and tools are there
    fetch      source.py     download the source tarball
    verify     source.py     its sha256 is the spec's; its OpenPGP signature (signature.py)
    configure  make.py       unpack, Modules/Setup.local, ./configure (flags.py)
    make       make.py       make, or CPython's PGO (+ BOLT) stages; progress lines (progress.py)
    install    install.py    make install into a staging tree, strip, link bin/python and bin/pip,
                             make it relocatable
    selftest   selftest.py   hardening (hardening.py), imports, moved copy, tests, pip, embedding
                             (the programs it runs: selftest_scripts.py)
    sbom       sbom.py       SBOM facts: the built python runs builder_image/sbom_facts/
    package    packages.py   tarball, .deb or .rpm
    manifest   manifest.py   manifest.json (the publish side writes SHA256SUMS and signs)
    upload     upload.py     publish to the store (a directory or S3), create-only

A runtime job (build.py's argv `buildfarm runtime build ...`, the cloud's runtime cells) is not
a Python build: runtime_job.py runs it with a farm-built Python and the image's buildfarm wheel.

Shared by the phases: spec.py (the build spec and the registry), cell.py (what one build
knows), process.py (running programs, the build log), errors.py, series.py (what depends on
the CPython series), buildenv.py (the children's environment), relocation.py, files.py.
builder_image/registry.py (outside: the Dockerfiles run it before the driver is in the
image) reads platforms.json.

Standard library only, Python 3.6+: it runs on the oldest system python of a platform we
build on (rhel-8 and openSUSE 15). Hence no dataclasses, no walrus, no f-strings (by
choice: .format throughout), no capture_output/text in subprocess, no third-party imports
except boto3, imported lazily and only for an s3:// store.
"""
