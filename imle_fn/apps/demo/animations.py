"""The demo's animations (GIF): sampled paths, their distribution and the I-MLE gradients.

Each animation reuses one figure and updates its artists frame by frame; frames are quantised to one
shared 256-colour palette and written with Pillow. Needs the ``demo`` extra (matplotlib, Pillow,
tqdm).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from imle_fn.apps.demo import figures as F

__all__ = [
    "GifWriter",
    "progress",
    "save_distribution_gif",
    "save_gradients_gif",
    "save_paths_gif",
]

T = TypeVar("T")


class GifWriter:
    """Collects RGB frames and writes them as one looping GIF with a shared palette.

    Args:
        path: the GIF to write.
        duration_ms: display time of each frame.
        hold_ms: display time of the last frame (to pause before the loop restarts).
        colours: size of the shared palette (fewer colours, smaller file).
        cmaps: names of the matplotlib colour maps the frames use; their colours are weighted into
            the palette so that rare shades (one cell of a colour bar's extreme) keep their hue.
    """

    def __init__(
        self,
        path: Path,
        *,
        duration_ms: int,
        hold_ms: int | None = None,
        colours: int = 256,
        cmaps: Sequence[str] = (),
    ) -> None:
        if not 2 <= colours <= 256:
            raise ValueError(f"colours: expected 2..256, got {colours}")
        self.path = path
        self.colours = colours
        self.cmaps = tuple(cmaps)
        self.duration_ms = duration_ms
        self.hold_ms = hold_ms if hold_ms is not None else duration_ms
        self.frames: list[np.ndarray] = []

    def add(self, rgb: np.ndarray) -> None:
        """Append one frame: [height, width, 3] uint8."""
        self.frames.append(rgb)

    def close(self) -> Path:
        """Quantise every frame to one palette and write the GIF; returns its path."""
        from PIL import Image

        if not self.frames:
            raise ValueError(f"{self.path.name}: no frames to write")
        picks = np.linspace(0, len(self.frames) - 1, num=min(6, len(self.frames))).astype(int)
        parts = [self.frames[i] for i in picks]
        width = parts[0].shape[1]
        for name in self.cmaps:
            parts.append(_swatch(name, width, rows=max(1, parts[0].shape[0] // 4)))
        sample = Image.fromarray(np.concatenate(parts, axis=0))
        palette = sample.quantize(colors=self.colours, method=Image.Quantize.MEDIANCUT)
        images = [
            Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE)
            for f in self.frames
        ]
        durations = [self.duration_ms] * (len(images) - 1) + [self.hold_ms]
        images[0].save(
            self.path,
            save_all=True,
            append_images=images[1:],
            duration=durations,
            loop=0,
            optimize=True,  # shrink the palette to the colours used: fewer bits per pixel
        )
        self.frames = []
        return self.path


def _swatch(cmap: str, width: int, rows: int) -> np.ndarray:
    """[rows, width, 3] uint8 bands of the colour map's colours, left to right."""
    from matplotlib import colormaps

    ramp = colormaps[cmap](np.linspace(0.0, 1.0, width))[:, :3]  # [width, 3]
    return np.repeat((ramp * 255).round().astype(np.uint8)[None], rows, axis=0)


def progress(items: Iterable[T], desc: str, total: int, quiet: bool) -> Iterator[T]:
    """``items`` with a tqdm progress bar (in frames) unless ``quiet``."""
    from tqdm.auto import tqdm

    yield from tqdm(items, desc=desc, total=total, disable=quiet, leave=False, unit="frame")


def save_paths_gif(
    theta: np.ndarray,
    gold: np.ndarray,
    paths: np.ndarray,
    path: Path,
    *,
    subtitle: str,
    quiet: bool = True,
) -> Path:
    """``paths.gif``: one sampled path a frame, over the map, with the gold path for reference.

    Args:
        theta: [H, W] the map's weights.
        gold: [H, W] the gold (noise-free MAP) path.
        paths: [N, H, W] sampled paths (Perturb-and-MAP).
        path: where to write.
        subtitle: how the samples were drawn (shown under the title).
        quiet: hide the progress bar.
    """
    fig = F.new_figure(6.0, 5.6, dpi=F.GIF_DPI)
    ax = fig.add_subplot()
    image = F.draw_map(ax, theta)
    sampled = ax.imshow(F.path_overlay(paths[0], F.SAMPLED, 0.9))
    rows, cols = np.nonzero(gold)
    dots = ax.scatter(cols, rows, s=10, color=F.GOLD, marker="o", zorder=3)
    F.label_grid(ax, theta.shape, title="")
    bar = fig.colorbar(image, ax=ax, shrink=0.85)
    bar.set_label("weight θ")
    handles = F.legend_patches({"sampled path": F.SAMPLED})
    handles.append(
        ax.scatter([], [], s=10, color=F.GOLD, marker="o", label="gold path (noise-free MAP)")
    )
    ax.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False
    )
    title = ax.set_title(f"Sampled path {len(paths)} of {len(paths)}\n{subtitle}", fontsize=10)
    blitter = F.Blitter(fig, [sampled, dots, title])
    writer = GifWriter(path, duration_ms=250, hold_ms=1000, cmaps=["Greys_r"])
    for i in progress(range(len(paths)), "paths.gif", len(paths), quiet):
        sampled.set_data(F.path_overlay(paths[i], F.SAMPLED, 0.9))
        title.set_text(f"Sampled path {i + 1} of {len(paths)}\n{subtitle}")
        writer.add(blitter.render())
    return writer.close()


def save_distribution_gif(
    theta: np.ndarray,
    paths: np.ndarray,
    gif_path: Path,
    png_path: Path,
    *,
    subtitle: str,
    quiet: bool = True,
) -> tuple[Path, Path]:
    """``distribution.gif`` and its last frame: the running share of sampled paths through each cell.

    Args:
        theta: [H, W] the map's weights (its walls are drawn in grey).
        paths: [N, H, W] sampled paths.
        gif_path: where to write the animation.
        png_path: where to write the final still (after all N samples).
        subtitle: how the samples were drawn.
        quiet: hide the progress bar.
    """
    freq = np.cumsum(paths, axis=0) / np.arange(1, len(paths) + 1)[:, None, None]  # [N, H, W]
    fig = F.new_figure(6.0, 5.2, dpi=F.GIF_DPI)
    ax = fig.add_subplot()
    image = ax.imshow(freq[0], cmap="magma", vmin=0.0, vmax=1.0)
    walls = theta <= theta.min()
    wall_image = ax.imshow(F.path_overlay(walls, F.WALL))
    F.label_grid(ax, paths.shape[1:], title="")
    bar = fig.colorbar(image, ax=ax, shrink=0.9)
    bar.set_label("share of sampled paths through the cell")
    ax.legend(
        handles=F.legend_patches({"wall": F.WALL}),
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12),
        frameon=False,
    )
    title = ax.set_title(
        f"Distribution over paths after {len(paths)} samples\n{subtitle}", fontsize=10
    )
    blitter = F.Blitter(fig, [image, wall_image, title])
    writer = GifWriter(gif_path, duration_ms=100, hold_ms=2500, cmaps=["magma"])
    for i in progress(range(len(paths)), "distribution.gif", len(paths), quiet):
        image.set_data(freq[i])
        title.set_text(f"Distribution over paths after {i + 1} samples\n{subtitle}")
        writer.add(blitter.render())
    fig.canvas.draw()
    F.save_png(fig, png_path)
    return writer.close(), png_path


def save_gradients_gif(
    gold: np.ndarray, trace: Any, path: Path, *, subtitle: str, quiet: bool = True
) -> Path:
    """``gradients.gif``: the I-MLE gradient on a flat map's weights as they are updated.

    Three panels per frame: the model's weights, the gradient of the loss with respect to them
    (diverging colours centred on zero; Adam moves the weights against it) and the model's MAP path
    against the gold path.

    Args:
        gold: [H, W] the gold path.
        trace: a `imle_fn.apps.demo.learning.LearningTrace` started from a flat map, with gradients.
        path: where to write.
        subtitle: the configuration.
        quiet: hide the progress bar.
    """
    num = len(trace.gradients)
    weights, grads, maps = trace.weights[:num], trace.gradients, trace.map_paths[:num]
    g_max = float(np.abs(grads).max()) or 1.0
    w_lo, w_hi = float(weights.min()), float(weights.max())
    fig = F.new_figure(13.0, 4.6, dpi=F.GIF_DPI)
    axes = fig.subplots(1, 3)
    w_img = axes[0].imshow(weights[0], cmap="viridis", vmin=w_lo, vmax=max(w_hi, w_lo + 1e-6))
    fig.colorbar(w_img, ax=axes[0], shrink=0.8).set_label("weight θ")
    g_img = axes[1].imshow(grads[0], cmap="RdBu_r", vmin=-g_max, vmax=g_max)
    bar = fig.colorbar(g_img, ax=axes[1], shrink=0.8)
    bar.set_label("∂loss/∂θ (blue: the update raises θ)")
    m_img = axes[2].imshow(F.comparison_image(maps[0], gold))
    F.label_grid(axes[0], gold.shape, title="model weights θ")
    F.label_grid(axes[1], gold.shape, title="I-MLE gradient (mean over samples)")
    F.label_grid(axes[2], gold.shape, title="MAP path of θ vs gold path")
    axes[2].legend(
        handles=F.legend_patches(
            {
                "on both": F.PATH_COLOURS["both"],
                "gold only": F.PATH_COLOURS["gold only"],
                "MAP only": F.PATH_COLOURS["predicted only"],
            }
        ),
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12),
        ncol=3,
        frameon=False,
        fontsize=8,
    )
    head = "I-MLE gradients on a flat map, step"
    title = fig.suptitle(f"{head} {trace.frame_steps[-1]}\n{subtitle}", fontsize=11)
    blitter = F.Blitter(fig, [w_img, g_img, m_img, title])
    writer = GifWriter(path, duration_ms=120, hold_ms=2000, cmaps=["viridis", "RdBu_r"])
    for i in progress(range(num), "gradients.gif", num, quiet):
        w_img.set_data(weights[i])
        g_img.set_data(grads[i])
        m_img.set_data(F.comparison_image(maps[i], gold))
        title.set_text(f"{head} {trace.frame_steps[i]}\n{subtitle}")
        writer.add(blitter.render())
    return writer.close()
