"""Run the README's usage block end to end, as written apart from the size settings listed in SIZE_OVERRIDES.

    python -m tests.readme_usage [--readme README.md] [--keep DIR] [--timeout 900]

Each ``compsrt ...`` line of the first code block under "## Usage" runs in one temporary folder (in order, so
later lines find the files earlier ones wrote), as ``python -m compsrt`` of this checkout. The only changes:

* the size settings of SIZE_OVERRIDES (fewer iterations, smaller tiles and inputs, one benchmark set), each
  an option replaced or appended, printed with the line;
* ``photos/`` is a folder of two tiny images made here;
* ``serve`` is started in the background, waited for until it says it is ready, and stopped at the end;
* lines that need a GPU (``--device cuda``, ``selftest``) are skipped with the reason printed.

``&&`` chains run as the shell runs them: a failed part stops the rest of its line. Prints each command, its
exit status and seconds, then a table; exits 1 when any line failed. Data as the CLI finds it
(``$COMPSRT_DATA``, else ``../shared/data``).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.doc_commands import ROOT, chain_parts, code_blocks, compsrt_argv, logical_lines

# (command, option, value): the option's value is replaced when the line has the option, else the option is
# appended. Only sizes: iterations, tiles, input sizes, the benchmark sets, the demo's budget.
SIZE_OVERRIDES: tuple[tuple[str, str, str | None], ...] = (
    ("calibrate", "--iters", "2"),
    ("calibrate", "--batch", "2"),
    ("calibrate", "--patch", "16"),
    ("calibrate", "--dobi-batch", "1"),
    ("eval", "--datasets", "Set5"),
    ("export", "--tile", "32"),
    ("export-parity", "--tile", "32"),
    ("profile", "--size", "32x32"),
    ("profile", "--iters", "1"),
    ("profile", "--warmup", "0"),
    ("pipeline", "--iters", "2"),
    ("pipeline", "--profile-iters", "1"),
    ("pipeline", "--eval-images", "1"),
)
GPU_ONLY = (("--device", "cuda"), ("selftest", None))  # (word, next word) that make a line need a GPU
SERVE_READY = re.compile(r"ready on", re.IGNORECASE)


@dataclass
class Step:
    line: int
    text: str  # as written in the README
    argv: list[str]  # after the overrides
    changed: list[str] = field(default_factory=list)
    skip: str | None = None  # the reason, when skipped
    background: bool = False
    chain: int = 0  # steps of one README line share it: a failure stops the rest of the chain


def usage_block(readme: str) -> tuple[int, list[str]]:
    """(first line number, lines) of the first code block under the "## Usage" heading."""
    start = readme.find("\n## Usage")
    if start < 0:
        raise SystemExit("README.md has no '## Usage' section")
    offset = readme[: start + 1].count("\n")
    blocks = code_blocks(readme[start + 1:])
    if not blocks:
        raise SystemExit("README.md's Usage section has no code block")
    first, lines = blocks[0]
    return first + offset, lines


def apply_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` with SIZE_OVERRIDES applied, and the list of changes in words."""
    out, changed = list(argv), []
    for command, option, value in SIZE_OVERRIDES:
        if not out or out[0] != command:
            continue
        if option in out:
            i = out.index(option)
            if out[i + 1] != value:
                changed.append(f"{option} {out[i + 1]} -> {value}")
                out[i + 1] = value
        else:
            out += [option, value]
            changed.append(f"+{option} {value}")
    return out, changed


def gpu_only(argv: list[str]) -> str | None:
    for i, w in enumerate(argv):
        for word, nxt in GPU_ONLY:
            if w == word and (nxt is None or (i + 1 < len(argv) and argv[i + 1].startswith(nxt))):
                return f"needs a GPU ({word}{' ' + nxt if nxt else ''}); run it on a Jetson or desktop GPU"
    return None


def plan(readme: str) -> list[Step]:
    """Every compsrt command of the usage block, in order, with its overrides and skip reason."""
    first, lines = usage_block(readme)
    steps = []
    for chain, (lineno, line) in enumerate(logical_lines(first, lines)):
        for part in chain_parts(line):
            argv = compsrt_argv(part)
            if argv is None:
                continue
            run_argv, changed = apply_overrides(argv)
            steps.append(Step(lineno, part, run_argv, changed, gpu_only(argv), bool(argv) and argv[0] == "serve",
                              chain))
    return steps


def make_photos(folder: Path) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for name, (w, h) in (("a.png", (24, 16)), ("b.jpg", (16, 24))):
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(folder / name)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def start_background(step: Step, cwd: Path, timeout: float) -> tuple[subprocess.Popen | None, int, str]:
    """Start ``serve``; wait until it prints that it is ready (rc 0) or exits (its rc)."""
    log = cwd / f"serve_{step.line}.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "compsrt", *step.argv], cwd=cwd, env=_env(), stdout=f,
                                stderr=subprocess.STDOUT)
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            return None, proc.returncode, log.read_text()[-2000:]
        if SERVE_READY.search(log.read_text()):
            return proc, 0, log.read_text()[-2000:]
        time.sleep(0.5)
    proc.terminate()
    proc.wait(30)
    return None, 124, f"not ready after {timeout:.0f} s\n" + log.read_text()[-2000:]


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()  # compsrt serve stops tritonserver on SIGTERM
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def run(steps: list[Step], cwd: Path, timeout: float) -> list[tuple[Step, str, float]]:
    results, failed_chains, servers = [], set(), []
    try:
        for step in steps:
            shown = "compsrt " + shlex.join(step.argv)
            print(f"\n$ {shown}" + (f"    # README line {step.line}; sizes: {', '.join(step.changed)}" if step.changed
                                     else f"    # README line {step.line}"), flush=True)
            if step.skip:
                print(f"  skipped: {step.skip}", flush=True)
                results.append((step, "skipped", 0.0))
                continue
            if step.chain in failed_chains:
                print("  not run: an earlier command of this line failed", flush=True)
                results.append((step, "not run", 0.0))
                continue
            t0 = time.perf_counter()
            if step.background:
                proc, rc, tail = start_background(step, cwd, timeout)
                if proc is not None:
                    servers.append(proc)
                print(tail.rstrip()[-1500:], flush=True)
            else:
                try:
                    r = subprocess.run([sys.executable, "-m", "compsrt", *step.argv], cwd=cwd, env=_env(),
                                       timeout=timeout, check=False)
                    rc = r.returncode
                except subprocess.TimeoutExpired:
                    rc = 124
            dt = time.perf_counter() - t0
            status = "ok" if rc == 0 else f"FAILED (exit {rc})"
            print(f"  -> exit {rc}, {dt:.1f} s{'' if rc == 0 else '  FAILED'}", flush=True)
            if rc != 0:
                failed_chains.add(step.chain)
            results.append((step, status, dt))
    finally:
        for proc in servers:
            stop(proc)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary folder)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per command (default %(default)s)")
    args = ap.parse_args(argv)
    steps = plan(args.readme.read_text(encoding="utf-8"))
    print(f"{len(steps)} compsrt commands in the README's usage block; size overrides: "
          + "; ".join(f"{c} {o} {v}" for c, o, v in SIZE_OVERRIDES), flush=True)
    with tempfile.TemporaryDirectory(prefix="compsrt-readme-") as tmp:
        cwd = args.keep or Path(tmp)
        cwd.mkdir(parents=True, exist_ok=True)
        make_photos(cwd / "photos")
        t0 = time.perf_counter()
        results = run(steps, cwd, args.timeout)
    print(f"\n{'line':>4}  {'status':<18} {'s':>7}  command")
    for step, status, dt in results:
        print(f"{step.line:>4}  {status:<18} {dt:>7.1f}  {step.text}")
    failed = [r for r in results if r[1].startswith("FAILED") or r[1] == "not run"]
    print(f"{len(results)} commands: {sum(r[1] == 'ok' for r in results)} ok, {len(failed)} failed or not run, "
          f"{sum(r[1] == 'skipped' for r in results)} skipped (GPU); {time.perf_counter() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
