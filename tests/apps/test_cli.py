"""The ``imle-fn`` command line: every option is checked as it is parsed, and ``--help`` shows defaults.

A bad value is an argparse error (exit status 2, ``imle-fn bench warcraft: error: argument --grid:
...``) before the command does any work: no map generated, no folder created.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from imle_fn.apps import arguments
from imle_fn.apps.cli import build_parser, main

# One bad value for every option that takes a value (completeness: test_every_valued_option_...).
BAD: dict[str, list[tuple[str, str, str]]] = {
    "bench warcraft": [
        ("--grid", "1", "expected an int >= 2, got '1'"),
        ("--train", "0", "expected an int >= 1, got '0'"),
        ("--test", "0", "expected an int >= 1, got '0'"),
        ("--epochs", "0", "expected an int >= 1, got '0'"),
        ("--batch-size", "0", "expected an int >= 1, got '0'"),
        ("--lr", "-1", "expected a finite number > 0, got '-1'"),
        ("--lam-imle", "0", "expected a finite number > 0, got '0'"),
        ("--lam-dbb", "nan", "expected a finite number > 0, got 'nan'"),
        ("--sigma-fy", "0", "expected a finite number > 0, got '0'"),
        ("--num-samples", "0", "expected an int >= 1, got '0'"),
        ("--threads", "0", "expected an int in 1..\\d+, got '0'"),
        ("--seed", "-1", "expected an int in 0..\\d+, got '-1'"),
        ("--data-seed", "1.5", "expected an int, got '1.5'"),
        ("--out", "FILE", "expected a folder, got '.*': it is a file"),
        ("--data-dir", "FILE/maps", "expected a folder, got '.*': it lies under"),
        ("--method", "sgd", "invalid choice: 'sgd'"),
    ],
    "demo": [
        ("--steps", "0", "expected an int >= 1, got '0'"),
        ("--num-paths", "0", "expected an int >= 1, got '0'"),
        ("--gradient-samples", "-2", "expected an int >= 1, got '-2'"),
        ("--frames", "1", "expected an int >= 2, got '1'"),
        ("--gradient-frames", "x", "expected an int, got 'x'"),
        ("--seed", "-1", "expected an int in 0..\\d+, got '-1'"),
        ("--out", "FILE/demo", "expected a folder, got '.*': it lies under"),
        ("--learning-solver", "fast", "invalid choice: 'fast'"),
    ],
}
CASES = [(command, *case) for command, cases in BAD.items() for case in cases]


def subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for word in command.split():
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = sub.choices[word]
    return parser


@pytest.mark.parametrize(("command", "option", "value", "message"), CASES)
def test_bad_value_is_an_argparse_error_before_any_work(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    option: str,
    value: str,
    message: str,
) -> None:
    file = tmp_path / "FILE"
    file.write_text("not a folder")
    out = tmp_path / "out"
    value = value.replace("FILE", str(file))
    argv = [*command.split(), *([] if option == "--out" else ["--out", str(out)]), option, value]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    (line,) = [s for s in capsys.readouterr().err.splitlines() if "error:" in s]
    assert line.startswith(f"imle-fn {command}: error: argument {option}: ")
    assert re.search(message, line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE"]  # nothing created or written


@pytest.mark.parametrize("command", sorted(BAD))
def test_every_valued_option_is_checked_as_it_is_parsed(command: str) -> None:
    """The kind behind case 12: a new option must come with a converter and a bad-value case."""
    valued = {
        action.option_strings[-1]: action
        for action in subparser(command)._actions
        if action.option_strings and action.nargs != 0
    }
    assert sorted(valued) == sorted(option for option, _, _ in BAD[command])
    for option, action in valued.items():
        if action.choices is None:
            assert getattr(action.type, "__module__", None) == arguments.__name__, option


@pytest.mark.parametrize("command", sorted(BAD))
def test_help_shows_every_default(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command.split(), "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    parser = subparser(command)
    formatter = parser._get_formatter()
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0:
            continue  # --help and the flags (off unless given)
        shown = " ".join(formatter._expand_help(action).split())
        assert shown in text and "(default: " in shown, action.option_strings
        if action.default is not None:
            default = action.default
            default = " ".join(default) if isinstance(default, list) else default
            assert f"(default: {default})" in shown, action.option_strings
    if command == "bench warcraft":
        assert "cells per side K (default: 12)" in text
        assert "Adam learning rate (default: 0.0005)" in text
        assert "map cache (default: OUT/data)" in text
    else:
        assert "Adam steps of the learning runs (default: 1100)" in text
