"""Noise samplers for perturb-and-MAP: Sum-of-Gamma and Gumbel; the only module that draws noise.

Every sampler takes an explicit ``torch.Generator`` (``None`` means torch's default generator, so
``torch.manual_seed`` controls it) and is bit-for-bit reproducible from that generator's state. The
samples are drawn on the CPU (on the generator's device for the few seeds and uniforms torch draws)
and returned in the requested dtype on the requested device. Sample the noise once, outside any
``torch.func`` transform, and pass it to `imle`: the backward pass then reuses it for free.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence

import numpy as np
import torch

from imle_fn._kernels import parallel, sampling

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
    """
    size = _check_shape(shape)
    num_terms = _check_num_terms(num_terms)
    k_array = _check_k(k, size)
    _check_dtype(dtype)
    _check_generator(generator)
    _check_device(device)
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
    size, gen_device = _check_draw(shape, generator, dtype, device)
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
    size, gen_device = _check_draw(shape, generator, dtype, device)
    eps = torch.randn(size, generator=generator, dtype=torch.float64, device=gen_device)
    return _to_tensor(eps.cpu().numpy().reshape(-1), size, dtype, device)


def _check_draw(
    shape: ShapeLike,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device | str | None,
) -> tuple[torch.Size, torch.device]:
    """Validate a sampler's arguments; return the size and the device the generator draws on."""
    size = _check_shape(shape)
    _check_dtype(dtype)
    _check_generator(generator)
    _check_device(device)
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


def _check_shape(shape: object) -> torch.Size:
    if isinstance(shape, (bool, np.bool_)):
        raise TypeError(f"shape: expected an int or a sequence of ints, got {shape!r}")
    dims: tuple[object, ...]
    if isinstance(shape, numbers.Integral):
        dims = (shape,)
    elif isinstance(shape, (Sequence, torch.Size)) and not isinstance(shape, (str, bytes)):
        dims = tuple(shape)
    else:
        raise TypeError(f"shape: expected an int or a sequence of ints, got {type(shape).__name__}")
    sizes = []
    for i, dim in enumerate(dims):
        if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, numbers.Integral):
            raise TypeError(f"shape: expected ints, got {dim!r} at position {i}")
        if dim < 0:
            raise ValueError(f"shape: expected non-negative sizes, got {dim} at position {i}")
        sizes.append(operator.index(dim))
    return torch.Size(sizes)


def _check_num_terms(num_terms: object) -> int:
    if isinstance(num_terms, (bool, np.bool_)) or not isinstance(num_terms, numbers.Integral):
        raise TypeError(f"num_terms: expected a positive int, got {num_terms!r}")
    if num_terms < 1:
        raise ValueError(f"num_terms: expected a positive int, got {num_terms}")
    return operator.index(num_terms)


def _check_k(k: object, size: torch.Size) -> np.ndarray:
    """``k`` as a contiguous float64 array: shape (1,) for a scalar, else (size.numel(),)."""
    if isinstance(k, np.ndarray):
        if k.dtype.kind not in "iuf":
            raise TypeError(f"k: expected a real array, got dtype {k.dtype}")
        k = torch.from_numpy(np.array(k, dtype=np.float64))  # a copy: any strides, never read-only
    if isinstance(k, torch.Tensor):
        if k.is_complex() or k.dtype == torch.bool:
            raise TypeError(f"k: expected a real tensor, got dtype {k.dtype}")
        k_t = k.detach().to(device="cpu", dtype=torch.float64)
        try:
            broadcast = torch.broadcast_shapes(k_t.shape, size)
        except RuntimeError:
            broadcast = None
        if broadcast != size:
            raise ValueError(
                f"k: expected a tensor broadcastable to the sample shape {tuple(size)}, "
                f"got shape {tuple(k_t.shape)}"
            )
        bad = ~(torch.isfinite(k_t) & (k_t > 0) & torch.isfinite(1.0 / k_t))
        if bool(bad.any()):
            index = tuple(int(i) for i in bad.nonzero()[0]) if k_t.dim() else ()
            raise ValueError(
                f"k: expected positive finite values with a finite 1/k, got {k_t[index].item()} "
                f"at index {index}"
            )
        if k_t.numel() == 1:
            return k_t.reshape(1).numpy()
        return k_t.expand(size).contiguous().reshape(-1).numpy()
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Real):
        raise TypeError(f"k: expected a positive float or a tensor, got {type(k).__name__}")
    k_f = float(k)
    if not (math.isfinite(k_f) and k_f > 0 and math.isfinite(1.0 / k_f)):
        raise ValueError(f"k: expected a positive finite float with a finite 1/k, got {k_f}")
    return np.array([k_f], dtype=np.float64)


def _check_dtype(dtype: object) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")


def _check_device(device: object) -> None:
    if device is None:
        return
    if not isinstance(device, (str, torch.device)):
        raise TypeError(
            f"device: expected a torch.device, a str or None, got {type(device).__name__}"
        )
    try:
        torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device: expected a valid device, got {device!r} ({err})") from None


def _check_generator(generator: object) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator: expected a torch.Generator or None, got {type(generator).__name__}"
        )
