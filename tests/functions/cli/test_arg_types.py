"""The CLI's number types: ASCII digits, the whole string, in range; argparse names the bad
value and exits 2 before anything starts (`run --jobs`, `lambda --limit-bytes`,
`trigger --poll`, `build`/`runtime build --build`), `runtime build --execution-id`, and
`images --arch` (an arch or its alias)."""

from __future__ import annotations

import argparse
import re

import pytest

from buildfarm.cli import build_parser
from buildfarm.cli.arg_types import build_number, execution_id, seconds, whole_number


@pytest.mark.parametrize("bad", ["0", "65", "-1", "1_0", " 3", "3 ", "\u0663", "", "nan", "1e1"])
def test_whole_numbers_take_ascii_digits_in_range(bad):
    jobs = whole_number(1, 64)
    assert jobs("1") == 1 and jobs("64") == 64
    with pytest.raises(
        argparse.ArgumentTypeError, match=re.escape(f"{bad!r} is not a whole number from 1 to 64")
    ):
        jobs(bad)


@pytest.mark.parametrize("bad", ["0", "0.05", "-1", "nan", "inf", "1e3", "3601", "1.2345", "\u0661", "1\n"])
def test_seconds_take_ascii_decimals_in_range(bad):
    poll = seconds(0.1, 3600)
    assert poll("0.2") == 0.2 and poll("10") == 10.0 and poll("3600") == 3600.0
    with pytest.raises(
        argparse.ArgumentTypeError, match=re.escape("is not a number of seconds from 0.1 to 3600")
    ):
        poll(bad)


def test_build_numbers_are_the_stores_spelling():
    assert build_number("1") == 1 and build_number("999999999") == 999999999
    for bad in ("0", "01", "1000000000", "\u0663", "+1"):
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(f"invalid build number {bad!r}")):
            build_number(bad)


def test_execution_ids_are_what_a_plan_writes():
    assert execution_id("local-host-42-20261122T090000Z") == "local-host-42-20261122T090000Z"
    for bad in ("", "a b", "a/b", "$(id)", "x" * 81, "\u0663", "run-1\n"):
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(f"invalid execution id {bad!r}")):
            execution_id(bad)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["run", "--jobs", "0"], "argument --jobs: '0' is not a whole number from 1 to 64"),
        (["trigger", "--wait", "--poll", "-1"], "argument --poll: '-1' is not a number of seconds"),
        (["trigger", "--wait", "--poll", "nan"], "argument --poll: 'nan' is not a number of seconds"),
        (
            ["lambda", "deps", "--requirements", "r.txt", "--out", "o", "--limit-bytes", "-5"],
            "argument --limit-bytes: '-5' is not a whole number from 1 to 1000000000000",
        ),
        (["runtime", "build", "x", "--platform", "debian-12", "--build", "01"], "invalid build number '01'"),
        (
            ["runtime", "build", "x", "--platform", "debian-12", "--execution-id", "a b"],
            "argument --execution-id: invalid execution id 'a b'",
        ),
    ],
)
def test_the_commands_refuse_bad_numbers_by_name(argv, named, capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert named in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("action", ["build", "import-base"])
@pytest.mark.parametrize(
    ("given", "arch"), [("amd64", "x86_64"), ("arm64", "aarch64"), ("aarch64", "aarch64")]
)
def test_images_take_an_arch_or_its_alias(action, given, arch):
    args = build_parser().parse_args(["images", action, "--platform", "debian-12", "--arch", given])
    assert args.arch == arch


def test_images_refuse_an_unknown_arch_by_name(capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["images", "build", "--platform", "debian-12", "--arch", "amd46"])
    assert exited.value.code == 2
    assert "argument --arch: unknown arch 'amd46' (did you mean amd64?)" in capsys.readouterr().err
