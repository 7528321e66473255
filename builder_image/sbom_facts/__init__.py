"""A build's SBOM facts, gathered where the build ran: the bundled code of its source tree
(bundled.py), the system packages its installed tree links (linked.py), the toolchain
(toolchain.py); collect.py prints them as JSON:

    python -S -E -B -m sbom_facts.collect --source-tree SRC --installed-tree TREE --package-kind deb

Standard library only, Python 3.9+: the driver (Python 3.6+) cannot import it, so it runs it
with the interpreter it has just built, from builder_image/ (the working directory puts this
package on sys.path). Except elf.py, builder_image/'s one ELF reader (linked.py's and the
driver's hardening check's), which keeps to Python 3.6 because the driver imports it.

The one copy of this code: every runner has builder_image/ (the images copy it, the chroot
runner binds it, the host runner runs it in place), and the buildfarm package imports the
same files (buildfarm.attest.collect) to render the SBOM.
"""
