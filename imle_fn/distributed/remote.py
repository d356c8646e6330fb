"""Solver calls on a Ray cluster: `RaySolver` spreads each batched solver call over Ray workers.

I-MLE's cost is the solver: a training step needs ``batch x samples x 2`` MAP states. `RaySolver`
wraps a batched solver ``[N, *event] -> [N, *event]``; each call splits the batch into chunks along
``N``, solves them in parallel as Ray tasks (or on a pool of Ray actors that keep the solver and its
expensive state, such as a loaded ILP model) and reassembles ``z`` in order. It is itself a
`imle_fn.Solver`, so `map_solve`, `imle`, the other estimators and `imle_fn.compat` take it;
under ``vmap`` they fold every vmapped dim into one call: one Ray round per pass.

The batch enters Ray's object store once (one ``ray.put``) and workers read their rows from it
zero-copy. Ray is an optional extra (``pip install "imle_fn[ray]"``), imported only when a
`RaySolver` is built. See ``docs/ray.md`` for when it pays and for multi-node clusters.

Example:
    >>> solver = RaySolver(GridShortestPath(), chunk_size=16)  # doctest: +SKIP
    >>> z = imle(theta, noise, solver, lam=10.0)  # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from imle_fn.core.checks import check_int, is_int
from imle_fn.core.contract import Backend, FunctionSolver, Solver, SolverLike
from imle_fn.distributed import worker as _ray_worker
from imle_fn.distributed.worker import SolverActor, chunk_bounds, solve_task

__all__ = ["RaySolver", "SolverWorkerError"]

_INSTALL_HINT = 'RaySolver needs Ray, an optional extra: pip install "imle_fn[ray]"'
_POOLS: weakref.WeakSet[RaySolver] = weakref.WeakSet()  # RaySolvers whose actors pin CPUs


class SolverWorkerError(RuntimeError):
    """A chunk failed on a Ray worker: the solver or ``make_solver`` raised, or the worker died.

    The message names the original exception's type and message and the instance (or the chunk's
    range) it happened on. The original exception is the ``__cause__`` when it could be sent back;
    one that does not pickle on the worker or unpickle here (an attribute such as a lock, a class
    whose ``__init__`` pickle cannot call, a class only the worker can import) is reported by its
    type name and message alone. The worker's traceback is attached as a note either way.

    Attributes:
        index: global index of the failing instance in the batch, when the solver said which one (by
            raising an exception with an integer ``index`` attribute, relative to its own input).
        start: first instance of the failing chunk.
        stop: one past its last instance.
        stage: where it failed: ``"solver"`` (the solver raised, or returned no array of numbers),
            ``"unpickle"`` (the solver, or ``make_solver``, did not unpickle on the worker: a
            module missing there, ...), ``"make_solver"`` (it raised on the actor), ``"worker"``
            (the worker process died, and so did its ``max_retries`` retries) or ``"ray"`` (Ray
            itself failed to deliver the chunk). After the first three no retry is made (the
            same error would come again), and an actor that failed so is replaced next call.
        error_type: qualified class name of the original exception, e.g. ``"builtins.ValueError"``.
    """

    def __init__(
        self,
        message: str,
        *,
        index: int | None,
        start: int,
        stop: int,
        stage: str = "solver",
        error_type: str = "",
    ) -> None:
        super().__init__(message)
        self.index, self.start, self.stop = index, start, stop
        self.stage, self.error_type = stage, error_type


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _worker_deaths(ray: Any) -> tuple[type, ...]:
    """Ray's errors that mean the worker process (or its node) died: Ray retried the chunk."""
    x = ray.exceptions
    return (x.RayActorError, x.WorkerCrashedError, x.OutOfMemoryError, x.NodeDiedError)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    # Workers get the worker module by value: they need not import imle_fn (torch, Numba).
    ray.cloudpickle.register_pickle_by_value(_ray_worker)
    return ray


class RaySolver:
    """A `Solver` that solves each batch on Ray in chunks and returns ``z`` in order.

    Args:
        solver: the batched maximiser to distribute: a `Solver`, or a plain callable (then give
            ``event_ndim``). It is pickled and shipped once (to each actor once). For state that
            cannot be pickled or is costly to build, give ``make_solver`` instead.
        make_solver: zero-argument callable that builds the solver on the worker; runs on actors,
            each calling it once. Needs ``event_ndim``.
        event_ndim: trailing dims of one instance; defaults to ``solver.event_ndim``.
        backend: what a plain callable (or ``make_solver``'s result) takes: ``"numpy"`` arrays or
            ``"torch"`` tensors; defaults to ``solver.backend``, else ``"numpy"``. Torch solvers get
            CPU tensors on the workers.
        chunk_size: instances per task; default: as many equal chunks as there are workers.
        num_actors: solve on a pool of this many actors that keep the solver alive between calls;
            ``None`` (default) uses stateless tasks, or one actor per CPU with ``make_solver``.
        max_retries: how often a chunk is retried when its worker process dies (an actor is
            restarted that often). Exceptions raised by the solver are not retried.
        timeout: seconds one call may take before `TimeoutError` (unfinished work is cancelled);
            ``None`` waits as long as the solver runs.
        address: passed to ``ray.init`` if Ray is not initialised yet: ``"auto"``, ``"host:6379"``
            or ``"ray://host:10001"``; ``None`` lets Ray decide (``RAY_ADDRESS``, a ``ray start``
            cluster on this machine, else a new local one). An initialised Ray is used as it is.
        num_cpus: CPUs Ray reserves for each task or actor.
        init_kwargs: more keyword arguments for that ``ray.init``.

    Attributes:
        event_ndim: trailing dims of one instance.
        backend: as the wrapped solver's; calls take and return arrays or tensors alike.
        num_rounds: distributed rounds (calls) made so far.

    Raises:
        ImportError: Ray is not installed.
    """

    def __init__(
        self,
        solver: SolverLike | None = None,
        *,
        make_solver: Callable[[], Any] | None = None,
        event_ndim: int | None = None,
        backend: Backend | None = None,
        chunk_size: int | None = None,
        num_actors: int | None = None,
        max_retries: int = 3,
        timeout: float | None = None,
        address: str | None = None,
        num_cpus: float = 1.0,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self._ray = _import_ray()
        if (solver is None) == (make_solver is None):
            raise TypeError("RaySolver: give exactly one of solver and make_solver")
        for name, value in (("solver", solver), ("make_solver", make_solver)):
            if value is not None and not callable(value):
                raise TypeError(f"{name}: expected a callable, got {type(value).__name__}")
        if event_ndim is None:
            if not isinstance(solver, Solver):
                raise ValueError("event_ndim: required unless solver is a Solver with event_ndim")
            event_ndim = solver.event_ndim
        backend = backend or (solver.backend if isinstance(solver, Solver) else "numpy")
        checked = FunctionSolver(len, event_ndim, backend)  # validates event_ndim and backend
        if chunk_size is not None:
            check_int("chunk_size", chunk_size, minimum=1)
        if num_actors is not None:
            check_int("num_actors", num_actors, minimum=1)
        check_int("max_retries", max_retries, minimum=0)
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout: expected seconds > 0 or None, got {timeout!r}")
        if not num_cpus > 0:
            raise ValueError(f"num_cpus: expected > 0, got {num_cpus!r}")
        self.event_ndim, self.backend = checked.event_ndim, checked.backend
        # A FunctionSolver travels as its bare function, so the workers need not import imle_fn.
        self._solver = solver.fn if isinstance(solver, FunctionSolver) else solver
        self._make_solver = make_solver
        self.chunk_size, self.num_actors = chunk_size, num_actors
        self.use_actors = num_actors is not None or make_solver is not None
        self.max_retries, self.timeout, self.num_cpus = max_retries, timeout, float(num_cpus)
        self.address, self.init_kwargs = address, dict(init_kwargs or {})
        self.num_rounds = 0
        self._lock = threading.Lock()
        self._solver_ref: Any = None
        self._remote: Any = None
        self._job: Any = None  # the Ray job that _remote, _solver_ref and _actors belong to
        self._workers = 1
        self._total = 0.0
        self._actors: list[Any] = []

    def __repr__(self) -> str:
        mode = f"num_actors={self.num_actors}" if self.use_actors else "tasks"
        solver = self._solver if self._make_solver is None else self._make_solver
        return f"RaySolver({solver!r}, {mode}, chunk_size={self.chunk_size})"

    def __call__(self, theta: Any) -> Any:
        """Solve ``theta: [N, *event]`` (array or tensor) on Ray; returns ``z`` of the same kind.

        Raises:
            SolverWorkerError: a chunk failed on its worker (see its ``stage``).
            TimeoutError: ``timeout`` passed first.
            ValueError: ``theta`` has no batch dim, or the solver returned a wrong shape.
            TypeError: the solver (or ``make_solver``) cannot be pickled.
        """
        like = theta if isinstance(theta, torch.Tensor) else None
        if like is not None:
            theta = theta.detach().cpu()
            theta = theta.float() if theta.dtype in (torch.float16, torch.bfloat16) else theta
        array = np.ascontiguousarray(theta)
        if array.ndim < 1:
            raise ValueError(f"theta: expected [N, *event], got shape {array.shape}")
        with self._lock:
            self.num_rounds += 1
            self._connect()
            actors = list(self._actors)
        bounds = chunk_bounds(array.shape[0], self.chunk_size, len(actors) or self._workers)
        z = self._run(array, bounds, actors) if array.shape[0] else np.zeros_like(array)
        return z if like is None else torch.from_numpy(z).to(device=like.device)

    def close(self) -> None:
        """Stop the actors (a later call starts new ones) and release the shipped solver."""
        with self._lock:
            self._drop(self._actors)
            self._solver_ref = None

    def _connect(self) -> None:
        """Initialise Ray if needed, then ship the solver or start the actors (under the lock)."""
        ray = self._ray
        if not ray.is_initialized():
            ray.init(address=self.address, **self.init_kwargs)
        context = ray.get_runtime_context()
        job = (context.get_job_id(), context.get_node_id())
        if job != self._job:  # first call, or Ray was shut down and started again
            self._remote, self._solver_ref, self._actors, self._job = None, None, [], job
        if self._remote is None:
            self._total = ray.cluster_resources().get("CPU", 0.0)
            self._remote = ray.remote(SolverActor if self.use_actors else solve_task)
        held = sum(len(p._actors) * p.num_cpus for p in _POOLS if p is not self and p._job == job)
        free = self._total - held  # CPUs not pinned by the actors of other RaySolvers
        self._workers = max(1, int(free // self.num_cpus))
        count = (self.num_actors or self._workers) if self.use_actors else 1
        if self.num_cpus * count > free and len(self._actors) < count:
            raise ValueError(
                f"num_cpus: {self.num_cpus:g} per worker x {count} worker(s) exceeds the"
                f" cluster's {self._total:g} CPUs, {held:g} of them held by the actors of other"
                " RaySolvers (close() those); Ray would wait for them forever"
            )
        if self._solver_ref is None:  # pickled here, unpickled on the workers under their care
            build = self._make_solver is not None
            name, shipped = (
                ("make_solver", self._make_solver) if build else ("solver", self._solver)
            )
            try:
                blob = ray.cloudpickle.dumps(shipped)
            except Exception as error:
                hint = "" if build else "; build it on the workers with make_solver= instead"
                raise TypeError(
                    f"{name}: cannot be pickled for the Ray workers ({error}){hint}"
                ) from error
            self._solver_ref = ray.put(blob)
        if self.use_actors:
            options = self._remote.options(
                num_cpus=self.num_cpus,
                max_restarts=self.max_retries,
                max_task_retries=self.max_retries,
            )
            args = (self._solver_ref, self._make_solver is not None, self.backend)
            while len(self._actors) < count:
                self._actors.append(options.remote(*args))
            _POOLS.add(self)

    def _run(self, theta: np.ndarray, bounds: list[tuple[int, int]], actors: list[Any]) -> Any:
        """Submit every chunk, collect the results in order; on failure cancel what is left."""
        ray = self._ray
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        theta_ref = ray.put(theta)  # [N, *event]: into the object store once, read zero-copy
        task = None
        if not self.use_actors:
            task = self._remote.options(
                num_cpus=self.num_cpus, max_retries=self.max_retries, retry_exceptions=False
            )
        todo, idle = list(reversed(range(len(bounds)))), list(reversed(range(len(actors))))
        pending: dict[Any, tuple[int, int]] = {}  # ref -> (chunk, actor; -1 for a task)
        results: list[Any] = [None] * len(bounds)
        lost: set[int] = set()  # actors to replace: dead, or busy when the call gave up
        try:
            while todo or pending:
                while todo and (task is not None or idle):  # actors get one chunk at a time
                    c = todo.pop()
                    a = -1 if task is not None else idle.pop()
                    args = (theta_ref, *bounds[c])
                    if task is not None:
                        ref = task.remote(self._solver_ref, self.backend, *args)
                    else:
                        ref = actors[a].solve.remote(*args)
                    pending[ref] = (c, a)
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=left)
                if not ready:
                    spans = ", ".join(
                        f"{a}..{b - 1}" for a, b in sorted(bounds[c] for c, _ in pending.values())
                    )
                    raise TimeoutError(
                        f"RaySolver: timeout={self.timeout}s passed with instances {spans} unsolved"
                    )
                c, a = pending.pop(ready[0])
                try:
                    results[c] = self._fetch(ready[0], bounds[c], theta.shape)
                except SolverWorkerError as error:
                    if a >= 0 and error.stage in ("worker", "unpickle", "make_solver"):
                        lost.add(a)  # dead, or holding no solver: the next call starts another
                    raise
                idle.append(a)
        except BaseException as error:
            hard = not isinstance(error, (SolverWorkerError, ValueError))  # timeout, Ctrl-C, ...
            for ref, (_, a) in pending.items():
                if hard and a >= 0:
                    lost.add(a)  # a busy actor may hang: replace it
                else:
                    ray.cancel(ref, force=hard)
            with self._lock:
                self._drop([actors[a] for a in lost])
            raise
        return results[0].copy() if len(results) == 1 else np.concatenate(results)

    def _fetch(self, ref: Any, span: tuple[int, int], shape: tuple[int, ...]) -> Any:
        """``ray.get`` one chunk's result, turning failures into `SolverWorkerError`."""
        ray = self._ray
        start, stop = span
        try:
            z = ray.get(ref)
        except ray.exceptions.RayError as error:  # the worker functions return their errors
            lost = isinstance(error, _worker_deaths(ray))
            what = (
                f"Ray worker lost while solving instances {start}..{stop - 1}, retried"
                f" max_retries={self.max_retries} times"
                if lost
                else f"Ray failed to deliver instances {start}..{stop - 1}"
            )
            raise SolverWorkerError(
                f"{what}: {type(error).__name__}: {error}",
                index=None,
                start=start,
                stop=stop,
                stage="worker" if lost else "ray",
                error_type=_qualified(type(error)),
            ) from error
        if isinstance(z, dict):  # the worker's record of an exception (worker.describe_failure)
            failed = self._failure(z, span)
            raise failed from failed.__cause__
        expected = (stop - start, *shape[1:])
        if np.shape(z) != expected:
            raise ValueError(
                f"solver: returned shape {tuple(np.shape(z))} for instances {start}..{stop - 1},"
                f" expected {expected}"
            )
        return z

    def _failure(self, record: dict[str, Any], span: tuple[int, int]) -> SolverWorkerError:
        """The `SolverWorkerError` for a worker's `describe_failure` record of an exception.

        Its ``__cause__`` is the original exception where that unpickles here, else ``None``.
        """
        start, stop = span
        cause, unpicklable = None, record["unpicklable"]
        if record["pickled"] is not None:
            try:
                cause = self._ray.cloudpickle.loads(record["pickled"])
            except Exception as failure:  # a class whose __init__ pickle cannot call, ...
                unpicklable = f"{type(failure).__name__}: {failure}"
        local = record["index"]
        index = start + local if is_int(local) and 0 <= local < stop - start else None
        if record["stage"] in ("unpickle", "make_solver"):
            name = "make_solver" if self._make_solver is not None else "solver"
            step = "could not be unpickled" if record["stage"] == "unpickle" else "raised"
            what = f"{name} {step} on the Ray worker given instances {start}..{stop - 1}"
            index = None
        else:
            where = f"instances {start}..{stop - 1}" if index is None else f"instance {index}"
            what = f"solver failed on {where} of the batch"
        message = f"{what}: {record['name']}: {record['message']}"
        if not isinstance(cause, BaseException):
            cause = None
            message += (
                f" (the exception itself could not be sent back from the worker: {unpicklable})"
            )
        error = SolverWorkerError(
            message,
            index=index,
            start=start,
            stop=stop,
            stage=record["stage"],
            error_type=record["type"],
        )
        error.__cause__ = cause
        error.add_note(f"Traceback on the Ray worker:\n{record['traceback'].rstrip()}")
        return error

    def _drop(self, actors: list[Any]) -> None:
        """Kill ``actors`` and forget them (under the lock); the next call starts replacements."""
        for actor in actors if self._ray.is_initialized() else ():
            self._ray.kill(actor, no_restart=True)
        self._actors = [a for a in self._actors if all(a is not d for d in actors)]
