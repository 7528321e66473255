"""The rules stated once and used everywhere: a ValidationError as one line (errors.first_error),
the SHA-256 digest (digests), and the arch names (platforms)."""

from __future__ import annotations

import platform as host_platform

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError, field_validator, model_validator

from buildfarm.catalog.install_script import KEY_FINGERPRINT
from buildfarm.digests import SHA256, SHA256_HEX, Sha256
from buildfarm.errors import first_error
from buildfarm.lambda_layer.tags import OLDEST_GLIBC_MINOR
from buildfarm.layout import EXECUTION_ID
from buildfarm.models import BuildSpec
from buildfarm.plan import safe_id
from buildfarm.platforms import ARCH_ALIASES, ARCHES, DEB_ARCH, DOCKER_PLATFORM, RPM_ARCH, Arch, arch_names
from buildfarm.release_import import ReleaseInputError, new_release, parse_sha256sums
from buildfarm.runners.host import host_arch
from buildfarm.runtimes.cloud_items import RuntimeItem

DIGEST = "0123456789abcdef" * 4


class _Item(BaseModel):
    name: str

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value:
            raise ValueError("empty name")
        return value


class _Doc(BaseModel):
    items: list[_Item]

    @model_validator(mode="after")
    def _two(self) -> _Doc:
        if len(self.items) == 1:
            raise ValueError("one item is not a list")
        return self


def _error(raw: object) -> ValidationError:
    with pytest.raises(ValidationError) as raised:
        _Doc.model_validate(raw)
    return raised.value


@pytest.mark.parametrize(
    ("raw", "options", "line"),
    [
        ({"items": [{}, {}]}, {}, "items.0.name: Field required"),
        ({"items": [{}, {}]}, {"brackets": True}, "items[0].name: Field required"),
        ({"items": [{}, {}]}, {"sep": "/"}, "items/0/name: Field required"),
        ({"items": [{}, {}]}, {"under": "doc", "brackets": True}, "doc.items[0].name: Field required"),
        ({"items": [{"name": ""}] * 2}, {}, "items.0.name: Value error, empty name"),
        ({"items": [{"name": ""}] * 2}, {"plain": True}, "items.0.name: empty name"),
        ({"items": [{"name": "a"}]}, {}, "Value error, one item is not a list"),
        (
            {"items": [{"name": "a"}]},
            {"whole": "the document", "plain": True},
            "the document: one item is not a list",
        ),
        (
            {"items": [{"name": "a"}]},
            {"under": "doc", "whole": "unused"},
            "doc: Value error, one item is not a list",
        ),
    ],
)
def test_first_error_is_one_line_where_then_what(raw: object, options: dict, line: str) -> None:
    assert first_error(_error(raw), **options) == line


def test_first_error_counts_the_rest_and_takes_the_callers_wording() -> None:
    two_missing = _error({"items": [{}, {}]})
    assert first_error(two_missing, count_rest=True) == "items.0.name: Field required (and 1 more)"
    one_missing = _error({"items": [{}, {"name": "a"}]})
    assert first_error(one_missing, count_rest=True) == "items.0.name: Field required"
    worded = first_error(two_missing, sep="/", describe=lambda e: f"{e['type']}, not {e['input']}")
    assert worded == "items/0/name: missing, not {}"
    assert first_error(_error({"items": [{"name": "a"}]}), describe=lambda first: "one", plain=True) == "one"


def test_first_error_brackets_a_leading_index() -> None:
    with pytest.raises(ValidationError) as raised:
        TypeAdapter(list[_Item]).validate_python([{"name": "a"}, {}])
    assert first_error(raised.value, brackets=True) == "[1].name: Field required"


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        (DIGEST, True),
        (DIGEST.upper(), False),
        (DIGEST[:-1], False),
        (DIGEST + "0", False),
        (DIGEST + "\n", False),
        (" " + DIGEST, False),
        (DIGEST[:-1] + "\N{ARABIC-INDIC DIGIT THREE}", False),
        ("sha256:" + DIGEST[7:], False),
    ],
)
def test_a_sha256_is_64_lowercase_ascii_hex_digits_and_nothing_else(text: str, valid: bool) -> None:
    assert bool(SHA256.fullmatch(text)) is valid
    try:
        TypeAdapter(Sha256).validate_python(text)
    except ValidationError:
        assert not valid
    else:
        assert valid
    assert SHA256.pattern == SHA256_HEX


def test_the_arches_are_the_arch_type_and_the_spec_takes_only_those() -> None:
    assert ARCHES == ("x86_64", "aarch64")
    assert TypeAdapter(Arch).validate_python("aarch64") == "aarch64"
    assert BuildSpec.model_fields["arch"].annotation == Arch
    assert set(ARCH_ALIASES.values()) <= set(ARCHES)


@pytest.mark.parametrize(
    ("machine", "arch"),
    [
        ("x86_64", "x86_64"),
        ("amd64", "x86_64"),
        ("aarch64", "aarch64"),
        ("arm64", "aarch64"),
        ("ppc64le", "ppc64le"),
    ],
)
def test_host_arch_names_the_machine_as_the_registry_does(
    monkeypatch: pytest.MonkeyPatch, machine: str, arch: str
) -> None:
    monkeypatch.setattr(host_platform, "machine", lambda: machine)
    assert host_arch() == arch


@pytest.mark.parametrize(
    ("digest", "any_case"),
    [
        (DIGEST, True),
        (DIGEST.upper(), True),
        (DIGEST[:-1] + "\N{ARABIC-INDIC DIGIT THREE}", False),
        (DIGEST[1:], False),
    ],
)
def test_the_digests_other_modules_match_are_the_rule(digest: str, any_case: bool) -> None:
    """Key fingerprints and release imports build on SHA256_HEX: a release import takes either
    case (and stores it lowercase), the rest the rule as it is."""
    assert bool(KEY_FINGERPRINT.fullmatch(f"SHA256:{digest}")) is bool(SHA256.fullmatch(digest))
    if any_case:
        assert new_release("3.13.5", digest).sha256 == digest.lower()
        releases, _ = parse_sha256sums(f"{digest}  Python-3.13.5.tar.xz", "SUMS")
        assert [release.sha256 for release in releases] == [digest.lower()]
    else:
        with pytest.raises(ReleaseInputError, match="malformed sha256"):
            new_release("3.13.5", digest)
        with pytest.raises(ReleaseInputError, match="SUMS line 1"):
            parse_sha256sums(f"{digest}  Python-3.13.5.tar.xz", "SUMS")
    assert RuntimeItem.model_fields["lock_sha256"].annotation == Sha256 | None


@pytest.mark.parametrize(
    "text", ["exec-1", "", "..", "a" * 200, "run/one two", "b\N{ARABIC-INDIC DIGIT THREE}", "x\n"]
)
def test_safe_id_makes_an_execution_id_of_any_text(text: str) -> None:
    made = safe_id(text)
    assert EXECUTION_ID.fullmatch(made)
    assert (made == text) is bool(EXECUTION_ID.fullmatch(text) and text.strip(".-") == text)


def test_arch_names_lists_each_arch_with_its_debian_name() -> None:
    assert arch_names() == "x86_64 (amd64), aarch64 (arm64)"
    assert arch_names(" or ") == "x86_64 (amd64) or aarch64 (arm64)"


def test_the_per_arch_tables_have_every_arch_and_no_other() -> None:
    """Tables of facts per arch (not lists of the arches): each is keyed by exactly ARCHES."""
    for table in (DEB_ARCH, RPM_ARCH, DOCKER_PLATFORM, OLDEST_GLIBC_MINOR):
        assert tuple(table) == ARCHES
