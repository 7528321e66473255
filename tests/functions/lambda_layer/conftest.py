"""A local package index (PEP 503 "simple" tree over loopback HTTP) with one test project for
each outcome of the dependency builder, made once per session:

- lf-manylinux 1.0: manylinux_2_28 wheels only (x86_64 and aarch64; lf_manylinux.ARCH says which);
- lf-puresdist 1.0: a pure-Python sdist;
- lf-needscc 1.0: an sdist with a required C extension;
- lf-speedups 1.0: an sdist whose C speedups need a header this machine lacks, and that leaves them
  out when no C compiler works (a pure wheel);
- lf-broken 1.0: an sdist whose required C extension cannot compile.

The sdists build with an in-tree backend (sdist_backend.py), so no setuptools and no network.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import platform
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import sdist_backend  # noqa: E402

HOST_ARCH = platform.machine()
OTHER_ARCH = {"x86_64": "aarch64", "aarch64": "x86_64"}[HOST_ARCH]
PYTHON_XY = f"{sys.version_info.major}.{sys.version_info.minor}"

EXTENSION = """#include <Python.h>
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "%(name)s", NULL, -1, NULL};
PyMODINIT_FUNC PyInit_%(name)s(void) { return PyModule_Create(&module); }
"""
SPEEDUPS = "#include <lf_missing_dependency.h>\n" + EXTENSION
BROKEN = '#error "lf-broken cannot be built"\n' + EXTENSION
SPEEDUPS_MODULE = """try:
    import lf_speedups_c
    FAST = True
except ImportError:
    FAST = False
"""

SDISTS = {
    "lf-puresdist": {"module": {"lf_puresdist.py": "PURE = True\n"}, "ext": None},
    "lf-needscc": {
        "module": {"lf_needscc.py": "import lf_needscc_c\n"},
        "ext": {"name": "lf_needscc_c", "source": EXTENSION % {"name": "lf_needscc_c"}},
    },
    "lf-speedups": {
        "module": {"lf_speedups.py": SPEEDUPS_MODULE},
        "ext": {
            "name": "lf_speedups_c",
            "source": SPEEDUPS % {"name": "lf_speedups_c"},
            "optional_without_compiler": True,
        },
    },
    "lf-broken": {
        "module": {"lf_broken.py": ""},
        "ext": {"name": "lf_broken_c", "source": BROKEN % {"name": "lf_broken_c"}},
    },
}
PYPROJECT = """[build-system]
requires = []
build-backend = "lf_backend"
backend-path = ["."]
"""


@dataclass
class PackageIndex:
    url: str  # the simple index: pip's --index-url
    files: Path  # every distribution file, by name
    sha256: dict[str, str]  # file name -> sha256

    def hashes(self, project: str) -> list[str]:
        prefix = project.replace("-", "_") + "-"
        return [f"sha256:{digest}" for name, digest in sorted(self.sha256.items()) if name.startswith(prefix)]


def _add_tar_member(archive: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    info.mtime = 1_700_000_000
    archive.addfile(info, io.BytesIO(content))


def write_sdist(directory: Path, project: str, spec: dict) -> str:
    """An sdist of `project` 1.0 built by the in-tree backend."""
    base = f"{project.replace('-', '_')}-1.0"
    config = {"name": project, "version": "1.0", **spec}
    members = {
        "pyproject.toml": PYPROJECT,
        "lf_backend.py": (HERE / "sdist_backend.py").read_text(),
        "lf_build.json": json.dumps(config),
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {project}\nVersion: 1.0\n",
    }
    with tarfile.open(directory / f"{base}.tar.gz", "w:gz") as archive:
        for name, text in members.items():
            _add_tar_member(archive, f"{base}/{name}", text.encode())
    return f"{base}.tar.gz"


def write_simple_index(root: Path, files: Path) -> dict[str, str]:
    """root/simple/<project>/index.html linking each file with its sha256 (PEP 503)."""
    sha256 = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in files.iterdir()}
    projects: dict[str, list[str]] = {}
    for name in sha256:
        projects.setdefault(name.split("-", 1)[0].replace("_", "-"), []).append(name)
    for project, names in projects.items():
        page = root / "simple" / project / "index.html"
        page.parent.mkdir(parents=True)
        links = "".join(
            f'<a href="../../files/{html.escape(n)}#sha256={sha256[n]}">{html.escape(n)}</a>\n' for n in names
        )
        page.write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    return sha256


@pytest.fixture(scope="session")
def package_index(tmp_path_factory, http_dir_server) -> PackageIndex:
    root = tmp_path_factory.mktemp("index")
    files = root / "files"
    files.mkdir()
    for arch in ("x86_64", "aarch64"):
        module = {"lf_manylinux.py": f"ARCH = {arch!r}\n".encode()}
        sdist_backend.write_wheel(
            str(files), "lf-manylinux", "1.0", f"py3-none-manylinux_2_28_{arch}", module
        )
    for project, spec in SDISTS.items():
        write_sdist(files, project, spec)
    sha256 = write_simple_index(root, files)
    return PackageIndex(http_dir_server(root) + "/simple/", files, sha256)
