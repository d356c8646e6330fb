"""Exact samples of the k-subset family: `topk_sample`, the forward of SIMPLE (`imle_fn.simple`).

``z ~ p(z; theta) = exp(<theta, z> - A(theta))`` over ``z in {0, 1}^n`` with ``sum z = k``, drawn
top-down through the tree of `imle_fn.estimators.k_subset.inside_tables`: the root holds ``k`` ones;
a node holding ``c`` gives ``a`` to its left child with probability ``exp(L[a] + R[c - a] - N[c])``
(inverse CDF of one uniform), the rest to its right child; the leaves hold the sample (for
``k > n / 2`` the tree counts the items left out, and the sample is its complement). Each split is
drawn from its exact conditional, so the sample is exact (up to floating-point rounding of the
probabilities: a split whose probability lies within 2 machine epsilons of either end of its CDF is
never drawn), exactly k-hot, never picks a masked (``-inf``) item, and takes ``log2(n)`` vectorised
steps.

**Randomness is data.** The caller draws ``noise``, uniforms in ``[0, 1]`` shaped
``[S, *theta.shape]`` (``torch.rand((S, *theta.shape), generator=g)``), outside any transform, as for
every estimator's noise: the sampler is then a deterministic function of ``(theta, noise)``, so it
composes with `torch.func.vmap` (whose default randomness mode refuses random ops) and
`torch.compile(fullgraph=True)` (where a generator argument would break the graph), and the same
``noise`` reproduces the same sample bit for bit. The uniform of the node whose children split at
item ``i`` (its left child ends at item ``i``) is ``noise[..., i]``; ``noise[..., n - 1]`` is unused.

The sampler is the custom op ``imle_fn::topk_sample`` (with a fake and a vmap rule that folds every
vmapped dim into one call), so its input checks run on real values under vmap and compile.
"""

from __future__ import annotations

from typing import Any, cast

import torch

from imle_fn.core.checks import (
    check_estimator_inputs,
    check_floating_tensor,
    check_k_subset_scores,
    check_unit_interval,
)
from imle_fn.core.wiring import num_sample_dims
from imle_fn.estimators.k_subset import (
    flat_instances,
    inside_tables,
    is_plain,
    leaves,
    subset_size,
)

__all__ = ["check_noise", "sample_detached", "topk_sample"]


def check_noise(theta: torch.Tensor, noise: object) -> torch.Tensor:
    """``noise`` checked as SIMPLE's uniforms for ``theta: [*batch, n]``: ``[*sample, *batch, n]``."""
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


def sample_detached(theta: torch.Tensor, noise: torch.Tensor, k: int) -> torch.Tensor:
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
    return sample_detached(theta, check_noise(theta, noise), k)
