"""`imle_fn.estimators.simple_estimator`: SIMPLE's exact-marginal gradient and its composition.

The gradient against `torch.func.jacrev` of the enumerated marginals (`tests.naive`); vmap, grad,
jacrev, ``.backward()`` and torch.compile; dtype, determinism and the error messages.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import grad, jacrev, vmap

from imle_fn.estimators.k_subset_sampling import topk_sample
from imle_fn.estimators.simple_estimator import simple, simple_vjp
from tests.naive import naive_topk_log_partition, naive_topk_marginals

F64 = torch.float64
INF = math.inf


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def uniforms(shape: tuple[int, ...], seed: int, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.rand(shape, generator=gen(seed), dtype=dtype)


# ---- SIMPLE's gradient ----------------------------------------------------------------------


def expected_grad(theta: torch.Tensor, dz: torch.Tensor, k: int, sample_dims: int) -> torch.Tensor:
    """mean over samples of J_mu^T dz_s, with J_mu from jacrev of the enumerated marginals."""
    flat = theta.reshape(-1, theta.shape[-1])
    jac = vmap(jacrev(lambda t: naive_topk_marginals(t, k)))(flat).reshape(
        *theta.shape, theta.shape[-1]
    )  # [*batch, n (output i), n (input j)]
    v = dz.mean(dim=tuple(range(sample_dims))) if sample_dims else dz
    return torch.einsum("...ij,...i->...j", jac, v)


@pytest.mark.parametrize(
    ("batch", "sample", "k"), [((), (), 2), ((3,), (4,), 3), ((2, 3), (2, 5), 5), ((4,), (3,), 7)]
)
def test_gradient_is_the_mean_over_samples_of_the_exact_marginals_vjp(
    batch: tuple[int, ...], sample: tuple[int, ...], k: int
) -> None:
    theta = torch.randn(*batch, 8, generator=gen(6), dtype=F64)
    if batch:
        theta.reshape(-1, 8)[0, 1] = -INF  # a masked item: zero gradient
    noise = uniforms((*sample, *batch, 8), seed=7)
    dz = torch.randn(*sample, *batch, 8, generator=gen(8), dtype=F64)
    t = theta.clone().requires_grad_()
    z = simple(t, noise, k)
    assert torch.equal(z, topk_sample(theta, noise, k))  # forward: the exact sampler
    (z * dz).sum().backward()
    expected = expected_grad(theta, dz, k, len(sample))
    assert t.grad is not None and expected.abs().sum() > 0
    torch.testing.assert_close(t.grad, expected)
    torch.testing.assert_close(simple_vjp(dz, theta, noise, k), expected)
    if batch:
        assert float(t.grad.reshape(-1, 8)[0, 1]) == 0.0


def test_jacrev_of_one_sample_is_the_jacobian_of_the_exact_marginals() -> None:
    theta = torch.tensor([0.4, -1.0, 0.0, 2.0, -INF, 0.7], dtype=F64)
    noise = uniforms((6,), seed=9)  # no sample dim: the backward is J_mu^T dz itself
    jac = jacrev(lambda t: simple(t, noise, 3))(theta)
    torch.testing.assert_close(jac, jacrev(lambda t: naive_topk_marginals(t, 3))(theta))
    hess = jacrev(lambda t: naive_topk_log_partition(t, 3).sum())  # grad = mu
    torch.testing.assert_close(jac, jacrev(hess)(theta))


def test_second_derivatives_refuse_through_the_wiring_and_the_vjp_function_has_them() -> None:
    """The library's contract: an estimator's gradient is first-order only (NotImplementedError when
    differentiated again, pointing to exact marginals). SIMPLE's VJP is smooth, and as the plain
    function `simple_vjp` it is differentiable: equal to differentiating the enumerated marginals'
    VJP (curvature of the surrogate, for whoever needs it)."""
    theta = torch.randn(7, generator=gen(10), dtype=F64)
    noise = uniforms((3, 7), seed=11)
    w = torch.randn(7, generator=gen(12), dtype=F64)

    def loss(t: torch.Tensor) -> torch.Tensor:
        return (simple(t, noise, 3) * w).sum(-1).mean()

    def exact(t: torch.Tensor) -> torch.Tensor:  # the same gradient, from the enumeration
        pullback = torch.func.vjp(lambda x: naive_topk_marginals(x, 3), t)[1]
        return pullback(w / 3)[0]  # dz_s = w / 3, averaged over the 3 samples

    torch.testing.assert_close(grad(loss)(theta), exact(theta))
    with pytest.raises(NotImplementedError, match="simple: second derivatives"):
        jacrev(grad(loss))(theta)
    dz = (w / 3).expand(3, 7)
    torch.testing.assert_close(
        jacrev(lambda t: simple_vjp(dz, t, noise, 3))(theta), jacrev(exact)(theta)
    )


# ---- composition, dtype, errors -------------------------------------------------------------


def test_vmap_equals_loop_and_every_transform_agrees() -> None:
    theta = torch.randn(4, 9, generator=gen(13), dtype=F64)
    noise = uniforms((5, 4, 9), seed=14)
    target = torch.randn(4, 9, generator=gen(15), dtype=F64)

    def loss(t: torch.Tensor, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ((simple(t, u, 3) - y) ** 2).sum(-1).mean(0).sum()

    t = theta.clone().requires_grad_()
    loss(t, noise, target).backward()
    assert t.grad is not None
    torch.testing.assert_close(grad(loss)(theta, noise, target), t.grad)
    per_row = vmap(grad(loss), in_dims=(0, 1, 0))(theta, noise, target)
    loop = torch.stack([grad(loss)(theta[b], noise[:, b], target[b]) for b in range(4)])
    torch.testing.assert_close(per_row, loop)
    torch.testing.assert_close(per_row, t.grad)
    z = vmap(lambda a, u: simple(a, u, 3), in_dims=(0, 1), out_dims=1)(theta, noise)
    assert torch.equal(z, simple(theta, noise, 3))
    nested = vmap(vmap(lambda a, u: topk_sample(a, u, 3)), in_dims=(None, 0))(theta, noise)
    assert torch.equal(nested, z)  # vmapped over samples (outer) and rows (inner)
    shared = vmap(lambda a: topk_sample(a, noise[:, 0], 3))(theta)  # one noise for every row
    assert torch.equal(shared, torch.stack([topk_sample(a, noise[:, 0], 3) for a in theta]))


def test_compile_equals_eager() -> None:
    theta = torch.randn(3, 10, generator=gen(16))
    noise = uniforms((4, 3, 10), seed=17, dtype=torch.float32)
    w = torch.randn(3, 10, generator=gen(18))

    def step(t: torch.Tensor) -> torch.Tensor:
        return (simple(t, noise, 4) * w).sum(-1).mean(0).sum()

    def per_row(t: torch.Tensor) -> torch.Tensor:
        return vmap(lambda a, u, b: (simple(a, u, 4) * b).sum(-1).mean(0), in_dims=(0, 1, 0))(
            t, noise, w
        ).sum()

    for fn in (step, per_row):
        eager, compiled = theta.clone().requires_grad_(), theta.clone().requires_grad_()
        fn(eager).backward()
        out = torch.compile(fn, backend="aot_eager", fullgraph=True)(compiled)
        out.backward()
        torch.testing.assert_close(out, fn(theta))
        assert eager.grad is not None and compiled.grad is not None
        torch.testing.assert_close(compiled.grad, eager.grad)


def test_dtype_and_device_in_equal_out_and_grads_reproduce() -> None:
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        theta = torch.randn(2, 6, generator=gen(19)).to(dtype).requires_grad_()
        z = simple(theta, uniforms((3, 2, 6), seed=20), 2)  # float64 uniforms: any float dtype
        assert z.dtype == dtype and z.device == theta.device
        (z * torch.arange(6.0)).sum().backward()
        assert theta.grad is not None and theta.grad.dtype == dtype
    grads = []
    for _ in range(2):
        t = torch.randn(2, 6, generator=gen(21)).requires_grad_()
        u = torch.rand((3, 2, 6), generator=gen(22))
        (simple(t, u, 2) * torch.arange(6.0)).sum().backward()
        grads.append(t.grad)
    assert grads[0] is not None and grads[1] is not None and torch.equal(grads[0], grads[1])


def test_bad_input_names_the_argument_and_the_instance() -> None:
    theta = torch.zeros(3, 5)
    noise = torch.rand(2, 3, 5, generator=gen(23))
    with pytest.raises(TypeError, match="noise: SIMPLE samples exactly"):
        simple(theta, None, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="noise: expected one uniform per item"):
        simple(theta, noise[..., :1], 2)
    with pytest.raises(ValueError, match=r"k: expected 0 <= k <= n = 5"):
        simple(theta, noise, 6)
    with pytest.raises(ValueError, match="noise: must not require grad"):
        simple(theta, noise.clone().requires_grad_(), 2)
    bad = noise.clone()
    bad[1, 2, 0] = 1.5
    with pytest.raises(
        ValueError, match=r"noise: expected uniforms in \[0, 1\].*instance 5 \(of 6\)"
    ):
        simple(theta, bad, 2)
    masked = theta.clone()
    masked[2, 1:] = -INF
    with pytest.raises(ValueError, match=r"theta: instance 2 \(of 3\) has 1 finite scores"):
        simple(masked, noise, 2)
    with pytest.raises(ValueError, match=r"theta: instance 2 \(of 3\) has 1 finite scores"):
        vmap(lambda t, u: simple(t, u, 2), in_dims=(0, 1))(masked, noise)  # checked under vmap
    with pytest.raises(ValueError, match=r"theta: instance 2 \(of 3\) has 1 finite scores"):
        torch.compile(lambda t: simple(t, noise, 2), backend="aot_eager", fullgraph=True)(masked)
    nan = theta.clone()
    nan[1, 3] = float("nan")
    with pytest.raises(ValueError, match="theta: contains NaN at instance 1"):
        topk_sample(nan, noise, 2)
    with pytest.raises(NotImplementedError):
        torch.func.jvp(lambda t: simple(t, noise, 2), (theta,), (torch.ones_like(theta),))
