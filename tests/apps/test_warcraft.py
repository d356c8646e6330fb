"""Tests of the Warcraft look-alike benchmark (`imle_fn.apps.warcraft`): generator, networks, metrics, losses, command."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from imle_fn.apps.warcraft.generator import (
    COSTS,
    PX_PER_CELL,
    generate_maps,
    load_maps,
    make_tileset,
    save_maps,
)
from imle_fn.apps.warcraft.methods import METHODS, batch_mean_hamming, make_loss
from imle_fn.apps.warcraft.model import CostNet, PathResNet18
from imle_fn.apps.warcraft.train import (
    EpochMetrics,
    TrainConfig,
    corner_symmetry,
    evaluate_paths,
    path_is_valid,
    train,
)
from tests.naive import bellman_ford_cost


def test_generator_is_deterministic_and_prefix_stable() -> None:
    a = generate_maps(3, 6, seed=5)
    b = generate_maps(3, 6, seed=5)
    c = generate_maps(2, 6, seed=5)
    d = generate_maps(3, 6, seed=6)
    for name in ("images", "costs", "paths", "classes"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        np.testing.assert_array_equal(getattr(a, name)[:2], getattr(c, name))
    assert not np.array_equal(a.images, d.images)
    np.testing.assert_array_equal(make_tileset(3), make_tileset(3))
    assert not np.array_equal(make_tileset(3), make_tileset(4))


def test_generator_shapes_costs_and_labels_are_shortest_paths() -> None:
    k = 7
    maps = generate_maps(12, k, seed=1)
    assert maps.images.shape == (12, k * PX_PER_CELL, k * PX_PER_CELL, 3)
    assert maps.images.dtype == np.uint8
    assert maps.costs.shape == maps.paths.shape == (12, k, k)
    np.testing.assert_array_equal(maps.costs, COSTS[maps.classes])
    for costs, path in zip(maps.costs, maps.paths, strict=True):
        assert path_is_valid(path)
        assert (path * costs).sum() == pytest.approx(bellman_ford_cost(costs), rel=1e-6)


def test_cost_is_not_a_colour_lookup() -> None:
    """Cells of one class get several different looks (tile variants, blending, tint, noise)."""
    maps = generate_maps(4, 10, seed=2)
    p = PX_PER_CELL
    cells = maps.images.reshape(4, 10, p, 10, p, 3).transpose(0, 1, 3, 2, 4, 5)
    means = cells.reshape(4, 10, 10, -1).astype(np.float64).mean(-1)  # [N, K, K] mean intensity
    for cls in np.unique(maps.classes):
        looks = cells[maps.classes == cls].reshape(-1, p * p * 3)
        assert len(np.unique(looks, axis=0)) > 1
        assert means[maps.classes == cls].std() > 1.0
    assert len(np.unique(maps.classes)) >= 3  # coherent maps still mix several terrains


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    maps = generate_maps(2, 5, seed=0)
    save_maps(maps, tmp_path / "maps.npz")
    loaded = load_maps(tmp_path / "maps.npz")
    for name in ("images", "costs", "paths", "classes"):
        np.testing.assert_array_equal(getattr(maps, name), getattr(loaded, name))


@pytest.mark.parametrize(
    ("num", "grid", "match"), [(-1, 5, "num_maps"), (2, 1, "grid"), (2.5, 5, "num_maps")]
)
def test_generator_rejects_bad_arguments(num: object, grid: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate_maps(num, grid)  # type: ignore[arg-type]


@pytest.mark.parametrize("grid", [12, 18])
def test_cost_net_shapes(grid: int) -> None:
    net = CostNet(grid)
    costs = net(torch.randn(2, 3, 8 * grid, 8 * grid))
    assert costs.shape == (2, grid, grid)
    assert (costs >= 0).all()
    assert net.stem[0].kernel_size == (7, 7) and net.stem[0].stride == (2, 2)
    assert len(net.layer1) == 2


def test_path_resnet18_shape() -> None:
    net = PathResNet18(6)
    assert net(torch.randn(2, 3, 48, 48)).shape == (2, 6, 6)
    assert sum(p.numel() for p in net.parameters()) > 11_000_000  # a full ResNet18


def test_path_is_valid_and_evaluate_paths() -> None:
    costs = np.ones((1, 2, 3))
    label = np.array([[[1, 1, 0], [0, 0, 1]]])
    other = np.array([[[1, 0, 0], [0, 1, 1]]])  # also 3 cells: a tie
    broken = np.array([[[1, 0, 0], [0, 0, 1]]])
    superset = np.array([[[1, 1, 0], [0, 1, 1]]])
    assert path_is_valid(label[0]) and path_is_valid(other[0]) and not path_is_valid(broken[0])
    z = np.concatenate([label, other, broken, superset])
    optimal, exact = evaluate_paths(
        z, np.repeat(label, 4, 0), np.repeat(costs, 4, 0), check_valid=True
    )
    assert optimal.tolist() == [True, True, False, False]
    assert exact.tolist() == [True, False, False, False]
    # A disconnected set whose cost equals the optimum passes only without the validity check.
    gapped = np.array([[[1, 0, 1], [0, 0, 1]]])
    assert evaluate_paths(gapped, label, costs, check_valid=False)[0].tolist() == [True]
    assert evaluate_paths(gapped, label, costs, check_valid=True)[0].tolist() == [False]


def test_hamming_loss_counts_wrong_cells_per_map() -> None:
    z = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]])
    y = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    assert batch_mean_hamming(z, y).item() == pytest.approx(1.0)  # (0 + 2) / 2


@pytest.mark.parametrize("method", ["imle", "aimle", "dbb", "fy", "ste"])
def test_loss_sign_convention_learns_the_label_path(method: str) -> None:
    """Descending each method's loss on free costs makes the label the shortest path."""
    from imle_fn.apps.timing import Timer
    from imle_fn.solvers.grid import shortest_path

    rng = np.random.default_rng(0)
    label = torch.from_numpy(shortest_path(rng.uniform(0.5, 2.0, (4, 6, 6)))).float()
    costs = torch.nn.Parameter(torch.from_numpy(rng.uniform(0.5, 2.0, (4, 6, 6))).float())
    assert not torch.equal(torch.from_numpy(shortest_path(costs.detach().numpy())).float(), label)
    timer = Timer()
    config = TrainConfig(method=method, lam_imle=5.0, lam_dbb=5.0)
    loss_fn = make_loss(config, timer, torch.Generator().manual_seed(0))
    opt = torch.optim.SGD([costs], lr=1.0)
    for _ in range(60):
        opt.zero_grad()
        loss_fn(costs.abs(), label).backward()
        loss_fn.after_backward()
        opt.step()
    assert torch.equal(torch.from_numpy(shortest_path(costs.detach().abs().numpy())).float(), label)
    solves_per_step = 2 if method in ("imle", "aimle", "dbb") else 1  # forward (+ target) solve
    assert timer.instances == 60 * solves_per_step * 4


def test_train_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="method"):
        TrainConfig(method="nope")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)


def test_corner_symmetry_is_the_four_corner_preserving_maps() -> None:
    x = torch.arange(9).view(1, 3, 3).repeat(4, 1, 1)
    out = corner_symmetry(x, torch.arange(4))
    assert out[0].tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]  # identity
    assert out[1].tolist() == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]  # transpose
    assert out[2].tolist() == [[8, 7, 6], [5, 4, 3], [2, 1, 0]]  # rotation by 180 degrees
    assert out[3].tolist() == [[8, 5, 2], [7, 4, 1], [6, 3, 0]]  # anti-transpose
    assert {(int(o[0, 0]), int(o[2, 2])) for o in out} == {(0, 8), (8, 0)}
    # Channels and pixels move with their cell: an 8K x 8K image follows its K x K grid.
    image = torch.arange(9).view(1, 1, 3, 3).repeat_interleave(2, -1).repeat_interleave(2, -2)
    for w in range(4):
        moved = corner_symmetry(image, torch.tensor([w]))
        assert torch.equal(moved[0, 0, ::2, ::2], out[w])
    assert torch.equal(x, torch.arange(9).view(1, 3, 3).repeat(4, 1, 1))  # input untouched
    with pytest.raises(ValueError, match="square"):
        corner_symmetry(torch.zeros(1, 2, 3), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="which"):
        corner_symmetry(torch.zeros(2, 3, 3), torch.zeros(1, dtype=torch.long))


def test_augmented_labels_are_the_solvers_paths_of_the_moved_costs() -> None:
    """Ties are common (five cost values): each moved map's label is re-solved, and optimal."""
    from imle_fn.apps.warcraft.train import _symmetric_labels
    from imle_fn.solvers.grid import shortest_path

    maps = generate_maps(6, 7, seed=2)
    costs, paths = torch.from_numpy(maps.costs), torch.from_numpy(maps.paths).float()
    labels = _symmetric_labels(costs, paths)
    assert labels.shape == (4, 6, 7, 7)
    assert torch.equal(labels[0], paths)
    moved_differs = False
    for w in range(1, 4):
        moved_costs = corner_symmetry(costs, torch.full((6,), w))
        solved = torch.from_numpy(np.asarray(shortest_path(moved_costs.numpy()))).float()
        assert torch.equal(labels[w], solved)
        for i in range(6):
            cost = float((labels[w, i] * moved_costs[i]).sum())
            assert cost == pytest.approx(bellman_ford_cost(moved_costs[i].numpy()), rel=1e-6)
        moved_differs |= not torch.equal(labels[w], corner_symmetry(paths, torch.full((6,), w)))
    assert moved_differs  # moving the label instead would break ties differently


def test_train_with_augmentation_is_seeded_and_changes_what_is_seen() -> None:
    from imle_fn.apps.warcraft.command import _tensors

    maps = generate_maps(14, 5, seed=4)
    pixels = torch.from_numpy(maps.images).float().div(255.0)
    mean, std = (
        pixels.mean(dim=(0, 1, 2)).view(1, 3, 1, 1),
        pixels.std(dim=(0, 1, 2)).view(1, 3, 1, 1),
    )
    data = _tensors(maps, mean, std)
    kwargs: dict[str, Any] = dict(method="imle", epochs=2, batch_size=7, progress=False)
    plain = train(TrainConfig(**kwargs), data, data)
    aug = train(TrainConfig(augment=True, **kwargs), data, data)
    again = train(TrainConfig(augment=True, **kwargs), data, data)
    assert [m.train_loss for m in aug] == [m.train_loss for m in again]
    assert [m.train_loss for m in aug] != [m.train_loss for m in plain]


def test_command_smoke_run(tmp_path: Path) -> None:
    """CI-sized run: tiny data, one epoch, two methods; the outputs are written and consistent."""
    from imle_fn.apps.cli import main

    argv = [
        *("bench", "warcraft", "--grid", "6", "--train", "14", "--test", "6", "--epochs", "1"),
        *("--batch-size", "7", "--method", *METHODS, "--no-progress", "--threads", "1"),
        *("--out", str(tmp_path)),
    ]
    assert main(argv) == 0
    record = json.loads((tmp_path / "runs" / "k6-imle.json").read_text())
    (epoch,) = record["epochs"]
    assert epoch["solver_instances_train"] == 2 * 14  # one forward and one backward solve per map
    assert epoch["solver_instances_eval"] == 6
    ste_record = json.loads((tmp_path / "runs" / "k6-ste.json").read_text())
    assert ste_record["epochs"][0]["solver_instances_train"] == 14  # STE: no backward solve
    fy_record = json.loads((tmp_path / "runs" / "k6-fy.json").read_text())
    assert fy_record["epochs"][0]["solver_instances_train"] == 14  # FY: one forward solve
    assert fy_record["epochs"][0]["time_noise"] > 0
    assert 0.0 <= epoch["test_exact"] <= epoch["test_cost_optimal"] <= 1.0
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [r["method"] for r in rows] == sorted(METHODS)
    assert "look-alike" in (tmp_path / "results.md").read_text()
    for name in ("accuracy.png", "data/sample-k6.png", "data/k6-seed0-n14.npz"):
        assert (tmp_path / name).stat().st_size > 0
    # An augmented run is kept beside the plain one and labelled in the table.
    head, tail = argv[: argv.index("--method")], argv[argv.index("--no-progress") :]
    assert main([*head, "--method", "imle", "--augment", *tail]) == 0
    aug_record = json.loads((tmp_path / "runs" / "k6-imle-aug.json").read_text())
    assert aug_record["config"]["augment"] is True
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [(r["method"], r["augment"]) for r in rows if r["method"] == "imle"] == [
        ("imle", False),
        ("imle", True),
    ]
    assert "| imle+sym | 6 |" in (tmp_path / "results.md").read_text()


# --- checkpoints and --resume -------------------------------------------------------------------


class _KilledError(Exception):
    """Stands for the process being killed (raised from a callback, after a checkpoint)."""


def _tiny_data(num: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from imle_fn.apps.warcraft.command import _tensors

    maps = generate_maps(num, 6, seed=seed)
    pixels = torch.from_numpy(maps.images).float().div(255.0)
    mean = pixels.mean(dim=(0, 1, 2)).view(1, 3, 1, 1)
    std = pixels.std(dim=(0, 1, 2)).view(1, 3, 1, 1)
    return _tensors(maps, mean, std)


def _kill_after(epoch: int, seen: list[Any]) -> Any:
    def on_epoch(metrics: Any) -> None:
        seen.append(metrics)
        if metrics.epoch == epoch:
            raise _KilledError

    return on_epoch


def _outcome(metrics: list[Any]) -> list[tuple[Any, ...]]:
    """Everything an epoch reports except its wall times."""
    return [
        (
            m.epoch,
            m.train_loss,
            m.test_cost_optimal,
            m.test_exact,
            m.solver_instances_train,
            m.solver_instances_eval,
        )
        for m in metrics
    ]


def _assert_states_equal(a: Any, b: Any) -> None:
    """Nested checkpoint contents are equal, tensors with torch.equal."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b)
        for key in a:
            _assert_states_equal(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_states_equal(x, y)
    else:
        assert a == b


_RESUME_CASES = [
    # batches and symmetries from the run's generator
    dict(method="imle", augment=True),
    dict(method="fy", sigma_fy=0.5),  # noise from the run's generator
    dict(method="aimle"),  # estimator state (beta) carried across steps
]


@pytest.mark.parametrize("settings", _RESUME_CASES, ids=["imle-aug", "fy", "aimle"])
def test_resumed_training_is_bit_identical(tmp_path: Path, settings: dict[str, Any]) -> None:
    """Killed after epoch 2 and resumed to 4 = straight through to 4: metrics and weights exact."""
    train_data, test_data = _tiny_data(21, seed=4), _tiny_data(7, seed=5)
    # The learning rate drops after epoch 2 (milestone 0.5): the schedule must resume too.
    config = TrainConfig(
        epochs=4, batch_size=7, lr=1e-3, milestones=(0.5,), progress=False, **settings
    )
    straight_seen: list[Any] = []
    straight_ckpt = tmp_path / "straight.ckpt.pt"
    # Stopped right after the last epoch's checkpoint, so that its final state can be compared.
    with pytest.raises(_KilledError):
        train(
            config,
            train_data,
            test_data,
            on_epoch=_kill_after(4, straight_seen),
            checkpoint=straight_ckpt,
        )
    plain = train(config, train_data, test_data)  # no checkpoint at all: the same run
    assert _outcome(plain) == _outcome(straight_seen)

    ckpt = tmp_path / "run.ckpt.pt"
    first: list[Any] = []
    with pytest.raises(_KilledError):
        train(config, train_data, test_data, on_epoch=_kill_after(2, first), checkpoint=ckpt)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    restored: list[Any] = []
    second: list[Any] = []
    with pytest.raises(_KilledError):
        train(
            config,
            train_data,
            test_data,
            on_epoch=_kill_after(4, second),
            checkpoint=ckpt,
            resume=True,
            on_resume=restored.extend,
        )
    assert _outcome(restored) == _outcome(first) == _outcome(straight_seen[:2])
    assert [m.epoch for m in second] == [3, 4]  # epochs 1-2 not trained again
    assert _outcome(first + second) == _outcome(straight_seen)
    final = torch.load(ckpt, weights_only=True)
    expected = torch.load(straight_ckpt, weights_only=True)
    for part in ("model", "optimizer", "scheduler", "loss", "rng", "epoch"):
        _assert_states_equal(final[part], expected[part])
    assert _outcome([EpochMetrics(**m) for m in final["history"]]) == _outcome(straight_seen)
    # Resuming a checkpoint that holds every epoch trains nothing and closes the run.
    done = train(config, train_data, test_data, checkpoint=ckpt, resume=True)
    assert _outcome(done) == _outcome(straight_seen)
    assert not ckpt.exists()


def test_checkpoint_written_every_epoch_and_removed_when_finished(tmp_path: Path) -> None:
    data = _tiny_data(14, seed=4)
    config = TrainConfig(method="ste", epochs=2, batch_size=7, progress=False)
    ckpt = tmp_path / "run.ckpt.pt"
    ckpt.write_bytes(b"a stale checkpoint of an earlier run")
    epochs_on_disk: list[int] = []

    def on_epoch(metrics: Any) -> None:
        epochs_on_disk.append(torch.load(ckpt, weights_only=True)["epoch"])

    history = train(config, data, data, on_epoch=on_epoch, checkpoint=ckpt)
    assert epochs_on_disk == [1, 2]  # the checkpoint of each epoch exists when it is reported
    assert len(history) == 2
    assert not ckpt.exists() and not (tmp_path / "run.ckpt.pt.tmp").exists()
    with pytest.raises(ValueError, match="resume"):
        train(config, data, data, resume=True)


def test_resume_refuses_a_checkpoint_of_other_settings_or_maps(tmp_path: Path) -> None:
    data, other = _tiny_data(14, seed=4), _tiny_data(14, seed=6)
    config = TrainConfig(method="imle", epochs=3, batch_size=7, progress=False)
    ckpt = tmp_path / "run.ckpt.pt"
    with pytest.raises(_KilledError):
        train(config, data, data, on_epoch=_kill_after(1, []), checkpoint=ckpt)
    changed = dataclasses.replace(config, lr=1e-3, lam_imle=20.0)
    with pytest.raises(ValueError, match=r"lam_imle: 50.0 stored, 20.0 now; lr: 0.0005 stored"):
        train(changed, data, data, checkpoint=ckpt, resume=True)
    with pytest.raises(ValueError, match=r"test_data.*the maps differ"):
        train(config, data, other, checkpoint=ckpt, resume=True)
    # Display settings are not part of the run: progress bars on or off resume alike.
    shown = dataclasses.replace(config, progress=True, epochs=3)
    assert len(train(shown, data, data, checkpoint=ckpt, resume=True)) == 3
    ckpt.write_bytes(b"\x00" * 10)  # not a checkpoint at all
    with pytest.raises(ValueError, match="cannot be read"):
        train(config, data, data, checkpoint=ckpt, resume=True)


def test_a_kill_while_the_checkpoint_is_written_leaves_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.save dies half-way through epoch 2's checkpoint: resuming starts again at epoch 2."""
    import io

    import imle_fn.apps.warcraft.train as train_module

    data = _tiny_data(14, seed=4)
    config = TrainConfig(method="imle", epochs=3, batch_size=7, progress=False)
    straight = train(config, data, data)
    ckpt = tmp_path / "run.ckpt.pt"
    real_save = torch.save
    saves: list[Path] = []

    def dying_save(obj: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        saves.append(Path(path))
        if len(saves) < 2:
            real_save(obj, path, *args, **kwargs)
            return
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        Path(path).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise _KilledError

    monkeypatch.setattr(train_module.torch, "save", dying_save)
    with pytest.raises(_KilledError):
        train(config, data, data, checkpoint=ckpt)
    monkeypatch.undo()
    assert saves == [tmp_path / "run.ckpt.pt.tmp"] * 2  # always through the temporary file
    assert (tmp_path / "run.ckpt.pt.tmp").stat().st_size > 0  # the half-written one is there
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    seen: list[Any] = []
    resumed = train(config, data, data, on_epoch=seen.append, checkpoint=ckpt, resume=True)
    assert [m.epoch for m in seen] == [2, 3]
    assert _outcome(resumed) == _outcome(straight)
    assert not (tmp_path / "run.ckpt.pt.tmp").exists()


def test_command_resume_continues_skips_and_checks_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import imle_fn.apps.warcraft.command as command
    from imle_fn.apps.cli import main

    def argv(out: Path, *extra: str) -> list[str]:
        return [
            *("bench", "warcraft", "--grid", "6", "--train", "14", "--test", "6"),
            *("--epochs", "3", "--batch-size", "7", "--method", "imle", "--no-progress"),
            *("--threads", "1", "--out", str(out), *extra),
        ]

    straight_out, out = tmp_path / "straight", tmp_path / "killed"
    assert main(argv(straight_out)) == 0
    straight = json.loads((straight_out / "runs" / "k6-imle.json").read_text())
    assert not (straight_out / "runs" / "k6-imle.ckpt.pt").exists()  # removed when finished

    real_write = command._write_record

    def killed_after_epoch_2(path: Path, record: dict[str, Any]) -> None:
        real_write(path, record)
        if len(record["epochs"]) == 2:
            raise _KilledError

    monkeypatch.setattr(command, "_write_record", killed_after_epoch_2)
    with pytest.raises(_KilledError):
        main(argv(out))
    monkeypatch.undo()
    ckpt = out / "runs" / "k6-imle.ckpt.pt"
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    with pytest.raises(ValueError, match=r"lr: 0.0005 stored, 0.001 now"):
        main(argv(out, "--resume", "--lr", "1e-3"))
    capsys.readouterr()
    assert main(argv(out, "--resume")) == 0
    assert "resumed after epoch 2" in capsys.readouterr().out
    resumed = json.loads((out / "runs" / "k6-imle.json").read_text())
    keys = ("epoch", "train_loss", "test_cost_optimal", "test_exact", "solver_instances_train")
    assert [[e[k] for k in keys] for e in resumed["epochs"]] == [
        [e[k] for k in keys] for e in straight["epochs"]
    ]
    assert not ckpt.exists()
    # Finished: recognised from the JSON alone and skipped; other settings are refused.
    before = (out / "runs" / "k6-imle.json").read_text()
    assert main(argv(out, "--resume")) == 0
    assert "finished earlier" in capsys.readouterr().out
    assert (out / "runs" / "k6-imle.json").read_text() == before
    assert not ckpt.exists()
    with pytest.raises(ValueError, match=r"k6-imle.json.*epochs: 3 stored, 4 now"):
        main([*argv(out, "--resume"), "--epochs", "4"])
