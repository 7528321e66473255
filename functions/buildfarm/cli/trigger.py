"""buildfarm trigger (placeholder until its issue lands)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    subparsers.add_parser("trigger", help="(not yet implemented)").set_defaults(func=lambda args: 2)
