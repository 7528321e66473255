"""What one build knows: its spec and platform, its directories, the environment of its
children, and what each phase found (read by the later phases and the manifest).
Standard library only, Python 3.6+."""

import os

from . import buildenv
from .flags import bolt_config, configure_env, makefile_variables
from .process import Log
from .spec import env_jobs, parse_version, platform_info


class Build(object):
    """One build of one cell, in the scratch directory work:

    Python-<version>/  the unpacked source (src)    staging/  make install's DESTDIR
    out/               the artifacts                home/     the children's HOME
    build.log          the full log
    """

    def __init__(self, spec, registry_json, work):
        self.spec = spec
        self.version = spec["version"]
        self.platform = platform_info(registry_json, spec["platform"], spec["arch"])
        self.bolt = bolt_config(self.version, spec["optimization"], self.platform)
        self.work = work
        self.prefix = spec["prefix"].rstrip("/") or "/"
        self.src = os.path.join(work, "Python-" + self.version)
        self.destdir = os.path.join(work, "staging")
        self.tree = os.path.join(self.destdir, self.prefix.lstrip("/"))
        self.out = os.path.join(work, "out")
        self.log = Log(os.path.join(work, "build.log"))
        # Found by the phases, in order: fetch, verify, configure, selftest, sbom, package, manifest.
        self.store = None
        self.tarball = None
        self.signature = None  # the .asc beside the tarball, when the mirror has one
        self.signature_url = None
        self.source_signature = {}  # signature.check()'s record, for manifest.json
        self.sbom_facts = {}  # sbom.collect_facts(), for manifest.json
        self.configure_argv = []
        self.compile_commands = 0  # make's compile commands, every one with the hardening flags
        self.selftest_results = {}
        self.hardening = {}
        self.python_info = {}
        self.modules = {}
        self.artifacts = []  # (kind, path): tarball, deb or rpm
        self.manifest = None
        self.manifest_path = None
        self.timings = {}
        self._makefile = None
        # An allow-list, not os.environ: nothing from the caller's shell reaches the build.
        self.home = os.path.join(work, "home")
        os.makedirs(self.home, exist_ok=True)
        self.env = buildenv.child_env(os.environ, self.home, _has_c_utf8())

    @property
    def minor(self):
        return parse_version(self.version)[1]

    @property
    def python_bin(self):
        return "python3.{}".format(self.minor)

    @property
    def jobs(self):
        return str(env_jobs(os.environ))  # checked by main.read_spec()

    @property
    def configure_env(self):
        """./configure's own environment (flags.configure_env()): hardening, BOLT's tools,
        the platform family's configure shell."""
        return configure_env(self.version, self.bolt, self.platform.get("configure_shell"))

    def makefile(self):
        """The configured Makefile's variables (read once; configure ran before)."""
        if self._makefile is None:
            with open(os.path.join(self.src, "Makefile")) as handle:
                self._makefile = makefile_variables(handle.read())
        return self._makefile


def _has_c_utf8():
    return os.path.isdir("/usr/lib/locale/C.utf8") or os.path.isdir("/usr/lib/locale/C.UTF-8")
