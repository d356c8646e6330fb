"""The exact k-subset exponential family in log space: log-partition, marginals, their VJP.

States ``z in {0, 1}^n`` with exactly ``k`` ones, ``p(z; theta) = exp(<theta, z> - A(theta))``;
``A(theta) = log e_k(exp(theta))`` is the log of the k-th elementary symmetric polynomial of the
weights ``w_i = exp(theta_i)``, i.e. the coefficient of ``x^k`` in ``prod_i (1 + w_i x)``. A score of
``-inf`` masks an item (``w_i = 0``: never chosen).

**The dynamic programme.** The product is formed by a balanced binary tree over the items (padded to
a power of two with items ``1``): a leaf holds the log-coefficients ``(l0, l1)`` of its item's
polynomial (``(0, theta_i)``); an inner node the log-coefficients, truncated at degree ``k``, of its
children's product, ``N[c] = logsumexp_a (L[a] + R[c - a])`` ("inside" values). ``A(theta)`` is the
root's degree-``k`` entry. The "outside" values ``O[c] = log e_{k-c}(the items outside the node)``
run back down (``O_L[a] = logsumexp_b (R[b] + O_N[a + b])``), and the marginal of item ``i`` is
``mu_i = sigmoid(l1 + O_i[1] - l0 - O_i[0])``. For ``k > n / 2`` the tree counts the ``n - k``
items left out instead (`leaves`), so work and memory are O(n min(k, n - k)), in ``log2(n)``
vectorised steps rather than ``n`` sequential ones: a short sequence of batched torch ops that runs
on any device and composes with `torch.func` and `torch.compile`.

**Derivatives.** `topk_log_partition` and `topk_marginals` are plain torch ops, differentiable to any
order (the log-sum-exp used here has NaN-free derivatives on all-``-inf`` slices, where
``torch.logsumexp``'s are NaN). The VJP of the marginals, ``J_mu(theta)^T v`` with ``J_mu = Cov(z)``
symmetric, is computed in closed form by `topk_marginals_vjp`: forward-mode tangents carried through
the same inside-outside passes (each tangent a conditional expectation of ``<v, z>``, so no signs
and no cancellations in log space).

**Accuracy.** Exact up to floating-point rounding: scores are shifted to a largest finite value of 0
and the tree adds ``log2(n)`` levels of rounding. Computations run in ``theta``'s dtype (float16 and
bfloat16 in float32). In float32 the marginals' absolute error is about ``1e-7`` times the size of
the shifted log-partition ``|A(theta - max theta)|`` of the side the tree counts (tests/estimators/
test_k_subset.py pins twice that).
"""

from __future__ import annotations

from typing import NamedTuple, cast

import torch

from imle_fn.core.checks import check_floating_tensor, check_int, check_k_subset_scores
from imle_fn.core.solving import is_plain as core_is_plain

__all__ = [
    "Leaves",
    "flat_instances",
    "inside_tables",
    "is_plain",
    "leaves",
    "subset_size",
    "topk_log_partition",
    "topk_marginals",
    "topk_marginals_vjp",
]

NEG_INF = float("-inf")


def subset_size(k: object, theta: torch.Tensor) -> int:
    """``k`` as an int in ``[0, n]`` for scores ``theta: [*batch, n]`` (TypeError / ValueError)."""
    if theta.ndim < 1:
        raise ValueError(
            f"theta: expected at least 1 dim [*batch, n], got shape {tuple(theta.shape)}"
        )
    n = theta.shape[-1]
    k = check_int("k", k, minimum=0)
    if k > n:
        raise ValueError(f"k: expected 0 <= k <= n = {n} (the number of items), got {k}")
    return k


def flat_instances(x: torch.Tensor) -> torch.Tensor:
    """``[*batch, n] -> [N, n]`` (also for ``n = 0``, where ``reshape(-1, n)`` is ambiguous)."""
    return x.reshape(x.shape[:-1].numel(), x.shape[-1])


def _work_dtype(theta: torch.Tensor) -> torch.dtype:
    return theta.dtype if theta.dtype in (torch.float32, torch.float64) else torch.float32


def is_plain(theta: torch.Tensor) -> bool:
    """An ordinary eager tensor whose values may be inspected: `imle_fn.core.solving.is_plain`,
    and not on the meta device."""
    return theta.device.type != "meta" and core_is_plain(theta)


class Leaves(NamedTuple):
    """The tree's leaves for scores ``theta: [N, n]`` and the problem the tree solves.

    Attributes:
        values: ``[N, n, 2]`` log-coefficients ``(l0, l1)`` of each item's polynomial ``e^l0 + e^l1 x``.
        tangents: ``[N, n, 2]`` their forward-mode tangents along ``v``, or None.
        k: the degree whose coefficient is wanted (``k``, or ``n - k`` for the complement).
        complement: True when the tree counts the items left OUT (``k > n / 2``).
        offset: ``[N]`` the log-partition is ``root[k] + offset`` (the undone shifts), detached
            except for ``sum theta`` in the complement.
    """

    values: torch.Tensor
    tangents: torch.Tensor | None
    k: int
    complement: bool
    offset: torch.Tensor


def leaves(theta: torch.Tensor, k: int, v: torch.Tensor | None = None) -> Leaves:
    """The leaves of the k-subset tree for ``theta: [N, n]`` (``v``: ``[N, n]`` tangent or None).

    For ``k <= n / 2`` item ``i`` is ``1 + exp(theta_i - m) x`` (``m`` the largest finite score,
    detached); a masked item is ``1``. For ``k > n / 2`` the tree counts the ``n - k`` items left
    out, ``e_k(w) = (prod_F w_i) [x^(n-k)] prod_F (1 + x / w_i) prod_masked x`` over the finite items
    ``F``: item ``i`` is ``1 + exp(m' - theta_i) x`` (``m' = -min_F theta``), a masked item is ``x``
    (always left out). The degree cap is then ``min(k, n - k)``: work and memory O(n min(k, n - k)),
    and the tables' log-values stay small (float32 keeps its accuracy for ``k`` near ``n``).
    """
    theta = theta.to(_work_dtype(theta))
    n = theta.shape[-1]
    finite = torch.isfinite(theta)
    complement = 2 * k > n
    scores = -theta if complement else theta
    masked = torch.full_like(theta, NEG_INF)
    shift = torch.where(finite, scores, masked).detach().amax(-1) if n else theta.new_zeros(1)
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))  # [N] (or [1])
    shift = shift.expand(theta.shape[:-1])
    zeros = torch.zeros_like(theta)
    tangent = None
    if not complement:
        values = torch.stack([zeros, theta - shift[..., None]], -1)
        offset = k * shift
        if v is not None:
            tangent = torch.stack([zeros, v.to(theta.dtype)], -1)
    else:
        l1 = torch.where(finite, scores - shift[..., None], zeros)
        values = torch.stack([torch.where(finite, zeros, masked), l1], -1)
        kept = (finite.sum(-1) - k).to(theta.dtype)  # finite items left out
        offset = torch.where(finite, theta, zeros).sum(-1) + kept * shift
        if v is not None:
            tangent = torch.stack([zeros, torch.where(finite, -v.to(theta.dtype), zeros)], -1)
    return Leaves(values, tangent, n - k if complement else k, complement, offset)


def _lse(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logsumexp(x, dim), exp(x - shift), sum)`` with the sum kept in ``dim``; an all ``-inf``
    slice gives ``-inf`` (sum 1, terms 0), and every derivative stays finite where
    torch.logsumexp's are NaN."""
    shift = torch.nan_to_num(x.detach().amax(dim, keepdim=True), neginf=0.0)  # -inf - -inf: NaN
    e = torch.exp(x - shift)
    total = e.sum(dim, keepdim=True)
    safe = total.clamp_min(1.0)  # a slice with a finite entry sums to >= 1 (its largest term is 1)
    out = (torch.log(safe) + shift).masked_fill(total == 0, NEG_INF)
    return out.squeeze(dim), e, safe


def _mean(
    weights: tuple[torch.Tensor, torch.Tensor], tangents: torch.Tensor, dim: int
) -> torch.Tensor:
    """The softmax-weighted mean of ``tangents`` along ``dim`` (weights ``(terms, sum)`` of `_lse`)."""
    e, total = weights
    return (e * tangents).sum(dim) / total.squeeze(dim)


def _shifted(x: torch.Tensor, top: int, fill: float) -> torch.Tensor:
    """``[*lead, d + 1] -> [*lead, top + 1, d + 1]``: entry ``[c, a]`` is ``x[c - a]`` (``fill``
    outside ``0 <= c - a <= d``): the anti-diagonals of a polynomial product."""
    degree = x.shape[-1] - 1
    padded = torch.nn.functional.pad(x, (degree, top), value=fill)  # x at [d, 2d]
    rows = torch.arange(degree, degree + top + 1, device=x.device)
    index = rows[:, None] - torch.arange(degree + 1, device=x.device)  # c - a + d, in range
    return padded[..., index]  # plain indexing: it has vmap rules for itself and its backward


def _summed(x: torch.Tensor, degree: int, fill: float) -> torch.Tensor:
    """``[*lead, top + 1] -> [*lead, d + 1, d + 1]``: entry ``[a, b]`` is ``x[a + b]`` (``fill``
    beyond ``top``)."""
    padded = torch.nn.functional.pad(x, (0, 2 * degree + 1 - x.shape[-1]), value=fill)
    a = torch.arange(degree + 1, device=x.device)
    return padded[..., a[:, None] + a]  # [*lead, d + 1, d + 1]


Level = tuple[torch.Tensor, torch.Tensor | None]


def inside_tables(leaf: Leaves) -> list[Level]:
    """The inside log-polynomials of the tree, leaves first, with their forward-mode tangents.

    Args:
        leaf: the tree's leaves (see `leaves`).

    Returns:
        One ``(values, tangents)`` pair per level ``h = 0 .. log2(n')`` (``n'``: ``n`` rounded up to
        a power of two, padded with items ``1``): ``values[N, n' / 2^h, min(2^h, k) + 1]`` the
        log-coefficients of each node's polynomial, ``k = leaf.k``; ``tangents`` alike (None
        without tangents). The root (last level) holds the log-partition ``values[:, 0, k]``
        (before ``leaf.offset``).
    """
    k, n = leaf.k, leaf.values.shape[-2]
    size = 1 << max(n - 1, 0).bit_length()  # n rounded up to a power of two (1 for n <= 1)
    degree = min(1, k)
    pad = (0, 0, 0, size - n)  # pad the items with e^0 + e^-inf x = 1
    values = torch.nn.functional.pad(leaf.values[..., 1:], pad, value=NEG_INF)
    values = torch.cat([torch.nn.functional.pad(leaf.values[..., :1], pad), values], -1)
    values = values[..., : degree + 1]  # [N, n', min(1, k) + 1]
    tangents = None
    if leaf.tangents is not None:
        tangents = torch.nn.functional.pad(leaf.tangents, pad)[..., : degree + 1]
    levels: list[Level] = [(values, tangents)]
    while values.shape[-2] > 1:
        top = min(2 * degree, k)
        left, right = values[..., 0::2, :], values[..., 1::2, :]  # [N, m, d + 1]
        terms = left[..., None, :] + _shifted(right, top, NEG_INF)  # [N, m, top + 1, d + 1]
        values, e, total = _lse(terms, -1)  # [N, m, top + 1]
        if tangents is not None:
            t_left, t_right = tangents[..., 0::2, :], tangents[..., 1::2, :]
            t_terms = t_left[..., None, :] + _shifted(t_right, top, 0.0)
            tangents = _mean((e, total), t_terms, -1)
        degree = top
        levels.append((values, tangents))
    return levels


def _outside_leaves(levels: list[Level], k: int) -> Level:
    """The outside log-polynomials ``O_i[0..1]`` of the leaves (``[N, n', 2]``), with tangents."""
    root = levels[-1][0]  # [N, 1, k + 1]
    degrees = torch.arange(k + 1, device=root.device)
    outside = torch.where(degrees == k, 0.0, NEG_INF).to(root.dtype).expand_as(root)
    has_tangents = levels[-1][1] is not None
    t_outside = torch.zeros_like(root) if has_tangents else None
    for children, t_children in levels[-2::-1]:  # from the root's children down to the leaves
        degree = children.shape[-1] - 1
        left, right = children[..., 0::2, :], children[..., 1::2, :]  # [N, m, d + 1]
        above = _summed(outside, degree, NEG_INF)  # [N, m, a, b]: O_N[a + b]
        o_left, e_left, s_left = _lse(right[..., None, :] + above, -1)  # [N, m, d + 1], over b
        o_right, e_right, s_right = _lse(left[..., :, None] + above, -2)  # [N, m, d + 1], over a
        outside = torch.stack([o_left, o_right], -2).flatten(-3, -2)  # [N, 2m, d + 1]
        if t_outside is not None and t_children is not None:
            t_above = _summed(t_outside, degree, 0.0)
            t_left, t_right = t_children[..., 0::2, :], t_children[..., 1::2, :]
            t_o_left = _mean((e_left, s_left), t_right[..., None, :] + t_above, -1)
            t_o_right = _mean((e_right, s_right), t_left[..., :, None] + t_above, -2)
            t_outside = torch.stack([t_o_left, t_o_right], -2).flatten(-3, -2)
    return outside, t_outside


def _feasible(theta: torch.Tensor, k: int) -> torch.Tensor:
    """``[*batch, 1]`` True where at least ``k`` scores are finite (a k-subset exists)."""
    return (torch.isfinite(theta).sum(-1, keepdim=True) >= k) | (k == 0)


def _check(theta: torch.Tensor, k: object) -> int:
    check_floating_tensor("theta", theta)
    k = subset_size(k, theta)
    if is_plain(theta) and theta.numel():
        check_k_subset_scores("theta", flat_instances(theta.detach()), k)
    return k


def topk_log_partition(theta: torch.Tensor, k: int) -> torch.Tensor:
    """Exact log-partition ``A(theta) = log sum_z exp(<theta, z>)`` over all k-subsets, in O(n k).

    Differentiable to any order (``grad A(theta) = topk_marginals(theta, k)``); composes with
    `torch.func` (vmap, grad, jacrev, hessian) and `torch.compile`.

    Args:
        theta: ``[*batch, n]`` scores; ``-inf`` masks an item (never chosen).
        k: subset size, ``0 <= k <= n``.

    Returns:
        ``[*batch]`` log-partition values in ``theta``'s dtype; ``-inf`` for an instance with fewer
        than ``k`` finite scores (no k-subset; under vmap or compile, where values cannot be
        inspected) or a ValueError (eagerly).

    Raises:
        TypeError: ``theta`` is not a floating-point tensor, or ``k`` not an int.
        ValueError: ``theta`` has no dims, ``k`` outside ``[0, n]``; eagerly, a NaN or ``+inf``
            score or fewer than ``k`` finite scores (the message names the instance).

    Example:
        >>> import torch, imle_fn
        >>> theta = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
        >>> round(float(imle_fn.topk_log_partition(theta, 2).exp()), 6)  # e^1 + e^2 + e^3
        30.192875

    References:
        Ahmed, Zeng, Niepert, Van den Broeck, "SIMPLE: A Gradient Estimator for k-Subset
        Sampling", ICLR 2023 (arXiv:2210.01941).
    """
    k = _check(theta, k)
    leaf = leaves(flat_instances(theta), k)
    root = inside_tables(leaf)[-1][0]  # [N, 1, leaf.k + 1]
    return (root[:, 0, leaf.k] + leaf.offset).reshape(theta.shape[:-1]).to(theta.dtype)


def _marginals(theta: torch.Tensor, k: int, v: torch.Tensor | None) -> Level:
    """``(mu, J_mu v)`` for ``theta: [N, n]`` (``J_mu v`` None without ``v``)."""
    n = theta.shape[-1]
    leaf = leaves(theta, k, None if v is None else v)
    feasible = _feasible(theta, k)  # [N, 1]
    nan = torch.full_like(leaf.values[..., 0], float("nan"))
    if leaf.k == 0:  # one state (k = 0: z = 0; k = n: z = 1): constant marginals
        mu = torch.full_like(nan, float(leaf.complement))
        return torch.where(feasible, mu, nan), (None if v is None else torch.zeros_like(mu))
    outside, t_outside = _outside_leaves(inside_tables(leaf), leaf.k)  # [N, n', 2]
    sign = -1.0 if leaf.complement else 1.0  # the complement's tree counts the items left out
    values = leaf.values + outside[:, :n]  # [N, n, 2]: log-weights of "out" and "in"
    logit = sign * (values[..., 1] - values[..., 0])  # log-odds of z_i = 1
    mu = torch.where(feasible, torch.sigmoid(logit), nan)
    if leaf.tangents is None or t_outside is None:
        return mu, None
    tangents = leaf.tangents + t_outside[:, :n]
    t_logit = sign * (tangents[..., 1] - tangents[..., 0])
    # d sigmoid = mu (1 - mu) d logit; masked and certain items (logit = -inf / +inf) get exactly 0.
    jvp = torch.where(torch.isfinite(logit), mu * (1 - mu) * t_logit, torch.zeros_like(mu))
    return mu, torch.where(feasible, jvp, nan)


def topk_marginals(theta: torch.Tensor, k: int) -> torch.Tensor:
    """Exact marginals ``mu_i = P(z_i = 1)`` of the k-subset family (they sum to ``k``), in O(n k).

    Computed by the inside-outside passes over the tree (see the module docstring), not by
    differentiating `topk_log_partition`; differentiable to any order, and composes with
    `torch.func` and `torch.compile`. Its VJP in closed form is `topk_marginals_vjp`.

    Args:
        theta: ``[*batch, n]`` scores; ``-inf`` masks an item (its marginal is 0).
        k: subset size, ``0 <= k <= n``.

    Returns:
        ``[*batch, n]`` marginals in ``theta``'s dtype; NaN for an instance with fewer than ``k``
        finite scores under vmap or compile (eagerly a ValueError).

    Raises:
        TypeError: ``theta`` is not a floating-point tensor, or ``k`` not an int.
        ValueError: ``theta`` has no dims, ``k`` outside ``[0, n]``; eagerly, a NaN or ``+inf``
            score or fewer than ``k`` finite scores (the message names the instance).

    Example:
        >>> import torch, imle_fn
        >>> imle_fn.topk_marginals(torch.tensor([0.0, 0.0, float("-inf"), 0.0]), 2)
        tensor([0.6667, 0.6667, 0.0000, 0.6667])

    References:
        Ahmed, Zeng, Niepert, Van den Broeck, "SIMPLE: A Gradient Estimator for k-Subset
        Sampling", ICLR 2023 (arXiv:2210.01941).
    """
    k = _check(theta, k)
    mu, _ = _marginals(flat_instances(theta), k, None)
    return mu.reshape(theta.shape).to(theta.dtype)


def topk_marginals_vjp(v: torch.Tensor, theta: torch.Tensor, k: int) -> torch.Tensor:
    """``J_mu(theta)^T v``: the VJP of `topk_marginals`, in closed form and O(n k).

    ``J_mu = Cov_p(z)`` is symmetric, so this is also the JVP ``d/dt mu(theta + t v)``: the tangent
    ``v`` is carried forward through the same inside-outside passes that give ``mu``. Per item,
    ``(J v)_i = mu_i (v_i + E[<v, z> | z_i = 1] - E[<v, z>])``. It is made of torch ops, so it is
    itself differentiable in ``theta`` and ``v`` and composes with `torch.func` and
    `torch.compile`; it is SIMPLE's backward (`imle_fn.simple`).

    Args:
        v: ``[*batch, n]`` cotangent of the marginals (finite).
        theta: ``[*batch, n]`` scores; ``-inf`` masks an item (its entry of the result is 0).
        k: subset size, ``0 <= k <= n``.

    Returns:
        ``[*batch, n]`` the vector-Jacobian product, in ``theta``'s dtype.

    Raises:
        TypeError: ``theta`` or ``v`` is not a floating-point tensor, or ``k`` not an int.
        ValueError: ``v`` not shaped like ``theta``; ``theta`` has no dims, ``k`` outside
            ``[0, n]``; eagerly, a NaN or ``+inf`` score or fewer than ``k`` finite scores.

    Example:
        >>> import torch, imle_fn
        >>> theta = torch.tensor([0.0, 1.0, -1.0])
        >>> v = torch.tensor([1.0, 0.0, 0.0])
        >>> imle_fn.topk_marginals_vjp(v, theta, 1)  # k = 1: row 0 of softmax's Jacobian
        tensor([ 0.1848, -0.1628, -0.0220])

    References:
        Ahmed, Zeng, Niepert, Van den Broeck, "SIMPLE: A Gradient Estimator for k-Subset
        Sampling", ICLR 2023 (arXiv:2210.01941).
    """
    k = _check(theta, k)
    check_floating_tensor("v", v)
    if v.shape != theta.shape:
        raise ValueError(f"v: expected theta's shape {tuple(theta.shape)}, got {tuple(v.shape)}")
    _, jvp = _marginals(flat_instances(theta), k, flat_instances(v))
    return cast(torch.Tensor, jvp).reshape(theta.shape).to(theta.dtype)  # not None: v was given
