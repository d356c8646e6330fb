"""The contract suite: properties of every public estimator and loss, swept over kinds.

Kinds swept: estimators and losses (`tests.contracts.estimators.NAMES`, plus `imle_fn.compat.imle`)
x solvers (event_ndim 0, 1, 2; NumPy and torch backends; a torch solver that writes into its input)
x transforms (eager, ``vmap``, ``grad``, ``jacrev``, ``torch.compile``) x ``-inf`` masks x dtype
mixes x S in {1, 3}. Properties: vmap == loop, torch.func == ``.backward()``, jacrev == a loop of
one-hot VJPs, the caller's tensors untouched, dtype in = dtype out, masking = removal, compile ==
eager. Values at fixed points are pinned in test_cases.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad, jacrev, vmap

from imle_fn import compat
from imle_fn.core.contract import as_solver
from imle_fn.estimators.adaptive import aimle
from imle_fn.solvers.grid import GridShortestPath
from imle_fn.solvers.topk import TopK, topk_map
from tests.contracts.estimators import (
    NAMES,
    NOISE_FREE,
    mutating_torch_topk,
    numpy_topk,
    run,
    sign_solver,
)
from tests.helpers import leaf_grad

F32, F64, BF16 = torch.float32, torch.float64, torch.bfloat16
SWEEP = settings(max_examples=25, deadline=None, derandomize=True)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# One solver of each kind: (solver, event shape, a scores maker that avoids ties).
def _scores(shape: tuple[int, ...], seed: int, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.randn(shape, generator=gen(seed), dtype=dtype)


def _grid_scores(shape: tuple[int, ...], seed: int, dtype: torch.dtype = F64) -> torch.Tensor:
    costs = 0.5 + torch.rand(shape, generator=gen(seed), dtype=dtype)
    costs[..., 1, 1:3] = math.inf  # a wall in every grid
    return -costs


SOLVERS: dict[str, tuple[Any, tuple[int, ...], Callable[..., torch.Tensor]]] = {
    "sign/torch (event_ndim 0)": (sign_solver("torch"), (), _scores),
    "sign/numpy (event_ndim 0)": (sign_solver("numpy"), (), _scores),
    "topk/torch": (TopK(2), (5,), _scores),
    "topk/numpy": (as_solver(numpy_topk(2), event_ndim=1), (5,), _scores),
    "topk/torch, writes its input": (mutating_torch_topk(2), (5,), _scores),
    "grid/numpy (event_ndim 2)": (GridShortestPath(), (4, 4), _grid_scores),
    "grid/torch (event_ndim 2)": (GridShortestPath(backend="torch"), (4, 4), _grid_scores),
}


def _noise_for(name: str, samples: int, shape: tuple[int, ...], seed: int) -> torch.Tensor | None:
    if name in NOISE_FREE:
        return None
    return 0.5 * torch.randn((samples, *shape), generator=gen(seed), dtype=F64)


def _weights(out: torch.Tensor, seed: int) -> torch.Tensor:
    """A linear loss's weights for ``out`` (a non-linear one where it matters is in test_cases)."""
    return 3.0 * torch.randn(out.shape, generator=gen(seed), dtype=out.dtype)


def _vjp_of(
    name: str, solver: Any, noise: Any, theta: torch.Tensor, w: torch.Tensor
) -> torch.Tensor:
    t = theta.detach().clone().requires_grad_()
    (run(name, t, noise, solver) * w).sum().backward()
    return leaf_grad(t)


# ---- vmap == loop, torch.func == .backward(), jacrev == one-hot loop, inputs untouched --------


@pytest.mark.parametrize("samples", [1, 3])
@pytest.mark.parametrize("solver_name", list(SOLVERS))
@pytest.mark.parametrize("name", NAMES)
def test_transforms_agree_and_inputs_stay(name: str, solver_name: str, samples: int) -> None:
    solver, event, scores = SOLVERS[solver_name]
    theta = scores((3, *event), 1)  # [B = 3, *event]
    noise = _noise_for(name, samples, theta.shape, 2)
    kept_theta, kept_noise = theta.clone(), None if noise is None else noise.clone()
    out = run(name, theta, noise, solver)
    w = _weights(out, 3)

    def loss(t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (run(name, t, noise, solver) * w).sum()

    by_backward = _vjp_of(name, solver, noise, theta, w)
    torch.testing.assert_close(grad(loss)(theta, w), by_backward)
    # vmap over a leading axis of scores and loss weights == a loop of single calls
    stack = theta + 0.3 * _scores((4, *theta.shape), 4)
    if scores is _grid_scores:
        stack = torch.where(torch.isinf(theta), theta, stack)  # keep the walls
    ws = torch.stack([_weights(out, 10 + i) for i in range(4)])
    torch.testing.assert_close(
        vmap(lambda t: run(name, t, noise, solver))(stack),
        torch.stack([run(name, t, noise, solver) for t in stack]),
    )
    looped = torch.stack(
        [_vjp_of(name, solver, noise, t, v) for t, v in zip(stack, ws, strict=True)]
    )
    torch.testing.assert_close(vmap(grad(loss))(stack, ws), looped)
    # jacrev: one VJP per output entry (the estimators' VJPs are not linear in the cotangent)
    if out.numel() <= 48:
        jac = jacrev(lambda t: run(name, t, noise, solver))(theta)
        eye = torch.eye(out.numel(), dtype=out.dtype).reshape(-1, *out.shape)
        loop = torch.stack([_vjp_of(name, solver, noise, theta, row) for row in eye])
        torch.testing.assert_close(jac, loop.reshape(jac.shape))
    assert torch.equal(theta, kept_theta)
    assert noise is None or (kept_noise is not None and torch.equal(noise, kept_noise))
    assert by_backward.abs().sum() + looped.abs().sum() > 0  # not vacuous
    if scores is _grid_scores:
        assert bool((by_backward[torch.isinf(theta)] == 0).all())  # walls: exactly zero


# ---- dtype in = dtype out ---------------------------------------------------------------------


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    name=st.sampled_from(NAMES),
    dtypes=st.sampled_from([(F32, F64), (F64, F32), (BF16, F32), (F32, BF16), (F64, BF16)]),
    backend=st.sampled_from(["torch", "numpy"]),
    autocast=st.booleans(),
)
def test_dtype_in_is_dtype_out(
    name: str, dtypes: tuple[torch.dtype, torch.dtype], backend: str, autocast: bool
) -> None:
    theta_dtype, noise_dtype = dtypes
    solver = TopK(2) if backend == "torch" else as_solver(numpy_topk(2), event_ndim=1)
    theta = _scores((3, 5), 5).to(theta_dtype).requires_grad_()
    noise = None if name in NOISE_FREE else _scores((2, 3, 5), 6).to(noise_dtype)
    with torch.autocast("cpu", dtype=BF16, enabled=autocast):
        out = run(name, theta, noise, solver)
    assert out.dtype == theta_dtype
    (out.float() * _weights(out.float(), 7)).sum().backward()
    assert leaf_grad(theta).dtype == theta_dtype


# ---- masking an item with -inf == removing it -------------------------------------------------


@SWEEP
@given(
    name=st.sampled_from(NAMES),
    n=st.integers(3, 7),
    k=st.integers(1, 2),
    samples=st.sampled_from([1, 3]),
    seed=st.integers(0, 2**16),
    backend=st.sampled_from(["torch", "numpy"]),
    data=st.data(),
)
def test_masking_an_item_is_removing_it(
    name: str, n: int, k: int, samples: int, seed: int, backend: str, data: st.DataObject
) -> None:
    masked_at = data.draw(st.integers(0, n - 1), label="masked item")
    keep = [i for i in range(n) if i != masked_at]
    solver = TopK(k) if backend == "torch" else as_solver(numpy_topk(k), event_ndim=1)
    theta = _scores((2, n), seed)
    theta[:, masked_at] = -math.inf
    noise = _noise_for(name, samples, theta.shape, seed + 1)
    y = torch.zeros(n, dtype=F64)
    y[keep[:k]] = 1.0  # fenchel_young_loss's target: feasible, 0 on the masked item
    w = torch.randn(samples, 2, n, generator=gen(seed + 2), dtype=F64)  # w on the masked item too

    def parts(t: torch.Tensor, e: Any, yy: torch.Tensor, cols: list[int]) -> tuple[Any, Any]:
        out = run(name, t, e, solver, yy)
        wo = w[..., cols] if out.ndim == 3 else (w[0][..., cols] if out.ndim == 2 else 1.0)
        t_ = t.detach().clone().requires_grad_()
        (run(name, t_, e, solver, yy) * wo).sum().backward()
        return out, leaf_grad(t_)

    out_m, grad_m = parts(theta, noise, y, list(range(n)))
    out_r, grad_r = parts(
        theta[:, keep], None if noise is None else noise[..., keep], y[keep], keep
    )
    if out_m.ndim >= 2:  # states: zero on the masked item, the rest as without it
        assert bool((out_m[..., masked_at] == 0).all())
        torch.testing.assert_close(out_m[..., keep], out_r)
    else:  # a loss per instance
        torch.testing.assert_close(out_m, out_r)
    assert bool((grad_m[:, masked_at] == 0).all())
    torch.testing.assert_close(grad_m[:, keep], grad_r)


# ---- compile == eager -------------------------------------------------------------------------


def _every_estimator(solver: Any, noise: torch.Tensor, w: dict[str, torch.Tensor]) -> Any:
    def total(t: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((), dtype=t.dtype)
        for i, name in enumerate(NAMES):
            out = out + (i + 1) * (run(name, t, noise, solver) * w[name]).sum()
        return out

    return total


def _weights_for(solver: Any, theta: torch.Tensor, noise: torch.Tensor) -> dict[str, torch.Tensor]:
    return {n: _weights(run(n, theta, noise, solver), 20 + i) for i, n in enumerate(NAMES)}


def _value_and_grad(fn: Any, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    t = theta.clone().requires_grad_()
    out = fn(t)
    return out.detach(), torch.autograd.grad(out, t)[0]


@pytest.mark.parametrize("solver_name", ["sign/numpy (event_ndim 0)", "grid/numpy (event_ndim 2)"])
def test_compile_equals_eager(solver_name: str) -> None:
    """All estimators and losses in one compiled graph (aot_eager: dynamo and AOTAutograd, where
    the estimators' compile route lives), fullgraph, walls included."""
    solver, event, scores = SOLVERS[solver_name]
    theta = scores((3, *event), 30)
    noise = 0.5 * _scores((3, *theta.shape), 31)
    total = _every_estimator(solver, noise, _weights_for(solver, theta, noise))
    compiled = torch.compile(total, backend="aot_eager", fullgraph=True)
    eager, got = _value_and_grad(total, theta), _value_and_grad(compiled, theta)
    torch.testing.assert_close(got[0], eager[0])
    torch.testing.assert_close(got[1], eager[1])
    assert eager[1].abs().sum() > 0 and bool(torch.isfinite(eager[1]).all())


def test_compile_equals_eager_with_vmap_inside() -> None:
    """vmap inside the compiled graph (the custom op's vmap rule), a solver that writes into its
    input, a masked item, every estimator and loss."""
    solver = mutating_torch_topk(2)
    theta = _scores((2, 3, 5), 40)
    theta[0, 1, 2] = -math.inf
    noise = 0.5 * _scores((3, 3, 5), 41)
    w = _weights_for(solver, theta[0], noise)

    def total(t: torch.Tensor) -> torch.Tensor:
        return vmap(_every_estimator(solver, noise, w))(t).sum()

    compiled = torch.compile(total, backend="aot_eager", fullgraph=True)
    kept = theta.clone()
    eager, got = _value_and_grad(total, theta), _value_and_grad(compiled, theta)
    torch.testing.assert_close(got[1], eager[1])
    assert eager[1].abs().sum() > 0 and bool(eager[1][0, 1, 2] == 0)
    assert torch.equal(theta, kept)


def test_compile_inductor_equals_eager() -> None:
    """Inductor (the default backend) once, on a small graph: cold compiles take tens of seconds."""
    theta = _scores((3, 5), 45)
    theta[1, 3] = -math.inf
    noise = 0.5 * _scores((3, 3, 5), 46)
    w = _weights(run("imle", theta, noise, TopK(2)), 47)
    solver = TopK(2)

    def f(t: torch.Tensor) -> torch.Tensor:
        return (run("imle", t, noise, solver) * w).sum()

    eager, got = _value_and_grad(f, theta), _value_and_grad(torch.compile(f, fullgraph=True), theta)
    torch.testing.assert_close(got[1], eager[1])
    assert eager[1].abs().sum() > 0 and eager[1][1, 3] == 0


# ---- imle_fn.compat: every transform, with and without noise ----------------------------------


def _compat_layers() -> dict[str, Callable[[], Any]]:
    def top2(x: torch.Tensor) -> torch.Tensor:
        return topk_map(x, 2)

    def top2_writes(x: torch.Tensor) -> torch.Tensor:
        return topk_map(x.mul_(3.0), 2)

    def noisy(fn: Any) -> Any:
        dist = compat.SumOfGammaNoiseDistribution(k=2.0, generator=gen(50))
        return compat.imle(fn, noise_distribution=dist, nb_samples=3)

    return {
        "no noise": lambda: compat.imle(top2, compat.TargetDistribution(1.0, 0.7)),
        "no noise, writes its input": lambda: compat.imle(top2_writes),
        "sum-of-gamma, S = 3": lambda: noisy(top2),
        "sum-of-gamma, S = 3, writes its input": lambda: noisy(top2_writes),
    }


# The Sum-of-Gamma draw is a graph break; dynamo's resume frame then receives the layer's output (a
# non-leaf tensor) and warns from its own internals (torch 2.13) about reading its .grad.
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
@pytest.mark.parametrize("layer_name", list(_compat_layers()))
def test_compat_transforms_agree(layer_name: str) -> None:
    make = _compat_layers()[layer_name]  # a fresh layer replays the same noise
    theta = _scores((2, 5), 60)
    kept = theta.clone()
    out = make()(theta)
    w = _weights(out, 61)

    def by_backward(t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        t = t.clone().requires_grad_()
        (make()(t) * v).sum().backward()
        return leaf_grad(t)

    g = grad(lambda t: (make()(t) * w).sum())(theta)
    torch.testing.assert_close(g, by_backward(theta, w))
    jac = jacrev(make())(theta)
    eye = torch.eye(out.numel(), dtype=F64).reshape(-1, *out.shape)
    torch.testing.assert_close(
        jac, torch.stack([by_backward(theta, row) for row in eye]).reshape(jac.shape)
    )
    torch.testing.assert_close(vmap(make(), randomness="same")(theta[None])[0], make()(theta))
    compiled = torch.compile(lambda t: (make()(t) * w).sum(), backend="aot_eager")
    t = theta.clone().requires_grad_()
    torch.testing.assert_close(torch.autograd.grad(compiled(t), t)[0], g)
    assert torch.equal(theta, kept) and g.abs().sum() > 0


def test_aimle_state_under_every_solver_kind() -> None:
    """The adaptive state's statistics count (sample, instance) pairs for every event_ndim."""
    for solver_name, (solver, event, scores) in SOLVERS.items():
        theta = scores((3, *event), 70)
        noise = 0.5 * _scores((2, *theta.shape), 71)
        state = torch.tensor([1.0, 1.0], dtype=F64)
        _, stats = grad(
            lambda t, s, e=noise, sv=solver: (aimle(t, e, sv, s) * 1.0).sum(), argnums=(0, 1)
        )(theta, state)
        assert stats[1] == 2 * 3, solver_name  # S * B pairs, whatever the event shape


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_device_in_is_device_out(name: str) -> None:
    """On a GPU: results and gradients stay on it, with a torch solver that writes its input and
    a NumPy solver (copied over and back), masks and dtype mixes included."""
    for solver in (mutating_torch_topk(2), as_solver(numpy_topk(2), event_ndim=1)):
        theta = _scores((3, 5), 80).cuda()
        theta[1, 2] = -math.inf
        theta.requires_grad_()
        noise = None if name in NOISE_FREE else _scores((2, 3, 5), 81, F32).cuda()
        out = run(name, theta, noise, solver)
        assert out.device == theta.device and out.dtype == theta.dtype
        (out * _weights(out, 82)).sum().backward()
        g = leaf_grad(theta)
        assert g.device == theta.device and g[1, 2] == 0
