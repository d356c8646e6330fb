"""Graphs compiled while a hyper-parameter is annealed under ``torch.compile``, per estimator.

``python -m bench.compile_counts`` runs a schedule of six values of each estimator's annealed
hyper-parameter (``lam``, ``beta``, ``sigma``, ``temperature``) through one compiled function
(``fullgraph=True``, backend ``aot_eager``: dynamo and AOTAutograd, where the estimators' custom op
lives) three ways: a Python float with the default ``dynamic=None``, a float with
``dynamic=False``, and a 0-d tensor. It prints the graphs handed to the backend (empty ones, which
dynamo may hand over once while it restarts its analysis, not counted) and dynamo's own count of
unique graphs, or the error that stopped the schedule. Run from a checkout, it measures that
checkout's imle_fn (``PYTHONPATH=/path/to/other/checkout`` measures another).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
from torch._dynamo.testing import CompileCounterWithBackend
from torch._dynamo.utils import counters

import imle_fn

SCHEDULE = [1.0, 2.0, 0.5, 3.0, 0.25, 1.5]


def cases() -> dict[str, Callable[[torch.Tensor, Any], torch.Tensor]]:
    """``{name: loss(theta, value)}``: each estimator with its annealed hyper-parameter."""
    g = torch.Generator().manual_seed(0)
    top2 = imle_fn.TopK(2)
    noise = imle_fn.gumbel((3, 4, 6), generator=g)
    w = torch.randn(3, 4, 6, generator=g)
    y = imle_fn.map_solve(torch.randn(4, 6, generator=g), top2)
    return {
        "imle (lam)": lambda t, v: (imle_fn.imle(t, noise, top2, lam=v) * w).sum(),
        "imle_central (lam)": lambda t, v: (imle_fn.imle_central(t, noise, top2, lam=v) * w).sum(),
        "aimle (beta)": lambda t, v: (imle_fn.aimle(t, noise, top2, beta=v) * w).sum(),
        "dbb (lam)": lambda t, v: (imle_fn.dbb(t, top2, lam=v) * w[0]).sum(),
        "perturbed (sigma)": lambda t, v: (imle_fn.perturbed(t, noise, top2, sigma=v) * w[0]).sum(),
        "ste (temperature)": lambda t, v: (imle_fn.ste(t, noise, top2, temperature=v) * w).sum(),
        "fenchel_young_loss (sigma)": (
            lambda t, v: imle_fn.fenchel_young_loss(t, y, noise, top2, sigma=v).sum()
        ),
    }


def count(
    fn: Callable[[torch.Tensor, Any], torch.Tensor],
    wrap: Callable[[float], Any],
    dynamic: bool | None,
) -> str:
    """Run the schedule compiled; ``"graphs / unique"`` or the error's first line."""
    torch._dynamo.reset()
    counters.clear()
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(fn, backend=counter, fullgraph=True, dynamic=dynamic)
    try:
        for value in SCHEDULE:
            theta = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
            theta.requires_grad_()
            compiled(theta, wrap(value)).backward()
    except Exception as error:  # what stopped the schedule is the result
        return "raises " + type(error).__name__
    graphs = sum(any(n.op == "call_function" for n in g.graph.nodes) for g in counter.graphs)
    return f"{graphs} / {counters['stats']['unique_graphs']}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    print(f"{len(SCHEDULE)} values per schedule; graphs compiled / dynamo's unique graphs")
    print("| estimator (annealed) | float, dynamic=None | float, dynamic=False | 0-d tensor |")
    print("|---|---|---|---|")
    for name, fn in cases().items():
        row = [
            count(fn, float, None),
            count(fn, float, False),
            count(fn, lambda v: torch.tensor(v), None),
        ]
        print(f"| {name} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
