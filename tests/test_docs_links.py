"""README.md and docs/*.md: every relative link reaches a file of the repository, and every `#anchor`
a heading of its target under GitHub's rules; README stays short and links every page."""

from __future__ import annotations

import glob
import os
import re
import urllib.parse

import pytest
from conftest import ROOT

README = os.path.join(ROOT, "README.md")
PAGES = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
DOCUMENTS = [README, *PAGES]
README_MAX_LINES = 200

FENCE = re.compile(r"^ {0,3}(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:...


def prose(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, inline code spans blanked."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, spaces to '-', punctuation but '-' and '_' dropped."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = text.strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in "-_ ")
    return text.replace(" ", "-")


def anchors(path: str) -> set[str]:
    """Every heading's anchor in a Markdown file, repeats numbered as GitHub does (-1, -2, ...)."""
    with open(path) as handle:
        text = handle.read()
    seen: dict[str, int] = {}
    found = set()
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        heading = None if fenced else HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: str) -> list[tuple[int, str]]:
    """(line number, target) of every relative Markdown link of a file."""
    with open(path) as handle:
        text = handle.read()
    return [(number, match.group(1)) for number, line in prose(text) for match in LINK.finditer(line)
            if not EXTERNAL.match(match.group(1))]


def broken(path: str, root: str = ROOT) -> list[str]:
    """What is wrong with a file's relative links, as `file:line: target: why`."""
    problems = []
    for number, target in links(path):
        at = f"{os.path.relpath(path, root)}:{number}: {target}"
        file_part, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), urllib.parse.unquote(file_part))) \
            if file_part else path
        if os.path.relpath(resolved, root).startswith(".."):
            problems.append(f"{at}: outside the repository")
        elif not os.path.exists(resolved):
            problems.append(f"{at}: no such file")
        elif anchor:
            if not resolved.endswith(".md") or os.path.isdir(resolved):
                problems.append(f"{at}: an anchor into a file that is not Markdown")
            elif urllib.parse.unquote(anchor) not in anchors(resolved):
                problems.append(f"{at}: no heading of {os.path.relpath(resolved, root)} has this anchor")
    return problems


def test_there_are_docs_pages():
    assert PAGES, "docs/ has no page"


@pytest.mark.parametrize("path", DOCUMENTS, ids=[os.path.relpath(p, ROOT) for p in DOCUMENTS])
def test_every_relative_link_resolves(path):
    assert links(path) or path != README, "README links nothing"
    problems = broken(path)
    assert not problems, "\n".join(problems)


def test_a_broken_link_or_anchor_is_caught(tmp_path):
    """The check itself: a missing file, a missing anchor, in the same file and in another, fail."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "other.md").write_text("# Other page\n\n## Exit codes: all of them\n")
    page = docs / "page.md"
    page.write_text("# Page\n\n## Safety and reliability\n\n"
                    "[ok](#safety-and-reliability) [ok](other.md#exit-codes-all-of-them) [ok](other.md)\n"
                    "`[not a link](nowhere.md)`\n"
                    "[bad](missing.md) [bad](#no-such-heading) [bad](other.md#exit-codes)\n"
                    "[web](https://example.com/x.md) [mail](mailto:a@b.c) [out](../x.md)\n")
    (tmp_path / "x.md").write_text("# Outside\n")
    assert [(n, t) for n, t in links(str(page))] == [
        (5, "#safety-and-reliability"), (5, "other.md#exit-codes-all-of-them"), (5, "other.md"),
        (7, "missing.md"), (7, "#no-such-heading"), (7, "other.md#exit-codes"), (8, "../x.md")]
    assert broken(str(page), root=str(docs)) == [
        "page.md:7: missing.md: no such file", "page.md:7: #no-such-heading: no heading of page.md has this anchor",
        "page.md:7: other.md#exit-codes: no heading of other.md has this anchor",
        "page.md:8: ../x.md: outside the repository"]


def test_github_slugs():
    assert slug("Transfers: faults, deadlines, exactly the validated bytes") == \
        "transfers-faults-deadlines-exactly-the-validated-bytes"
    assert slug("The libraries numerai-predict's images carry") == "the-libraries-numerai-predicts-images-carry"
    assert slug("First run: what it costs") == "first-run-what-it-costs"
    assert slug("`pyXY-runtime` and snake_case") == "pyxy-runtime-and-snake_case"


def test_readme_is_short():
    with open(README) as handle:
        count = len(handle.read().splitlines())
    assert count <= README_MAX_LINES, f"README.md has {count} lines; at most {README_MAX_LINES}: move a topic to docs/"


def test_readme_links_every_page_and_every_page_links_back():
    readme_targets = {os.path.normpath(os.path.join(ROOT, t.partition("#")[0])) for _, t in links(README)}
    for page in PAGES:
        assert page in readme_targets, f"README.md does not link {os.path.relpath(page, ROOT)}"
        with open(page) as handle:
            lines = handle.read().splitlines()
        assert lines and lines[0].startswith("# "), f"{os.path.relpath(page, ROOT)} does not start with a # title"
        assert any(t.partition("#")[0] == "../README.md" for _, t in links(page)), \
            f"{os.path.relpath(page, ROOT)} does not link back to README.md"
