"""Noise samplers for perturb-and-MAP: Sum-of-Gamma, Gumbel and Gaussian; the only module that draws noise.

Every sampler takes an explicit ``torch.Generator`` (``None`` means torch's default generator of the
requested device, so ``torch.manual_seed`` controls it) and is bit-for-bit reproducible from that
generator's state. Sample the noise once, outside any ``torch.func`` transform, and pass it to
`imle`: the backward pass then reuses it for free.

Where the numbers are drawn: **on the generator's device** (``generator=None``: on the requested
``device``), then returned in the requested dtype on the requested device.

* A CPU generator: the host path. Sum-of-Gamma runs in a fused, parallel Numba kernel
  (`imle_fn._kernels.sampling`), Gumbel and Gaussian noise come from ``torch.rand`` / ``torch.randn``
  in float64; the samples are cast to ``dtype`` and copied to ``device``. A CPU generator with
  ``device="cuda"`` therefore gives exactly the CPU samples, on the GPU (and pays the copy).
* A generator on another device (CUDA, MPS, ...), or ``generator=None`` with such a ``device``: the
  device path, torch ops on that device with no host round trip (nothing is copied to the host and
  nothing read back, so it can be captured in a CUDA graph; the one read is the check of a ``k``
  tensor that lives on the device: one boolean, replaced by a device-side assertion while a CUDA
  graph is captured), reproducible from that device's generator. It draws in float64 when float64
  is requested and in float32 otherwise (bfloat16 and float16 are the float32 draws rounded). MPS
  has no float64: there it always draws in float32 and refuses a float64 result; Sum-of-Gamma there
  needs a torch whose MPS backend implements ``torch._standard_gamma`` (others raise
  ``NotImplementedError``).
* A generator on one device with ``device`` another: drawn on the generator's device, then copied
  to ``device`` (``None`` means the CPU, also for a GPU generator), as for a CPU generator. Torch's
  own samplers raise instead; here the generator alone fixes the numbers, and code written for a
  CPU generator keeps its samples on any device.

The two paths draw from different streams (the numbers differ for the same seed) but from the same
distribution: tests/core/test_noise.py runs the device path's code on the CPU and compares it with
the host path by two-sample Kolmogorov-Smirnov tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from imle_fn._kernels import sampling
from imle_fn.core.checks import (
    check_device,
    check_device_dtype,
    check_dtype,
    check_generator,
    check_int,
    check_positive_tensor,
    check_positive_values,
    check_shape,
)

__all__ = ["gaussian", "gumbel", "sum_of_gamma"]

ShapeLike = int | Sequence[int] | torch.Size
Backend = Literal["auto", "torch"]
"""``"auto"``: the generator's device decides (CPU: the host path); ``"torch"``: the device path
wherever the generator lives, the CPU included (for tests and benchmarks; private)."""

GAMMA_CHUNK = 1 << 22
"""At most this many Gamma variates are held at once by the device path's Sum-of-Gamma (the terms
are drawn in chunks of ``max(1, GAMMA_CHUNK // numel)``); part of the device path's definition."""


def sum_of_gamma(
    shape: ShapeLike,
    *,
    k: float | torch.Tensor | np.ndarray,
    num_terms: int = 10,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Sum-of-Gamma noise (Niepert et al., 2021, Eq. 13).

    ``eps = (sum_{i=1..s} Gamma(shape=1/k, rate=i/k) - log s) / k`` with ``s = num_terms``,
    computed as the equal ``sum_i G_i / i - log(s) / k`` with ``G_i ~ Gamma(1/k, 1)``. The sum of
    ``k`` independent draws (integer ``k``) tends to a standard Gumbel as ``s`` grows, so a MAP
    state with about ``k`` ones (a k-subset, a path of about ``k`` cells) gets Gumbel-perturbed
    total scores. Same distribution as uclnlp/torch-imle's
    ``SumOfGammaNoiseDistribution(k, nb_iterations=s)``.

    With a CPU generator the Gamma draws run in a fused, parallel Numba kernel
    (`imle_fn._kernels.sampling`; no ``[s, *shape]`` intermediate). One 64-bit seed per block of
    64 outputs comes from ``generator``, so the samples are a function of the generator's state,
    ``shape``, ``k`` and ``num_terms``, never of the number of Numba threads. With a generator on
    another device (or ``generator=None`` and such a ``device``) they are drawn there with
    ``torch._standard_gamma``, at most `GAMMA_CHUNK` variates at a time (see the module docstring).

    Args:
        shape: the sample shape, e.g. ``[num_samples, *theta.shape]``.
        k: a positive, finite float, or a tensor (or NumPy array) of them broadcastable to
            ``shape`` (one ``k`` per instance, e.g. ``[B, 1, 1]`` for ``[B, H, W]`` samples). On
            the device path a ``k`` tensor on the device stays there: it is checked there, with
            one boolean read back (a device-side assertion instead while a CUDA graph is captured).
        num_terms: ``s``, the number of Gamma terms; a positive int.
        generator: the source of randomness, and where the draws run; ``None`` uses torch's
            default generator of ``device``.
        dtype: floating dtype of the result (drawn in float64 on the host path; see the module
            docstring for the device path).
        device: device of the result (default: the CPU).

    Returns:
        ``[*shape]`` noise of the given dtype on the given device.

    Raises:
        ValueError: a non-positive or non-finite ``k``, or one whose ``1/k`` overflows the draw's
            dtype (with the index of the first bad entry), a ``k`` that does not broadcast to
            ``shape``, a non-positive ``num_terms``, a negative dimension in ``shape``, an unknown
            ``device``, or float64 requested on MPS.
        TypeError: an argument of the wrong type.
        RuntimeError: called under `torch.func.vmap` with ``randomness='error'`` (vmap's default;
            torch's own error), or on the CPU with ``randomness='different'`` (its kernel cannot
            draw per slice: draw outside vmap and pass the noise in).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> sum_of_gamma((2, 16, 16), k=20.8, num_terms=100, generator=g).shape
        torch.Size([2, 16, 16])

    References:
        Niepert, Minervini, Franceschi, "Implicit MLE: Backpropagating Through Discrete
        Exponential Family Distributions", NeurIPS 2021 (arXiv:2106.01798), Eq. 13.
    """
    return _sum_of_gamma(shape, k, num_terms, generator, dtype, device, "auto")


def gumbel(
    shape: ShapeLike,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Standard Gumbel(0, 1) noise, ``-log(-log U)`` with ``U`` uniform on the open interval (0, 1).

    With this noise and an argmax solver, ``argmax(theta + eps)`` is an exact sample of
    ``softmax(theta)`` (the Gumbel-max trick). ``U`` lies on the grid ``(m + 1/2) 2**-b``
    (``b = 53`` on the host path; on the device path ``b = 52`` drawing in float64, 23 in float32),
    so it is never 0 or 1 and the noise is always finite.

    Args:
        shape: the sample shape.
        generator: the source of randomness, and where the draws run; ``None`` uses torch's
            default generator of ``device``.
        dtype: floating dtype of the result (drawn in float64 on the host path; see the module
            docstring for the device path).
        device: device of the result (default: the CPU).

    Returns:
        ``[*shape]`` noise of the given dtype on the given device.

    Raises:
        ValueError: a negative dimension in ``shape``, an unknown ``device``, float64 requested
            on MPS.
        TypeError: an argument of the wrong type.
        RuntimeError: called under `torch.func.vmap` with ``randomness='error'`` (vmap's default;
            torch's own error). ``'different'`` draws per slice, ``'same'`` once for all.
    """
    return _gumbel(shape, generator, dtype, device, "auto")


def gaussian(
    shape: ShapeLike,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Standard normal noise (perturbed optimizers, the Fenchel-Young loss).

    Args:
        shape: the sample shape.
        generator: the source of randomness, and where the draws run; ``None`` uses torch's
            default generator of ``device``.
        dtype: floating dtype of the result (drawn in float64 on the host path; see the module
            docstring for the device path).
        device: device of the result (default: the CPU).

    Returns:
        ``[*shape]`` noise of the given dtype on the given device.

    Raises:
        ValueError: a negative dimension in ``shape``, an unknown ``device``, float64 requested
            on MPS.
        TypeError: an argument of the wrong type.
        RuntimeError: called under `torch.func.vmap` with ``randomness='error'`` (vmap's default;
            torch's own error). ``'different'`` draws per slice, ``'same'`` once for all.
    """
    return _gaussian(shape, generator, dtype, device, "auto")


# ----------------------------------------------------------------------------------------------
# The samplers behind the public functions: argument checks, then the host or the device path.


def _sum_of_gamma(
    shape: ShapeLike,
    k: float | torch.Tensor | np.ndarray,
    num_terms: int,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device | str | None,
    backend: Backend,
) -> torch.Tensor:
    """`sum_of_gamma`, on the path ``backend`` chooses."""
    num_terms = check_int("num_terms", num_terms, minimum=1)
    size, draw_device = _draw_args(shape, generator, dtype, device)
    if _host_path(draw_device, backend):
        k_array = check_positive_values("k", k, size)
        n = size.numel()
        out = np.empty(n, dtype=np.float64)
        if n > 0:
            num_blocks = -(-n // sampling.BLOCK)
            seeds = _draw_seeds(num_blocks, generator)
            _run_kernel(k_array, seeds, num_terms, out)
        return _to_tensor(out, size, dtype, device)
    draw_dtype = _draw_dtype(dtype, draw_device)
    k_tensor = check_positive_tensor("k", k, size, draw_dtype)
    eps = _device_sum_of_gamma(size, k_tensor, num_terms, generator, draw_device, draw_dtype)
    return eps.to(device=_result_device(device), dtype=dtype)


def _gumbel(
    shape: ShapeLike,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device | str | None,
    backend: Backend,
) -> torch.Tensor:
    """`gumbel`, on the path ``backend`` chooses."""
    size, draw_device = _draw_args(shape, generator, dtype, device)
    if _host_path(draw_device, backend):
        u = torch.rand(size, generator=generator, dtype=torch.float64)
        # torch.rand is on the grid m * 2**-53, m in [0, 2**53); the half-step shift makes it open.
        if torch._C._functorch.is_batchedtensor(u):  # vmap(randomness='different'): per slice
            return (u + 2.0**-54).log().neg().log().neg().to(device=device, dtype=dtype)
        # The logs run in NumPy: single-threaded, so they never wait on torch's intra-op thread pool.
        u_np = u.numpy().reshape(-1) + 2.0**-54
        return _to_tensor(-np.log(-np.log(u_np)), size, dtype, device)
    draw_dtype = _draw_dtype(dtype, draw_device)
    u = _device_open_uniform(size, generator, draw_device, draw_dtype)
    return u.log_().neg_().log_().neg_().to(device=_result_device(device), dtype=dtype)


def _gaussian(
    shape: ShapeLike,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device | str | None,
    backend: Backend,
) -> torch.Tensor:
    """`gaussian`, on the path ``backend`` chooses."""
    size, draw_device = _draw_args(shape, generator, dtype, device)
    if _host_path(draw_device, backend):
        eps = torch.randn(size, generator=generator, dtype=torch.float64)
        if torch._C._functorch.is_batchedtensor(eps):  # vmap(randomness='different'): per slice
            return eps.to(device=device, dtype=dtype)
        return _to_tensor(eps.numpy().reshape(-1), size, dtype, device)
    draw_dtype = _draw_dtype(dtype, draw_device)
    eps = torch.randn(size, generator=generator, dtype=draw_dtype, device=draw_device)
    return eps.to(device=_result_device(device), dtype=dtype)


def _draw_args(
    shape: ShapeLike,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device | str | None,
) -> tuple[torch.Size, torch.device]:
    """Validate a sampler's arguments; return the size and the device the draws run on.

    That is the generator's device, or for ``generator=None`` the requested device (the CPU when
    ``device`` is None), whose default generator torch then uses.
    """
    size = check_shape(shape)
    check_dtype(dtype)
    check_generator(generator)
    check_device(device)
    target = _result_device(device)
    check_device_dtype(dtype, target)
    return size, (generator.device if generator is not None else target)


def _result_device(device: torch.device | str | None) -> torch.device:
    """The device of the result: ``device``, the CPU for None (whatever the generator's device)."""
    return torch.device("cpu") if device is None else torch.device(device)


def _host_path(draw_device: torch.device, backend: Backend) -> bool:
    """Whether to draw on the host path (the CPU's Numba / NumPy samplers)."""
    return backend == "auto" and draw_device.type == "cpu"


def _draw_dtype(dtype: torch.dtype, draw_device: torch.device) -> torch.dtype:
    """The dtype the device path draws in: float64 if requested and available, else float32."""
    if dtype == torch.float64 and draw_device.type != "mps":
        return torch.float64
    return torch.float32


def _to_tensor(
    flat: np.ndarray, size: torch.Size, dtype: torch.dtype, device: torch.device | str | None
) -> torch.Tensor:
    """float64 array of shape (size.numel(),) -> ``[*size]`` tensor of ``dtype`` on ``device``."""
    if dtype == torch.float32:
        flat = flat.astype(np.float32)  # the same round-to-nearest as torch's cast
    tensor = torch.from_numpy(flat).reshape(size)
    return tensor.to(dtype=dtype, device=device)


def _run_kernel(k: np.ndarray, seeds: np.ndarray, num_terms: int, out: np.ndarray) -> None:
    """Run the Sum-of-Gamma kernel, in parallel where allowed (`sampling.run_sum_of_gamma`: on
    torch's OpenMP team, else Numba's threading layer under the package's policy in
    `imle_fn._kernels.parallel`). The blocks and their seeds are the same either way, so the
    samples are too.
    """
    inv_i = 1.0 / np.arange(1, num_terms + 1, dtype=np.float64)
    sampling.run_sum_of_gamma(k, seeds, inv_i, out)


def _draw_seeds(num_blocks: int, generator: torch.Generator | None) -> np.ndarray:
    """``num_blocks`` 64-bit seeds from the CPU ``generator`` as a uint64 array of shape (num_blocks,)."""
    seeds = torch.randint(
        -(2**63), 2**63 - 1, (num_blocks,), generator=generator, dtype=torch.int64
    )
    if torch._C._functorch.is_batchedtensor(seeds):
        raise RuntimeError(
            "imle_fn.sum_of_gamma: called under torch.func.vmap(randomness='different') with"
            " nothing that vmap batches, so each slice would need its own host draw, which its"
            " CPU kernel cannot make; draw the noise outside vmap and pass it in with its in_dims"
            " (an imle_fn.nn layer: give it batched scores, or its noise), or use"
            " randomness='same'"
        )
    return seeds.numpy().view(np.uint64)


# ----------------------------------------------------------------------------------------------
# The device path: torch ops on the draw device, nothing read back to the host.


def _device_sum_of_gamma(
    size: torch.Size,
    k: torch.Tensor,
    num_terms: int,
    generator: torch.Generator | None,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """``[*size]`` Sum-of-Gamma noise, ``sum_i G_i / i - log(s) / k``, drawn on ``device`` in ``dtype``.

    Args:
        size: the sample shape.
        k: ``k`` in ``dtype`` (checked), broadcastable to ``size``, on ``device`` or the CPU.
        num_terms: ``s``.
        generator: a generator on ``device``, or None (that device's default generator).
        device, dtype: where and in which floating dtype to draw.
    """
    n = size.numel()
    if k.device.type == "cpu" and device.type != "cpu" and k.numel() == 1:
        # A host number (a float k, or one in a CPU tensor) is filled in on the device, not copied.
        k = torch.full((), k.item(), dtype=dtype, device=device)
    alpha = k.to(device).reciprocal()  # the Gamma shape 1/k
    alpha = alpha.reshape(1) if alpha.numel() == 1 else alpha.expand(size).reshape(n)  # [1] / [n]
    inv_i = torch.arange(1, num_terms + 1, dtype=dtype, device=device).reciprocal_()  # [s]
    acc = torch.zeros(n, dtype=dtype, device=device)
    step = max(1, min(num_terms, GAMMA_CHUNK // max(n, 1)))
    for first in range(0, num_terms, step):
        count = min(step, num_terms - first)
        g = torch._standard_gamma(alpha.expand(count, n), generator=generator)  # [count, n]
        term = g.mul_(inv_i[first : first + count, None]).sum(dim=0)
        # Under vmap(randomness='different') the draws are batched: accumulate out of place.
        acc = acc + term if torch._C._functorch.is_batchedtensor(term) else acc.add_(term)
    return (acc - alpha * math.log(num_terms)).reshape(size)


def _device_open_uniform(
    size: torch.Size, generator: torch.Generator | None, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """``[*size]`` uniforms ``(m + 1/2) 2**-b`` on the open interval (0, 1), exact in ``dtype``.

    ``m`` is a uniform integer in ``[0, 2**b)`` with ``b`` = 52 (float64) or 23 (float32): ``m +
    1/2`` then needs ``b + 1`` significant bits, which the dtype has, so no ``U`` rounds to 0 or 1.
    (``torch.rand`` in float32 on CUDA is not on such a grid and can return 0.)
    """
    bits = 52 if dtype == torch.float64 else 23
    m = torch.randint(
        0,
        2**bits,
        size,
        generator=generator,
        dtype=torch.int64 if bits > 31 else torch.int32,
        device=device,
    )
    return m.to(dtype).add_(0.5).mul_(2.0**-bits)
