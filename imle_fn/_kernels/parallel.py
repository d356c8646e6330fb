"""Where and how Numba kernels run in parallel: one thread pool, thread and fork safety.

**One pool: the host's OpenMP team.** PyTorch (CPU builds with the OpenMP backend) runs its
element-wise ops on an OpenMP team whose idle workers *spin* for a while after each op (GNU
libgomp: about 300,000 spins, several ms, unless ``OMP_WAIT_POLICY=passive``). A Numba parallel
kernel launched right after a torch op then fights those spinning workers for the cores with its
own pool (TBB, OpenMP or workqueue workers): on 2 cores a 320-grid solve took 2x its time. So where
the host library registers its OpenMP runtime (`use_openmp_pool`; `imle_fn.core` registers torch's
when torch's parallel backend is OpenMP), a parallel kernel runs its chunks ON that team: the
kernel module compiles a ``cfunc`` chunk worker, and `run_on_pool` hands it to the runtime's
``GOMP_parallel`` (the GNU OpenMP entry point, also exported by LLVM's and Intel's runtimes). The
spinning workers pick the chunks up at once, no second pool wakes, and no environment variable is
set. Chunks are claimed from an atomic counter (`fetch_add`), so a worker that is descheduled
delays nothing; every instance's result is the same whichever thread solves it, so results are
bit-identical for any thread count. Threads: ``min(host threads (torch.get_num_threads()), Numba's
thread count, work items)``; 1 runs the serial kernel on the calling thread.

Alternatives measured (bench/README.md, "Threads"): Numba's TBB, workqueue and omp layers after a
torch op (the fight: the omp layer brings a second libgomp, whose workers spin too), more chunks
than threads under TBB, a serial solve after torch ops (2x the parallel time), and the process-wide
``OMP_WAIT_POLICY=passive`` (which imle_fn never sets).

**Safety.** GNU OpenMP cannot be used in a child forked after its team was started (it hangs;
torch's own ops do too unless the child sets one thread, as DataLoader workers do), so the host
pool is never used in a forked child: such children run Numba's own parallel kernels under the
rules below, as processes without a registered host pool do. Several Python threads may call
kernels at once (each becomes the master of its own team). Numba's layers:

1. Never choose a layer for the user: ``NUMBA_THREADING_LAYER`` (or ``numba.config``) is respected.
2. Make a pip-installed TBB findable (its ``libtbb.so.12`` lives in ``<prefix>/lib``, off the
   loader path), so that Numba's default priority (tbb, omp, workqueue) picks it.
3. Call Numba's parallel kernels only where it is safe (`parallel_is_safe` and `parallel_guard`):
   tbb -> always; omp -> never in a forked child (callers then run their serial kernel: a child
   forked after the parent launched the layer aborts on a parallel call, and Numba's omp layer
   may bind to torch's libgomp, whose team the parent started: the child hangs); workqueue -> one
   parallel call at a time in the process, under a lock that is renewed in forked children.
   (Other code launching workqueue kernels without this lock can still collide with ours.)

No torch in this module: the host registers its runtime by library path and thread-count function.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import cfunc, types
from numba.core.extending import intrinsic

__all__ = [
    "BLOCK_DONE",
    "BLOCK_HEADER",
    "BLOCK_NEXT",
    "BLOCK_NUM_CHUNKS",
    "as_voidptr",
    "compile_worker",
    "fetch_add",
    "new_block",
    "parallel_guard",
    "parallel_is_safe",
    "pool_disabled",
    "pool_library",
    "pool_threads",
    "run_on_pool",
    "running_layer",
    "use_openmp_pool",
    "workqueue_lock",
]


def _preload_pip_tbb() -> None:
    """Load ``<prefix>/lib/libtbb.so.12`` so that Numba's TBB layer can import it, if present."""
    if not sys.platform.startswith("linux"):
        return
    chosen = str(getattr(numba.config, "THREADING_LAYER", "default")).lower()
    if chosen in ("omp", "workqueue"):
        return
    try:
        ctypes.CDLL("libtbb.so.12")
        return  # already findable
    except OSError:
        pass
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        path = os.path.join(prefix, "lib", "libtbb.so.12")
        if os.path.exists(path):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError:
                continue
            return


_preload_pip_tbb()

_WORKQUEUE_LOCK = threading.Lock()
_FORKED = False  # this process is a forked child (of a process that imported this module)
_NUMBA_LAUNCHED = False


class _Pool:
    """A registered OpenMP runtime: its ``GOMP_parallel`` and the host's thread count."""

    __slots__ = ("gomp_parallel", "library", "num_threads", "pid")

    def __init__(self, library: str, gomp_parallel: Any, num_threads: Callable[[], int]) -> None:
        self.library = library
        self.gomp_parallel = gomp_parallel
        self.num_threads = num_threads
        self.pid = os.getpid()


_POOL: _Pool | None = None


def running_layer() -> str | None:
    """The Numba threading layer in use, or None before the first parallel launch."""
    try:
        return str(numba.threading_layer())
    except ValueError:  # not launched yet
        return None


def _after_fork_in_child() -> None:
    global _WORKQUEUE_LOCK, _FORKED
    _WORKQUEUE_LOCK = threading.Lock()  # a parent thread may have held it at fork time
    _FORKED = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def parallel_is_safe() -> bool:
    """Whether Numba's parallel kernels may run here: False in a forked child whose Numba layer is
    OpenMP (a parallel call there aborts if the parent launched that layer, and hangs if the layer
    binds to the OpenMP runtime whose team the parent started, torch's). In such a child the
    layer is launched (no parallel work) to learn which it is."""
    if not _FORKED:
        return True
    layer = running_layer()
    if layer is None:
        numba.get_num_threads()  # launches Numba's threading layer
        layer = running_layer()
    return layer != "omp"


def workqueue_lock() -> threading.Lock:
    """The process-wide lock that serialises parallel launches under the workqueue layer."""
    return _WORKQUEUE_LOCK


def parallel_guard() -> contextlib.AbstractContextManager[object]:
    """Context to hold around a Numba parallel kernel call: the workqueue lock, or nothing.

    Before the first launch the layer is unknown, so that launch takes the lock too.
    """
    if running_layer() in ("workqueue", None):
        return _WORKQUEUE_LOCK
    return contextlib.nullcontext()


def use_openmp_pool(library: str, num_threads: Callable[[], int]) -> bool:
    """Run the kernels' parallel chunks on the OpenMP runtime that ``library`` links.

    Args:
        library: path of a shared library already loaded in this process whose dependencies
            include the OpenMP runtime to use (for torch: ``torch._C.__file__``); its
            ``GOMP_parallel`` is looked up through them.
        num_threads: the host's intra-op thread count for the calling thread (for torch:
            ``torch.get_num_threads``).

    Returns:
        True if the runtime was found and registered (Linux only); False leaves Numba's own
        parallel kernels in use.
    """
    global _POOL
    if not sys.platform.startswith("linux"):
        return False
    try:
        handle = ctypes.CDLL(library)
        gomp_parallel = handle.GOMP_parallel
    except (OSError, AttributeError):
        return False
    gomp_parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    gomp_parallel.restype = None
    _POOL = _Pool(library, gomp_parallel, num_threads)
    return True


def pool_library() -> str | None:
    """The library whose OpenMP runtime runs the kernels (`use_openmp_pool`), or None."""
    return None if _POOL is None else _POOL.library


def _numba_threads() -> int:
    """Numba's thread count, without launching its pool when it has not been launched."""
    global _NUMBA_LAUNCHED
    if not _NUMBA_LAUNCHED:
        _NUMBA_LAUNCHED = running_layer() is not None
        if not _NUMBA_LAUNCHED:
            return int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    return int(numba.get_num_threads())


def pool_threads(work_items: int) -> int:
    """Threads to run ``work_items`` independent items on the registered OpenMP pool.

    Returns:
        0 when there is no usable pool (none registered, or this is a forked child): use Numba's
        parallel kernel under `parallel_is_safe` / `parallel_guard`. Otherwise
        ``min(work_items, host threads, Numba threads)`` (1: run serially on the calling thread).
    """
    pool = _POOL
    if pool is None or pool.pid != os.getpid():
        return 0
    return max(1, min(work_items, pool.num_threads(), _numba_threads()))


def new_block(num_chunks: int, *values: int) -> np.ndarray:
    """The int64 argument block of a chunk worker: the header (next chunk, chunks done, number of
    chunks) then ``values`` (array addresses, sizes, flags: the worker's own layout)."""
    return np.array((0, 0, num_chunks, *values), dtype=np.int64)


BLOCK_NEXT = 0  # the next chunk to claim (atomic)
BLOCK_DONE = 1  # chunks finished (atomic)
BLOCK_NUM_CHUNKS = 2
BLOCK_HEADER = 3  # a worker's own values start here


def run_on_pool(worker: int, block: np.ndarray, threads: int) -> None:
    """Run the ``cfunc`` chunk worker at address ``worker`` on ``threads`` threads of the
    registered OpenMP pool (the calling thread is one of them), with ``block`` as its argument;
    returns when every chunk is done. The GIL is released meanwhile.

    The worker claims chunks with ``fetch_add(block, BLOCK_NEXT)`` until none is left and counts
    each finished one with ``fetch_add(block, BLOCK_DONE)``.

    Raises:
        RuntimeError: no pool is registered, or a chunk did not finish (its worker failed).
    """
    if _POOL is None:
        raise RuntimeError("no OpenMP pool is registered (use_openmp_pool)")
    _POOL.gomp_parallel(worker, block.ctypes.data, threads, 0)
    if block[BLOCK_DONE] != block[BLOCK_NUM_CHUNKS]:
        raise RuntimeError(
            f"parallel kernel: {block[BLOCK_DONE]} of {block[BLOCK_NUM_CHUNKS]} chunks finished"
        )


# Building blocks of chunk workers (usable in njit and cfunc code, cacheable).


def _as_voidptr(typingctx, address):  # type: ignore[no-untyped-def]
    """``void *`` of an integer address (an array's ``ctypes.data``)."""
    if not isinstance(address, types.Integer):
        return None
    sig = types.voidptr(address)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.inttoptr(args[0], context.get_value_type(types.voidptr))

    return sig, codegen


def _fetch_add(typingctx, array, index):  # type: ignore[no-untyped-def]
    """Atomically add 1 to ``array[index]`` (a 1-d int64 array), returning the previous value."""
    if not (
        isinstance(array, types.Array)
        and array.dtype == types.int64
        and array.ndim == 1
        and isinstance(index, types.Integer)
    ):
        return None
    sig = types.int64(array, index)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        ary = context.make_array(signature.args[0])(context, builder, value=args[0])
        i = context.cast(builder, args[1], signature.args[1], types.intp)
        ptr = builder.gep(ary.data, [i])
        return builder.atomic_rmw("add", ptr, ir.Constant(ir.IntType(64), 1), "seq_cst")

    return sig, codegen


# Typed as Any: Numba intrinsics are called inside compiled code with the typing context bound.
as_voidptr: Any = intrinsic(_as_voidptr)
fetch_add: Any = intrinsic(_fetch_add)


def compile_worker(body: Callable[..., None]) -> int:
    """Compile ``body(data: void*)`` as a ``cfunc`` chunk worker (cached on disk like the
    kernels) and return its address for `run_on_pool`."""
    worker = cfunc(types.void(types.voidptr), cache=True)(body)
    address = worker.address
    if not isinstance(address, int):
        raise RuntimeError(f"parallel kernel: Numba gave no address for {body.__name__}")
    return address


@contextlib.contextmanager
def pool_disabled() -> Iterator[None]:
    """Within this context (in this process) the kernels ignore the registered OpenMP pool and
    use Numba's own parallel kernels: for benchmarks and tests that compare the two."""
    global _POOL
    saved, _POOL = _POOL, None
    try:
        yield
    finally:
        _POOL = saved
