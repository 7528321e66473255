#!/usr/bin/env python3
"""CDK entry point: read the configuration from cdk.json context, build the stack, check it with
cdk-nag (AwsSolutions). `python app.py` synthesizes into cdk.out/ without Docker or AWS access."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `import infra` however the app is started

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "1")

from aws_cdk import App, Validations  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402

from buildfarm.platforms import load_registry  # noqa: E402
from buildfarm.workflow_names import STACK_NAME  # noqa: E402
from infra.config import CONTEXT_PREFIX, InfraConfig  # noqa: E402
from infra.stack import BuildFarmStack  # noqa: E402


def build_app(outdir: str | None = None, context: dict[str, Any] | None = None, nag: bool = True) -> App:
    """The CDK app with the farm stack.

    Context precedence: cdk.json < `context` (tests) < `cdk -c key=value` (the CLI passes its
    merged context in CDK_CONTEXT_JSON, which App applies last).
    """
    merged = json.loads((REPO / "cdk.json").read_text()).get("context", {})
    merged.update(context or {})
    app = App(outdir=outdir, context=merged)
    keys = set(merged) | set(json.loads(os.environ.get("CDK_CONTEXT_JSON") or "{}"))
    values = {key: app.node.try_get_context(key) for key in keys if key.startswith(CONTEXT_PREFIX)}
    stack_name = values.pop(f"{CONTEXT_PREFIX}stackName", None) or STACK_NAME
    registry = load_registry()
    config = InfraConfig.from_context(values, registry=registry)
    BuildFarmStack(app, stack_name, config=config, registry=registry)
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


def main() -> int:
    build_app(outdir=os.environ.get("CDK_OUTDIR") or str(REPO / "cdk.out")).synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
