"""``imle-fn demo``: the reference example end to end, written to a folder of PNGs and GIFs.

Writes ``map.png``, ``gold.png``, ``paths.gif``, ``distribution.gif`` (+ ``distribution.png``),
``gradients.gif``, ``learning_paths.gif``, ``learning_weights.gif`` and ``learning.png``, and prints
the learning summary table. Heavy imports happen inside `run` (the CLI imports this module to build
its parser).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Attach the ``demo`` options to ``parser``.

    Every value is checked as it is parsed (`imle_fn.apps.arguments`): a bad one stops the command
    with an argparse error (exit status 2) before anything is computed or written.
    """
    from imle_fn.apps.arguments import int_at_least, positive_int, seed, writable_dir

    parser.add_argument("--out", type=writable_dir, default=Path("demo-out"), help="output folder")
    parser.add_argument("--seed", type=seed, default=0, help="seed of every random draw")
    parser.add_argument("--quiet", action="store_true", help="no progress bars and no table")
    parser.add_argument(
        "--all-configs",
        action="store_true",
        help="learn all 15 reference configurations (adds 100 samples per step: slower); the"
        " default runs the 10 with 1 and 10 samples",
    )
    parser.add_argument(
        "--learning-solver",
        choices=("exact", "reference"),
        default="exact",
        help="solver of the learning runs: 'exact' (GridShortestPath, costs clamped at zero) or"
        " 'reference' (the reference's Dijkstra on raw negative costs, which the reference's"
        " 100-sample configurations need to reach the gold path)",
    )
    parser.add_argument(
        "--steps", type=positive_int, default=1100, help="Adam steps of the learning runs"
    )
    parser.add_argument(
        "--num-paths", type=positive_int, default=100, help="sampled paths in paths.gif"
    )
    parser.add_argument(
        "--gradient-samples",
        type=positive_int,
        default=10,
        help="noise samples per step of the flat-map run in gradients.gif",
    )
    parser.add_argument(
        "--frames",
        type=int_at_least(2),
        default=56,
        help="frames of each learning animation, at most: they are denser early and repeated"
        " steps are dropped",
    )
    parser.add_argument(
        "--gradient-frames",
        type=int_at_least(2),
        default=100,
        help="frames of gradients.gif, at most",
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo with the parsed ``args`` (checked by the parser); returns the exit status (0)."""
    start = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    from imle_fn.apps.demo.pipeline import run_demo

    summary = run_demo(
        out,
        seed=args.seed,
        quiet=args.quiet,
        all_configs=args.all_configs,
        steps=args.steps,
        num_paths=args.num_paths,
        gradient_samples=args.gradient_samples,
        frames=args.frames,
        gradient_frames=args.gradient_frames,
        learning_solver=args.learning_solver,
    )
    if not args.quiet:
        _print_summary(summary, time.perf_counter() - start)
    return 0


def _print_summary(summary: Any, seconds: float) -> None:
    print(summary.table())
    timing = ", ".join(f"{name} {s:.1f} s" for name, s in summary.seconds.items())
    print(f"\nwrote {len(summary.files)} files to {summary.out} in {seconds:.1f} s ({timing})")
