"""Close-match suggestions for mistyped names: platforms, arches, series and command-line options.

Every "unknown X" message of the command line and the workflow input is worded here, so they
all read alike: unknown platform 'debain-12' (did you mean debian-12?); known: debian-11, ...
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterable, Sequence
from typing import Any

# difflib's default: 'debain-12' -> 'debian-12' (0.89) and 'ubuntu-20.04' -> 'ubuntu-2004'
# (0.96) match; 'plan9' matches nothing.
CUTOFF = 0.6
MAX_SUGGESTIONS = 2
# Only the names about as close as the best one: 'debain-12' suggests debian-12, not debian-11
# too; when more than MAX_SUGGESTIONS are that close ('3.31': 3.15, 3.14, 3.13...) none stands out.
TIE = 0.05


def close_matches(value: str, known: Iterable[str], n: int = MAX_SUGGESTIONS) -> list[str]:
    """The known names closest to `value`, best first, ignoring case ('Debian-12' -> debian-12)."""
    by_lower: dict[str, str] = {}
    for name in known:
        by_lower.setdefault(name.lower(), name)
    wanted = value.lower()
    matches = difflib.get_close_matches(wanted, list(by_lower), n=n + 1, cutoff=CUTOFF)
    if not matches:
        return []
    best = difflib.SequenceMatcher(None, wanted, matches[0]).ratio()
    close = [match for match in matches if difflib.SequenceMatcher(None, wanted, match).ratio() >= best - TIE]
    return [by_lower[match] for match in close] if len(close) <= n else []


def did_you_mean(value: str, known: Iterable[str]) -> str:
    """' (did you mean X?)' / ' (did you mean X or Y?)', or '' when nothing is close."""
    matches = close_matches(value, known)
    return f" (did you mean {' or '.join(matches)}?)" if matches else ""


def unknown_name(what: str, value: str, known: Sequence[str], label: str = "known") -> str:
    """One line: unknown <what> '<value>' (did you mean ...?); <label>: a, b, c"""
    return f"unknown {what} {value!r}{did_you_mean(value, known)}; {label}: {', '.join(known) or 'none'}"


# -- command-line options ---------------------------------------------------------------------

_SUGGESTIONS = "_option_suggestions"  # namespace attribute carrying hints up to the top parser


class SuggestingArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors suggest the closest option, subcommand or choice:

    buildfarm build: error: unrecognized arguments: --platfrom (did you mean --platform?)

    Subparsers made by add_subparsers() are of the same class (argparse's default), so one
    instance at the top is enough. Unknown options of a subcommand are collected by that
    subcommand's parser (it knows its options) and reported by the top one (argparse reports
    them there)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        hints: dict[str, str] = getattr(parsed, _SUGGESTIONS, {})
        options = [option for option in self._option_string_actions if option.startswith("--")]
        for extra in extras:
            name = extra.split("=", 1)[0]
            if name.startswith("-") and name not in hints and (hint := did_you_mean(name, options)):
                hints[name] = hint
        if hints:
            setattr(parsed, _SUGGESTIONS, hints)
        return parsed, extras

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        hints: dict[str, str] = getattr(parsed, _SUGGESTIONS, {})
        if hasattr(parsed, _SUGGESTIONS):
            delattr(parsed, _SUGGESTIONS)
        if extras:
            named = " ".join(extra + hints.get(extra.split("=", 1)[0], "") for extra in extras)
            self.error(f"unrecognized arguments: {named}")
        return parsed

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        # argparse's own check, with the closest choice (a subcommand, --runner's runners...).
        choices = action.choices
        if choices is not None and isinstance(value, str) and value not in choices:
            names = [str(choice) for choice in choices]
            listed = ", ".join(map(repr, names))
            hint = did_you_mean(value, names)
            raise argparse.ArgumentError(action, f"invalid choice: {value!r}{hint} (choose from {listed})")
        super()._check_value(action, value)
