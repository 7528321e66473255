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
  that runs the interpreter next to the script (rewrite_shebang()).
- python3.X-config is upstream's shell script, which already computes its prefix from
  its own path ($0) and rewrites includedir, libdir and LIBPL with it.

Standard library only, Python 3.6+.
"""

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
    (the form python-build-standalone uses), so bin/ scripts work from any directory."""
    return ('#!/bin/sh\n\'\'\'exec\' "$(dirname -- "$(realpath -- "$0")")/{}" "$0" "$@"\n\' \'\'\'\n').format(
        interpreter_name
    )


def rewrite_shebang(content, interpreter_name):
    """Script bytes with a '#!.../python...' first line replaced by the trampoline; None if not one."""
    first, newline, rest = content.partition(b"\n")
    if not newline or not re.match(rb"^#!\s*/\S*/python[0-9.]*\s*$", first):
        return None
    return relocatable_shebang(interpreter_name).encode() + rest
