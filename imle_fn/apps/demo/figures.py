"""Static pictures of the demo (PNG) and the drawing helpers its animations share.

Needs the ``demo`` extra (matplotlib). Figures are built on a bare `matplotlib.figure.Figure` with the
Agg canvas: no pyplot, no global backend switch, nothing left open.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "PATH_COLOURS",
    "Blitter",
    "comparison_image",
    "label_grid",
    "new_figure",
    "path_overlay",
    "save_gold_png",
    "save_learning_png",
    "save_map_png",
    "save_png",
]

DPI = 100
"""Resolution of the PNGs."""
GIF_DPI = 80
"""Resolution of the animations' frames (smaller files)."""
SAMPLED = "#ff7f0e"  # orange: a sampled / predicted path
GOLD = "#1f77b4"  # blue: the gold path
WALL = "#8c8c8c"  # grey: walls drawn over a colour map
PATH_COLOURS = {"both": "#2ca02c", "gold only": "#c7c7c7", "predicted only": "#d62728"}
"""Colours of `comparison_image`: cells on both paths, on the gold path only, on the prediction only."""


def new_figure(width: float, height: float, *, dpi: int = DPI) -> Figure:
    """A `Figure` of ``width x height`` inches at ``dpi`` with an Agg canvas and constrained layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


class Blitter:
    """Fast frames of a figure in which only ``artists`` change (matplotlib blitting).

    The figure is laid out and drawn once without the animated artists; each `render` restores that
    background and draws only the artists. Give every changing artist (images, changing titles,
    a colour bar's axes whose limits move) with its widest content before creating the `Blitter`.
    """

    def __init__(self, fig: Figure, artists: Sequence[Any]) -> None:
        self.fig = fig
        self.artists = list(artists)
        for artist in self.artists:
            artist.set_animated(True)
        fig.canvas.draw()
        fig.set_layout_engine("none")  # freeze the layout: later draws do not move anything
        self.background = fig.canvas.copy_from_bbox(fig.bbox)  # type: ignore[attr-defined]

    def render(self) -> np.ndarray:
        """The current frame: [height, width, 3] uint8 RGB."""
        canvas = self.fig.canvas
        canvas.restore_region(self.background)  # type: ignore[attr-defined]
        for artist in self.artists:
            self.fig.draw_artist(artist)
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()  # type: ignore[attr-defined]


def save_png(fig: Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` as a PNG and return the path."""
    fig.savefig(path, dpi=DPI)
    return path


def label_grid(ax: Axes, shape: Sequence[int], *, title: str, small: bool = False) -> None:
    """Title, row/column labels and ticks every 3 cells for a map drawn with ``imshow``."""
    H, W = shape
    fs = 8 if small else 10
    ax.set_title(title, fontsize=fs + 1)
    ax.set_xticks(range(0, W, 3))
    ax.set_yticks(range(0, H, 3))
    ax.tick_params(labelsize=fs - 1, length=2)
    if not small:
        ax.set_xlabel("column")
        ax.set_ylabel("row")


def path_overlay(path: np.ndarray, colour: str, alpha: float = 1.0) -> np.ndarray:
    """RGBA image [H, W, 4] that paints the cells of ``path`` ([H, W], 0/1) and leaves the rest clear."""
    from matplotlib.colors import to_rgba

    out = np.zeros((*path.shape, 4))
    out[path > 0.5] = to_rgba(colour, alpha)
    return out


def comparison_image(predicted: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """RGB image [H, W, 3] of a predicted path against the gold path (colours in `PATH_COLOURS`)."""
    from matplotlib.colors import to_rgb

    out = np.ones((*gold.shape, 3))
    p, g = predicted > 0.5, gold > 0.5
    out[p & g] = to_rgb(PATH_COLOURS["both"])
    out[g & ~p] = to_rgb(PATH_COLOURS["gold only"])
    out[p & ~g] = to_rgb(PATH_COLOURS["predicted only"])
    return out


def legend_patches(colours: dict[str, str]) -> list[Any]:
    """Legend handles: one filled square per ``label -> colour``."""
    from matplotlib.patches import Patch

    return [Patch(facecolor=c, edgecolor="0.3", label=label) for label, c in colours.items()]


def draw_map(ax: Axes, theta: np.ndarray) -> Any:
    """The map's weights in grey (walls dark); returns the image artist (for a colour bar)."""
    return ax.imshow(theta, cmap="Greys_r", vmin=float(theta.min()), vmax=0.0)


def save_map_png(theta: np.ndarray, path: Path) -> Path:
    """``map.png``: the weights of the map with a colour bar."""
    fig = new_figure(6.0, 5.0)
    ax = fig.add_subplot()
    image = ax.imshow(theta, cmap="magma")
    label_grid(ax, theta.shape, title="The map: weights θ (−1 open ground, −100 walls)")
    bar = fig.colorbar(image, ax=ax, shrink=0.9)
    bar.set_label("weight θ (score; the path's cost is −θ per cell)")
    return save_png(fig, path)


def save_gold_png(theta: np.ndarray, gold: np.ndarray, path: Path) -> Path:
    """``gold.png``: the shortest path from the top-left to the bottom-right cell over the map."""
    fig = new_figure(6.0, 5.0)
    ax = fig.add_subplot()
    image = draw_map(ax, theta)
    ax.imshow(path_overlay(gold, GOLD))
    label_grid(
        ax, theta.shape, title=f"Gold path: the MAP (shortest) path, {int(gold.sum())} cells"
    )
    bar = fig.colorbar(image, ax=ax, shrink=0.9)
    bar.set_label("weight θ")
    ax.legend(
        handles=legend_patches({"gold path": GOLD}),
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12),
        frameon=False,
    )
    return save_png(fig, path)


def save_learning_png(traces: Sequence[Any], path: Path, *, smooth: int = 25) -> Path:
    """``learning.png``: the sampled Hamming loss of every configuration, one panel per sample count.

    Args:
        traces: `imle_fn.apps.demo.learning.LearningTrace` objects.
        path: where to write.
        smooth: width of the moving average drawn over the raw (faint) curve.
    """
    counts = sorted({t.config.num_samples for t in traces})
    fig = new_figure(4.2 * len(counts) + 0.6, 4.4)
    axes = fig.subplots(1, len(counts), sharey=True, squeeze=False)[0]
    colours: dict[tuple[float, float], str] = {}
    for ax, count in zip(axes, counts, strict=True):
        for trace in (t for t in traces if t.config.num_samples == count):
            key = trace.config.temperatures
            colour = colours.setdefault(key, f"C{len(colours)}")
            steps = np.arange(trace.losses.size)
            width = max(1, min(smooth, trace.losses.size))
            avg = np.convolve(trace.losses, np.ones(width) / width, mode="valid")
            first = trace.first_gold_step
            ax.plot(
                steps[width - 1 :],
                avg,
                color=colour,
                linewidth=1.6,
                label=f"τ {key[0]:g}/{key[1]:g} (MAP = gold at step {first if first is not None else '—'})",
            )
            if first is not None:
                ax.axvline(first, color=colour, linestyle=":", linewidth=1.0)
        ax.set_title(f"{count} sample{'s' if count > 1 else ''} per step")
        ax.set_xlabel("Adam step")
        ax.set_yscale("symlog", linthresh=1.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="input/target temperature", title_fontsize=7, loc="best")
    axes[0].set_ylabel(f"sampled Hamming loss ({smooth}-step moving average)")
    fig.suptitle(
        "I-MLE learning of the map's weights (dotted: first step the MAP path equals gold)"
    )
    return save_png(fig, path)
