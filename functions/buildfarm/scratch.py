"""Temporary directories that last as long as the process that made them.

The CDK app stages its assets (the Lambda bundle, the builder images' context) in such a
directory: CDK copies each asset into cdk.out while the app constructs it, so nothing needs the
staging after the app exits, and each `cdk synth` would otherwise leave one more behind.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path


def process_directory(prefix: str) -> Path:
    """A new directory under the temporary directory, removed when the interpreter exits."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path
