"""README stays a first page, and the links of README, CONTRIBUTING.md and docs/ lead somewhere.

- README.md: at most 200 lines; every link into docs/ names a file that exists.
- Every relative link in README.md, CONTRIBUTING.md and docs/*.md names an existing file, and
  its #anchor, if any, a heading of that file (GitHub's way of naming headings).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_MAX_LINES = 200
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
DOCUMENTS = [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def links(path: Path) -> list[str]:
    """Return the link targets of a Markdown file, outside code blocks."""
    return LINK.findall(FENCE.sub("", path.read_text(encoding="utf-8")))


def anchors(path: Path) -> set[str]:
    """Return the anchors GitHub gives the headings of a Markdown file."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    found = set()
    for heading in re.findall(r"^#+ (.+)$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_readme_is_one_first_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_readme_links_into_docs_name_existing_files():
    targets = [t.split("#")[0] for t in links(README) if t.startswith(("docs/", "./docs/"))]
    assert targets, "README links to no document in docs/"
    missing = sorted({t for t in targets if not (ROOT / t).is_file()})
    assert missing == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_a_file_and_heading(document):
    broken = []
    for target in links(document):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        name, _, anchor = target.partition("#")
        path = (document.parent / name) if name else document
        unknown_heading = anchor and path.suffix == ".md" and anchor not in anchors(path)
        if not path.is_file() or unknown_heading:
            broken.append(target)
    assert broken == []
