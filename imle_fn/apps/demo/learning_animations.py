"""``learning_paths.gif`` and ``learning_weights.gif``: every learning configuration side by side.

Needs the ``demo`` extra (matplotlib, Pillow, tqdm).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imle_fn.apps.demo import figures as F
from imle_fn.apps.demo.animations import GifWriter, progress

__all__ = ["save_learning_gifs"]


def save_learning_gifs(
    traces: Sequence[Any], gold: np.ndarray, out: Path, *, quiet: bool = True
) -> list[Path]:
    """``learning_paths.gif`` and ``learning_weights.gif``: every configuration as it learns.

    One panel per configuration (rows: samples per step; columns: temperature pairs, in the order
    of ``traces``). The paths animation shows the noise-free MAP path of the current weights against
    gold (a tick once they are equal); the weights animation the weights themselves (diverging
    colours centred on zero, one scale for all panels that follows the largest weight).

    Args:
        traces: `imle_fn.apps.demo.learning.LearningTrace` objects with the same ``frame_steps``.
        gold: [H, W] the gold path.
        out: the output folder.
        quiet: hide the progress bars.
    """
    counts = sorted({t.config.num_samples for t in traces})
    temps = list(dict.fromkeys(t.config.temperatures for t in traces))
    cell = {(t.config.num_samples, t.config.temperatures): t for t in traces}
    steps = traces[0].frame_steps
    w_max = [
        max(float(np.abs(t.weights[i]).max()) for t in traces) or 1.0 for i in range(len(steps))
    ]
    written = []
    for kind in ("paths", "weights"):
        fig = F.new_figure(2.5 * len(temps) + 1.2, 2.6 * len(counts) + 1.0, dpi=F.GIF_DPI)
        axes = fig.subplots(len(counts), len(temps), squeeze=False)
        panels: dict[tuple[int, tuple[float, float]], tuple[Any, Any]] = {}
        for r, count in enumerate(counts):
            for c, temp in enumerate(temps):
                ax = axes[r, c]
                trace = cell.get((count, temp))
                if trace is None:
                    ax.set_axis_off()
                    continue
                if kind == "paths":
                    image = ax.imshow(F.comparison_image(trace.map_paths[0], gold))
                else:
                    image = ax.imshow(
                        trace.weights[0], cmap="RdBu_r", vmin=-w_max[0], vmax=w_max[0]
                    )
                F.label_grid(ax, gold.shape, title=_panel_title(temp, count, True), small=True)
                panels[(count, temp)] = (image, ax.title)
        animated = [a for pair in panels.values() for a in pair]
        if kind == "paths":
            fig.legend(
                handles=F.legend_patches(
                    {
                        "on both": F.PATH_COLOURS["both"],
                        "gold only": F.PATH_COLOURS["gold only"],
                        "MAP only": F.PATH_COLOURS["predicted only"],
                    }
                ),
                loc="outside lower center",
                ncol=3,
                frameon=False,
            )
            what = "noise-free MAP path of the weights"
        else:
            bar = fig.colorbar(next(iter(panels.values()))[0], ax=axes, shrink=0.8)
            bar.set_label("weight θ")
            animated.append(bar.ax)
            what = "weights θ"
        head = f"Learning with I-MLE: {what}, step"
        tail = "(τ = input/target noise temperature, S = samples per step)"
        title = fig.suptitle(f"{head} {steps[-1]} {tail}", fontsize=11)
        blitter = F.Blitter(fig, [*animated, title])
        gif = GifWriter(
            out / f"learning_{kind}.gif",
            duration_ms=120,
            hold_ms=3000,
            colours=64,
            cmaps=["RdBu_r"] if kind == "weights" else [],
        )
        for i in progress(range(len(steps)), f"learning_{kind}.gif", len(steps), quiet):
            for (count, temp), (image, panel_title) in panels.items():
                trace = cell[(count, temp)]
                ok = bool(trace.map_is_gold[steps[i]])
                panel_title.set_text(_panel_title(temp, count, ok))
                panel_title.set_color(F.PATH_COLOURS["both"] if ok else "black")
                if kind == "paths":
                    image.set_data(F.comparison_image(trace.map_paths[i], gold))
                else:
                    image.set_data(trace.weights[i])
                    image.set_clim(-w_max[i], w_max[i])
            title.set_text(f"{head} {steps[i]} {tail}")
            gif.add(blitter.render())
        written.append(gif.close())
    return written


def _panel_title(temp: tuple[float, float], count: int, gold: bool) -> str:
    return f"τ {temp[0]:g}/{temp[1]:g}, S = {count}" + ("  ✓ MAP = gold" if gold else "")
