"""One synthesis of the CDK app per test session, shared by every infra test.

It runs the real entry point (`python app.py`) the way a platform team would, with no AWS
credentials and no Docker, with cdk-nag active: a finding fails the synthesis.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from buildfarm import clock
from buildfarm.workflow_names import STACK_NAME

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the `infra` package and app.py live at the top level

# The day synthesis compares the registry's end-of-support dates with: fixed, so that the
# synthesized stack does not depend on the day the tests run.
LIFECYCLE_DATE = "2026-11-22"


@dataclass(frozen=True)
class Synthesis:
    returncode: int
    output: str
    outdir: Path

    @property
    def template_path(self) -> Path:
        return self.outdir / f"{STACK_NAME}.template.json"

    def template(self) -> dict[str, Any]:
        if self.returncode != 0 or not self.template_path.is_file():
            pytest.fail(f"`python app.py` failed (exit {self.returncode}):\n{self.output[-6000:]}")
        return json.loads(self.template_path.read_text())

    def resources(self, cfn_type: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.template()["Resources"].items() if r["Type"] == cfn_type}


def synthesize(tmp_path_factory: pytest.TempPathFactory, context: dict[str, str] | None = None) -> Synthesis:
    """`python app.py` as `cdk synth` runs it, with `-c` context on top of cdk.json's."""
    outdir = tmp_path_factory.mktemp("cdk.out")
    home = tmp_path_factory.mktemp("home")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "CDK_")) and key not in ("DOCKER_HOST",)
    }
    env.update(
        {
            "CDK_OUTDIR": str(outdir),
            "HOME": str(home),  # no ~/.aws
            "AWS_CONFIG_FILE": str(home / "no-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-credentials"),
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "1",
            # As `cdk synth -c buildfarm:lifecycleDate=...` passes it.
            "CDK_CONTEXT_JSON": json.dumps({"buildfarm:lifecycleDate": LIFECYCLE_DATE, **(context or {})}),
            # No docker reachable: synthesis must only stage the image assets. CDK runs
            # $CDK_DOCKER (else `docker`); directories that hold docker but not node are dropped.
            "CDK_DOCKER": str(home / "no-docker"),
            "PATH": os.pathsep.join(
                p
                for p in env.get("PATH", "").split(os.pathsep)
                if not (Path(p) / "docker").exists() or (Path(p) / "node").exists()
            ),
        }
    )
    result = subprocess.run(
        [sys.executable, str(REPO / "app.py")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return Synthesis(result.returncode, result.stdout + result.stderr, outdir)


@pytest.fixture(scope="session")
def synthesis(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    return synthesize(tmp_path_factory)


# The store at a team's own name (tests/infra/test_infra_domain.py).
CUSTOM_DOMAIN = {
    "buildfarm:domainName": "python.example.org",
    "buildfarm:certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/"
    "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
}


@pytest.fixture(scope="session")
def domain_synthesis(uv_cache_synthesis: Synthesis) -> tuple[Synthesis, dict[str, str]]:
    """The stack at a team's own name (uv_cache_synthesis has CUSTOM_DOMAIN), and that context."""
    return uv_cache_synthesis, CUSTOM_DOMAIN


@pytest.fixture(scope="session")
def uv_cache_synthesis(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    """The stack with non-default options (one synthesis, 10-20 s, for both): the shared uv cache
    enabled (`-c buildfarm:runtimeUvCache=true`) and the store at a team's own name (CUSTOM_DOMAIN)."""
    return synthesize(tmp_path_factory, {"buildfarm:runtimeUvCache": "true", **CUSTOM_DOMAIN})


@pytest.fixture(scope="session")
def lifecycle_date() -> str:
    """The buildfarm:lifecycleDate the session's synthesis used (also the moto farm's day)."""
    import moto_farm

    assert moto_farm.NOW.date().isoformat() == LIFECYCLE_DATE
    return LIFECYCLE_DATE


@pytest.fixture(scope="session")
def template(synthesis: Synthesis) -> dict[str, Any]:
    return synthesis.template()


@pytest.fixture(scope="session")
def uv_cache_template(uv_cache_synthesis: Synthesis) -> dict[str, Any]:
    return uv_cache_synthesis.template()


# The moto farm (moto_farm.py) is imported only by the tests that use it.


@pytest.fixture(scope="module")
def moto_farm_patches() -> Iterator[None]:
    """moto patched as the farm needs it (moto_farm.moto_patched, from tests/moto_patches.py)."""
    import moto_farm

    with moto_farm.moto_patched():
        yield


@pytest.fixture
def farm(template: dict[str, Any], moto_farm_patches: None, tmp_path: Path) -> Iterator[Any]:
    """The stack's workflow in moto (a moto_farm.Farm) on an empty bucket, the stand-in reset.
    Its functions plan no runtime cells (BUILDFARM_RUNTIMES: an empty directory) unless a test
    gives them definitions (moto_farm.Farm.set_environment)."""
    import moto_farm
    import stand_in
    from moto import mock_aws

    stand_in.reset_stand_in()
    no_runtimes = tmp_path / "no-runtimes"
    no_runtimes.mkdir()
    with (
        mock_aws(config=moto_farm.MOTO_CONFIG),
        mock.patch.dict(os.environ, {"AWS_DEFAULT_REGION": moto_farm.REGION}),
        clock.using(clock.fixed_clock(moto_farm.NOW)),
    ):
        farm = moto_farm.Farm(template)
        farm.set_environment(BUILDFARM_RUNTIMES=str(no_runtimes))
        yield farm
        # No job or invocation of this test's executions outlives its moto.
        for held in stand_in.HOLD.values():
            held.set()
        farm.wait_quiet()
