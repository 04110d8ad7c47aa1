"""The user-facing documentation (README.md and docs/*.md) stays true to the repository.

- docs/cli.md is what tools/gen_cli_reference.py makes from the parser (other changes to the CLI must regenerate it);
- no internal vocabulary: issue or run numbers, session and device-time accounting belong in the run records beside
  the raw results (benchmarks/<stage>/results/<run>/README.md), not in the docs a user reads;
- every relative link resolves, to a file and, with a #fragment, to a heading of that file;
- every repository file, folder, `python -m` module and test a page cites exists.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
USER_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REGENERATE = ".venv/bin/python tools/gen_cli_reference.py"

# Internal vocabulary: (pattern, what it is). Each pattern is narrow enough not to fire on ordinary prose
# ("runs 4 tiles" fires, so the docs say "4 tiles are run"), and INTERNAL_SAMPLES / LEGIT_SAMPLES below pin that down.
INTERNAL = [
    (r"\bissues?\s*#?\d+", "an issue number"),
    (r"(?<![\w&/(#])#\d+\b", "a #N reference"),
    ((r"(?<![-\w])runs?\s+\d+(?:\s*(?:,|and|or|to|–|-)\s*\d+)*\b"
     r"(?!\s*(?:×|x\b|%|ms\b|s\b|images|tiles|times|iterations))"), "a run number"),
    (r"\bstops?\s+\d+\b", "a stop number"),
    (r"\b(?:device|GPU)[ -](?:time|minutes?|calls?|quota|budget|seconds|accounting)\b", "device-time accounting"),
    (r"\bcalls?['’]s? (?:wall|budget|deadline)\b|\b(?:one|two|three) calls?\b", "device-call accounting"),
    (r"\b(?:this|next|previous|that|later|earlier|same|one) session\b|\bsessions?['’]", "session accounting"),
    (r"\bnvidia-h[12]00(?:-x\d)?\b", "a lent-machine kind"),
    (r"\b(?:run|device) tool\b|\bbudget_left\b|\bheld_s\b|\bfiles_fetch\b|\bcarry \[|\.carry/",
     "device-tool vocabulary"),
    (r"\bthe lead\b|\bworktree\b", "team vocabulary"),
]
INTERNAL_SAMPLES = ["as issue 13 asked", "see #12", "runs 10 and 11", "in run 13", "stop 3", "30 device minutes",
                    "the device time left", "its call's deadline", "in one call", "the next session",
                    "the session's budget", "an `nvidia-h200-x2` machine", "the run tool", "carry [\".carry/x4\"]"]
LEGIT_SAMPLES = ["ONNX Runtime session options", "an ORT session per thread", "runs 4 tiles at once",
                 "the run took 102 s", "stops at the deadline", "GPU memory", "[anchor](#2a-desktop-gpu-x86_64)",
                 "x4 run of 4,000 iterations", "a single device worker", "Ctrl-C stops the run", "an NVIDIA H200",
                 "run 4× faster", "call `compsrt build`", "issues a warning", "`run10_i12_table_x4/`",
                 "`python -m benchmarks.cli_startup --runs 5`"]

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.DOTALL | re.MULTILINE)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
REPO_ROOTS = ("compsrt/", "benchmarks/", "tests/", "tools/", "docker/", "docs/", ".ci/")
REPO_FILES = ("Makefile", "requirements.txt", "requirements-serving.txt", "pyproject.toml", "README.md")
MODULE = re.compile(r"(?:python3?|\.venv/bin/python)\s+-m\s+((?:benchmarks|compsrt|tools)(?:\.\w+)+)")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _prose(text: str) -> str:
    """The text without fenced code blocks (their lines kept blank, so line numbers stay right)."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def _lines_matching(text: str, pattern: str):
    for number, line in enumerate(text.splitlines(), 1):
        for match in re.finditer(pattern, line, flags=re.IGNORECASE):
            yield number, match.group(0)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip()).lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    kept = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors, seen = set(), {}
    for line in _prose(_text(path)).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = _slug(match.group(1))
        count = seen.get(slug, 0)
        anchors.add(slug if count == 0 else f"{slug}-{count}")
        seen[slug] = count + 1
    return anchors


def _expand_braces(path: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", path)
    if not match:
        return [path]
    head, tail = path[:match.start()], path[match.end():]
    return list(itertools.chain.from_iterable(_expand_braces(head + part + tail) for part in match.group(1).split(",")))


def _cited_paths(text: str) -> list[str]:
    """Repository paths in inline code spans: rooted at a top-level folder or a top-level file, without
    placeholders (`<Set>`, `OUT/`) or spaces."""
    cited = []
    for span in INLINE_CODE.findall(_prose(text)):
        span = span.strip().rstrip(".,;:")
        if " " in span or "<" in span or "$" in span or "…" in span or "..." in span:
            continue
        if span.startswith(REPO_ROOTS) or span in REPO_FILES or span.split("::")[0] in REPO_FILES:
            cited.append(span)
    return cited


def _missing(cited: str) -> str | None:
    """Why a cited path does not hold, or None."""
    path, _, test = cited.partition("::")
    for candidate in _expand_braces(path):
        matches = sorted(ROOT.glob(candidate.rstrip("/"))) if any(c in candidate for c in "*?[") else \
            [ROOT / candidate.rstrip("/")]
        if not matches or not all(m.exists() for m in matches):
            return f"{candidate} does not exist"
        if test and not re.search(rf"^\s*def {re.escape(test)}\(", _text(matches[0]), flags=re.MULTILINE):
            return f"{candidate} has no test {test}"
    return None


def _tests_defined() -> set[str]:
    names = set()
    for path in (ROOT / "tests").glob("*.py"):
        names.update(re.findall(r"^\s*def (test_\w+)\(", _text(path), flags=re.MULTILINE))
    return names


@pytest.mark.parametrize("sample", INTERNAL_SAMPLES)
def test_vocabulary_patterns_catch_internal_wording(sample):
    assert any(re.search(p, sample, flags=re.IGNORECASE) for p, _ in INTERNAL), sample


@pytest.mark.parametrize("sample", LEGIT_SAMPLES)
def test_vocabulary_patterns_leave_ordinary_wording_alone(sample):
    hits = [why for p, why in INTERNAL if re.search(p, sample, flags=re.IGNORECASE)]
    assert not hits, f"{sample!r} flagged as {hits}"


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_user_docs_use_no_internal_vocabulary(doc):
    text = _text(doc)
    found = [f"{doc.relative_to(ROOT)}:{line}: {match!r} ({why})"
             for pattern, why in INTERNAL for line, match in _lines_matching(text, pattern)]
    assert not found, ("internal vocabulary in user docs (run history goes to the README.md beside its raw results):\n"
                       + "\n".join(found))


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc):
    broken = []
    for target in LINK.findall(INLINE_CODE.sub("", _prose(_text(doc)))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, fragment = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if not dest.exists():
            broken.append(f"{target}: {path_part} does not exist")
        elif fragment and dest.suffix == ".md" and fragment not in _anchors(dest):
            broken.append(f"{target}: no heading with the anchor #{fragment} in {dest.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}: broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_cited_repository_files_exist(doc):
    text = _text(doc)
    problems = [f"`{c}`: {why}" for c in _cited_paths(text) if (why := _missing(c))]
    for module in MODULE.findall(text):
        base = ROOT / module.replace(".", "/")
        if not (base.with_suffix(".py").exists() or (base / "__init__.py").exists() or (base / "__main__.py").exists()):
            problems.append(f"python -m {module}: no such module")
    defined = _tests_defined()
    problems += [f"`{name}`: no such test in tests/" for name in INLINE_CODE.findall(_prose(text))
                 if re.fullmatch(r"test_\w+", name) and name not in defined]
    assert not problems, f"{doc.relative_to(ROOT)} cites what the repository does not have:\n" + "\n".join(problems)


def test_link_check_finds_a_broken_anchor_and_a_missing_file(tmp_path, monkeypatch):
    """The checks above can fail: a page with a dead anchor, a missing file and a missing test is caught."""
    page = ROOT / "docs" / "results.md"
    assert "how-fast-is-inference" in _anchors(page)
    assert "no-such-heading" not in _anchors(page)
    assert _missing("benchmarks/no_such_script.py") is not None
    assert _missing("tests/test_docs.py::test_no_such_test") is not None
    assert _missing("tests/test_docs.py::test_relative_links_resolve") is None
    assert _missing("compsrt/{errors,files}.py") is None
    assert _slug("INT4 weights (default for weights of <= 4 bits; `--weight-storage auto|int4|int8`, "
                 "`--int4-block 64|128`)") == ("int4-weights-default-for-weights-of--4-bits---weight-storage-"
                                              "autoint4int8---int4-block-64128")


def _generator():
    spec = importlib.util.spec_from_file_location("gen_cli_reference", ROOT / "tools" / "gen_cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_matches_the_parser():
    page = ROOT / "docs" / "cli.md"
    expected = _generator().render()
    current = _text(page) if page.exists() else ""
    assert current == expected, f"docs/cli.md is out of date with the `compsrt` parser; regenerate it: {REGENERATE}"


def test_cli_reference_lists_every_command_and_option():
    """The generated page is complete: every subcommand has a section and every visible option a row."""
    import argparse

    from compsrt.cli import build_parser

    page = _text(ROOT / "docs" / "cli.md")
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        section = page.split(f"## compsrt {name}\n", 1)
        assert len(section) == 2, f"no section for compsrt {name}"
        body = section[1].split("\n## ", 1)[0]
        for action in parser._actions:
            visible = action.help != argparse.SUPPRESS and not isinstance(action, argparse._HelpAction)
            if action.option_strings and visible:
                assert f"`{action.option_strings[0]}" in body, f"compsrt {name} {action.option_strings[0]} missing"
