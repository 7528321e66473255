"""install.sh logic on this host: platform detection, catalog reading, checksum refusal and
messages. The script runs for real (bash, awk, curl over file://); only /etc/os-release,
`uname` and `id` are swapped, so each distribution and arch can be played here. Installs
into fresh debootstrap roots from a built store are in test_install_roots.py."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from buildfarm.platforms import load_registry

INSTALL_SH = Path(__file__).resolve().parents[2] / "functions" / "buildfarm" / "installer" / "install.sh"


def _tarball(version: str) -> bytes:
    """A tiny tarball in the farm's shape: top-level python/ with bin/python3."""
    script = f"#!/bin/sh\necho Python {version}\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("python/bin/python3")
        info.size, info.mode = len(script), 0o755
        tar.addfile(info, io.BytesIO(script))
    return buf.getvalue()


def _publish(store: Path, version: str, platform: str, arch: str, build: int, data: bytes) -> dict:
    key = f"builds/{version}/{platform}/{arch}/{build}/python-{version}-{platform}-{arch}.tar.gz"
    (store / key).parent.mkdir(parents=True, exist_ok=True)
    (store / key).write_bytes(data)
    return {
        "build": build,
        "published": "2026-11-22T10:00:00Z",
        "manifest": f"builds/{version}/{platform}/{arch}/{build}/manifest.json",
        "artifacts": [
            {"type": "tarball", "key": key, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        ],
    }


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store with 3.13.5 (builds 1 and 2 published, 2 newest) and 3.12.8 for debian-12/x86_64,
    and 3.12.8 only for debian-11/x86_64."""
    root = tmp_path / "store"
    root.mkdir()
    cells = {
        "3.13.5": {
            "debian-12": {"x86_64": _publish(root, "3.13.5", "debian-12", "x86_64", 2, _tarball("3.13.5"))}
        },
        "3.12.8": {
            "debian-12": {"x86_64": _publish(root, "3.12.8", "debian-12", "x86_64", 1, _tarball("3.12.8"))},
            "debian-11": {"x86_64": _publish(root, "3.12.8", "debian-11", "x86_64", 1, _tarball("3.12.8"))},
        },
    }
    catalog = {"schema_version": 1, "updated": "x", "python_versions": ["3.13.5", "3.12.8"], "builds": cells}
    (root / "versions.json").write_text(json.dumps(catalog, indent=2))
    return root


def _fake_bin(directory: Path, name: str, output: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\necho {output}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def run_installer(
    tmp_path: Path,
    store: Path,
    *args: str,
    os_release: str = 'ID=debian\nVERSION_ID="12"\n',
    machine: str = "x86_64",
    uid: int | None = None,
) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "fakebin"
    fake.mkdir(exist_ok=True)
    _fake_bin(fake, "uname", machine)
    if uid is not None:
        _fake_bin(fake, "id", str(uid))
    (tmp_path / "os-release").write_text(os_release)
    env = {
        **os.environ,
        "PATH": f"{fake}:{os.environ['PATH']}",
        "BUILDFARM_OS_RELEASE": str(tmp_path / "os-release"),
    }
    return subprocess.run(
        ["bash", str(INSTALL_SH), "--base-url", f"file://{store}", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_shellcheck_clean() -> None:
    subprocess.run(["shellcheck", "--severity=style", str(INSTALL_SH)], check=True)


def test_list_shows_versions_built_for_this_platform_newest_first(tmp_path, store) -> None:
    result = run_installer(tmp_path, store, "--list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3.13.5", "3.12.8"]
    result = run_installer(tmp_path, store, "--list", os_release="ID=debian\nVERSION_ID=11\n")
    assert result.stdout.split() == ["3.12.8"]


def test_tarball_install_under_prefix_is_the_newest_build(tmp_path, store) -> None:
    prefix = tmp_path / "some where" / "py"
    result = run_installer(tmp_path, store, "--prefix", str(prefix))
    assert result.returncode == 0, result.stderr
    assert "sha256 verified" in result.stderr
    out = subprocess.run([prefix / "bin" / "python3"], capture_output=True, text=True).stdout
    assert out.strip() == "Python 3.13.5"


def test_checksum_mismatch_refuses_and_installs_nothing(tmp_path, store) -> None:
    artifact = next(store.glob("builds/3.13.5/debian-12/x86_64/2/*.tar.gz"))
    artifact.write_bytes(_tarball("evil"))
    prefix = tmp_path / "py"
    result = run_installer(tmp_path, store, "--prefix", str(prefix))
    assert result.returncode != 0
    assert "checksum mismatch" in result.stderr and "not installing" in result.stderr
    assert not prefix.exists()


def test_version_not_built_for_this_platform_lists_what_is(tmp_path, store) -> None:
    result = run_installer(
        tmp_path,
        store,
        "--version",
        "3.13.5",
        "--prefix",
        str(tmp_path / "p"),
        os_release="ID=debian\nVERSION_ID=11\n",
    )
    assert result.returncode != 0
    assert "3.13.5 is not built for debian-11/x86_64 (built for it: 3.12.8)" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--version", "3.11.9"], "unknown version 3.11.9 (published: 3.13.5 3.12.8)"),
        (["--version", "3.13"], "malformed version '3.13'"),
        (["--version", "3.13.5;rm -rf /"], "malformed version '3.13.5;rm -rf /'"),
        (["--frobnicate"], "unknown argument '--frobnicate'"),
        (["--version"], "--version needs a value"),
    ],
)
def test_bad_arguments_are_named(tmp_path, store, args, message) -> None:
    result = run_installer(tmp_path, store, "--prefix", str(tmp_path / "p"), *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "p").exists()


def test_unsupported_distribution_and_arch(tmp_path, store) -> None:
    result = run_installer(tmp_path, store, "--list", os_release='ID=arch\nVERSION_ID="rolling"\n')
    assert result.returncode != 0 and "unsupported distribution: arch rolling" in result.stderr
    result = run_installer(tmp_path, store, "--list", machine="riscv64")
    assert result.returncode != 0 and "unsupported CPU architecture: riscv64" in result.stderr


def test_package_install_without_root_says_what_to_do(tmp_path, store) -> None:
    result = run_installer(tmp_path, store, "--version", "3.13.5", uid=1000)
    assert result.returncode != 0
    assert "needs root" in result.stderr and "--prefix DIR" in result.stderr


def test_no_base_url_is_a_clear_error(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BUILDFARM_BASE_URL"}
    result = subprocess.run(["bash", str(INSTALL_SH), "--list"], capture_output=True, text=True, env=env)
    assert result.returncode != 0 and "no store URL" in result.stderr


@pytest.mark.parametrize("platform", sorted(load_registry().platforms))
def test_every_registry_platform_is_detected_from_its_os_release(tmp_path, store, platform) -> None:
    """The script's os-release table and the registry agree (and RHEL clones map to rhel-N)."""
    rel = load_registry().get(platform).os_release
    ids = [rel.id, *rel.id_like]
    for os_id in ids:
        os_release = f'ID={os_id}\nVERSION_ID="{rel.version_id}"\nID_LIKE="{" ".join(ids)}"\n'
        result = run_installer(tmp_path, store, "--list", os_release=os_release)
        assert result.returncode == 0, (os_id, result.stderr)
        assert f"no builds for {platform}/x86_64" in result.stderr or result.stdout, result.stderr
        if platform not in ("debian-12", "debian-11"):
            assert f"no builds for {platform}/x86_64 yet" in result.stderr


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


def test_publish_bakes_the_public_base_url_into_install_sh(tmp_path) -> None:
    from buildfarm.catalog import INSTALLER_KEY, public_url_function, publish_installer
    from buildfarm.store import LocalStore

    store = LocalStore(tmp_path / "s")
    assert publish_installer(store, public_url_function(store, "https://cdn.example.org/python"))
    script = (tmp_path / "s" / INSTALLER_KEY).read_text()
    assert 'DEFAULT_BASE_URL="https://cdn.example.org/python"' in script
    assert not publish_installer(store, public_url_function(store, "https://cdn.example.org/python"))
    subprocess.run(["bash", "-n", str(tmp_path / "s" / INSTALLER_KEY)], check=True)


@pytest.mark.parametrize(
    "base", ["https://x.org/$(reboot)", "https://x.org/`id`", 'https://x.org/"; rm -rf /']
)
def test_a_base_url_a_shell_could_act_on_is_not_baked_in(tmp_path, base) -> None:
    from buildfarm.catalog import render_installer

    script = render_installer(base).decode()
    assert 'DEFAULT_BASE_URL="@BASE_URL@"' in script
