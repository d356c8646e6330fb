"""Private Numba kernels: NumPy arrays in, NumPy arrays out, no torch anywhere in this package.

* `dijkstra`: the batched vertex-weighted grid Dijkstra and its per-instance status codes.
* `sampling`: the fused Sum-of-Gamma sampler (counter-based, reproducible per block).
* `knapsack`: the batched exact 0/1 knapsack (a table over integer capacities).
* `parallel`: the threading-layer policy all follow (thread and fork safety).

Import rule: kernels import only NumPy, Numba, the standard library and each other.
"""
