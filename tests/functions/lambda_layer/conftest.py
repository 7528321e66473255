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

import io
import json
import platform
import sys
import tarfile
from pathlib import Path

import pytest
import sdist_backend
from package_index import PackageIndex, serve_package_index

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
        "lf_backend.py": Path(sdist_backend.__file__).read_text(),
        "lf_build.json": json.dumps(config),
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {project}\nVersion: 1.0\n",
    }
    with tarfile.open(directory / f"{base}.tar.gz", "w:gz") as archive:
        for name, text in members.items():
            _add_tar_member(archive, f"{base}/{name}", text.encode())
    return f"{base}.tar.gz"


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
    return serve_package_index(root, http_dir_server)
