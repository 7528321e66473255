"""Placeholder: its owner fills it in (register() adds the subcommands)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """No subcommands yet."""
