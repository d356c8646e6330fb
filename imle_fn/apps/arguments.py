"""Argument types for the ``imle-fn`` subcommands: argparse converters that refuse bad values at once.

Each converter takes the option's text and returns the parsed value, or raises
`argparse.ArgumentTypeError`; argparse then prints ``PROG: error: argument --grid: expected an int
>= 2, got '1'`` and exits with status 2, before the command does any work. `HelpFormatter` shows
every option's default in ``--help``.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="demo")
    >>> _ = parser.add_argument("--grid", type=int_at_least(2), default=12)
    >>> parser.parse_args(["--grid", "5"]).grid
    5
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "MAX_SEED",
    "HelpFormatter",
    "int_at_least",
    "positive_float",
    "positive_int",
    "seed",
    "writable_dir",
]

MAX_SEED = 2**64 - 1
"""The largest seed ``torch.manual_seed`` takes."""


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {text!r}") from None


def int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """A converter to an int in ``[minimum, maximum]`` (no upper bound when ``maximum`` is None).

    Raises:
        argparse.ArgumentTypeError: (from the converter) the text is no int, or is out of range.
    """

    def convert(text: str) -> int:
        value = _int(text)
        if value < minimum or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
            raise argparse.ArgumentTypeError(f"expected an int {bound}, got {text!r}")
        return value

    convert.__name__ = f"int_at_least_{minimum}"
    return convert


positive_int = int_at_least(1)
"""An int >= 1: a count (maps, epochs, steps, samples, threads)."""

seed = int_at_least(0, MAX_SEED)
"""A seed: an int in ``0..2**64 - 1`` (what both NumPy and torch take)."""


def positive_float(text: str) -> float:
    """A finite float > 0 (a learning rate, a lambda, a noise scale).

    Raises:
        argparse.ArgumentTypeError: the text is no number, is not finite, or is <= 0.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def writable_dir(text: str) -> Path:
    """A folder that exists and is writable, or that can be created (its nearest existing parent is
    a writable folder). Nothing is created here.

    Raises:
        argparse.ArgumentTypeError: the path is a file, lies under a file, or is not writable.
    """
    path = Path(text)
    if not text:
        raise argparse.ArgumentTypeError("expected a folder, got ''")
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is" if existing == path.absolute() else f"lies under {str(existing)!r}, which is"
        raise argparse.ArgumentTypeError(f"expected a folder, got {text!r}: it {where} a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "" if existing == path.absolute() else f" (its parent {str(existing)!r})"
        raise argparse.ArgumentTypeError(f"expected a writable folder, got {text!r}{what}")
    return path


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each option's default, unless its help already says it.

    An option whose default is ``None`` or a flag (``store_true``) says in its help what happens
    when it is not given, so no ``(default: None)`` is appended.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default is None or isinstance(action.default, bool):
            return text
        return super()._get_help_string(action)
