"""Wall-time accounting shared by the apps: seconds per named phase, and a solver that times itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from imle_fn.core.contract import Solver

__all__ = ["TimedSolver", "Timer"]


class Timer:
    """Accumulates wall time per named phase (``with timer("noise"): ...``) and solved instances.

    Attributes:
        seconds: seconds spent in each phase since the last `reset`.
        instances: instances handed to a `TimedSolver` since the last `reset`.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.instances = 0

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to phase ``name``."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def total(self, name: str) -> float:
        """Seconds spent in phase ``name`` (0 if it never ran)."""
        return self.seconds.get(name, 0.0)

    def reset(self) -> None:
        """Set every counter back to zero."""
        self.seconds.clear()
        self.instances = 0


class TimedSolver:
    """Wraps a `imle_fn.Solver`: adds its running time to ``timer`` under ``"solver"`` and counts
    the instances (the batch size of each call) it solved."""

    def __init__(self, solver: Solver, timer: Timer) -> None:
        self.solver = solver
        self.timer = timer
        self.event_ndim: int = solver.event_ndim
        self.backend = solver.backend

    def __call__(self, theta: Any) -> Any:
        with self.timer("solver"):
            z = self.solver(theta)
        self.timer.instances += int(theta.shape[0])
        return z
