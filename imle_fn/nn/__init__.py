"""`torch.nn.Module` layers over the functional estimators, named after them.

`IMLE`, `AIMLE`, `CentralIMLE`, `DBB`, `Perturbed`, `STE` and the loss `FenchelYoungLoss` wrap
`imle_fn.imle`, `imle_fn.aimle`, `imle_fn.imle_central`, `imle_fn.dbb`, `imle_fn.perturbed`,
`imle_fn.ste` and `imle_fn.fenchel_young_loss`: a layer takes the solver and hyper-parameters at
construction, and ``layer(theta)`` drops into `torch.nn.Sequential`. (The estimators' records of
hyper-parameters in `imle_fn.estimators` have the same names; the layers live here, under
``imle_fn.nn``, and are not exported at the top level.)

What the layers share:

* **Noise.** A layer draws its noise from ``layer.generator``, a `torch.Generator` it owns (seeded
  from an int, or from torch's default generator when None, so `torch.manual_seed` makes a model
  reproducible) or one you give it. The noise law is the estimator's: Sum-of-Gamma with the
  solver's ``k`` for the I-MLE family (``noise_type=``, ``k=``), Gaussian or Gumbel for
  `Perturbed` and `FenchelYoungLoss`. ``forward(theta, noise=...)`` takes noise drawn elsewhere
  (`NoisyLayer.sample_noise` draws what the layer would).
* **Samples.** ``num_samples=None`` gives one sample shaped like ``theta``; ``num_samples=S`` a
  leading sample dim ``[S, *theta.shape]``, kept (``reduction="none"``) or averaged
  (``reduction="mean"``). Gradients over the samples are averaged, as in the functions.
* **Train / eval.** In eval mode (``layer.eval()``) no layer draws noise: the Perturb-and-MAP
  layers return the noise-free MAP state ``MAP(theta)`` shaped like ``theta`` (with their
  estimator's noise-free gradient; `Perturbed`'s carries none), `FenchelYoungLoss` the noise-free
  loss, and `AIMLE` leaves its state alone. `DBB` uses no noise and has no modes.
* **state_dict.** The generator's state is the layer's extra state (``get_extra_state``), so
  saving and loading a model restores its noise stream; `AIMLE`'s ``[beta, ema]`` is the buffer
  ``state``. Hyper-parameters are construction arguments, not state.
* **Hyper-parameters** (``lam``, ``alpha``, temperatures, ``sigma``, AIMLE's ``target`` /
  ``step`` / ``decay``) are attributes you may change between steps (``layer.lam = 0.5``; Python
  numbers, NumPy scalars and 0-d tensors): under `torch.compile` they are graph data, so an
  annealing schedule never recompiles.
* **torch.compile.** ``torch.compile(model)`` works; drawing noise (and taking AIMLE's state for
  a training step) runs eagerly, one graph break per call. For ``fullgraph=True`` pass the noise
  (``layer(theta, noise)``), or compile the model in eval mode.
* **Ensembles.** Under `torch.func.functional_call` + `torch.func.vmap` over stacked parameters,
  draw each model's noise outside the vmapped function and pass it in (``in_dims``); a layer that
  draws inside needs ``vmap(..., randomness="same")`` (one draw shared by every model);
  ``randomness="different"`` raises, and the default ``"error"`` raises as for any random op.
"""

from imle_fn.nn.adaptive import AIMLE
from imle_fn.nn.base import HyperParameter, NoiseType, NoisyLayer, Reduction
from imle_fn.nn.layers import DBB, IMLE, STE, CentralIMLE, Perturbed
from imle_fn.nn.losses import FenchelYoungLoss

__all__ = [
    "AIMLE",
    "DBB",
    "IMLE",
    "STE",
    "CentralIMLE",
    "FenchelYoungLoss",
    "HyperParameter",
    "NoiseType",
    "NoisyLayer",
    "Perturbed",
    "Reduction",
]
