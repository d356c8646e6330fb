"""Tests of the discrete VAE benchmark (`imle_fn.apps.dvae`): data, exact KL, relaxation, methods,
model, report and a CI-sized run of ``imle-fn bench dvae``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import imle_fn
from imle_fn.apps.cli import main
from imle_fn.apps.dvae.data import (
    DATASETS,
    BinaryImages,
    binarize_intensities,
    load_dataset,
    register_dataset,
)
from imle_fn.apps.dvae.elbo import bernoulli_nll, kl_to_uniform, log_comb
from imle_fn.apps.dvae.methods import (
    METHODS,
    AdaptiveIMLE,
    MethodSettings,
    make_method,
    perturb_and_map,
    relaxed_topk,
)
from imle_fn.apps.dvae.model import DiscreteVAE
from imle_fn.apps.dvae.report import load_records, mean_se
from imle_fn.apps.dvae.train import seed_streams
from imle_fn.apps.timing import Timer
from imle_fn.core.noise import sum_of_gamma
from imle_fn.estimators.implicit_mle import imle
from imle_fn.estimators.simple_estimator import simple
from imle_fn.solvers.topk import TopK, topk_map
from tests.naive import naive_ksubset_kl_uniform

sklearn_datasets = pytest.importorskip("sklearn.datasets")

# ----------------------------------------------------------------------------------------- data


def test_digits_shapes_binarisation_and_split() -> None:
    raw = sklearn_datasets.load_digits()
    data = load_dataset("digits", binarize="threshold", seed=0)
    assert data.train.shape == (1500, 64) and data.test.shape == (297, 64)
    assert data.train.dtype == torch.float32 and data.image_shape == (8, 8)
    # Threshold at half of the maximum intensity 16: on iff >= 8.
    np.testing.assert_array_equal(data.train.numpy(), raw.data[data.train_index] >= 8)
    np.testing.assert_array_equal(data.test.numpy(), raw.data[data.test_index] >= 8)
    # Disjoint, every image once.
    assert not set(data.train_index) & set(data.test_index)
    np.testing.assert_array_equal(
        np.sort(np.concatenate([data.train_index, data.test_index])), np.arange(1797)
    )
    # Stratified: every class is in the test set about in proportion (297 / 1797 of ~180).
    counts = np.bincount(raw.target[data.test_index], minlength=10)
    assert counts.min() >= 28 and counts.max() <= 31


def test_digits_split_is_fixed_by_seed() -> None:
    a, b = load_dataset("digits", seed=3), load_dataset("digits", seed=3)
    c = load_dataset("digits", seed=4)
    np.testing.assert_array_equal(a.test_index, b.test_index)
    assert torch.equal(a.train, b.train)
    assert not np.array_equal(a.test_index, c.test_index)


def test_sampled_binarisation_follows_the_intensities_and_the_seed() -> None:
    raw = sklearn_datasets.load_digits().data
    a = binarize_intensities(raw, 16.0, "sample", seed=1)
    np.testing.assert_array_equal(a, binarize_intensities(raw, 16.0, "sample", seed=1))
    assert not np.array_equal(a, binarize_intensities(raw, 16.0, "sample", seed=2))
    assert set(np.unique(a)) <= {0.0, 1.0}
    for level in (0, 4, 8, 12, 16):
        on = a[raw == level]
        p = level / 16
        tolerance = 5 * math.sqrt(p * (1 - p) / on.size) + 1e-12
        assert abs(on.mean() - p) <= tolerance, (level, on.mean())
    data = load_dataset("digits", binarize="sample", seed=1)
    np.testing.assert_array_equal(data.test.numpy(), a[data.test_index])


def test_sample_patches_are_thresholded_grey_patches() -> None:
    pytest.importorskip("PIL")
    images = sklearn_datasets.load_sample_images().images
    data = load_dataset("sample-patches", seed=0)
    assert data.train.shape == (7480, 64) and data.test.shape == (1000, 64)
    grey = np.asarray(images[0], dtype=np.float64).mean(-1)
    first = grey[:8, :8].reshape(64) >= 127.5  # patch 0 of the first photograph
    where = np.flatnonzero(data.train_index == 0)
    got = data.train[where[0]] if where.size else data.test[np.flatnonzero(data.test_index == 0)[0]]
    np.testing.assert_array_equal(got.numpy(), first)
    assert not set(data.train_index) & set(data.test_index)


def test_binarize_and_registry_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="binarize"):
        binarize_intensities(np.zeros((1, 2)), 16.0, "otsu", seed=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"values: expected intensities in \[0, 16.0\]"):
        binarize_intensities(np.array([[0.0, 17.0]]), 16.0, "threshold", seed=0)
    with pytest.raises(ValueError, match="dataset"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("digits", DATASETS["digits"])


def _fixture_dataset(*, binarize: Any = "threshold", seed: int = 0) -> BinaryImages:
    """A synthetic TEST FIXTURE (not a data set of the benchmark): 4 x 4 bars."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 4, size=80)
    images = np.zeros((80, 4, 4), dtype=np.float32)
    images[np.arange(80), rows, :] = 1.0
    index = np.arange(80)
    return BinaryImages(
        "bars-fixture", torch.from_numpy(images[:60].reshape(60, 16)),
        torch.from_numpy(images[60:].reshape(20, 16)), (4, 4), index[:60], index[60:],
        binarize, "test fixture",
    )  # fmt: skip


# ------------------------------------------------------------------------------- ELBO pieces


@pytest.mark.parametrize(("n", "k"), [(1, 1), (4, 0), (4, 2), (6, 3), (7, 1), (7, 7), (8, 5)])
def test_exact_kl_matches_enumeration_and_its_gradient(n: int, k: int) -> None:
    eta = (2.0 * torch.randn(3, 2, n, generator=torch.Generator().manual_seed(n * 10 + k))).double()
    eta.requires_grad_()
    got = kl_to_uniform(eta, k)
    want = naive_ksubset_kl_uniform(eta, k)
    assert got.shape == (3, 2)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert (got > -1e-12).all()
    (g_got,) = torch.autograd.grad(got.sum(), eta)
    (g_want,) = torch.autograd.grad(want.sum(), eta)
    torch.testing.assert_close(g_got, g_want, rtol=1e-8, atol=1e-10)


def test_kl_is_zero_at_uniform_and_maximal_for_a_point_mass() -> None:
    assert torch.equal(kl_to_uniform(torch.zeros(5, 6), 3), torch.zeros(5))
    peaked = torch.tensor([[60.0, 60.0, 60.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(kl_to_uniform(peaked, 3), torch.tensor([math.log(20.0)]).double())


def test_kl_and_log_comb_reject_bad_input() -> None:
    assert log_comb(20, 10) == pytest.approx(math.log(math.comb(20, 10)))
    assert log_comb(5, 0) == 0.0
    with pytest.raises(ValueError, match="k: expected <= 4, got 5"):
        kl_to_uniform(torch.zeros(2, 4), 5)
    with pytest.raises(TypeError, match="eta"):
        kl_to_uniform(torch.zeros(2, 4, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="k"):
        log_comb(3, 4)


def test_bernoulli_nll_is_the_summed_binary_log_loss() -> None:
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0)).double()
    x = (torch.rand(3, 5, generator=torch.Generator().manual_seed(1)) < 0.5).double()
    p = torch.sigmoid(logits)
    want = -(x * p.log() + (1 - x) * (1 - p).log()).sum(-1)
    torch.testing.assert_close(bernoulli_nll(logits, x), want)
    with pytest.raises(ValueError, match="logits"):
        bernoulli_nll(logits, x[:, :4])


# -------------------------------------------------------------------------------- relaxation


def test_relaxed_topk_k1_is_softmax_and_k2_follows_the_recursion() -> None:
    s = torch.randn(4, 6, generator=torch.Generator().manual_seed(2)).double()
    torch.testing.assert_close(relaxed_topk(s, 1, 0.7), torch.softmax(s / 0.7, -1))
    a1 = torch.softmax(s / 0.7, -1)
    a2 = torch.softmax((s + torch.log(1 - a1)) / 0.7, -1)
    torch.testing.assert_close(relaxed_topk(s, 2, 0.7), a1 + a2)


def test_relaxed_topk_sums_to_k_and_tends_to_topk() -> None:
    s = torch.randn(50, 12, generator=torch.Generator().manual_seed(3))
    for t in (2.0, 0.5, 0.1):
        z = relaxed_topk(s, 4, t)
        assert (z >= 0).all()  # not capped at 1: near-ties share several softmax steps
        torch.testing.assert_close(z.sum(-1), torch.full((50,), 4.0))
    spaced = (
        0.1
        * torch.stack(
            [torch.randperm(12, generator=torch.Generator().manual_seed(i)) for i in range(50)]
        ).double()
    )  # scores at least 0.1 apart: the limit is reached at t = 1e-3
    torch.testing.assert_close(relaxed_topk(spaced, 4, 1e-3), topk_map(spaced, 4))
    with pytest.raises(ValueError, match="temperature"):
        relaxed_topk(s, 2, 0.0)
    with pytest.raises(ValueError, match="k"):
        relaxed_topk(s, 13, 1.0)


# ----------------------------------------------------------------------------------- methods


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_samples_k_subsets_with_a_gradient(name: str) -> None:
    settings = MethodSettings(k=2, samples=3)
    method = make_method(name, settings, Timer())
    theta = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(5), requires_grad=True)
    z = method.sample(theta, torch.Generator().manual_seed(6))
    assert z.shape == (3, 4, 3, 5)
    torch.testing.assert_close(z.sum(-1), torch.full((3, 4, 3), 2.0))
    if name != "relaxed_topk":
        assert set(z.unique().tolist()) <= {0.0, 1.0}
    weights = torch.randn(5, generator=torch.Generator().manual_seed(7))
    (z * weights).sum().backward()
    assert theta.grad is not None and theta.grad.abs().sum() > 0
    method.after_backward()


def test_imle_method_is_the_library_call_with_the_papers_settings() -> None:
    settings = MethodSettings(k=3, samples=2)
    theta = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(8), requires_grad=True)
    z = make_method("imle", settings, Timer()).sample(theta, torch.Generator().manual_seed(9))
    noise = sum_of_gamma(
        (2, 2, 4, 6), k=3.0, num_terms=10, generator=torch.Generator().manual_seed(9)
    )
    t2 = theta.detach().clone().requires_grad_()
    z2 = imle(t2, noise, TopK(3), lam=10.0, temperature=10.0, target_temperature=10.0)
    assert torch.equal(z, z2)
    dz = torch.randn(z.shape, generator=torch.Generator().manual_seed(10))
    (z * dz).sum().backward()
    (z2 * dz).sum().backward()
    assert theta.grad is not None and torch.equal(theta.grad, t2.grad)  # type: ignore[arg-type]


def test_simple_method_is_the_library_call_on_theta_over_tau() -> None:
    settings = MethodSettings(k=3, samples=2)
    theta = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(13), requires_grad=True)
    z = make_method("simple", settings, Timer()).sample(theta, torch.Generator().manual_seed(14))
    uniforms = torch.rand((2, 2, 4, 6), generator=torch.Generator().manual_seed(14))
    t2 = theta.detach().clone().requires_grad_()
    z2 = simple(t2 / 10.0, uniforms, 3)  # exact samples of q = p(.; theta / tau), tau = 10
    assert torch.equal(z, z2)
    dz = torch.randn(z.shape, generator=torch.Generator().manual_seed(15))
    (z * dz).sum().backward()
    (z2 * dz).sum().backward()
    assert theta.grad is not None and torch.equal(theta.grad, t2.grad)  # type: ignore[arg-type]


def test_aimle_method_adapts_beta() -> None:
    method = make_method("aimle", MethodSettings(k=2, aimle_beta=1.0, aimle_step=0.25), Timer())
    assert isinstance(method, AdaptiveIMLE)
    theta = torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(11), requires_grad=True)
    (method.sample(theta, torch.Generator().manual_seed(12)) * torch.randn(5)).sum().backward()
    method.after_backward()
    assert method.diagnostics()["aimle_beta"] in (0.75, 1.25)


def test_perturb_and_map_is_topk_of_the_perturbed_scores() -> None:
    theta = torch.randn(3, 2, 7, generator=torch.Generator().manual_seed(13))
    noise = torch.randn(4, 3, 2, 7, generator=torch.Generator().manual_seed(14))
    assert torch.equal(
        perturb_and_map(theta, noise, 2.5, TopK(3)), topk_map(theta + 2.5 * noise, 3)
    )


def test_method_settings_and_registry_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="temperature"):
        MethodSettings(k=2, temperature=0.0)
    with pytest.raises(ValueError, match="method"):
        make_method("reinforce", MethodSettings(k=2), Timer())


# ----------------------------------------------------------------------------- model, seeds


def test_model_shapes_and_seeded_init() -> None:
    a = DiscreteVAE(64, 20, 20, torch.Generator().manual_seed(0))
    b = DiscreteVAE(64, 20, 20, torch.Generator().manual_seed(0))
    c = DiscreteVAE(64, 20, 20, torch.Generator().manual_seed(1))
    assert [p.shape[0] for p in a.encoder.parameters()][::2] == [512, 256, 400]
    assert [p.shape[0] for p in a.decoder.parameters()][::2] == [256, 512, 64]
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb)
        assert pa.ndim == 1 or not torch.equal(pa, pc)
    assert all((p == 0).all() for p in a.parameters() if p.ndim == 1)
    x = torch.rand(5, 64)
    assert a.encode(x).shape == (5, 20, 20)
    assert a.decode(torch.zeros(3, 5, 20, 20)).shape == (3, 5, 64)


def test_seed_streams_are_fixed_and_distinct() -> None:
    assert seed_streams(4) == seed_streams(4)
    assert len(set(seed_streams(4))) == 4 and seed_streams(4) != seed_streams(5)
    spawned = np.random.SeedSequence(4).spawn(3)  # the first three as when three were spawned
    assert seed_streams(4)[:3] == tuple(
        int(c.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)) for c in spawned
    )


def test_perturb_and_map_codes_are_not_samples_of_q() -> None:
    """Why the benchmark reports a second NELBO: Sum-of-Gamma perturb-and-MAP at tau is much less
    random than q = p(.; theta / tau), whose KL the NELBO charges (n = 20, k = 10, tau = 10, score
    scale 10, 20,000 codes each: the per-item entropies differ by more than half)."""
    g = torch.Generator().manual_seed(0)
    theta = 10.0 * torch.randn(20, generator=g, dtype=torch.float64)
    noise = sum_of_gamma((20000, 20), k=10.0, num_terms=10, generator=g, dtype=torch.float64)
    pam = perturb_and_map(theta, noise, 10.0, TopK(10)).mean(0)
    uniforms = torch.rand((20000, 20), generator=g, dtype=torch.float64)
    exact = imle_fn.topk_sample(theta / 10.0, uniforms, 10).mean(0)
    torch.testing.assert_close(exact, imle_fn.topk_marginals(theta / 10.0, 10), atol=0.02, rtol=0)

    def entropy(mu: torch.Tensor) -> float:
        mu = mu.clamp(1e-12, 1 - 1e-12)
        return float(-(mu * mu.log() + (1 - mu) * (1 - mu).log()).sum())

    assert entropy(pam) < 0.5 * entropy(exact)
    assert float((pam - exact).abs().max()) > 0.2


def test_mean_and_standard_error() -> None:
    mean, se = mean_se([1.0, 2.0, 3.0])
    assert mean == 2.0 and se == pytest.approx(1.0 / math.sqrt(3.0))
    assert mean_se([5.0]) == (5.0, None)
    with pytest.raises(ValueError, match="values"):
        mean_se([])


# ------------------------------------------------------------------------- the command, small

SMALL = [
    "bench", "dvae", "--train-limit", "60", "--test-limit", "20", "--blocks", "2", "--items", "5",
    "--k", "2", "--epochs", "2", "--batch-size", "30", "--show", "4", "--threads", "1",
    "--no-progress",
]  # fmt: skip


def _numbers(run: dict[str, Any]) -> list[Any]:
    """A run's results without its wall times."""
    keep = ("train_loss", "test_nelbo", "test_recon", "test_kl", "extra")
    return [[e[key] for key in keep] for e in run["epochs"]] + [run["reconstructions"]]


def test_smoke_run_all_methods_writes_finite_results(tmp_path: Path) -> None:
    out = tmp_path / "a"
    assert main([*SMALL, "--seeds", "2", "--out", str(out)]) == 0
    for name in ("results.md", "results.json", "curves.png", "reconstructions.png"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "results.json").read_text())
    assert [row["method"] for row in summary["methods"]] == list(METHODS)
    assert summary["setup"]["train_size"] == 60 and summary["setup"]["test_size"] == 20
    for row in summary["methods"]:
        assert row["seeds"] == [0, 1] and row["epochs"] == [2, 2]
        for key in ("test_nelbo", "test_nelbo_se", "test_recon", "test_kl", "train_loss"):
            assert math.isfinite(row[key]), (row["method"], key)
        assert math.isfinite(row["test_nelbo_exact"]) and math.isfinite(row["test_nelbo_exact_se"])
    runs = load_records(out)
    assert len(runs) == 2 * len(METHODS)
    for run in runs:
        for e in run["epochs"]:
            assert e["test_nelbo"] == pytest.approx(e["test_recon"] + e["test_kl"])
            assert e["test_nelbo_exact"] == pytest.approx(e["test_recon_exact"] + e["test_kl"])
            assert e["test_recon_exact"] > 0 and e["test_recon_exact"] != e["test_recon"]
            assert e["test_kl"] >= -1e-6 and e["test_recon"] > 0
        probs = np.array(run["reconstructions"])
        assert probs.shape == (4, 64) and ((probs > 0) & (probs < 1)).all()
    assert "aimle_beta" in next(r for r in runs if r["method"] == "aimle")["epochs"][0]["extra"]
    md = (out / "results.md").read_text()
    assert all(f"| {m} | 2 | 2 |" in md for m in METHODS)


def test_smoke_run_is_deterministic_by_seed_and_resumable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*SMALL, "--methods", "imle", "relaxed_topk", "--seeds", "1"]
    main([*args, "--out", str(tmp_path / "a")])
    main([*args, "--out", str(tmp_path / "b")])
    main([*args, "--first-seed", "1", "--out", str(tmp_path / "c")])
    a, b, c = (load_records(tmp_path / d) for d in "abc")
    assert [_numbers(r) for r in a] == [_numbers(r) for r in b]
    assert [_numbers(r) for r in a] != [_numbers(r) for r in c]
    capsys.readouterr()
    main([*args, "--out", str(tmp_path / "a"), "--resume"])
    assert capsys.readouterr().out.count("finished earlier") == 2


def test_a_registered_data_set_runs_through_the_same_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(DATASETS, "bars-fixture", _fixture_dataset)
    out = tmp_path / "bars"
    args = [*SMALL, "--dataset", "bars-fixture", "--methods", "ste", "--seeds", "1"]
    assert main([*args, "--out", str(out)]) == 0
    (run,) = load_records(out)
    assert run["dataset"] == "bars-fixture" and run["image_shape"] == [4, 4]
    assert np.array(run["reconstructions"]).shape == (4, 16)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--k", "6"], "--k: expected <= --items = 5"),
        (["--k", "0"], "argument --k: expected >= 1"),
        (["--seeds", "0"], "argument --seeds"),
        (["--lr", "-1"], "argument --lr: expected > 0"),
        (["--epochs", "1.5"], "argument --epochs: invalid int value"),
        (["--methods", "reinforce"], "argument --methods: invalid choice"),
        (["--binarize", "otsu"], "argument --binarize: invalid choice"),
    ],
)
def test_bad_options_exit_2_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as stop:
        main([*SMALL, "--out", str(out), *extra])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "dvae", "--help"])
    text = capsys.readouterr().out
    assert "--items ITEMS" in text and "(default: 20)" in text and "(default: 0.001)" in text
