"""Every document the repo cites is in the repo, and every section a pointer names is a section of that document.

A comment that sends the reader to a file they cannot open, or to a section that was renamed, is worse than none:
it looks like a source. So the `*.md` files named in comments, docstrings and docs must exist (beside the citing
file, as a Markdown link means, or from the repository root, as prose means), and a pointer such as
`(docs/protocols.md, "Media streaming")` must name a section that document has: a heading (its number, as in
"8. Media gateway CPU", may be left out) or the bold words that open a list item or paragraph.

A file of another repository is cited as `owner/repo` followed by its path in backticks; that path is not ours.
"""

from __future__ import annotations

import io
import re
import subprocess
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: A file name ending in .md, with the folders before it; not the tail of a URL or of a longer path.
CITED_MD = re.compile(r"(?<![\w/.:*-])((?:\.\.?/)*[\w-]+(?:/[\w.-]+)*\.md)\b")
#: A doc under docs/, a comma, then one or more quoted section names joined by commas, "and" or "or".
POINTER = re.compile(r'(docs/[\w/-]+\.md),\s+((?:"[^"\n]+"(?:,\s*|\s+and\s+|\s+or\s+)?)+)')
QUOTED = re.compile(r'"([^"\n]+)"')
HEADING = re.compile(r"^#{1,6}\s+(?:\d+(?:\.\d+)*\.?\s+)?(.+?)\s*#*\s*$", re.MULTILINE)
BOLD_LEAD = re.compile(r"^(?:[*-]\s+)?\*\*(.+?)\.?\*\*", re.MULTILINE)
#: Just before a path cited from another repository: "MicrosoftDocs/azure-docs `" or "owner/repo, `".
OTHER_REPO = re.compile(r"\b[\w.-]+/[\w.-]+,?\s+`[^`]*$")
#: Files whose comments and docs are read in full; other text files in the tree are configuration, not prose.
PROSE_SUFFIXES = {".py", ".md"}


def tracked_files() -> list[Path]:
    """The repository's files as git sees them: committed or new, never what .gitignore leaves out (.venv ...)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    return [ROOT / name for name in listed if Path(name).suffix in PROSE_SUFFIXES and (ROOT / name).is_file()]


def prose(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of what a reader reads as prose: a Markdown file whole; a Python file's comments and docstrings.

    String literals in code are left out: a path the code opens is checked by the code's own tests.
    """
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".md":
        yield from enumerate(text.splitlines(), start=1)
        return
    previous = tokenize.NEWLINE
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        is_docstring = token.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.NL,
                                                                       tokenize.DEDENT)
        if token.type == tokenize.COMMENT or is_docstring:
            for offset, line in enumerate(token.string.splitlines()):
                yield token.start[0] + offset, line
        if token.type not in (tokenize.COMMENT, tokenize.NL):
            previous = token.type


def cited_docs(text: str) -> Iterator[str]:
    for match in CITED_MD.finditer(text):
        if not OTHER_REPO.search(text[: match.start()]):
            yield match.group(1)


def cited_doc_exists(citing: Path, name: str) -> bool:
    return (citing.parent / name).is_file() or (ROOT / name).is_file()


def sections(doc: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.DOTALL)  # not `# comments` in code
    return {match.group(1) for pattern in (HEADING, BOLD_LEAD) for match in pattern.finditer(text)}


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def test_every_cited_doc_is_in_the_repo() -> None:
    missing = [
        f"{where(path, line)} cites {name}, which is not in the repository"
        for path in tracked_files()
        for line, text in prose(path)
        for name in cited_docs(text)
        if not cited_doc_exists(path, name)
    ]
    assert not missing, "\n".join(missing)


def test_every_section_pointer_names_a_section_of_its_doc() -> None:
    checked, broken = 0, []
    for path in tracked_files():
        for line, text in prose(path):
            for match in POINTER.finditer(text):
                doc = ROOT / match.group(1)
                known = sections(doc) if doc.is_file() else set()
                for section in QUOTED.findall(match.group(2)):
                    checked += 1
                    if section not in known:
                        broken.append(f'{where(path, line)} points to {match.group(1)}, "{section}": no such section')
    assert checked >= 20, "the pointers to doc sections were found"
    assert not broken, "\n".join(broken)

