"""Every upload of the builder is create-only (If-None-Match: *), against moto's S3 server (moto
5.2.5 answers a conditional PutObject on an existing key with 412 PreconditionFailed), also with
a botocore too old to know PutObject's IfNoneMatch parameter (rhel-8 / openSUSE 15)."""

from __future__ import annotations

import pytest

CELL = "builds/3.13.5/debian-12/x86_64/1"
NAMES = ("python-3.13.5-debian-12-x86_64.tar.gz", "SHA256SUMS", "build.log", "manifest.json")


@pytest.fixture
def files(tmp_path) -> list[tuple[str, str]]:
    result = []
    for name in NAMES:
        (tmp_path / name).write_text(name)
        result.append((name, str(tmp_path / name)))
    return result


@pytest.fixture(params=["botocore knows IfNoneMatch", "botocore without IfNoneMatch"])
def old_botocore(request, monkeypatch) -> bool:
    """Run the test twice: as is, and with IfNoneMatch removed from the loaded S3 model (what the
    last boto3 for Python 3.6 looks like)."""
    if request.param == "botocore without IfNoneMatch":
        import copy

        from botocore.loaders import Loader

        original = Loader.load_service_model

        def load_service_model(self, service_name, type_name, api_version=None):
            model = original(self, service_name, type_name, api_version)
            if service_name == "s3" and type_name == "service-2":
                model = copy.deepcopy(model)  # the loader caches the original
                del model["shapes"]["PutObjectRequest"]["members"]["IfNoneMatch"]
            return model

        monkeypatch.setattr(Loader, "load_service_model", load_service_model)
        return True
    return False


def put_headers(store) -> list[tuple[str, str | None]]:
    """(key, If-None-Match) of every PutObject the store's client sends, as signed."""
    sent: list[tuple[str, str | None]] = []

    def capture(request, **kwargs):
        sent.append((request.url.split("?")[0].rsplit("/", 1)[1], request.headers.get("If-None-Match")))

    # after every other before-sign handler (the store's own hook included)
    store.client.meta.events.register_last("before-sign.s3.PutObject", capture)
    return sent


def test_every_upload_is_create_only_and_a_second_upload_fails(moto_s3, build_py, files, old_botocore):
    client, bucket = moto_s3
    store = build_py.open_store(f"s3://{bucket}/python")
    members = store._put_object_fields()
    assert ("IfNoneMatch" not in members) is old_botocore
    sent = put_headers(store)

    store.publish(CELL, files)
    store.write_logs(
        "logs/3.13.5/debian-12/x86_64/2", [*files[2:3], ("failure.json", b'{"phase": "make"}\n')]
    )
    assert [name for name, _ in sent] == [*NAMES, "build.log", "failure.json"]
    assert all(value == "*" for _, value in sent), sent
    record = client.get_object(Bucket=bucket, Key="python/logs/3.13.5/debian-12/x86_64/2/failure.json")
    assert record["Body"].read() == b'{"phase": "make"}\n'  # content from memory, as given

    # A second upload to a builds/ key fails at S3 (412), not only at the driver's HEAD check.
    tarball = files[0]
    with pytest.raises(build_py.BuildError, match="already exists; builds are never overwritten") as caught:
        store._put(store.key(f"{CELL}/{tarball[0]}"), tarball[1])
    assert caught.value.phase == "upload" and not caught.value.record
    assert sent[-1] == (tarball[0], "*")
    body = client.get_object(Bucket=bucket, Key=f"python/{CELL}/{tarball[0]}")["Body"].read()
    assert body == tarball[0].encode()
    # And a failure record for a build number is written once.
    with pytest.raises(build_py.BuildError, match="already exists"):
        store.write_logs("logs/3.13.5/debian-12/x86_64/2", files[2:3])


def test_a_partial_cell_is_not_completed_over_existing_keys(moto_s3, build_py, files, old_botocore):
    """A cell whose tarball is already there (no manifest, so the HEAD check passes) is not
    overwritten: the tarball's create-only PUT fails and nothing after it is uploaded."""
    client, bucket = moto_s3
    client.put_object(Bucket=bucket, Key=f"python/{CELL}/{files[0][0]}", Body=b"planted")
    store = build_py.open_store(f"s3://{bucket}/python")
    with pytest.raises(build_py.BuildError, match="never overwritten"):
        store.publish(CELL, files)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [f"python/{CELL}/{files[0][0]}"]
    body = client.get_object(Bucket=bucket, Key=keys[0])["Body"].read()
    assert body == b"planted"
