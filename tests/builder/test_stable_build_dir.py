"""The driver's build directory (driver/workdir.py): with ccache, one stable, locked and emptied
directory per cell, so PGO's instrumented objects (which embed their directory) hit the cache
on the cell's next build; a random one when that directory is busy or not safe, or without ccache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from driver import buildenv, make, workdir

BUILD_PY = Path(__file__).resolve().parents[2] / "builder_image" / "build.py"
SPEC = {"version": "3.13.5", "platform": "debian-12", "arch": "x86_64", "optimization": "pgo+lto"}
STABLE_NAME = "build-3.13.5-debian-12-x86_64-pgo-lto"


def ccache_env(tmp_path: Path, **more: str) -> dict[str, str]:
    return {"BUILDFARM_CCACHE": "1", "BUILDFARM_WORK_DIR": str(tmp_path / "work"), **more}


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        (SPEC, STABLE_NAME),
        ({**SPEC, "optimization": "none"}, "build-3.13.5-debian-12-x86_64-none"),
        ({**SPEC, "version": "3.14.0rc2", "arch": "aarch64"}, "build-3.14.0rc2-debian-12-aarch64-pgo-lto"),
        ({**SPEC, "platform": "a/../b c"}, "build-3.13.5-a-..-b-c-x86_64-pgo-lto"),
    ],
)
def test_the_stable_name_is_the_cell_and_optimization_in_one_path_word(spec, name):
    assert workdir.stable_name(spec) == name
    assert "/" not in workdir.stable_name(spec)


def test_the_stable_path_is_under_the_stable_root_else_the_work_root_and_only_with_ccache(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    root = str(tmp_path / "stable")
    assert workdir.stable_path(SPEC, {"BUILDFARM_STABLE_BUILD_ROOT": root}) is None
    assert workdir.stable_path(SPEC, {"BUILDFARM_CCACHE": "0", "BUILDFARM_STABLE_BUILD_ROOT": root}) is None
    assert workdir.stable_path(SPEC, ccache_env(tmp_path, BUILDFARM_STABLE_BUILD_ROOT=root)) == os.path.join(
        root, STABLE_NAME
    )
    assert workdir.stable_path(SPEC, ccache_env(tmp_path)) == str(tmp_path / "work" / STABLE_NAME)
    assert workdir.stable_path(SPEC, {"BUILDFARM_CCACHE": "1"}) == str(tmp_path / "tmp" / STABLE_NAME)


def test_without_ccache_every_build_gets_a_fresh_random_directory_removed_at_the_end(tmp_path):
    first = workdir.create(SPEC, {"BUILDFARM_WORK_DIR": str(tmp_path / "work")})
    second = workdir.create(SPEC, {"BUILDFARM_WORK_DIR": str(tmp_path / "work")})
    assert not first.stable and not second.stable and first.path != second.path and first.note == ""
    assert Path(first.path).parent == tmp_path / "work"
    assert (
        Path(first.path).name.startswith("build-3.13.5-debian-12-") and Path(first.path).name != STABLE_NAME
    )
    (Path(first.path) / "Python-3.13.5").mkdir()
    first.remove()
    first.release()
    assert not Path(first.path).exists() and Path(second.path).is_dir()


def test_with_ccache_the_cell_builds_in_its_stable_directory_emptied_first(tmp_path):
    stable = tmp_path / "work" / STABLE_NAME
    # What a killed build leaves: sources, objects, stale profiles, a read-only directory, a symlink out.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the build's")
    objects = stable / "Python-3.13.5" / "Objects"
    objects.mkdir(parents=True)
    (objects / "listobject.gcda").write_bytes(b"stale profile")
    (stable / "build.log").write_text("old")
    (stable / "link").symlink_to(outside)
    locked = stable / "staging" / "ro"
    locked.mkdir(parents=True)
    (locked / "file").write_text("x")
    locked.chmod(0o500)
    work = workdir.create(SPEC, ccache_env(tmp_path))
    try:
        assert work.stable and work.path == str(stable)
        assert work.note == f"stable build directory (compiler cache): {stable}"
        assert os.listdir(stable) == []
        assert (outside / "keep.txt").read_text() == "not the build's"
        (stable / "Python-3.13.5").mkdir()
        work.remove()
        assert stable.is_dir() and os.listdir(stable) == []  # emptied, kept for the next build
    finally:
        work.release()
    again = workdir.create(SPEC, ccache_env(tmp_path))
    assert again.stable and again.path == str(stable)
    again.release()


def test_a_busy_stable_directory_sends_the_build_to_a_random_one_and_is_not_touched(tmp_path):
    holder = workdir.create(SPEC, ccache_env(tmp_path))
    (Path(holder.path) / "Python-3.13.5.o").write_text("the holder's")
    other = workdir.create(SPEC, ccache_env(tmp_path))
    try:
        assert holder.stable and not other.stable and other.path != holder.path
        assert Path(other.path).parent == tmp_path / "work"
        assert (
            other.note
            == f"stable build directory {holder.path} is in use by another build; building in a random one"
        )
        assert (Path(holder.path) / "Python-3.13.5.o").read_text() == "the holder's"
    finally:
        other.remove()
        holder.release()
    after = workdir.create(SPEC, ccache_env(tmp_path))  # the lock went with its holder
    assert after.stable and after.path == holder.path
    after.release()


def test_the_lock_holds_across_processes_and_dies_with_its_holder(tmp_path):
    """Another driver (another process) holding the cell's directory: this one falls back; once
    that process is gone (as after SIGKILL), the directory is free again."""
    program = (
        "import sys, json; sys.path.insert(0, sys.argv[1]); from driver import workdir;"
        "work = workdir.create(json.loads(sys.argv[2]), json.loads(sys.argv[3]));"
        "print(work.stable, flush=True); sys.stdin.read()"
    )
    argv = [
        sys.executable,
        "-c",
        program,
        str(BUILD_PY.parent),
        json.dumps(SPEC),
        json.dumps(ccache_env(tmp_path)),
    ]
    holder = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        busy = workdir.create(SPEC, ccache_env(tmp_path))
        assert not busy.stable and "is in use by another build" in busy.note
        busy.remove()
    finally:
        holder.kill()
        holder.wait()
    free = workdir.create(SPEC, ccache_env(tmp_path))
    assert free.stable
    free.release()


def test_a_symlink_or_a_file_at_the_stable_path_is_refused_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "precious").write_text("x")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / STABLE_NAME).symlink_to(target)
    work = workdir.create(SPEC, ccache_env(tmp_path))
    assert not work.stable and "cannot be opened" in work.note
    assert (target / "precious").read_text() == "x"
    work.remove()
    (tmp_path / "work" / STABLE_NAME).unlink()
    (tmp_path / "work" / STABLE_NAME).write_text("a file")
    work = workdir.create(SPEC, ccache_env(tmp_path))
    assert not work.stable and "cannot be opened" in work.note
    work.remove()


def run_driver_to_preflight(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    spec = {
        **SPEC, "optimization": "none", "build": 1, "prefix": "/opt/python/3.13.5",
        "source": {"url": "http://127.0.0.1:1/Python-3.13.5.tar.xz", "sha256": "0" * 64},
        "store": str(tmp_path / "store"), "artifact_dir": "builds/3.13.5/debian-12/x86_64/1",
    }  # fmt: skip
    environment = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "BUILD_SPEC": json.dumps(spec)}
    environment.update(BUILDFARM_STOP_AFTER="preflight", BUILDFARM_CHECK_BUILD_DEPS="0", **env)
    return subprocess.run([sys.executable, str(BUILD_PY)], env=environment, capture_output=True, text=True)


@pytest.mark.skipif(not shutil.which("dpkg-deb"), reason="the preflight of a deb platform needs dpkg-deb")
def test_the_driver_empties_its_stable_directory_at_the_start_and_the_end_unless_kept(tmp_path):
    stable = tmp_path / "stable" / "build-3.13.5-debian-12-x86_64-none"
    (stable / "Python-3.13.5").mkdir(parents=True)
    (stable / "Python-3.13.5" / "stale.gcda").write_bytes(b"old")
    env = {"BUILDFARM_CCACHE": "1", "BUILDFARM_STABLE_BUILD_ROOT": str(tmp_path / "stable")}
    done = run_driver_to_preflight(tmp_path, **env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"buildfarm: stable build directory (compiler cache): {stable}\n" in done.stdout
    assert stable.is_dir() and os.listdir(stable) == []
    kept = run_driver_to_preflight(tmp_path, BUILDFARM_KEEP_WORK="1", **env)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert f"buildfarm: work directory kept: {stable} (until the cell's next build)\n" in kept.stdout
    assert sorted(os.listdir(stable)) == ["build.log", "home"]
    plain = run_driver_to_preflight(tmp_path, BUILDFARM_WORK_DIR=str(tmp_path / "work"))
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "stable build directory" not in plain.stdout and os.listdir(tmp_path / "work") == []


def ccache_version() -> tuple[int, ...]:
    if not (shutil.which("ccache") and shutil.which("gcc")):
        return ()
    first = subprocess.run(["ccache", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return tuple(int(part) for part in first.rsplit(" ", 1)[-1].split(".")[:2] if part.isdigit())


def compile_instrumented(work: workdir.WorkDir, cache: Path) -> tuple[dict[str, str], bytes]:
    """Compile one file with -fprofile-generate in work through ccache as the driver's make does
    (make.build_env's masquerade, buildenv.ccache_env's settings): (ccache's counters, the object)."""
    shims = Path(work.path) / "ccache-bin"
    shims.mkdir()
    (shims / "gcc").symlink_to(shutil.which("ccache"))
    base = buildenv.child_env({}, str(Path(work.path)), True)
    env = buildenv.ccache_env(base, {"CCACHE_DIR": str(cache)}, str(shims), work.path)
    env["CCACHE_STATSLOG"] = os.path.join(work.path, "ccache-stats.log")  # as make.build_env sets it
    source = Path(work.path) / "Objects" / "listobject.c"
    source.parent.mkdir()
    source.write_text("int list_length(int n) { return n > 0 ? n : 0; }\n")
    subprocess.run(["ccache", "--zero-stats"], env=env, check=True, capture_output=True)
    argv = ["gcc", "-O2", "-fprofile-generate", "-c", "Objects/listobject.c", "-o", "Objects/listobject.o"]
    subprocess.run(argv, cwd=work.path, env=env, check=True)
    stats = subprocess.run(["ccache", "--print-stats"], env=env, check=True, capture_output=True, text=True)
    counters = dict(line.split("\t", 1) for line in stats.stdout.splitlines() if "\t" in line)
    logged, _ = make.ccache_counts(env["CCACHE_STATSLOG"], 0)
    assert logged == {"hits": hits(counters), "misses": int(counters["cache_miss"]), "uncacheable": 0}
    return counters, (Path(work.path) / "Objects" / "listobject.o").read_bytes()


def hits(counters: dict[str, str]) -> int:
    return int(counters["direct_cache_hit"]) + int(counters["preprocessed_cache_hit"])


@pytest.mark.skipif(ccache_version() < (4, 0), reason="needs gcc and ccache 4 (--print-stats)")
def test_an_instrumented_compile_hits_ccache_in_the_stable_directory_and_only_there(tmp_path):
    """The reason for the stable directory, with the real compiler and ccache."""
    cache = tmp_path / "ccache"
    first = workdir.create(SPEC, ccache_env(tmp_path))
    counters, _ = compile_instrumented(first, cache)
    assert hits(counters) == 0 and counters["cache_miss"] == "1"
    first.remove()
    first.release()
    second = workdir.create(SPEC, ccache_env(tmp_path))
    counters, instrumented = compile_instrumented(second, cache)
    assert second.path == first.path and hits(counters) == 1
    # The object writes its profile into this build's directory (so a hit is right only here).
    assert os.path.join(second.path, "Objects", "listobject.gcda").encode() in instrumented
    elsewhere = workdir.create(SPEC, ccache_env(tmp_path))  # the stable one is busy: a random one
    counters, instrumented = compile_instrumented(elsewhere, cache)
    assert not elsewhere.stable and hits(counters) == 0
    assert os.path.join(elsewhere.path, "Objects", "listobject.gcda").encode() in instrumented
    elsewhere.remove()
    second.release()


STATS_LOG = """# Objects/listobject.c
direct_cache_hit
local_storage_hit
# Objects/dictobject.c
cache_miss
direct_cache_miss
local_storage_write
# Modules/_json.o
called_for_link
# Objects/setobject.c
unsupported_compiler_option
# Parser/token.c
preprocessed_cache_hit
"""


def test_make_counts_each_steps_ccache_calls_from_the_stats_log(tmp_path):
    """The per-step line in build.log (make.ccache_counts): one "# input" block per call."""
    log = tmp_path / "ccache-stats.log"
    log.write_text(STATS_LOG)
    counts, offset = make.ccache_counts(str(log), 0)
    assert counts == {"hits": 2, "misses": 1, "uncacheable": 2} and offset == len(STATS_LOG)
    assert make.describe_ccache_counts(counts) == "2 hits, 1 misses, 2 not cacheable"
    with log.open("a") as handle:  # the next step: only what came since
        handle.write("# Python/ceval.c\ndirect_cache_hit\n")
    counts, later = make.ccache_counts(str(log), offset)
    assert counts == {"hits": 1, "misses": 0, "uncacheable": 0} and later == log.stat().st_size
    assert make.ccache_counts(str(tmp_path / "absent"), 7) == ({"hits": 0, "misses": 0, "uncacheable": 0}, 7)
