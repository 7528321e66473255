"""`buildfarm verify` on a synthetic signed build (local and over loopback HTTP), untouched
and tampered with; `buildfarm keys init|show`."""

from __future__ import annotations

import datetime
import gzip
import hashlib
import json
import shutil
import socket
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from buildfarm.attest.provenance import Dependency, ProvenanceFacts, Subject, render_statement
from buildfarm.attest.sbom import SbomFacts, SourceFacts, make_sbom
from buildfarm.attest.signing import KeyFileSigner, fingerprint, init_key, sign_file
from buildfarm.attest.verify_build import LocalBuild, verify_build
from buildfarm.cli import main
from buildfarm.models import Attestations

VERSION, PLATFORM, ARCH, BUILD = "3.13.5", "debian-12", "x86_64", 1
CELL_DIR = f"builds/{VERSION}/{PLATFORM}/{ARCH}/{BUILD}"
TARBALL = f"python-{VERSION}-{PLATFORM}-{ARCH}.tar.gz"
DEB = f"python-{VERSION}_{BUILD}_amd64.deb"
SOURCE_SHA256 = "1" * 64
EXECUTION = "run-0042"
UTC = datetime.UTC


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_build(
    directory: Path, signer: KeyFileSigner, sbom_version: str = VERSION, *, listed: bool = True
) -> Path:
    """A build directory as the publishing side leaves it: artifacts, manifest.json (which
    lists the attestations unless not listed: an older builder's), sbom.cdx.json,
    provenance.json (+ .sig), SHA256SUMS (+ .sig)."""
    directory.mkdir(parents=True)
    (directory / TARBALL).write_bytes(gzip.compress(b"python tree\n" * 100, mtime=0))
    (directory / DEB).write_bytes(b"!<arch>\ndebian-binary   " + bytes(range(256)))
    spec = {
        "version": VERSION,
        "platform": PLATFORM,
        "arch": ARCH,
        "build": BUILD,
        "source": {
            "url": f"https://www.python.org/ftp/python/{VERSION}/Python-{VERSION}.tar.xz",
            "sha256": SOURCE_SHA256,
        },
        "execution_id": EXECUTION,
        "artifact_dir": CELL_DIR,
    }
    artifacts = [
        {
            "type": kind,
            "file": name,
            "sha256": sha256(directory / name),
            "size": (directory / name).stat().st_size,
        }
        for kind, name in (("tarball", TARBALL), ("deb", DEB))
    ]
    manifest = {"schema_version": 1, "spec": spec, "python": {"version": VERSION}, "artifacts": artifacts}
    if listed:
        manifest["attestations"] = Attestations().model_dump()
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    created = datetime.datetime(2025, 6, 11, 12, 9, tzinfo=UTC)
    sbom = SbomFacts(
        python_version=sbom_version,
        platform=PLATFORM,
        arch=ARCH,
        build=BUILD,
        distro_id="debian",
        distro_version="12",
        source=SourceFacts(url=spec["source"]["url"], sha256=SOURCE_SHA256),
        created=created,
    )
    (directory / "sbom.cdx.json").write_text(make_sbom(sbom))
    write_provenance(directory, signer, spec, artifacts, created)
    listed = [TARBALL, DEB, "manifest.json", "sbom.cdx.json", "provenance.json"]
    (directory / "SHA256SUMS").write_text("".join(f"{sha256(directory / n)}  {n}\n" for n in listed))
    sign_file(signer, directory / "SHA256SUMS")
    return directory


def write_provenance(
    directory: Path, signer: KeyFileSigner, spec: dict, artifacts: list[dict], created: datetime.datetime
) -> None:
    """provenance.json (+ .sig) over the artifacts, manifest.json and sbom.cdx.json."""
    subjects = [Subject(name=a["file"], sha256=a["sha256"]) for a in artifacts]
    subjects += [Subject(name=n, sha256=sha256(directory / n)) for n in ("manifest.json", "sbom.cdx.json")]
    provenance = ProvenanceFacts(
        subjects=tuple(subjects),
        spec=spec,
        source=Dependency(uri=spec["source"]["url"], name=f"Python-{VERSION}.tar.xz", sha256=SOURCE_SHA256),
        builder_image=Dependency(uri="local:Debian GNU/Linux 12 (bookworm)", name="builder-image"),
        builder_id="urn:python-build-farm:builder:local",
        invocation_id=EXECUTION,
        started_on=created - datetime.timedelta(minutes=9),
        finished_on=created,
    )
    (directory / "provenance.json").write_text(render_statement(provenance))
    sign_file(signer, directory / "provenance.json")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two key files (the farm's and a stranger's) and their public keys."""
    directory = tmp_path_factory.mktemp("keys")
    paths = {}
    for name in ("farm", "stranger"):
        init_key(directory / f"{name}.pem")
        (directory / f"{name}.pub").write_bytes(KeyFileSigner(directory / f"{name}.pem").public_key_pem())
        paths[name] = directory / name
    return paths


@pytest.fixture
def store(tmp_path: Path, keys: dict[str, Path]) -> Path:
    write_build(tmp_path / "store" / CELL_DIR, KeyFileSigner(keys["farm"].with_suffix(".pem")))
    return tmp_path / "store"


def problems(build: Path, *pubkeys: Path) -> list[str]:
    return verify_build(LocalBuild(build), [key.read_bytes() for key in pubkeys])


def test_an_untouched_build_verifies(store: Path, keys: dict[str, Path]) -> None:
    farm_pub = keys["farm"].with_suffix(".pub")
    assert problems(store / CELL_DIR, farm_pub) == []
    # Rotation: any listed key may have signed.
    assert problems(store / CELL_DIR, keys["stranger"].with_suffix(".pub"), farm_pub) == []
    # And stock openssl agrees, as install.sh will check it.
    result = subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha256",
            "-verify",
            str(farm_pub),
            "-signature",
            "SHA256SUMS.sig",
            "SHA256SUMS",
        ],
        cwd=store / CELL_DIR,
        capture_output=True,
        text=True,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "Verified OK")


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def flip_first_digit(path: Path) -> None:
    text = path.read_text()
    path.write_text(("0" if text[0] != "0" else "1") + text[1:])


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def resum(directory: Path) -> None:
    """What a forger who can write the bucket does: SHA256SUMS made to match its files."""
    lines = (directory / "SHA256SUMS").read_text().splitlines()
    names = [line.split("  ", 1)[1] for line in lines]
    (directory / "SHA256SUMS").write_text("".join(f"{sha256(directory / n)}  {n}\n" for n in names))


TAMPERING = {
    "artifact": (lambda d: flip_last_byte(d / TARBALL), [f"{TARBALL}: sha256"]),
    "artifact-deleted": (lambda d: (d / DEB).unlink(), [f"{DEB}: missing (listed in SHA256SUMS)"]),
    "artifact-and-sums": (
        lambda d: (flip_last_byte(d / TARBALL), resum(d)),
        ["SHA256SUMS.sig: not a signature of SHA256SUMS", "manifest.json: artifact python-3.13.5-debian-12"],
    ),
    "sums": (
        lambda d: flip_first_digit(d / "SHA256SUMS"),
        ["SHA256SUMS.sig: not a signature", f"{TARBALL}: sha256"],
    ),
    "sums-line": (
        lambda d: (d / "SHA256SUMS").write_text((d / "SHA256SUMS").read_text() + "0  ../../etc/passwd\n"),
        ["SHA256SUMS.sig: not a signature", "SHA256SUMS: line 6 is not '<sha256>  <file name>'"],
    ),
    "signature": (lambda d: flip_last_byte(d / "SHA256SUMS.sig"), ["SHA256SUMS.sig: not a signature"]),
    "signature-missing": (lambda d: (d / "SHA256SUMS.sig").unlink(), ["SHA256SUMS.sig: missing"]),
    "sbom": (
        lambda d: edit_json(d / "sbom.cdx.json", lambda s: s["components"][0].update(version="3.13.4")),
        ["sbom.cdx.json: sha256", "sbom.cdx.json: CPython 3.13.4, manifest.json says 3.13.5"],
    ),
    "sbom-source": (
        lambda d: (
            edit_json(
                d / "sbom.cdx.json", lambda s: s["components"][0]["hashes"][0].update(content="2" * 64)
            ),
            resum(d),
        ),
        ["SHA256SUMS.sig: not a signature", f"sbom.cdx.json: source sha256 {'2' * 64}, manifest.json says"],
    ),
    "provenance": (
        lambda d: edit_json(
            d / "provenance.json",
            lambda p: next(s for s in p["subject"] if s["name"] == TARBALL)["digest"].update(sha256="0" * 64),
        ),
        [
            "provenance.json: sha256",
            "provenance.json.sig: not a signature of provenance.json",
            "provenance.json: subject python-3.13.5-debian-12-x86_64.tar.gz has sha256 000",
        ],
    ),
    "provenance-invocation": (
        lambda d: edit_json(
            d / "provenance.json", lambda p: p["predicate"]["runDetails"]["metadata"].update(invocationId="x")
        ),
        ["provenance.json: invocationId x, manifest.json says run-0042"],
    ),
    "manifest": (
        lambda d: edit_json(d / "manifest.json", lambda m: m["artifacts"][1].update(sha256="f" * 64)),
        ["manifest.json: sha256", f"manifest.json: artifact {DEB} has sha256 {'f' * 64}"],
    ),
    "manifest-not-json": (lambda d: (d / "manifest.json").write_text("{"), ["manifest.json: not JSON"]),
    "provenance-signature-missing": (
        lambda d: (d / "provenance.json.sig").unlink(),
        ["provenance.json.sig: missing"],
    ),
    "provenance-missing": (
        lambda d: (d / "provenance.json").unlink(),
        ["provenance.json: missing (listed in SHA256SUMS)"],
    ),
}


@pytest.mark.parametrize("what", sorted(TAMPERING))
def test_tampering_is_named(what: str, store: Path, keys: dict[str, Path]) -> None:
    tamper, expected = TAMPERING[what]
    tamper(store / CELL_DIR)
    found = problems(store / CELL_DIR, keys["farm"].with_suffix(".pub"))
    for start in expected:
        assert any(line.startswith(start) for line in found), (start, found)


def test_a_stranger_signed_build_fails(tmp_path: Path, keys: dict[str, Path]) -> None:
    build = write_build(tmp_path / "b", KeyFileSigner(keys["stranger"].with_suffix(".pem")))
    found = problems(build, keys["farm"].with_suffix(".pub"))
    farm = fingerprint(keys["farm"].with_suffix(".pub").read_bytes())
    assert found == [
        f"SHA256SUMS.sig: not a signature of SHA256SUMS by any given key ({farm})",
        f"provenance.json.sig: not a signature of provenance.json by any given key ({farm})",
    ]


def test_a_consistent_signed_build_with_a_wrong_sbom_fails(tmp_path: Path, keys: dict[str, Path]) -> None:
    build = write_build(
        tmp_path / "b", KeyFileSigner(keys["farm"].with_suffix(".pem")), sbom_version="3.13.4"
    )
    assert problems(build, keys["farm"].with_suffix(".pub")) == [
        "sbom.cdx.json: CPython 3.13.4, manifest.json says 3.13.5"
    ]


def test_an_unlisted_sbom_is_unsigned(store: Path, keys: dict[str, Path]) -> None:
    build = store / CELL_DIR
    lines = [line for line in (build / "SHA256SUMS").read_text().splitlines() if "sbom" not in line]
    (build / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    (build / "SHA256SUMS.sig").unlink()
    sign_file(KeyFileSigner(keys["farm"].with_suffix(".pem")), build / "SHA256SUMS")
    assert problems(build, keys["farm"].with_suffix(".pub")) == [
        "sbom.cdx.json: not listed in SHA256SUMS (unsigned)",
        "provenance.json: subject 'sbom.cdx.json' is not in SHA256SUMS",
    ]


def resign(directory: Path, keys: dict[str, Path], drop: str | None = None) -> None:
    """SHA256SUMS without drop's line, signed again by the farm (a publisher that left it out)."""
    lines = (directory / "SHA256SUMS").read_text().splitlines()
    (directory / "SHA256SUMS").write_text(
        "".join(f"{line}\n" for line in lines if not line.endswith(f"  {drop}"))
    )
    (directory / "SHA256SUMS.sig").unlink()
    sign_file(KeyFileSigner(keys["farm"].with_suffix(".pem")), directory / "SHA256SUMS")


def test_every_attestation_the_manifest_lists_must_be_there(tmp_path: Path, keys: dict[str, Path]) -> None:
    farm = keys["farm"].with_suffix(".pub")
    build = write_build(tmp_path / "b", KeyFileSigner(keys["farm"].with_suffix(".pem")))
    (build / "provenance.json.sig").unlink()
    assert problems(build, farm) == ["provenance.json.sig: missing"]
    (build / "sbom.cdx.json").unlink()
    resign(build, keys, drop="sbom.cdx.json")
    assert problems(build, farm) == [
        "sbom.cdx.json: missing (listed in manifest.json)",
        "provenance.json.sig: missing",
        "provenance.json: subject 'sbom.cdx.json' is not in SHA256SUMS",
    ]


def test_an_older_manifest_needs_no_provenance_signature(tmp_path: Path, keys: dict[str, Path]) -> None:
    build = write_build(tmp_path / "b", KeyFileSigner(keys["farm"].with_suffix(".pem")), listed=False)
    (build / "provenance.json.sig").unlink()
    assert problems(build, keys["farm"].with_suffix(".pub")) == []


def test_a_manifest_outside_the_signed_sums_is_named(tmp_path: Path, keys: dict[str, Path]) -> None:
    build = write_build(tmp_path / "b", KeyFileSigner(keys["farm"].with_suffix(".pem")))
    resign(build, keys, drop="manifest.json")
    assert problems(build, keys["farm"].with_suffix(".pub")) == [
        "manifest.json: not listed in SHA256SUMS (unsigned)",
        "provenance.json: subject 'manifest.json' is not in SHA256SUMS",
    ]


def test_a_bad_attestation_list_is_named_and_the_defaults_checked(store: Path, keys: dict[str, Path]) -> None:
    build = store / CELL_DIR
    edit_json(build / "manifest.json", lambda m: m["attestations"].update(sbom="../sbom.cdx.json"))
    found = problems(build, keys["farm"].with_suffix(".pub"))
    assert found[0].startswith("manifest.json: sha256")
    assert found[1:] == [
        "manifest.json: attestations.sbom: String should match pattern '^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$'"
    ]


# -- the command line ------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_verify_local(store: Path, keys: dict[str, Path], capsys) -> None:
    pub = str(keys["farm"].with_suffix(".pub"))
    status, out, _ = run_cli(capsys, "verify", str(store / CELL_DIR), "--pubkey", pub)
    assert (status, out.strip()) == (0, f"{store / CELL_DIR}: OK")
    flip_last_byte(store / CELL_DIR / DEB)
    status, out, err = run_cli(capsys, "verify", str(store / CELL_DIR), "--pubkey", pub)
    assert status == 1
    assert out.splitlines() == [
        f"{DEB}: sha256 {sha256(store / CELL_DIR / DEB)} differs from SHA256SUMS's "
        + (store / CELL_DIR / "SHA256SUMS").read_text().splitlines()[1].split()[0]
    ]
    assert "1 problem(s)" in err


def test_a_signed_build_copied_to_another_build_number_is_not_that_build(store: Path, keys, capsys) -> None:
    """Served at .../2, build 1's files verify as files, but not as build 2 (an installer would
    take them for it): the manifest says where it was published."""
    other = store / CELL_DIR.replace(f"/{BUILD}", f"/{BUILD + 1}")
    shutil.copytree(store / CELL_DIR, other)
    pub = str(keys["farm"].with_suffix(".pub"))
    status, out, _ = run_cli(capsys, "verify", str(other), "--pubkey", pub)
    assert status == 1
    assert out.splitlines() == [
        f"manifest.json: the build of {CELL_DIR}, found at {other.relative_to(store)}"
    ]
    # Outside a store's layout there is no directory to compare: the files alone are checked.
    elsewhere = store.parent / "download"
    shutil.copytree(store / CELL_DIR, elsewhere)
    assert run_cli(capsys, "verify", str(elsewhere), "--pubkey", pub)[0] == 0


def test_cli_verify_over_http(store: Path, keys: dict[str, Path], http_dir_server, capsys) -> None:
    base = http_dir_server(store)
    pub = str(keys["farm"].with_suffix(".pub"))
    status, out, _ = run_cli(capsys, "verify", f"{base}/{CELL_DIR}", "--pubkey", pub)
    assert (status, out.strip()) == (0, f"{base}/{CELL_DIR}/: OK")
    flip_last_byte(store / CELL_DIR / TARBALL)
    (store / CELL_DIR / "sbom.cdx.json").unlink()
    status, out, _ = run_cli(capsys, "verify", f"{base}/{CELL_DIR}/", "--pubkey", pub)
    assert status == 1
    assert [line.split(":")[0] for line in out.splitlines()] == [TARBALL, "sbom.cdx.json"]
    status, out, _ = run_cli(capsys, "verify", f"{base}/builds/3.13.5/", "--pubkey", pub)
    assert status == 1 and out.startswith("SHA256SUMS: missing")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_cli_verify_bad_input_exits_2(store: Path, keys: dict[str, Path], tmp_path: Path, capsys) -> None:
    pub = str(keys["farm"].with_suffix(".pub"))
    (tmp_path / "junk.pub").write_text("junk\n")
    cases = [
        (["verify", str(tmp_path / "nowhere"), "--pubkey", pub], "nowhere: not a directory"),
        (["verify", "ftp://example.org/builds/", "--pubkey", pub], "not a directory or an http(s) URL"),
        (["verify", str(store / CELL_DIR), "--pubkey", str(tmp_path / "none.pub")], "none.pub"),
        (["verify", str(store / CELL_DIR), "--pubkey", str(tmp_path / "junk.pub")], "not a PEM public key"),
        (["verify", f"http://127.0.0.1:{free_port()}/b/", "--pubkey", pub], "cannot fetch"),
    ]
    for argv, message in cases:
        status, out, err = run_cli(capsys, *argv)
        assert (status, out) == (2, ""), argv
        assert err.startswith("buildfarm verify: error: ") and message in err, err


def test_cli_keys_init_and_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    key = tmp_path / "home" / "signing-key.pem"
    monkeypatch.setenv("BUILDFARM_SIGNING_KEY", str(key))
    monkeypatch.setenv("BUILDFARM_STORE", str(tmp_path / "dist"))
    status, out, _ = run_cli(capsys, "keys", "init")
    assert status == 0
    assert out.splitlines()[0] == f"created {key}"
    shown = out.splitlines()[1]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert run_cli(capsys, "keys", "show")[:2] == (0, shown + "\n")
    status, out, _ = run_cli(capsys, "keys", "show", "--public")
    assert out.startswith(shown + "\n-----BEGIN PUBLIC KEY-----")
    status, _, err = run_cli(capsys, "keys", "init")
    assert status == 2 and "already there" in err
    status, _, err = run_cli(capsys, "keys", "init", "--key", str(tmp_path / "dist" / "keys" / "k.pem"))
    assert status == 2 and "inside the store" in err
    status, _, err = run_cli(capsys, "keys", "show", "--key", str(tmp_path / "missing.pem"))
    assert status == 2 and "buildfarm keys init" in err


def test_cli_keys_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("BUILDFARM_SIGNING_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    status, _, _ = run_cli(capsys, "keys", "init")
    assert status == 0
    assert (tmp_path / ".config" / "buildfarm" / "signing-key.pem").is_file()
    assert shutil.which("openssl")
