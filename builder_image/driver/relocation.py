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
- python3.X-config is upstream's shell script, which computes its prefix from its own path
  ($0); the driver edits its source, Misc/python-config.sh.in, before configure
  (relocatable_python_config()) so that the path is quoted, replaced literally and printed
  as is: upstream's left it unquoted, through sed and echo, and a space broke it.

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


# --- python3.X-config (Misc/python-config.sh.in, before configure) ---------------------------

PYTHON_CONFIG_MARKER = "# --- paths as data (added by the build farm's driver, relocation.py) ---"
# Shell functions the edited lines call, put before the script's first use of its prefix.
# Flags (-I, -L, CFLAGS) follow pkg-config, whose output for the tree's own .pc files is
# "-I/tmp/sp\\ ace/...": the characters sh reads specially get a backslash, so the command
# lines of make and sh (`CFLAGS += $(shell python3-config --cflags)`) get one argument per
# flag, and a path without them prints as before. Unlike pkg-config, '$', '(' and ')' are
# escaped too (nothing runs) and '%' and non-ASCII bytes are not (sh does not read them).
# Bare paths (--prefix, --exec-prefix, --configdir) are printed as they are, as
# `pkg-config --variable` does. printf, not echo: dash's echo reads backslashes.
_PYTHON_CONFIG_FUNCTIONS = r"""{marker}
# "$1" with its first "$2" replaced by "$3", all taken literally (sed read them as syntax).
replace_prefix ()
{{
    case "$1" in
        *"$2"*) printf '%s\n' "${{1%%"$2"*}}$3${{1#*"$2"}}" ;;
        *) printf '%s\n' "$1" ;;
    esac
}}

# A path as a flag's argument, escaped for sh as pkg-config does (see relocation.py).
flag_path ()
{{
    printf '%s\n' "$1" | LC_ALL=C sed 's/[][:space:]!"#$&'\''()*;<>?[\`{{|}}]/\\&/g'
}}

""".format(marker=PYTHON_CONFIG_MARKER)

# (what, pattern, replacement): each must match at least once, or the series' script is not
# the one these edits were written for (checked: 3.9.2, 3.11.2, 3.13.5, 3.13.15).
_PYTHON_CONFIG_EDITS = (
    # First: the flags' edits below put quotes inside these lines.
    ("the quoted echoes", r"""^(\s*)echo ("[^"`\\]*")(\s*>&2)?$""", r"\1printf '%s\\n' \2\3"),
    (
        "installed_prefix's unquoted dirname/cd",
        r'^(\s*)RESULT=\$\(dirname \$\(cd \$\(dirname "\$1"\) && pwd -P\)\)$',
        r'\1RESULT=$(dirname -- "$(cd -- "$(dirname -- "$1")" && pwd -P)")',
    ),
    ("installed_prefix's unquoted echo", r"^(\s*)echo \$RESULT$", r'''\1printf '%s\\n' "$RESULT"'''),
    ("the -I flags", r"-I\$includedir/", r'-I$(flag_path "$includedir")/'),
    ("the -L flag of libdir", r"-L\$libdir ", r'-L$(flag_path "$libdir") '),
    ("the -L flag of LIBPL", r'-L\$LIBPL"', r'-L$(flag_path "$LIBPL")"'),
)
# NAME=$(echo "VALUE" | sed "s#$prefix#$prefix_real#"): the configured prefix in VALUE
# replaced by the script's own. CFLAGS are flags: the prefix goes in escaped.
_PYTHON_CONFIG_SED = re.compile(r'^(\w+)=\$\(echo ("[^"]*") \| sed "s#\$prefix#\$prefix_real#"\)$', re.M)
_PYTHON_CONFIG_SED_NAMES = ("includedir", "libdir", "CFLAGS", "LIBPL")
_PYTHON_CONFIG_FIRST_USE = 'prefix_real=$(installed_prefix "$0")\n'


def _literal_prefix_line(match):
    name, value = match.group(1), match.group(2)
    real = '"$(flag_path "$prefix_real")"' if name == "CFLAGS" else '"$prefix_real"'
    return '{}=$(replace_prefix {} "$prefix" {})'.format(name, value, real)


def relocatable_python_config(text):
    """Misc/python-config.sh.in (3.9+) with its installed prefix quoted, replaced literally and
    printed with printf, and its -I/-L paths escaped for sh as pkg-config does; the output for
    a path without a space or another character sh reads specially is unchanged. Idempotent;
    ValueError naming the line when the text is not the expected script."""
    if PYTHON_CONFIG_MARKER in text:
        return text
    if text.count(_PYTHON_CONFIG_FIRST_USE) != 1:
        raise ValueError("no line {!r}".format(_PYTHON_CONFIG_FIRST_USE.strip()))
    names = _PYTHON_CONFIG_SED.findall(text)
    missing = sorted(set(_PYTHON_CONFIG_SED_NAMES) - {name for name, _value in names})
    if missing:
        raise ValueError("no sed line for {}".format(", ".join(missing)))
    text = _PYTHON_CONFIG_SED.sub(_literal_prefix_line, text)
    for what, pattern, replacement in _PYTHON_CONFIG_EDITS:
        text, count = re.subn(pattern, replacement, text, flags=re.M)
        if not count:
            raise ValueError("not found: {} ({})".format(what, pattern))
    leftover = re.search(r"^[^#\n]*\b(echo|sed \"s#)\b.*$", text, re.M)
    if leftover:
        raise ValueError("line left as upstream's: {!r}".format(leftover.group(0).strip()))
    return text.replace(_PYTHON_CONFIG_FIRST_USE, _PYTHON_CONFIG_FUNCTIONS + _PYTHON_CONFIG_FIRST_USE)
