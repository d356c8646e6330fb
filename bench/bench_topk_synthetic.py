"""The I-MLE paper's synthetic top-k experiment (Niepert et al., 2021, Fig. 3), with exact expectations.

``z in {0, 1}^10`` with exactly 5 ones (252 states); ``L(theta) = E_{z ~ p(z; theta)} ||z - b||^2``
under the k-subset exponential family ``p(z; theta) ~ exp(<theta, z>)``, computed exactly by
enumeration; ``b, theta_0 ~ N(0, I)`` (run ``r`` uses seed ``r``). Each estimator drives SGD with
momentum 0.9 for 50 steps; the metric is the optimality gap ``L(theta_t) - min_z ||z - b||^2``, averaged
over the runs (all runs advance together as one batch; they do not interact).

The loss on one state can be written in two forms (``--loss``), equal up to the constant
``||b||^2`` on binary ``z`` with ``sum(z) = 5`` (since ``z * z = z``), so with the same expected loss,
the same gradient of it and the same optimality gap:

* ``quadratic``: ``||z - b||^2``, cotangent ``dL/dz = 2 (z - b)`` (depends on the sampled ``z``);
* ``linear``: ``<1 - 2b, z>``, cotangent ``1 - 2b`` (the same for every sample).

The estimators see the loss only through ``dL/dz`` (I-MLE, STE) or its value (SFE), so the form
changes what they estimate; the exact gradient does not change.

Estimators (``S`` noise samples or exact samples per step and run):

* ``imle``: `imle_fn.imle`, Sum-of-Gamma noise (k = 5, 10 terms), lam = 2;
* ``imle_central``: `imle_fn.estimators.imle_central`, same noise and lam;
* ``ste``: `imle_fn.estimators.straight_through` on the same Perturb-and-MAP samples;
* ``sfe``: the score-function estimator with exact samples from ``p(z; theta)``:
  ``mean_s ||z_s - b||^2 (z_s - mu(theta))`` (``mu``: exact marginals);
* ``exact``: the exact gradient (a reference, not an estimator).

Figure and table::

    python bench/bench_topk_synthetic.py --runs 100 --steps 50 --lr 0.75 --samples 1 10 \\
        --loss quadratic linear --figure bench/figures/topk_synthetic.png

Timing of one gradient step per estimator (pytest-benchmark, against the exact gradient)::

    python -m pytest bench/bench_topk_synthetic.py --benchmark-only
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture

from imle_fn.core.noise import sum_of_gamma
from imle_fn.estimators.central import imle_central
from imle_fn.estimators.implicit_mle import imle
from imle_fn.estimators.straight_through import ste
from imle_fn.solvers.topk import TopK
from tests.naive import k_subset_states

N, K = 10, 5
STATES = k_subset_states(N, K, dtype=torch.float64)  # [252, 10]
SOLVER = TopK(K)
ESTIMATORS = ("imle", "imle_central", "ste", "sfe", "exact")
LOSSES = ("quadratic", "linear")

Grad = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


def problem(runs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(b, theta_0)``, each ``[runs, 10]``; run ``r`` draws both from ``N(0, I)`` with seed ``r``."""
    rows = []
    for r in range(runs):
        g = torch.Generator().manual_seed(r)
        rows.append(torch.randn(2, N, generator=g, dtype=torch.float64))
    both = torch.stack(rows)  # [runs, 2, 10]
    return both[:, 0], both[:, 1]


def exact_loss(theta: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[runs]`` exact ``E_z ||z - b||^2`` under ``p(z; theta)``."""
    cost = ((STATES - b[:, None]) ** 2).sum(-1)  # [runs, 252]
    return (torch.softmax(theta @ STATES.T, -1) * cost).sum(-1)


def optimum(b: torch.Tensor) -> torch.Tensor:
    """``[runs]`` ``min_z ||z - b||^2`` over the 252 states."""
    return ((STATES - b[:, None]) ** 2).sum(-1).min(-1).values


def state_loss(z: torch.Tensor, b: torch.Tensor, loss: str = "quadratic") -> torch.Tensor:
    """``[...]`` loss of states ``z: [..., runs, 10]`` against ``b: [runs, 10]``, in form ``loss``.

    ``quadratic``: ``||z - b||^2``; ``linear``: ``<1 - 2b, z>``, the same minus ``||b||^2`` on
    binary ``z`` with five ones.
    """
    if loss == "quadratic":
        return ((z - b) ** 2).sum(-1)
    if loss == "linear":
        return ((1 - 2 * b) * z).sum(-1)
    raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")


def gradient_fn(name: str, samples: int, lam: float = 2.0, loss: str = "quadratic") -> Grad:
    """``(theta [runs, 10], b [runs, 10], generator) -> [runs, 10]`` gradient estimate.

    The estimators differentiate ``state_loss(z, b, loss)`` summed over samples and runs.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")

    def perturb_and_map(fn: Callable[..., torch.Tensor]) -> Grad:
        def grad(theta: torch.Tensor, b: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            noise = sum_of_gamma(
                (samples, *theta.shape), k=float(K), num_terms=10, generator=g, dtype=theta.dtype
            )
            return torch.func.grad(lambda t: state_loss(fn(t, noise), b, loss).sum())(theta)

        return grad

    if name == "imle":
        return perturb_and_map(lambda t, e: imle(t, e, SOLVER, lam=lam))
    if name == "imle_central":
        return perturb_and_map(lambda t, e: imle_central(t, e, SOLVER, lam=lam))
    if name == "ste":
        return perturb_and_map(lambda t, e: ste(t, e, SOLVER))
    if name == "sfe":

        def sfe(theta: torch.Tensor, b: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            probs = torch.softmax(theta @ STATES.T, -1)  # [runs, 252]
            z = STATES[
                torch.multinomial(probs, samples, replacement=True, generator=g)
            ]  # [runs, S, 10]
            f = state_loss(z.transpose(0, 1), b, loss).T[..., None]  # [runs, S, 1]
            mu = probs @ STATES  # [runs, 10] exact marginals
            return (f * (z - mu[:, None])).mean(1)

        return sfe
    if name == "exact":
        return lambda theta, b, g: torch.func.grad(lambda t: exact_loss(t, b).sum())(theta)
    raise ValueError(f"estimator: expected one of {ESTIMATORS}, got {name!r}")


def run(
    name: str,
    runs: int,
    steps: int,
    lr: float,
    samples: int,
    seed: int = 0,
    loss: str = "quadratic",
) -> torch.Tensor:
    """``[steps + 1, runs]`` optimality gaps along SGD-momentum training with estimator ``name``.

    The gap is measured with the exact ``E ||z - b||^2`` whatever the ``loss`` form estimated.
    """
    b, theta0 = problem(runs)
    theta = theta0.clone()
    best = optimum(b)
    grad_fn = gradient_fn(name, samples, loss=loss)
    g = torch.Generator().manual_seed(10_000 + seed)
    opt = torch.optim.SGD([theta.requires_grad_()], lr=lr, momentum=0.9)
    gaps = [exact_loss(theta.detach(), b) - best]
    for _ in range(steps):
        opt.zero_grad()
        theta.grad = grad_fn(theta.detach(), b, g)
        opt.step()
        gaps.append(exact_loss(theta.detach(), b) - best)
    return torch.stack(gaps)


# ---- pytest-benchmark: cost of one gradient step for 100 runs -----------------------------------


@pytest.mark.parametrize("name", ESTIMATORS)
def test_gradient_step(benchmark: BenchmarkFixture, name: str) -> None:
    b, theta = problem(100)
    grad_fn = gradient_fn(name, 1)
    g = torch.Generator().manual_seed(0)
    grad_fn(theta, b, g)  # warm-up
    out = benchmark(grad_fn, theta, b, g)
    assert out.shape == theta.shape and bool(torch.isfinite(out).all())


# ---- figure and table ---------------------------------------------------------------------------


def table(curves: dict[str, torch.Tensor], marks: list[int]) -> list[str]:
    """Markdown rows: mean optimality gap +- standard error at the given steps."""
    lines = ["| estimator | " + " | ".join(f"step {m}" for m in marks) + " |"]
    lines.append("|---|" + "---|" * len(marks))
    for name, gaps in curves.items():
        runs = gaps.shape[1]
        cells = [f"{gaps[m].mean():.3f} ± {gaps[m].std() / runs**0.5:.3f}" for m in marks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Synthetic top-k (I-MLE paper Fig. 3).")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.75)
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 10])
    parser.add_argument(
        "--loss",
        nargs="+",
        choices=LOSSES,
        default=list(LOSSES),
        help="form(s) of the per-state loss the estimators see (one row of plots each)",
    )
    parser.add_argument("--sweep", type=float, nargs="*", default=[0.1, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--figure", default="bench/figures/topk_synthetic.png")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(args.loss), len(args.samples)
    fig, grid = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), sharey=True, squeeze=False)
    marks = sorted(m for m in {0, 10, 25, args.steps} if m <= args.steps)
    sweep: list[str] = []
    for axes, loss in zip(grid, args.loss, strict=True):
        for ax, samples in zip(axes, args.samples, strict=True):
            curves = {
                name: run(name, args.runs, args.steps, args.lr, samples, loss=loss)
                for name in ESTIMATORS
            }
            print(
                f"\n{loss} loss, S = {samples}: mean optimality gap ± s.e.,"
                f" {args.runs} runs, lr {args.lr}"
            )
            print("\n".join(table(curves, marks)), flush=True)
            for name, gaps in curves.items():
                mean, se = gaps.mean(1), gaps.std(1) / args.runs**0.5
                steps = torch.arange(len(mean))
                ax.plot(steps, mean, "--" if name == "exact" else "-", label=name)
                ax.fill_between(steps, mean - se, mean + se, alpha=0.2)
            ax.set_yscale("log")
            ax.set_title(f"{loss} loss, top-5 of 10, {args.runs} runs, lr {args.lr}, S = {samples}")
            for name in ESTIMATORS[:-1] if args.sweep else ():  # not the exact reference
                finals = [
                    run(name, args.runs, args.steps, lr, samples, loss=loss)[-1].mean()
                    for lr in args.sweep
                ]
                cells = " | ".join(f"{v:.3f}" for v in finals)
                sweep.append(f"| {name} | {loss} | {samples} | {cells} |")
        axes[0].set_ylabel("mean optimality gap")
    for ax in grid[-1]:
        ax.set_xlabel("SGD step (momentum 0.9)")
    grid[0][0].legend()
    if sweep:
        print(f"\nfinal mean gap (step {args.steps}) by learning rate")
        print("| estimator | loss | S | " + " | ".join(f"lr {lr}" for lr in args.sweep) + " |")
        print("|---|---|---|" + "---|" * len(args.sweep))
        print("\n".join(sweep))
    fig.tight_layout()
    fig.savefig(args.figure, dpi=110)
    print(f"\nfigure: {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
