"""What the code and the docs cite exists in the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITED = re.compile(r"\b((?:docs/[\w-]+|README|BENCHMARKS)\.md)\b")


def _texts() -> list[Path]:
    return [
        *sorted((ROOT / "src").rglob("*.py")),
        *sorted((ROOT / "tests").glob("*.py")),
        *sorted((ROOT / "benchmarks").glob("*.py")),
        *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "README.md",
    ]


def test_no_text_cites_a_file_outside_the_repository() -> None:
    users = "shared/" + "USERS.md"  # spelt apart, so this file does not cite it
    outside = [str(p.relative_to(ROOT)) for p in _texts() if users in p.read_text()]
    assert outside == []


def test_every_cited_markdown_file_exists() -> None:
    missing = {
        (str(p.relative_to(ROOT)), name)
        for p in _texts()
        for name in CITED.findall(p.read_text())
        if not (ROOT / name).is_file()
    }
    assert missing == set()


SCRIPT = re.compile(r"\b((?:benchmarks|scripts)/[\w/]+\.py)\b")
KIND = re.compile(r"Kind: (report|development)\b")


def _sections(text: str) -> list[tuple[str, list[str]]]:
    """The `## ` sections of a markdown text, each with its lines up to the next `## `.

    Lines inside fenced code blocks are skipped, so a `## ` there is no heading.
    """
    sections: list[tuple[str, list[str]]] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("## "):
            sections.append((line, []))
        elif sections and not fenced:
            sections[-1][1].append(line)
    return sections


def _backticked(text: str) -> list[str]:
    """The `code` spans of a markdown text, so a path counts only where it is a command."""
    return re.findall(r"`([^`]+)`", text)


def _kind_paragraph(lines: list[str]) -> str:
    """The `Kind:` paragraph among a section's first 3 non-empty lines, joined; "" if none.

    The paragraph may wrap; its end is the first blank line after it.
    """
    filled = [i for i, line in enumerate(lines) if line.strip()][:3]
    start = next((i for i in filled if lines[i].startswith("Kind:")), None)
    if start is None:
        return ""
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return " ".join(lines[start:end])


def test_every_benchmarks_section_says_its_kind_and_its_script() -> None:
    """A figure is evidence only if it is a report figure and a committed script measures it.

    BENCHMARKS.md mixes figures that chose a default (development) with figures nothing was
    chosen on (report); each `## ` section says which on a `Kind:` line near its top, and names
    an existing `benchmarks/` or `scripts/` command. Figures no committed script produced were
    removed (issue 28), so no section may keep any under a "no committed script" label.
    """
    unlabelled, unscripted = [], []
    for heading, lines in _sections((ROOT / "BENCHMARKS.md").read_text()):
        kind = _kind_paragraph(lines)
        if not KIND.match(kind):
            unlabelled.append(heading)
        paths = {p for span in _backticked("\n".join(lines)) for p in SCRIPT.findall(span)}
        if not any((ROOT / p).is_file() for p in paths):
            unscripted.append(heading)
    assert unlabelled == []
    assert unscripted == []


def test_no_benchmarks_figure_is_labelled_as_lacking_a_script() -> None:
    """No `Kind:` line, of a `## ` section or a `### ` subsection, excuses figures as unscripted.

    Issue 28: every figure comes from a committed script; the rest were removed.
    """
    kinds = [
        _kind_paragraph(lines)
        for _, lines in _sections((ROOT / "BENCHMARKS.md").read_text().replace("\n### ", "\n## "))
    ]
    assert [kind for kind in kinds if "no committed script" in kind] == []


def test_every_script_the_readme_names_exists() -> None:
    spans = _backticked((ROOT / "README.md").read_text())
    missing = {p for span in spans for p in SCRIPT.findall(span) if not (ROOT / p).is_file()}
    assert missing == set()
