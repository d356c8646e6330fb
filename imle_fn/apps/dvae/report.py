"""The discrete VAE benchmark's outputs, rebuilt from every ``OUT/runs/*.json``.

* ``results.md`` / ``results.json``: per method, mean +- standard error over seeds (s.e. = sample
  standard deviation / sqrt(seeds); none with one seed) of the last epoch's test negative ELBO, its
  reconstruction and KL parts, the best epoch's test NELBO, the training loss, and medians over
  epochs of the wall time per epoch.
* ``curves.png``: test NELBO and training loss per epoch, one line per method (mean over seeds) with a
  +- s.e. band.
* ``reconstructions.png``: the first test images and, one row per method, the pixel probabilities the
  decoder gives them at the last epoch (first seed, one sampled code).
"""

from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path
from typing import Any

__all__ = ["load_records", "mean_se", "summarise", "write_summary"]

# Settings that must agree between the runs of one summary (all but method and seed).
_SHARED = ("dataset", "binarize", "data_seed", "train_size", "test_size")


def mean_se(values: list[float]) -> tuple[float, float | None]:
    """Mean and standard error (sample std / sqrt(n)); the error is None for fewer than 2 values.

    Raises:
        ValueError: ``values`` is empty.
    """
    if not values:
        raise ValueError("values: expected at least one value, got none")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    return mean, statistics.stdev(values) / math.sqrt(len(values))


def _setup(record: dict[str, Any]) -> dict[str, Any]:
    config = dict(record["config"])
    config.pop("method"), config.pop("seed"), config.pop("progress")
    settings = dict(config.pop("settings"))
    return {**{key: record[key] for key in _SHARED}, **config, **settings}


def load_records(out: Path) -> list[dict[str, Any]]:
    """Every finished-or-running run under ``out/runs`` (at least one epoch), sorted by method, seed.

    Raises:
        ValueError: runs of different set-ups (anything but method and seed differs) in one folder.
    """
    from imle_fn.apps.dvae.methods import METHODS

    records = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    records = [r for r in records if r["epochs"]]
    order = {name: i for i, name in enumerate(METHODS)}
    records.sort(key=lambda r: (order.get(r["method"], len(order)), r["method"], r["seed"]))
    setups = {json.dumps(_setup(r), sort_keys=True) for r in records}
    if len(setups) > 1:
        raise ValueError(
            f"out: {out / 'runs'} holds runs of {len(setups)} different set-ups; use one --out per set-up"
        )
    return records


def _median(record: dict[str, Any], key: str) -> float:
    return float(statistics.median(e[key] for e in record["epochs"]))


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per method: means and standard errors over its seeds (see the module docstring)."""
    methods = list(dict.fromkeys(r["method"] for r in records))
    rows = []
    for method in methods:
        runs = [r for r in records if r["method"] == method]
        last = [r["epochs"][-1] for r in runs]
        row: dict[str, Any] = {
            "method": method,
            "seeds": [r["seed"] for r in runs],
            "epochs": [len(r["epochs"]) for r in runs],
        }
        for key in ("test_nelbo", "test_recon", "test_kl", "train_loss"):
            row[key], row[f"{key}_se"] = mean_se([e[key] for e in last])
        if all("test_nelbo_exact" in e for e in last):  # runs of earlier versions lack it
            row["test_nelbo_exact"], row["test_nelbo_exact_se"] = mean_se(
                [e["test_nelbo_exact"] for e in last]
            )
        best = [min(e["test_nelbo"] for e in r["epochs"]) for r in runs]
        row["best_test_nelbo"], row["best_test_nelbo_se"] = mean_se(best)
        for key in ("time_train", "time_eval", "time_kl", "time_solver", "time_noise"):
            row[f"{key}_median"] = statistics.median(_median(r, key) for r in runs)
        rows.append(row)
    return rows


def _pm(mean: float, se: float | None) -> str:
    return f"{mean:.2f}" if se is None else f"{mean:.2f} +- {se:.2f}"


def _markdown(rows: list[dict[str, Any]], setup: dict[str, Any]) -> str:
    head = (
        "| method | seeds | epochs | test NELBO (nats/image) | reconstruction | KL | test NELBO, "
        "exact q | best-epoch test NELBO | train loss | train s/epoch | eval s/epoch | KL s/epoch "
        "(fwd) | solver s/epoch |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['method']} | {len(r['seeds'])} | {min(r['epochs'])} "
        f"| **{_pm(r['test_nelbo'], r['test_nelbo_se'])}** | {_pm(r['test_recon'], r['test_recon_se'])} "
        f"| {_pm(r['test_kl'], r['test_kl_se'])} "
        f"| {_pm(r['test_nelbo_exact'], r['test_nelbo_exact_se']) if 'test_nelbo_exact' in r else '-'} "
        f"| {_pm(r['best_test_nelbo'], r['best_test_nelbo_se'])} "
        f"| {_pm(r['train_loss'], r['train_loss_se'])} | {r['time_train_median']:.2f} "
        f"| {r['time_eval_median']:.2f} | {r['time_kl_median']:.2f} | {r['time_solver_median']:.2f} |"
        for r in rows
    ]
    note = (
        f"\nData: {setup['dataset']} ({setup['train_size']} train / {setup['test_size']} test "
        f"images, binarised by {setup['binarize']}, split seed {setup['data_seed']}). Latent: "
        f"{setup['blocks']} blocks of {setup['k']}-subsets of {setup['items']} items, uniform prior, "
        f"noise temperature {setup['temperature']}. Adam lr {setup['lr']}, batch {setup['batch_size']}, "
        f"{setup['samples']} code(s) per image in training, {setup['eval_samples']} in evaluation. "
        "Numbers are of the last epoch, mean +- standard error over seeds; times are medians over "
        "epochs and seeds. NELBO = reconstruction (Bernoulli NLL summed over pixels) + exact KL to "
        "the uniform k-subset prior of q = p(.; theta / tau). Test NELBO: codes by Sum-of-Gamma "
        "perturb-and-MAP (the papers' protocol; their law is not q, so this is not a bound); "
        "exact q: codes sampled exactly from q (a true negative ELBO).\n"
    )
    return head + "\n".join(lines) + "\n" + note


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    write(tmp)
    tmp.replace(path)


def _curves(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    exact = all("test_nelbo_exact" in e for r in records for e in r["epochs"])
    keys = (
        ("test_nelbo", "test_nelbo_exact", "train_loss") if exact else ("test_nelbo", "train_loss")
    )
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4))
    for method in dict.fromkeys(r["method"] for r in records):
        runs = [r for r in records if r["method"] == method]
        length = min(len(r["epochs"]) for r in runs)
        epochs = np.arange(1, length + 1)
        for ax, key in zip(axes, keys, strict=True):
            values = np.array([[e[key] for e in r["epochs"][:length]] for r in runs])  # [seeds, E]
            mean = values.mean(0)
            (line,) = ax.plot(epochs, mean, label=f"{method} ({len(runs)} seeds)")
            if len(runs) > 1:
                se = values.std(0, ddof=1) / math.sqrt(len(runs))
                ax.fill_between(epochs, mean - se, mean + se, color=line.get_color(), alpha=0.2)
    titles = {
        "test_nelbo": ("test negative ELBO (nats / image)", "test NELBO, perturb-and-MAP codes"),
        "test_nelbo_exact": ("test negative ELBO (nats / image)", "test NELBO, exact samples of q"),
        "train_loss": ("training loss (nats / image)", "training loss"),
    }
    for ax, key in zip(axes, keys, strict=True):
        ax.set(xlabel="epoch", ylabel=titles[key][0], title=titles[key][1])
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    _atomic_write(path, lambda p: fig.savefig(p, dpi=100))
    plt.close(fig)


def _reconstructions(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    first: dict[str, dict[str, Any]] = {}
    for r in records:
        first.setdefault(r["method"], r)
    any_run = next(iter(first.values()))
    h, w = any_run["image_shape"]
    rows = [("test images", np.array(any_run["test_images_shown"]))]
    rows += [(m, np.array(r["reconstructions"])) for m, r in first.items()]
    cols = len(rows[0][1])
    mosaic = np.full((len(rows) * (h + 1) - 1, cols * (w + 1) - 1), np.nan)  # NaN: white gaps
    for i, (_, pixels) in enumerate(rows):
        for j in range(min(cols, len(pixels))):
            mosaic[i * (h + 1) : i * (h + 1) + h, j * (w + 1) : j * (w + 1) + w] = pixels[
                j
            ].reshape(h, w)
    fig, ax = plt.subplots(figsize=(0.8 * cols + 1.8, 0.8 * len(rows) + 0.6))
    ax.imshow(np.ma.masked_invalid(mosaic), cmap="gray_r", vmin=0.0, vmax=1.0)
    ax.set_yticks([i * (h + 1) + (h - 1) / 2 for i in range(len(rows))], [r[0] for r in rows])
    ax.set_xticks([])
    ax.set_title("test images and p(pixel = 1 | z) at the last epoch (first seed, one code)")
    fig.tight_layout()
    _atomic_write(path, lambda p: fig.savefig(p, dpi=100))
    plt.close(fig)


def write_summary(out: Path, *, figures: bool = True) -> list[dict[str, Any]]:
    """Rebuild ``results.md``, ``results.json`` and (``figures``) ``curves.png`` and
    ``reconstructions.png``.

    Returns:
        The summary rows (empty when no run has finished an epoch; then nothing is written).

    Raises:
        ValueError: runs of different set-ups in one folder.
    """
    import matplotlib

    matplotlib.use("Agg")
    records = load_records(out)
    if not records:
        return []
    rows = summarise(records)
    setup = _setup(records[0])
    _atomic_write(out / "results.md", lambda p: p.write_text(_markdown(rows, setup)))
    summary = {"setup": setup, "methods": rows}
    _atomic_write(out / "results.json", lambda p: p.write_text(json.dumps(summary, indent=1)))
    if figures:
        _curves(records, out / "curves.png")
        _reconstructions(records, out / "reconstructions.png")
    return rows
