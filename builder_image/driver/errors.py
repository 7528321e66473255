"""The driver's failures. Standard library only, Python 3.6+."""


class SpecError(ValueError):
    """The build spec (or an option) is malformed; the message names the bad value."""


class BuildError(Exception):
    """A build failure: the phase it happened in and a one-line reason. The driver records
    it in the store (logs/<cell>/<build>/build.log and failure.json)."""

    record = True  # whether the failure record goes to the store

    def __init__(self, phase, reason):
        Exception.__init__(self, "{}: {}".format(phase, reason))
        self.phase = phase
        self.reason = reason


class WouldOverwrite(BuildError):
    """A failure after which the driver writes nothing at all to the store: the cell's build
    number belongs to another build (its files exist), or this store cannot write
    create-only. A failure record could then overwrite another build's files."""

    record = False
