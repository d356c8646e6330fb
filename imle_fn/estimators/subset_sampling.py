"""SIMPLE (Ahmed et al., ICLR 2023): exact k-subset samples forward, exact-marginal gradients backward.

Forward: ``z ~ p(z; theta) = exp(<theta, z> - A(theta))`` over ``z in {0, 1}^n`` with ``sum z = k``,
an EXACT sample of the k-subset family (not Perturb-and-MAP). Backward: the straight-through-like
estimator of the paper, ``dtheta = J_mu(theta)^T dz`` with ``mu = E[z]`` the exact marginals, i.e. the
backward treats the sample as if it were ``mu(theta)``; computed in closed form in O(n k)
(`imle_fn.estimators.k_subset.topk_marginals_vjp`). No MAP solver is called.

**Randomness is data.** The caller draws ``noise``, uniforms in ``[0, 1]`` shaped
``[S, *theta.shape]`` (``torch.rand((S, *theta.shape), generator=g)``), outside any transform, as for
every other estimator; `simple` is then a deterministic function of ``(theta, noise)``, so it
composes with `torch.func.vmap` (whose default randomness mode refuses random ops),
`torch.compile(fullgraph=True)` (where a generator argument would break the graph) and ``jacrev``,
and the same ``noise`` reproduces the same sample bit for bit.

**Sampling.** Top-down through the tree of `imle_fn.estimators.k_subset.inside_tables`: the root
holds ``k`` ones; a node holding ``c`` gives ``a`` to its left child with probability
``exp(L[a] + R[c - a] - N[c])`` (inverse CDF of one uniform), the rest to its right child; the
leaves hold the sample. Each split is drawn from its exact conditional, so the sample is exact (up to
floating-point rounding of the probabilities: a split whose probability lies within 2 machine
epsilons of either end of its CDF is never drawn), exactly k-hot, never picks a masked (``-inf``)
item, and takes ``log2(n)`` vectorised steps. The uniform of the node whose children split at item ``i``
(its left child ends at ``i``) is ``noise[..., i]``; ``noise[..., n - 1]`` is unused.

The sampler is the custom op ``imle_fn::topk_sample`` (with a fake and a vmap rule that folds
every vmapped dim into one call), so its input checks run on real values under vmap and compile.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal, cast

import torch

from imle_fn.core.checks import (
    check_estimator_inputs,
    check_floating_tensor,
    check_k_subset_scores,
    check_unit_interval,
)
from imle_fn.core.wiring import Estimator, Saved, Solve, estimate, num_sample_dims, reduce_to_theta
from imle_fn.estimators.k_subset import (
    flat_instances,
    inside_tables,
    is_plain,
    leaves,
    subset_size,
    topk_marginals_vjp,
)

__all__ = ["SIMPLE", "simple", "simple_vjp", "topk_sample"]


def _check_noise_shape(theta: torch.Tensor, noise: object) -> torch.Tensor:
    if noise is None:
        raise TypeError(
            "noise: SIMPLE samples exactly and needs uniforms in [0, 1] shaped [S, *theta.shape],"
            " e.g. torch.rand((S, *theta.shape), generator=g); got None"
        )
    check_estimator_inputs(theta, noise)
    noise = cast(torch.Tensor, noise)  # checked above
    if noise.shape[-1] != theta.shape[-1]:
        raise ValueError(
            f"noise: expected one uniform per item, last dim n = {theta.shape[-1]}, got shape"
            f" {tuple(noise.shape)} (it must not broadcast over the items)"
        )
    return noise


def _sample(theta: torch.Tensor, noise: torch.Tensor, k: int) -> torch.Tensor:
    """The sampler on plain tensors: ``theta [*batch, n]``, ``noise [*sample, *batch', n]``."""
    n = theta.shape[-1]
    ns = num_sample_dims(theta, noise)
    sample_shape, batch = noise.shape[:ns], theta.shape[:-1]
    flat = flat_instances(theta.detach())  # [N, n]
    num, s = flat.shape[0], sample_shape.numel()
    uniforms = noise.detach().expand(*sample_shape, *theta.shape).reshape(s, num, n)  # [S, N, n]
    if num and n:
        check_k_subset_scores("theta", flat, k)
        check_unit_interval("noise", uniforms.reshape(s * num, n))
    out_shape = (*sample_shape, *batch, n)
    if num * s == 0:
        return theta.new_zeros(out_shape)
    with torch.no_grad():
        leaf = leaves(flat, k)
        levels = inside_tables(leaf)
        size = levels[0][0].shape[-2]  # n rounded up to a power of two
        # Uniforms squeezed into [delta, 1 - delta], delta = 2 eps: the ends 0 and 1 (torch.rand
        # returns 0 once in 2^24 float32 draws) never select a split of vanishing probability, and
        # u * total stays below the total after rounding. The cost: at either end of a split's CDF,
        # outcomes with less than 2 eps of probability are never drawn (a bias of rounding's order).
        delta = 2 * torch.finfo(leaf.values.dtype).eps
        u = uniforms.to(leaf.values.dtype) * (1 - 2 * delta) + delta
        u = torch.nn.functional.pad(u, (0, size - n))  # [S, N, n']
        counts = torch.full((s, num, 1), leaf.k, dtype=torch.long, device=theta.device)
        for h in range(len(levels) - 1, 0, -1):
            counts = _split(
                levels[h - 1][0], levels[h][0], counts, u[..., (1 << (h - 1)) - 1 :: 1 << h]
            )
        z = counts[..., :n]  # [S, N, n]: the tree's leaves (the items left out, in the complement)
        if leaf.complement:
            z = 1 - z
    return z.to(theta.dtype).reshape(out_shape)


def _split(
    children: torch.Tensor, parents: torch.Tensor, counts: torch.Tensor, u: torch.Tensor
) -> torch.Tensor:
    """Split each node's count between its children: ``counts [S, N, m] -> [S, N, 2m]``.

    ``children [N, 2m, d + 1]``, ``parents [N, m, top + 1]`` inside log-coefficients; ``u [S, N, m]``.
    """
    degree = children.shape[-1] - 1
    left, right = children[:, 0::2], children[:, 1::2]  # [N, m, d + 1]
    a = torch.arange(degree + 1, device=counts.device)
    rest = counts[..., None] - a  # [S, N, m, d + 1]: the right child's share c - a
    valid = (rest >= 0) & (rest <= degree)
    shape = (*counts.shape, degree + 1)
    log_w = (
        left.expand(shape)
        + right.expand(shape).gather(-1, rest.clamp(0, degree))
        - parents.expand(*counts.shape, parents.shape[-1]).gather(-1, counts[..., None])
    )
    w = torch.exp(log_w).masked_fill(~valid, 0.0)  # [S, N, m, d + 1] split probabilities
    cdf = w.cumsum(-1)
    a_new = (cdf <= u[..., None] * cdf[..., -1:]).sum(-1)  # inverse CDF
    positive = w > 0  # only splits of positive probability: clamp rounding at either end
    first = positive.to(torch.int8).argmax(-1)
    last = degree - positive.flip(-1).to(torch.int8).argmax(-1)
    a_new = torch.minimum(torch.maximum(a_new, first), last)
    return torch.stack([a_new, counts - a_new], -1).flatten(-2)  # [S, N, 2m]


@torch.library.custom_op("imle_fn::topk_sample", mutates_args=())
def _sample_op(theta: torch.Tensor, noise: torch.Tensor, k: int) -> torch.Tensor:
    return _sample(theta, noise, k)


@_sample_op.register_fake
def _sample_fake(theta: torch.Tensor, noise: torch.Tensor, k: int) -> torch.Tensor:
    ns = num_sample_dims(theta, noise)
    return theta.new_empty((*noise.shape[:ns], *theta.shape))


@_sample_op.register_vmap
def _sample_vmap(
    info: Any, in_dims: tuple[int | None, ...], theta: torch.Tensor, noise: torch.Tensor, k: int
) -> tuple[torch.Tensor, int]:
    theta_dim, noise_dim = in_dims[0], in_dims[1]
    theta_l = theta.ndim - (theta_dim is not None)  # logical (per-slice) dims
    theta = (
        theta.movedim(theta_dim, 0)
        if theta_dim is not None
        else theta.expand(info.batch_size, *theta.shape)  # [V, *theta]
    )
    noise = noise.movedim(noise_dim, 0) if noise_dim is not None else noise.unsqueeze(0)
    noise_l = noise.ndim - 1
    ns = max(noise_l - theta_l, 0)
    for _ in range(theta_l - noise_l):  # left-pad so that the trailing dims line up
        noise = noise.unsqueeze(1)
    noise = noise.movedim(0, ns)  # [*sample, V, *rest]
    return torch.ops.imle_fn.topk_sample(theta, noise, k), ns


def _sample_any(theta: torch.Tensor, noise: torch.Tensor, k: int) -> torch.Tensor:
    """The sampler on detached inputs: directly for plain tensors, else through the custom op."""
    theta, noise = theta.detach(), noise.detach()
    if is_plain(theta) and is_plain(noise):
        return _sample(theta, noise, k)
    return torch.ops.imle_fn.topk_sample(theta, noise, k)


def topk_sample(theta: torch.Tensor, noise: torch.Tensor, k: int) -> torch.Tensor:
    """Exact samples of the k-subset family ``p(z; theta) ~ exp(<theta, z>)``, ``sum z = k``.

    Not differentiable (use `simple` for gradients). Deterministic in ``(theta, noise)``; composes
    with `torch.func.vmap` and `torch.compile`. See the module docstring for the algorithm.

    Args:
        theta: ``[*batch, n]`` scores; ``-inf`` masks an item (never sampled).
        noise: ``[*sample, *batch, n]`` uniforms in ``[0, 1]`` (trailing batch dims may broadcast,
            the last may not), e.g. ``torch.rand((S, *theta.shape), generator=g)``.
        k: subset size, ``0 <= k <= n``.

    Returns:
        ``[*sample, *batch, n]`` exactly k-hot samples, ``theta``'s dtype and device.

    Raises:
        TypeError: ``theta`` or ``noise`` is not a floating-point tensor, or ``k`` not an int.
        ValueError: ``k`` outside ``[0, n]``; ``noise`` of the wrong shape or device, requiring
            grad, or with a value outside ``[0, 1]``; a NaN or ``+inf`` score, or fewer than ``k``
            finite scores (the messages name the instance).

    Example:
        >>> import torch, imle_fn
        >>> g = torch.Generator().manual_seed(0)
        >>> theta = torch.tensor([2.0, 0.0, float("-inf"), 1.0])
        >>> z = imle_fn.topk_sample(theta, torch.rand(1000, 4, generator=g), 2)  # [1000, 4]
        >>> bool((z.sum(-1) == 2).all()), z[:, 2].sum().item()  # k-hot, masked item never chosen
        (True, 0.0)

    References:
        Ahmed, Zeng, Niepert, Van den Broeck, "SIMPLE: A Gradient Estimator for k-Subset
        Sampling", ICLR 2023 (arXiv:2210.01941).
    """
    check_floating_tensor("theta", theta)
    k = subset_size(k, theta)
    return _sample_any(theta, _check_noise_shape(theta, noise), k)


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
        TypeError: ``theta`` or ``dz`` is not a floating-point tensor, or ``k`` not an int.
        ValueError: ``dz`` does not reduce to ``theta``'s shape, ``k`` outside ``[0, n]``.

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
        z = _sample_any(theta, noise, self.k)
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
            grad, or with a value outside ``[0, 1]``; a NaN or ``+inf`` score, or fewer than ``k``
            finite scores (the messages name the instance).
        NotImplementedError: forward-mode AD (``torch.func.jvp``, ``jacfwd``) through the result.

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
    noise = _check_noise_shape(theta, noise)
    return estimate(SIMPLE(k), theta, noise, _NO_SOLVER)
