"""install.sh's JSON reader (json_flatten, bash and awk): the path/value lines it prints for a
document are what Python's json makes of it, compact or indented."""

from __future__ import annotations

import json
import subprocess

import pytest

from .test_install_script import INSTALL_SH


@pytest.mark.parametrize("indent", [None, 2])
def test_json_flattener_matches_python_json(tmp_path, indent) -> None:
    document = {
        "a": [1, 2.5, {"b": "x y"}, [True, False, None]],
        "tricky": 'q"uo}te{ ,:[]',
        "builds": {"3.13.5": {"debian-12": {"x86_64": {"build": 3, "artifacts": [{"key": "k", "size": 0}]}}}},
    }
    expected = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, [*path, k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, [*path, str(i)])
        else:
            value = json.dumps(node)[1:-1] if isinstance(node, str) else json.dumps(node)
            expected.append("/".join(path) + "\t" + value)

    walk(document, [])
    script = INSTALL_SH.read_text()
    function = script[script.index("json_flatten() {") : script.index("# --- main")]
    result = subprocess.run(
        ["bash", "-c", function + "\njson_flatten"],
        input=json.dumps(document, indent=indent),
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.splitlines() == expected
