"""Argument types for the ``imle-fn`` subcommands: argparse converters that refuse bad values at once.

Each converter takes the option's text and returns the parsed value, or raises: argparse then
prints ``PROG: error: argument --grid: expected >= 2, got 1`` (or ``invalid int value: '2.5'``
for text that is no number) and exits with status 2, before the command does any work. The value
checks are imle_fn's own (`imle_fn.core.checks`), so the command line and the library word a bad
value alike. `HelpFormatter` shows every option's default in ``--help``.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="demo")
    >>> _ = parser.add_argument("--grid", type=int_at_least(2), default=12)
    >>> parser.parse_args(["--grid", "5"]).grid
    5
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from imle_fn.core.checks import check_int, check_nonnegative, check_positive

__all__ = [
    "MAX_SEED",
    "HelpFormatter",
    "int_at_least",
    "nonnegative_float",
    "positive_float",
    "positive_int",
    "seed",
    "writable_dir",
]

T = TypeVar("T")

MAX_SEED = 2**64 - 1
"""The largest seed ``torch.manual_seed`` takes (NumPy takes any int >= 0)."""


def _typed(
    convert: Callable[[str], T], check: Callable[[str, T], T], name: str
) -> Callable[[str], T]:
    """An argparse ``type``: ``convert`` the text, then run one of imle_fn's checks on the value.

    A ``ValueError`` from ``convert`` is argparse's ``invalid int value: '2.5'``; a failed check is
    an `argparse.ArgumentTypeError` with the check's message.
    """

    def parse(text: str) -> T:
        value = convert(text)
        try:
            return check("value", value)
        except (TypeError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix("value: ")) from None

    parse.__name__ = name  # argparse names the type in "invalid <name> value"
    return parse


def int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """A converter to an int in ``[minimum, maximum]`` (no upper bound when ``maximum`` is None).

    Raises:
        ValueError: (from the converter) the text is no int.
        argparse.ArgumentTypeError: (from the converter) the int is out of range.
    """
    return _typed(int, lambda n, v: check_int(n, v, minimum=minimum, maximum=maximum), "int")


positive_int = int_at_least(1)
"""An int >= 1: a count (maps, epochs, steps, samples, threads)."""

seed = int_at_least(0, MAX_SEED)
"""A seed: an int in ``0..2**64 - 1`` (what both NumPy and torch take)."""

positive_float = _typed(float, check_positive, "float")
"""A finite float > 0 (a learning rate, a lambda, a noise scale, a temperature)."""

nonnegative_float = _typed(float, check_nonnegative, "float")
"""A finite float >= 0."""


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

    A list default is shown as it would be typed (``imle aimle``). An option whose default is
    ``None``, or a flag (``store_true``), says in its help what happens when it is not given, so no
    ``(default: None)`` is appended.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default is None or isinstance(action.default, bool):
            return text
        if isinstance(action.default, (list, tuple)):
            shown = " ".join(map(str, action.default)).replace("%", "%%")
            return f"{text} (default: {shown})"
        return super()._get_help_string(action)
