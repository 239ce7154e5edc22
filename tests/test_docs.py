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
