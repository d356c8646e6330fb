"""Noise samplers for perturb-and-MAP: Sum-of-Gamma and Gumbel; the only module that draws noise.

Every sampler takes an explicit ``torch.Generator`` (``None`` means torch's default generator, so
``torch.manual_seed`` controls it) and is bit-for-bit reproducible from that generator's state. The
samples are drawn on the CPU (on the generator's device for the few seeds and uniforms torch draws)
and returned in the requested dtype on the requested device. Sample the noise once, outside any
``torch.func`` transform, and pass it to `imle`: the backward pass then reuses it for free.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from imle_fn._kernels import parallel, sampling
from imle_fn.core.checks import (
    check_device,
    check_dtype,
    check_generator,
    check_int,
    check_positive_values,
    check_shape,
)

__all__ = ["gaussian", "gumbel", "sum_of_gamma"]

ShapeLike = int | Sequence[int] | torch.Size


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

    The Gamma draws run in a fused, parallel Numba kernel (`imle_fn._kernels.sampling`; no
    ``[s, *shape]`` intermediate). One 64-bit seed per block of 64 outputs comes from
    ``generator``, so the samples are a function of the generator's state, ``shape``, ``k`` and
    ``num_terms``, never of the number of Numba threads.

    Args:
        shape: the sample shape, e.g. ``[num_samples, *theta.shape]``.
        k: a positive, finite float, or a tensor (or NumPy array) of them broadcastable to
            ``shape`` (one ``k`` per instance, e.g. ``[B, 1, 1]`` for ``[B, H, W]`` samples).
        num_terms: ``s``, the number of Gamma terms; a positive int.
        generator: the source of randomness; ``None`` uses torch's default CPU generator.
        dtype: floating dtype of the result (sampled in float64, then cast).
        device: device of the result (default: the CPU).

    Returns:
        ``[*shape]`` noise of the given dtype on the given device.

    Raises:
        ValueError: a non-positive or non-finite ``k`` (with the index of the first bad entry),
            a ``k`` that does not broadcast to ``shape``, a non-positive ``num_terms``, a negative
            dimension in ``shape`` or an unknown ``device``.
        TypeError: an argument of the wrong type.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> sum_of_gamma((2, 16, 16), k=20.8, num_terms=100, generator=g).shape
        torch.Size([2, 16, 16])

    References:
        Niepert, Minervini, Franceschi, "Implicit MLE: Backpropagating Through Discrete
        Exponential Family Distributions", NeurIPS 2021 (arXiv:2106.01798), Eq. 13.
    """
    size = check_shape(shape)
    num_terms = check_int("num_terms", num_terms, minimum=1)
    k_array = check_positive_values("k", k, size)
    check_dtype(dtype)
    check_generator(generator)
    check_device(device)
    n = size.numel()
    out = np.empty(n, dtype=np.float64)
    if n > 0:
        num_blocks = -(-n // sampling.BLOCK)
        seeds = _draw_seeds(num_blocks, generator)
        _run_kernel(k_array, seeds, num_terms, out)
    return _to_tensor(out, size, dtype, device)


def gumbel(
    shape: ShapeLike,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Standard Gumbel(0, 1) noise, ``-log(-log U)`` with ``U`` uniform on the open interval (0, 1).

    With this noise and an argmax solver, ``argmax(theta + eps)`` is an exact sample of
    ``softmax(theta)`` (the Gumbel-max trick).

    Args:
        shape: the sample shape.
        generator: the source of randomness; ``None`` uses torch's default CPU generator.
        dtype: floating dtype of the result (sampled in float64, then cast).
        device: device of the result (default: the CPU).

    Returns:
        ``[*shape]`` noise of the given dtype on the given device.

    Raises:
        ValueError: a negative dimension in ``shape``, an unknown ``device``.
        TypeError: an argument of the wrong type.
    """
    size, gen_device = _draw_args(shape, generator, dtype, device)
    u = torch.rand(size, generator=generator, dtype=torch.float64, device=gen_device)
    # torch.rand is on the grid m * 2**-53, m in [0, 2**53); the half-step shift makes it open.
    # The logs run in NumPy: single-threaded, so they never wait on torch's intra-op thread pool.
    u_np = u.cpu().numpy().reshape(-1) + 2.0**-54
    return _to_tensor(-np.log(-np.log(u_np)), size, dtype, device)


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
        generator: the source of randomness; ``None`` uses torch's default CPU generator.
        dtype: floating dtype of the result (sampled in float64, then cast).
        device: device of the result (default: the CPU).

    Returns:
        ``[*shape]`` noise of the given dtype on the given device.

    Raises:
        ValueError: a negative dimension in ``shape``, an unknown ``device``.
        TypeError: an argument of the wrong type.
    """
    size, gen_device = _draw_args(shape, generator, dtype, device)
    eps = torch.randn(size, generator=generator, dtype=torch.float64, device=gen_device)
    return _to_tensor(eps.cpu().numpy().reshape(-1), size, dtype, device)


def _draw_args(
    shape: ShapeLike,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device | str | None,
) -> tuple[torch.Size, torch.device]:
    """Validate a sampler's arguments; return the size and the device the generator draws on."""
    size = check_shape(shape)
    check_dtype(dtype)
    check_generator(generator)
    check_device(device)
    return size, (generator.device if generator is not None else torch.device("cpu"))


def _to_tensor(
    flat: np.ndarray, size: torch.Size, dtype: torch.dtype, device: torch.device | str | None
) -> torch.Tensor:
    """float64 array of shape (size.numel(),) -> ``[*size]`` tensor of ``dtype`` on ``device``."""
    if dtype == torch.float32:
        flat = flat.astype(np.float32)  # the same round-to-nearest as torch's cast
    tensor = torch.from_numpy(flat).reshape(size)
    return tensor.to(dtype=dtype, device=device)


def _run_kernel(k: np.ndarray, seeds: np.ndarray, num_terms: int, out: np.ndarray) -> None:
    """Run the Sum-of-Gamma kernel, in parallel where the Numba threading layer allows it.

    Follows the package's threading-layer policy (`imle_fn._kernels.parallel`): serial in a child forked
    after OpenMP was launched, one parallel call at a time under the workqueue layer. The blocks
    and their seeds are the same either way, so the samples are too.
    """
    inv_i = 1.0 / np.arange(1, num_terms + 1, dtype=np.float64)
    if seeds.size < 2 or not parallel.parallel_is_safe():
        sampling.sum_of_gamma_blocks(k, seeds, inv_i, out, 0, seeds.size)
    else:
        with parallel.parallel_guard():
            sampling.sum_of_gamma_parallel(k, seeds, inv_i, out)


def _draw_seeds(num_blocks: int, generator: torch.Generator | None) -> np.ndarray:
    """``num_blocks`` 64-bit seeds from ``generator`` as a uint64 array of shape (num_blocks,)."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    seeds = torch.randint(
        -(2**63),
        2**63 - 1,
        (num_blocks,),
        generator=generator,
        dtype=torch.int64,
        device=gen_device,
    )
    return seeds.cpu().numpy().view(np.uint64)
