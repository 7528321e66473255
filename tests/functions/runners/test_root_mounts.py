"""roots.mounted() with real mounts: leaving it unmounts exactly the mounts it made, in reverse
order, and never one that another run or an operator made in the same root (beside ours, or
stacked on one of ours); remove_root is the explicit clean-up of stale mounts and deletes
nothing through one. Every test's mounts under tmp_path are taken down in the fixture's
teardown, whatever happened (pytest's clean-up of old tmp_paths would delete through one)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from buildfarm import roots
from buildfarm.models import BuildSpec
from buildfarm.platforms import load_registry
from buildfarm.runners import ChrootRunner

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (real mounts)")

OURS = ("proc", "sys", "dev", "dev/pts", "dev/shm")


def mounts_under(path: Path) -> list[str]:
    """Mount points below path, one entry per mount (stacked ones repeat), read here and not
    through the code under test."""
    prefix = str(path.resolve()).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as handle:
        points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4]) for line in handle]
    return [point for point in points if point.startswith(prefix)]


def take_down(path: Path) -> None:
    for _ in range(10):
        points = mounts_under(path)
        if not points:
            return
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL, check=False)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """A root with the directories mounted() mounts on; nothing stays mounted under tmp_path."""
    path = tmp_path / "root"
    for name in ("etc", "proc", "sys", "dev", "srv"):
        (path / name).mkdir(parents=True)
    try:
        yield path
    finally:
        take_down(tmp_path)
        assert mounts_under(tmp_path) == [], "mounts left under tmp_path"


def bind(source: Path, target: Path) -> None:
    """A mount someone else makes (the test stands in for another run or an operator)."""
    source.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--bind", str(source), str(target)], check=True)


def relative(root: Path) -> list[str]:
    return sorted(Path(point).relative_to(root).as_posix() for point in mounts_under(root))


def test_leaving_mounted_keeps_the_mounts_someone_else_made_in_the_root(root, tmp_path):
    bind(tmp_path / "theirs", root / "srv" / "before")
    (tmp_path / "data").mkdir()
    with roots.mounted(root, [(tmp_path / "data", "/buildfarm/data", True)]):
        assert set(relative(root)) == {*OURS, "buildfarm/data", "srv/before"}
        bind(tmp_path / "theirs", root / "srv" / "during")
    assert relative(root) == ["srv/before", "srv/during"]


def test_a_second_mounted_of_the_same_root_leaves_the_firsts_mounts(root, tmp_path):
    """The kernel refuses a second sysfs (and bind of /dev) on the same mount point, so a second
    mounted() of a root in use fails: taking down what it made, never the first one's mounts."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "file").write_text("kept")
    with roots.mounted(root, [(tmp_path / "data", "/buildfarm/data", True)]):
        with pytest.raises(roots.RootError), roots.mounted(root):
            pytest.fail("a second /sys was mounted on the first")
        assert sorted(relative(root)) == sorted({*OURS, "buildfarm/data"})
        assert (root / "proc" / "self").exists()
        assert (root / "buildfarm" / "data" / "file").read_text() == "kept"
    assert relative(root) == []


def test_a_mount_stacked_on_one_of_ours_is_not_taken(root):
    """Ours under it stays (taking it would take theirs) until a clean-up; the rest goes."""
    with roots.mounted(root):
        subprocess.run(["mount", "-t", "tmpfs", "theirs", str(root / "proc")], check=True)
        (root / "proc" / "their-file").write_text("theirs")
    assert (root / "proc" / "their-file").read_text() == "theirs"
    assert relative(root) == ["proc", "proc"]
    roots.unmount_all(root)
    assert relative(root) == []


def test_a_failed_mount_takes_down_what_was_mounted_before_it_and_only_that(root, tmp_path):
    bind(tmp_path / "theirs", root / "srv" / "theirs")
    with (
        pytest.raises(roots.RootError, match="bind"),
        roots.mounted(root, [(tmp_path / "missing", "/x", True)]),
    ):
        pytest.fail("mounted() went on after a failed bind")
    assert relative(root) == ["srv/theirs"]


def test_remove_root_unmounts_stale_mounts_and_deletes_nothing_through_them(root, tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "precious").write_text("keep me")
    bind(tmp_path / "outside", root / "srv" / "stale")
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    roots.remove_root(root)
    assert not root.exists()
    assert (tmp_path / "outside" / "precious").read_text() == "keep me"


# The driver, run on this machine in place of the root's: it writes a build where the root shows
# it its store (the outbox, bind-mounted for real), then succeeds.
DRIVER = (
    'cell="$ROOT/buildfarm/store/$ARTIFACT_DIR" && mkdir -p "$cell" && echo {} > "$cell/manifest.json"'
    ' && echo \'buildfarm: result {"ok": true, "phase": null, "reason": null}\''
)


def test_a_chroot_build_unmounts_what_a_killed_build_left_and_publishes_through_real_mounts(
    tmp_path, root, monkeypatch
):
    """A build killed before its clean-up leaves its mounts (a second sysfs on /sys would fail
    every later build of the root): the next one, holding the root's lock, takes them down,
    mounts its own (the outbox where the store would be) and leaves nothing mounted."""
    monkeypatch.setenv("BUILDFARM_ROOTS_DIR", str(tmp_path / "roots"))
    registry = load_registry()
    runner = ChrootRunner(registry.get("debian-11"), registry, "http://127.0.0.1:9/debian")
    runner_root = runner.root
    runner_root.parent.mkdir()
    root.rename(runner_root)
    subprocess.run(["mount", "-t", "sysfs", "sysfs", str(runner_root / "sys")], check=True)
    bind(tmp_path / "store", runner_root / "buildfarm" / "store")  # the old runners' store mount
    monkeypatch.setattr(ChrootRunner, "ensure_root", lambda self, packages, output: self.root)

    def command(root, argv, env):
        spec = json.loads(env["BUILD_SPEC"])
        return ["sh", "-c", DRIVER], {**env, "ROOT": str(root), "ARTIFACT_DIR": spec["artifact_dir"]}

    monkeypatch.setattr(roots, "chroot_command", command)
    (tmp_path / "mirror").mkdir()
    spec = BuildSpec.model_validate(
        {
            "version": "3.13.5", "platform": "debian-11", "arch": "x86_64", "build": 1,
            "source": {"url": (tmp_path / "mirror" / "Python-3.13.5.tar.xz").as_uri(), "sha256": "a" * 64},
            "prefix": "/opt/python/3.13.5", "optimization": "none", "store": str(tmp_path / "store"),
            "artifact_dir": "builds/3.13.5/debian-11/x86_64/1", "execution_id": "local-1",
        }
    )  # fmt: skip
    output = io.StringIO()
    result = runner.run(spec, output=output)
    assert result.ok, (result, output.getvalue())
    assert "chroot: unmounted what an interrupted build left in the root" in output.getvalue()
    assert relative(runner_root) == []
    assert (tmp_path / "store" / spec.artifact_dir / "manifest.json").read_text() == "{}\n"
    assert not any((runner_root / "buildfarm" / "store").iterdir())  # written to the outbox only
