"""Builder fixtures: the driver. The real builds the builder tests inspect (host_build,
chroot_build, pgo_build: a session cache keyed by spec, shared with the farm store's runs),
the fast build settings and the debootstrap roots are in tests/conftest.py.

The driver package (builder_image/driver/) is imported as build.py imports it, with
builder_image/ on sys.path: test modules here say `from driver import flags`."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
from builder_helpers import load_build_module, put_driver_on_path

put_driver_on_path()


@pytest.fixture(scope="session")
def build_py() -> SimpleNamespace:
    """The driver's names the real-build tests use (builder_helpers.load_build_module())."""
    return load_build_module()


@pytest.fixture
def moto_s3(moto_server):
    """(client, bucket): an empty bucket in moto's server on loopback; the driver reaches it
    through AWS_ENDPOINT_URL_S3."""
    import boto3

    client = boto3.client("s3", endpoint_url=moto_server)
    bucket = f"farm-{uuid.uuid4().hex[:12]}"  # moto keeps state per process: one bucket per test
    client.create_bucket(Bucket=bucket)
    yield client, bucket
    client.close()  # no keep-alive connection left for the server's shutdown to wait on
