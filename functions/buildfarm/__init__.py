"""Python Build Farm: build, test, package and publish CPython for every platform."""

__version__ = "0.1.0"
