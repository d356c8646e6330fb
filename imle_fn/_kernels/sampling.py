"""Numba kernels behind `imle_fn.core.noise` (private; no torch import).

Randomness comes from a per-block SplitMix64 stream: the caller draws one 64-bit seed per block of
``BLOCK`` consecutive output elements (from a ``torch.Generator``), and each block is filled by one
thread from its own stream. The output therefore depends only on the seeds, never on how many
threads Numba runs or how it schedules the blocks.

Gamma(1/k, 1) variates: for k >= `SMALL_SHAPE_K` (small shapes, the usual case: k is about the
number of ones in a MAP state) Liu, Martin and Syring's rejection sampler on the log scale; otherwise
Marsaglia and Tsang's squeeze method (ACM TOMS 26(3), 2000), with its boost
``Gamma(a) = Gamma(a + 1) * exp(-E / a)``, ``E ~ Exp(1)``, for shape a < 1. Normal and exponential
variates use 256-layer ziggurats (Marsaglia and Tsang, J. Stat. Softw. 5(8), 2000).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
from numba import carray, njit, prange

from imle_fn._kernels import parallel

__all__ = ["BLOCK", "run_sum_of_gamma", "sum_of_gamma_blocks", "sum_of_gamma_parallel"]

BLOCK = 64
"""Output elements per seed; part of the sampler's definition (changing it changes the samples)."""

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S11 = np.uint64(11)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)
_LOW8 = np.uint64(255)
_TWO_M53 = 2.0**-53


def _ziggurat(
    r: float, v: float, f: Callable[[float], float], f_inv: Callable[[float], float]
) -> tuple[np.ndarray, np.ndarray]:
    """Layer edges x[0..256] (x[0] = v / f(r) is the base layer's pseudo-width, x[1] = r,
    x[256] = 0) and f at those edges, for a decreasing density f on [0, inf) with layer area v."""
    x = np.zeros(257)
    x[0] = v / f(r)
    x[1] = r
    for i in range(1, 255):
        x[i + 1] = f_inv(v / x[i] + f(x[i]))
    return x, np.array([f(t) for t in x])


_NORMAL_R = 3.6541528853610088
_NORMAL_X, _NORMAL_F = _ziggurat(
    _NORMAL_R,
    0.00492867323399,
    lambda t: math.exp(-0.5 * t * t),
    lambda y: math.sqrt(-2.0 * math.log(y)),
)
_EXP_R = 7.69711747013104972
_EXP_X, _EXP_F = _ziggurat(
    _EXP_R, 0.0039496598225815571993, lambda t: math.exp(-t), lambda y: -math.log(y)
)


@njit(cache=True, inline="always")
def _bits(state: np.uint64) -> tuple[np.uint64, np.uint64]:
    """One SplitMix64 step: the new state and 64 random bits."""
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return state, z ^ (z >> _S31)


@njit(cache=True, inline="always")
def _uniform(state: np.uint64) -> tuple[np.uint64, float]:
    """A uniform double in the open interval (0, 1)."""
    state, z = _bits(state)
    return state, (float(np.int64(z >> _S11)) + 0.5) * _TWO_M53


@njit(cache=True, inline="always")
def _normal(state: np.uint64) -> tuple[np.uint64, float]:
    """A standard normal variate (ziggurat; the low 8 bits pick the layer, the top 53 the value)."""
    while True:
        state, z = _bits(state)
        i = np.int64(z & _LOW8)
        u = float(np.int64(z) >> np.int64(11)) * (2.0 * _TWO_M53)  # signed, in [-1, 1)
        x = u * _NORMAL_X[i]
        if abs(x) < _NORMAL_X[i + 1]:
            return state, x
        if i == 0:  # the tail beyond r (Marsaglia's method)
            while True:
                state, u1 = _uniform(state)
                state, u2 = _uniform(state)
                t = -math.log(u1) / _NORMAL_R
                if -2.0 * math.log(u2) >= t * t:
                    return state, (_NORMAL_R + t) if u > 0.0 else -(_NORMAL_R + t)
        state, u2 = _uniform(state)
        f_lo = _NORMAL_F[i]
        if f_lo + u2 * (_NORMAL_F[i + 1] - f_lo) < math.exp(-0.5 * x * x):
            return state, x


@njit(cache=True, inline="always")
def _exponential(state: np.uint64) -> tuple[np.uint64, float]:
    """A standard exponential variate (ziggurat; the tail beyond r is r + a fresh variate)."""
    shift = 0.0
    while True:
        state, z = _bits(state)
        i = np.int64(z & _LOW8)
        x = float(np.int64(z >> _S11)) * _TWO_M53 * _EXP_X[i]
        if x < _EXP_X[i + 1]:
            return state, shift + x
        if i == 0:
            shift += _EXP_R
            continue
        state, u2 = _uniform(state)
        f_lo = _EXP_F[i]
        if f_lo + u2 * (_EXP_F[i + 1] - f_lo) < math.exp(-x):
            return state, shift + x


@njit(cache=True, inline="always")
def _gamma_mt(state: np.uint64, shape: float, d: float, c: float) -> tuple[np.uint64, float]:
    """Gamma(shape, 1): Marsaglia-Tsang for shape >= 1, with the boost ``* exp(-E / shape)``
    (``E ~ Exp(1)``) for shape < 1. ``d`` and ``c`` come from `_mt_constants`."""
    while True:  # Gamma(d + 1/3, 1) = d * v with v = (1 + c * x) ** 3, x ~ N(0, 1)
        state, x = _normal(state)
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        state, u = _uniform(state)
        x2 = x * x
        if u < 1.0 - 0.0331 * x2 * x2:
            break
        if math.log(u) < 0.5 * x2 + d * (1.0 - v + math.log(v)):
            break
    g = d * v
    if shape < 1.0:
        state, t = _exponential(state)
        g *= math.exp(-t / shape)
    return state, g


@njit(cache=True, inline="always")
def _gamma_small(state: np.uint64, k: float, r_bits: np.uint64) -> tuple[np.uint64, float]:
    """Gamma(1 / k, 1) for k > 1 by rejection sampling of ``z = -log(G) / k`` (Liu, Martin and
    Syring, Stat. Comput. 27, 2017): density ``exp(-z - exp(-k z))``, envelope ``exp(-z)`` for
    z >= 0 and ``exp(k z - z - 1)`` for z < 0, of masses 1 and ``w = 1 / (e (k - 1))``
    (acceptance 0.96 at k = 20.8). ``r_bits`` comes from `_small_constant`."""
    while True:
        state, z_bits = _bits(state)
        if z_bits < r_bits:  # z ~ Exp(1); accept with probability exp(-g), g = exp(-k z)
            state, z = _exponential(state)
            g = math.exp(-k * z)
            state, u = _uniform(state)
            if u <= 1.0 - g or u < math.exp(-g):
                return state, g
        else:  # z = log(U) / (k - 1) < 0; accept with probability g * exp(1 - g)
            state, u = _uniform(state)
            kz = k * math.log(u) / (k - 1.0)
            g = math.exp(-kz)
            state, u = _uniform(state)
            if math.log(u) < 1.0 - kz - g:
                return state, g


@njit(cache=True, inline="always")
def _mt_constants(shape: float) -> tuple[float, float]:
    """Marsaglia-Tsang's ``d = shape' - 1/3`` and ``c = 1 / sqrt(9 d)``, shape' = shape (+ 1 if < 1)."""
    d = (shape + 1.0 if shape < 1.0 else shape) - 1.0 / 3.0
    return d, 1.0 / math.sqrt(9.0 * d)


@njit(cache=True, inline="always")
def _small_constant(k: float) -> np.uint64:
    """P(z >= 0 part of the envelope) = 1 / (1 + w) as a threshold on 64 random bits (< 2**64)."""
    w = 1.0 / (math.e * (k - 1.0))
    return np.uint64(min(1.0 / (1.0 + w), 1.0 - _TWO_M53) * 18446744073709551616.0)


SMALL_SHAPE_K = 8.0
"""k from which `_gamma_small` replaces `_gamma_mt` (where it is faster); part of the definition."""


@njit(cache=True, nogil=True)
def sum_of_gamma_blocks(
    k: np.ndarray,
    seeds: np.ndarray,
    inv_i: np.ndarray,
    out: np.ndarray,
    first: int,
    last: int,
) -> None:
    """Fill blocks ``first .. last - 1`` of ``out`` with Sum-of-Gamma noise (serially).

    Each output is ``sum_i G_i / i - log(s) / k`` with ``G_i ~ Gamma(1 / k, 1)`` independently for
    ``i = 1 .. s``; this equals the paper's ``(sum_i Gamma(1/k, rate=i/k) - log s) / k`` because
    ``Gamma(1/k, rate=i/k)`` is ``(k / i) * Gamma(1/k, 1)``. Block ``b`` holds the outputs
    ``b * BLOCK .. (b + 1) * BLOCK - 1`` and draws from the stream seeded with ``seeds[b]``.

    Args:
        k: float64 array of shape (n,) (one k per output element) or (1,) (one k for all); every
            entry finite and positive (checked by the caller).
        seeds: uint64 array of shape (ceil(n / BLOCK),), one seed per block.
        inv_i: float64 array of shape (s,), ``1 / i`` for ``i = 1 .. s``.
        out: float64 array of shape (n,), written in place.
        first, last: the range of blocks to fill.
    """
    n = out.size
    num_terms = inv_i.size
    per_element = k.size > 1
    log_terms = math.log(num_terms)
    for b in range(first, last):
        state = seeds[b]
        for e in range(b * BLOCK, min(n, (b + 1) * BLOCK)):
            ke = k[e] if per_element else k[0]
            acc = 0.0
            if ke >= SMALL_SHAPE_K:
                r_bits = _small_constant(ke)
                for i in range(num_terms):
                    state, g = _gamma_small(state, ke, r_bits)
                    acc += g * inv_i[i]
            else:
                shape = 1.0 / ke
                d, c = _mt_constants(shape)
                for i in range(num_terms):
                    state, g = _gamma_mt(state, shape, d, c)
                    acc += g * inv_i[i]
            out[e] = acc - log_terms / ke


@njit(cache=True, nogil=True, parallel=True)
def sum_of_gamma_parallel(
    k: np.ndarray, seeds: np.ndarray, inv_i: np.ndarray, out: np.ndarray
) -> None:
    """`sum_of_gamma_blocks` over all blocks, the blocks spread over Numba's threads."""
    for b in prange(seeds.size):
        sum_of_gamma_blocks(k, seeds, inv_i, out, b, b + 1)


@njit(cache=True, nogil=True)
def _pool_chunks(block, k, seeds, inv_i, out):  # type: ignore[no-untyped-def]
    """The chunk loop of a pool worker: claim chunks of blocks until none is left."""
    n = block[parallel.BLOCK_NUM_CHUNKS]
    num_blocks = seeds.size
    while True:
        c = parallel.fetch_add(block, parallel.BLOCK_NEXT)
        if c >= n:
            break
        sum_of_gamma_blocks(k, seeds, inv_i, out, c * num_blocks // n, (c + 1) * num_blocks // n)
        parallel.fetch_add(block, parallel.BLOCK_DONE)


def _pool_worker(data):  # type: ignore[no-untyped-def]
    """cfunc body: the argument block at ``data`` -> `_pool_chunks`."""
    h = parallel.BLOCK_HEADER
    block = carray(data, (h + 8,), np.int64)
    k = carray(parallel.as_voidptr(block[h]), (block[h + 1],), np.float64)
    seeds = carray(parallel.as_voidptr(block[h + 2]), (block[h + 3],), np.uint64)
    inv_i = carray(parallel.as_voidptr(block[h + 4]), (block[h + 5],), np.float64)
    out = carray(parallel.as_voidptr(block[h + 6]), (block[h + 7],), np.float64)
    _pool_chunks(block, k, seeds, inv_i, out)


@functools.cache
def _pool_worker_address() -> int:
    return parallel.compile_worker(_pool_worker)


def run_sum_of_gamma(k: np.ndarray, seeds: np.ndarray, inv_i: np.ndarray, out: np.ndarray) -> None:
    """Fill ``out`` (all blocks of `sum_of_gamma_blocks`), in parallel where allowed.

    On the host's OpenMP team where one is registered, else as Numba's parallel kernel where the
    threading layer allows it (`imle_fn._kernels.parallel`), else serially. The blocks and their
    seeds are the same either way, so the samples are too.

    Args:
        k, seeds, inv_i, out: as `sum_of_gamma_blocks` (C-contiguous, ``out`` writable).
    """
    num_blocks = seeds.size
    threads = parallel.pool_threads(num_blocks)
    if threads > 1:
        block = parallel.new_block(
            min(num_blocks, 8 * threads),  # chunks of blocks, claimed one by one
            k.ctypes.data, k.size, seeds.ctypes.data, num_blocks,
            inv_i.ctypes.data, inv_i.size, out.ctypes.data, out.size,
        )  # fmt: skip
        parallel.run_on_pool(_pool_worker_address(), block, threads)
    elif threads == 0 and num_blocks > 1 and parallel.parallel_is_safe():
        with parallel.parallel_guard():
            sum_of_gamma_parallel(k, seeds, inv_i, out)
    else:
        sum_of_gamma_blocks(k, seeds, inv_i, out, 0, num_blocks)
