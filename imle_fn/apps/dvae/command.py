"""``imle-fn bench dvae``: the discrete VAE on k-subset latents, estimators side by side.

Example (the full configuration; see bench/README.md for the measured time)::

    imle-fn bench dvae --seeds 3 --out out/dvae

Each (method, seed) run writes ``OUT/runs/{method}-seed{seed}.json`` after every epoch (config,
per-epoch numbers, last reconstructions); after each run the summary over every run in
``OUT/runs`` is rebuilt (`imle_fn.apps.dvae.report`): ``results.md``, ``results.json``,
``curves.png``, ``reconstructions.png``. Runs of one set-up may be spread over several processes
(e.g. one ``--methods`` each) writing into the same ``--out``. Bad option values stop the command
with an argparse error (exit status 2) before any data is loaded.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from imle_fn.apps.arguments import MAX_SEED

__all__ = ["add_arguments", "run", "validate"]

# Optional packages each data set needs (import names), besides scikit-learn's own imports.
_NEEDS = {"digits": ("sklearn",), "sample-patches": ("sklearn", "PIL")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Attach the command's options (defaults: the papers' DVAE set-up on the digits)."""
    from imle_fn.apps.arguments import (
        int_at_least,
        nonnegative_float,
        positive_float,
        positive_int,
        seed,
        writable_dir,
    )
    from imle_fn.apps.dvae.data import BINARIZE, DATASETS
    from imle_fn.apps.dvae.methods import METHODS

    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=tuple(DATASETS), default="digits", help="data set")
    data.add_argument("--binarize", choices=BINARIZE, default="threshold", help="binarisation")
    data.add_argument("--data-seed", type=seed, default=0, help="seed of the split (and sampling)")
    data.add_argument(
        "--train-limit",
        type=positive_int,
        default=None,
        help="use at most N train images (default: all)",
    )
    data.add_argument(
        "--test-limit",
        type=positive_int,
        default=None,
        help="use at most N test images (default: all)",
    )
    model = parser.add_argument_group("model and training")
    model.add_argument("--blocks", type=positive_int, default=20, help="latent blocks m")
    model.add_argument("--items", type=positive_int, default=20, help="items per block n")
    model.add_argument("--k", type=positive_int, default=10, help="subset size k (<= items)")
    model.add_argument("--epochs", type=positive_int, default=100, help="epochs")
    model.add_argument("--batch-size", type=positive_int, default=100, help="batch size")
    model.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    model.add_argument(
        "--samples", type=positive_int, default=1, help="codes per image in training"
    )
    model.add_argument("--eval-samples", type=positive_int, default=1, help="codes per test image")
    methods = parser.add_argument_group("methods")
    methods.add_argument(
        "--methods", nargs="+", choices=tuple(METHODS), default=list(METHODS), help="methods to run"
    )
    methods.add_argument(
        "--temperature", type=positive_float, default=10.0, help="noise temperature tau"
    )
    methods.add_argument("--noise-terms", type=positive_int, default=10, help="Sum-of-Gamma terms")
    methods.add_argument(
        "--lam", type=positive_float, default=10.0, help="lambda of imle, imle_central"
    )
    methods.add_argument(
        "--aimle-beta", type=nonnegative_float, default=1.0, help="AIMLE initial beta"
    )
    methods.add_argument(
        "--aimle-target", type=nonnegative_float, default=10.0,
        help="AIMLE target non-zero gradient entries per (block, sample)",
    )  # fmt: skip
    methods.add_argument(
        "--aimle-step", type=nonnegative_float, default=1e-3, help="AIMLE beta step"
    )
    methods.add_argument(
        "--relax-temperature", type=positive_float, default=0.5, help="relaxed_topk temperature t"
    )
    runs = parser.add_argument_group("runs and output")
    runs.add_argument("--seeds", type=positive_int, default=3, help="seeds per method")
    runs.add_argument("--first-seed", type=seed, default=0, help="seeds are FIRST .. FIRST+N-1")
    runs.add_argument("--out", type=writable_dir, default=Path("out/dvae"), help="output folder")
    runs.add_argument(
        "--show", type=positive_int, default=10, help="test images in reconstructions.png"
    )
    cpus = os.cpu_count() or 1
    runs.add_argument(
        "--threads",
        type=int_at_least(1, cpus),
        default=None,
        help=f"torch threads, at most this machine's {cpus} CPUs (default: torch's own)",
    )
    runs.add_argument(
        "--resume", action="store_true", help="skip runs already finished in OUT with this set-up"
    )
    runs.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def validate(args: argparse.Namespace) -> str | None:
    """The first problem with the options that no single option's check sees, or None."""
    if args.k > args.items:
        return f"argument --k: expected <= --items = {args.items}, got {args.k}"
    if args.first_seed + args.seeds - 1 > MAX_SEED:
        return (
            f"argument --seeds: the last seed, --first-seed + {args.seeds} - 1, exceeds {MAX_SEED}"
        )
    needed = (*_NEEDS.get(args.dataset, ()), "matplotlib", "tqdm")
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        return f"missing package(s) {', '.join(missing)}: pip install 'imle_fn[dvae]'"
    return None


def _config(args: argparse.Namespace, method: str, seed: int) -> Any:
    from imle_fn.apps.dvae.methods import MethodSettings
    from imle_fn.apps.dvae.train import RunConfig

    settings = MethodSettings(
        k=args.k, temperature=args.temperature, noise_terms=args.noise_terms, samples=args.samples,
        lam=args.lam, aimle_beta=args.aimle_beta, aimle_target=args.aimle_target,
        aimle_step=args.aimle_step, relax_temperature=args.relax_temperature,
    )  # fmt: skip
    return RunConfig(
        method=method, seed=seed, settings=settings, blocks=args.blocks, items=args.items,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, eval_samples=args.eval_samples,
        show=args.show, progress=not args.no_progress,
    )  # fmt: skip


def _finished(path: Path, record: dict[str, Any]) -> bool:
    """Is ``path`` a finished run of exactly this set-up (progress bars aside)?"""
    if not path.exists():
        return False
    old = json.loads(path.read_text())
    same = {**old["config"], "progress": None} == {**record["config"], "progress": None}
    keys = ("dataset", "binarize", "data_seed", "train_size", "test_size")
    same = same and all(old.get(key) == record[key] for key in keys)
    return same and len(old["epochs"]) == record["config"]["epochs"]


def run(args: argparse.Namespace) -> int:
    """Load the data, train every (method, seed), write the results."""
    import dataclasses

    import torch
    from tqdm.auto import tqdm

    from imle_fn.apps.dvae.data import load_dataset
    from imle_fn.apps.dvae.report import write_summary
    from imle_fn.apps.dvae.train import train_run

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, binarize=args.binarize, seed=args.data_seed)
    data = dataclasses.replace(
        data,
        train=data.train[: args.train_limit],
        test=data.test[: args.test_limit],
        train_index=data.train_index[: args.train_limit],
        test_index=data.test_index[: args.test_limit],
    )
    out: Path = args.out
    (out / "runs").mkdir(parents=True, exist_ok=True)
    say = tqdm.write if not args.no_progress else print
    for method in args.methods:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            config = _config(args, method, seed)
            record: dict[str, Any] = {
                "method": method,
                "seed": seed,
                "dataset": data.name,
                "binarize": data.binarize,
                "data_seed": args.data_seed,
                "train_size": len(data.train),
                "test_size": len(data.test),
                "image_shape": list(data.image_shape),
                "torch_threads": torch.get_num_threads(),
                "config": dataclasses.asdict(config),
                "epochs": [],
                "test_images_shown": data.test[: args.show].tolist(),
                "reconstructions": [],
            }
            path = out / "runs" / f"{method}-seed{seed}.json"
            if args.resume and _finished(path, record):
                say(f"[{method} seed {seed}] finished earlier: {path}")
                continue

            def save(epoch: Any, record: dict[str, Any] = record, path: Path = path) -> None:
                record["epochs"].append(dataclasses.asdict(epoch))
                say(
                    f"[{record['method']} seed {record['seed']}] epoch {epoch.epoch}: test NELBO "
                    f"{epoch.test_nelbo:.2f} (recon {epoch.test_recon:.2f} + KL {epoch.test_kl:.2f}), "
                    f"exact q {epoch.test_nelbo_exact:.2f}, "
                    f"train loss {epoch.train_loss:.2f} ({epoch.time_train:.1f}s train, "
                    f"{epoch.time_eval:.1f}s eval, KL {epoch.time_kl:.1f}s)"
                )
                _write_json(path, record)

            result = train_run(config, data, on_epoch=save)
            record["reconstructions"] = result["reconstructions"]
            _write_json(path, record)
            write_summary(out, figures=False)  # the tables after every run, the figures at the end
    write_summary(out)
    print(f"results: {out / 'results.md'}")
    return 0


def _write_json(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)
