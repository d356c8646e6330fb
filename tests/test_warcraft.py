"""Tests of the Warcraft look-alike benchmark: generator, networks, metrics, losses, command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from imle_fn.warcraft.generator import (
    COSTS,
    PX_PER_CELL,
    generate_maps,
    load_maps,
    make_tileset,
    save_maps,
)
from imle_fn.warcraft.methods import METHODS, hamming_loss, make_loss
from imle_fn.warcraft.model import CostNet, PathResNet18
from imle_fn.warcraft.train import TrainConfig, evaluate_paths, path_is_valid


def _optimal_cost(costs: np.ndarray) -> float:
    """Naive oracle: Bellman-Ford relaxation of vertex-weighted 8-neighbour paths, both ends counted."""
    k0, k1 = costs.shape
    dist = np.full((k0 + 2, k1 + 2), np.inf)
    dist[1, 1] = costs[0, 0]
    for _ in range(k0 * k1):
        best = dist.copy()
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                shifted = dist[1 + di : 1 + di + k0, 1 + dj : 1 + dj + k1]
                best[1:-1, 1:-1] = np.minimum(best[1:-1, 1:-1], shifted + costs)
        if np.array_equal(best, dist):
            break
        dist = best
    return float(dist[k0, k1])


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
        assert (path * costs).sum() == pytest.approx(_optimal_cost(costs), rel=1e-6)


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
    assert hamming_loss(z, y).item() == pytest.approx(1.0)  # (0 + 2) / 2


@pytest.mark.parametrize("method", ["imle", "aimle", "dbb", "fy", "ste"])
def test_loss_sign_convention_learns_the_label_path(method: str) -> None:
    """Descending each method's loss on free costs makes the label the shortest path."""
    from imle_fn.shortest_path import shortest_path
    from imle_fn.warcraft.methods import StepTimer

    rng = np.random.default_rng(0)
    label = torch.from_numpy(shortest_path(rng.uniform(0.5, 2.0, (4, 6, 6)))).float()
    costs = torch.nn.Parameter(torch.from_numpy(rng.uniform(0.5, 2.0, (4, 6, 6))).float())
    assert not torch.equal(torch.from_numpy(shortest_path(costs.detach().numpy())).float(), label)
    timer = StepTimer()
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


def test_command_smoke_run(tmp_path: Path) -> None:
    """CI-sized run: tiny data, one epoch, two methods; the outputs are written and consistent."""
    from imle_fn.cli import main

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


def test_command_rejects_bad_sizes(tmp_path: Path) -> None:
    from imle_fn.cli import main

    with pytest.raises(ValueError, match="--train"):
        main(["bench", "warcraft", "--train", "0", "--out", str(tmp_path)])
