"""Wall-time accounting of the demo's phases (how long the noise and the solver take)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["TimedSolver", "Timer"]


class Timer:
    """Accumulates wall time per named phase: ``with timer("noise"): ...``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


class TimedSolver:
    """Wraps a `imle_fn.Solver` and adds its running time to a `Timer` under ``"solver"``."""

    def __init__(self, solver: Any, timer: Timer) -> None:
        self.solver = solver
        self.timer = timer
        self.event_ndim: int = solver.event_ndim
        self.backend = solver.backend

    def __call__(self, theta: Any) -> Any:
        with self.timer("solver"):
            return self.solver(theta)
