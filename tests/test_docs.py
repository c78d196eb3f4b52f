"""The README and docs/ as a newcomer meets them: the quick start is two commands after
a line that makes a virtual environment, its example shows the answer it prints, every
link stays inside the repository and lands, and every shipped example validates or
says in its first line why it is there to fail."""

from __future__ import annotations

import os
import re
from pathlib import Path

from spectools import EXAMPLES, REPO, dagfast

from dagfast.errors import LoadError
from dagfast.loader import load
from dagfast.loader.subdags import check_sub_dags

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
# Pages another change adds (docs/dagu-differences.md: the Dagu section moves there).
# Strict: once the page exists, this test fails until it leaves the table.
PENDING: set[str] = set()  # pages linked before they exist (none now)


def quick_start() -> list[str]:
    text = README.read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return section.split("```sh\n", 1)[0], section.split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_quick_start_is_two_commands_in_a_virtual_environment():
    before, block = quick_start()
    assert block.splitlines() == [
        "pip install . && dagfast run -v examples/parallel.yaml",
        "pip install -e '.[test]' && pytest",
    ]
    assert "`python3 -m venv .venv && . .venv/bin/activate`" in before
    ci = (REPO / ".ci" / "run").read_text()
    assert "python3 -m pip install -e '.[test]' && pytest" in ci


def test_the_quick_start_shows_the_answer_its_example_prints(tmp_path):
    res = dagfast("run", "-v", str(EXAMPLES / "parallel.yaml"), home=tmp_path / "home",
                  env={"CI": "1"})
    assert res.code == 0, res.err
    assert "total | total words: 12000" in res.out.splitlines()
    shown = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "\ntotal | total words: 12000\n" in shown


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    out, fence = set(), False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            out.add(_slug(line.lstrip("#")))
    return out


def test_every_link_stays_in_the_repository_and_lands():
    bad = []
    for page in [README, *DOCS]:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"https?://", target):
                continue
            where, _, anchor = target.partition("#")
            dest = (page.parent / where).resolve() if where else page
            rel = os.path.relpath(dest, REPO)
            if rel.startswith(".."):
                bad.append(f"{page.name}: {target} leaves the repository")
            elif rel in PENDING:
                assert not dest.exists(), f"{rel} exists now: take it out of PENDING"
            elif not dest.exists():
                bad.append(f"{page.name}: {target} does not exist")
            elif anchor and anchor not in _anchors(dest):
                bad.append(f"{page.name}: {target}: no heading `#{anchor}`")
    assert bad == []


def test_every_example_validates_or_says_why_it_is_there_to_fail():
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        first = path.read_text().splitlines()[0]
        try:
            check_sub_dags(load(path, evaluate=False), evaluate=False)
        except LoadError as exc:
            assert first.startswith("# There to fail"), f"{path}: {exc.problems[0]}"
        else:
            assert not first.startswith("# There to fail"), f"{path} validates"
