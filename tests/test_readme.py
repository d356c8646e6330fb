"""The README's code blocks run as written (the docs site's run in tests/test_docs.py)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_opens_with_a_short_example() -> None:
    lines = README.read_text().splitlines()
    assert any(line.startswith("```python") for line in lines[:10])
    assert len(_python_blocks()[0].strip().splitlines()) <= 12


def test_readme_examples_run() -> None:
    namespace: dict = {}
    first, torch_func = _python_blocks()[:2]
    exec(compile(first, "README-example-1", "exec"), namespace)
    theta = namespace["theta"]
    assert namespace["paths"].shape == (10, 8, 12, 12)
    assert theta.grad is not None and theta.grad.abs().sum() > 0
    exec(compile(torch_func, "README-example-2", "exec"), namespace)
    per_example = namespace["per_example"]
    assert per_example.shape == (8, 12, 12)
    # vmap(grad) of the per-instance loss equals the batched gradient of the summed loss.
    t = theta.detach().clone().requires_grad_()
    namespace["step"](t).backward()
    assert torch.allclose(t.grad, per_example)


def test_simple_example_runs() -> None:
    """The SIMPLE block of docs/choosing-an-estimator.md: exact k-hot samples, the exact-marginal
    VJP."""
    import imle_fn

    page = (README.parent / "docs" / "choosing-an-estimator.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    (block,) = [b for b in blocks if "imle_fn.simple(" in b]
    namespace: dict = {"torch": torch, "imle_fn": imle_fn}
    exec(compile(block, "README-simple", "exec"), namespace)
    z, theta, mu = namespace["z"], namespace["theta"], namespace["mu"]
    assert z.shape == (8, 4, 50) and torch.equal(z.sum(-1), torch.full((8, 4), 5.0))
    torch.testing.assert_close(mu.sum(-1), torch.full((4,), 5.0))
    dz = torch.linspace(-1.0, 1.0, 50).expand(4, 50) / 8  # the loss's cotangent of each sample
    expected = imle_fn.topk_marginals_vjp(dz, theta.detach(), 5)
    torch.testing.assert_close(theta.grad, expected)


def test_readme_links_reach_files() -> None:
    """Every relative link and image of the README names a file of the repository (the README
    sends newcomers to the docs pages; a renamed page must not leave a dead link)."""
    text = README.read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) + re.findall(r'src="([^"]+)"', text)
    relative = [t for t in targets if "://" not in t]
    assert len(relative) >= 10  # the docs table and the demo figures
    missing = [t for t in relative if not (README.parent / t).is_file()]
    assert not missing, missing
