"""No Batch job reaches the instance metadata service (and the instance role there): jobs share
the instance's network (Batch's host mode), so the stack runs every job as an unprivileged user
that the builder images create, and the launch template's boothook firewalls the service from
every user but root. The boothook, as synthesized, runs here for real in a network namespace of
its own, against a stand-in for the service on 169.254.169.254."""

from __future__ import annotations

import email
import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest
from template_helpers import by_type, only

from buildfarm.images import JOB_UID, JOB_USER
from buildfarm.workflow_names import STACK_NAME
from infra.batch import BOOTHOOK, IMDS_GUARD

pytestmark = pytest.mark.slow  # the session's synthesis

IMDS = "169.254.169.254"


def boothook(template: dict[str, Any]) -> str:
    """The launch template's user data: a MIME multipart (as Batch requires) of one boothook."""
    _, launch_template = only(template, "AWS::EC2::LaunchTemplate")
    encoded = launch_template["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]
    assert isinstance(encoded, str), encoded  # no token left unresolved in it
    message = email.message_from_string(encoded)
    assert message.is_multipart() and message.get_content_type() == "multipart/mixed"
    (part,) = message.get_payload()
    assert part["Content-Type"] == BOOTHOOK
    return part.get_payload()


def test_every_job_runs_as_the_images_unprivileged_user_and_the_instances_guard_imds(
    template: dict[str, Any], synthesis
) -> None:
    definitions = by_type(template, "AWS::Batch::JobDefinition")
    assert definitions
    for definition in definitions.values():
        assert definition["Properties"]["ContainerProperties"]["User"] == JOB_USER != "0:0"
    images = json.loads((synthesis.outdir / f"{STACK_NAME}.assets.json").read_text())["dockerImages"]
    assert {image["source"]["dockerBuildArgs"]["JOB_UID"] for image in images.values()} == {str(JOB_UID)}
    assert boothook(template).strip() == IMDS_GUARD.strip()
    _, launch_template = only(template, "AWS::EC2::LaunchTemplate")
    options = launch_template["Properties"]["LaunchTemplateData"]["MetadataOptions"]
    assert options.get("HttpProtocolIpv6", "disabled") == "disabled"  # the guard covers IPv4 only


REACH = f"""
import socket, sys
try:
    socket.create_connection(("{IMDS}", 80), timeout=5).close()
    print("reached")
except OSError as error:
    print("refused:", error)
"""


def test_the_boothook_refuses_the_metadata_service_to_the_jobs_user_only(template: dict[str, Any]) -> None:
    """Run twice (boothooks run at every boot): one rule, root still reaches the stand-in
    service, the jobs' user does not."""
    tools = [tool for tool in ("unshare", "iptables", "setpriv") if not shutil.which(tool)]
    if tools or os.geteuid() != 0:
        pytest.skip(f"needs root and {', '.join(tools) or 'unshare, iptables, setpriv'}")  # fails under CI
    script = boothook(template)
    inside = f"""
set -e
ip link set lo up
ip addr add {IMDS}/32 dev lo
{sys.executable} -c 'import socket, time
s = socket.create_server(("{IMDS}", 80)); time.sleep(60)' &
sleep 1
cat > /tmp/boothook-$$ <<'EOF'
{script}
EOF
bash /tmp/boothook-$$ && bash /tmp/boothook-$$
rm -f /tmp/boothook-$$
echo "rules: $(iptables -S OUTPUT | grep -c {IMDS})"
echo "root: $(/usr/bin/python3 -c '{REACH}')"
echo "job: $(setpriv --reuid={JOB_UID} --regid={JOB_UID} --clear-groups /usr/bin/python3 -c '{REACH}')"
kill %1
"""
    result = subprocess.run(
        ["unshare", "--net", "bash", "-c", inside], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert lines["rules"] == "1"
    assert lines["root"] == "reached"
    assert lines["job"].startswith("refused:"), lines
