"""Smoke tests of bench/gpu_check.py, the GPU check script: it runs, on any machine.

No GPU is needed: without CUDA the script must exit 0 with a clear statement; its tables are built
by the same functions on the CPU (tiny sizes, one timed call), so a machine with a GPU never meets
a script that was never run. The timings themselves are not tested.
"""

from __future__ import annotations

import pytest
import torch

from bench import gpu_check


def test_without_a_gpu_nothing_is_measured(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    assert capsys.readouterr().out.startswith("CUDA not available: nothing measured")


def test_tables_build_on_the_cpu() -> None:
    settings = gpu_check.Settings(torch.device("cpu"), warmup=0, repeats=1)
    noise = gpu_check.noise_table(settings, [(2, 3, 4, 4)]).splitlines()
    assert len(noise) == 2 + 4  # header, rule, 4 samplers
    solver = gpu_check.solver_table(settings, [5], [3, 4]).splitlines()
    assert len(solver) == 2 + 2
    assert all(line.endswith("| yes |") for line in solver[2:])  # both solvers, the same paths
    warcraft = gpu_check.warcraft_table(settings, grid=2, batch=1).splitlines()
    assert len(warcraft) == 2 + 5
    for line in noise[2:] + solver[2:] + warcraft[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert all(cells), line
