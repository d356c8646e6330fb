"""Griffe extension for the API reference: Google ``Example:`` sections render as examples.

The library's docstrings head their doctests ``Example:`` (Google style allows both spellings), but
Griffe's Google parser only knows ``Examples:``; under any other title the ``>>>`` lines would be
rendered as Markdown (as nested block quotes). This extension renames the section while the API is
loaded, so every docstring, including those added later, renders its doctest as code.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", flags=re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename ``Example:`` section headers to ``Examples:`` (Griffe's examples section)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\g<indent>Examples:", obj.docstring.value)
