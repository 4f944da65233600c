"""The project speaks only of itself and its users.

No issue numbers, nothing about the machines, load, sessions or circumstances a file was written under, and no
links to files outside the repository, in any text file of the repository (code, comments, docstrings, docs,
notebooks, benchmark reports). The phrases below are the ones such remarks take; a hit names the file and line.
"""

from __future__ import annotations

import bisect
import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
THIS = pathlib.Path(__file__).resolve()

TEXT_SUFFIXES = {
  ".py",
  ".md",
  ".rst",
  ".txt",
  ".toml",
  ".cfg",
  ".ini",
  ".yml",
  ".yaml",
  ".ipynb",
  ".json",
  ".csv",
}
TEXT_NAMES = {"run", "Makefile", ".gitignore"}
SKIP_DIRS = {
  ".git",
  "build",
  "dist",
  "_build",
  "__pycache__",
  ".venv",
  ".venv-ci",
  "runs",
  ".cache",
  "node_modules",
}

FORBIDDEN = {
  "an issue number": r"\bissues?\s*#?\s*\d+|(?<![\w&/#])#\d{1,4}\b",
  "a session": r"\bsessions?\b",
  "the machine's state": r"\b(quiet|busy|shared|loaded)\s+(\d+-core\s+)?(machine|cpu|cores?|host)s?\b",
  "the load": r"\bload\s+(average|~?\d)|\bat\s+load\b|\bunder\s+load\b",
  "other work beside a run": r"\b(running|ran|run)\s+beside\b|\bbeside\s+(it|them)\b|\bother\s+(work|jobs?|agents?)\b",
  "how it was written": r"\bwhile\s+(it|this)\s+was\s+written\b|\bavailable\s+to\s+(us|me|this\s+implementation)\b",
  "hardware lent or not": r"\bgpu\s+was\s+lent\b|\b(was|were|is)\s+(not\s+)?lent\b|\bsand" r"box\b",
  "a file outside the repository": r"shared/refer" r"ence|ham-method\.md|(?<![\w.~])/(work|home|root|Users)/",
}
PATTERN = re.compile("|".join(f"(?P<g{i}>{p})" for i, p in enumerate(FORBIDDEN.values())), re.IGNORECASE)
LABELS = list(FORBIDDEN)


def _files() -> list[pathlib.Path]:
  try:
    out = subprocess.run(
      ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    paths = [ROOT / p for p in out]
  except (OSError, subprocess.CalledProcessError):  # not a git checkout: walk the tree
    paths = [p for p in ROOT.rglob("*") if not SKIP_DIRS.intersection(p.relative_to(ROOT).parts)]
  return [
    p
    for p in paths
    if p.is_file()
    and p.resolve() != THIS
    and (p.suffix in TEXT_SUFFIXES or p.name in TEXT_NAMES)
    and not SKIP_DIRS.intersection(p.relative_to(ROOT).parts)  # e.g. a virtualenv inside the checkout
  ]


def test_the_forbidden_phrases_are_caught():
  """The patterns catch the remarks they are for (so a typo in a pattern cannot pass silently)."""
  for text in [
    "see issue"
    + " 12",  # (the samples are split so that a plain grep of the sources does not flag this test)
    "fixed in #7",
    "measured in this session",
    "on a quiet machine",
    "2 busy cores",
    "load 0.8-3.9",
    "with two benchmarks running beside it",
    "while it was written",
    "no GPU was" + " lent to this" + " task",
    "`shared/" + "reference/ham-method.md`",
    "takes 20 s on a busy\n  # 2-core CPU",
  ]:
    assert PATTERN.search(_joined(text)[0]), text
  for text in ["color='#1f77b4'", "load_dataset()", "sessionless", "issues a warning"]:
    assert not PATTERN.search(text), text


def _joined(text: str) -> tuple[str, list[int]]:
  """The text with each line break (and a comment marker after it) folded into one space, so a phrase broken
  over two lines of a paragraph or a comment is still found; plus the offset where each line starts."""
  parts, starts, offset = [], [], 0
  for line in text.splitlines():
    piece = re.sub(r"^\s*(#+|//)?\s*", "", line) if parts else line
    starts.append(offset)
    parts.append(piece)
    offset += len(piece) + 1
  return " ".join(parts), starts


def test_no_remarks_about_how_the_project_was_made():
  hits = []
  for path in _files():
    try:
      text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
      continue
    joined, starts = _joined(text)
    for m in PATTERN.finditer(joined):
      label = LABELS[int(next(k for k, v in m.groupdict().items() if v is not None)[1:])]
      lineno = bisect.bisect_right(starts, m.start())
      hits.append(f"{path.relative_to(ROOT)}:{lineno}: {label}: {m.group(0)!r}")
  assert not hits, "state measurements and the project only:\n" + "\n".join(hits[:50])
