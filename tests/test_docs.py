"""The README and docs/ pages: every relative link resolves, and the commands the README shows exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_links(page: Path) -> list[str]:
    """The link targets of a markdown page that point into the repository (no URL, no in-page anchor)."""
    return [
        t
        for t in LINK.findall(page.read_text(encoding="utf-8"))
        if not re.match(r"^[a-z]+:", t) and not t.startswith("#")
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    missing = [t for t in relative_links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_every_docs_page_is_reachable_from_the_readme():
    reached, todo = set(), [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        for t in relative_links(page):
            target = (page.parent / t.split("#")[0]).resolve()
            if target.suffix == ".md" and target not in reached:
                reached.add(target)
                todo.append(target)
    unreached = [p.name for p in PAGES[1:] if p.resolve() not in reached]
    assert not unreached, f"docs pages no link leads to: {unreached}"


def test_the_commands_the_readme_shows_exist():
    from gmdrit_cli.cli.app import app as typer_app
    from gmdrit_cli.cli.main import app  # noqa: F401  (registers every command)

    names = {c.name or c.callback.__name__ for c in typer_app.registered_commands}
    names |= {g.name for g in typer_app.registered_groups}
    shown = set(re.findall(r"^gmdrit ([a-z]+)", (ROOT / "README.md").read_text(encoding="utf-8"), re.M))
    assert shown and shown <= names, f"README shows commands gmdrit lacks: {shown - names}"
