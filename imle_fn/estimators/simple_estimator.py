"""SIMPLE (Ahmed et al., ICLR 2023): exact k-subset samples forward, exact-marginal gradients backward.

Forward: ``z ~ p(z; theta) = exp(<theta, z> - A(theta))`` over ``z in {0, 1}^n`` with ``sum z = k``,
an EXACT sample of the k-subset family (not Perturb-and-MAP; `imle_fn.estimators.k_subset_sampling`).
Backward: the straight-through-like estimator of the paper, ``dtheta = J_mu(theta)^T dz`` with
``mu = E[z]`` the exact marginals, i.e. the backward treats the sample as if it were ``mu(theta)``;
computed in closed form in O(n k) (`imle_fn.estimators.k_subset.topk_marginals_vjp`). No MAP solver
is called, so `simple` takes ``(theta, noise, k)`` where the other estimators take a solver.

**Why uniforms and not a generator.** The caller draws ``noise`` (uniforms in ``[0, 1]``,
``[S, *theta.shape]``) outside any transform, as for every other estimator: `simple` is then a pure
function of ``(theta, noise)``, which composes with `torch.func.vmap` (whose default randomness
mode refuses random ops), `torch.compile(fullgraph=True)` (a generator argument breaks the graph),
``jacrev`` and ``.backward()``, and reproduces bit for bit from the same ``noise``. A
``simple(theta, k, *, generator)`` would have to draw inside the transformed function.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import torch

from imle_fn.core.checks import check_floating_tensor
from imle_fn.core.wiring import Estimator, Saved, Solve, estimate, reduce_to_theta
from imle_fn.estimators.k_subset import subset_size, topk_marginals_vjp
from imle_fn.estimators.k_subset_sampling import check_noise, sample_detached

__all__ = ["SIMPLE", "simple", "simple_vjp"]


def simple_vjp(
    dz: torch.Tensor, theta: torch.Tensor, noise: torch.Tensor | None, k: int
) -> torch.Tensor:
    """SIMPLE's VJP: ``dtheta = J_mu(theta)^T mean_s dz_s`` (exact marginals, no solver call).

    The VJP is linear in ``dz``, so the mean over samples is taken first and one closed-form VJP of
    the marginals follows (`imle_fn.estimators.k_subset.topk_marginals_vjp`).

    Args:
        dz: ``[*sample, *theta.shape]`` cotangent of the samples.
        theta: ``[*batch, n]`` scores.
        noise: the forward's noise (only its number of sample dims matters), or None for no
            sample dims.
        k: subset size.

    Returns:
        ``theta.shape`` gradient estimate, differentiable in ``theta``.

    Raises:
        TypeError: ``theta`` is not a floating-point tensor, or ``k`` not an int.
        ValueError: ``k`` outside ``[0, n]``; eagerly, a NaN or ``+inf`` score or fewer than ``k``
            finite scores.
        RuntimeError: ``dz`` does not reduce to ``theta``'s shape (torch's ``sum_to_size``).

    References:
        Ahmed, Zeng, Niepert, Van den Broeck, "SIMPLE: A Gradient Estimator for k-Subset
        Sampling", ICLR 2023 (arXiv:2210.01941).
    """
    v = reduce_to_theta(dz, theta, noise)  # [*theta.shape]: the mean over samples
    return topk_marginals_vjp(v, theta, k)


@dataclasses.dataclass(frozen=True)
class SIMPLE(Estimator):
    """SIMPLE's hyper-parameter: the subset size ``k`` (see `simple`)."""

    name: ClassVar[str] = "simple"
    k: int = 1

    def forward(
        self, theta: torch.Tensor, noise: torch.Tensor | None, solve: Solve
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if noise is None:
            raise TypeError("noise: SIMPLE needs uniforms, got None")
        z = sample_detached(theta, noise, self.k)
        return z, z.new_empty(0)

    def vjp(self, dout: torch.Tensor, saved: Saved) -> torch.Tensor:
        return simple_vjp(dout, saved.theta, saved.noise, self.k)


@dataclasses.dataclass(frozen=True)
class _NoSolver:
    """The solver slot of `imle_fn.core.estimate`, for an estimator that calls no solver."""

    event_ndim: int = 1
    backend: Literal["torch"] = "torch"

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("SIMPLE calls no MAP solver")


_NO_SOLVER = _NoSolver()


def simple(theta: torch.Tensor, noise: torch.Tensor, k: int) -> torch.Tensor:
    """Sample k-subsets exactly; backpropagate the gradient of the exact marginals (SIMPLE).

    Forward: ``z ~ p(z; theta) ~ exp(<theta, z>)`` over ``z in {0, 1}^n`` with ``sum z = k``, one
    exact sample per uniform draw in ``noise`` (`topk_sample`). Backward: `simple_vjp`,
    ``dtheta = mean over samples of J_mu(theta)^T dz`` with ``mu = topk_marginals(theta, k)``, in
    O(n k). Same sample convention as `imle_fn.imle`: a leading sample dim on ``noise`` is AVERAGED
    in the gradient, a sample axis made with vmap is summed. Composes with `torch.func` (vmap, grad,
    vjp, jacrev, ``vmap(grad)``), ``.backward()`` and ``torch.compile(fullgraph=True)``;
    forward-mode AD raises.

    ``k`` is an int hyper-parameter in the place where other estimators take a solver (one ``k``
    for the whole batch; mask items with ``-inf`` to vary the choice per instance). The noise is
    data, drawn outside: the caller passes uniforms instead of a generator so that `simple` stays a
    pure function of its inputs (see the module docstring).

    Args:
        theta: ``[*batch, n]`` scores; ``-inf`` masks an item (never sampled, zero gradient).
        noise: ``[*sample, *batch, n]`` uniforms in ``[0, 1]`` (trailing batch dims may broadcast,
            the last may not), e.g. ``torch.rand((S, *theta.shape), generator=g)``.
        k: subset size, ``0 <= k <= n``.

    Returns:
        ``[*sample, *batch, n]`` exactly k-hot samples, ``theta``'s dtype and device.

    Raises:
        TypeError: ``theta`` or ``noise`` is not a floating-point tensor (``noise=None`` included),
            or ``k`` not an int.
        ValueError: ``k`` outside ``[0, n]``; ``noise`` of the wrong shape or device, requiring
            grad, with zero samples or with a value outside ``[0, 1]``; a meta ``theta``; a NaN or
            ``+inf`` score, or fewer than ``k`` finite scores (the messages name the instance).
        NotImplementedError: forward-mode AD (``torch.func.jvp``, ``jacfwd``) through the result,
            second derivatives (differentiating its gradient again: the library's estimators are
            first-order; `simple_vjp` itself is differentiable) and legacy batched gradients
            (``is_grads_batched=True``; use ``torch.func.jacrev``).

    Example:
        >>> import torch, imle_fn
        >>> theta = torch.tensor([[1.0, 0.0, -1.0, 2.0]], requires_grad=True)
        >>> noise = torch.rand(100, 1, 4, generator=torch.Generator().manual_seed(0))
        >>> z = imle_fn.simple(theta, noise, 2)  # [100, 1, 4], two ones per row
        >>> w = torch.tensor([1.0, 2.0, 3.0, 4.0])
        >>> (z * w).sum().backward()  # dz = w for each sample; their mean is w
        >>> torch.allclose(theta.grad, imle_fn.topk_marginals_vjp(w[None], theta.detach(), 2))
        True

    References:
        Ahmed, Zeng, Niepert, Van den Broeck, "SIMPLE: A Gradient Estimator for k-Subset
        Sampling", ICLR 2023 (arXiv:2210.01941).
    """
    check_floating_tensor("theta", theta)
    k = subset_size(k, theta)
    noise = check_noise(theta, noise)
    return estimate(SIMPLE(k), theta, noise, _NO_SOLVER)
