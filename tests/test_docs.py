"""The documentation site (``docs/``, ``mkdocs.yml``): its code runs, its reference is complete.

* Every ```` ```python ```` block of every page of the site runs, in page order, in one namespace
  per page (a page reads like one script). A block right after ``<!-- skip: reason -->`` is not
  run; the skipped blocks are listed in `SKIPPED`, so a new one is a visible decision.
* A block followed by ``<!-- output -->`` prints exactly what comes next on the page (a fenced
  block, or the lines up to the next blank line, e.g. a Markdown table): measured numbers on the
  site are the output of the code beside them, never typed in.
* A table right after ``<!-- from PATH -->`` (e.g. ``bench/README.md``) quotes only figures that
  the file holds.
* ``torch.compile`` runs with ``backend="aot_eager"`` here unless a block names a backend: dynamo,
  ``fullgraph`` and the custom ops' autograd all run, inductor's code generation does not (a cold
  inductor compile takes tens of seconds; tests/estimators/test_implicit_mle.py covers it).
* The site builds with ``mkdocs build --strict``; each public namespace has a reference page whose
  built HTML holds an entry for every name in its ``__all__`` (a name without a docstring has
  none) and renders docstring examples as code; the built pages load nothing (fonts, scripts,
  styles, images) from another host.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import pkgutil
import re
import subprocess
import sys
import types
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

import imle_fn

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# Blocks that do not run in the test suite, per page: (page, the reason in their skip marker).
SKIPPED = {
    ("ray.md", "starts Ray workers (RaySolver is tested in tests/distributed/test_remote.py)"): 3,
}

# Library namespaces without a reference page, and why.
NOT_API = {
    "imle_fn.apps": "the command-line programs (imle-fn demo, imle-fn bench ...), documented in apps.md",
}


def _hooks() -> Any:
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def site_pages() -> list[str]:
    """Every Markdown page of the site, relative to the repository root."""
    pages = [p.relative_to(ROOT).as_posix() for p in sorted(DOCS.rglob("*.md"))]
    return pages + [rel for rel in _hooks().extra_files() if rel.endswith(".md")]


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    skip: str | None  # the reason of a skip marker right before the block
    output: str | None  # what the page says the block prints


FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]*)")


def parse_blocks(page: str) -> list[Block]:
    """The fenced code blocks of a page, with their skip and output markers."""
    lines = (ROOT / page).read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        end = i + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        body = [line[len(indent) :] for line in lines[i + 1 : end]]
        before = [line.strip() for line in lines[:i] if line.strip()]
        marker = re.fullmatch(r"<!-- skip: (.+) -->", before[-1]) if before else None
        output, after = _output_after(lines, end + 1)
        blocks.append(
            Block(page, i + 1, match["lang"], "\n".join(body) + "\n",
                  marker[1] if marker else None, output)
        )  # fmt: skip
        i = after
    return blocks


def _output_after(lines: list[str], start: int) -> tuple[str | None, int]:
    """``(expected output, next line to scan)`` when an output marker follows line ``start``."""
    j = start
    while j < len(lines) and not lines[j].strip():
        j += 1
    if j >= len(lines) or lines[j].strip() != "<!-- output -->":
        return None, start
    j += 1
    while j < len(lines) and not lines[j].strip():
        j += 1
    match = FENCE.match(lines[j]) if j < len(lines) else None
    if match:  # a fenced block: its body
        end = j + 1
        while end < len(lines) and lines[end].strip() != match["fence"]:
            end += 1
        return "\n".join(lines[j + 1 : end]), end + 1
    end = j
    while end < len(lines) and lines[end].strip():
        end += 1
    return "\n".join(lines[j:end]), end


def _normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


PAGES_WITH_CODE = [p for p in site_pages() if any(b.language == "python" for b in parse_blocks(p))]


@pytest.mark.parametrize("page", PAGES_WITH_CODE)
def test_page_code_runs(page: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run the page's Python blocks in order; check the printed output where the page shows it."""
    compile_ = torch.compile

    def compile_aot_eager(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("backend", "aot_eager")
        return compile_(*args, **kwargs)

    monkeypatch.setattr(torch, "compile", compile_aot_eager)
    # One intra-op thread: the pages' tensors are small, and on a busy machine torch's spinning
    # OpenMP workers would multiply the time (see bench/README.md, "I-MLE overhead").
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run_page(page, monkeypatch, tmp_path)
    finally:
        torch.set_num_threads(threads)


def _run_page(page: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("docs_page")  # a page runs like a script, as its own module
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for block in parse_blocks(page):
        if block.language != "python" or block.skip is not None:
            continue
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            exec(compile(block.code, f"{page}:{block.line}", "exec"), namespace)
        if block.output is not None:
            assert _normalise(stdout.getvalue()) == _normalise(block.output), (
                f"{page}:{block.line}: the block prints something else than the page shows"
            )


def test_skipped_blocks_are_the_listed_ones() -> None:
    skipped: dict[tuple[str, str], int] = {}
    for page in site_pages():
        for block in parse_blocks(page):
            if block.skip is not None:
                key = (Path(page).name, block.skip)
                skipped[key] = skipped.get(key, 0) + 1
    assert skipped == SKIPPED, f"skipped blocks changed: {skipped}"


def test_output_markers_follow_python_blocks() -> None:
    for page in site_pages():
        text = (ROOT / page).read_text()
        markers = text.count("<!-- output -->")
        with_output = [b for b in parse_blocks(page) if b.output is not None]
        assert len(with_output) == markers, f"{page}: an output marker follows no code block"
        assert all(b.language == "python" and b.skip is None for b in with_output), page


def test_home_page_example_is_the_readmes() -> None:
    readme = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)[0]
    for page in ("docs/index.md", "docs/getting-started.md"):
        first = next(b for b in parse_blocks(page) if b.language == "python")
        assert first.code == readme, f"{page}: the first example differs from the README's"


def test_quoted_figures_are_in_their_source() -> None:
    """Tables after ``<!-- from PATH -->`` quote only figures that the file PATH holds."""
    quoted = 0
    for page in site_pages():
        lines = (ROOT / page).read_text().splitlines()
        for i, line in enumerate(lines):
            marker = re.fullmatch(r"<!-- from (\S+) -->", line.strip())
            if not marker:
                continue
            source = (ROOT / marker[1]).read_text()
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            assert lines[j].startswith("|"), f"{page}:{i + 1}: the marker must precede a table"
            while j < len(lines) and lines[j].startswith("|"):
                for number in re.findall(r"\d+(?:\.\d+)?", lines[j]):
                    assert number in source, f"{page}:{j + 1}: {number} is not in {marker[1]}"
                    quoted += 1
                j += 1
    assert quoted > 0


def test_cited_tests_exist() -> None:
    """``tests/...py::test_name`` (and a following ``::test_name``) on a page names a real test."""
    cited = 0
    for page in site_pages():
        current: Path | None = None
        for path, name in re.findall(
            r"`(tests/[\w/]+\.py)?::(test_\w+)`", (ROOT / page).read_text()
        ):
            current = ROOT / path if path else current
            assert current is not None, f"{page}: '::{name}' follows no test file"
            assert f"def {name}(" in current.read_text(), f"{page}: {current.name}::{name} is gone"
            cited += 1
    assert cited > 0


# --- the built site --------------------------------------------------------------------------


def public_namespaces() -> list[str]:
    """``imle_fn`` and its first-level modules and packages that are not private."""
    names = ["imle_fn"]
    for info in pkgutil.iter_modules(imle_fn.__path__):
        name = f"imle_fn.{info.name}"
        if not info.name.startswith("_") and name not in NOT_API:
            names.append(name)
    return names


def reference_pages() -> dict[str, Path]:
    """``{namespace: reference page}`` from the pages' ``::: namespace`` directives."""
    pages: dict[str, Path] = {}
    for page in sorted((DOCS / "reference").glob("*.md")):
        for name in re.findall(r"^::: ([\w.]+)\s*$", page.read_text(), flags=re.M):
            assert name not in pages, f"{name} has two reference pages"
            pages[name] = page
    return pages


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built with ``mkdocs build --strict`` into a temporary folder."""
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip('MkDocs is not installed (pip install -e ".[docs]")')
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return out


def test_every_public_namespace_has_a_reference_page() -> None:
    pages = reference_pages()
    for name in public_namespaces():
        assert name in pages, f"{name} has no page in docs/reference/ (a '::: {name}' directive)"
        assert hasattr(importlib.import_module(name), "__all__"), f"{name} has no __all__"


def test_every_public_name_has_a_reference_entry(site: Path) -> None:
    pages = reference_pages()
    for name in public_namespaces():
        html = (site / "reference" / pages[name].stem / "index.html").read_text()
        anchors = set(re.findall(r'id="([\w.]+)"', html))
        exported = importlib.import_module(name).__all__
        missing = [item for item in exported if f"{name}.{item}" not in anchors]
        assert not missing, f"{name}: no reference entry for {missing}"
        # Doctests render as code; '>>>' read as Markdown would be nested block quotes.
        assert "<blockquote>" not in html, f"{name}: a docstring example rendered as a quote"


class _Resources(HTMLParser):
    """Collects every URL a page loads by itself (not the links a reader may follow)."""

    # tag -> the attribute that makes the browser fetch something
    LOADS: ClassVar[dict[str, str]] = {
        "script": "src", "img": "src", "iframe": "src", "source": "src", "video": "src",
        "audio": "src", "embed": "src", "object": "data", "input": "src", "track": "src",
    }  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "link" and values.get("href"):  # stylesheets, icons, preconnect, manifest
            self.urls.append(values["href"] or "")
        if tag in self.LOADS and values.get(self.LOADS[tag]):
            self.urls.append(values[self.LOADS[tag]] or "")
        if values.get("srcset"):
            self.urls += [part.split()[0] for part in (values["srcset"] or "").split(",")]
        if values.get("style"):
            self.urls += re.findall(r"url\(['\"]?([^'\")]+)", values["style"] or "")


def _is_external(url: str) -> bool:
    return bool(re.match(r"(https?:)?//", url.strip()))


def test_site_loads_nothing_from_other_hosts(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 10
    for page in pages:
        parser = _Resources()
        text = page.read_text()
        parser.feed(text)
        external = [u for u in parser.urls if _is_external(u)]
        external += re.findall(r"@import\s+(?:url\()?['\"]?((?:https?:)?//[^'\")\s]+)", text)
        assert not external, f"{page.relative_to(site)} loads {external}"
    for sheet in sorted(site.rglob("*.css")):
        urls = re.findall(r"url\(['\"]?([^'\")]+)|@import\s+['\"]([^'\"]+)", sheet.read_text())
        external = [u for pair in urls for u in pair if u and _is_external(u)]
        assert not external, f"{sheet.relative_to(site)} loads {external}"
    for asset in sorted(site.rglob("*")):
        if asset.suffix in {".html", ".css", ".js"}:
            assert "fonts.googleapis.com" not in asset.read_text(errors="replace"), asset
