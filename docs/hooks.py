"""MkDocs hook: repository files that belong to the site without being copied into ``docs/``.

The README's figures (``figures/``), the benchmark figures (``bench/figures/``) and the benchmark
notes (``bench/README.md``, a page of the site) are served from where they live, so the site never
shows a stale copy. Paths in the site are the repository's paths, so the relative image links in
``bench/README.md`` resolve as they do on a code host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# Repository folders and files served at the same path in the site.
EXTRA_SOURCES = ("figures", "bench/figures", "bench/README.md")


def extra_files() -> list[str]:
    """Repository-relative paths (POSIX) of every file the hook adds to the site."""
    paths: list[str] = []
    for source in EXTRA_SOURCES:
        path = ROOT / source
        found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        paths += [p.relative_to(ROOT).as_posix() for p in found]
    return paths


def on_files(files: Any, config: Any) -> Any:
    """Add the extra files to the site's file collection (MkDocs event)."""
    from mkdocs.structure.files import File

    for rel in extra_files():
        if files.get_file_from_path(rel) is not None:
            raise ValueError(f"docs/{rel} would hide the repository's {rel}: remove one of them")
        files.append(File(rel, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files
