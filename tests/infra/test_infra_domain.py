"""The store at the team's own domain: CloudFront's alias, certificate and TLS policy, and the
public URL the publish side writes into install.sh and uv's metadata."""

from __future__ import annotations

from typing import Any

import pytest
from template_helpers import by_type, only

from buildfarm.config import FarmConfig

BASE_URL_VARIABLE = FarmConfig.environment_variables()["public_base_url"]


def _base_urls(template: dict[str, Any]) -> list[Any]:
    """BUILDFARM_PUBLIC_BASE_URL as each Lambda that has it is given it."""
    functions = by_type(template, "AWS::Lambda::Function").values()
    variables = [f["Properties"].get("Environment", {}).get("Variables", {}) for f in functions]
    return [v[BASE_URL_VARIABLE] for v in variables if BASE_URL_VARIABLE in v]


@pytest.mark.slow  # a second synthesis (jsii starts node: 10-20 s)
def test_a_custom_domain_is_served_with_its_certificate_and_is_the_public_url(domain_synthesis) -> None:
    synthesis, context = domain_synthesis
    template = synthesis.template()  # cdk-nag passed: CFR4 holds without its acknowledgement
    _, distribution = only(template, "AWS::CloudFront::Distribution")
    config = distribution["Properties"]["DistributionConfig"]
    domain = context["buildfarm:domainName"]
    assert config["Aliases"] == [domain]
    assert config["ViewerCertificate"] == {
        "AcmCertificateArn": context["buildfarm:certificateArn"],
        "MinimumProtocolVersion": "TLSv1.2_2021",
        "SslSupportMethod": "sni-only",
    }
    urls = _base_urls(template)
    assert urls and all(url == f"https://{domain}" for url in urls)


def test_without_a_domain_the_public_url_is_cloudfronts(template) -> None:
    _, distribution = only(template, "AWS::CloudFront::Distribution")
    assert "Aliases" not in distribution["Properties"]["DistributionConfig"]
    distribution_id = next(iter(by_type(template, "AWS::CloudFront::Distribution")))
    expected = {"Fn::Join": ["", ["https://", {"Fn::GetAtt": [distribution_id, "DomainName"]}]]}
    urls = _base_urls(template)
    assert urls and all(url == expected for url in urls)
