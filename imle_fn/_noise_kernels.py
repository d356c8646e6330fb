"""Numba kernels behind `imle_fn.noise` (private; no torch import).

Randomness comes from a per-block SplitMix64 stream: the caller draws one 64-bit seed per block of
``BLOCK`` consecutive output elements (from a ``torch.Generator``), and each block is filled by one
thread from its own stream. The output therefore depends only on the seeds, never on how many
threads Numba runs or how it schedules the blocks.

Gamma variates use Marsaglia and Tsang's squeeze method (ACM TOMS 26(3), 2000) for shape >= 1 and
its boost ``Gamma(a) = Gamma(a + 1) * U ** (1 / a)`` for shape < 1; normal variates use Marsaglia's
polar method.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["BLOCK", "sum_of_gamma_kernel"]

BLOCK = 64
"""Output elements per seed; part of the sampler's definition (changing it changes the samples)."""

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S11 = np.uint64(11)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)
_TWO_M53 = 1.0 / 9007199254740992.0  # 2 ** -53


@njit(cache=True, inline="always")
def _uniform(state: np.uint64) -> tuple[np.uint64, float]:
    """One SplitMix64 step: the new state and a uniform double in the open interval (0, 1)."""
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    z = z ^ (z >> _S31)
    return state, (float(z >> _S11) + 0.5) * _TWO_M53


@njit(cache=True, inline="always")
def _normal_pair(state: np.uint64) -> tuple[np.uint64, float, float]:
    """Two independent standard normal variates (Marsaglia's polar method)."""
    while True:
        state, u = _uniform(state)
        state, v = _uniform(state)
        u = 2.0 * u - 1.0
        v = 2.0 * v - 1.0
        s = u * u + v * v
        if 0.0 < s < 1.0:
            f = math.sqrt(-2.0 * math.log(s) / s)
            return state, u * f, v * f


@njit(cache=True, parallel=True)
def sum_of_gamma_kernel(k: np.ndarray, seeds: np.ndarray, num_terms: int, out: np.ndarray) -> None:
    """Fill ``out`` with Sum-of-Gamma noise, ``sum_i G_i / i - log(num_terms) / k``.

    ``G_i ~ Gamma(1 / k, 1)`` independently for ``i = 1 .. num_terms``; this equals the paper's
    ``(sum_i Gamma(1/k, rate=i/k) - log(num_terms)) / k`` because ``Gamma(1/k, rate=i/k)`` is
    ``(k / i) * Gamma(1/k, 1)``.

    Args:
        k: float64 array of shape (n,) (one k per output element) or (1,) (one k for all); every
            entry finite and positive (checked by the caller).
        seeds: uint64 array of shape (ceil(n / BLOCK),), one seed per block of outputs.
        num_terms: number of Gamma terms, >= 1.
        out: float64 array of shape (n,), written in place.
    """
    n = out.size
    per_element = k.size > 1
    log_terms = math.log(num_terms)
    for b in prange(seeds.size):
        state = seeds[b]
        have_spare = False
        spare = 0.0
        stop = min(n, (b + 1) * BLOCK)
        for e in range(b * BLOCK, stop):
            ke = k[e] if per_element else k[0]
            shape = 1.0 / ke
            boost = shape < 1.0
            d = (shape + 1.0 if boost else shape) - 1.0 / 3.0
            c = 1.0 / math.sqrt(9.0 * d)
            acc = 0.0
            for i in range(1, num_terms + 1):
                # Marsaglia-Tsang: Gamma(d + 1/3, 1) as d * v ** 3 with v = 1 + c * x, x ~ N(0, 1).
                while True:
                    if have_spare:
                        x = spare
                        have_spare = False
                    else:
                        state, x, spare = _normal_pair(state)
                        have_spare = True
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
                if boost:
                    state, u = _uniform(state)
                    g *= math.exp(math.log(u) * ke)
                acc += g / i
            out[e] = acc - log_terms / ke
