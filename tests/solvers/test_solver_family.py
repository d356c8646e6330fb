"""Every new solver through `map_solve` and every estimator: leading dims, vmap == loop,
torch.compile == eager, dtypes and devices kept, inputs never written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.func import grad, vmap

from imle_fn.core.solving import map_solve
from imle_fn.estimators.adaptive import aimle
from imle_fn.estimators.blackbox import dbb
from imle_fn.estimators.central import imle_central
from imle_fn.estimators.fenchel_young import fenchel_young_loss
from imle_fn.estimators.implicit_mle import imle
from imle_fn.estimators.perturbed_optimizer import perturbed
from imle_fn.estimators.straight_through import ste
from imle_fn.solvers.assignment import Assignment
from imle_fn.solvers.knapsack import Knapsack
from imle_fn.solvers.ranking import Ranking
from imle_fn.solvers.spanning_tree import SpanningTree
from imle_fn.solvers.topk import TopK

F64 = torch.float64
B = 4  # instances per batch; the per-instance data of Knapsack and TopK has B entries


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# Solvers built once, outside every transformed or compiled function.
SOLVERS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "assignment": (Assignment(), (3, 4)),
    "spanning_tree": (SpanningTree(), (5, 5)),
    "knapsack": (
        Knapsack(torch.randint(1, 5, (B, 6), generator=gen(0)), torch.tensor([3, 5, 7, 9])),
        (6,),
    ),
    "ranking": (Ranking(), (6,)),
    "topk_per_instance": (TopK(torch.tensor([1, 2, 3, 2])), (6,)),
}


def scores(name: str, lead: tuple[int, ...], seed: int) -> torch.Tensor:
    _, event = SOLVERS[name]
    return torch.randn(*lead, B, *event, generator=gen(seed), dtype=F64)


@pytest.mark.parametrize("name", list(SOLVERS))
def test_leading_dims_and_vmap_equal_a_loop(name: str) -> None:
    solver, _ = SOLVERS[name]
    theta = scores(name, (2, 3), 1)  # [2, 3, B, *event]
    z = map_solve(theta, solver)
    looped = torch.stack(
        [torch.stack([map_solve(theta[a, b], solver) for b in range(3)]) for a in range(2)]
    )
    assert torch.equal(z, looped)
    assert torch.equal(vmap(vmap(lambda t: map_solve(t, solver)))(theta), z)
    assert torch.equal(vmap(lambda t: map_solve(t, solver), in_dims=1, out_dims=1)(theta), z)
    assert z.abs().sum() > 0 and not torch.equal(z[0, 0], z[1, 2])  # not vacuous


# ---- every estimator ---------------------------------------------------------------------------

Estimator = Callable[[torch.Tensor, Any, torch.Tensor, torch.Tensor], torch.Tensor]

ESTIMATORS: dict[str, Estimator] = {
    "imle": lambda t, s, e, y: imle(t, e, s, lam=0.5),
    "aimle": lambda t, s, e, y: aimle(t, e, s, beta=0.5, central=True),
    "imle_central": lambda t, s, e, y: imle_central(t, e, s, lam=0.5),
    "dbb": lambda t, s, e, y: dbb(t, s, lam=0.5),
    "perturbed": lambda t, s, e, y: perturbed(t, e, s, noise_type="gumbel"),
    "fenchel_young_loss": lambda t, s, e, y: fenchel_young_loss(t, y, e, s, sigma=0.5),
    "ste": lambda t, s, e, y: ste(t, e, s),
}


def contract(out: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """A linear loss of an estimator's output (states [.., B, *event] or FY losses [B])."""
    if out.shape == w.shape[:1]:
        return (out * w.flatten(1).sum(1)).sum()
    return (out * w).sum()


def problem(name: str) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(solver, theta [B, *event], noise [3, B, *event], y [B, *event] feasible states)."""
    solver, event = SOLVERS[name]
    theta = scores(name, (), 2)
    noise = 0.7 * torch.randn(3, B, *event, generator=gen(3), dtype=F64)
    y = map_solve(scores(name, (), 4), solver)
    return solver, theta, noise, y


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
@pytest.mark.parametrize("name", list(SOLVERS))
def test_every_estimator_vmap_equals_loop(name: str, estimator: str) -> None:
    solver, theta, noise, y = problem(name)
    fn = ESTIMATORS[estimator]
    weights = torch.randn(5, *theta.shape, generator=gen(5), dtype=F64)  # one loss per slice
    tw = theta + 0.5 * weights  # [5, B, *event]: different scores per slice

    def loss(t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return contract(fn(t, solver, noise, y), w)

    batched = vmap(grad(loss))(tw, weights)
    looped = torch.stack([grad(loss)(t, w) for t, w in zip(tw, weights, strict=True)])
    torch.testing.assert_close(batched, looped)
    assert looped.abs().sum() > 0
    out = vmap(lambda t: fn(t, solver, noise, y))(tw)
    torch.testing.assert_close(out, torch.stack([fn(t, solver, noise, y) for t in tw]))


def test_compile_equals_eager_for_every_solver_and_estimator() -> None:
    """One compiled graph (fullgraph, aot_eager) holding all seven estimators over every solver
    (one graph keeps the compile time down: about 4 s here against 4 s per solver)."""
    problems = {name: problem(name) for name in SOLVERS}
    ws = {
        name: torch.randn(*p[1].shape, generator=gen(6), dtype=F64) for name, p in problems.items()
    }

    def total(ts: list[torch.Tensor]) -> torch.Tensor:
        out = torch.zeros((), dtype=F64)
        for (solver, _, noise, y), w, t in zip(problems.values(), ws.values(), ts, strict=True):
            for i, fn in enumerate(ESTIMATORS.values()):
                out = out + (i + 1) * contract(fn(t, solver, noise, y), w)
        return out

    compiled = torch.compile(total, backend="aot_eager", fullgraph=True)
    for shift in (0.0, 0.3):  # new scores are new data, not a recompile
        ts = [
            (p[1] + shift * w).requires_grad_()
            for p, w in zip(problems.values(), ws.values(), strict=True)
        ]
        eager = torch.autograd.grad(total(ts), ts)
        got = torch.autograd.grad(compiled(ts), ts)
        for name, a, b in zip(SOLVERS, got, eager, strict=True):  # the solvers in order
            torch.testing.assert_close(a, b)
            assert b.abs().sum() > 0, name


# ---- dtypes, devices, no mutation --------------------------------------------------------------

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(SOLVERS))
def test_dtype_and_device_kept_and_inputs_never_written(name: str, device: str) -> None:
    solver, theta, noise, _ = problem(name)
    expected = map_solve(theta, solver)
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        t = theta.to(device=device, dtype=dtype)
        e = noise.to(device=device, dtype=dtype)
        t_copy, e_copy = t.clone(), e.clone()
        z = map_solve(t, solver)
        assert z.dtype == dtype and z.device == t.device
        if dtype == torch.float64:
            assert torch.equal(z.cpu(), expected)
        t_leaf = t.clone().requires_grad_()
        out = imle(t_leaf, e, solver, lam=0.5)
        (out * out.detach().flip(0)).sum().backward()
        assert out.dtype == dtype and out.device == t.device
        assert t_leaf.grad is not None and t_leaf.grad.dtype == dtype
        assert t_leaf.grad.device == t.device
        assert torch.equal(t, t_copy) and torch.equal(e, e_copy)  # nothing written in place
