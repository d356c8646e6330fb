"""Tests of the Warcraft look-alike benchmark (`imle_fn.apps.warcraft`): generator, networks, metrics, losses, command."""

from __future__ import annotations

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
