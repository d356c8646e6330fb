"""Tests of `imle_fn.apps.demo.reference_dijkstra`: the reference's Dijkstra rules on signed costs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from imle_fn.apps.demo.configs import Hyper, LearningConfig
from imle_fn.apps.demo.learning import learn, uniform_init
from imle_fn.apps.demo.maps import WALL, reference_map
from imle_fn.apps.demo.reference_dijkstra import ReferenceDijkstra, reference_dijkstra
from imle_fn.core.solving import map_solve
from imle_fn.solvers.grid import GridShortestPath, path_cost, shortest_path
from tests.naive import rules_oracle


def test_matches_the_rules_on_signed_costs() -> None:
    rng = np.random.default_rng(0)
    costs = rng.normal(size=(60, 5, 7)) + rng.choice([0.0, 0.5], size=(60, 5, 7))
    out = reference_dijkstra(costs)
    for n in range(len(costs)):
        np.testing.assert_array_equal(out[n], rules_oracle(costs[n]), err_msg=f"instance {n}")


def test_exact_on_non_negative_costs() -> None:
    rng = np.random.default_rng(1)
    costs = rng.uniform(0.0, 3.0, size=(100, 9, 6))
    np.testing.assert_allclose(
        path_cost(costs, reference_dijkstra(costs)), path_cost(costs, shortest_path(costs))
    )


def test_positive_scores_are_not_clamped() -> None:
    # Scores 0.5 everywhere except a higher-scoring detour: the exact solver clamps both to cost 0 and
    # takes the fewest cells (the diagonal); the reference's rules keep following negative costs.
    theta = torch.full((3, 3), 0.5)
    clamped = map_solve(theta, GridShortestPath())
    assert clamped.sum() == 3 and clamped.diagonal().all()
    ours = map_solve(theta, ReferenceDijkstra())
    assert ours.sum() > 3 and ours[0, 0] == 1 and ours[-1, -1] == 1


def test_solver_contract_and_gold_path() -> None:
    theta = reference_map()
    gold = map_solve(theta, GridShortestPath())
    for dtype in (torch.float32, torch.float64):
        z = map_solve(theta.to(dtype), ReferenceDijkstra())
        assert z.dtype == dtype
        assert torch.equal(z, gold.to(dtype))


def test_rejects_bad_input() -> None:
    costs = np.zeros((3, 4, 4))
    costs[2, 1, 1] = np.nan
    with pytest.raises(ValueError, match="instance 2"):
        reference_dijkstra(costs)
    costs[2, 1, 1] = np.inf
    with pytest.raises(ValueError, match="instance 2"):
        reference_dijkstra(costs)
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        reference_dijkstra(np.zeros((4, 4)))


def test_hundred_samples_reach_gold_only_without_clamping() -> None:
    # The finding behind --learning-solver: with 100 samples the target shift lam * dz is 10 / 100
    # = 0.1 per cell, which cannot make a clamped zero-cost cell costly again, so the exact
    # (clamping) solver stalls on zero-cost ties; the reference's rules reach the gold path.
    theta = torch.full((6, 6), -1.0)
    theta[1:3, 0:5] = WALL
    theta[4, 1:] = WALL
    gold = map_solve(theta, GridShortestPath())
    theta0 = uniform_init(gold.shape, generator=torch.Generator().manual_seed(1))
    hyper = Hyper(k=1.3 * 6, num_terms=20, steps=120)
    config = [LearningConfig(5, 5, 100)]
    runs = {
        name: learn(
            config, gold, theta0, s, hyper=hyper, generator=torch.Generator().manual_seed(1)
        )
        for name, s in (("exact", GridShortestPath()), ("reference", ReferenceDijkstra()))
    }
    assert runs["reference"][0].gold_at_end
    assert runs["reference"][0].first_gold_step is not None
    assert runs["exact"][0].first_gold_step is None


def test_demo_learning_solver_option(tmp_path: Path) -> None:
    from imle_fn.apps.cli import build_parser
    from imle_fn.apps.demo.pipeline import LEARNING_SOLVERS, run_demo

    parser = build_parser()
    assert parser.parse_args(["demo"]).learning_solver == "exact"
    assert (
        parser.parse_args(["demo", "--learning-solver", "reference"]).learning_solver == "reference"
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--learning-solver", "clamp"])
    assert isinstance(LEARNING_SOLVERS["reference"], ReferenceDijkstra)
    with pytest.raises(ValueError, match="learning_solver"):
        run_demo(tmp_path, learning_solver="clamp")
