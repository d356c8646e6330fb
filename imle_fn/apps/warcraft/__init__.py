"""The Warcraft-style shortest-path benchmark on our own procedural look-alike maps.

Modules: `generator` (maps, costs, labels), `model` (networks), `methods` (training losses),
`train` (training and evaluation), `report` (tables and plots), `command` (``imle-fn bench warcraft``).
Nothing is imported here, so ``import imle_fn.apps.warcraft`` stays light.
"""
