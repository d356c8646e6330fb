"""Issue 12's cases, each with its right value (the sweep over kinds is in test_sweep.py).

A ``# main:`` comment says what the code before the fix returned for that input (measured).
"""

from __future__ import annotations

import gc
import math
import tracemalloc
import weakref
from typing import Any

import numpy as np
import pytest
import torch
from torch.func import grad, jacrev, vjp, vmap

from imle_fn import compat
from imle_fn.core import handles
from imle_fn.core.contract import as_solver
from imle_fn.core.noise import gumbel
from imle_fn.core.solving import map_solve
from imle_fn.estimators.adaptive import aimle, aimle_lambda
from imle_fn.estimators.blackbox import dbb
from imle_fn.estimators.fenchel_young import fenchel_young_loss
from imle_fn.estimators.implicit_mle import imle
from imle_fn.estimators.perturbed_optimizer import perturbed
from imle_fn.solvers.grid import GridShortestPath
from imle_fn.solvers.topk import TopK, topk_map
from tests.contracts.estimators import (
    NAMES,
    NEEDS_NOISE,
    NOISE_FREE,
    mutating_torch_topk,
    numpy_topk,
    run,
    sign_solver,
)
from tests.helpers import leaf_grad

F64 = torch.float64
TOP1 = TopK(1)
TOP2 = TopK(2)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def grad_of(fn: Any, theta: torch.Tensor, w: torch.Tensor | float = 1.0) -> torch.Tensor:
    """d/dtheta of sum(fn(theta) * w), by .backward()."""
    t = theta.detach().clone().requires_grad_()
    (fn(t) * w).sum().backward()
    return leaf_grad(t)


# ---- case 1: reductions over event dims with event_ndim = 0 -----------------------------------


def test_case01_perturbed_event_ndim_0_gradient_is_one_not_two() -> None:
    t = torch.tensor(0.0, requires_grad=True)
    out = perturbed(t, torch.tensor([1.0, 1.0]), sign_solver("torch"), sigma=1)
    out.sum().backward()
    assert leaf_grad(t) == 1.0  # mean_s <z_s, 1> * eps_s / sigma = (1 + 1) / 2; main gave 2.0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_case01_event_ndim_0_is_event_ndim_1_of_size_one(name: str, backend: str) -> None:
    """The kind: on [B] scores an event_ndim-0 solver must give what the same solver gives with
    event_ndim 1 on [B, 1], values and gradients, for every estimator and loss."""
    theta = torch.randn(5, generator=gen(1), dtype=F64)
    noise = torch.randn(3, 5, generator=gen(2), dtype=F64)
    w = torch.randn(3, 5, generator=gen(3), dtype=F64)
    scalar = sign_solver(backend)
    vector = as_solver(scalar.fn, event_ndim=1, backend=scalar.backend)
    y = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0], dtype=F64)  # fenchel_young_loss's target
    out0 = run(name, theta, noise, scalar, y)
    out1 = run(name, theta[:, None], noise[..., None], vector, y[:, None])
    torch.testing.assert_close(out0, out1.squeeze(-1) if out1.ndim > out0.ndim else out1)
    wt = w if out0.ndim == 2 else w[0]
    w1 = wt[..., None] if out1.ndim > out0.ndim else wt
    g0 = grad_of(lambda t: run(name, t, noise, scalar, y), theta, wt)
    g1 = grad_of(lambda t: run(name, t, noise[..., None], vector, y[:, None]), theta[:, None], w1)
    torch.testing.assert_close(g0, g1.squeeze(-1))
    assert g0.abs().sum() > 0


# ---- case 2: the output has theta's dtype, whatever the noise's --------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_case02_float32_theta_float64_noise_gives_float32(name: str) -> None:
    theta = torch.tensor([[0.0, 1.0, 0.5]], requires_grad=True)
    noise = torch.zeros(1, 1, 3, dtype=F64)
    out = run(name, theta, noise, TOP1)
    assert out.dtype == torch.float32  # main: float64 for imle, imle_central, aimle, ste, perturbed
    out.sum().backward()
    assert leaf_grad(theta).dtype == torch.float32


@pytest.mark.parametrize("name", NAMES)
def test_case02_autocast_bf16_theta_float32_noise(name: str) -> None:
    theta = torch.randn(2, 5, generator=gen(4)).to(torch.bfloat16).requires_grad_()
    noise = torch.randn(3, 2, 5, generator=gen(5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = run(name, theta, noise, TOP2)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert leaf_grad(theta).dtype == torch.bfloat16


# ---- case 3: a torch solver that writes into its input ----------------------------------------


def test_case03_mutating_torch_solver_gives_the_right_gradient() -> None:
    s = mutating_torch_topk(1)
    t = torch.tensor([1.0, 0.8], requires_grad=True)
    z = imle(t * 1, None, s)
    (z * torch.tensor([0.3, 0.0])).sum().backward()
    assert torch.equal(leaf_grad(t), torch.tensor([1.0, -1.0]))  # main: [0, 0]
    for fn in (lambda x: map_solve(x, s), lambda x: dbb(x, s)):
        x = torch.tensor([1.0, 0.8])
        fn(x)
        assert torch.equal(x, torch.tensor([1.0, 0.8]))  # main: [2.0, 1.6]


@pytest.mark.parametrize("name", NAMES)
def test_case03_no_estimator_lets_a_solver_touch_the_callers_tensors(name: str) -> None:
    theta = torch.randn(4, 5, generator=gen(6))
    noise = torch.randn(2, 4, 5, generator=gen(7))
    w = torch.randn(2, 4, 5, generator=gen(8))
    before = (theta.clone(), noise.clone())
    for arg in (noise, None):
        if (arg is None and name in NEEDS_NOISE) or (arg is not None and name in NOISE_FREE):
            continue
        wt = w if name not in {"dbb", "perturbed", "fenchel_young_loss"} and arg is not None else 1
        mutated = grad_of(lambda t, a=arg: run(name, t, a, mutating_torch_topk(2)), theta, wt)
        clean = grad_of(lambda t, a=arg: run(name, t, a, TOP2), theta, wt)
        torch.testing.assert_close(mutated, clean)
        assert torch.equal(theta, before[0]) and torch.equal(noise, before[1])


def test_case03_a_numpy_solver_that_writes_is_named() -> None:
    def writes(x: np.ndarray) -> np.ndarray:
        x[...] = 0.0
        return x

    theta = torch.randn(2, 3)
    kept = theta.clone()
    with pytest.raises(ValueError, match=r"solver: .*writes.* wrote into its input.*x\.copy\(\)"):
        imle(theta, None, as_solver(writes, event_ndim=1))
    assert torch.equal(theta, kept)


# ---- case 4: bounded memory with a new solver per step ----------------------------------------


def _topk1(x: np.ndarray) -> np.ndarray:
    z = np.zeros_like(x)
    z[np.arange(len(x)), x.argmax(-1)] = 1.0
    return z


def test_case04_a_new_solver_per_step_keeps_no_memory() -> None:
    """300 steps, each with a new solver capturing 4 MB (as_solver, a plain callable with
    event_ndim, vmap through the custom op, the compat layer): no solver and none of the data it
    captures survives its step (weak references count the survivors; tracemalloc the bytes)."""
    theta = torch.randn(4, 6, generator=gen(9), requires_grad=True)
    live = handles.live_handles()
    alive: list[weakref.ref[np.ndarray]] = []
    tracemalloc.start()
    try:
        for step in range(300):
            data = np.ones(500_000)  # 4 MB, captured by this step's solvers only
            alive.append(weakref.ref(data))

            def solve(x: np.ndarray, data: np.ndarray = data) -> np.ndarray:
                return _topk1(x + 0.0 * data[: x.size].reshape(x.shape))

            def torch_solve(x: torch.Tensor, data: np.ndarray = data) -> torch.Tensor:
                return topk_map(x, 1)

            kind = step % 4
            if kind == 0:
                imle(theta, None, as_solver(solve, event_ndim=1)).sum().backward()
            elif kind == 1:
                aimle(theta, None, solve, event_ndim=1).sum().backward()
            elif kind == 2:
                vmap(lambda t, f=solve: imle(t, None, f, event_ndim=1))(theta[None]).sum()
            else:
                compat.imle(torch_solve)(theta).sum().backward()
            if step == 20:
                gc.collect()
                settled = tracemalloc.get_traced_memory()[0]
        del data, solve, torch_solve
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - settled
    finally:
        tracemalloc.stop()
    assert sum(ref() is not None for ref in alive) == 0  # main: all 300 (1.2 GB)
    assert grown < 8e6, f"memory grew by {grown / 1e6:.0f} MB over 280 steps"
    assert handles.live_handles() == live  # main: +300 registered solvers


def test_case04_equal_solvers_share_a_handle_while_alive() -> None:
    a, b = TopK(3), TopK(3)
    ra, rb = handles.solver_ref(a), handles.solver_ref(b)
    assert ra is rb and handles.solver_from_handle(ra.handle) is a
    handle = ra.handle
    del ra, rb
    gc.collect()
    with pytest.raises(ValueError, match="not registered"):
        handles.solver_from_handle(handle)


def test_case04_backward_keeps_the_solver_alive() -> None:
    """The user drops the solver after the forward: the autograd graph still holds it."""
    theta = torch.tensor([[0.0, 0.5]], requires_grad=True)
    z = imle(theta, None, as_solver(_topk1, event_ndim=1))
    z2 = vmap(lambda t: imle(t, None, as_solver(_topk1, event_ndim=1)))(theta[None])
    gc.collect()
    ((z + z2[0]) * torch.tensor([[0.0, 1.0]])).sum().backward()
    assert torch.equal(leaf_grad(theta), torch.tensor([[-2.0, 2.0]]))


# ---- case 5: -inf scores behave as removing the item ------------------------------------------


def test_case05_aimle_ignores_masked_entries_in_its_norms() -> None:
    theta = torch.tensor([[0.3, -0.2, 1, 0.1, -1, -math.inf]])
    noise = gumbel((1, 1, 6), generator=gen(10))
    b = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 0.0])

    def sq(t: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        return ((aimle(t, n, TOP2, beta=1.0) - b[: t.shape[-1]]) ** 2).sum()

    masked = torch.func.grad(sq)(theta, noise)
    removed = torch.func.grad(sq)(theta[:, :5], noise[..., :5])
    assert bool(torch.isfinite(masked).all())  # main: NaN (lam = inf)
    torch.testing.assert_close(masked[:, :5], removed)
    assert masked[0, 5] == 0.0 and removed.abs().sum() > 0
    lam = aimle_lambda(theta, 2 * (topk_map(theta + noise, 2) - b), beta=1.0, event_ndim=1)
    assert bool(torch.isfinite(lam).all())


@pytest.mark.parametrize("name", ["imle", "aimle", "imle_central", "dbb"])
def test_case05_walled_grids(name: str) -> None:
    """Walls are +inf costs (-inf scores): every estimator reaches its targets around them, and
    a wall gets exactly zero gradient."""
    costs = 1.0 + torch.rand(2, 5, 5, generator=gen(11), dtype=F64)
    costs[:, 1:4, 2] = math.inf  # a wall with a way around it
    theta = -costs
    gold = torch.zeros(5, 5, dtype=F64)
    gold[:, 0] = 1.0
    gold[-1, :] = 1.0
    noise = 0.3 * gumbel((3, 2, 5, 5), generator=gen(12), dtype=F64)

    def hamming(t: torch.Tensor) -> torch.Tensor:
        z = run(name, t, noise, GridShortestPath())
        return (z * (1 - gold) + (1 - z) * gold).sum()

    g = grad(hamming)(theta)  # main: "target cannot be reached" for aimle
    assert bool(torch.isfinite(g).all()) and g.abs().sum() > 0
    assert bool((g[:, 1:4, 2] == 0).all())


# ---- case 6: zero samples ---------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in NAMES if n not in NOISE_FREE])
def test_case06_zero_samples_name_noise(name: str) -> None:
    with pytest.raises(ValueError, match="noise: has zero samples"):
        run(name, torch.zeros(2, 6, requires_grad=True), torch.zeros(0, 2, 6), TOP2)  # main: NaN


@pytest.mark.parametrize("name", NAMES)
def test_case06_an_empty_batch_gives_empty_results(name: str) -> None:
    theta = torch.zeros(0, 6, requires_grad=True)
    out = run(name, theta, torch.zeros(3, 0, 6), TOP2)
    assert out.numel() == 0
    out.sum().backward()
    assert leaf_grad(theta).shape == (0, 6)


@pytest.mark.parametrize("name", NAMES)
def test_case06_zero_size_events_give_empty_results(name: str) -> None:
    """Instances with no items (n = 0, k = 0): empty states, empty gradients, no NaN."""
    theta = torch.zeros(2, 0, requires_grad=True)
    out = run(name, theta, torch.zeros(3, 2, 0), TopK(0), torch.zeros(0))
    assert out.numel() == 0 or bool((out == 0).all())  # the loss of an empty instance is 0
    out.sum().backward()
    assert leaf_grad(theta).shape == (2, 0)


# ---- case 7: compat under torch.compile and torch.func ----------------------------------------


def _top2(x: torch.Tensor) -> torch.Tensor:
    return topk_map(x, 2)


def _noisy_layer(seed: int) -> Any:
    noise = compat.SumOfGammaNoiseDistribution(k=2.0, generator=gen(seed))
    return compat.imle(_top2, noise_distribution=noise, nb_samples=3)


def test_case07_compat_compiles_without_and_with_noise() -> None:
    t = torch.randn(2, 8, generator=gen(13))
    w = torch.randn(6, 8, generator=gen(14))

    def step(fn: Any, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        theta = theta.clone().requires_grad_()
        out = fn(theta)
        loss = (out * w[: out.shape[0]]).sum()
        return loss.detach(), torch.autograd.grad(loss, theta)[0]

    layer = compat.imle(_top2)  # main: InternalTorchDynamoError "a plain callable needs event_ndim"
    eager = step(layer, t)
    compiled = step(torch.compile(layer, backend="aot_eager", fullgraph=True), t)
    for a, b in zip(compiled, eager, strict=True):
        torch.testing.assert_close(a, b)
    eager_n = step(_noisy_layer(0), t)  # the same seed: the same noise draw
    compiled_n = step(torch.compile(_noisy_layer(0), backend="aot_eager"), t)
    for a, b in zip(compiled_n, eager_n, strict=True):
        torch.testing.assert_close(a, b)
    assert eager[1].abs().sum() > 0 and eager_n[1].abs().sum() > 0


def test_case07_compat_fullgraph_with_noise_says_how() -> None:
    layer = _noisy_layer(1)
    with pytest.raises(Exception, match="draw the noise outside the compiled function"):
        torch.compile(lambda x: layer(x).sum(), backend="aot_eager", fullgraph=True)(
            torch.randn(2, 8)
        )


def test_case07_compat_under_every_torch_func_transform() -> None:
    t = torch.randn(2, 8, generator=gen(15), dtype=F64)
    w = torch.randn(6, 8, generator=gen(16), dtype=F64)
    for make in (lambda: compat.imle(_top2), lambda: _noisy_layer(2)):
        layer_g = make()
        out = make()(t)
        wo = w[: out.shape[0]]
        g = grad(lambda x, layer=layer_g, wo=wo: (layer(x) * wo).sum())(t)
        torch.testing.assert_close(g, grad_of(make(), t, wo))
        pull = vjp(make(), t)[1]
        torch.testing.assert_close(pull(wo)[0], g)
        jac = jacrev(make())(t)  # [B * S, 8, 2, 8]: one VJP per output entry (not linear in it)
        rows = torch.eye(out.numel(), dtype=F64).reshape(-1, *out.shape)
        loop = torch.stack([grad_of(make(), t, row) for row in rows]).reshape(jac.shape)
        torch.testing.assert_close(jac, loop)
        assert loop.abs().sum() > 0
        batched = vmap(make(), randomness="same")(t[None])
        torch.testing.assert_close(batched[0], make()(t))
    with pytest.raises(NotImplementedError, match='randomness="same"'):
        vmap(_noisy_layer(3), randomness="different")(t[None])


# ---- case 8: second derivatives ---------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_case08_second_derivatives_raise(name: str) -> None:
    theta = torch.tensor([[0.0, 0.5, 0.2]])
    noise = torch.randn(4, 1, 3, generator=gen(17))
    w = torch.tensor([0.0, 1.0, 0.0])

    def f(t: torch.Tensor) -> torch.Tensor:
        return (run(name, t, noise, TOP1) * (1.0 if name == "fenchel_young_loss" else w)).sum()

    first = grad(f)(theta)
    t = theta.clone().requires_grad_()
    (g,) = torch.autograd.grad(f(t), t, create_graph=True)  # first order: fine
    torch.testing.assert_close(g, first)
    for second in (
        lambda: g.sum().backward(),
        lambda: jacrev(grad(f))(theta),  # main (dbb): [[0, 0], [-1, 1]]
        lambda: torch.func.hessian(f)(theta),
        lambda: torch.autograd.functional.hessian(f, theta),
    ):
        with pytest.raises(NotImplementedError, match=r"second derivatives|forward-mode"):
            second()


def test_case08_dbb_issue_case() -> None:
    def f(t: torch.Tensor) -> torch.Tensor:
        return (dbb(t, TOP1, lam=1) * torch.tensor([0.0, 1.0])).sum()

    with pytest.raises(NotImplementedError, match="dbb: second derivatives are not supported"):
        jacrev(grad(f))(torch.tensor([0.0, 0.5]))


# ---- case 9: legacy batched gradients ---------------------------------------------------------


def test_case09_is_grads_batched_names_jacrev_and_jacrev_gives_the_loop() -> None:
    theta = torch.tensor([0.5, 0.0], requires_grad=True)
    z = imle(theta, None, TOP1)
    with pytest.raises(NotImplementedError, match=r"torch\.func\.jacrev"):
        torch.autograd.grad(z, theta, torch.eye(2), is_grads_batched=True)
    with pytest.raises(NotImplementedError, match=r"torch\.func\.jacrev"):
        torch.autograd.functional.jacobian(
            lambda t: imle(t, None, TOP1), theta.detach(), vectorize=True
        )
    loop = torch.stack([grad_of(lambda t: imle(t, None, TOP1), theta, row) for row in torch.eye(2)])
    assert torch.equal(loop, torch.tensor([[1.0, -1.0], [0.0, 0.0]]))
    assert torch.equal(jacrev(lambda t: imle(t, None, TOP1))(theta.detach()), loop)


def test_case09_the_plain_autograd_loss_supports_batched_gradients() -> None:
    theta = torch.tensor([[0.5, 0.0, 0.2], [0.1, 0.3, 0.0]], requires_grad=True)
    y = torch.tensor([0.0, 1.0, 0.0])
    loss = fenchel_young_loss(theta, y, None, TOP1)
    (batched,) = torch.autograd.grad(
        loss, theta, torch.eye(2), is_grads_batched=True, retain_graph=True
    )
    loop = torch.stack(
        [torch.autograd.grad(loss, theta, row, retain_graph=True)[0] for row in torch.eye(2)]
    )
    torch.testing.assert_close(batched, loop)


# ---- case 10: errors blame the user's own argument ---------------------------------------------


def test_case10_nan_names_noise_theta_or_the_incoming_gradient_with_sample_instance() -> None:
    theta = torch.randn(3, 6, generator=gen(18))
    noise = torch.randn(2, 3, 6, generator=gen(19))
    noise[1, 1, 0] = math.nan
    with pytest.raises(ValueError, match=r"noise: contains NaN at sample 1, instance 1"):
        imle(theta, noise, TOP2)  # main: "theta (...) instance 4 (of 6)"
    bad = theta.clone()
    bad[2, 3] = math.nan
    with pytest.raises(ValueError, match=r"^theta: contains NaN at instance 2"):
        aimle(bad, noise.nan_to_num(), TOP2)
    dz = torch.ones(2, 3, 6)
    dz[0, 2, 1] = math.nan
    t = theta.clone().requires_grad_()
    z = imle(t, noise.nan_to_num(), TOP2)
    with pytest.raises(
        ValueError,
        match=r"imle: the gradient of its output \(dz\): contains NaN at sample 0, instance 2",
    ):
        z.backward(dz)
    scores = torch.zeros(2, 2, 6)
    scores[1, 0, 4] = math.nan
    with pytest.raises(ValueError, match=r"^theta: contains NaN at instance \(1, 0\)"):
        map_solve(scores, TOP2)


@pytest.mark.parametrize(
    "lam", [np.float32(10), np.float64(10), torch.tensor(10.0), np.array(10.0)]
)
def test_case10_numpy_scalars_and_0d_tensors_are_numbers(lam: Any) -> None:
    one: Any = torch.tensor(1)  # typed as numbers; accepted at run time (checks.as_number)
    two: Any = torch.tensor(2)
    theta = torch.tensor([[0.2, 0.5, 0.1]])
    w = torch.tensor([[1.0, 0.0, 0.0]])
    expected = grad_of(lambda t: imle(t, None, TOP1, lam=10.0), theta, w)
    torch.testing.assert_close(grad_of(lambda t: imle(t, None, TOP1, lam=lam), theta, w), expected)
    torch.testing.assert_close(
        grad_of(lambda t: aimle(t, None, TOP1, beta=lam, alpha=one), theta, w),
        grad_of(lambda t: aimle(t, None, TOP1, beta=10.0), theta, w),
    )
    assert compat.TargetDistribution(beta=lam).beta == 10.0
    assert compat.imle(_top2, nb_samples=two)(theta).shape == (2, 3)


def test_case10_refused_numbers_say_why() -> None:
    with_grad: Any = torch.tensor(1.0, requires_grad=True)
    two_values: Any = torch.tensor([1.0, 2.0])
    with pytest.raises(ValueError, match="lam: got a tensor that requires grad"):
        imle(torch.zeros(1, 3), None, TOP1, lam=with_grad)
    with pytest.raises(ValueError, match="lam: expected a finite number"):
        imle(torch.zeros(1, 3), None, TOP1, lam=two_values)
    with pytest.raises(ValueError, match="lam: expected a finite number"):
        imle(torch.zeros(1, 3), None, TOP1, lam=True)


@pytest.mark.parametrize(
    "call",
    [
        lambda t: map_solve(t, TOP1),
        lambda t: imle(t, None, TOP1),
        lambda t: imle(t, None, as_solver(_topk1, event_ndim=1)),
        lambda t: fenchel_young_loss(t, torch.zeros(3, device="meta"), None, TOP1),
    ],
)
def test_case10_meta_theta_is_refused_by_name(call: Any) -> None:
    with pytest.raises(ValueError, match="theta: a meta tensor has a shape but no values"):
        call(torch.zeros(2, 3, device="meta"))


def test_case10_wrong_shape_y() -> None:
    with pytest.raises(ValueError, match=r"y: expected target states of theta's shape \(2, 3\)"):
        fenchel_young_loss(torch.zeros(2, 3), torch.zeros(4, 3), None, TOP1)


@pytest.mark.parametrize(
    ("returned", "match"),
    [
        (lambda x: np.full(x.shape, "a"), r"solver: strings returned values of dtype <U1"),
        (lambda x: np.full(x.shape, None), r"solver: strings returned ndarray of Python objects"),
        (lambda x: x.astype(np.complex64), r"solver: strings returned values of dtype complex64"),
    ],
)
def test_case10_a_solver_returning_non_numbers_is_named(returned: Any, match: str) -> None:
    def strings(x: np.ndarray) -> Any:
        return returned(x)

    with pytest.raises(TypeError, match=match):
        map_solve(torch.zeros(2, 3), strings, event_ndim=1)


def test_case10_torch_solver_returning_no_tensor_is_named() -> None:
    def listing(x: torch.Tensor) -> Any:
        return x.tolist()

    with pytest.raises(
        TypeError,
        match=r"solver: listing is a torch-backend solver and must return a tensor, got list",
    ):
        imle(torch.zeros(2, 3), None, as_solver(listing, event_ndim=1, backend="torch"))


def test_case10_compat_checks_at_construction_under_its_own_names() -> None:
    with pytest.raises(ValueError, match="beta: expected > 0"):
        compat.TargetDistribution(beta=0)  # main: "lam", and only when called
    with pytest.raises(ValueError, match="nb_iterations: expected >= 1"):
        compat.SumOfGammaNoiseDistribution(k=5.0, nb_iterations=0)  # main: "num_terms"
    with pytest.raises(ValueError, match="k: expected a positive finite"):
        compat.SumOfGammaNoiseDistribution(k=-1.0)
    with pytest.raises(ValueError, match="alpha: expected a finite number"):
        compat.TargetDistribution(alpha=math.inf)
    with pytest.raises(ValueError, match="input_noise_temperature: expected >= 0"):
        compat.imle(_top2, input_noise_temperature=-1.0)


def test_case10_a_solver_built_inside_compile_says_the_limit_and_the_way() -> None:
    with pytest.raises(Exception, match=r"constructed inside a torch.compile'd function.*outside"):
        torch.compile(lambda t: imle(t, None, TopK(2)).sum(), backend="aot_eager")(
            torch.randn(2, 5)
        )  # main: "'TopK' object has no attribute 'k'"
    with pytest.raises(Exception, match="GridShortestPath constructed inside"):
        torch.compile(lambda t: map_solve(t, GridShortestPath(4)).sum(), backend="aot_eager")(
            torch.randn(2, 3, 3)
        )  # main: silently solved with the default neighbourhood (8)


def test_case10_a_plain_function_may_be_passed_inside_compile() -> None:
    theta = torch.randn(2, 5, generator=gen(20))
    f = torch.compile(lambda t: imle(t, None, _topk1, event_ndim=1), backend="aot_eager")
    torch.testing.assert_close(f(theta), imle(theta, None, _topk1, event_ndim=1))


def test_case10_func_grad_inside_compile_says_the_limit_and_the_way() -> None:
    def f(t: torch.Tensor) -> torch.Tensor:
        return (imle(t, None, TOP1) * torch.tensor([0.0, 1.0])).sum()

    theta = torch.tensor([[0.0, 0.5]])
    with pytest.raises(
        Exception, match=r"inside a torch.compile'd function are not supported.*\.backward\(\)"
    ):
        torch.compile(grad(f), backend="aot_eager", fullgraph=True)(theta)
    torch.testing.assert_close(grad(torch.compile(f, backend="aot_eager"))(theta), grad(f)(theta))


# ---- case 13: the maths statements ------------------------------------------------------------


def _logistic_quadrature(count: int) -> torch.Tensor:
    """``[count, 1, 2]`` noise whose first-minus-second difference runs over the midpoint quantiles
    of the standard logistic law: the law of the difference of two standard Gumbels, and all a
    top-1 of two items sees. A deterministic quadrature of the Gumbel expectation."""
    p = (torch.arange(count, dtype=F64) + 0.5) / count
    q = torch.log(p) - torch.log1p(-p)
    return torch.stack([q, torch.zeros_like(q)], -1)[:, None, :]


def test_case13_imle_limit_is_the_gradient_only_for_losses_linear_in_z() -> None:
    """n = 2, k = 1, theta = (1, 0), Gumbel noise, b = (0.5, 0): the derivative of E[L(z)] in
    theta_0 by exact enumeration of the two states is -0.197 for L = ||z - b||^2; the expectation of
    I-MLE's estimate at lam = 0.01 (midpoint quadrature over the noise, 400k points) is -0.393 for
    the quadratic form and -0.197 for the same loss written linearly, <1 - 2b, z> + ||b||^2."""
    theta = torch.tensor([[1.0, 0.0]], dtype=F64)
    b = torch.tensor([0.5, 0.0], dtype=F64)
    states = torch.eye(2, dtype=F64)  # k = 1 of n = 2

    def expected_loss(t: torch.Tensor) -> torch.Tensor:  # Gumbel-max: P(z = e_i) = softmax_i
        return (torch.softmax(t[0], 0) * ((states - b) ** 2).sum(-1)).sum()

    true = grad(expected_loss)(theta)[0, 0]
    torch.testing.assert_close(true, torch.tensor(-0.19661, dtype=F64), atol=1e-5, rtol=0)
    noise = _logistic_quadrature(400_000)

    def estimate(per_sample_loss: Any) -> torch.Tensor:
        # A SUM over samples: each sample's cotangent is its own dL/dz; imle averages the samples.
        return grad(lambda t: per_sample_loss(imle(t, noise, TOP1, lam=0.01)).sum())(theta)[0, 0]

    quadratic = estimate(lambda z: ((z - b) ** 2).sum(-1))
    linear = estimate(lambda z: (z * (1 - 2 * b)).sum(-1) + (b**2).sum())
    assert abs(linear - true) < 0.01  # linear in z: the limit is the true derivative
    assert abs(quadratic - 2 * true) < 0.01  # quadratic: twice it, -0.393
    assert abs(quadratic - true) > 0.15


def test_case13_pooled_aimle_lambda_is_ours_over_sqrt_s_at_batch_one() -> None:
    """B = 1, S samples whose cotangents have equal norms (permutations of one vector): the pooled
    rule (torch-adaptive-imle's) gives the per-(instance, sample) lambda divided by sqrt(S)."""
    theta = torch.randn(1, 6, generator=gen(21), dtype=F64)
    base = torch.randn(6, generator=gen(22), dtype=F64)
    for S in (1, 4, 9):
        dz = torch.stack([base[torch.randperm(6, generator=gen(s))] for s in range(S)])[:, None]
        ours = aimle_lambda(theta, dz, beta=0.7, event_ndim=1)
        pooled = aimle_lambda(theta, dz, beta=0.7, event_ndim=1, norm="pooled")
        assert ours.shape == (S, 1, 1) and pooled.shape == ()
        torch.testing.assert_close(pooled.expand_as(ours), ours / math.sqrt(S))


def test_case13_pooled_aimle_gradient_is_the_one_lambda_formula() -> None:
    theta = torch.randn(3, 6, generator=gen(23), dtype=F64)
    noise = gumbel((2, 3, 6), generator=gen(24), dtype=F64)
    dz = torch.randn(2, 3, 6, generator=gen(25), dtype=F64)
    lam = 0.6 * theta.norm() / dz.norm()
    z = topk_map(theta + noise, 2)
    expected = ((z - topk_map(theta - lam * dz + noise, 2)) / lam).mean(0)
    got = grad_of(lambda t: aimle(t, noise, TOP2, beta=0.6, norm="pooled"), theta, dz)
    torch.testing.assert_close(got, expected)
    assert expected.abs().sum() > 0
    with pytest.raises(ValueError, match="norm: expected 'instance' or 'pooled'"):
        aimle(theta, noise, TOP2, norm="batch")  # type: ignore[arg-type]


# ---- new-user finding: an infinite cotangent is refused, naming dz ---------------------------

_FINITE_DZ = [n for n in NAMES if n not in ("ste", "fenchel_young_loss")]


def _inf_dz_case(sign: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    theta = torch.randn(3, 6, generator=gen(40), dtype=F64)
    noise = gumbel((2, 3, 6), generator=gen(41), dtype=F64)
    w = torch.randn(3, 6, generator=gen(42), dtype=F64)
    w[2, 4] = sign * math.inf  # instance 2
    return theta, noise, w


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("solver", ["torch", "numpy"])
@pytest.mark.parametrize("name", [*_FINITE_DZ, "simple"])
def test_an_infinite_cotangent_is_refused_naming_dz(name: str, solver: str, sign: float) -> None:
    """main: imle, imle_central, dbb returned finite gradients (the inf entered the target as a
    mask), perturbed NaN, aimle blamed NaN target scores."""
    theta, noise, w = _inf_dz_case(sign)
    top2: Any = TOP2 if solver == "torch" else as_solver(numpy_topk(2), event_ndim=1)
    if name == "simple":
        from imle_fn.estimators.simple_estimator import simple

        fn: Any = lambda t: simple(t, noise.exp().neg().exp(), 2)  # noqa: E731 (uniforms)
    else:
        fn = lambda t: run(name, t, noise, top2)  # noqa: E731
    pattern = (
        rf"^{name.split('_central_pooled')[0]}: the gradient of its output \(dz\): contains an"
    )
    pattern += r" infinite value at (sample \d+, )?instance 2"
    with pytest.raises(ValueError, match=pattern):
        grad_of(fn, theta, w)
    with pytest.raises(ValueError, match=r"\(dz\)|gradient of the output, dz"):
        vmap(grad(lambda t, v: (fn(t) * v).sum()))(theta, w)  # per instance, under vmap
    torch._dynamo.reset()  # one lambda's code, a new solver per case: no recompile limit
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    with pytest.raises(ValueError, match=pattern.replace("instance 2", "instance")):
        grad_of(compiled, theta, w)


def test_ste_passes_an_infinite_cotangent_through_as_autograd_does() -> None:
    theta, noise, w = _inf_dz_case(1.0)
    got = grad_of(lambda t: run("ste", t, noise, TOP2), theta, w)
    assert torch.equal(got, w)  # STE's gradient is the cotangent (averaged over equal samples)


@pytest.mark.parametrize("name", ["perturbed", "imle"])
def test_an_infinite_cotangent_is_refused_through_subclasses_and_dispatch_modes(name: str) -> None:
    """main: perturbed returned NaN gradients (imle blamed the targets) under FlopCounterMode or
    with a tensor-subclass cotangent: the data is read through them."""
    from torch.utils.flop_counter import FlopCounterMode

    class Tagged(torch.Tensor):
        pass

    theta, noise, w = _inf_dz_case(1.0)
    t = theta.clone().requires_grad_()

    def fn(x: torch.Tensor) -> torch.Tensor:
        return run(name, x, noise, TOP2).reshape(-1, 3, 6).mean(0)  # [3, 6] for both

    message = rf"^{name}: the gradient of its output \(dz\): contains NaN or an infinite value"
    with pytest.raises(ValueError, match=message), FlopCounterMode(display=False):
        torch.autograd.grad(fn(t), t, w)
    either = rf"^{name}: the gradient of its output \(dz\): contains (NaN or )?an infinite value"
    with pytest.raises(ValueError, match=either):
        torch.autograd.grad(fn(t), t, w.as_subclass(Tagged))
    finite = w.nan_to_num(posinf=1.0)
    with FlopCounterMode(display=False):
        (got,) = torch.autograd.grad(fn(t), t, finite)
    assert torch.equal(got, grad_of(fn, theta, finite))


@pytest.mark.parametrize("samples", [None, 1, 3])
def test_compiled_ste_backward_is_the_cotangent(samples: int | None) -> None:
    """main: without a sample dim STE's compiled backward returned its input (dz) from the custom
    op, which torch refuses ("must not alias any inputs")."""
    theta = torch.randn(3, 6, generator=gen(50), dtype=F64)
    shape = (3, 6) if samples is None else (samples, 3, 6)
    noise = gumbel(shape, generator=gen(51), dtype=F64)
    w = torch.randn(3, 6, generator=gen(52), dtype=F64)
    torch._dynamo.reset()
    compiled = torch.compile(
        lambda t: run("ste", t, noise, TOP2), backend="aot_eager", fullgraph=True
    )
    got = grad_of(lambda t: compiled(t).sum(0) if samples else compiled(t), theta, w)
    torch.testing.assert_close(got, w)  # STE: the mean over samples of their cotangents (each w)
