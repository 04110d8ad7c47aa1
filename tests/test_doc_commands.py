"""Every ``compsrt ...`` line of the README and the docs is current for the CLI's own parser (no subprocess)."""

from __future__ import annotations

import pytest

from compsrt.cli import build_parser
from tests.doc_commands import check_argv, doc_commands, documented_files


@pytest.fixture(scope="module")
def parser():
    return build_parser()


def test_every_documented_compsrt_line_is_current(parser):
    commands = [c for f in documented_files() for c in doc_commands(f)]
    assert len(commands) > 30  # README's usage block alone has ~25: the extraction found them
    problems = [f"{c.where()}: `{c.text}`: {p}" for c in commands for p in check_argv(parser, c.argv)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("argv, expect", [
    ("nosuch --x 1", "no command 'nosuch'"),
    ("export --checkpoint a.pt --tiles 64", "no option --tiles"),
    ("eval --data-root DIR", "--data-root is deprecated"),
    ("export --checkpoint a.pt --tile 64 64 --out a.onnx", "is deprecated"),
    ("export-check m.onnx --plugin", "--plugin is deprecated"),
    ("profile --json a.json", "is deprecated"),
    ("export --checkpoint a.pt --hadamard matmul|nosuch", "--hadamard nosuch: not one of"),
    ("calibrate --scale 5 --bits 4 --out x.pt", "--scale 5: not one of"),
])
def test_the_check_finds_what_is_not_current(parser, argv, expect):
    import shlex

    problems = check_argv(parser, shlex.split(argv))
    assert any(expect in p for p in problems), problems


@pytest.mark.parametrize("argv", [
    "export --checkpoint CKPT --tile 64 --hadamard matmul|plugin|fused-quant [--activations fp] --out m.onnx",
    "upscale photos/ out/ --onnx w4a4_matmul.onnx",
    "profile --mode throughput --device cuda --dtype bf16 --compile --tile 0 --iters 64",
    "calibrate --scale 4 --preset W4A8 --out w4a8.pt",
    "--version",
])
def test_current_lines_and_synopses_pass(parser, argv):
    import shlex

    assert check_argv(parser, shlex.split(argv)) == []


def test_lines_are_found_in_blocks_chains_and_after_prompts(tmp_path):
    md = tmp_path / "x.md"
    md.write_text("text `compsrt inline` is prose\n\n```sh\n$ compsrt eval --json   # a comment\n"
                  "cd x && COMPSRT_DATA=d compsrt pack a.pt --out b.csrt | tee log\n"
                  "compsrt export --checkpoint a.pt \\\n  --tile 64\npython -m compsrt build --onnx a.onnx --out a.plan\n"
                  "echo compsrt\n```\n")
    got = [(c.line, c.argv) for c in doc_commands(md)]
    assert got == [(4, ["eval", "--json"]), (5, ["pack", "a.pt", "--out", "b.csrt"]),
                   (6, ["export", "--checkpoint", "a.pt", "--tile", "64"]),
                   (8, ["build", "--onnx", "a.onnx", "--out", "a.plan"])]
