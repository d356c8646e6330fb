"""`imle_fn.estimators`: the estimator family against its definitions, and composability with torch.func / compile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch.func import vmap

from imle_fn.core.contract import as_solver
from imle_fn.core.noise import gumbel, sum_of_gamma
from imle_fn.core.solving import map_solve
from imle_fn.estimators.adaptive import aimle, aimle_state, aimle_update
from imle_fn.estimators.blackbox import dbb
from imle_fn.estimators.central import imle_central
from imle_fn.estimators.fenchel_young import fenchel_young_loss
from imle_fn.estimators.implicit_mle import imle
from imle_fn.estimators.perturbed_optimizer import perturbed
from imle_fn.estimators.straight_through import ste
from imle_fn.solvers.grid import GridShortestPath
from imle_fn.solvers.topk import TopK, topk_map
from tests.helpers import CountingArgmax
from tests.naive import naive_dbb_in_costs

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def grad_of(
    fn: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor, dz: torch.Tensor
) -> torch.Tensor:
    """dtheta of <fn(theta), dz> by .backward()."""
    theta = theta.detach().clone().requires_grad_()
    (fn(theta) * dz).sum().backward()
    assert theta.grad is not None
    return theta.grad


# ---- STE ---------------------------------------------------------------------------------------


def test_ste_passes_the_mean_cotangent_through_without_a_solver_call() -> None:
    solver = CountingArgmax()
    theta = torch.randn(3, 5, generator=gen(0), dtype=F64)
    noise = gumbel((4, 3, 5), generator=gen(1), dtype=F64)
    dz = torch.randn(4, 3, 5, generator=gen(2), dtype=F64)
    z = ste(theta, noise, solver)
    assert torch.equal(z, map_solve(theta + noise, solver))
    calls = len(solver.calls)
    torch.testing.assert_close(grad_of(lambda t: ste(t, noise, solver), theta, dz), dz.mean(0))
    assert len(solver.calls) == calls + 1  # the forward inside grad_of; none in the backward


# ---- central differences -----------------------------------------------------------------------


def test_central_is_the_average_of_both_one_sided_definitions_in_one_solver_call() -> None:
    solver = CountingArgmax()
    theta = torch.randn(6, 5, generator=gen(3), dtype=F64)
    noise = gumbel((3, 6, 5), generator=gen(4), dtype=F64)
    dz = 3 * torch.randn(3, 6, 5, generator=gen(5), dtype=F64)
    lam = 0.7

    def solve(x: torch.Tensor) -> torch.Tensor:
        return map_solve(x, CountingArgmax())

    z = solve(theta + noise)
    minus = (z - solve(theta - lam * dz + noise)) / lam  # I-MLE's one-sided estimate
    plus = (solve(theta + lam * dz + noise) - z) / lam  # its mirror image
    expected = ((minus + plus) / 2).mean(0)
    got = grad_of(lambda t: imle_central(t, noise, solver, lam=lam), theta, dz)
    torch.testing.assert_close(got, expected)
    assert solver.calls == [(18, 5), (36, 5)]  # forward; both targets in one backward call
    assert expected.abs().sum() > 0  # the check is not vacuous
    got_plain = grad_of(
        lambda t: imle_central(t, noise, solver, lam=lam, divide_by_lam=False), theta, dz
    )
    torch.testing.assert_close(got_plain, expected * lam)


def test_central_descends_a_linear_loss() -> None:
    theta = torch.zeros(1, 4, dtype=F64)
    dz = torch.tensor([[[1.0, -1.0, 0.0, 0.0]]], dtype=F64)  # loss grows with z_0, falls with z_1
    g = grad_of(
        lambda t: imle_central(t, torch.zeros(1, 1, 4, dtype=F64), TopK(1), lam=0.1), theta, dz
    )
    assert g[0, 0] > 0 and g[0, 1] < 0


# ---- DBB ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("clamp", [False, True])
def test_dbb_matches_the_cost_form_derivation(clamp: bool) -> None:
    costs = torch.rand(8, 6, generator=gen(6), dtype=F64)  # non-negative costs
    dz = 2 * torch.randn(8, 6, generator=gen(7), dtype=F64)
    lam = 0.5
    dL_dw = naive_dbb_in_costs(costs.numpy(), dz.numpy(), 2, lam, clamp)
    assert np.abs(dL_dw).sum() > 0
    dtheta = grad_of(lambda t: dbb(t, TopK(2), lam=lam, clamp_costs=clamp), -costs, dz)
    torch.testing.assert_close(dtheta, torch.from_numpy(-dL_dw))  # theta = -w
    if not clamp:  # in score form DBB is noise-free I-MLE
        torch.testing.assert_close(
            dtheta, grad_of(lambda t: imle(t, None, TopK(2), lam=lam), -costs, dz)
        )


# ---- perturbed optimizers and the Fenchel-Young loss ------------------------------------------


@pytest.mark.parametrize("control_variate", [False, True])
def test_perturbed_gumbel_argmax_is_softmax_and_its_jacobian(control_variate: bool) -> None:
    """Probabilistic (seeded): 2e5 Gumbel samples; the Monte-Carlo error is about 1e-3 to 5e-3."""
    theta = torch.tensor([0.5, -1.0, 1.5, 0.0], dtype=F64)
    noise = gumbel((200_000, 4), generator=gen(8), dtype=F64)
    solver = CountingArgmax()

    def fn(t: torch.Tensor) -> torch.Tensor:
        return perturbed(t, noise, solver, noise_type="gumbel", control_variate=control_variate)

    p = torch.softmax(theta, -1)
    torch.testing.assert_close(fn(theta), p, atol=5e-3, rtol=0)
    calls = len(solver.calls)
    jac = torch.func.jacrev(fn)(theta)
    assert len(solver.calls) == calls + 1  # jacrev: one forward, no solver call in the backward
    torch.testing.assert_close(jac, torch.diag(p) - torch.outer(p, p), atol=0.02, rtol=0)


def test_perturbed_gaussian_vjp_is_the_score_function_formula() -> None:
    theta = torch.randn(3, 5, generator=gen(9), dtype=F64)
    noise = torch.randn(50, 3, 5, generator=gen(10), dtype=F64)
    dout = torch.randn(3, 5, generator=gen(11), dtype=F64)
    sigma = 0.7
    z = topk_map(theta + sigma * noise, 2)  # [50, 3, 5]
    expected = ((z * dout).sum(-1, keepdim=True) * noise).mean(
        0
    ) / sigma  # E[<z, dout> eps] / sigma
    out = perturbed(theta, noise, TopK(2), sigma=sigma)
    torch.testing.assert_close(out, z.mean(0))
    torch.testing.assert_close(
        grad_of(lambda t: perturbed(t, noise, TopK(2), sigma=sigma), theta, dout), expected
    )
    z0 = topk_map(theta, 2)
    expected_cv = (((z - z0) * dout).sum(-1, keepdim=True) * noise).mean(0) / sigma
    got_cv = grad_of(
        lambda t: perturbed(t, noise, TopK(2), sigma=sigma, control_variate=True), theta, dout
    )
    torch.testing.assert_close(got_cv, expected_cv)


def test_fenchel_young_gradient_and_value() -> None:
    theta = torch.randn(4, 6, generator=gen(12), dtype=F64)
    y = topk_map(torch.randn(4, 6, generator=gen(13), dtype=F64), 3)  # feasible targets
    noise = torch.randn(20, 4, 6, generator=gen(14), dtype=F64)
    sigma = 0.5
    theta_ = theta.clone().requires_grad_()
    loss = fenchel_young_loss(theta_, y, noise, TopK(3), sigma=sigma)
    loss.sum().backward()
    z = topk_map(theta + sigma * noise, 3)
    torch.testing.assert_close(theta_.grad, z.mean(0) - y)  # E[MAP(theta + sigma eps)] - y
    shifted = theta + sigma * noise
    torch.testing.assert_close(loss, ((shifted * z).sum(-1) - (shifted * y).sum(-1)).mean(0))
    assert loss.shape == (4,) and bool((loss >= 0).all()) and bool((loss > 0).any())
    at_optimum = fenchel_young_loss(theta, topk_map(theta, 3), None, TopK(3))
    torch.testing.assert_close(at_optimum, torch.zeros(4, dtype=F64))


# ---- AIMLE -------------------------------------------------------------------------------------


def test_aimle_matches_a_per_instance_loop_of_its_definition() -> None:
    theta = torch.randn(3, 6, generator=gen(15), dtype=F64)
    noise = sum_of_gamma((4, 3, 6), k=2.0, generator=gen(16), dtype=F64)
    dz = torch.randn(4, 3, 6, generator=gen(17), dtype=F64)
    beta = 0.8
    for central in (False, True):
        expected = torch.zeros_like(theta)
        nnz = 0
        for i in range(3):
            for s in range(4):
                lam = beta * theta[i].norm() / dz[s, i].norm()
                eps = noise[s, i]
                z = topk_map(theta[i] + eps, 2)
                minus = topk_map(theta[i] - lam * dz[s, i] + eps, 2)
                plus = topk_map(theta[i] + lam * dz[s, i] + eps, 2)
                diff = (plus - minus) / 2 if central else z - minus
                expected[i] += diff / lam / 4
                nnz += int((diff != 0).sum())
        state = aimle_state(beta, dtype=F64).requires_grad_()
        theta_ = theta.clone().requires_grad_()
        (aimle(theta_, noise, TopK(2), state, central=central) * dz).sum().backward()
        torch.testing.assert_close(theta_.grad, expected)
        torch.testing.assert_close(state.grad, torch.tensor([float(nnz), 12.0], dtype=F64))

        def fixed_beta(t: torch.Tensor, c: bool = central) -> torch.Tensor:
            return aimle(t, noise, TopK(2), beta=beta, central=c)

        fixed = grad_of(fixed_beta, theta, dz)
        torch.testing.assert_close(fixed, expected)
        assert nnz > 0


def test_aimle_update_rule_and_state_round_trip() -> None:
    state = aimle_state(0.5, 1.0, dtype=F64)
    new = aimle_update(state, torch.tensor([2.0, 10.0], dtype=F64), target=1.0, step=0.1, decay=0.9)
    # ema = 0.9 * 1 + 0.1 * (2 / 10) = 0.92 < 1: beta goes up by one step
    torch.testing.assert_close(new, torch.tensor([0.6, 0.92], dtype=F64))
    assert torch.equal(state, aimle_state(0.5, 1.0, dtype=F64))  # the input is not mutated
    new = aimle_update(
        state, torch.tensor([30.0, 10.0], dtype=F64), target=1.0, step=0.1, decay=0.9
    )
    torch.testing.assert_close(new, torch.tensor([0.4, 1.2], dtype=F64))  # 3 per pair > 1: down
    assert torch.equal(aimle_update(state, None), state)
    assert torch.equal(aimle_update(state, torch.zeros(2, dtype=F64)), state)  # no observation
    low = aimle_update(aimle_state(0.05, 5.0), torch.tensor([50.0, 1.0]), step=0.1)
    assert low[0] == 0.0  # beta never goes negative
    with pytest.raises(ValueError, match="state: expected a floating \\[2\\] tensor"):
        aimle(torch.zeros(2, 3), None, TopK(1), torch.zeros(3))
    with pytest.raises(ValueError, match="either a state or a fixed beta"):
        aimle(torch.zeros(2, 3), None, TopK(1), aimle_state(), beta=1.0)


def test_aimle_beta_moves_toward_the_target_sparsity() -> None:
    """Argmax changes give 2 non-zeros per pair: with target 1, a tiny beta grows, a huge one shrinks.

    (PyEPO's bug compares a fraction of non-zeros with 1, so its beta only grows: the second half
    of this test would fail there.)
    """
    solver = CountingArgmax()
    theta = torch.randn(16, 5, generator=gen(18), dtype=F64)
    noise = gumbel((2, 16, 5), generator=gen(19), dtype=F64)

    def run(beta0: float, steps: int) -> tuple[list[float], list[float]]:
        state = aimle_state(beta0, 1.0, dtype=F64)
        betas, emas = [beta0], []
        for t in range(steps):
            dz = torch.randn(2, 16, 5, generator=gen(100 + t), dtype=F64)
            _, stats = torch.func.grad(
                lambda th, st, dz=dz: (aimle(th, noise, solver, st) * dz).sum(), argnums=(0, 1)
            )(theta, state)
            state = aimle_update(state, stats, target=1.0, step=0.05)
            betas.append(float(state[0]))
            emas.append(float(state[1]))
        return betas, emas

    betas, emas = run(0.0, 10)  # beta 0: no change, 0 non-zeros per pair
    assert betas == sorted(betas) and betas[-1] > 0.4 and emas[-1] < 1.0
    betas, emas = run(50.0, 10)  # nearly every pair changes: about 2 non-zeros per pair
    assert betas == sorted(betas, reverse=True) and betas[-1] < 50.0 and emas[-1] > 1.0


# ---- one solver, every estimator: torch.func composability ------------------------------------

NOISE = gumbel((3, 4, 5), generator=gen(20), dtype=F64)

ESTIMATORS: dict[str, Callable[[torch.Tensor, Any, torch.Tensor], torch.Tensor]] = {
    "ste": lambda t, s, e: ste(t, e, s),
    "imle_central": lambda t, s, e: imle_central(t, e, s, lam=0.5),
    "dbb": lambda t, s, e: dbb(t, s, lam=0.5, clamp_costs=True),
    "perturbed": lambda t, s, e: perturbed(t, e, s, noise_type="gumbel", control_variate=True),
    "aimle": lambda t, s, e: aimle(t, e, s, beta=0.5, central=True),
}


def numpy_top2(theta: np.ndarray) -> np.ndarray:
    """A plain user NumPy solver (event_ndim=1)."""
    z = np.zeros_like(theta)
    np.put_along_axis(z, np.argsort(-theta, axis=-1, kind="stable")[:, :2], 1.0, axis=-1)
    return z


def solver_case(kind: str) -> tuple[Any, tuple[int, ...], torch.Tensor]:
    """(solver, event shape, [4, *event] scores) for a torch top-k, user NumPy code, grid paths."""
    if kind == "torch":
        return TopK(2), (5,), torch.randn(4, 5, generator=gen(21), dtype=F64)
    if kind == "numpy":
        return (
            as_solver(numpy_top2, event_ndim=1),
            (5,),
            torch.randn(4, 5, generator=gen(21), dtype=F64),
        )
    costs = 0.5 + torch.rand(4, 5, 5, generator=gen(21), dtype=F64)
    return GridShortestPath(), (5, 5), -costs


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("solver_kind", ["torch", "numpy", "grid"])
def test_vmap_equals_loop_and_func_grad_equals_autograd(name: str, solver_kind: str) -> None:
    solver, event, theta = solver_case(solver_kind)
    noise = 0.5 * gumbel((3, 4, *event), generator=gen(20), dtype=F64)
    fn = ESTIMATORS[name]
    weights = torch.randn(6, *event, generator=gen(22), dtype=F64)  # one linear loss per slice

    def loss(t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (fn(t, solver, noise) * w).sum()

    tw = theta + 0.3 * weights[:, None]  # [6, 4, *event]: different scores per slice
    batched = vmap(torch.func.grad(loss))(tw, weights)
    looped = torch.stack(
        [grad_of(lambda t: fn(t, solver, noise), t, w) for t, w in zip(tw, weights, strict=True)]
    )
    torch.testing.assert_close(batched, looped)
    assert looped.abs().sum() > 0
    out = vmap(lambda t: fn(t, solver, noise))(tw)
    torch.testing.assert_close(out, torch.stack([fn(t, solver, noise) for t in tw]))


def test_aimle_state_under_vmap_sums_the_statistics() -> None:
    theta = torch.randn(3, 4, 5, generator=gen(23), dtype=F64)
    dz = torch.randn(3, 3, 4, 5, generator=gen(24), dtype=F64)  # [V, S, 4, 5]
    state = aimle_state(1.0, dtype=F64)

    def loss(t: torch.Tensor, st: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return (aimle(t, NOISE, TopK(2), st) * d).sum()

    grads = torch.func.grad(
        lambda t, st: vmap(loss, in_dims=(0, None, 0))(t, st, dz).sum(), argnums=(0, 1)
    )
    dtheta, stats = grads(theta, state)
    loop = [torch.func.grad(loss, argnums=(0, 1))(theta[v], state, dz[v]) for v in range(3)]
    torch.testing.assert_close(dtheta, torch.stack([g for g, _ in loop]))
    torch.testing.assert_close(stats, sum(s for _, s in loop))
    assert stats[1] == 3 * 3 * 4  # (vmapped slice, sample, instance) pairs


def test_compile_equals_eager_for_every_estimator() -> None:
    """One small compiled graph (fullgraph) holding all five estimators; aot_eager keeps it fast
    (dynamo + AOTAutograd, which is where the estimators' compile route matters)."""
    theta = torch.randn(4, 5, generator=gen(25), dtype=F64)
    w = torch.randn(3, 4, 5, generator=gen(26), dtype=F64)
    noise = NOISE
    solver = TopK(2)

    def total(t: torch.Tensor, st: torch.Tensor) -> torch.Tensor:
        out = (ste(t, noise, solver) * w).sum()
        out = out + (imle_central(t, noise, solver, lam=0.5) * w).sum()
        out = out + (dbb(t, solver, lam=0.5) * w[0]).sum()
        out = out + (perturbed(t, noise, solver, noise_type="gumbel") * w[1]).sum()
        return out + (aimle(t, noise, solver, st) * w).sum()

    def grads(fn: Callable[..., torch.Tensor], st: torch.Tensor) -> tuple[torch.Tensor, ...]:
        t = theta.clone().requires_grad_()
        st = st.clone().requires_grad_()
        return (fn(t, st).detach(), *torch.autograd.grad(fn(t, st), (t, st)))

    compiled = torch.compile(total, backend="aot_eager", fullgraph=True)
    for beta in (0.7, 0.2):  # a new beta is new data, not a recompile
        state = aimle_state(beta, dtype=F64)
        eager = grads(total, state)
        got = grads(compiled, state)
        for a, b in zip(got, eager, strict=True):
            torch.testing.assert_close(a, b)
        assert eager[2][1] == 12 and eager[1].abs().sum() > 0


def test_compile_equals_eager_with_vmap_inside() -> None:
    """vmap inside the compiled function (the op's vmap rule and each estimator's out_dims)."""
    theta = torch.randn(3, 4, 5, generator=gen(29), dtype=F64)
    w = torch.randn(3, 1, 4, 5, generator=gen(30), dtype=F64)
    solver = TopK(2)
    state = aimle_state(0.5, dtype=F64)

    def total(t: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((), dtype=F64)
        for name, fn in ESTIMATORS.items():
            z = vmap(lambda x, fn=fn: fn(x, solver, NOISE))(t)  # [3, (S,) 4, 5]
            out = out + (z * (w if z.ndim == 4 else w[:, 0])).sum() * (1 + len(name))
        return out + (vmap(lambda x: aimle(x, NOISE, solver, state))(t) * w).sum()

    compiled = torch.compile(total, backend="aot_eager", fullgraph=True)
    t = theta.clone().requires_grad_()
    eager = torch.autograd.grad(total(t), t)[0]
    got = torch.autograd.grad(compiled(t), t)[0]
    torch.testing.assert_close(got, eager)
    assert eager.abs().sum() > 0


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_dtype_kept_and_state_without_grad(name: str) -> None:
    theta = torch.randn(4, 5, generator=gen(27)).requires_grad_()  # float32
    noise = gumbel((3, 4, 5), generator=gen(28))
    out = ESTIMATORS[name](theta, TopK(2), noise)
    out.sum().backward()
    assert (
        out.dtype == torch.float32 and theta.grad is not None and theta.grad.dtype == torch.float32
    )
    state = aimle_state(1.0)  # a state that does not require grad: fine, no statistics kept
    theta.grad = None
    (aimle(theta, noise, TopK(2), state) * noise).sum().backward()
    assert state.grad is None and theta.grad is not None


def test_bad_hyper_parameters_name_the_argument() -> None:
    theta = torch.zeros(2, 3)
    noise = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="noise: the perturbed optimizer needs noise"):
        perturbed(theta, None, TopK(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="noise_type"):
        perturbed(theta, noise, TopK(1), noise_type="cauchy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sigma: expected > 0"):
        perturbed(theta, noise, TopK(1), sigma=0.0)
    with pytest.raises(ValueError, match="lam: expected > 0"):
        imle_central(theta, noise, TopK(1), lam=-1.0)
    with pytest.raises(ValueError, match="lam: expected a finite number"):
        dbb(theta, TopK(1), lam=float("nan"))
    with pytest.raises(ValueError, match="temperature: expected >= 0"):
        ste(theta, noise, TopK(1), temperature=-0.5)
    with pytest.raises(ValueError, match="decay"):
        aimle_update(aimle_state(), None, decay=1.5)
    with pytest.raises(TypeError, match=r"y: expected a torch\.Tensor"):
        fenchel_young_loss(theta, [0, 1, 0], None, TopK(1))  # type: ignore[arg-type]
