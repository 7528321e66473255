"""The README's promises that code can check: its opening commands and its tables."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
# Where BUILDFARM_* variables are read: the package, the builder, the stack, the scripts.
CODE = [
    *(REPO / "functions").rglob("*.py"),
    *(REPO / "functions").rglob("*.sh"),
    *(REPO / "builder_image").rglob("*.py"),
    *(REPO / "builder_image").glob("Dockerfile.*"),
    *(REPO / "infra").rglob("*.py"),
    REPO / "app.py",
    REPO / "scripts" / "setup",
    REPO / ".ci" / "run",
]
VARIABLE = re.compile(r"\bBUILDFARM_[A-Z][A-Z0-9_]*[A-Z0-9]\b")


def _readme_tables():
    spec = importlib.util.spec_from_file_location("readme_tables", REPO / "scripts" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table(name: str) -> list[list[str]]:
    """The rows (cells stripped) of the table between README's <!-- name:begin/end --> markers."""
    match = re.search(rf"<!-- {name}:begin -->\n(.*?)\n<!-- {name}:end -->", README, re.S)
    assert match, f"README.md has no {name} table"
    rows = [line.strip().strip("|").split(" | ") for line in match[1].splitlines()]
    return [[cell.strip() for cell in row] for row in rows[2:]]


def test_readme_opens_with_the_two_setup_commands():
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)[1].splitlines()
    assert first_block == [
        'bash scripts/setup && BUILDFARM_SOURCE_MIRROR="file://$PWD/.cache/mirror" '
        ".venv/bin/buildfarm run --versions 3.13.5 --store ./dist",
        "bash scripts/setup && .venv/bin/pytest",
    ]
    assert README.index("```sh") < README.index("\n## ")


def test_generated_tables_are_current():
    from buildfarm.platforms import load_registry

    tables = _readme_tables()
    assert tables.rendered(README, load_registry()) == README, (
        "README's tables are out of date: .venv/bin/python scripts/readme_tables.py --write"
    )
    listed = [row[0].strip("`") for row in _table("platforms")]
    assert listed == list(load_registry().platforms)


def test_every_buildfarm_variable_in_the_code_is_in_the_readme_table_and_no_other():
    in_code = set()
    for path in CODE:
        in_code |= set(VARIABLE.findall(path.read_text(errors="replace")))
    in_readme = {name.strip("`") for row in _table("env") for name in row[0].split(", ")}
    assert in_code - in_readme == set(), "undocumented variables"
    assert in_readme - in_code == set(), "documented variables the code does not read"


def test_cdk_key_table_lists_every_key_cdk_json_sets():
    """Every key cdk.json sets has a row. Its default is the model's (the table is generated:
    test_generated_tables_are_current); cdk.json's values are a team's to change."""
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    ours = {key for key in context if key.startswith("buildfarm:")}
    rows = {row[0].strip("`") for row in _table("cdk-keys")}
    assert rows == ours


def _default_as_readme_spells_it(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_environment_table_states_the_configuration_models_defaults():
    """Each setting the configuration model reads from a BUILDFARM_* variable: the README's
    default is the model's (settings without a fixed default say what they fall back to)."""
    from buildfarm.config import FarmConfig

    rows = {row[0].strip("`"): row[1] for row in _table("env")}
    for field, variable in FarmConfig.environment_variables().items():
        default = FarmConfig.model_fields[field].default
        if default is None or not isinstance(default, str | int | float | tuple):
            continue
        expected = f"`{_default_as_readme_spells_it(default)}`"
        assert rows[variable] == expected, f"{variable}: README says {rows[variable]}, the model {default!r}"
