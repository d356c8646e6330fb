"""Procedural Warcraft-style maps: OUR OWN look-alike design, not the original data set.

The Warcraft shortest-path data set of Vlastelica et al. (ICLR 2020) cannot be downloaded here and its
generator is unpublished. This module draws maps of the same shape and label convention from a design
of our own:

1. two smooth random fields on the ``K x K`` cells (white noise smoothed by a Gaussian of a random
   width): an *elevation* and a *moisture* field;
2. five terrain classes from them: water (lowest elevation), grass and forest (middle band, split by
   moisture), hills, mountains (highest), with vertex costs ``COSTS = (0.8, 1.2, 5.3, 7.7, 9.2)`` for
   (grass, forest, hills, water, mountain);
3. an RGB image at 8 px per cell: every cell drawn from one of several textured 8 x 8 tile variants of
   its class (colours of different classes overlap), borders between cells blended, a per-map tint and
   pixel noise, so that a cell's cost is not a colour lookup;
4. the label: the shortest path from cell (0, 0) to (K-1, K-1), 8-neighbourhood, the cost of a path
   being the sum of the costs of all its cells, both ends included.

Everything is deterministic given the seed: map ``i`` of ``generate_maps(n, k, seed=s)`` depends only
on ``(s, i)``, and the tile set only on ``tileset_seed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CLASS_NAMES",
    "COSTS",
    "PX_PER_CELL",
    "WarcraftMaps",
    "generate_maps",
    "load_maps",
    "make_tileset",
    "render_map",
    "save_maps",
    "terrain_classes",
]

PX_PER_CELL = 8
CLASS_NAMES = ("grass", "forest", "hills", "water", "mountain")
COSTS = np.array([0.8, 1.2, 5.3, 7.7, 9.2], dtype=np.float32)
NUM_VARIANTS = 4
_BASE_RGB = np.array(
    [
        [0.36, 0.56, 0.22],
        [0.20, 0.40, 0.16],
        [0.52, 0.46, 0.30],
        [0.18, 0.34, 0.58],
        [0.50, 0.48, 0.46],
    ]
)


@dataclass(frozen=True)
class WarcraftMaps:
    """A set of maps.

    Attributes:
        images: ``[N, 8K, 8K, 3]`` uint8 RGB images.
        costs: ``[N, K, K]`` float32 true vertex costs.
        paths: ``[N, K, K]`` uint8 shortest paths (1 on the path's cells).
        classes: ``[N, K, K]`` uint8 terrain class indices into `CLASS_NAMES`.
    """

    images: np.ndarray
    costs: np.ndarray
    paths: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return int(self.costs.shape[0])


def _smooth_field(rng: np.random.Generator, k: int, sigma: float) -> np.ndarray:
    """Return a ``[k, k]`` standardised Gaussian random field of correlation width ``sigma`` cells."""
    r = int(np.ceil(3 * sigma))
    noise = rng.standard_normal((k + 2 * r, k + 2 * r))
    offsets = np.arange(k)[:, None] - (np.arange(k + 2 * r)[None, :] - r)  # [k, k + 2r]
    g = np.exp(-0.5 * (offsets / sigma) ** 2)
    g /= g.sum(axis=1, keepdims=True)
    field = g @ noise @ g.T  # [k, k]
    return (field - field.mean()) / (field.std() + 1e-12)


def terrain_classes(rng: np.random.Generator, k: int) -> np.ndarray:
    """Draw one ``[k, k]`` map of terrain class indices (see the module docstring).

    Args:
        rng: the NumPy generator to draw from.
        k: cells per side.

    Returns:
        ``[k, k]`` uint8 class indices into `CLASS_NAMES`.
    """
    elevation = _smooth_field(rng, k, rng.uniform(1.0, 2.2))
    moisture = _smooth_field(rng, k, rng.uniform(0.7, 1.5))
    q_water, q_hills, q_mountain = (
        rng.uniform(0.04, 0.16),
        rng.uniform(0.66, 0.8),
        rng.uniform(0.84, 0.93),
    )
    t_water, t_hills, t_mountain = np.quantile(elevation, [q_water, q_hills, q_mountain])
    t_forest = np.quantile(moisture, rng.uniform(0.4, 0.7))
    classes = np.where(moisture > t_forest, 1, 0)
    classes = np.where(elevation > t_hills, 2, classes)
    classes = np.where(elevation > t_mountain, 4, classes)
    classes = np.where(elevation <= t_water, 3, classes)
    return classes.astype(np.uint8)


def make_tileset(tileset_seed: int = 0) -> np.ndarray:
    """Return the textured tiles: ``[5, NUM_VARIANTS, 8, 8, 3]`` float64 RGB in [0, 1].

    Each class has several variants (jittered base colour plus a class-specific texture: speckles for
    grass, tree crowns for forest, shading for hills, wave stripes for water, a snowy peak for
    mountains).
    """
    rng = np.random.default_rng(np.random.SeedSequence([tileset_seed, 7919]))
    p = PX_PER_CELL
    yy, xx = np.mgrid[0:p, 0:p].astype(np.float64)
    tiles = np.empty((len(CLASS_NAMES), NUM_VARIANTS, p, p, 3))
    for c in range(len(CLASS_NAMES)):
        for v in range(NUM_VARIANTS):
            base = _BASE_RGB[c] + rng.uniform(-0.07, 0.07, size=3)
            shade = 1.0 + 0.08 * rng.standard_normal((p, p))
            if c == 0:  # grass: light speckles
                shade += 0.25 * (rng.random((p, p)) < 0.12)
            elif c == 1:  # forest: two or three dark tree crowns
                for _ in range(int(rng.integers(2, 4))):
                    cy, cx, rad = (
                        rng.uniform(1, p - 1),
                        rng.uniform(1, p - 1),
                        rng.uniform(1.2, 2.4),
                    )
                    shade -= 0.35 * (((yy - cy) ** 2 + (xx - cx) ** 2) < rad**2)
            elif c == 2:  # hills: a diagonal light-to-dark slope
                shade += 0.3 * ((xx + yy) / (2 * p) - 0.5) * rng.choice([-1.0, 1.0])
            elif c == 3:  # water: horizontal waves
                shade += 0.15 * np.sin(2 * np.pi * yy / rng.uniform(2.5, 4.0) + rng.uniform(0, 6.3))
            else:  # mountain: a peak with a snowy top
                peak = np.abs(xx - rng.uniform(2.5, 4.5)) < (yy - rng.uniform(0.5, 2.5))
                shade += 0.25 * peak - 0.1
                snow = peak & (yy < 4)
                base = np.where(snow[..., None], 0.85, base)
            tiles[c, v] = np.clip(base * shade[..., None], 0.0, 1.0)
    return tiles


def render_map(rng: np.random.Generator, classes: np.ndarray, tiles: np.ndarray) -> np.ndarray:
    """Render one map of ``[K, K]`` class indices to a ``[8K, 8K, 3]`` uint8 RGB image."""
    k, p = classes.shape[0], PX_PER_CELL
    variants = rng.integers(0, tiles.shape[1], size=classes.shape)
    cells = tiles[classes, variants]  # [K, K, p, p, 3]
    image = cells.transpose(0, 2, 1, 3, 4).reshape(k * p, k * p, 3)  # [8K, 8K, 3]
    # Blend the cell borders: mix in a blurred copy near every cell boundary.
    kernel = np.exp(-0.5 * (np.arange(-3, 4) / 1.5) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(image, ((3, 3), (3, 3), (0, 0)), mode="edge")
    blurred = sum(w * padded[i : i + k * p] for i, w in enumerate(kernel))
    blurred = sum(w * blurred[:, i : i + k * p] for i, w in enumerate(kernel))
    pos = np.arange(p)
    dist = np.minimum(pos + 0.5, p - 0.5 - pos)  # distance of a pixel to its cell's border
    w1 = np.tile(np.clip(1.3 - dist / 1.6, 0.0, 1.0), k)  # [8K]
    weight = np.maximum(w1[:, None], w1[None, :])[..., None]  # [8K, 8K, 1]
    image = (1 - 0.8 * weight) * image + 0.8 * weight * blurred
    image = image * (1.0 + rng.normal(0.0, 0.05, size=3)) + rng.normal(0.0, 0.025, size=image.shape)
    return np.round(255 * np.clip(image, 0.0, 1.0)).astype(np.uint8)


def generate_maps(
    num_maps: int, grid: int, *, seed: int = 0, tileset_seed: int = 0
) -> WarcraftMaps:
    """Generate ``num_maps`` Warcraft-style maps of ``grid x grid`` cells with shortest-path labels.

    Args:
        num_maps: how many maps (N).
        grid: cells per side (K), at least 2.
        seed: map ``i`` depends only on ``(seed, i)``; use different seeds for train and test.
        tileset_seed: seed of the tile set (share it between train and test).

    Returns:
        A `WarcraftMaps` with ``images [N, 8K, 8K, 3]``, ``costs [N, K, K]``, ``paths [N, K, K]``.
    """
    if not isinstance(num_maps, int) or num_maps < 0:
        raise ValueError(f"num_maps: expected an int >= 0, got {num_maps!r}")
    if not isinstance(grid, int) or grid < 2:
        raise ValueError(f"grid: expected an int >= 2, got {grid!r}")
    from imle_fn.solvers.grid import shortest_path

    tiles = make_tileset(tileset_seed)
    p = PX_PER_CELL
    images = np.empty((num_maps, grid * p, grid * p, 3), dtype=np.uint8)
    classes = np.empty((num_maps, grid, grid), dtype=np.uint8)
    for i, child in enumerate(np.random.SeedSequence([seed, grid]).spawn(num_maps)):
        rng = np.random.default_rng(child)
        classes[i] = terrain_classes(rng, grid)
        images[i] = render_map(rng, classes[i], tiles)
    costs = COSTS[classes]  # [N, K, K]
    paths = np.asarray(shortest_path(costs)).astype(np.uint8).reshape(costs.shape)
    return WarcraftMaps(images=images, costs=costs, paths=paths, classes=classes)


def save_maps(maps: WarcraftMaps, path: str | Path) -> None:
    """Save maps as a compressed ``.npz`` (arrays ``images``, ``costs``, ``paths``, ``classes``)."""
    np.savez_compressed(
        path, images=maps.images, costs=maps.costs, paths=maps.paths, classes=maps.classes
    )


def load_maps(path: str | Path) -> WarcraftMaps:
    """Load maps saved by `save_maps`."""
    with np.load(path) as data:
        return WarcraftMaps(
            images=data["images"], costs=data["costs"], paths=data["paths"], classes=data["classes"]
        )
