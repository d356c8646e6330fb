"""`imle_fn.distributed.remote.RaySolver` on a real local Ray (2 CPUs, started once for this module).

Solvers defined here are pickled by value (this test module is not importable on Ray workers).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")

from imle_fn.distributed.remote import RaySolver, SolverWorkerError  # noqa: E402
from imle_fn.distributed.worker import chunk_bounds  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def topk(theta: np.ndarray, k: int = 3) -> np.ndarray:
    """Top-k over the last dim: a NumPy maximiser with event_ndim=1."""
    z = np.zeros_like(theta)
    np.put_along_axis(z, np.argsort(-theta, axis=-1, kind="stable")[..., :k], 1.0, axis=-1)
    return z


class TorchTopK:
    event_ndim = 1
    backend = "torch"

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(theta).scatter(-1, theta.topk(2, dim=-1).indices, 1.0)


class CountingSolver:
    """Counts the calls it served; ``z`` is filled with that count (state kept on an actor)."""

    event_ndim = 1
    backend = "numpy"

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.full(theta.shape, float(self.calls), dtype=theta.dtype)


class SizeRecorder(RaySolver):
    """A `RaySolver` that records how many instances each of its calls (Ray rounds) received."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sizes: list[int] = []

    def __call__(self, theta: Any) -> Any:
        self.sizes.append(len(theta))
        return super().__call__(theta)


def scores(n: int, d: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_chunk_bounds_cover_the_batch_in_order() -> None:
    assert chunk_bounds(10, 4, 2) == [(0, 4), (4, 8), (8, 10)]
    assert chunk_bounds(7, None, 3) == [(0, 2), (2, 4), (4, 7)]
    assert chunk_bounds(2, None, 8) == [(0, 1), (1, 2)]
    assert chunk_bounds(5, 100, 2) == [(0, 5)]


@pytest.mark.parametrize("chunk_size", [None, 1, 5, 16, 36, 37, 100])
def test_tasks_equal_the_unwrapped_solver(chunk_size: int | None) -> None:
    theta = scores(37)
    solver = RaySolver(topk, event_ndim=1, chunk_size=chunk_size)
    z = solver(theta)
    np.testing.assert_array_equal(z, topk(theta))
    assert z.flags.writeable and solver.num_rounds == 1


def test_actors_keep_state_and_order() -> None:
    theta = scores(23)
    pool = RaySolver(topk, event_ndim=1, chunk_size=4, num_actors=2)
    try:
        np.testing.assert_array_equal(pool(theta), topk(theta))
        np.testing.assert_array_equal(pool(theta[:9]), topk(theta[:9]))
        with pytest.raises(ValueError, match="2 of them held by the actors of other RaySolvers"):
            RaySolver(topk, event_ndim=1)(
                theta
            )  # the pool pins both CPUs: a task would wait forever
    finally:
        pool.close()
    built = RaySolver(make_solver=CountingSolver, event_ndim=1, num_actors=1)
    try:  # one actor built once: its call counter goes on across rounds
        assert built(theta[:3])[0, 0] == 1.0 and built(theta[:3])[0, 0] == 2.0
    finally:
        built.close()


def test_map_solve_imle_and_compat_accept_it() -> None:
    from imle_fn import compat
    from imle_fn.core.solving import map_solve

    theta = torch.randn(3, 4, 10, dtype=torch.float64)
    wrapped = RaySolver(TorchTopK(), chunk_size=5)
    assert wrapped.backend == "torch" and wrapped.event_ndim == 1
    z = map_solve(theta, wrapped)
    assert z.dtype == torch.float64
    torch.testing.assert_close(z, map_solve(theta, TorchTopK()), rtol=0, atol=0)

    layer = compat.imle(RaySolver(TorchTopK(), chunk_size=3), nb_samples=2)
    reference = compat.imle(TorchTopK(), nb_samples=2)
    x = torch.randn(4, 10, requires_grad=True)
    torch.manual_seed(0)
    (layer(x) * torch.arange(10.0)).sum().backward()
    grad, x.grad = x.grad, None
    torch.manual_seed(0)
    (reference(x) * torch.arange(10.0)).sum().backward()
    torch.testing.assert_close(grad, x.grad, rtol=0, atol=0)


def test_imle_under_nested_vmap_makes_one_round_per_pass() -> None:
    from imle_fn.core.contract import as_solver
    from imle_fn.estimators.implicit_mle import imle

    theta = torch.randn(3, 2, 10, dtype=torch.float64)  # [B1, B2, d]
    noise = torch.randn(4, 3, 2, 10, dtype=torch.float64)  # [S, B1, B2, d]
    weights = torch.linspace(-1.0, 1.0, 10, dtype=torch.float64)

    def grads(solver: Any) -> torch.Tensor:
        def loss(t: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
            return (imle(t, n, solver, lam=2.0) * weights).sum()

        per_row = torch.func.vmap(torch.func.grad(loss), in_dims=(0, 1))
        return torch.func.vmap(per_row, in_dims=(0, 1))(theta, noise)

    wrapped = SizeRecorder(topk, event_ndim=1, chunk_size=7)
    g = grads(wrapped)
    assert wrapped.num_rounds == 2  # forward + backward, each one round for all 3 x 2 x 4 instances
    assert wrapped.sizes == [24, 24]
    torch.testing.assert_close(g, grads(as_solver(topk, event_ndim=1)), rtol=0, atol=0)
    assert bool(g.abs().sum() > 0)


def test_other_estimators_accept_it() -> None:
    from imle_fn.core.contract import as_solver
    from imle_fn.estimators.blackbox import dbb

    theta = torch.randn(6, 10, dtype=torch.float64)
    dz = torch.randn(6, 10, dtype=torch.float64)
    grads: list[torch.Tensor] = []
    for solver in (RaySolver(topk, event_ndim=1, chunk_size=4), as_solver(topk, event_ndim=1)):
        t = theta.clone().requires_grad_()
        (dtheta,) = torch.autograd.grad(dbb(t, solver, lam=3.0), t, dz)
        grads.append(dtheta)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)
    assert bool(grads[0].abs().sum() > 0)


def picky(theta: np.ndarray) -> np.ndarray:
    """Rejects rows whose first score is below -100 (saying which) or above 100 (not saying)."""
    low = np.flatnonzero(theta[:, 0] < -100.0)
    if low.size:
        error = ValueError("infeasible scores")
        error.index = int(low[0])  # type: ignore[attr-defined]
        raise error
    if theta[:, 0].max() > 100.0:
        raise RuntimeError("solver exploded")
    return theta.copy()


@pytest.mark.parametrize("num_actors", [None, 1])
def test_worker_exception_names_the_instance(num_actors: int | None) -> None:
    solver = RaySolver(picky, event_ndim=1, chunk_size=8, num_actors=num_actors)
    theta = scores(20)
    low, high = theta.copy(), theta.copy()
    low[11, 0], high[19, 0] = -1e3, 1e3
    try:
        with pytest.raises(
            SolverWorkerError, match=r"instance 11 of the batch: ValueError: infeasible"
        ) as info:
            solver(low)
        assert info.value.index == 11 and isinstance(info.value.__cause__, ValueError)
        assert (info.value.stage, info.value.error_type) == ("solver", "builtins.ValueError")
        with pytest.raises(
            SolverWorkerError, match=r"instances 16\.\.19 .*solver exploded"
        ) as info:
            solver(high)
        assert info.value.index is None and (info.value.start, info.value.stop) == (16, 20)
        np.testing.assert_array_equal(solver(theta), theta)  # still usable afterwards
    finally:
        solver.close()


class NeedsTwoError(Exception):
    """Pickles, but does not unpickle: pickle calls ``NeedsTwoError(message)`` with one argument."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")


class UnpicklableError(Exception):
    def __reduce__(self) -> Any:
        raise TypeError("this exception refuses pickling")


def fussy(log: str) -> Any:
    """A solver that fails, in the way ``theta[i, 0]`` asks, with errors that cannot travel back.

    Each call appends ``F`` (a failing chunk) or ``x`` to ``log``, tagged with ``theta[0, 1]`` (the
    caller's round), so a chunk of an earlier round that finishes late is not counted in this one.
    """

    def solve(theta: np.ndarray) -> Any:
        code = theta[:, 0]
        with open(log, "a") as f:
            f.write(("F" if (code < 0).any() else "x") + f"{int(theta[0, 1])};")
        if (code == -1).any():
            error = RuntimeError("row has no feasible state")
            error.lock = threading.Lock()  # type: ignore[attr-defined]  # does not pickle
            error.index = int(np.flatnonzero(code == -1)[0])  # type: ignore[attr-defined]
            raise error
        if (code == -2).any():
            raise NeedsTwoError("licence", "expired")
        if (code == -3).any():
            raise UnpicklableError("model crashed")
        if (code == -4).any():
            return [threading.Lock()] * len(theta)  # a result that cannot travel back
        return theta.copy()

    return solve


@pytest.mark.parametrize(
    ("num_actors", "max_retries", "timeout"),
    [(None, 0, None), (None, 3, 30.0), (1, 0, None), (1, 3, 30.0)],
)
def test_an_exception_that_cannot_travel_back_is_reported_as_itself(
    tmp_path: Path, num_actors: int | None, max_retries: int, timeout: float | None
) -> None:
    """Case 11: not "worker lost ... retried 3 times": type, message, instance, and no retry."""
    log = tmp_path / "calls"
    solver = RaySolver(
        fussy(str(log)),
        event_ndim=1,
        chunk_size=4,
        num_actors=num_actors,
        max_retries=max_retries,
        timeout=timeout,
    )
    theta = np.abs(scores(8))
    expected = {
        -1: r"instance 6 of the batch: RuntimeError: row has no feasible state \(the exception"
        r" itself could not be sent back from the worker: TypeError: cannot pickle '_thread.lock'",
        -2: r"instances 4\.\.7 of the batch: NeedsTwoError: licence: expired \(the exception itself"
        r" could not be sent back from the worker: TypeError: .*missing 1 required positional",
        -3: r"instances 4\.\.7 of the batch: UnpicklableError: model crashed \(.*refuses pickling\)",
        -4: r"instances 4\.\.7 of the batch: TypeError: solver: returned an array of dtype"
        r" object, expected numbers\n",
    }
    try:
        for round_, (code, message) in enumerate(expected.items()):
            bad = theta.copy()
            bad[6, 0] = code
            bad[:, 1] = 100 + round_  # the round's tag in the log
            log.write_text("")
            with pytest.raises(SolverWorkerError, match=r"^solver failed on " + message) as info:
                solver(bad)
            error = info.value
            assert (error.start, error.stop, error.stage) == (4, 8, "solver")
            assert error.index == (6 if code == -1 else None)
            assert "worker lost" not in str(error) and "retried" not in str(error)
            # the failing chunk ran once (no retry); the other at most once
            calls = [c for c in log.read_text().split(";") if c.endswith(str(100 + round_))]
            assert [c[0] for c in calls].count("F") == 1, calls
            assert [c[0] for c in calls].count("x") <= 1, calls
            assert any("Traceback on the Ray worker" in note for note in error.__notes__)
            if code == -4:
                assert isinstance(error.__cause__, TypeError)
            else:
                assert error.__cause__ is None
                assert error.error_type.endswith(
                    ("RuntimeError", "NeedsTwoError", "UnpicklableError")
                )
        np.testing.assert_array_equal(solver(theta), theta)  # still usable afterwards
    finally:
        solver.close()


def test_make_solver_error_that_cannot_travel_back_is_reported_and_the_actor_replaced(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "built"

    def make() -> Any:
        if not marker.exists():
            marker.write_text("failed once")
            raise NeedsTwoError("licence server", "unreachable")
        return topk

    solver = RaySolver(make_solver=make, event_ndim=1, num_actors=1, chunk_size=10)
    theta = scores(6)
    try:
        with pytest.raises(
            SolverWorkerError,
            match=r"^make_solver raised on the Ray worker given instances 0\.\.5: NeedsTwoError:"
            r" licence server: unreachable \(the exception itself could not be sent back",
        ) as info:
            solver(theta)
        assert info.value.stage == "make_solver" and info.value.index is None
        np.testing.assert_array_equal(solver(theta), topk(theta))  # a new actor, built anew
    finally:
        solver.close()


DRIVER = os.getpid()


def _unpickle_here() -> Fragile:
    if os.getpid() != DRIVER:
        raise ModuleNotFoundError("No module named 'licensed_solver'")
    return Fragile()


class Fragile:
    """A solver that does not unpickle on the workers (as one whose module they lack)."""

    event_ndim = 1
    backend = "numpy"

    def __reduce__(self) -> Any:
        return (_unpickle_here, ())

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        return theta.copy()


@pytest.mark.parametrize("num_actors", [None, 1])
def test_solver_that_does_not_unpickle_on_the_worker_is_named(num_actors: int | None) -> None:
    solver = RaySolver(Fragile(), chunk_size=10, num_actors=num_actors)
    try:
        with pytest.raises(
            SolverWorkerError,
            match=r"^solver could not be unpickled on the Ray worker given instances 0\.\.2:"
            r" ModuleNotFoundError: No module named 'licensed_solver'\n",
        ) as info:
            solver(scores(3))
        assert info.value.stage == "unpickle"
        assert isinstance(info.value.__cause__, ModuleNotFoundError)
    finally:
        solver.close()


def die_once(marker: str) -> Any:
    def solve(theta: np.ndarray) -> np.ndarray:
        if not os.path.exists(marker):
            Path(marker).write_text("killed")
            os._exit(1)
        return topk(theta)

    return solve


@pytest.mark.parametrize("num_actors", [None, 1])
def test_killed_worker_is_retried(tmp_path: Path, num_actors: int | None) -> None:
    marker = tmp_path / "killed"
    solver = RaySolver(die_once(str(marker)), event_ndim=1, num_actors=num_actors, max_retries=2)
    theta = scores(6)
    try:
        np.testing.assert_array_equal(solver(theta), topk(theta))
        assert marker.read_text() == "killed"
    finally:
        solver.close()


def test_retries_are_bounded(tmp_path: Path) -> None:
    log = tmp_path / "attempts"

    def always_die(theta: np.ndarray) -> np.ndarray:
        with open(log, "a") as f:
            f.write("x")
        os._exit(1)

    solver = RaySolver(always_die, event_ndim=1, max_retries=1, chunk_size=10)
    with pytest.raises(
        SolverWorkerError, match=r"worker lost while solving instances 0\.\.2"
    ) as info:
        solver(scores(3))
    assert log.read_text() == "xx"  # the first attempt and one retry
    assert info.value.stage == "worker"


def sleepy(theta: np.ndarray) -> np.ndarray:
    time.sleep(60.0)
    return theta.copy()


@pytest.mark.parametrize("num_actors", [None, 1])
def test_timeout_cancels_and_recovers(num_actors: int | None) -> None:
    solver = RaySolver(sleepy, event_ndim=1, timeout=1.0, chunk_size=4, num_actors=num_actors)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"timeout=1\.0s passed with instances 0\.\.3 unsolved"):
        solver(scores(4))
    assert time.monotonic() - start < 10.0
    solver.close()
    theta = scores(5)  # the cluster is free again: a fresh solver gets its CPUs
    np.testing.assert_array_equal(RaySolver(topk, event_ndim=1, timeout=30.0)(theta), topk(theta))


def test_bad_arguments_raise_early() -> None:
    with pytest.raises(TypeError, match="exactly one of solver and make_solver"):
        RaySolver(topk, make_solver=CountingSolver, event_ndim=1)
    with pytest.raises(ValueError, match="event_ndim: required"):
        RaySolver(topk)
    with pytest.raises(ValueError, match="chunk_size: expected >= 1, got 0"):
        RaySolver(topk, event_ndim=1, chunk_size=0)
    with pytest.raises(TypeError, match="num_actors: expected an int"):
        RaySolver(topk, event_ndim=1, num_actors=True)
    with pytest.raises(ValueError, match="backend"):
        RaySolver(topk, event_ndim=1, backend="jax")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exceeds the cluster's 2 CPUs"):
        RaySolver(topk, event_ndim=1, num_cpus=3)(scores(2))
    with pytest.raises(ValueError, match=r"returned shape \(2, 9\) for instances 0\.\.1"):
        RaySolver(lambda t: t[:, 1:].copy(), event_ndim=1, chunk_size=10)(scores(2))


def test_unpicklable_solver_is_named() -> None:
    import threading

    lock = threading.Lock()
    with pytest.raises(TypeError, match=r"(?s)solver: cannot be pickled.*make_solver="):
        RaySolver(lambda t: lock and t, event_ndim=1)(scores(2))


def test_missing_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r'pip install "imle_fn\[ray\]"'):
        RaySolver(topk, event_ndim=1)


def test_imle_fn_imports_without_ray() -> None:
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "import imle_fn, imle_fn.distributed.remote\n"
        "try:\n    imle_fn.RaySolver(len, event_ndim=1)\n"
        "except ImportError as e:\n    print(e)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert 'pip install "imle_fn[ray]"' in out.stdout
