"""The reference example end to end: ``imle-fn demo`` (map, sampled paths, gradients, learning).

Modules: `maps` (the reference map and the Hamming loss), `configs` (the reference's learning
configurations and hyper-parameters), `learning` (the I-MLE learning loop), `timing`, `figures`,
`animations` and `learning_animations` (PNG and GIF writers; they need the ``demo`` extra:
matplotlib, Pillow, tqdm), `pipeline` (every step in order) and `command` (the CLI).
"""
