"""The provenance statement: in-toto Statement v1, SLSA provenance v1 field names."""

from __future__ import annotations

import datetime
import json

import pytest

from buildfarm.attest.provenance import (
    BUILD_TYPE,
    Dependency,
    ProvenanceFacts,
    Subject,
    make_statement,
    render_statement,
    statement_subjects,
)

# The field names of SLSA provenance v1 (slsa-framework/slsa docs/provenance/schema/v1/provenance.proto,
# serialized in lowerCamelCase) and of the in-toto Statement v1.
STATEMENT_FIELDS = {"_type", "subject", "predicateType", "predicate"}
PREDICATE_FIELDS = {"buildDefinition", "runDetails"}
BUILD_DEFINITION_FIELDS = {"buildType", "externalParameters", "internalParameters", "resolvedDependencies"}
RUN_DETAILS_FIELDS = {"builder", "metadata", "byproducts"}
BUILDER_FIELDS = {"id", "version", "builderDependencies"}
METADATA_FIELDS = {"invocationId", "startedOn", "finishedOn"}
RESOURCE_DESCRIPTOR_FIELDS = {
    "uri",
    "digest",
    "name",
    "downloadLocation",
    "mediaType",
    "content",
    "annotations",
}

SPEC = {
    "version": "3.13.5",
    "platform": "debian-12",
    "arch": "x86_64",
    "build": 2,
    "source": {"url": "https://www.python.org/ftp/python/3.13.5/Python-3.13.5.tar.xz", "sha256": "1" * 64},
    "optimization": "pgo+lto",
    "execution_id": "run-20250611-abc",
}
UTC = datetime.UTC


def facts(**changes) -> ProvenanceFacts:
    values = {
        "subjects": (
            Subject(name="python-3.13.5-debian-12-x86_64.tar.gz", sha256="a" * 64),
            Subject(name="python-3.13.5_2_amd64.deb", sha256="b" * 64),
            Subject(name="manifest.json", sha256="c" * 64),
        ),
        "spec": SPEC,
        "internal": {"runner": "docker", "driver_version": "1"},
        "source": Dependency(uri=SPEC["source"]["url"], name="Python-3.13.5.tar.xz", sha256="1" * 64),
        "builder_image": Dependency(
            uri="registry.example/buildfarm/debian-12@sha256:" + "d" * 64,
            name="builder-image",
            sha256="d" * 64,
        ),
        "builder_id": "arn:aws:states:eu-west-1:123456789012:stateMachine:buildfarm",
        "builder_version": {"buildfarm": "0.1.0"},
        "invocation_id": "run-20250611-abc",
        "started_on": datetime.datetime(2025, 6, 11, 12, 0, 5, 123, tzinfo=UTC),
        "finished_on": datetime.datetime(2025, 6, 11, 12, 9, 30, tzinfo=UTC),
    }
    return ProvenanceFacts(**{**values, **changes})


def test_statement_uses_the_slsa_v1_field_names() -> None:
    statement = make_statement(facts())
    assert set(statement) == STATEMENT_FIELDS
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    predicate = statement["predicate"]
    assert set(predicate) == PREDICATE_FIELDS
    definition, run = predicate["buildDefinition"], predicate["runDetails"]
    assert set(definition) == BUILD_DEFINITION_FIELDS
    assert set(run) <= RUN_DETAILS_FIELDS and {"builder", "metadata"} <= set(run)
    assert set(run["builder"]) <= BUILDER_FIELDS and "id" in run["builder"]
    assert set(run["metadata"]) == METADATA_FIELDS
    for descriptor in definition["resolvedDependencies"]:
        assert set(descriptor) <= RESOURCE_DESCRIPTOR_FIELDS
    assert definition["buildType"] == BUILD_TYPE
    assert definition["externalParameters"] == SPEC
    assert definition["resolvedDependencies"][0] == {
        "uri": SPEC["source"]["url"],
        "name": "Python-3.13.5.tar.xz",
        "digest": {"sha256": "1" * 64},
    }
    assert definition["resolvedDependencies"][1]["digest"] == {"sha256": "d" * 64}
    assert run["metadata"] == {
        "invocationId": "run-20250611-abc",
        "startedOn": "2025-06-11T12:00:05Z",
        "finishedOn": "2025-06-11T12:09:30Z",
    }
    assert run["builder"]["version"] == {"buildfarm": "0.1.0"}


def test_subjects_sorted_with_their_digests() -> None:
    statement = make_statement(facts())
    assert [s["name"] for s in statement["subject"]] == [
        "manifest.json",
        "python-3.13.5-debian-12-x86_64.tar.gz",
        "python-3.13.5_2_amd64.deb",
    ]
    assert statement_subjects(statement)["python-3.13.5_2_amd64.deb"] == "b" * 64


def test_render_is_deterministic_json() -> None:
    text = render_statement(facts())
    assert text == render_statement(facts(subjects=tuple(reversed(facts().subjects))))
    assert text.endswith("}\n") and json.loads(text) == make_statement(facts())
    other = datetime.datetime(
        2025, 6, 11, 14, 0, 5, 123, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    )
    assert (
        json.loads(render_statement(facts(started_on=other)))["predicate"]["runDetails"]["metadata"][
            "startedOn"
        ]
        == "2025-06-11T12:00:05Z"
    )


def test_bad_facts_are_refused() -> None:
    with pytest.raises(ValueError, match="named twice"):
        facts(subjects=(Subject(name="a.tar.gz", sha256="a" * 64), Subject(name="a.tar.gz", sha256="b" * 64)))
    with pytest.raises(ValueError, match="subjects"):
        facts(subjects=())
    with pytest.raises(ValueError, match="time zone"):
        facts(started_on=datetime.datetime(2025, 6, 11, 12, 0))
    with pytest.raises(ValueError, match="before"):
        make_statement(facts(finished_on=datetime.datetime(2025, 6, 11, 11, 0, tzinfo=UTC)))
    with pytest.raises(ValueError, match="name"):
        Subject(name="../etc/passwd", sha256="a" * 64)


def test_statement_subjects_refuses_other_documents() -> None:
    with pytest.raises(ValueError, match="not an in-toto"):
        statement_subjects({"_type": "https://in-toto.io/Statement/v0.1", "subject": []})
    statement = make_statement(facts())
    statement["subject"][0]["digest"] = {"sha512": "0"}
    with pytest.raises(ValueError, match="without a sha256"):
        statement_subjects(statement)
