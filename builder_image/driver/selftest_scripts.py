"""The programs the self-test (selftest.py) runs in the tree it checks: Python scripts run by
the built interpreter, and a C program embedding it. Standard library only, Python 3.6+."""

EMBED_PROGRAM = r"""
#include <Python.h>

int main(void) {
    Py_Initialize();
    int failed = PyRun_SimpleString(
        "import json, platform, sqlite3\n"
        "print('embedded', json.loads(json.dumps(platform.python_version())))\n");
    return Py_FinalizeEx() < 0 || failed ? 1 : 0;
}
"""

PYTHON_INFO_SCRIPT = r"""
import json, os, platform, sys, sysconfig
print(json.dumps({
    "version": platform.python_version(),
    "implementation": sys.implementation.name,
    "abiflags": getattr(sys, "abiflags", ""),
    "soabi": sysconfig.get_config_var("SOABI"),
    "glibc": "-".join(platform.libc_ver()),
    "compiler": platform.python_compiler(),
    "config_args": sysconfig.get_config_var("CONFIG_ARGS"),
}))
"""

IMPORT_SCRIPT = r"""
import importlib, json, os, sys, sysconfig
imported, missing = [], {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
        imported.append(name)
    except Exception as error:
        missing[name] = "{}: {}".format(type(error).__name__, error)
dynload = os.path.join(sysconfig.get_path("platstdlib"), "lib-dynload")
suffix = sysconfig.get_config_var("EXT_SUFFIX")
built = sorted(n[: -len(suffix)] for n in os.listdir(dynload) if n.endswith(suffix))
print(json.dumps({"imported": imported, "missing": missing,
                  "extension_modules": sorted(set(built) | set(sys.builtin_module_names))}))
"""

# Run by the moved tree's python with the moved prefix as argv[1]: its prefix, and
# every sysconfig path variable that does not point into the moved tree.
MOVED_SCRIPT = r"""
import json, os, sys, sysconfig, ssl, sqlite3, ctypes
moved = os.path.realpath(sys.argv[1])
names = ("prefix", "exec_prefix", "BINDIR", "LIBDIR", "LIBPL", "LIBDEST", "BINLIBDEST",
         "INCLUDEPY", "CONFINCLUDEPY", "INCLUDEDIR", "DESTSHARED", "LIBPC")
outside = {}
for name in names:
    value = sysconfig.get_config_var(name)
    if value and not (os.path.realpath(value) + os.sep).startswith(moved + os.sep):
        outside[name] = value
for name, value in sysconfig.get_paths().items():
    if not (os.path.realpath(value) + os.sep).startswith(moved + os.sep):
        outside["paths:" + name] = value
print(json.dumps({"prefix": sys.prefix, "outside": outside}))
"""
