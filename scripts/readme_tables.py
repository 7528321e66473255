"""The README's generated tables: supported platforms and series, from the platform registry;
the cdk.json context keys, from the stack's configuration model (infra.config: its defaults).

    .venv/bin/python scripts/readme_tables.py           # print the tables
    .venv/bin/python scripts/readme_tables.py --write   # rewrite them in README.md

Each table sits between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in README.md;
tests/test_readme.py fails when one is out of date with builder_image/platforms.json or
infra/config.py.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from buildfarm.platforms import Registry, load_registry

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the `infra` package lives at the top level


def platforms_table(registry: Registry) -> str:
    """One row per platform: what it is, its arches, package, OpenSSL, BOLT and support end."""
    rows = [
        "| id | distribution | arches | package | OpenSSL | BOLT | end of support |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for platform in registry.platforms.values():
        family = registry.families[platform.family]
        bolt = ", ".join(platform.bolt.arches) if platform.bolt else "—"
        rows.append(
            f"| `{platform.id}` | {platform.name} | {', '.join(platform.arches)} "
            f"| .{family.package_format} | {platform.openssl} | {bolt} | {platform.end_of_support} |"
        )
    return "\n".join(rows)


def series_table(registry: Registry) -> str:
    """One row per CPython series the registry dates: its upstream end of life."""
    rows = ["| series | end of life |", "| --- | --- |"]
    rows += [f"| {series} | {day} |" for series, day in registry.series_end_of_life.items()]
    return "\n".join(rows)


def _default(value: object) -> str:
    """A model default as cdk.json spells it (no value: `""`)."""
    if value is None or value in ((), ""):
        return '""'
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def cdk_keys_table(registry: Registry) -> str:
    """One row per context key (infra.config.CONTEXT_KEYS): its default, the model's, and meaning."""
    from infra.config import CONTEXT_KEYS, CONTEXT_PREFIX, InfraConfig

    fields = {field.alias: field for field in InfraConfig.model_fields.values()}
    budget = str(InfraConfig.model_validate({}).cells_per_execution)
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for key, (note, meaning) in CONTEXT_KEYS.items():
        default = f"`{_default(fields[key].default)}`" + (f": {note}" if note else "")
        rows.append(f"| `{CONTEXT_PREFIX}{key}` | {default} | {meaning.replace('{budget}', budget)} |")
    return "\n".join(rows)


TABLES = {"platforms": platforms_table, "series": series_table, "cdk-keys": cdk_keys_table}


def block(name: str) -> re.Pattern[str]:
    """The README section a generated table lives in, markers included."""
    return re.compile(rf"(<!-- {name}:begin -->\n)(.*?)(<!-- {name}:end -->)", re.S)


def rendered(text: str, registry: Registry) -> str:
    """README text with every generated table replaced by its current rendering."""
    for name, render in TABLES.items():
        pattern = block(name)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- {name}:begin --> ... <!-- {name}:end --> block")
        text = pattern.sub(lambda m, r=render: m[1] + r(registry) + "\n" + m[3], text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the tables in README.md")
    args = parser.parse_args(argv)
    registry = load_registry()
    if not args.write:
        for name, render in TABLES.items():
            print(f"<!-- {name} -->\n{render(registry)}\n")
        return 0
    README.write_text(rendered(README.read_text(), registry))
    return 0


if __name__ == "__main__":
    sys.exit(main())
