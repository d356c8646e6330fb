"""``imle-fn bench warcraft``: train and evaluate methods on the Warcraft look-alike maps.

Example::

    imle-fn bench warcraft --grid 12 --train 2000 --test 1000 --epochs 20 --method imle --out out/wc

Each run writes ``OUT/runs/k{K}-{method}[-aug].json`` (config and per-epoch metrics); afterwards the
summary over every run found in ``OUT/runs`` is rewritten: ``OUT/results.md``, ``OUT/results.json``
and ``OUT/accuracy.png`` (test accuracy per epoch). The maps are generated once and cached in
``--data-dir`` (default ``OUT/data``) with a sample picture. The maps are OUR OWN procedural
look-alike, not the original Warcraft data set (see `imle_fn.apps.warcraft.generator`).

Long runs survive being killed: after every epoch the run's whole training state is checkpointed to
``OUT/runs/k{K}-{method}[-aug].ckpt.pt`` (written to a temporary file, then renamed; deleted when the
run finishes). With ``--resume`` a run with a checkpoint continues from the epoch after it,
bit-identically to an uninterrupted run (same machine, same ``--threads``); a finished run (its
JSON holds every epoch) is skipped; a run whose stored settings differ from the current ones stops
the command with a ValueError naming the differing fields. Without ``--resume`` every run starts
afresh and overwrites its files.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Attach the command's options (the paper's optimiser settings are the defaults).

    Every value is checked as it is parsed (`imle_fn.apps.arguments`): a bad one stops the command
    with an argparse error (exit status 2) before any map is generated.
    """
    from imle_fn.apps.arguments import (
        int_at_least,
        positive_float,
        positive_int,
        seed,
        writable_dir,
    )
    from imle_fn.apps.warcraft.methods import METHODS

    parser.add_argument("--grid", type=int_at_least(2), default=12, help="cells per side K")
    parser.add_argument("--train", type=positive_int, default=10000, help="training maps")
    parser.add_argument("--test", type=positive_int, default=1000, help="test maps")
    parser.add_argument("--epochs", type=positive_int, default=50, help="epochs")
    parser.add_argument(
        "--method",
        nargs="+",
        choices=METHODS,
        default=["imle"],
        help="method(s) to run in turn",
    )
    parser.add_argument(
        "--out", type=writable_dir, default=Path("out/warcraft"), help="output folder"
    )
    parser.add_argument(
        "--data-dir", type=writable_dir, default=None, help="map cache (default: OUT/data)"
    )
    parser.add_argument(
        "--seed", type=seed, default=0, help="training seed (network, batches, noise)"
    )
    parser.add_argument("--data-seed", type=seed, default=0, help="map seed (test maps use +1)")
    parser.add_argument("--batch-size", type=positive_int, default=70, help="maps per step")
    parser.add_argument("--lr", type=positive_float, default=5e-4, help="Adam learning rate")
    parser.add_argument("--lam-imle", type=positive_float, default=50.0, help="I-MLE lambda")
    parser.add_argument("--lam-dbb", type=positive_float, default=20.0, help="DBB lambda")
    parser.add_argument(
        "--sigma-fy", type=positive_float, default=0.01, help="Fenchel-Young noise scale"
    )
    parser.add_argument(
        "--num-samples", type=positive_int, default=1, help="noise samples per map (fy)"
    )
    cpus = os.cpu_count() or 1
    parser.add_argument(
        "--threads",
        type=int_at_least(1, cpus),
        default=None,
        help=f"torch threads, at most this machine's {cpus} CPUs (default: torch's)",
    )
    parser.add_argument(
        "--augment",
        action="store_true",
        help="show training maps in random corner-preserving symmetries (not in the paper)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue each killed run from its last epoch's checkpoint in OUT/runs "
        "(bit-identical to an uninterrupted run) and skip finished ones; the settings must match",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def _load_or_generate(data_dir: Path, num: int, grid: int, seed: int) -> Any:
    from imle_fn.apps.warcraft.generator import generate_maps, load_maps, save_maps

    path = data_dir / f"k{grid}-seed{seed}-n{num}.npz"
    if path.exists():
        return load_maps(path)
    maps = generate_maps(num, grid, seed=seed)
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    save_maps(maps, tmp)
    tmp.replace(path)
    return maps


def _tensors(maps: Any, mean: Any, std: Any) -> tuple[Any, Any, Any]:
    import torch

    images = torch.from_numpy(maps.images).permute(0, 3, 1, 2).float().div_(255.0)  # [N, 3, H, W]
    images = (images - mean) / std
    return images.contiguous(), torch.from_numpy(maps.costs), torch.from_numpy(maps.paths).float()


# What a run's JSON must share with the current set-up for --resume to accept it.
_RECORD_KEYS = ("grid", "train_maps", "test_maps", "data_seed")


def _finished(run_path: Path, record: dict[str, Any]) -> bool:
    """Is ``run_path`` a finished run of this set-up? False if it is absent or unfinished.

    Raises:
        ValueError: the stored run was made with other settings (the message names them).
    """
    from imle_fn.apps.warcraft.train import config_differences

    if not run_path.exists():
        return False
    old = json.loads(run_path.read_text())

    def key(rec: dict[str, Any]) -> dict[str, Any]:
        config = {k: v for k, v in rec.get("config", {}).items() if k != "progress"}
        return {**config, **{k: rec.get(k) for k in _RECORD_KEYS}}

    differences = config_differences(key(old), key(record))
    if differences:
        raise ValueError(
            f"{run_path}: made by a different run, cannot resume: "
            + "; ".join(differences)
            + "; rerun without --resume to start over"
        )
    return len(old.get("epochs", [])) == record["config"]["epochs"]


def run(args: argparse.Namespace) -> int:
    """Generate (or load) the maps, train each requested method, write the results.

    ``args`` come from the parser `add_arguments` builds, which has checked every value.

    Raises:
        ValueError: with ``--resume``, a stored run (checkpoint or JSON) made with other settings,
            or an unreadable checkpoint.
    """
    import torch

    from imle_fn.apps.warcraft.report import sample_picture, write_summary
    from imle_fn.apps.warcraft.train import TrainConfig, train

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out: Path = args.out
    data_dir: Path = args.data_dir if args.data_dir is not None else out / "data"
    train_maps = _load_or_generate(data_dir, args.train, args.grid, args.data_seed)
    test_maps = _load_or_generate(data_dir, args.test, args.grid, args.data_seed + 1)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    picture = data_dir / f"sample-k{args.grid}.png"
    if not picture.exists():
        sample_picture(test_maps, picture)
    pixels = torch.from_numpy(train_maps.images).float().div_(255.0)  # [N, H, W, 3]
    mean = pixels.mean(dim=(0, 1, 2)).view(1, 3, 1, 1)
    std = pixels.std(dim=(0, 1, 2)).view(1, 3, 1, 1)
    del pixels
    train_data = _tensors(train_maps, mean, std)
    test_data = _tensors(test_maps, mean, std)
    for method in args.method:
        config = TrainConfig(
            method=method,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            lam_imle=args.lam_imle,
            lam_dbb=args.lam_dbb,
            sigma_fy=args.sigma_fy,
            num_samples=args.num_samples,
            seed=args.seed,
            progress=not args.no_progress,
            augment=args.augment,
        )
        record: dict[str, Any] = {
            "method": method,
            "grid": args.grid,
            "train_maps": args.train,
            "test_maps": args.test,
            "data_seed": args.data_seed,
            "torch_threads": torch.get_num_threads(),
            "config": dataclasses.asdict(config),
            "epochs": [],
        }
        suffix = "-aug" if args.augment else ""
        run_path = out / "runs" / f"k{args.grid}-{method}{suffix}.json"
        checkpoint = run_path.with_suffix(".ckpt.pt")
        if args.resume and not checkpoint.exists() and run_path.exists():
            if _finished(run_path, record):
                print(f"[{method} K={args.grid}] finished earlier: {run_path}", flush=True)
                write_summary(out)
                continue
            print(f"[{method} K={args.grid}] no checkpoint to resume from: starting afresh")

        def restored(
            history: list[Any], record: dict[str, Any] = record, run_path: Path = run_path
        ) -> None:
            record["epochs"] = [dataclasses.asdict(m) for m in history]
            print(
                f"[{record['method']} K={record['grid']}] resumed after epoch {len(history)}",
                flush=True,
            )
            _write_record(run_path, record)

        def save(metrics: Any, record: dict[str, Any] = record, run_path: Path = run_path) -> None:
            record["epochs"].append(dataclasses.asdict(metrics))
            print(
                f"[{record['method']} K={record['grid']}] epoch {metrics.epoch}: "
                f"cost-optimal {100 * metrics.test_cost_optimal:.1f}% "
                f"exact {100 * metrics.test_exact:.1f}% loss {metrics.train_loss:.3f} "
                f"(network {metrics.time_network:.1f}s solver {metrics.time_solver:.2f}s "
                f"noise {metrics.time_noise:.2f}s eval {metrics.time_eval:.1f}s)",
                flush=True,
            )
            _write_record(run_path, record)

        train(
            config,
            train_data,
            test_data,
            on_epoch=save,
            checkpoint=checkpoint,
            resume=args.resume,
            on_resume=restored,
        )
        write_summary(out)
    print(f"results: {out / 'results.md'}")
    return 0


def _write_record(run_path: Path, record: dict[str, Any]) -> None:
    tmp = run_path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(run_path)
