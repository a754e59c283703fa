"""The documentation holds together: links resolve, shell commands parse, the README stays short.

What is checked is what breaks for a reader, not wording: every link from README.md,
CHANGELOG.md and docs/**/*.md into the repository points at a file that exists (and, for
``#anchor`` links into Markdown, at a heading that exists, by GitHub's anchor rules); every
``equignnmd …`` command in a fenced shell block parses against the command line; nothing cites
files outside the clone; the quick start states the measured wall time that ``--help`` states;
the README is at most 250 lines.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    ROOT / "README.md",
    ROOT / "CHANGELOG.md",
    *sorted((ROOT / "docs").rglob("*.md")),
]
CARDS = sorted((ROOT / "equignnmd" / "pretrained").glob("*.md"))
"""The model cards link into docs/ too: their links are checked with the documents'."""
README_MAX_LINES = 250
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}

_FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
_REDIRECT = re.compile(r"(?<!\S)(?:\d*>&\d+|\d*>>?\s*[^\s;&|]+|<\s*[^\s;&|]+)")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def split_fences(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """``(prose lines, [(fence language, block lines), …])`` of a Markdown text."""
    prose: list[str] = []
    blocks: list[tuple[str, list[str]]] = []
    fence = None
    for line in text.splitlines():
        m = _FENCE.match(line)
        if fence is None and m:
            fence, lang, body = m.group(1), m.group(2).lower(), []
        elif (
            fence is not None
            and line.strip().startswith(fence)
            and not line.strip()[len(fence) :].strip()
        ):
            blocks.append((lang, body))
            fence = None
        elif fence is not None:
            body.append(line)
        else:
            prose.append(line)
    return prose, blocks


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: inline markup dropped, lowercase, punctuation other than
    '-' and '_' removed, each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    prose, _ = split_fences(path.read_text())
    seen: dict[str, int] = {}
    out = set()
    for line in prose:
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        a = github_anchor(m.group(1))
        n = seen.get(a, 0)
        seen[a] = n + 1
        out.add(a if n == 0 else f"{a}-{n}")
    return out


def links(path: Path) -> list[str]:
    prose, _ = split_fences(path.read_text())
    text = _INLINE_CODE.sub("", "\n".join(prose))
    return _LINK.findall(text)


def test_the_documents_exist():
    for name in ("README.md", "CHANGELOG.md", "docs/README.md", "docs/studies/README.md"):
        assert (ROOT / name).is_file(), name


@pytest.mark.parametrize("doc", DOCS + CARDS, ids=_rel)
def test_links_inside_the_repository_resolve(doc):
    broken = []
    for link in links(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link):  # https:, mailto:, …
            continue
        target, _, anchor = link.partition("#")
        dest = (doc.parent / target).resolve() if target else doc
        if not dest.exists():
            broken.append(f"{link} (no file {dest})")
            continue
        if not dest.resolve().is_relative_to(ROOT):
            broken.append(f"{link} (outside the repository)")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{link} (no heading #{anchor} in {_rel(dest)})")
    assert not broken, f"{_rel(doc)}: broken links: {broken}"


def test_every_markdown_page_is_reachable_from_the_readme():
    """Every page under docs/ is linked from somewhere (the index, a study list, a guide)."""
    linked = set()
    for doc in DOCS:
        for link in links(doc):
            target = link.partition("#")[0]
            if target and not re.match(r"^[a-z][a-z0-9+.-]*:", target):
                linked.add((doc.parent / target).resolve())
    orphans = [_rel(p) for p in DOCS[2:] if p.resolve() not in linked]
    assert not orphans, f"pages nothing links to: {orphans}"


def shell_commands(text: str) -> list[str]:
    """The lines of fenced shell blocks, backslash continuations joined, a leading ``$ ``
    prompt stripped."""
    _, blocks = split_fences(text)
    out = []
    for lang, body in blocks:
        if lang not in SHELL_FENCES:
            continue
        joined = re.sub(r"[ \t]*\\\n\s*", " ", "\n".join(body))
        for line in joined.splitlines():
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:]
            if line and not line.startswith("#"):
                out.append(line)
    return out


def equignnmd_argv(line: str) -> list[list[str]]:
    """The argument lists of the ``equignnmd`` invocations on one shell line.

    ``&&``, ``;`` and ``|`` separate commands; comments and redirections are dropped;
    ``torchrun … -m equignnmd ARGS``, ``mpirun … equignnmd ARGS`` and ``VAR=1 equignnmd ARGS``
    count as ``equignnmd ARGS``.
    """
    line = _REDIRECT.sub(" ", line)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands: list[list[str]] = [[]]
    for tok in lexer:
        if set(tok) <= set(";&|"):
            commands.append([])
        else:
            commands[-1].append(tok)
    return [cmd[cmd.index("equignnmd") + 1 :] for cmd in commands if "equignnmd" in cmd]


def test_command_extraction_understands_the_shell_forms_the_docs_use():
    assert equignnmd_argv("equignnmd train --arch paper  # a comment") == [
        ["train", "--arch", "paper"]
    ]
    assert equignnmd_argv("a && . b && equignnmd quickstart") == [["quickstart"]]
    assert equignnmd_argv("torchrun --nproc_per_node=4 -m equignnmd train --out x") == [
        ["train", "--out", "x"]
    ]
    assert equignnmd_argv("OMP_NUM_THREADS=1 equignnmd rollout --dt 20 > log.txt 2>&1") == [
        ["rollout", "--dt", "20"]
    ]
    assert equignnmd_argv("mpirun -np 2 equignnmd lammps -in s | tee out") == [
        ["lammps", "-in", "s"]
    ]
    assert equignnmd_argv("python -m equignnmd.symmetry") == []
    assert shell_commands("```bash\n$ equignnmd a \\\n    --b 1\n```\n") == ["equignnmd a --b 1"]


def test_every_documented_command_parses():
    from equignnmd.cli import build_parser

    parser = build_parser()
    failures, seen = [], 0
    for doc in DOCS:
        for line in shell_commands(doc.read_text()):
            for argv in equignnmd_argv(line):
                seen += 1
                try:
                    parser.parse_args(argv)
                except SystemExit:
                    failures.append(f"{_rel(doc)}: {line}")
    assert seen > 20, "too few equignnmd commands found: is the extraction broken?"
    assert not failures, "commands that do not parse:\n" + "\n".join(failures)


def test_nothing_cites_files_outside_the_clone():
    # the spec used to live in ../shared
    for path in [ROOT / "README.md", *sorted((ROOT / "equignnmd").rglob("*.py"))]:
        assert "shared/spec" not in path.read_text(), path


def test_readme_and_quickstart_help_state_one_wall_time():
    from equignnmd.cli import build_parser
    from equignnmd.quickstart import QUICKSTART_TIME

    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Quick start")
    end = text.find("\n## ", start + 1)
    quick = text[start : end if end > 0 else len(text)]
    assert QUICKSTART_TIME in quick
    assert "equignnmd quickstart" in quick and "bash .ci/run" in quick
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    help_text = sub.choices["quickstart"].format_help()
    assert QUICKSTART_TIME in help_text
    assert "15 min" not in help_text


def test_readme_is_short():
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; at most {README_MAX_LINES}"
