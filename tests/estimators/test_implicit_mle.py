"""`imle_fn.estimators.implicit_mle` (imle, imle_vjp): conventions, closed forms, composition with torch.func and torch.compile."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, cast

import pytest
import torch
from torch.func import grad, jacrev, vjp, vmap

from imle_fn.core.contract import SolverLike
from imle_fn.core.noise import sum_of_gamma
from imle_fn.core.solving import map_solve
from imle_fn.estimators.implicit_mle import imle, imle_vjp
from tests.helpers import CountingArgmax, TorchTopK, gumbel_noise, leaf_grad


def test_closed_form_softmax_vjp() -> None:
    """Argmax + Gumbel noise is an exact softmax sampler, so E[I-MLE VJP] is a softmax difference
    quotient, which tends to the softmax VJP as lam -> 0. Seeded Monte Carlo; tolerances are about 4
    standard errors (first check) and the O(lam) bias plus noise (second check)."""
    solver = CountingArgmax()
    theta = torch.tensor([0.3, -0.5, 1.0, 0.0, -1.2], dtype=torch.float64)
    w = torch.tensor([1.0, -2.0, 0.5, 0.0, 1.5], dtype=torch.float64)
    lam, samples = 0.1, 200_000
    noise = gumbel_noise((samples, 5), seed=0)
    theta_ = theta.clone().requires_grad_()
    z = imle(theta_, noise, solver, lam=lam)
    (z * w).sum().backward()  # dz = w for every sample; the gradient averages the samples
    p = torch.softmax(theta, 0)
    quotient = (p - torch.softmax(theta - lam * w, 0)) / lam
    jac_vjp = p * w - p * (p @ w)  # softmax Jacobian (symmetric) times w
    assert torch.allclose(z.mean(0), p, atol=0.005)
    assert torch.allclose(leaf_grad(theta_), quotient, atol=0.03)
    assert torch.allclose(leaf_grad(theta_), jac_vjp, atol=0.06)
    assert (leaf_grad(theta_) - jac_vjp).abs().max() < 0.5 * jac_vjp.abs().max()


def test_sign_and_scale_conventions() -> None:
    """Scores are maximised; target theta' = alpha*theta - lam*dz; gradient (z - z') / lam."""
    solver = CountingArgmax()
    theta = torch.tensor([0.0, 1.0, 0.0], requires_grad=True)
    z = imle(theta, None, solver, lam=2.0)
    assert torch.equal(z, torch.tensor([0.0, 1.0, 0.0]))  # argmax, not argmin
    (-z[0]).backward()  # the loss wants item 0: dz = [-1, 0, 0], theta' = [2, 1, 0]
    assert torch.equal(leaf_grad(theta), torch.tensor([-0.5, 0.5, 0.0]))  # descent raises theta[0]
    theta.grad = None
    (-imle(theta, None, solver, lam=2.0, divide_by_lam=False)[0]).backward()
    # reference scale: no 1/lam
    assert torch.equal(leaf_grad(theta), torch.tensor([-1.0, 1.0, 0.0]))


def test_alpha_scales_theta_in_target() -> None:
    solver = CountingArgmax()
    theta = torch.tensor([0.0, 5.0, 0.0], requires_grad=True)
    # alpha = 0: theta' = -lam * dz = [0.5, 0, 0] -> z' = e0 although theta strongly prefers e1.
    (-imle(theta, None, solver, lam=0.5, alpha=0.0)[0]).backward()
    assert torch.equal(leaf_grad(theta), torch.tensor([-2.0, 2.0, 0.0]))


def test_target_temperature_uses_same_noise() -> None:
    solver = CountingArgmax()
    theta = torch.zeros(3, requires_grad=True)
    noise = torch.tensor([[0.0, 1.0, 0.0]])
    # forward: argmax(theta + noise) = 1; target with temperature 0: argmax(-lam*dz) = 0
    z = imle(theta, noise, solver, lam=1.0, target_temperature=0.0)
    (-z[:, 0]).sum().backward()
    assert torch.equal(leaf_grad(theta), torch.tensor([-1.0, 1.0, 0.0]))
    theta.grad = None
    # with the same noise in the target, 0 + 1 < 1 + 0 ties -> argmax picks the first: still 0 vs 1
    z = imle(theta, noise, solver, lam=2.0, target_temperature=1.0)
    (-z[:, 0]).sum().backward()  # target = [2, 1, 0]
    assert torch.equal(leaf_grad(theta), torch.tensor([-0.5, 0.5, 0.0]))


def test_zero_noise_is_map_solve(topk_solver: TorchTopK) -> None:
    theta = torch.randn(4, 6)
    assert torch.equal(imle(theta, None, topk_solver), map_solve(theta, topk_solver))
    noise = torch.randn(3, 4, 6)
    z = imle(theta, noise, topk_solver, temperature=0.0)
    assert torch.equal(z, map_solve(theta, topk_solver).expand(3, 4, 6))


def test_seeded_noise_reproduces_samples_and_gradients(topk_solver: TorchTopK) -> None:
    def run(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        theta = torch.linspace(-1, 1, 24).reshape(4, 6).requires_grad_()
        noise = sum_of_gamma((5, 4, 6), k=2.0, generator=torch.Generator().manual_seed(seed))
        z = imle(theta, noise, topk_solver, lam=0.5)
        (z * torch.arange(6.0)).sum().backward()
        return z, leaf_grad(theta)

    (z1, g1), (z2, g2), (z3, _) = run(7), run(7), run(8)
    assert torch.equal(z1, z2) and torch.equal(g1, g2)
    assert not torch.equal(z1, z3)


def _loss(
    theta: torch.Tensor, noise: torch.Tensor, w: torch.Tensor, solver: SolverLike
) -> torch.Tensor:
    return (imle(theta, noise, solver, lam=0.7) * w).sum()


def test_vmap_equals_loop_equals_native_batch(topk_solver: TorchTopK) -> None:
    g = torch.Generator().manual_seed(1)
    theta, noise, w = (
        torch.randn(4, 6, generator=g),
        torch.randn(3, 4, 6, generator=g),
        torch.randn(3, 4, 6, generator=g),
    )
    native = grad(_loss)(theta, noise, w, topk_solver)
    per = vmap(grad(_loss), in_dims=(0, 1, 1, None))(theta, noise, w, topk_solver)
    loop = torch.stack([grad(_loss)(theta[b], noise[:, b], w[:, b], topk_solver) for b in range(4)])
    assert torch.equal(per, loop) and torch.equal(per, native)
    z_native = imle(theta, noise, topk_solver)
    z_vmap = vmap(lambda t, n: imle(t, n, topk_solver), in_dims=(0, 1), out_dims=1)(theta, noise)
    assert torch.equal(z_native, z_vmap)


def test_nested_vmap_makes_one_call_per_pass() -> None:
    solver = CountingArgmax()
    theta = torch.randn(3, 4, 5, requires_grad=True)  # [B, S, event]: batch and samples via vmap
    noise = torch.randn(3, 4, 5)
    z = vmap(vmap(lambda t, n: imle(t, n, solver)))(theta, noise)
    assert solver.calls == [(12, 5)]
    (z * torch.randn(3, 4, 5)).sum().backward()
    assert solver.calls == [(12, 5), (12, 5)]


def test_func_grad_vjp_jacrev_agree_with_autograd(argmax_solver: CountingArgmax) -> None:
    g = torch.Generator().manual_seed(2)
    theta, noise, w = (
        torch.randn(5, generator=g),
        torch.randn(8, 5, generator=g),
        torch.randn(8, 5, generator=g),
    )
    t = theta.clone().requires_grad_()
    (expected,) = torch.autograd.grad(_loss(t, noise, w, argmax_solver), t)
    assert torch.equal(grad(_loss)(theta, noise, w, argmax_solver), expected)
    # without has_aux, vjp returns (output, vjp_fn); its annotation also allows the aux triple
    _z, pullback = cast(
        tuple[torch.Tensor, Callable[..., Any]],
        vjp(lambda u: imle(u, noise, argmax_solver, lam=0.7), theta),
    )
    assert torch.equal(pullback(w)[0], expected)
    # jacrev: row j is the VJP of the j-th basis cotangent, which imle_vjp computes directly.
    jac = jacrev(lambda u: imle(u, None, argmax_solver, lam=0.7))(theta)
    solve = functools.partial(map_solve, solver=argmax_solver)
    z0 = map_solve(theta, argmax_solver)
    rows = [imle_vjp(torch.eye(5)[j], theta, None, z0, solve, lam=0.7) for j in range(5)]
    assert torch.equal(jac, torch.stack(rows))


def test_imle_vjp_is_the_custom_gradient(topk_solver: TorchTopK) -> None:
    g = torch.Generator().manual_seed(3)
    theta, noise, dz = (
        torch.randn(2, 6, generator=g),
        torch.randn(4, 2, 6, generator=g),
        torch.randn(4, 2, 6, generator=g),
    )
    t = theta.clone().requires_grad_()
    z = imle(t, noise, topk_solver, lam=0.3, alpha=0.9, temperature=0.5, target_temperature=2.0)
    z.backward(dz)
    solve = functools.partial(map_solve, solver=topk_solver)
    manual = imle_vjp(dz, theta, noise, z, solve, lam=0.3, alpha=0.9, target_temperature=2.0)
    assert torch.equal(leaf_grad(t), manual)


def test_noise_samples_average_but_vmapped_samples_sum(topk_solver: TorchTopK) -> None:
    g = torch.Generator().manual_seed(4)
    theta, noise, w = (
        torch.randn(6, generator=g),
        torch.randn(5, 6, generator=g),
        torch.randn(5, 6, generator=g),
    )
    averaged = grad(_loss)(theta, noise, w, topk_solver)
    summed = grad(
        lambda t: vmap(_loss, in_dims=(None, 0, 0, None))(t, noise, w, topk_solver).sum()
    )(theta)
    assert torch.allclose(summed, 5 * averaged)


def test_compiled_training_step_equals_eager() -> None:
    solver = TorchTopK(2)
    g = torch.Generator().manual_seed(5)
    theta0, noise, y = (
        torch.randn(3, 6, generator=g),
        torch.randn(3, 4, 6, generator=g),
        torch.randn(3, 4, 6, generator=g),
    )

    def loss_fn(theta: torch.Tensor) -> torch.Tensor:
        per_sample = vmap(vmap(lambda t, n, yy: ((imle(t, n, solver, lam=0.5) - yy) ** 2).sum()))
        return per_sample(theta.unsqueeze(1).expand(3, 4, 6), noise, y).mean() + (theta**2).sum()

    def step(fn: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        theta = theta0.clone().requires_grad_()
        loss = fn(theta)
        loss.backward()
        return loss.detach(), leaf_grad(theta)

    eager = step(loss_fn)
    compiled = step(torch.compile(loss_fn, fullgraph=True))
    assert torch.allclose(compiled[0], eager[0]) and torch.allclose(compiled[1], eager[1])
    assert (eager[1] - 2 * theta0).abs().sum() > 0  # the I-MLE term contributes, not only theta**2


def test_forward_mode_raises(argmax_solver: CountingArgmax) -> None:
    with pytest.raises(NotImplementedError, match="jvp"):
        torch.func.jvp(lambda t: imle(t, None, argmax_solver), (torch.randn(5),), (torch.ones(5),))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_dtype_of_output_and_gradient(dtype: torch.dtype, topk_solver: TorchTopK) -> None:
    theta = torch.randn(3, 6).to(dtype).requires_grad_()
    z = imle(theta, torch.randn(2, 3, 6, dtype=dtype), topk_solver)
    z.sum().backward()
    assert z.dtype == dtype and theta.grad is not None and theta.grad.dtype == dtype


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lam": 0.0}, "lam"),
        ({"lam": float("nan")}, "lam"),
        ({"alpha": float("inf")}, "alpha"),
        ({"temperature": -1.0}, "temperature"),
        ({"target_temperature": float("nan")}, "target_temperature"),
    ],
)
def test_bad_hyperparameters(kwargs: dict, match: str, topk_solver: TorchTopK) -> None:
    with pytest.raises(ValueError, match=match):
        imle(torch.randn(2, 6), None, topk_solver, **kwargs)


def test_bad_noise(topk_solver: TorchTopK) -> None:
    theta = torch.randn(2, 6)
    with pytest.raises(ValueError, match=r"noise: expected shape \[\*samples, \*\(2, 6\)\]"):
        imle(theta, torch.randn(3, 5), topk_solver)
    with pytest.raises(ValueError, match="noise: must not require grad"):
        imle(theta, torch.randn(2, 6, requires_grad=True), topk_solver)
    with pytest.raises(TypeError, match="noise"):
        imle(theta, torch.ones(2, 6, dtype=torch.long), topk_solver)
    noise = torch.randn(4, 2, 6)
    noise[3, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="noise: contains NaN at sample 3, instance 1"):
        imle(theta, noise, topk_solver)
