"""Provenance in the synthesized stack: every builder job passes the image it runs to the
driver, which records it in manifest.json as builder_image (not a guess such as local:<os>)."""

from __future__ import annotations

from typing import Any

import pytest

# Checks of the session's CDK synthesis (`python app.py`, most of a minute): not in `-m 'not slow'`.
pytestmark = pytest.mark.slow


def job_definitions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        lid: resource["Properties"]
        for lid, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Batch::JobDefinition"
    }


def test_every_job_definition_passes_the_image_it_runs(template: dict[str, Any]) -> None:
    definitions = job_definitions(template)
    assert definitions
    for lid, props in definitions.items():
        container = props["ContainerProperties"]
        environment = {e["Name"]: e["Value"] for e in container["Environment"]}
        # The very value the job pulls: the content-addressed ECR asset URI, tokens and all.
        assert environment["BUILDFARM_BUILDER_IMAGE"] == container["Image"], lid
        assert "container-assets" in str(container["Image"]), lid


def test_the_image_override_keeps_the_container_environment(template: dict[str, Any]) -> None:
    definitions = job_definitions(template)
    assert definitions
    for lid, props in definitions.items():
        names = [e["Name"] for e in props["ContainerProperties"]["Environment"]]
        assert sorted(names) == sorted(set(names)), lid  # nothing listed twice
        assert {"BUILDFARM_PLATFORM", "BUILDFARM_ARCH", "BUILDFARM_BUILDER_IMAGE"} <= set(names), lid
