"""Build configuration that follows the installed tree when it is moved (pure text
transforms, applied by install.py at install time; no post-install step for users).

- sysconfig: lib/python3.X/_sysconfigdata_*.py gets a tail that replaces the
  configured prefix in every path-valued variable (INCLUDEPY, LIBDIR, LIBPL,
  CONFINCLUDEPY, BINDIR, LIBDEST, prefix, ...) with the prefix computed from the
  file's own location (lib/python3.X/ is two levels below the prefix). Installed at
  the configured prefix (the .deb), the computed prefix is the configured one and
  nothing changes.
- pkg-config: lib/pkgconfig/python-3.X*.pc say prefix=${pcfiledir}/../.., pkg-config's
  own variable for the directory of the .pc file.
- bin/ scripts: a '#!/opt/python/.../python3.X' first line becomes a /bin/sh trampoline
  that runs the interpreter next to the script (rewrite_shebang()); so does
  lib/python3.X/config-3.X-*/python-config.py's, with bin/python3.X three levels up.
- build-details.json (PEP 739, 3.14+): paths relative to the file, as upstream's generator
  writes them with --relative-paths (relocatable_build_details(); series.BUILD_DETAILS_FROM).
- python3.X-config is upstream's shell script, which already computes its prefix from
  its own path ($0) and rewrites includedir, libdir and LIBPL with it.

Standard library only, Python 3.6+.
"""

import collections
import json
import posixpath
import re

MARKER = "# --- relocatable (added by the build farm's build.py) ---"
# Records of how the interpreter was built, not paths to use: left as configured.
KEEP_AS_BUILT = ("CONFIG_ARGS",)

_SYSCONFIG_TAIL = """
{marker}
def _buildfarm_relocate(variables, built_prefix, keep):
    import os
    import re
    here = os.path.dirname(os.path.realpath(__file__))
    prefix = os.path.dirname(os.path.dirname(here))
    if prefix == built_prefix:
        return
    pattern = re.compile(re.escape(built_prefix) + r"(?=$|[/\\s'\\":;])")
    for name, value in list(variables.items()):
        if name not in keep and isinstance(value, str) and built_prefix in value:
            variables[name] = pattern.sub(lambda _match: prefix, value)


_buildfarm_relocate(build_time_vars, {prefix!r}, {keep!r})
del _buildfarm_relocate
"""


def relocatable_sysconfigdata(text, prefix):
    """_sysconfigdata_*.py text with the relocation tail (idempotent)."""
    if MARKER in text:
        return text
    if "build_time_vars" not in text:
        raise ValueError("not a _sysconfigdata module: no build_time_vars")
    return (
        text.rstrip("\n")
        + "\n"
        + _SYSCONFIG_TAIL.format(marker=MARKER, prefix=prefix.rstrip("/") or "/", keep=KEEP_AS_BUILT)
    )


def relocatable_pc(text, prefix):
    """A python-3.X(-embed).pc with its prefix relative to ${pcfiledir} (lib/pkgconfig/)
    and every other mention of the configured prefix expressed through ${prefix}."""
    prefix = prefix.rstrip("/")
    pattern = re.compile(re.escape(prefix) + r"(?=$|[/\s])")
    lines = []
    seen_prefix = False
    for line in text.splitlines():
        if line.startswith("prefix="):
            line = "prefix=${pcfiledir}/../.."
            seen_prefix = True
        elif prefix in line:
            line = pattern.sub("${prefix}", line)
        lines.append(line)
    if not seen_prefix:
        raise ValueError("no prefix= line in the .pc file")
    return "\n".join(lines) + "\n"


def relocatable_shebang(interpreter_name):
    """A /bin/sh trampoline that runs the script with the interpreter next to it
    (the form python-build-standalone uses), so bin/ scripts work from any directory.
    interpreter_name may be a path relative to the script's directory."""
    return ('#!/bin/sh\n\'\'\'exec\' "$(dirname -- "$(realpath -- "$0")")/{}" "$0" "$@"\n\' \'\'\'\n').format(
        interpreter_name
    )


def rewrite_shebang(content, interpreter_name):
    """Script bytes with a '#!.../python...' first line replaced by the trampoline; None if not one."""
    first, newline, rest = content.partition(b"\n")
    if not newline or not re.match(rb"^#!\s*/\S*/python[0-9.]*\s*$", first):
        return None
    return relocatable_shebang(interpreter_name).encode() + rest


# build-details.json's path-valued keys (dotted: nested objects), as upstream's generator lists them.
BUILD_DETAILS_PATHS = (
    "base_interpreter",
    "libpython.dynamic",
    "libpython.dynamic_stableabi",
    "libpython.static",
    "c_api.headers",
    "c_api.pkgconfig_path",
)


def _build_details_entries(data):
    """(dotted key, container, key, value) of every path-valued entry of build-details.json."""
    for dotted in BUILD_DETAILS_PATHS:
        *parents, key = dotted.split(".")
        container = data
        for part in parents:
            container = container.get(part) if isinstance(container, dict) else None
        if isinstance(container, dict) and isinstance(container.get(key), str):
            yield dotted, container, key, container[key]


def relocatable_build_details(text, prefix, installed_dir):
    """build-details.json text with base_prefix relative to installed_dir (the file's directory
    as installed) and the paths under the prefix './'-relative to base_prefix, as PEP 739 allows
    and --relative-paths writes them. Unchanged when base_prefix is already relative."""
    data = json.loads(text, object_pairs_hook=collections.OrderedDict)
    prefix = prefix.rstrip("/") or "/"
    base = data.get("base_prefix")
    if isinstance(base, str) and not base.startswith("/"):
        return text
    if base != prefix:
        raise ValueError("build-details.json: base_prefix {!r} is not the prefix {!r}".format(base, prefix))
    for _dotted, container, key, value in _build_details_entries(data):
        if value == prefix or value.startswith(prefix.rstrip("/") + "/"):
            container[key] = "./" + posixpath.relpath(value, prefix)
    data["base_prefix"] = posixpath.relpath(prefix, installed_dir)
    return json.dumps(data, indent=2) + "\n"


def build_details_paths(data, directory):
    """{key: absolute path} of a loaded build-details.json in directory: base_prefix (relative
    to the directory) and every path-valued key (relative to base_prefix), PEP 739's rules."""
    base = posixpath.normpath(posixpath.join(directory, data["base_prefix"]))
    paths = {"base_prefix": base}
    for dotted, _container, _key, value in _build_details_entries(data):
        paths[dotted] = posixpath.normpath(posixpath.join(base, value))
    return paths
