"""Public docstrings: a Raises section where the code raises, References where it implements a paper."""

from __future__ import annotations

import inspect

import pytest

import imle_fn

# Public names that implement a published method: their docstring names the paper.
PAPERS = {
    "imle": "arXiv:2106.01798",
    "imle_vjp": "arXiv:2106.01798",
    "imle_central": "arXiv:2106.01798",
    "aimle": "arXiv:2209.04862",
    "aimle_update": "arXiv:2209.04862",
    "dbb": "arXiv:1912.02175",
    "perturbed": "arXiv:2002.08676",
    "fenchel_young_loss": "arXiv:2002.08676",
    "ste": "arXiv:1308.3432",
    "simple": "arXiv:2210.01941",
    "topk_sample": "arXiv:2210.01941",
    "topk_marginals": "arXiv:2210.01941",
    "topk_marginals_vjp": "arXiv:2210.01941",
    "topk_log_partition": "arXiv:2210.01941",
    "sum_of_gamma": "arXiv:2106.01798",
}


def _raises_in_code(obj: object) -> bool:
    """Does the object (or, for a class, its constructor) raise or call an argument check?"""
    if getattr(obj, "_is_protocol", False):
        return False  # a typing.Protocol: an interface, no code of its own
    targets = [obj]
    if inspect.isclass(obj):
        targets = [getattr(obj, n) for n in ("__post_init__", "__init__") if n in vars(obj)]
    source = ""
    for target in targets:
        try:
            source += inspect.getsource(target)  # type: ignore[arg-type]
        except (TypeError, OSError):
            continue
    return "raise " in source or "check_" in source


PUBLIC = [name for name in imle_fn.__all__ if callable(getattr(imle_fn, name))]


@pytest.mark.parametrize("name", PUBLIC)
def test_raises_section_where_the_code_raises(name: str) -> None:
    obj = getattr(imle_fn, name)
    if _raises_in_code(obj):
        assert "Raises:" in (inspect.getdoc(obj) or ""), f"imle_fn.{name}: no Raises section"


@pytest.mark.parametrize("name", sorted(PAPERS))
def test_references_name_the_paper(name: str) -> None:
    doc = inspect.getdoc(getattr(imle_fn, name)) or ""
    assert "References:" in doc and PAPERS[name] in doc, f"imle_fn.{name}: no reference"
