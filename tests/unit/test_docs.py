"""The front page stays a front page, and the documentation cites only what exists.

- README.md is at most 200 lines (what, the two commands, the quick starts, links; the rest is in docs/);
- every link of README.md and docs/ leads to a file or folder that exists, and so does every repository
  path they quote in backticks;
- nothing in the repository cites documents that are not in it (the design notes and contracts the
  project was started from, or the source documents behind them).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
QUOTED = re.compile(r"`([^`\s]+)`")
#: Built from parts so that this file does not cite them itself.
OUTSIDE = re.compile("|".join([r"DESIGN\.md", r"CONTRACTS\.md", r"the " + "seeds", r"seeds" + "'"]), re.IGNORECASE)


def tracked() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()


def top_level() -> set[str]:
    return {path.split("/")[0] for path in tracked()}


def test_the_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail into docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_leads_somewhere(page: Path) -> None:
    missing = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor of the same page
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)} links to what does not exist: {missing}"


def cited_paths(text: str, roots: set[str]) -> list[str]:
    """Backticked repository paths: a tracked top-level name followed by a slash (or a tracked file)."""
    found = []
    for token in QUOTED.findall(text):
        token = token.rstrip(".,:;")
        first = token.split("/")[0]
        if first in roots and ("/" in token or "." in token) and "<" not in token and "*" not in token:
            found.append(token)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_quoted_path_exists(page: Path) -> None:
    missing = [path for path in cited_paths(page.read_text(), top_level()) if not (ROOT / path).exists()]
    assert not missing, f"{page.relative_to(ROOT)} quotes paths that do not exist: {missing}"


def test_quoted_paths_are_found() -> None:
    roots = {"docs", "README.md", "operator"}
    text = "see `docs/a.md`, `README.md`, `operator/x/` and `bench.simulate`, `.venv/bin`, `docs/<name>.md`"
    assert cited_paths(text, roots) == ["docs/a.md", "README.md", "operator/x/"]


def test_nothing_cites_documents_outside_the_repository() -> None:
    found = []
    for name in tracked():
        path = ROOT / name
        if path.suffix in (".png", ".gz", ".sum") or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if OUTSIDE.search(line):
                found.append(f"{name}:{number}")
    assert not found, f"cites documents that are not in the repository: {found}"
