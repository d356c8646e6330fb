"""When Numba parallel kernels may run: thread and fork safety for every Numba threading layer.

Facts (numba 0.68): the GNU OpenMP layer kills a child forked after the parent launched it as soon
as the child runs a parallel kernel (PyTorch DataLoader workers fork by default on Linux); the
workqueue layer aborts the process when two Python threads run parallel kernels at once; TBB is
safe for both. Policy, shared by every Numba kernel of imle_fn:

1. Never choose a layer for the user: ``NUMBA_THREADING_LAYER`` (or ``numba.config``) is respected.
2. Make a pip-installed TBB findable (its ``libtbb.so.12`` lives in ``<prefix>/lib``, off the
   loader path), so that Numba's default priority (tbb, omp, workqueue) picks it. Installing
   ``tbb`` is the recommended set-up.
3. Whatever layer runs, call parallel kernels only where it is safe (`parallel_is_safe` and
   `parallel_guard`): tbb -> always; omp -> not in a process forked after the layer was launched
   (callers then run their serial kernel); workqueue -> one parallel call at a time in the process,
   under a lock that is renewed in forked children. (Other code launching workqueue kernels
   without this lock can still collide with ours.)

No torch in this module.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading

import numba

__all__ = ["parallel_guard", "parallel_is_safe", "running_layer", "workqueue_lock"]


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
_OMP_FORKED = False


def running_layer() -> str | None:
    """The Numba threading layer in use, or None before the first parallel launch."""
    try:
        return str(numba.threading_layer())
    except ValueError:  # not launched yet
        return None


def _after_fork_in_child() -> None:
    global _WORKQUEUE_LOCK, _OMP_FORKED
    _WORKQUEUE_LOCK = threading.Lock()  # a parent thread may have held it at fork time
    if running_layer() == "omp":
        _OMP_FORKED = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def parallel_is_safe() -> bool:
    """False in a child forked after the OpenMP layer was launched (parallel calls abort there)."""
    return not (_OMP_FORKED and running_layer() == "omp")


def workqueue_lock() -> threading.Lock:
    """The process-wide lock that serialises parallel launches under the workqueue layer."""
    return _WORKQUEUE_LOCK


def parallel_guard() -> contextlib.AbstractContextManager[object]:
    """Context to hold around a parallel kernel call: the workqueue lock, or nothing.

    Before the first launch the layer is unknown, so that launch takes the lock too.
    """
    if running_layer() in ("workqueue", None):
        return _WORKQUEUE_LOCK
    return contextlib.nullcontext()
