"""Runtime cells in the cloud workflow: the Batch job's `buildfarm runtime build ... --build N`
builds the number the planner claimed (the command line parsed as the job would run it). Fast:
no build runs, a directory store."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildfarm.cli import build_parser, main
from buildfarm.cli.runtime_cmds import runtime_request

TOML = """name = "svc"
version = "2.1.0"
python = "3.13"
requirements = "svc/requirements.txt"
prefix = "/opt/runtimes/svc/2.1.0"
platforms = ["debian-12"]
arches = ["x86_64"]
"""


@pytest.fixture
def definitions(tmp_path: Path) -> Path:
    directory = tmp_path / "defs"
    (directory / "svc").mkdir(parents=True)
    (directory / "svc" / "requirements.txt").write_text("idna==3.10 --hash=sha256:" + "ab" * 32 + "\n")
    (directory / "svc.toml").write_text(TOML)
    return directory


def job_argv(definitions: Path, store: Path, build: str) -> list[str]:
    return [
        "runtime", "build", "svc", "--platform", "debian-12", "--arch", "x86_64",
        "--runtime-version", "2.1.0", "--build", build, "--store", str(store),
        "--definitions", str(definitions),
    ]  # fmt: skip


def test_the_claimed_build_number_is_the_one_requested(definitions: Path, tmp_path: Path) -> None:
    args = build_parser().parse_args(job_argv(definitions, tmp_path / "store", "7"))
    request = runtime_request(args)
    assert (request.build, request.version, request.platform, request.arch) == (
        7,
        "2.1.0",
        "debian-12",
        "x86_64",
    )
    argv = job_argv(definitions, tmp_path / "store", "7")
    del argv[argv.index("--build") : argv.index("--build") + 2]
    without = build_parser().parse_args(argv)
    assert runtime_request(without).build is None  # a local build takes the next free number


@pytest.mark.parametrize("bad", ["0", "07", "-1", "x", "1234567890"])
def test_a_bad_build_number_is_one_line_and_builds_nothing(
    bad: str, definitions: Path, tmp_path: Path, capsys
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(job_argv(definitions, tmp_path / "store", bad))
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.endswith(f"argument --build: invalid build number {bad!r} (1 to 999999999, no leading zeros)")
    assert not (tmp_path / "store").exists()
