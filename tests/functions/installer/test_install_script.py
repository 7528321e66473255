"""install.sh logic on this host: platform detection, catalog reading, checksum refusal and
messages. The script runs for real (bash, awk, curl over file://); only /etc/os-release,
`uname` and `id` are swapped, so each distribution and arch can be played here. Installs
into fresh debootstrap roots from a built store are in tests/farm/test_uv_and_installer.py;
signatures in test_install_signatures.py (and its roots twin)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from buildfarm.platforms import load_registry

INSTALL_SH = Path(__file__).resolve().parents[3] / "functions" / "buildfarm" / "installer" / "install.sh"


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
    return make_store(tmp_path / "store")


def make_store(root: Path) -> Path:
    """A store with 3.13.5 (builds 1 and 2 published, 2 newest) and 3.12.8 for debian-12/x86_64,
    and 3.12.8 only for debian-11/x86_64."""
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
    store: Path | None,
    *args: str,
    os_release: str = 'ID=debian\nVERSION_ID="12"\n',
    machine: str = "x86_64",
    uid: int | None = None,
    script: Path = INSTALL_SH,
    environ: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run install.sh (--base-url file://<store> unless store is None) as this machine would."""
    fake = tmp_path / "fakebin"
    fake.mkdir(exist_ok=True)
    _fake_bin(fake, "uname", machine)
    if uid is not None:
        _fake_bin(fake, "id", str(uid))
    (tmp_path / "os-release").write_text(os_release)
    env = {
        **{k: v for k, v in os.environ.items() if k != "BUILDFARM_BASE_URL"},
        "PATH": f"{fake}:{os.environ['PATH']}",
        "BUILDFARM_OS_RELEASE": str(tmp_path / "os-release"),
        **(environ or {}),
    }
    base = ["--base-url", f"file://{store}"] if store is not None else []
    return subprocess.run(
        ["bash", str(script), *base, *args],
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
        (["--version", "3"], "malformed version '3'"),
        (["--version", "3.13.x"], "malformed version '3.13.x'"),
        (["--version", "3.14"], "no Python 3.14.x is published (published: 3.13.5 3.12.8)"),
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


# What the store fixture publishes for each platform's x86_64, newest first.
PUBLISHED_FOR = {"debian-12": ["3.13.5", "3.12.8"], "debian-11": ["3.12.8"]}


@pytest.mark.parametrize("platform", sorted(load_registry().platforms))
def test_every_registry_platform_is_detected_from_its_os_release(tmp_path, store, platform) -> None:
    """The script's os-release table and the registry agree (and RHEL clones map to rhel-N)."""
    rel = load_registry().get(platform).os_release
    ids = [rel.id, *rel.id_like]
    for os_id in ids:
        os_release = f'ID={os_id}\nVERSION_ID="{rel.version_id}"\nID_LIKE="{" ".join(ids)}"\n'
        result = run_installer(tmp_path, store, "--list", os_release=os_release)
        assert result.returncode == 0, (os_id, result.stderr)
        # The fixture store lists a platform's own builds, so a mistaken detection shows.
        assert result.stdout.split() == PUBLISHED_FOR.get(platform, []), (os_id, result.stderr)
        if platform not in PUBLISHED_FOR:
            assert f"no builds for {platform}/x86_64 yet" in result.stderr


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
    "base",
    [
        "https://x.org/$(reboot)",
        "https://x.org/`id`",
        'https://x.org/"; rm -rf /',
        "http://localhost:x@example.invalid/s",  # user info: install.sh would refuse it
        "http://[::1]@example.com",
    ],
)
def test_a_base_url_a_shell_could_act_on_or_with_user_info_is_not_baked_in(tmp_path, base) -> None:
    from buildfarm.catalog import render_installer

    script = render_installer(base).decode()
    assert 'DEFAULT_BASE_URL="@BASE_URL@"' in script


def _add_cell(store: Path, version: str, platform: str = "debian-12", arch: str = "x86_64") -> None:
    catalog = json.loads((store / "versions.json").read_text())
    entry = _publish(store, version, platform, arch, 1, _tarball(version))
    catalog["builds"].setdefault(version, {}).setdefault(platform, {})[arch] = entry
    from buildfarm.versions import sort_newest_first

    catalog["python_versions"] = sort_newest_first(list(catalog["builds"]))
    (store / "versions.json").write_text(json.dumps(catalog))


def test_a_series_installs_its_newest_release_built_here(tmp_path, store) -> None:
    _add_cell(store, "3.13.4")
    _add_cell(store, "3.13.6", platform="debian-11")  # newer, but not built for debian-12
    result = run_installer(tmp_path, store, "--version", "3.13", "--prefix", str(tmp_path / "p"))
    assert result.returncode == 0, result.stderr
    assert "Python 3.13: the newest built for debian-12/x86_64 is 3.13.5" in result.stderr
    ran = subprocess.run([tmp_path / "p" / "bin" / "python3"], capture_output=True, text=True)
    assert ran.stdout.strip() == "Python 3.13.5"


def test_a_series_prefers_a_final_release_to_a_newer_prerelease(tmp_path, store) -> None:
    for version in ("3.14.0rc2", "3.14.0", "3.14.1rc1"):
        _add_cell(store, version)
    result = run_installer(tmp_path, store, "--version", "3.14", "--prefix", str(tmp_path / "p"))
    assert result.returncode == 0, result.stderr
    assert "is 3.14.0\n" in result.stderr
    # A series with only pre-releases gets its newest one.
    _add_cell(store, "3.15.0a1")
    _add_cell(store, "3.15.0a2")
    result = run_installer(tmp_path, store, "--version", "3.15", "--prefix", str(tmp_path / "q"))
    assert result.returncode == 0 and "is 3.15.0a2\n" in result.stderr, result.stderr


def test_without_a_version_the_newest_final_release_is_installed_not_a_prerelease(tmp_path, store) -> None:
    _add_cell(store, "3.15.0a2")  # the newest built here, but an alpha
    result = run_installer(tmp_path, store, "--prefix", str(tmp_path / "p"))
    assert result.returncode == 0, result.stderr
    ran = subprocess.run([tmp_path / "p" / "bin" / "python3"], capture_output=True, text=True)
    assert ran.stdout.strip() == "Python 3.13.5"
    # Pre-releases only: the newest of them.
    only_alpha = tmp_path / "alpha"
    only_alpha.mkdir()
    (only_alpha / "versions.json").write_text(
        json.dumps({"schema_version": 1, "python_versions": [], "builds": {}})
    )
    _add_cell(only_alpha, "3.15.0a1")
    _add_cell(only_alpha, "3.15.0a2")
    result = run_installer(tmp_path, only_alpha, "--prefix", str(tmp_path / "q"))
    assert result.returncode == 0, result.stderr
    ran = subprocess.run([tmp_path / "q" / "bin" / "python3"], capture_output=True, text=True)
    assert ran.stdout.strip() == "Python 3.15.0a2"


def test_a_prefix_install_replaces_an_earlier_one_whole_and_refuses_a_foreign_directory(
    tmp_path, store
) -> None:
    prefix = tmp_path / "py"
    assert run_installer(tmp_path, store, "--version", "3.12.8", "--prefix", str(prefix)).returncode == 0
    (prefix / "lib" / "left-from-3.12.8.py").parent.mkdir(parents=True, exist_ok=True)
    (prefix / "lib" / "left-from-3.12.8.py").write_text("")
    result = run_installer(tmp_path, store, "--version", "3.13.5", "--prefix", str(prefix))
    assert result.returncode == 0, result.stderr
    ran = subprocess.run([prefix / "bin" / "python3"], capture_output=True, text=True)
    assert ran.stdout.strip() == "Python 3.13.5" and not (prefix / "lib").exists()
    assert (prefix / ".buildfarm-install").read_text().startswith("3.13.5 build 2 from file://")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".install.sh")] == []
    # A directory install.sh did not make is left as it is.
    home = tmp_path / "home"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "mine").write_text("keep")
    result = run_installer(tmp_path, store, "--prefix", str(home))
    assert result.returncode != 0 and "holds something else than a Python install.sh made" in result.stderr
    assert [p.name for p in home.rglob("*")] == ["bin", "mine"]
    # An empty one is fine.
    (tmp_path / "empty").mkdir()
    assert run_installer(tmp_path, store, "--prefix", str(tmp_path / "empty")).returncode == 0


@pytest.mark.parametrize(
    "url",
    ["http://example.invalid", "http://127.0.0.1.example.invalid:80/x", "http://[::1]x.example.invalid"],
)
def test_plain_http_to_another_machine_needs_a_signing_key(tmp_path, url) -> None:
    result = run_installer(tmp_path, None, "--base-url", url, "--list")
    assert result.returncode != 0
    assert f"refusing {url}: plain http without a signing key" in result.stderr
    # With a pinned key the signatures carry the trust: the check passes (the download then fails).
    pinned = run_installer(tmp_path, None, "--base-url", url, "--list", "--pubkey", f"SHA256:{'ab' * 32}")
    assert pinned.returncode != 0 and "refusing" not in pinned.stderr and "download failed" in pinned.stderr


@pytest.mark.parametrize(
    "url",
    ["http://localhost:x@example.invalid/s", "http://[::1]@example.com", "https://user@127.0.0.1:9/python"],
)
def test_a_base_url_with_user_info_is_refused_before_any_download(tmp_path, url) -> None:
    """What is before the '@' is no host: curl fetches http://localhost:x@example.invalid from
    example.invalid, so it must not pass for this machine's plain http, key pinned or not."""
    for pin in ([], ["--pubkey", f"SHA256:{'ab' * 32}"]):
        result = run_installer(tmp_path, None, "--base-url", url, "--list", *pin)
        assert result.returncode != 0
        assert f"install.sh: error: base URL '{url}' has user info (an '@' before the host)" in result.stderr
        assert "download failed" not in result.stderr and "refusing" not in result.stderr


def test_a_series_published_but_not_built_here_says_what_is(tmp_path, store) -> None:
    result = run_installer(
        tmp_path, store, "--version", "3.13", "--prefix", str(tmp_path / "p"),
        os_release="ID=debian\nVERSION_ID=11\n",
    )  # fmt: skip
    assert result.returncode != 0
    assert "no Python 3.13.x is built for debian-11/x86_64 (built for it: 3.12.8)" in result.stderr


@pytest.mark.parametrize(("machine", "arch"), [("amd64", "x86_64"), ("arm64", "aarch64")])
def test_amd64_and_arm64_machines_are_x86_64_and_aarch64(tmp_path, store, machine, arch) -> None:
    result = run_installer(tmp_path, store, "--list", machine=machine)
    assert result.returncode == 0, result.stderr
    if arch == "x86_64":
        assert result.stdout.split() == ["3.13.5", "3.12.8"]
    else:
        assert "no builds for debian-12/aarch64 yet" in result.stderr


def _published_script(tmp_path: Path, base: str) -> Path:
    from buildfarm.catalog import render_installer

    script = tmp_path / "published-install.sh"
    script.write_bytes(render_installer(base))
    return script


def test_help_tells_the_published_default_and_the_environment_variable(tmp_path) -> None:
    script = _published_script(tmp_path, "https://cdn.example.org/python/")
    shown = run_installer(tmp_path, None, "--help", script=script)
    assert shown.returncode == 0
    assert "Default: $BUILDFARM_BASE_URL, else" in shown.stdout
    assert "https://cdn.example.org/python\n" in shown.stdout
    assert re.search(r"^  BUILDFARM_BASE_URL +the store's URL", shown.stdout, re.M)
    assert "where this script came from" not in shown.stdout
    unpublished = run_installer(tmp_path, None, "--help")
    assert "(none: this copy was not published by a farm)" in unpublished.stdout


def test_the_base_url_comes_from_the_option_else_the_environment_else_publishing(tmp_path, store) -> None:
    # Published for a server that is not there: the default is what it reads.
    script = _published_script(tmp_path, "http://127.0.0.1:9/python")
    default = run_installer(tmp_path, None, "--list", script=script)
    assert default.returncode != 0 and "download failed: http://127.0.0.1:9/python/versions.json" in (
        default.stderr
    )
    from_env = run_installer(
        tmp_path, None, "--list", script=script, environ={"BUILDFARM_BASE_URL": f"file://{store}/"}
    )
    assert from_env.returncode == 0 and from_env.stdout.split() == ["3.13.5", "3.12.8"], from_env.stderr
    option_wins = run_installer(
        tmp_path, store, "--list", script=script, environ={"BUILDFARM_BASE_URL": "http://127.0.0.1:9/x"}
    )
    assert option_wins.returncode == 0 and option_wins.stdout.split() == ["3.13.5", "3.12.8"]


@pytest.mark.parametrize("base", ["https://cdn.example.org/python", "file:///srv/dist", None])
def test_the_published_base_url_reads_back(base) -> None:
    from buildfarm.catalog import render_installer
    from buildfarm.catalog.install_script import embedded_base_url

    script = render_installer(base or "https://x.org/$(reboot)")
    assert embedded_base_url(script) == base


@pytest.mark.parametrize("bad", ["3.13.9\x1b[2J", "3.13.*", "3.13.5 ", "3.1३.5"])
def test_a_malformed_version_in_the_catalog_is_refused_and_quoted(tmp_path, store, bad) -> None:
    """A version is checked before it names anything: a terminal escape, a pattern or a
    non-ASCII digit in versions.json is one line, quoted, not a match or a message."""
    catalog = json.loads((store / "versions.json").read_text())
    catalog["python_versions"].insert(0, bad)
    (store / "versions.json").write_text(json.dumps(catalog))
    result = run_installer(tmp_path, store, "--list")
    assert result.returncode != 0 and result.stdout == ""
    assert "versions.json lists a malformed version" in result.stderr, result.stderr
    assert "\x1b" not in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_a_version_matches_its_cells_whole_not_as_a_pattern(tmp_path, store) -> None:
    """3.12.8's cell key is compared as text: a catalog whose only debian-12 build is under a
    key that 3.12.8 would match as a regex (3x12x8) lists nothing built for 3.12.8 here."""
    catalog = json.loads((store / "versions.json").read_text())
    catalog["builds"]["3x12x8"] = {"debian-11": catalog["builds"]["3.12.8"].pop("debian-11")}
    catalog["builds"]["3.12.8"] = {"debian-13": catalog["builds"]["3.12.8"].pop("debian-12")}
    catalog["builds"]["3x12x8"]["debian-12"] = catalog["builds"]["3.12.8"]["debian-13"]
    (store / "versions.json").write_text(json.dumps(catalog))
    result = run_installer(tmp_path, store, "--list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3.13.5"]
