"""The ``imle-fn`` command line (also ``python -m imle_fn``).

Subcommands live in their own modules; each exposes ``add_arguments(parser)`` and ``run(args) -> int``.
Options are typed with the converters of `imle_fn.apps.arguments`, so a bad value is an argparse
error (exit status 2) before the command starts, and ``--help`` shows every default:

* ``imle-fn demo``: the reference example end to end (`imle_fn.apps.demo.command`).
* ``imle-fn bench warcraft``: the Warcraft-style shortest-path benchmark (`imle_fn.apps.warcraft.command`).
* ``imle-fn bench dvae``: the discrete VAE on k-subset latents (`imle_fn.apps.dvae.command`).

A module may also expose ``validate(args) -> str | None`` for checks across options: a message
becomes an argparse error (exit status 2) before ``run`` starts.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from imle_fn.apps.arguments import HelpFormatter

__all__ = ["build_parser", "main"]

# (subcommand path, module, help): modules are imported lazily so `--help` stays fast and optional
# dependencies (matplotlib, ...) are only needed by the subcommand that uses them.
_COMMANDS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        ("demo",),
        "imle_fn.apps.demo.command",
        "the reference example: map, sampled paths, gradients, learning",
    ),
    (
        ("bench", "warcraft"),
        "imle_fn.apps.warcraft.command",
        "Warcraft-style shortest-path benchmark",
    ),
    (
        ("bench", "dvae"),
        "imle_fn.apps.dvae.command",
        "discrete VAE on k-subset latents (scikit-learn digits), estimators side by side",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """Return the ``imle-fn`` argument parser with every subcommand attached."""
    parser = argparse.ArgumentParser(
        prog="imle-fn", description="imle_fn: I-MLE gradients through discrete solvers."
    )
    top = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for path, module_name, help_text in _COMMANDS:
        sub = top
        if len(path) == 2:
            if path[0] not in groups:
                group = top.add_parser(path[0], help=f"{path[0]} subcommands")
                groups[path[0]] = group.add_subparsers(dest="subcommand", required=True)
            sub = groups[path[0]]
        cmd = sub.add_parser(
            path[-1], help=help_text, description=help_text, formatter_class=HelpFormatter
        )
        module = importlib.import_module(module_name)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run, _validate=getattr(module, "validate", None), _parser=cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``imle-fn`` console script."""
    args = build_parser().parse_args(argv)
    if args._validate is not None:
        problem = args._validate(args)
        if problem is not None:
            args._parser.error(problem)  # exits with status 2
    return int(args._run(args))
