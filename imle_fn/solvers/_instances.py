"""What solvers that hold per-instance data (`Knapsack`'s weights, `TopK`'s k) share.

**Broadcasting rule.** A solver holds data for ``B = prod(batch)`` instances (``batch`` is the
data's batch shape) and receives scores ``[N, *event]``: the leading dims of ``theta`` folded in
row-major order (`imle_fn.map_solve` folds every leading and vmapped dim into ``N``). Instance ``i``
uses data entry ``i % B`` (row-major over ``batch``): the data lines up with the *trailing* batch
dims of the scores, so ``theta: [*samples, *batch, *event]`` works for any number of sample dims
(noise samples, a `vmap` over samples). ``N`` must be a multiple of ``B``.

**Equality and hashing.** Such solvers compare and hash by value (the data's shape, dtype and
entries), so the solver registry of `imle_fn.map_solve` gives equal solvers one handle, as it does
for ``TopK(2)``. The data is stored as read-only int64 NumPy copies, so it cannot change after
construction; the hash is computed once.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["ValueSemantics", "check_rows", "instance_name"]


def _same(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and bool(np.array_equal(a, b))
        )
    return bool(a == b)


def _hashable(value: object) -> object:
    if isinstance(value, np.ndarray):
        return ("ndarray", value.shape, value.dtype.str, value.tobytes())
    return value


class ValueSemantics:
    """Mixin for frozen dataclasses (``eq=False``) whose fields may hold read-only NumPy arrays.

    ``==`` and ``hash`` by value over the dataclass fields; the hash is cached on the object and
    left out of its pickled state (Python salts string hashes per process).
    """

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, ValueSemantics)
        return all(_same(a, b) for a, b in zip(self._values(), other._values(), strict=True))

    def __hash__(self) -> int:
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash((type(self).__name__, *(_hashable(v) for v in self._values())))
            object.__setattr__(self, "_hash", cached)
        return int(cached)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_hash", None)
        return state


def check_rows(n_rows: int, batch: tuple[int, ...], who: str) -> int:
    """``B = prod(batch)``; ValueError unless ``n_rows`` (the solver's N) is a multiple of it."""
    B = int(np.prod(batch, dtype=np.int64))
    if n_rows % B:
        raise ValueError(
            f"theta: {who} holds data for {B} instances (batch shape {batch}), but the solver got"
            f" {n_rows} instances, not a multiple of {B}: the scores must be shaped"
            f" [*samples, *{list(batch)}, ...] (instance i uses data entry i % {B})"
        )
    return B


def instance_name(i: int, n_rows: int, batch: tuple[int, ...]) -> str:
    """``"instance i (of N)"``, plus the data entry it uses when the solver holds batched data."""
    text = f"instance {i} (of {n_rows})"
    if batch:
        B = int(np.prod(batch, dtype=np.int64))
        entry = tuple(int(j) for j in np.unravel_index(i % B, batch))
        text += f", data entry {entry}"
    return text
