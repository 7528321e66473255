"""`buildfarm serve` answers each file with the Content-Type its writer stores in S3: a store is
published by the real publisher into (moto) S3, copied to a directory as it is, served, and every
public object the writers gave a type to (sbom.cdx.json among them) is answered with that type."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loopback import serve_in_background

from buildfarm.layout import SBOM_FILE, is_public
from buildfarm.serve import content_type, make_server

from ..conftest import BUCKET, PREFIX, publish_fake_cell

S3_DEFAULT_TYPE = "binary/octet-stream"  # what S3 stores for a put without a ContentType


@pytest.fixture
def stored_types(s3_store, s3_client, config, session_signer, tmp_path) -> tuple[Path, dict[str, str]]:
    """The store published into S3, copied to tmp_path/dist; and each object's S3 ContentType."""
    publish_fake_cell(s3_store, config, session_signer)
    root = tmp_path / "dist"
    types = {}
    for listed in _objects(s3_client):
        key = listed["Key"].removeprefix(PREFIX).lstrip("/")
        target = root.joinpath(*key.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3_client.get_object(Bucket=BUCKET, Key=listed["Key"])["Body"].read())
        types[key] = s3_client.head_object(Bucket=BUCKET, Key=listed["Key"])["ContentType"]
    return root, types


def _objects(s3_client: Any) -> Iterator[dict[str, Any]]:
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        yield from page.get("Contents", [])


def fetch_type(address: tuple[str, int], key: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection(*address, timeout=10)
    connection.request("GET", f"/{key}")
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status, response.getheader("Content-Type") or ""


def test_serve_answers_with_the_types_the_writers_store(stored_types):
    root, types = stored_types
    typed = {key: kind for key, kind in types.items() if is_public(key) and kind != S3_DEFAULT_TYPE}
    sboms = [key for key in typed if key.endswith(f"/{SBOM_FILE}")]
    assert sboms and typed[sboms[0]] == "application/vnd.cyclonedx+json", typed
    httpd = make_server(root, "127.0.0.1", 0)
    serve_in_background(httpd)
    try:
        answered = {key: fetch_type(httpd.server_address[:2], key) for key in typed}
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert answered == {key: (200, kind) for key, kind in typed.items()}


def test_content_type_of_the_publish_side_files():
    assert content_type(f"builds/3.13.5/debian-12/x86_64/1/{SBOM_FILE}") == "application/vnd.cyclonedx+json"
    assert content_type("builds/3.13.5/debian-12/x86_64/1/SHA256SUMS.sig") == "application/octet-stream"
