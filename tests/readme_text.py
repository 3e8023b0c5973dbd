"""What README.md shows a reader, read from its text: the fenced code blocks, the tagged
Python examples, the commands (shell blocks and inline code) and the relative links.

The tests that execute the README (``test_extension.py``, ``test_readme.py``) read it
through these functions, so a command or an example added to the README is found and
checked without editing a test.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

# A Python example is tagged by an HTML comment on the line above its fence (invisible
# when rendered): <!-- example: NAME ... -->.
EXAMPLE_TAG = re.compile(r"<!--\s*example:\s*(?P<name>[\w-]+)")
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
# The first word of an inline code span that makes it a command (after VAR=value words).
# A span of one such word alone names the program, it does not run it ("`make`").
PROGRAMS = {
    "snakemake",
    ".venv/bin/snakemake",
    "python",
    "python3",
    "make",
    "bash",
    "source",
    "export",
    "cp",
    "cd",
    "git",
    "pip",
    "nvidia-smi",
    "nvidia-cuda-mps-control",
    "sbatch",
    "pgrep",
    "kill",
}
# An entry point named alone in inline code (`benchmarks/recovery.py`) is a command too.
ENTRY_POINT = re.compile(r"benchmarks/[\w-]+\.py$")
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Block:
    """A fenced code block: its info string's first word, its text and the line of its
    opening fence (1-based); ``tag`` is the example name on the line above, if any."""

    language: str
    text: str
    line: int
    tag: str | None


@dataclass(frozen=True)
class Command:
    """One command as the README shows it: its words (shell-split, comments dropped) and
    where: the README line and "block" (a shell block) or "inline" (a code span)."""

    words: tuple[str, ...]
    line: int
    where: str

    @property
    def text(self) -> str:
        return shlex.join(self.words)

    @property
    def program(self) -> str:
        """The first word after any VAR=value assignments."""
        return next((w for w in self.words if not ASSIGNMENT.match(w)), "")


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def fenced_blocks(text: str) -> list[Block]:
    """Every ``` fenced block, in order. An unclosed fence is an error."""
    blocks = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        match = re.match(r"\s*```+\s*(\S*)", lines[index])
        if not match:
            index += 1
            continue
        start = index
        end = next((j for j in range(start + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"line {start + 1}: a code fence is never closed")
        above = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        tag = EXAMPLE_TAG.search(above)
        blocks.append(
            Block(
                language=match.group(1).lower(),
                text="\n".join(lines[start + 1 : end]) + "\n",
                line=start + 1,
                tag=tag.group("name") if tag else None,
            )
        )
        index = end + 1
    return blocks


def python_examples(text: str) -> dict[str, Block]:
    """The tagged Python blocks by tag. Every Python block must be tagged (an untagged one
    would run in no test) and every tag used once."""
    examples: dict[str, Block] = {}
    for block in fenced_blocks(text):
        if block.language not in {"python", "py"}:
            continue
        if block.tag is None:
            raise ValueError(
                f"README.md:{block.line}: a Python block without an '<!-- example: NAME -->' "
                "line above it; every Python example must run in a test"
            )
        if block.tag in examples:
            raise ValueError(f"README.md:{block.line}: example {block.tag!r} tagged twice")
        examples[block.tag] = block
    return examples


def prose(text: str) -> str:
    """The text with every fenced block blanked (line numbers kept)."""
    lines = text.splitlines()
    for block in fenced_blocks(text):
        for j in range(block.line - 1, block.line + block.text.count("\n") + 1):
            lines[j] = ""
    return "\n".join(lines)


def inline_spans(text: str) -> list[tuple[str, int]]:
    """Every `code span` outside fenced blocks, whitespace collapsed, with its line. A span
    may wrap onto the next line, never across a blank line (a paragraph break)."""
    outside = prose(text)
    spans = []
    for match in re.finditer(r"`([^`]+)`", outside):
        line = outside.count("\n", 0, match.start()) + 1
        if "\n\n" in match.group(1):
            raise ValueError(f"line {line}: a ` that is never closed in its paragraph")
        spans.append((" ".join(match.group(1).split()), line))
    return spans


def _split_commands(words: list[str]) -> list[list[str]]:
    """Words split at && and ; into single commands."""
    parts: list[list[str]] = [[]]
    for word in words:
        if word in {"&&", ";"}:
            parts.append([])
        else:
            parts[-1].append(word)
    return [part for part in parts if part]


def commands(text: str) -> list[Command]:
    """Every command the README shows, in order of appearance:

    - each line of a shell block (bash, sh, shell, console), continuation lines joined,
      comments dropped;
    - each inline code span whose first word (after VAR=value words) is one of
      ``PROGRAMS`` and that has more than that word, or whose first word is a
      ``benchmarks/*.py`` entry point.
    """
    found = []
    for block in fenced_blocks(text):
        if block.language not in SHELL_LANGUAGES:
            continue
        logical = ""
        for offset, line in enumerate(block.text.splitlines(), start=1):
            logical += line
            if logical.rstrip().endswith("\\"):
                logical = logical.rstrip()[:-1] + " "
                continue
            for words in _split_commands(shlex.split(logical, comments=True)):
                found.append(Command(tuple(words), block.line + offset, "block"))
            logical = ""
    for span, line in inline_spans(text):
        try:
            words = shlex.split(span)
        except ValueError:  # an unbalanced quote: prose, not a command
            continue
        for part in _split_commands(words):
            command = Command(tuple(part), line, "inline")
            program = command.program
            if (program in PROGRAMS and len(part) > 1) or ENTRY_POINT.match(program):
                found.append(command)
    return found


def relative_links(text: str) -> list[tuple[str, int]]:
    """Targets of Markdown links [text](target) that are not URLs or mail, with their
    line, outside fenced blocks."""
    outside = prose(text)
    links = []
    for match in re.finditer(r"\]\(([^)\s]+)\)", outside):
        target = match.group(1)
        if not re.match(r"[a-z][a-z0-9+.-]*:", target):
            links.append((target, outside.count("\n", 0, match.start()) + 1))
    return links


# What each README example registers (its tag -> the method or problem kind): the tests
# that load the examples assert about these names.
EXAMPLE_KINDS = {"method": "backprojection", "problem": "occlusion"}


def write_examples(folder: Path) -> list[Path]:
    """The README's Python examples as files ``readme_<tag>.py`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for tag, block in python_examples(readme_text()).items():
        path = folder / f"readme_{tag}.py"
        path.write_text(block.text)
        paths.append(path)
    return paths
