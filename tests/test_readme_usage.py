"""The README usage runner (tests/readme_usage.py): what it runs, what it changes, and its verdict.

The full run (minutes: calibrations, exports, engine builds, a server) is a CI step of its own:
``python -m tests.readme_usage``; these tests check its plan and its reporting in seconds.
"""

from __future__ import annotations

from tests.doc_commands import ROOT, compsrt_argv
from tests.readme_usage import SIZE_OVERRIDES, main, plan


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_usage_line_is_planned_and_only_sizes_change():
    steps = plan(_readme())
    assert len(steps) >= 20 and {s.argv[0] for s in steps} >= {"calibrate", "export", "triton-repo", "serve", "upscale"}
    size_options = {(c, o) for c, o, _ in SIZE_OVERRIDES}
    for s in steps:
        written = compsrt_argv(s.text)
        assert s.argv[: len(written)] == [w if i == 0 or written[i - 1] not in {o for c, o in size_options
                                                                                  if c == written[0]}
                                          else s.argv[i] for i, w in enumerate(written)], s.text
        extra = s.argv[len(written):]
        assert all((s.argv[0], o) in size_options for o in extra[::2]), (s.text, extra)


def test_gpu_lines_are_skipped_with_a_reason_and_serve_runs_in_the_background():
    steps = plan(_readme())
    skipped = {s.text.split("#")[0].strip(): s.skip for s in steps if s.skip}
    assert any(t.startswith("compsrt selftest") for t in skipped)
    assert all("--device cuda" in t or "selftest" in t for t in skipped) and all("GPU" in r for r in skipped.values())
    serve = [s for s in steps if s.argv[0] == "serve"]
    assert serve and all(s.background for s in serve)
    repo = next(s for s in steps if s.argv[0] == "triton-repo")
    assert repo.chain == serve[0].chain  # `triton-repo ... && serve`: a failed repository stops the server line


def test_runner_reports_each_line_and_fails_on_any_failure(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Usage\n\n```sh\ncompsrt --version   # fine\ncompsrt nosuch && compsrt --version\n"
                      "compsrt selftest\n```\n")
    assert main(["--readme", str(readme), "--keep", str(tmp_path / "run")]) == 1
    out = capsys.readouterr().out
    assert "-> exit 0" in out and "-> exit 2" in out and "not run: an earlier command of this line failed" in out
    assert "skipped: needs a GPU" in out and "1 ok, 2 failed or not run, 1 skipped" in out
    assert (tmp_path / "run" / "photos" / "a.png").is_file()
