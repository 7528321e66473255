"""Moved to buildfarm.roots (the images use it too, and the images must not import the
runners). This name stays for the tests that import it from here: it is the same module
object, so patching either patches both."""

import sys

from buildfarm import roots

sys.modules[__name__] = roots
