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
from imle_fn.apps.arguments import MAX_SEED
from imle_fn.apps.cli import build_parser, main

SEED = f"expected >= 0 and <= {MAX_SEED}"
# One bad value for every option that takes a value (completeness: test_every_valued_option_...).
BAD: dict[str, list[tuple[str, str, str]]] = {
    "bench warcraft": [
        ("--grid", "1", "expected >= 2, got 1$"),
        ("--train", "0", "expected >= 1, got 0$"),
        ("--test", "0", "expected >= 1, got 0$"),
        ("--epochs", "0", "expected >= 1, got 0$"),
        ("--batch-size", "0", "expected >= 1, got 0$"),
        ("--lr", "-1", "expected > 0, got -1.0$"),
        ("--lam-imle", "0", "expected > 0, got 0.0$"),
        ("--lam-dbb", "nan", "expected a finite number, got nan$"),
        ("--sigma-fy", "inf", "expected a finite number, got inf$"),
        ("--num-samples", "0", "expected >= 1, got 0$"),
        ("--threads", "0", r"expected >= 1 and <= \d+, got 0$"),
        ("--seed", "-1", f"{SEED}, got -1$"),
        ("--data-seed", "1.5", "invalid int value: '1.5'$"),
        ("--out", "FILE", "expected a folder, got '.*': it is a file$"),
        ("--data-dir", "FILE/maps", "expected a folder, got '.*': it lies under"),
        ("--method", "sgd", "invalid choice: 'sgd'"),
    ],
    "demo": [
        ("--steps", "0", "expected >= 1, got 0$"),
        ("--num-paths", "0", "expected >= 1, got 0$"),
        ("--gradient-samples", "-2", "expected >= 1, got -2$"),
        ("--frames", "1", "expected >= 2, got 1$"),
        ("--gradient-frames", "x", "invalid int value: 'x'$"),
        ("--seed", str(MAX_SEED + 1), f"expected <= {MAX_SEED}, got {MAX_SEED + 1}$"),
        ("--out", "FILE/demo", "expected a folder, got '.*': it lies under"),
        ("--learning-solver", "fast", "invalid choice: 'fast'"),
    ],
    "bench dvae": [
        ("--dataset", "mnist", "invalid choice: 'mnist'"),
        ("--binarize", "otsu", "invalid choice: 'otsu'"),
        ("--data-seed", "-1", f"{SEED}, got -1$"),
        ("--train-limit", "0", "expected >= 1, got 0$"),
        ("--test-limit", "-5", "expected >= 1, got -5$"),
        ("--blocks", "0", "expected >= 1, got 0$"),
        ("--items", "0", "expected >= 1, got 0$"),
        ("--k", "0", "expected >= 1, got 0$"),
        ("--epochs", "1.5", "invalid int value: '1.5'$"),
        ("--batch-size", "0", "expected >= 1, got 0$"),
        ("--lr", "0", "expected > 0, got 0.0$"),
        ("--samples", "0", "expected >= 1, got 0$"),
        ("--eval-samples", "0", "expected >= 1, got 0$"),
        ("--methods", "reinforce", "invalid choice: 'reinforce'"),
        ("--temperature", "inf", "expected a finite number, got inf$"),
        ("--noise-terms", "0", "expected >= 1, got 0$"),
        ("--lam", "-2", "expected > 0, got -2.0$"),
        ("--aimle-beta", "-1", "expected >= 0, got -1.0$"),
        ("--aimle-target", "nan", "expected a finite number, got nan$"),
        ("--aimle-step", "-0.5", "expected >= 0, got -0.5$"),
        ("--relax-temperature", "0", "expected > 0, got 0.0$"),
        ("--seeds", "0", "expected >= 1, got 0$"),
        ("--first-seed", "-3", f"{SEED}, got -3$"),
        ("--out", "FILE", "expected a folder, got '.*': it is a file$"),
        ("--show", "0", "expected >= 1, got 0$"),
        ("--threads", "100000", r"expected <= \d+, got 100000$"),
    ],
}
CASES = [(command, *case) for command, cases in BAD.items() for case in cases]


def subparsers(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command of ``parser`` that runs something, by its words: ``"bench warcraft"``."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for word, sub in action.choices.items():
                found.update(subparsers(sub, f"{prefix}{word} "))
    return found or {prefix.strip(): parser}


COMMANDS = subparsers(build_parser())


def subparser(command: str) -> argparse.ArgumentParser:
    return COMMANDS[command]


def test_the_table_covers_every_command() -> None:
    assert sorted(COMMANDS) == sorted(BAD)


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


@pytest.mark.parametrize("command", sorted(COMMANDS))
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


@pytest.mark.parametrize("command", sorted(COMMANDS))
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
    for line in SPOT_CHECKS[command]:
        assert line in text, line


SPOT_CHECKS = {
    "bench warcraft": [
        "--grid GRID cells per side K (default: 12)",
        "--lr LR Adam learning rate (default: 0.0005)",
        "--data-dir DATA_DIR map cache (default: OUT/data)",
        "method(s) to run in turn (default: imle)",
    ],
    "demo": ["--steps STEPS Adam steps of the learning runs (default: 1100)"],
    "bench dvae": [
        "--items ITEMS items per block n (default: 20)",
        "use at most N train images (default: all)",
        "methods to run (default: imle aimle imle_central ste relaxed_topk simple)",
    ],
}
