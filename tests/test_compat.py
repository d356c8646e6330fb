"""imle_fn.compat reproduces uclnlp/torch-imle's semantics (its `imle` wrapper, forward and backward) exactly."""

from __future__ import annotations

from typing import cast

import numpy as np
import pytest
import torch
from torch.func import grad, vmap

from imle_fn.compat import (
    BaseNoiseDistribution,
    BaseTargetDistribution,
    SumOfGammaNoiseDistribution,
    TargetDistribution,
    imle,
)
from imle_fn.solvers.grid import GridShortestPath
from tests.helpers import leaf_grad, torch_dijkstra
from tests.naive import naive_reference

_GRID = GridShortestPath()


class RecordedNoise:
    """Any object with ``sample(shape)``: replays fixed noise and records the requested shapes."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.shapes: list[tuple[int, ...]] = []
        self.drawn: list[torch.Tensor] = []

    def sample(self, shape: torch.Size) -> torch.Tensor:
        self.shapes.append(tuple(shape))
        self.drawn.append(torch.randn(shape, generator=self.generator))
        return self.drawn[-1]


def test_forward_and_gradient_equal_the_naive_reference() -> None:
    b, s, h, w = 3, 4, 5, 6
    alpha, beta, tau_in, tau_t = 0.7, 3.0, 1.5, 0.5
    theta = torch.randn(b, h, w, generator=torch.Generator().manual_seed(0))
    dy = torch.randn(b * s, h, w, generator=torch.Generator().manual_seed(1))
    noise = RecordedNoise(seed=2)
    layer = imle(
        torch_dijkstra,
        target_distribution=TargetDistribution(alpha=alpha, beta=beta),
        # duck-typed on purpose: like the reference, any object with sample(shape) is accepted
        noise_distribution=cast(BaseNoiseDistribution, noise),
        nb_samples=s,
        input_noise_temperature=tau_in,
        target_noise_temperature=tau_t,
    )
    t = theta.clone().requires_grad_()
    z = layer(t)
    z.backward(dy)
    assert noise.shapes == [(b, s, h, w)]
    z_ref, grad_ref = naive_reference(
        theta, noise.drawn[0], dy, torch_dijkstra, alpha, beta, tau_in, tau_t
    )
    assert z.shape == (b * s, h, w)
    assert torch.equal(z, z_ref)
    assert torch.equal(leaf_grad(t), grad_ref)
    assert leaf_grad(t).abs().sum() > 0


def test_decorator_form_and_default_target() -> None:
    @imle(nb_samples=2)
    def solver(weights: torch.Tensor) -> torch.Tensor:
        return torch_dijkstra(weights)

    theta = -torch.ones(2, 4, 4)
    theta[:, 0, 1:] = -50.0
    z = solver(theta)
    assert z.shape == (4, 4, 4)
    assert torch.equal(z[0], z[1])  # no noise: both samples are the MAP state
    dy = torch.zeros_like(z)
    assert bool((z[:, 1, 1] == 1).all())  # the diagonal path uses cell (1, 1)
    dy[:, 1, 1] = 100.0  # penalise cell (1, 1): with the default beta = 1 the target avoids it
    t = theta.clone().requires_grad_()
    solver(t).backward(dy)
    assert torch.equal(leaf_grad(t)[:, 1, 1], torch.ones(2))  # z - z' = 1 there, no 1/beta factor


def test_sum_of_gamma_distribution_is_seeded() -> None:
    def run() -> torch.Tensor:
        dist = SumOfGammaNoiseDistribution(
            k=5.0, nb_iterations=10, generator=torch.Generator().manual_seed(3)
        )
        return dist.sample(torch.Size([2, 3, 4]))

    assert torch.equal(run(), run()) and run().shape == (2, 3, 4)


def test_non_contiguous_input_and_func_grad() -> None:
    layer = imle(
        torch_dijkstra,
        target_distribution=TargetDistribution(1.0, 10.0),
        noise_distribution=None,
        nb_samples=1,
    )
    theta = torch.randn(6, 5, 2).permute(2, 0, 1)  # [2, 6, 5] non-contiguous
    y = torch.zeros(2, 6, 5)
    y[:, :, 0] = 1
    y[:, -1, :] = 1

    def loss(t: torch.Tensor) -> torch.Tensor:
        z = layer(t)
        return (z * (1 - y) + (1 - z) * y).sum()

    t = theta.clone().requires_grad_()
    loss(t).backward()
    assert torch.equal(grad(loss)(theta), leaf_grad(t))


def test_vmap_over_extra_leading_dim_with_numpy_solver() -> None:
    layer = imle(torch_dijkstra, noise_distribution=None, nb_samples=1)
    theta = torch.randn(3, 2, 5, 5, generator=torch.Generator().manual_seed(4))
    out = vmap(layer)(theta)
    assert torch.equal(out, torch.stack([layer(t) for t in theta]))
    noisy = imle(
        torch_dijkstra,
        noise_distribution=SumOfGammaNoiseDistribution(
            k=5.0, generator=torch.Generator().manual_seed(5)
        ),
        nb_samples=2,
    )
    assert vmap(noisy, randomness="same")(theta).shape == (3, 4, 5, 5)


def test_errors() -> None:
    class Custom(BaseTargetDistribution):
        def params(self, theta: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
            return theta

    with pytest.raises(TypeError, match="target_distribution"):
        imle(torch_dijkstra, target_distribution=Custom())(torch.randn(1, 3, 3))
    with pytest.raises(ValueError, match="nb_samples"):
        imle(torch_dijkstra, nb_samples=0)
    with pytest.raises(TypeError, match=r"functools\.partial"):
        imle(torch_dijkstra)(torch.randn(1, 3, 3), 5)
    with pytest.raises(ValueError, match="input"):
        imle(torch_dijkstra)(torch.tensor(1.0))


def test_matches_numpy_dtype_roundtrip() -> None:
    layer = imle(torch_dijkstra)
    theta = torch.randn(2, 4, 4, dtype=torch.float64)
    z = layer(theta)
    assert z.dtype == torch.float64
    assert np.array_equal(z.numpy(), _GRID(theta.numpy()))
