"""``imle-fn bench dvae``: a discrete VAE whose latent code is made of k-subsets, trained with each
gradient estimator through the same model (`imle`, `aimle`, `imle_central`, `ste`, `simple`) and
with the classic continuous relaxation (`relaxed_topk`).

The set-up (defaults) follows the I-MLE paper's DVAE (Niepert, Minervini, Franceschi, NeurIPS 2021,
arXiv:2106.01798; its notebook nec-research/tf-imle ``DVAE/discrete-VAE-experiments-neurips.ipynb``)
and EdinburghNLP/torch-adaptive-imle's ``cli/vae-cli.py`` (the AIMLE paper's code, AAAI 2023,
arXiv:2209.04862):

* latent: ``m = 20`` blocks, each a k-subset of ``n = 20`` items with ``k = 10``; prior uniform over
  the ``C(20, 10)`` subsets of every block;
* encoder MLP ``D -> 512 -> 256 -> 400`` (ReLU), decoder MLP ``400 -> 256 -> 512 -> D`` (ReLU),
  Bernoulli pixels (`model`);
* Adam, learning rate 1e-3, batch 100, 100 epochs;
* I-MLE: Sum-of-Gamma noise with k = 10 and 10 terms, noise temperature 10, lambda 10, one sample,
  gradient divided by lambda (the notebook's setting); the MAP solver is `imle_fn.TopK`.

Differences from the papers, all deliberate:

* **Data.** scikit-learn's 8 x 8 digits (1,500 train / 297 test, binarised at half intensity;
  `data`), not MNIST (28 x 28, 60,000 / 10,000, grey levels fed to a Bernoulli likelihood as they are).
  The digits ship with scikit-learn; MNIST cannot be downloaded here. So D = 64 and an epoch is 15
  optimiser steps (MNIST: 600); the MLP widths are kept although they are generous for 64 pixels.
* **KL term.** Both references regularise with ``sum_blocks KL(softmax(theta_b) || uniform(1/n))``,
  the KL of a *categorical* (1-subset) code, although the code is a 10-subset. Here the KL is the
  exact one of the k-subset family to its uniform prior (`elbo.kl_to_uniform`), in training and in
  both test NELBOs.
* **Temperature in the variational law.** The I-MLE family's codes are ``TopK(theta + tau * eps)``,
  which the papers treat as samples of the k-subset family with parameters ``theta / tau``; the KL
  is therefore taken at ``theta / tau``. The references ignore ``tau`` in their KL.
* **Samplers.** Test codes come, for every method, from Sum-of-Gamma perturb-and-MAP at ``tau``
  (the papers' protocol) and from exact samples of ``q`` (`imle_fn.topk_sample`). Only the second
  gives a bound: perturb-and-MAP codes are not samples of ``q`` and are far less random at the
  scores learnt here (`train.py`'s docstring; ``tests/apps/test_dvae.py``). The reconstruction
  term uses ``--eval-samples`` codes per test image (default 1); training uses ``--samples``
  (default 1), averaged (torch-adaptive-imle sums over samples).
* **Per-method details.** ``ste`` uses the same SoG noise at ``tau`` as ``imle`` (torch-adaptive-imle's
  default is no noise); ``aimle`` uses central differences, target 10 and step 1e-3 like
  torch-adaptive-imle's DVAE command, but initial beta 1 (there 0, reached over its 600 steps per
  epoch), the same ``tau`` as the others (there 1.0 with 10 samples) and per-block norms (there
  pooled over the batch); the relaxation is Xie & Ermon's relaxed top-k of the SoG-perturbed
  parameters at a fixed temperature 0.5, where torch-adaptive-imle's ``gumbel-softmax`` relaxes a
  *categorical* code with a temperature annealed from 1 to 0.5.
* **Initialisation.** Xavier-uniform with the ReLU gain and zero biases (torch-adaptive-imle; the TF
  notebook uses Keras' defaults), drawn from a seeded generator.

Modules: `data` (the data sets and their registry), `model`, `elbo` (exact KL, Bernoulli NLL),
`methods` (the registry of methods), `train` (one run), `report` (tables and figures), `command`.
"""
