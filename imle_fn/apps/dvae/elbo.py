"""The discrete VAE's objective: Bernoulli reconstruction and the EXACT KL of a k-subset code.

Each latent block is a k-subset of ``n`` items with the exponential-family law
``q(z; eta) = exp(<eta, z> - A(eta))`` over ``z in {0, 1}^n``, ``sum z = k`` (``A`` the log-partition);
the prior is uniform over the ``C(n, k)`` subsets. Then, exactly,

    KL(q || uniform) = sum_z q(z) (log q(z) + log C(n, k)) = <eta, mu(eta)> - A(eta) + log C(n, k),

with ``mu = E_q[z]`` the marginals. `kl_to_uniform` computes it with the library's exact k-subset
functions `imle_fn.topk_marginals` and `imle_fn.topk_log_partition` (a log-space dynamic programme in
O(n k), `imle_fn.estimators.k_subset`), and is differentiable through them.

The negative ELBO of an image ``x`` with code parameters ``eta`` (``[m, n]``, ``m`` blocks) is

    NELBO(x) = E_{z ~ q}[-log p(x | z)] + sum_blocks KL(q(.; eta_b) || uniform)

in nats; the reconstruction term is estimated with sampled codes (`bernoulli_nll`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from imle_fn.core.checks import check_int
from imle_fn.estimators.k_subset import topk_log_partition, topk_marginals

__all__ = ["bernoulli_nll", "kl_to_uniform", "log_comb"]


def log_comb(n: int, k: int) -> float:
    """``log C(n, k)``, the log-number of k-subsets of ``n`` items (0 <= k <= n).

    Raises:
        TypeError: ``n`` or ``k`` is not an int.
        ValueError: ``n < 0`` or ``k`` outside ``[0, n]``.
    """
    n = check_int("n", n, minimum=0)
    k = check_int("k", k, minimum=0, maximum=n)
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _kl_rows(eta: torch.Tensor, k: int) -> torch.Tensor:
    n = eta.shape[-1]
    mu = topk_marginals(eta, k)  # [rows, n]
    return (eta * mu).sum(-1) - topk_log_partition(eta, k) + log_comb(n, k)


def kl_to_uniform(eta: torch.Tensor, k: int) -> torch.Tensor:
    """Exact ``KL(q(.; eta) || uniform)`` for k-subset blocks, in nats.

    Args:
        eta: ``[*batch, n]`` natural parameters of each block's k-subset distribution.
        k: subset size, ``0 <= k <= n``.

    Returns:
        ``[*batch]`` KL values (>= 0 up to rounding), differentiable with respect to ``eta``.

    Raises:
        TypeError: ``eta`` is not a floating-point tensor, or ``k`` is not an int.
        ValueError: ``eta`` has no dims, or ``k`` is outside ``[0, n]``.

    Example:
        >>> import torch
        >>> kl_to_uniform(torch.zeros(3, 6), 2)  # uniform scores: q is the prior
        tensor([0., 0., 0.])

    References:
        Niepert, Minervini, Franceschi, "Implicit MLE: Backpropagating Through Discrete Exponential
        Family Distributions", NeurIPS 2021 (arXiv:2106.01798), Sec. 2 (the k-subset family).
    """
    if not isinstance(eta, torch.Tensor) or not eta.is_floating_point():
        raise TypeError(f"eta: expected a floating-point tensor, got {type(eta).__name__}")
    if eta.ndim < 1:
        raise ValueError(f"eta: expected at least 1 dim [*batch, n], got shape {tuple(eta.shape)}")
    n = eta.shape[-1]
    k = check_int("k", k, minimum=0, maximum=n)
    return _kl_rows(eta.reshape(eta.shape[:-1].numel(), n), k).reshape(eta.shape[:-1])


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``-log p(x | z)`` of a factorised Bernoulli decoder, summed over pixels, in nats.

    Args:
        logits: ``[*sample, B, D]`` decoder logits (``p(x_d = 1) = sigmoid(logit_d)``).
        x: ``[B, D]`` binary images (broadcast over the sample dims).

    Returns:
        ``[*sample, B]`` negative log-likelihoods.

    Raises:
        ValueError: the last dims of ``logits`` and ``x`` differ.
    """
    if logits.shape[-2:] != x.shape:
        raise ValueError(
            f"logits: expected [*sample, {x.shape[0]}, {x.shape[1]}], got {tuple(logits.shape)}"
        )
    target = x.expand_as(logits)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)
