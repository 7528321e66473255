"""Runtime definitions (TOML -> RuntimeDefinition), the planner's pure decisions and the
command line's refusals that need no build: fast, no network, no root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from buildfarm.cli import build_parser, main
from buildfarm.errors import UsageError
from buildfarm.layout import FILE_NAME_PATTERN
from buildfarm.models import Attestations
from buildfarm.platforms import PLATFORM_ID
from buildfarm.runtimes.definitions import (
    PREFIX_RULE,
    REPOSITORY_DEFINITIONS,
    RUNTIME_VERSION,
    DefinitionError,
    find_definition,
    load_definition,
    load_definitions,
    unhashed_requirements,
)
from buildfarm.runtimes.keys import needs_build, runtime_artifact_dir, runtime_cell_name
from buildfarm.runtimes.package import deb_version, file_names, manifest_schema
from buildfarm.runtimes.python_source import newest_published

HASH = "--hash=sha256:" + "ab" * 32
GOOD = {
    "name": "svc",
    "version": "2.1.0",
    "python": "3.13",
    "requirements": "svc/requirements.txt",
    "prefix": "/opt/runtimes/svc/2.1.0",
    "platforms": ["debian-12"],
    "arches": ["x86_64"],
}


REFUSED_PREFIXES = (
    "/usr", "/opt", "/opt/runtimes", "/usr/local/svc/{version}", "/srv/svc/2.1.0",
    "/opt/runtimes/svc",  # no version: every version would own the same files
    "/opt/runtimes/{version}",  # no name: every runtime's 2.1.0 would
    "/opt/python/{name}/{version}",  # the farm's Python builds
)  # fmt: skip


def _toml(values: dict) -> str:
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())


def write_definition(directory: Path, lock_text: str = f"six==1.17.0 {HASH}\n", **changes) -> Path:
    values = {**GOOD, **changes}
    (directory / "svc").mkdir(parents=True, exist_ok=True)
    (directory / "svc" / "requirements.txt").write_text(lock_text)
    path = directory / f"{values['name']}.toml"
    path.write_text(_toml(values))
    return path


def test_the_repository_example_loads_with_every_requirement_hashed() -> None:
    definitions = {d.name: d for d in load_definitions()}
    example = definitions["fastapi-demo"]
    assert example.python == "3.13" and example.prefix == "/opt/runtimes/{name}/{version}"
    assert example.at_version(example.version).prefix == "/opt/runtimes/fastapi-demo/1.0.0"
    assert set(example.arches) == {"x86_64", "aarch64"}
    text = example.requirements_path.read_text()
    assert "fastapi==" in text and "uvicorn==" in text and not unhashed_requirements(text)
    assert example.lock_kind == "requirements.txt" and len(example.lock_sha256()) == 64


def test_a_valid_definition_and_arch_aliases(tmp_path: Path) -> None:
    definition = load_definition(write_definition(tmp_path, arches=["amd64", "arm64"]))
    assert definition.arches == ("x86_64", "aarch64")
    assert definition.requirements_path == (tmp_path / "svc" / "requirements.txt").resolve()
    assert definition.resolved_version() == "2.1.0"
    assert definition.resolved_version("2.1.0+hotfix1") == "2.1.0+hotfix1"
    with pytest.raises(UsageError, match="runtime version 'Bad Version'"):
        definition.resolved_version("Bad Version")
    with pytest.raises(
        UsageError, match=r"runtime version '2\.1\.0~rc1' must be lowercase letters, digits and \. \+ -$"
    ):
        definition.resolved_version("2.1.0~rc1")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"prefix": "opt/x"}, "prefix 'opt/x' must be an absolute"),
        ({"prefix": "/opt/../etc"}, "prefix '/opt/../etc'"),
        ({"prefix": "/opt/a b"}, "prefix '/opt/a b' may only hold"),
        ({"version": "V1 0"}, "version 'V1 0' must be"),
        # '~' is no store key character: it would fail every Plan, not just this definition.
        (
            {"version": "1.0.0~rc1"},
            "version '1.0.0~rc1' must be 'git-tag' or lowercase letters, digits and . + -",
        ),
        ({"python": "3.13.x"}, "malformed Python version '3.13.x'"),
        ({"platforms": ["debain-12"]}, "unknown platform 'debain-12' (did you mean debian-12?)"),
        ({"arches": ["sparc64"]}, "unknown arch 'sparc64'"),
        ({"requirements": "svc/missing.txt"}, "requirements 'svc/missing.txt': no such file"),
        ({"colour": "blue"}, "colour: Extra inputs are not permitted"),
        # System directories, or no directory of the runtime's own: refused with the rule.
        *(({"prefix": prefix}, f"prefix {prefix!r} must be {PREFIX_RULE}") for prefix in REFUSED_PREFIXES),
        ({"prefix": "/opt/{tag}/{version}"}, "prefix '/opt/{tag}/{version}' may only hold letters"),
        # A tag is not known when the TOML is written: spelled out, the prefix cannot follow it.
        ({"version": "git-tag", "prefix": "/opt/runtimes/svc/git-tag"}, f"must be {PREFIX_RULE}"),
    ],
)
def test_bad_definitions_are_one_line_naming_the_file_and_value(tmp_path: Path, changes, message) -> None:
    path = write_definition(tmp_path, **changes)
    with pytest.raises(DefinitionError) as caught:
        load_definition(path)
    assert message in str(caught.value) and str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_hash_inside_a_requirements_url_is_no_hash_option() -> None:
    url = f"pkg @ https://example.org/{HASH}/pkg-1.0-py3-none-any.whl"
    assert unhashed_requirements(f"{url}\nsix==1.17.0 {HASH}\n") == ["pkg"]


def test_every_requirement_needs_a_hash(tmp_path: Path) -> None:
    requirements = f"six==1.17.0 \\\n    {HASH}\n# a comment\n\nidna==3.10\n"
    with pytest.raises(
        DefinitionError, match=r"every requirement needs --hash=sha256: \(unhashed: idna==3.10\)"
    ):
        load_definition(write_definition(tmp_path, lock_text=requirements))


@pytest.mark.parametrize(
    "option",
    ["-r base.txt", "--requirement=base.txt", "-c constraints.txt", "-e ./src",
     "--index-url https://example.org/simple", "--extra-index-url https://example.org/simple", "-f ./wheels"],
)  # fmt: skip
def test_a_requirements_txt_holds_hashed_pins_only(tmp_path: Path, option: str) -> None:
    """An include, an editable or an index would change what is installed while the file (the
    lock's digest) stays the same: the option line is refused, by its number."""
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "base.txt").write_text(f"idna==3.10 {HASH}\n")
    lock = f"# pinned\nsix==1.17.0 \\\n    {HASH}\n{option}\n"
    with pytest.raises(DefinitionError) as caught:
        load_definition(write_definition(tmp_path, lock_text=lock))
    assert f"requirements 'svc/requirements.txt' line 4: {option!r} is refused" in str(caught.value)


@pytest.mark.parametrize(
    ("prefix", "installed"),
    [
        ("/opt/runtimes/{name}/{version}", "/opt/runtimes/svc/2.1.0"),
        ("/opt/{name}/{version}", "/opt/svc/2.1.0"),
        ("/opt/acme/{name}-{version}", "/opt/acme/svc-2.1.0"),
        ("/opt/runtimes/svc/2.1.0", "/opt/runtimes/svc/2.1.0"),  # spelled out
        (None, "/opt/runtimes/svc/2.1.0"),  # the default
    ],
)
def test_prefixes_under_opt_naming_the_runtime_and_its_version(
    tmp_path: Path, prefix: str | None, installed: str
) -> None:
    path = write_definition(tmp_path, **({"prefix": prefix} if prefix else {}))
    if prefix is None:
        path.write_text("".join(line for line in path.read_text().splitlines(True) if "prefix" not in line))
    assert load_definition(path).at_version("2.1.0").prefix == installed


def test_the_name_must_match_the_file_and_the_pattern(tmp_path: Path) -> None:
    path = write_definition(tmp_path)
    path.rename(tmp_path / "other.toml")
    with pytest.raises(DefinitionError, match="name 'svc' must match the file name"):
        load_definition(tmp_path / "other.toml")
    with pytest.raises(DefinitionError, match="name 'Svc_1' must be lowercase"):
        load_definition(write_definition(tmp_path, name="Svc_1"))


def test_an_unknown_runtime_suggests_the_closest(tmp_path: Path) -> None:
    write_definition(tmp_path)
    with pytest.raises(UsageError, match=r"unknown runtime 'scv' \(did you mean svc\?\); defined: svc"):
        find_definition("scv", tmp_path)
    assert find_definition("fastapi-demo").name == "fastapi-demo"
    assert REPOSITORY_DEFINITIONS.name == "runtimes"


def test_keys_and_package_names() -> None:
    assert runtime_cell_name("svc", "2.1.0", "debian-12", "x86_64") == "svc/2.1.0/debian-12/x86_64"
    assert (
        runtime_artifact_dir("svc", "2.1.0", "debian-12", "x86_64", 3)
        == "runtimes/svc/2.1.0/debian-12/x86_64/3"
    )
    assert deb_version("v1.2", 1) == "1.2-1" and deb_version("main", 2) == "0+main-2"
    names = file_names("svc", "2.1.0", "debian-12", "aarch64", 4)
    assert names == {
        "tarball": "runtime-svc-2.1.0-debian-12-aarch64.tar.gz",
        "deb": "runtime-svc-2.1.0_2.1.0-4_arm64.deb",
        "rpm": "runtime-svc-2.1.0-2.1.0-4.aarch64.rpm",
    }


def _catalog(*cells: tuple[str, str, str, int]) -> dict:
    builds: dict = {}
    for version, platform, arch, build in cells:
        key = f"builds/{version}/{platform}/{arch}/{build}/python.tar.gz"
        entry = {
            "build": build,
            "artifacts": [{"type": "tarball", "key": key, "sha256": "0" * 64, "size": 1}],
        }
        builds.setdefault(version, {}).setdefault(platform, {})[arch] = entry
    return {"builds": builds}


def test_the_newest_published_python_of_the_series_for_the_cell() -> None:
    catalog = _catalog(
        ("3.13.5", "debian-12", "x86_64", 2), ("3.13.10", "debian-12", "x86_64", 1),
        ("3.13.11", "debian-11", "x86_64", 1), ("3.14.0", "debian-12", "x86_64", 1),
    )  # fmt: skip
    chosen = newest_published(catalog, "3.13", "debian-12", "x86_64")
    assert (chosen.version, chosen.build) == ("3.13.10", 1)  # 3.13.10 > 3.13.5 (not string order)
    assert newest_published(catalog, "3.13.5", "debian-12", "x86_64").build == 2
    assert newest_published(catalog, "3.13", "debian-12", "aarch64") is None
    assert newest_published(catalog, "3.12", "debian-12", "x86_64") is None


def test_a_new_python_or_a_changed_lock_plans_a_new_runtime_build() -> None:
    published = {"python": {"version": "3.13.5", "build": 1}, "requirements": {"sha256": "a" * 64}}
    assert needs_build(None, "a" * 64, "3.13.5", 1) == "not built yet"
    assert needs_build(published, "a" * 64, "3.13.5", 1) is None
    assert needs_build(published, "b" * 64, "3.13.5", 1) == "the lock changed"
    assert needs_build(published, "a" * 64, "3.13.6", 1) == "Python 3.13.6 is newer than 3.13.5"
    assert "build 2 replaced build 1" in needs_build(published, "a" * 64, "3.13.5", 2)


def test_the_manifest_schema_is_a_valid_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(manifest_schema())


def test_the_manifest_schema_documents_the_attestations_a_runtime_lists() -> None:
    """runtimes.package lists SHA256SUMS and its signature (Attestations.checksums_only), and
    only those; a manifest older than the field stays valid."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = manifest_schema()
    attestations = {**schema["properties"]["attestations"], "$defs": schema["$defs"]}
    listed = Attestations.checksums_only().model_dump(exclude_none=True)
    jsonschema.validate(listed, attestations)
    unsigned, escaping = {"checksums": "SHA256SUMS"}, {**listed, "checksums": "../x"}
    for bad in ({**listed, "sbom": "sbom.cdx.json"}, unsigned, escaping):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, attestations)
    assert "attestations" not in schema["required"]


def test_the_manifest_schema_spells_the_names_as_the_code_does() -> None:
    """One rule for a file name (layout.FILE_NAME_PATTERN), a platform id and a runtime version."""
    schema = manifest_schema()
    assert schema["$defs"]["file"]["pattern"] == f"^{FILE_NAME_PATTERN}$"
    assert schema["properties"]["platform"]["pattern"] == f"^{PLATFORM_ID.pattern}$"
    assert schema["properties"]["artifacts"]["items"]["properties"]["file"] == {"$ref": "#/$defs/file"}
    version = schema["properties"]["runtime"]["properties"]["version"]["pattern"]
    assert version == f"^{RUNTIME_VERSION.pattern}$"


def test_cli_refusals_publish_nothing(tmp_path: Path, capsys) -> None:
    store = tmp_path / "store"
    store.mkdir()
    write_definition(tmp_path / "defs")
    argv = ["runtime", "build", "svc", "--platform", "debian-12", "--store", str(store),
            "--definitions", str(tmp_path / "defs"), "--cache", str(tmp_path / "cache")]  # fmt: skip
    assert main(argv) == 2
    suggested = "buildfarm run --versions 3.13 --platforms debian-12 --arches x86_64"
    assert capsys.readouterr().err.strip().splitlines() == [
        f"buildfarm runtime: error: no published Python 3.13 build for debian-12/x86_64 in {store} "
        f"(publish one first: {suggested})"
    ]
    # The suggestion is a command the CLI takes as written.
    parsed = build_parser().parse_args(suggested.split()[1:])
    assert (parsed.versions, parsed.platforms, parsed.arches) == (["3.13"], ["debian-12"], ["x86_64"])
    assert main([*argv[:2], "scv", *argv[3:]]) == 2
    assert "unknown runtime 'scv' (did you mean svc?)" in capsys.readouterr().err
    assert main([*argv, "--arch", "arm64"]) == 2  # the definition has x86_64 only
    assert "not defined for debian-12/aarch64" in capsys.readouterr().err
    assert main([*argv[:4], "debain-12", *argv[5:]]) == 2
    assert "unknown platform 'debain-12' (did you mean debian-12?)" in capsys.readouterr().err
    assert not (store / "runtimes").exists()


def test_the_plan_of_runtime_cells(tmp_path: Path) -> None:
    from buildfarm.runtimes.planning import plan_runtimes

    definition = load_definition(write_definition(tmp_path, platforms=["debian-12", "debian-11"]))
    catalog = _catalog(("3.13.5", "debian-12", "x86_64", 1), ("3.13.6", "debian-12", "x86_64", 1))
    first = plan_runtimes([definition], catalog, {})
    assert [(item.name, item.python.version, item.reason) for item in first.build] == [
        ("svc/2.1.0/debian-12/x86_64", "3.13.6", "not built yet")
    ]
    assert first.waiting == [
        (("svc", "2.1.0", "debian-11", "x86_64"), "no published Python 3.13 for debian-11/x86_64")
    ]
    built = {
        "python": {"version": "3.13.6", "build": 1},
        "requirements": {"sha256": definition.lock_sha256()},
    }
    cell = ("svc", "2.1.0", "debian-12", "x86_64")
    assert plan_runtimes([definition], catalog, {cell: built}).current == [cell]
    newer = _catalog(("3.13.7", "debian-12", "x86_64", 1))
    assert [item.reason for item in plan_runtimes([definition], newer, {cell: built}).build] == [
        "Python 3.13.7 is newer than 3.13.6"
    ]
    tagged = plan_runtimes([definition], catalog, {}, versions={"svc": "2.2.0"})
    assert tagged.build[0].cell == ("svc", "2.2.0", "debian-12", "x86_64")
