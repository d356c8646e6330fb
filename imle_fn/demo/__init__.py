"""The seed's example end to end: ``imle-fn demo`` (map, sampled paths, gradients, learning).

Modules: `maps` (the reference map and the Hamming loss), `learning` (the I-MLE learning loop and the
reference configurations), `sampling` (Perturb-and-MAP path samples), `figures` and `animations`
(PNG and GIF writers; they need the ``demo`` extra: matplotlib, Pillow, tqdm) and `command` (the CLI).
"""
