"""Build configuration that follows the installed tree when it is moved (pure text
transforms, applied by build.py at install time; no post-install step for users).

- sysconfig: lib/python3.X/_sysconfigdata_*.py gets a tail that replaces the
  configured prefix in every path-valued variable (INCLUDEPY, LIBDIR, LIBPL,
  CONFINCLUDEPY, BINDIR, LIBDEST, prefix, ...) with the prefix computed from the
  file's own location (lib/python3.X/ is two levels below the prefix). Installed at
  the configured prefix (the .deb), the computed prefix is the configured one and
  nothing changes.
- pkg-config: lib/pkgconfig/python-3.X*.pc say prefix=${pcfiledir}/../.., pkg-config's
  own variable for the directory of the .pc file.
- python3.X-config is upstream's shell script, which already computes its prefix from
  its own path ($0) and rewrites includedir, libdir and LIBPL with it.

Standard library only, Python 3.6+.
"""

# Runs on Python 3.6 like build.py: .format, no f-strings.

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
