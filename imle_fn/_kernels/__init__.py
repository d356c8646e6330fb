"""Private Numba kernels: NumPy arrays in, NumPy arrays out, no torch anywhere in this package.

* `dijkstra`: the batched vertex-weighted grid Dijkstra and its per-instance status codes.
* `sampling`: the fused Sum-of-Gamma sampler (counter-based, reproducible per block).
* `parallel`: the threading-layer policy both follow (thread and fork safety).

Import rule: kernels import only NumPy, Numba, the standard library and each other.
"""
