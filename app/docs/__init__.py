"""The reference documents under docs/ that are written from the code: `python -m app.docs` writes them,
`python -m app.docs --check` says which are stale (a test runs the check)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from app.docs import cli, configuration, events, language

DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"
WRITTEN: dict[str, Callable[[], str]] = {
    "events.md": events.render,
    "language.md": language.render,
    "cli.md": cli.render,
    "configuration.md": configuration.render,
}


def stale(folder: Path = DOCS_DIR) -> list[str]:
    """The documents whose file differs from what the code would write now."""
    return [name for name, render in WRITTEN.items()
            if not (folder / name).exists() or (folder / name).read_text() != render()]


def write(folder: Path = DOCS_DIR) -> list[str]:
    """Write every document; the names of those that changed."""
    changed = stale(folder)
    for name in changed:
        (folder / name).write_text(WRITTEN[name]())
    return changed
