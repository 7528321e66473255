"""Discovery (issue 14): `buildfarm releases` (list, add, import), `buildfarm platforms`, close-match
suggestions, amd64/arm64 and series accepted as input. Every refusal is one line on stderr, exit
status 2, no traceback, nothing written."""

from __future__ import annotations

import functools
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import Version

from buildfarm import clock, roots
from buildfarm.cli import SUBCOMMAND_MODULES, build_parser, main
from buildfarm.cli.build import make_spec
from buildfarm.platforms import load_registry
from buildfarm.releases import load_seed
from buildfarm.runners import availability, docker
from buildfarm.suggest import SuggestingArgumentParser, close_matches, did_you_mean, unknown_name

from ..conftest import NOW, all_keys

SHA256SUMS = Path(__file__).resolve().parents[4] / "shared" / "cpython-src" / "SHA256SUMS"
DIGEST_A = "ab" * 32
DIGEST_C = "cd" * 32


pytestmark = pytest.mark.usefixtures("offline_cli")  # and published_store: tests/functions/cli/conftest.py


def refused(capsys, argv: list[str]) -> str:
    """Run the CLI expecting a usage error: exit 2 and exactly one line on stderr, returned."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"buildfarm {argv[0]}: error: "), err
    return err.strip()


def newest(series: str) -> str:
    return max((v for v in load_seed().releases if v.startswith(series + ".")), key=Version)


# -- suggestions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "known", "expected"),
    [
        ("debain-12", ["debian-11", "debian-12", "debian-13"], ["debian-12"]),
        ("Debian-12", ["debian-12", "rhel-9"], ["debian-12"]),  # case is ignored
        ("ubuntu-20.04", ["ubuntu-2004", "ubuntu-2204"], ["ubuntu-2004"]),
        ("x86-64", ["x86_64", "aarch64"], ["x86_64"]),
        ("plan9", ["debian-12", "rhel-9"], []),
        ("3.31", ["3.15", "3.14", "3.13", "3.12"], []),  # everything equally close: no suggestion
    ],
)
def test_close_matches(value, known, expected):
    assert close_matches(value, known) == expected


def test_unknown_name_wording():
    assert did_you_mean("rhel9", ["rhel-8", "rhel-9"]) == " (did you mean rhel-9?)"
    assert did_you_mean("sparc", ["x86_64"]) == ""
    assert (
        unknown_name("platform", "debain-12", ["debian-12", "rhel-9"])
        == "unknown platform 'debain-12' (did you mean debian-12?); known: debian-12, rhel-9"
    )
    assert unknown_name("arch", "x", [], "enabled") == "unknown arch 'x'; enabled: none"


@pytest.fixture
def suggesting_parser():
    """The CLI's parser as cli/__init__ builds it, on SuggestingArgumentParser."""
    parser = SuggestingArgumentParser(prog="buildfarm")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["buidl"], "invalid choice: 'buidl' (did you mean build?)"),
        (
            ["plan", "--platfrom", "debian-12"],
            "unrecognized arguments: --platfrom (did you mean --platforms?)",
        ),
        (["plan", "--platfroms=debian-12"], "unrecognized arguments: --platfroms=debian-12 (did you mean"),
        (["build", "3.13.5", "--platform", "debian-12", "--runner", "dokcer"], "(did you mean docker?)"),
        (["releases", "ad"], "invalid choice: 'ad' (did you mean add?)"),
        (["plan", "--zzz"], "unrecognized arguments: --zzz\n"),
    ],
)
def test_mistyped_options_and_commands_suggest_the_closest(suggesting_parser, capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        suggesting_parser.parse_args(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and message in err and "Traceback" not in err


def test_suggesting_parser_parses_as_argparse_does(suggesting_parser):
    args = suggesting_parser.parse_args(["plan", "--platforms", "debian-12", "--arches", "amd64"])
    assert args.platforms == ["debian-12"] and not hasattr(args, "_option_suggestions")
    assert vars(args) == vars(
        build_parser().parse_args(["plan", "--platforms", "debian-12", "--arches", "amd64"])
    )


# -- releases ---------------------------------------------------------------------------------


def test_releases_lists_series_with_end_of_life_and_published_cells(published_store, capsys):
    with clock.using(clock.fixed_clock(NOW)):  # "ended" is decided on the day of the listing
        assert main(["releases", "--store", str(published_store.root)]) == 0
    out = capsys.readouterr().out
    assert f"releases known to {published_store.root}/releases.json" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line[:2] == "3."}
    assert rows["3.9"].split()[1:3] == ["2025-10-31", "(ended)"]  # a date already passed
    assert rows["3.11"].split()[2:5] == ["3.11.2", "2023-02-08", "Python-3.11.2.tgz"]
    assert rows["3.11"].split()[5] == "known"
    assert "3.12.11" in rows["3.12"] and "2028-10-31" in rows["3.12"]
    assert "buildfarm releases add X.Y.Z --sha256 HEX" in out

    assert main(["releases", "--store", str(published_store.root), "--series", "3.13", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    (series,) = document["series"]
    assert series["series"] == "3.13" and series["end_of_life"] == "2029-10-31"
    by_version = {r["version"]: r for r in series["releases"]}
    assert by_version["3.13.5"]["published_cells"] == 2  # debian-12 x86_64 and aarch64
    assert by_version["3.13.5"]["sha256_state"] == "known"


def test_a_published_version_missing_from_the_catalog_shows_its_sha256_missing(published_store, capsys):
    catalog = json.loads(published_store.read("releases.json")[0])
    del catalog["releases"]["3.13.5"]
    published_store.put_json("releases.json", catalog)
    # The seed knows 3.13.5: a store from elsewhere, with a version the seed lacks, is simulated.
    versions = json.loads(published_store.read("versions.json")[0])
    moved = json.dumps(versions["builds"].pop("3.13.5")).replace("builds/3.13.5/", "builds/3.12.99/")
    versions["builds"]["3.12.99"] = json.loads(moved)  # its keys too: each names its own directory
    published_store.put_json("versions.json", versions)
    assert main(["releases", "--store", str(published_store.root), "--series", "3.12", "--json"]) == 0
    releases = {r["version"]: r for r in json.loads(capsys.readouterr().out)["series"][0]["releases"]}
    assert releases["3.12.99"]["sha256_state"] == "missing" and releases["3.12.99"]["published_cells"] == 2


def test_releases_without_a_store_is_the_seed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # ./dist does not exist
    assert main(["releases", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["catalog"].startswith("the packaged seed (no store at")
    listed = {r["version"] for s in document["series"] for r in s["releases"]}
    assert listed == set(load_seed().releases)
    assert not (tmp_path / "dist").exists()


def test_add_a_release_then_plan_and_build_use_it(tmp_path, capsys):
    store = tmp_path / "store"
    store.mkdir()
    assert main(["releases", "add", "3.12.1", "--sha256", DIGEST_A.upper(), "--store", str(store)]) == 0
    assert "added 3.12.1 (Python-3.12.1.tar.xz, sha256 " + DIGEST_A in capsys.readouterr().out
    catalog = json.loads((store / "releases.json").read_text())
    assert catalog["releases"]["3.12.1"]["sha256"] == DIGEST_A  # stored lowercase
    assert set(load_seed().releases) < set(catalog["releases"])  # created from the seed
    # again, same digest: nothing to do, nothing rewritten
    before = (store / "releases.json").read_bytes()
    assert main(["releases", "add", "3.12.1", "--sha256", DIGEST_A, "--store", str(store)]) == 0
    assert "already known" in capsys.readouterr().out
    assert (store / "releases.json").read_bytes() == before

    assert main(["plan", "--store", str(store), "--versions", "3.12", "--platforms", "debian-12"]) == 0
    assert "3.12.1/debian-12/x86_64" in capsys.readouterr().out
    argv = ["build", "3.12", "--platform", "debian-12", "--arch", "arm64", "--store", str(store)]
    spec = make_spec(build_parser().parse_args(argv), "exec-x")
    assert (spec.version, spec.arch, spec.source.sha256) == ("3.12.1", "aarch64", DIGEST_A)
    assert spec.source.url.endswith("/3.12.1/Python-3.12.1.tar.xz")


def test_add_refuses_to_change_a_known_digest_unless_forced(tmp_path, capsys):
    store = tmp_path / "store"
    store.mkdir()
    tgz = ["--file", "Python-3.12.1.tgz"]
    assert main(["releases", "add", "3.12.1", "--sha256", DIGEST_A, *tgz, "--store", str(store)]) == 0
    capsys.readouterr()
    before = (store / "releases.json").read_bytes()
    err = refused(capsys, ["releases", "add", "3.12.1", "--sha256", DIGEST_C, *tgz, "--store", str(store)])
    assert f"3.12.1 is already in releases.json as Python-3.12.1.tgz sha256 {DIGEST_A}" in err
    assert "nothing written (--force replaces it)" in err
    assert (store / "releases.json").read_bytes() == before
    argv = ["releases", "add", "3.12.1", "--sha256", DIGEST_C, "--force", "--store", str(store)]
    assert main(argv) == 0
    assert "replaced 3.12.1 (Python-3.12.1.tar.xz" in capsys.readouterr().out
    assert json.loads((store / "releases.json").read_text())["releases"]["3.12.1"]["sha256"] == DIGEST_C


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["3.12", "--sha256", DIGEST_A], "malformed Python version '3.12'"),
        (["3.1\u0662.1", "--sha256", DIGEST_A], "malformed Python version"),  # Arabic-Indic digit two
        (["3.12.1 ", "--sha256", DIGEST_A], "malformed Python version '3.12.1 '"),
        (["3.12.1", "--sha256", "xyz"], "malformed sha256 'xyz' (expected 64 hex digits)"),
        (["3.12.1", "--sha256", DIGEST_A[:-1]], "malformed sha256"),
        (["3.12.1", "--sha256", DIGEST_A, "--file", "Python-3.12.2.tgz"], "not one of Python-3.12.1.tar.xz"),
        (["3.12.1", "--sha256", DIGEST_A, "--file", "../Python-3.12.1.tgz"], "file '../Python-3.12.1.tgz'"),
    ],
)
def test_add_validates_before_writing(tmp_path, capsys, args, message):
    store = tmp_path / "store"
    assert message in refused(capsys, ["releases", "add", *args, "--store", str(store)])
    assert not store.exists()


def test_import_a_mirrors_sha256sums(tmp_path, capsys):
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(
        "# a mirror's list\n"
        f"{DIGEST_A}  Python-3.12.1.tgz\n"
        f"{DIGEST_C}  Python-3.12.1.tar.xz\n"  # both forms: .tar.xz is taken
        f"{DIGEST_A} *3.10.4/Python-3.10.4.tgz\n"  # binary mode, in a directory
        f"{DIGEST_C}  Python-3.13.5.tar.xz.asc\n"  # not a source tarball
        f"SHA256 (Python-3.14.0rc2.tar.xz) = {DIGEST_A}\n"  # BSD form
        "\n"
    )
    store = tmp_path / "store"
    store.mkdir()
    assert main(["releases", "import", f"file://{sums}", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "added 3.14.0rc2, 3.12.1, 3.10.4; 0 already known, 1 other file(s) ignored" in out
    releases = json.loads((store / "releases.json").read_text())["releases"]
    assert (releases["3.12.1"]["file"], releases["3.12.1"]["sha256"]) == ("Python-3.12.1.tar.xz", DIGEST_C)
    assert releases["3.10.4"]["file"] == "Python-3.10.4.tgz"
    assert releases["3.14.0rc2"]["prerelease"] is True


def test_import_the_shared_mirror_knows_the_seed(tmp_path, capsys):
    if not SHA256SUMS.is_file():
        pytest.skip(f"{SHA256SUMS} is not on this machine")
    (tmp_path / "s").mkdir()
    assert main(["releases", "import", str(SHA256SUMS), "--store", str(tmp_path / "s")]) == 0
    assert f"added none; {len(load_seed().releases)} already known" in capsys.readouterr().out
    assert not (tmp_path / "s" / "releases.json").exists()  # nothing new: nothing written


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (f"{DIGEST_A}  Python-3.12.1.tgz\nnot a checksum line\n", "line 2 is not '<sha256>  <file>'"),
        ("README.md\n", "line 1 is not"),
        (f"{DIGEST_A}  README.md\n", "lists no CPython source tarball"),
        # A digest contradicting a known release stops the whole import (3.12.2 is not added).
        (f"{DIGEST_A}  Python-3.12.2.tar.xz\n{DIGEST_A}  Python-3.13.5.tar.xz\n", "3.13.5 is already in"),
    ],
)
def test_import_is_all_or_nothing(tmp_path, capsys, content, message):
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(content)
    store = tmp_path / "store"
    store.mkdir()
    assert message in refused(capsys, ["releases", "import", str(sums), "--store", str(store)])
    assert not (store / "releases.json").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["releases", "add", "3.12.1", "--sha256", DIGEST_A],
        ["releases", "import", "SHA256SUMS"],
    ],
)
def test_add_and_import_refuse_a_store_that_does_not_exist(tmp_path, capsys, monkeypatch, argv):
    """A mistyped --store (or BUILDFARM_STORE) is refused, not made a new store, as plan does;
    the default ./dist is made."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "SHA256SUMS").write_text(f"{DIGEST_A}  Python-3.12.1.tgz\n")
    (tmp_path / "store").mkdir()
    typo = tmp_path / "stroe"
    err = refused(capsys, [*argv, "--store", str(typo)])
    assert f"store {typo} does not exist: pass --store (or set BUILDFARM_STORE) to an existing store" in err
    assert f"create its directory first (mkdir {typo})" in err
    monkeypatch.setenv("BUILDFARM_STORE", str(typo))
    assert "does not exist" in refused(capsys, argv)
    assert not typo.exists() and not (tmp_path / "dist").exists()
    assert main([*argv, "--store", str(tmp_path / "store")]) == 0  # an existing one: added
    assert "3.12.1" in json.loads((tmp_path / "store" / "releases.json").read_text())["releases"]
    monkeypatch.delenv("BUILDFARM_STORE")
    assert main(argv) == 0  # no store named: the default ./dist starts here (the README's air-gapped step)
    assert "3.12.1" in json.loads((tmp_path / "dist" / "releases.json").read_text())["releases"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("/nonexistent/SHA256SUMS", "cannot read /nonexistent/SHA256SUMS: No such file or directory"),
        ("ftp://mirror/SHA256SUMS", "use a file, or an http://, https:// or file:// URL"),
        ("http://127.0.0.1:9/SHA256SUMS", "cannot read http://127.0.0.1:9/SHA256SUMS"),
    ],
)
def test_import_source_errors(tmp_path, capsys, source, message):
    assert message in refused(capsys, ["releases", "import", source, "--store", str(tmp_path / "s")])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--series", "3.x"], "malformed series '3.x'"),
        (["--series", "3.8"], "unknown series '3.8' (did you mean 3.9?); known: "),
        (["--store", "/nonexistent/store"], "store /nonexistent/store does not exist"),
    ],
)
def test_releases_listing_errors(capsys, argv, message):
    assert message in refused(capsys, ["releases", *argv])


# -- platforms --------------------------------------------------------------------------------


@pytest.fixture
def steady_machine(monkeypatch):
    """The machine's own probes (the Docker engine, the Debian mirror) answer once per test, so
    the CLI's table, its JSON and the test judge the same machine: a CI run started beside the
    suite started dockerd between them, and the table and the JSON disagreed."""
    monkeypatch.setattr(docker, "docker_problem", functools.cache(docker.docker_problem))
    monkeypatch.setattr(roots, "mirror_problem", functools.cache(roots.mirror_problem))


@pytest.mark.usefixtures("steady_machine")
def test_platforms_table_and_json_agree_with_the_registry_and_runners(capsys):
    registry = load_registry()
    assert main(["platforms"]) == 0
    out = capsys.readouterr().out
    rows = {
        line.split()[0]: line
        for line in out.splitlines()
        if line.split() and line.split()[0] in registry.platforms
    }
    assert set(rows) == set(registry.platforms)
    assert "2025-05-31      ended" in rows["ubuntu-2004"]  # its end of support has passed
    assert "Debian 12 (bookworm)" in rows["debian-12"] and "  deb  " in rows["debian-12"]
    assert "  rpm  " in rows["rhel-9"]

    assert main(["platforms", "--json"]) == 0
    entries = {e["id"]: e for e in json.loads(capsys.readouterr().out)}
    assert set(entries) == set(registry.platforms)
    for platform_id in ("debian-12", "rhel-9"):
        platform = registry.get(platform_id)
        entry = entries[platform_id]
        assert entry["arches"] == list(platform.arches)
        assert entry["end_of_support"] == platform.end_of_support.isoformat()
        # The runner column is what buildfarm.runners says about this machine.
        assert entry["runners"] == {arch: availability(platform, arch, registry) for arch in platform.arches}
        can = "; ".join(
            f"{arch}: {', '.join(n for n, why in runners.items() if why is None) or 'none'}"
            for arch, runners in entry["runners"].items()
        )
        assert rows[platform_id].rstrip().endswith(can)


@pytest.mark.usefixtures("steady_machine")
def test_one_platform_says_why_each_runner_can_or_cannot(capsys):
    registry = load_registry()
    assert main(["platforms", "rhel-9"]) == 0
    out = capsys.readouterr().out
    for arch in ("x86_64", "aarch64"):
        for name, why in availability(registry.get("rhel-9"), arch, registry).items():
            assert f"  {name:<7} {why or 'can build it here'}" in out


def test_platforms_marks_what_this_deployment_does_not_enable(capsys, monkeypatch):
    monkeypatch.setenv("BUILDFARM_ENABLED_PLATFORMS", "debian-12")
    assert main(["platforms", "--json"]) == 0
    entries = {e["id"]: e for e in json.loads(capsys.readouterr().out)}
    assert entries["debian-13"]["enabled"] is False and entries["debian-13"]["scheduled"] is False
    assert entries["debian-12"]["enabled"] is True


def test_mistyped_platform_suggests(capsys):
    err = refused(capsys, ["platforms", "debain-12"])
    assert err.startswith(
        "buildfarm platforms: error: unknown platform 'debain-12' (did you mean debian-12?); known: "
    )


# -- input accepted alike everywhere ----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--platforms", "debain-12"],
            "unknown platform 'debain-12' (did you mean debian-12?); known: ubuntu-2004",
        ),
        (
            ["--arches", "arm"],
            "unknown arch 'arm' (did you mean arm64?); known: x86_64, aarch64, amd64, arm64",
        ),
        (["--arches", "x86_64,amd64"], "duplicate arch 'x86_64'"),
        (["--versions", "3.13.x"], "malformed Python version '3.13.x' (expected a release like 3.13.5"),
    ],
)
def test_plan_suggests(published_store, capsys, argv, message):
    assert message in refused(capsys, ["plan", "--store", str(published_store.root), *argv])


def test_plan_offers_only_the_platforms_it_accepts(published_store, capsys, monkeypatch):
    monkeypatch.setenv("BUILDFARM_ENABLED_PLATFORMS", "debian-12,ubuntu-2204")
    err = refused(capsys, ["plan", "--store", str(published_store.root), "--platforms", "ubuntu-20.04"])
    assert err.endswith("; enabled: debian-12, ubuntu-2204")
    assert "ubuntu-2004" not in err


def test_plan_takes_arch_aliases(published_store, capsys):
    argv = ["plan", "--store", str(published_store.root), "--versions", "3.12.11", "--platforms", "debian-12"]
    assert main([*argv, "--arches", "amd64", "--json"]) == 0
    assert [b["cell"] for b in json.loads(capsys.readouterr().out)["build"]] == ["3.12.11/debian-12/x86_64"]
    assert main([*argv, "--arches", "arm64", "--json"]) == 0
    assert [b["cell"] for b in json.loads(capsys.readouterr().out)["build"]] == ["3.12.11/debian-12/aarch64"]


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (
            "3.12.1",
            "unknown Python version '3.12.1': not in releases.json (known 3.12.x: 3.12.11); "
            "add it with: buildfarm releases add 3.12.1 --sha256 HEX",
        ),
        (
            "3.10.1",
            "(no 3.10.x is known; nearest: 3.11.2, 3.9.2); add it with: buildfarm releases add 3.10.1",
        ),
        (
            "3.14",
            "unknown series '3.14': no release of it in releases.json (known series: 3.13, 3.12, 3.11, 3.9)",
        ),
    ],
)
def test_an_unknown_version_names_the_known_ones_and_how_to_add_it(published_store, capsys, version, message):
    before = all_keys(published_store)
    assert message in refused(capsys, ["plan", "--store", str(published_store.root), "--versions", version])
    assert all_keys(published_store) == before


def test_build_takes_a_series_and_arch_aliases(tmp_path):
    store = str(tmp_path / "store")
    for series in ("3.13", "3.11"):
        argv = ["build", series, "--platform", "debian-12", "--arch", "amd64", "--store", store]
        spec = make_spec(build_parser().parse_args(argv), "exec-x")
        assert (spec.version, spec.arch) == (newest(series), "x86_64")
        assert spec.source.sha256 == load_seed().releases[spec.version].sha256
    assert not Path(store).exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["3.12", "--platform", "debian-12"], "unknown series '3.12': no release of it in releases.json"),
        (
            ["3.12.1", "--platform", "debian-12"],
            "no known sha256 for Python-3.12.1.tar.xz (no 3.12.x is known",
        ),
        (["3.13.5", "--platform", "debain-12"], "unknown platform 'debain-12' (did you mean debian-12?)"),
        (
            ["3.13.5", "--platform", "debian-12", "--arch", "x86-64"],
            "unknown arch 'x86-64' (did you mean x86_64?)",
        ),
        (["3.13.x", "--platform", "debian-12"], "or a series like 3.13)"),
    ],
)
def test_build_input_errors(tmp_path, capsys, args, message):
    store = tmp_path / "store"
    assert message in refused(capsys, ["build", *args, "--store", str(store)])
    assert not store.exists()


def test_a_real_process_prints_one_line_and_no_traceback(tmp_path):
    """The installed entry point, not just main(): what a user's terminal shows."""
    entry_point = str(Path(sys.executable).parent / "buildfarm")
    command = [entry_point, "releases", "add", "3.12", "--sha256", DIGEST_A]
    result = subprocess.run(
        [*command, "--store", str(tmp_path / "s")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr == (
        "buildfarm releases: error: malformed Python version '3.12' (expected e.g. 3.13.5 or 3.14.0rc2)\n"
    )
    assert not (tmp_path / "s").exists()
