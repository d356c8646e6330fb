"""Tests of ``imle-fn demo`` (`imle_fn.apps.demo`): the map, the learning loop and a smoke run of the whole command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")
pytest.importorskip("PIL")
pytest.importorskip("tqdm")

from PIL import Image

from imle_fn.apps.cli import build_parser, main
from imle_fn.apps.demo.animations import GifWriter
from imle_fn.apps.demo.configs import DEFAULT_CONFIGS, REFERENCE_CONFIGS, Hyper, LearningConfig
from imle_fn.apps.demo.learning import learn, select_frames, uniform_init
from imle_fn.apps.demo.maps import WALL, flat_map, reference_map, sample_mean_hamming
from imle_fn.core.solving import map_solve
from imle_fn.solvers.grid import GridShortestPath
from tests.naive import naive_learning

SOLVER = GridShortestPath()


def small_map() -> torch.Tensor:
    """A 6x6 map with one wall that forces a detour: [6, 6] scores."""
    theta = torch.full((6, 6), -1.0)
    theta[1:3, 0:5] = WALL
    theta[4, 1:] = WALL
    return theta


def test_reference_map_and_gold_path() -> None:
    theta = reference_map()
    assert theta.shape == (16, 16)
    assert set(theta.unique().tolist()) == {WALL, -1.0}
    gold = map_solve(theta, SOLVER)
    assert gold[0, 0] == 1 and gold[-1, -1] == 1
    assert not (gold.bool() & (theta == WALL)).any(), "the gold path must avoid every wall"
    # the snake of the reference's gold.png: along row 0, down column 12, back along row 6, ...
    assert gold[0, :12].all() and gold[1:6, 12].all() and gold[6, 2:12].all()
    assert gold[8:12, 0].all() and gold[12, 1:13].all()
    assert torch.equal(flat_map(), torch.full((16, 16), -1.0))


def test_sample_mean_hamming_is_the_reference_formula() -> None:
    g = torch.Generator().manual_seed(0)
    z = (torch.rand(7, 3, 5, 5, generator=g) > 0.5).float()
    y = (torch.rand(5, 5, generator=g) > 0.5).float()
    per_map = sample_mean_hamming(z, y)
    assert per_map.shape == (3,)
    for b in range(3):
        zb = z[:, b]
        expected = (zb * (1 - y) + (1 - zb) * y).mean(0).sum()
        assert torch.allclose(per_map[b], expected)
        assert torch.allclose(sample_mean_hamming(zb, y), expected)
    with pytest.raises(ValueError, match="z, y"):
        sample_mean_hamming(z[0, 0], y)


def test_config_validation_and_sets() -> None:
    assert len(REFERENCE_CONFIGS) == 15
    assert {c.num_samples for c in REFERENCE_CONFIGS} == {1, 10, 100}
    assert set(DEFAULT_CONFIGS) < set(REFERENCE_CONFIGS)
    with pytest.raises(ValueError, match="num_samples"):
        LearningConfig(1, 1, 0)
    with pytest.raises(ValueError, match="temperatures"):
        LearningConfig(-1, 1, 1)
    with pytest.raises(ValueError, match="input temperature"):
        LearningConfig(0, 1, 1)


def test_learning_reaches_gold_on_a_small_map() -> None:
    theta = small_map()
    gold = map_solve(theta, SOLVER)
    g = torch.Generator().manual_seed(1)
    theta0 = uniform_init(gold.shape, generator=g)
    configs = [LearningConfig(0, 0, 1), LearningConfig(1, 1, 5), LearningConfig(2, 0, 5)]
    hyper = Hyper(k=1.3 * 6, num_terms=20, steps=150)
    assert not torch.equal(map_solve(theta0, SOLVER), gold)
    traces = learn(configs, gold, theta0, SOLVER, hyper=hyper, generator=g)
    for trace in traces:
        assert trace.first_gold_step is not None, trace.config
        assert trace.gold_at_end, trace.config
        assert torch.equal(map_solve(torch.from_numpy(trace.theta), SOLVER), gold)
        assert trace.losses[:5].mean() > trace.losses[-5:].mean()


def test_lockstep_learning_equals_the_plain_loop() -> None:
    theta = small_map()
    gold = map_solve(theta, SOLVER)
    theta0 = uniform_init(gold.shape, generator=torch.Generator().manual_seed(3))
    configs = [
        LearningConfig(0, 0, 4),
        LearningConfig(1, 1, 4),
        LearningConfig(5, 5, 4),
        LearningConfig(5, 0, 4),
        LearningConfig(2, 2, 1),
    ]
    hyper = Hyper(k=1.3 * 6, num_terms=20, steps=25)
    traces = learn(
        configs, gold, theta0, SOLVER, hyper=hyper, generator=torch.Generator().manual_seed(9)
    )
    losses, thetas = naive_learning(configs, gold, theta0, hyper, seed=9, solver=SOLVER)
    np.testing.assert_allclose(np.stack([t.losses for t in traces]), losses, rtol=1e-6)
    np.testing.assert_allclose(np.stack([t.theta for t in traces]), thetas, rtol=1e-5, atol=1e-6)


def test_learning_is_deterministic_and_records_frames() -> None:
    theta = small_map()
    gold = map_solve(theta, SOLVER)
    hyper = Hyper(k=1.3 * 6, num_terms=10, steps=8)
    configs = [LearningConfig(1, 1, 3)]

    def run(seed: int) -> list:
        g = torch.Generator().manual_seed(seed)
        return learn(configs, gold, uniform_init(gold.shape, generator=g), SOLVER, hyper=hyper,
                     generator=g, frame_steps=[0, 4, 8])  # fmt: skip

    a, b, c = run(0)[0], run(0)[0], run(1)[0]
    np.testing.assert_array_equal(a.losses, b.losses)
    np.testing.assert_array_equal(a.theta, b.theta)
    assert not np.array_equal(a.theta, c.theta)
    assert a.frame_steps == [0, 4, 8]
    assert a.weights.shape == (3, 6, 6) and a.map_paths.shape == (3, 6, 6)
    assert a.gradients.shape == (2, 6, 6)  # no gradient is computed at the final step
    np.testing.assert_array_equal(a.weights[-1], a.theta)
    picked = select_frames(a, [4])
    np.testing.assert_array_equal(picked.weights[0], a.weights[1])
    np.testing.assert_array_equal(picked.gradients[0], a.gradients[1])
    with pytest.raises(ValueError, match="no snapshot"):
        select_frames(a, [3])


def test_learn_rejects_bad_input() -> None:
    gold = map_solve(small_map(), SOLVER)
    g = torch.Generator()
    with pytest.raises(ValueError, match="configs"):
        learn([], gold, torch.zeros(6, 6), SOLVER, generator=g)
    with pytest.raises(ValueError, match="theta0"):
        learn([LearningConfig(1, 1, 1)], gold, torch.zeros(5, 6), SOLVER, generator=g)
    with pytest.raises(ValueError, match="initial maps"):
        learn([LearningConfig(1, 1, 1)], gold, torch.zeros(2, 6, 6), SOLVER, generator=g)


def test_gif_writer(tmp_path: Path) -> None:
    writer = GifWriter(tmp_path / "a.gif", duration_ms=50, hold_ms=500)
    for i in range(4):
        frame = np.zeros((10, 12, 3), dtype=np.uint8)
        frame[:, : 3 * i] = 255
        writer.add(frame)
    path = writer.close()
    with Image.open(path) as gif:
        assert getattr(gif, "n_frames", 1) == 4 and gif.size == (12, 10)
        gif.seek(3)
        assert np.asarray(gif.convert("L"))[:, :9].min() == 255
        assert gif.info["duration"] == 500
    with pytest.raises(ValueError, match="no frames"):
        GifWriter(tmp_path / "b.gif", duration_ms=50).close()


def test_demo_parser_defaults() -> None:
    args = build_parser().parse_args(["demo"])
    assert args.out == Path("demo-out") and args.seed == 0 and args.steps == 1100
    assert args.num_paths == 100 and not args.all_configs and not args.quiet


def test_demo_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    argv = ["--steps", "6", "--num-paths", "3", "--frames", "3", "--gradient-frames", "3",
            "--gradient-samples", "2"]  # fmt: skip
    assert main(["demo", "--out", str(out), *argv]) == 0
    expected = {
        "map.png": 1,
        "gold.png": 1,
        "distribution.png": 1,
        "learning.png": 1,
        "paths.gif": 3,
        "distribution.gif": 3,
        "gradients.gif": 3,
        "learning_paths.gif": 3,
        "learning_weights.gif": 3,
    }
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    for name, frames in expected.items():
        with Image.open(out / name) as image:
            image.verify() if name.endswith(".png") else None
        with Image.open(out / name) as image:
            assert getattr(image, "n_frames", 1) == frames, name
            assert min(image.size) >= 300, name
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(DEFAULT_CONFIGS)  # header row + one row per configuration
    # the same seed writes the same bytes (another seed: test_learning_is_deterministic...)
    again = tmp_path / "again"
    assert main(["demo", "--out", str(again), "--quiet", *argv]) == 0
    assert capsys.readouterr().out == ""  # --quiet prints nothing
    for name in expected:
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
