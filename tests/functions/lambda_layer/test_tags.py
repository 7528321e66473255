"""The pure parts of the dependency builder: which wheels run on a Lambda target, the pip
options that select them, hashes read from requirements files, and pip's failures in one line."""

from __future__ import annotations

import pytest

from buildfarm.errors import UsageError
from buildfarm.lambda_layer.piprun import hash_mismatch, last_error, resolution_error
from buildfarm.lambda_layer.requirements import hashes_by_project, logical_lines, pinned_line
from buildfarm.lambda_layer.tags import Target, TargetError, is_compatible, pip_target_options, sort_downloads

AL2023_X86 = Target("3.13", "x86_64", "2.34")
AL2023_ARM = Target("3.13", "aarch64", "2.34")


def test_al2023_platforms_run_from_its_glibc_down_to_manylinux1():
    platforms = AL2023_X86.platforms
    assert platforms[:3] == ("manylinux_2_34_x86_64", "manylinux_2_33_x86_64", "manylinux_2_32_x86_64")
    assert platforms[-2:] == ("manylinux_2_5_x86_64", "manylinux1_x86_64")
    for legacy, twin in [("manylinux2014", 17), ("manylinux2010", 12), ("manylinux1", 5)]:
        assert platforms[platforms.index(f"{legacy}_x86_64") - 1] == f"manylinux_2_{twin}_x86_64"
    assert len(platforms) == (34 - 5 + 1) + 3


def test_aarch64_stops_at_manylinux2014():
    assert AL2023_ARM.platforms[0] == "manylinux_2_34_aarch64"
    assert AL2023_ARM.platforms[-2:] == ("manylinux_2_17_aarch64", "manylinux2014_aarch64")


@pytest.mark.parametrize(
    ("wheel", "target", "runs"),
    [
        # numpy 2.3's wheels are manylinux_2_28 only: AL2023 (2.34) runs them, manylinux2014-only tools refuse
        ("numpy-2.3.0-cp313-cp313-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", AL2023_X86, True),
        ("numpy-2.3.0-cp313-cp313-manylinux_2_28_x86_64.whl", Target("3.13", "x86_64", "2.26"), False),
        ("x-1.0-cp313-cp313-manylinux_2_34_x86_64.whl", AL2023_X86, True),
        ("x-1.0-cp313-cp313-manylinux_2_35_x86_64.whl", AL2023_X86, False),  # newer glibc than the runtime
        ("x-1.0-cp313-cp313-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", AL2023_X86, True),
        ("x-1.0-cp313-cp313-manylinux1_x86_64.whl", AL2023_X86, True),
        ("x-1.0-cp313-cp313-manylinux2014_x86_64.whl", AL2023_ARM, False),  # another arch
        ("x-1.0-cp313-cp313-manylinux2014_aarch64.whl", AL2023_ARM, True),
        ("x-1.0-cp313-cp313-musllinux_1_2_x86_64.whl", AL2023_X86, False),  # Lambda is glibc
        ("x-1.0-cp312-cp312-manylinux_2_17_x86_64.whl", AL2023_X86, False),  # another Python
        ("x-1.0-cp39-abi3-manylinux_2_17_x86_64.whl", AL2023_X86, True),  # the stable ABI
        ("x-1.0-cp314-abi3-manylinux_2_17_x86_64.whl", AL2023_X86, False),  # abi3 from a newer Python
        ("x-1.0-py3-none-any.whl", AL2023_ARM, True),
        ("x-1.0-py2-none-any.whl", AL2023_ARM, False),
        ("x-1.0-cp313-cp313-linux_x86_64.whl", AL2023_X86, False),  # an unknown glibc from an index
        ("x-1.0-cp313-cp313-macosx_11_0_arm64.whl", AL2023_ARM, False),
    ],
)
def test_which_wheels_run_on_the_target(wheel, target, runs):
    assert is_compatible(wheel, target) is runs


def test_a_wheel_built_here_may_be_plain_linux_of_the_targets_arch():
    assert is_compatible("x-1.0-cp313-cp313-linux_x86_64.whl", AL2023_X86, built_here=True)
    assert not is_compatible("x-1.0-cp313-cp313-linux_x86_64.whl", AL2023_ARM, built_here=True)


def test_downloads_sort_into_compatible_incompatible_and_sdists():
    found = sort_downloads(
        [
            "b-1.0.tar.gz", "a-1.0-py3-none-any.whl", "c-2.0-cp313-cp313-manylinux_2_39_x86_64.whl",
            "d-1.0.zip", "e-1.0-cp313-cp313-manylinux_2_28_x86_64.whl",
        ],
        AL2023_X86,
    )  # fmt: skip
    assert found.compatible == ("a-1.0-py3-none-any.whl", "e-1.0-cp313-cp313-manylinux_2_28_x86_64.whl")
    assert found.incompatible == ("c-2.0-cp313-cp313-manylinux_2_39_x86_64.whl",)
    assert found.sdists == ("b-1.0.tar.gz", "d-1.0.zip")


def test_pip_options_select_the_targets_tags():
    options = pip_target_options(AL2023_ARM)
    assert options[:5] == ["--only-binary=:all:", "--python-version", "3.13", "--implementation", "cp"]
    assert options[5:11] == ["--abi", "cp313", "--abi", "abi3", "--abi", "none"]
    platforms = options[12::2]
    assert platforms == list(AL2023_ARM.platforms)
    assert pip_target_options(AL2023_ARM, built_here=True)[-1] == "linux_aarch64"


@pytest.mark.parametrize(
    ("python", "arch", "glibc", "named"),
    [
        ("3", "x86_64", "2.34", "'3'"),
        ("3.13.5", "x86_64", "2.34", "'3.13.5'"),
        ("3.09", "x86_64", "2.34", "'3.09'"),  # no leading zeros
        ("3.13", "x86_64", "2.034", "'2.034'"),
        ("3.13", "sparc64", "2.34", "'sparc64'"),
        ("3.13", "x86_64", "2.x", "'2.x'"),
        ("3.13", "x86_64", "2.٣٤", "'2.٣٤'"),  # digits are ASCII only
        ("3.13", "aarch64", "2.12", "glibc 2.12"),  # no manylinux tag that old for aarch64
    ],
)
def test_a_bad_target_names_the_value(python, arch, glibc, named):
    with pytest.raises(TargetError, match=named):
        Target(python, arch, glibc)


def test_hashes_are_read_per_project_through_includes(tmp_path):
    (tmp_path / "base.txt").write_text("Six==1.17.0 \\\n    --hash=sha256:aa11 \\\n    --hash=sha256:bb22\n")
    (tmp_path / "requirements.txt").write_text(
        "# pinned\n-r base.txt\nrequests==2.32.3 --hash=sha256:cc33  # the client\nidna==3.10\n--index-url https://x\n"
    )
    assert hashes_by_project(tmp_path / "requirements.txt") == {
        "six": ["sha256:aa11", "sha256:bb22"],
        "requests": ["sha256:cc33"],
    }
    assert logical_lines("a \\\nb # c\n#d\n\ne#f\n") == ["a b", "e#f"]
    assert pinned_line("six", "1.17.0", ["sha256:aa11"]) == "six==1.17.0 --hash=sha256:aa11"


PIP_HASH_MISMATCH = """ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE. If you have \
updated the package versions, please update the hashes. Otherwise, examine the package contents carefully; \
someone may have tampered with them.
    lf-puresdist==1.0 from http://127.0.0.1:4000/files/lf_puresdist-1.0.tar.gz#sha256=9f2e:
        Expected sha256 0000
             Got        9f2e
"""
PIP_BUILD_FAILURE = """  \N{MULTIPLICATION SIGN} Building wheel for lf-broken (pyproject.toml) did not run \
successfully.
  │ exit code: 1
  ╰─> [3 lines of output]
      /tmp/x/lf_broken_c.c:1:2: error: #error "lf-broken cannot be built"
      error: compiling lf_broken_c failed
      [end of output]
  ERROR: Failed building wheel for lf-broken
ERROR: Failed to build one or more wheels
"""


def test_pip_failures_become_one_line():
    assert (
        hash_mismatch(PIP_HASH_MISMATCH)
        == "hash mismatch for lf-puresdist==1.0: expected sha256 0000, got 9f2e"
    )
    assert (
        last_error(PIP_BUILD_FAILURE) == '/tmp/x/lf_broken_c.c:1:2: error: #error "lf-broken cannot be built"'
    )
    missing = (
        "ERROR: Could not find a version that satisfies the requirement nope\n"
        "ERROR: No matching distribution found for nope\n"
    )
    error = resolution_error(missing)
    assert isinstance(error, UsageError)
    assert str(error) == "requirements: No matching distribution found for nope"
    assert isinstance(resolution_error(PIP_HASH_MISMATCH), UsageError)
    assert not isinstance(resolution_error(PIP_BUILD_FAILURE), UsageError)
