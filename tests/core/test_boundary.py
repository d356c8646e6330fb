def test_huge_scores_and_grad_requiring_solver_outputs_warn_nothing() -> None:
    """The one-pass NaN / finiteness checks sum the values: an overflowing sum (huge finite
    scores) must not surface NumPy's RuntimeWarning, nor a solver output that requires grad
    torch's conversion warning."""
    import warnings

    import torch

    import imle_fn

    grab = imle_fn.as_solver(lambda x: x.clone().requires_grad_(), event_ndim=1, backend="torch")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        z = imle_fn.map_solve(torch.full((1, 5, 5), -3e38), imle_fn.GridShortestPath())
        assert z.sum() == 5  # the diagonal: every cell costs the same
        assert imle_fn.map_solve(torch.randn(2, 3), grab).shape == (2, 3)
