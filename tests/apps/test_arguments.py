"""`imle_fn.apps.arguments`: the argparse converters shared by the ``imle-fn`` subcommands."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from imle_fn.apps.arguments import (
    MAX_SEED,
    HelpFormatter,
    int_at_least,
    nonnegative_float,
    positive_float,
    positive_int,
    seed,
    writable_dir,
)


def test_ints() -> None:
    assert positive_int("1") == 1 and positive_int(" 12 ") == 12 and positive_int("1_000") == 1000
    assert int_at_least(2)("2") == 2 and int_at_least(0, 3)("3") == 3
    assert seed("0") == 0 and seed(str(MAX_SEED)) == MAX_SEED
    for convert, text, message in [
        (positive_int, "0", "expected >= 1, got 0"),
        (positive_int, "-3", "expected >= 1, got -3"),
        (int_at_least(2), "1", "expected >= 2, got 1"),
        (int_at_least(0, 3), "4", "expected <= 3, got 4"),
        (seed, "-1", f"expected >= 0 and <= {MAX_SEED}, got -1"),
        (seed, str(MAX_SEED + 1), f"expected <= {MAX_SEED}, got {MAX_SEED + 1}"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError, match=f"^{message}$"):
            convert(text)
    for text in ("2.5", "", "ten"):
        with pytest.raises(ValueError, match="invalid literal for int"):
            positive_int(text)  # argparse reports it as "invalid int value: '2.5'"
    assert positive_int.__name__ == "int"


def test_floats() -> None:
    assert positive_float("5e-4") == 5e-4 and positive_float("50") == 50.0
    assert nonnegative_float("0") == 0.0 and nonnegative_float("1e-3") == 1e-3
    for convert, text, message in [
        (positive_float, "0", "expected > 0, got 0.0"),
        (positive_float, "-0.0", "expected > 0, got -0.0"),
        (positive_float, "-1", "expected > 0, got -1.0"),
        (nonnegative_float, "-1", "expected >= 0, got -1.0"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError, match=f"^{message}$"):
            convert(text)
    for convert in (positive_float, nonnegative_float):
        for text in ("nan", "inf", "-inf"):
            with pytest.raises(argparse.ArgumentTypeError, match="expected a finite number"):
                convert(text)
        with pytest.raises(ValueError, match="could not convert"):
            convert("fast")
        assert convert.__name__ == "float"


def test_writable_dir_accepts_existing_and_creatable_folders(tmp_path: Path) -> None:
    assert writable_dir(str(tmp_path)) == tmp_path
    deep = tmp_path / "a" / "b"
    assert writable_dir(str(deep)) == deep
    assert not (tmp_path / "a").exists()  # checking creates nothing


def test_writable_dir_refuses_files_and_what_lies_under_them(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(argparse.ArgumentTypeError, match="it is a file"):
        writable_dir(str(file))
    with pytest.raises(argparse.ArgumentTypeError, match=f"lies under '{file}', which is a file"):
        writable_dir(str(file / "sub" / "dir"))
    with pytest.raises(argparse.ArgumentTypeError, match="expected a folder, got ''"):
        writable_dir("")


def test_writable_dir_refuses_a_folder_it_cannot_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() != 0:  # root writes anywhere: then only the access check is simulated
        locked.chmod(0o500)
    else:
        monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked)
    try:
        with pytest.raises(argparse.ArgumentTypeError, match="expected a writable folder"):
            writable_dir(str(locked))
        with pytest.raises(argparse.ArgumentTypeError, match=f"its parent '{locked}'"):
            writable_dir(str(locked / "new"))
    finally:
        locked.chmod(0o700)


def test_help_formatter_shows_defaults_unless_the_help_says_them() -> None:
    parser = argparse.ArgumentParser(prog="p", formatter_class=HelpFormatter)
    parser.add_argument("--grid", type=positive_int, default=12, help="cells per side")
    parser.add_argument("--cache", default=None, help="map cache (default: OUT/data)")
    parser.add_argument("--quiet", action="store_true", help="say nothing")
    parser.add_argument("--methods", nargs="+", default=["imle", "ste"], help="methods")
    text = " ".join(parser.format_help().split())
    assert "methods (default: imle ste)" in text
    assert "cells per side (default: 12)" in text
    assert "(default: OUT/data)" in text and "(default: None)" not in text
    assert "say nothing" in text and "(default: False)" not in text
