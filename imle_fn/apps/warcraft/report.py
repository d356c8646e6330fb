"""The Warcraft benchmark's outputs: results table (markdown + JSON), accuracy plot, sample picture."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

__all__ = ["PAPER_ACCURACY", "run_label", "sample_picture", "summarise", "write_summary"]

# Published test accuracy (%, cost-optimal paths, ORIGINAL data set, 10k training maps, 50 epochs),
# K = 12 / 18 / 24 / 30. Not comparable in absolute terms with the look-alike.
# imle, dbb, fy: the I-MLE paper (Niepert et al., NeurIPS 2021, arXiv:2106.01798), Table 2, rows
# I-MLE (MAP-MAP, lambda 50), DBB (lambda 20) and DPO (sigma 0.01). The DBB paper's own Table 2
# (Vlastelica et al., ICLR 2020, arXiv:1912.02175) reports 96.0 / 94.4 / 94.4 / 94.0 for DBB.
# baseline: the DBB paper, Table 2, the ResNet18 that predicts the path directly (test accuracy).
PAPER_ACCURACY: dict[str, dict[int, float]] = {
    "imle": {12: 95.2, 18: 94.4, 24: 93.2, 30: 93.7},
    "dbb": {12: 95.2, 18: 94.7, 24: 93.8, 30: 93.6},
    "fy": {12: 94.8, 18: 92.3, 24: 91.5, 30: 91.5},
    "baseline": {12: 23.0, 18: 0.7, 24: 0.0, 30: 0.0},
}


def summarise(record: dict[str, Any]) -> dict[str, Any]:
    """One run's JSON record -> one summary row (accuracies in %, times as per-epoch medians)."""
    epochs = record["epochs"]
    last = epochs[-1]
    paper = PAPER_ACCURACY.get(record["method"], {}).get(record["grid"])

    def median(key: str) -> float:
        return float(statistics.median(e[key] for e in epochs))

    return {
        "method": record["method"],
        "augment": bool(record["config"].get("augment", False)),
        "grid": record["grid"],
        "train_maps": record["train_maps"],
        "test_maps": record["test_maps"],
        "epochs": f"{len(epochs)}/{record['config']['epochs']}",
        "cost_optimal_pct": 100 * last["test_cost_optimal"],
        "exact_pct": 100 * last["test_exact"],
        "best_cost_optimal_pct": 100 * max(e["test_cost_optimal"] for e in epochs),
        "paper_pct": paper,
        "s_network": median("time_network"),
        "s_solver": median("time_solver"),
        "s_noise": median("time_noise"),
        "s_eval": median("time_eval"),
        "solver_instances_train": int(
            statistics.median(e["solver_instances_train"] for e in epochs)
        ),
        "solver_instances_eval": int(statistics.median(e["solver_instances_eval"] for e in epochs)),
    }


def _markdown(rows: list[dict[str, Any]]) -> str:
    head = (
        "| method | K | train/test maps | epochs | cost-optimal % | exact % | best cost-optimal % "
        "| paper % (original data) | network s/epoch | solver s/epoch | noise s/epoch | eval s/epoch "
        "| solver instances/epoch (train + eval) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {_label(r)} | {r['grid']} | {r['train_maps']}/{r['test_maps']} | {r['epochs']} "
        f"| {r['cost_optimal_pct']:.1f} | {r['exact_pct']:.1f} | {r['best_cost_optimal_pct']:.1f} "
        f"| {'-' if r['paper_pct'] is None else r['paper_pct']} | {r['s_network']:.1f} "
        f"| {r['s_solver']:.2f} | {r['s_noise']:.2f} | {r['s_eval']:.1f} "
        f"| {r['solver_instances_train']} + {r['solver_instances_eval']} |"
        for r in rows
    ]
    note = (
        "\nData: our own procedural Warcraft look-alike (imle_fn.apps.warcraft.generator), NOT the original "
        "data set; the published numbers are on the original data with 10,000 training maps and 50 "
        "epochs (imle, dbb, fy: I-MLE paper, Table 2; baseline: DBB paper, Table 2). Accuracies are of the last epoch; times are medians over epochs. '+sym': trained on "
        "maps shown in random corner-preserving symmetries (--augment; not in the paper).\n"
    )
    return head + "\n".join(lines) + "\n" + note


def run_label(method: str, augment: bool) -> str:
    """The name of a run in tables and plots: the method, ``+sym`` if trained with ``--augment``."""
    return f"{method}+sym" if augment else method


def _label(row: dict[str, Any]) -> str:
    return run_label(str(row["method"]), bool(row.get("augment")))


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    write(tmp)
    tmp.replace(path)


def write_summary(out: Path) -> list[dict[str, Any]]:
    """Summarise every ``out/runs/*.json``: write ``results.md``, ``results.json``, ``accuracy.png``.

    Returns:
        The summary rows, sorted by grid then method.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    records = [r for r in records if r["epochs"]]
    records.sort(key=lambda r: (r["grid"], r["method"], bool(r["config"].get("augment", False))))
    rows = [summarise(r) for r in records]
    labels = [_label(row) for row in rows]
    _atomic_write(out / "results.md", lambda p: p.write_text(_markdown(rows)))
    _atomic_write(out / "results.json", lambda p: p.write_text(json.dumps(rows, indent=1)))
    grids = sorted({r["grid"] for r in records}) or [0]
    fig, axes = plt.subplots(1, len(grids), figsize=(5 * len(grids), 4), squeeze=False)
    for ax, grid in zip(axes[0], grids, strict=True):
        for r, label in zip(records, labels, strict=True):
            if r["grid"] != grid:
                continue
            epochs = [e["epoch"] for e in r["epochs"]]
            ax.plot(epochs, [100 * e["test_cost_optimal"] for e in r["epochs"]], label=label)
        ax.set(xlabel="epoch", ylabel="cost-optimal test paths (%)", ylim=(0, 100))
        ax.set_title(f"Warcraft look-alike, K = {grid}")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    _atomic_write(out / "accuracy.png", lambda p: fig.savefig(p, dpi=100))
    plt.close(fig)
    return rows


def sample_picture(maps: Any, path: Path, index: int = 0) -> None:
    """Save a picture of map ``index``: the image, its true costs and its shortest path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    axes[0].imshow(maps.images[index])
    axes[0].set_title("map (procedural look-alike)")
    shown = axes[1].imshow(maps.costs[index], cmap="viridis")
    fig.colorbar(shown, ax=axes[1], fraction=0.046)
    axes[1].set_title("vertex costs")
    axes[2].imshow(maps.images[index])
    k = maps.costs.shape[-1]
    rows, cols = maps.paths[index].nonzero()
    scale = maps.images.shape[1] / k
    axes[2].scatter((cols + 0.5) * scale, (rows + 0.5) * scale, c="red", s=12)
    axes[2].set_title("shortest path (0,0) -> (K-1,K-1)")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
