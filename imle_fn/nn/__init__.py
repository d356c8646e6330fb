"""`torch.nn.Module` layers over the functional estimators, named after them.

`IMLE`, `AIMLE`, `CentralIMLE`, `DBB`, `Perturbed`, `STE` and the loss `FenchelYoungLoss` wrap
`imle_fn.imle`, `imle_fn.aimle`, `imle_fn.imle_central`, `imle_fn.dbb`, `imle_fn.perturbed`,
`imle_fn.ste` and `imle_fn.fenchel_young_loss`: a layer takes the solver and hyper-parameters at
construction, and ``layer(theta)`` drops into `torch.nn.Sequential`. (The estimators' records of
hyper-parameters in `imle_fn.estimators` have the same names; the layers live here, under
``imle_fn.nn``, and are not exported at the top level.)

What the layers share:

* **Noise.** A layer draws its noise from its own random stream, whose state is the buffer
  ``rng_state``; it starts from an int seed, from a `torch.Generator` you give it (copied; a CUDA
  generator makes the layer draw on the GPU), or from torch's default generator when None (so
  `torch.manual_seed` makes a model reproducible). The noise law is the estimator's: Sum-of-Gamma
  with the solver's ``k`` for the I-MLE family (``noise_type=``, ``k=``), Gaussian or Gumbel for
  `Perturbed` and `FenchelYoungLoss`. ``forward(theta, noise=...)`` takes noise drawn elsewhere;
  `NoisyLayer.sample_noise` draws what the forward would.
* **Samples.** ``num_samples=None`` gives one sample shaped like ``theta``; ``num_samples=S`` a
  leading sample dim ``[S, *theta.shape]``, kept (``reduction="none"``) or averaged
  (``reduction="mean"``). Gradients over the samples are averaged, as in the functions.
* **Train / eval.** In eval mode (``layer.eval()``) no layer draws noise: the Perturb-and-MAP
  layers return the noise-free MAP state ``MAP(theta)`` shaped like ``theta`` (with their
  estimator's noise-free gradient; `Perturbed`'s carries none), `FenchelYoungLoss` the noise-free
  loss, and `AIMLE` leaves its state alone. `DBB` uses no noise and has no modes.
* **state_dict.** ``rng_state`` is a buffer (a CPU ``uint8`` tensor that stays on the CPU when
  the layer moves), so saving and loading a model restores its noise stream; `AIMLE`'s
  ``[beta, ema]`` is the buffer ``state``. Hyper-parameters are construction arguments, not state.
  Being a buffer, ``rng_state`` is also what `torch.nn.parallel.DistributedDataParallel`
  broadcasts from rank 0 before each forward (``broadcast_buffers=True``, its default): every
  rank then draws the same noise. For independent noise per rank, reseed each rank
  (``layer.manual_seed(seed + rank)``) and pass ``broadcast_buffers=False``.
* **Hyper-parameters** (``lam``, ``alpha``, temperatures, ``sigma``, AIMLE's ``target`` /
  ``step`` / ``decay``) are attributes you may change between steps (``layer.lam = 0.5``; Python
  numbers, NumPy scalars and 0-d tensors): under `torch.compile` they are graph data, so an
  annealing schedule does not recompile for every value (a float: two graphs, a 0-d tensor: one).
* **torch.compile.** The noise is drawn by a custom op that advances ``rng_state``, so a model
  compiles whole (``fullgraph=True``) with the eager numbers; `AIMLE` too, its state updated by
  a hook after each backward (see `imle_fn.nn.adaptive`).
* **Ensembles.** Under `torch.func.functional_call` + `torch.func.vmap` over stacked parameters
  and buffers (`torch.func.stack_module_state`), each model draws from its own stacked
  ``rng_state`` (seed the models differently); noise drawn outside and passed in (``in_dims``)
  works as for the functions. A layer called inside a vmapped function with its own, unstacked
  state draws once for every slice.
"""

from imle_fn.nn.adaptive import AIMLE
from imle_fn.nn.base import NoisyLayer
from imle_fn.nn.layers import DBB, IMLE, STE, CentralIMLE, Perturbed
from imle_fn.nn.losses import FenchelYoungLoss

__all__ = [
    "AIMLE",
    "DBB",
    "IMLE",
    "STE",
    "CentralIMLE",
    "FenchelYoungLoss",
    "NoisyLayer",
    "Perturbed",
]
