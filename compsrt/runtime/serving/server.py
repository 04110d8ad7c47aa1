"""``compsrt serve``: start ``tritonserver`` on a model repository, wait until it is ready.

The binary is the one on ``PATH`` (the NGC ``tritonserver`` image) or the one shipped in the
``nvidia-pytriton`` wheel. The wheel's python backend needs its stub for this Python version beside
``libtriton_python.so``; that copy goes into a backend folder of our own (a temporary directory),
never into site-packages. PyTriton's own ``Triton.bind`` is not used (it fails on Python >= 3.11.6,
triton-inference-server/pytriton#51); the stock server is started on a standard repository.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import CompsrtError

PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the folder holding the compsrt package


@dataclass
class TritonInstall:
    binary: Path
    backends: Path  # the backend directory as shipped
    libs: list[Path] = field(default_factory=list)  # for LD_LIBRARY_PATH
    stub: Path | None = None  # python backend stub to copy beside libtriton_python.so
    source: str = "PATH"


def find_triton() -> TritonInstall:
    """The ``tritonserver`` on PATH (with /opt/tritonserver/backends), else the nvidia-pytriton wheel's."""
    on_path = shutil.which("tritonserver")
    if on_path:
        b = Path(on_path).resolve()
        backends = b.parent.parent / "backends"
        return TritonInstall(b, backends if backends.is_dir() else Path("/opt/tritonserver/backends"), source="PATH")
    spec = importlib.util.find_spec("pytriton")  # locate without importing (its import pulls numpy<2 code)
    if spec is None or not spec.submodule_search_locations:
        raise CompsrtError("no tritonserver found: install the wheel (`pip install --no-deps nvidia-pytriton==0.7.0`, "
                           "see requirements-serving.txt) or run inside the NGC tritonserver image")
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    binary = root / "bin" / "tritonserver"
    if not binary.is_file():
        raise CompsrtError(f"the nvidia-pytriton install at {root.parent} has no tritonserver binary; reinstall it")
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / ver / "triton_python_backend_stub"
    libs = [root.parent.parent / "nvidia_pytriton.libs", root / "external_libs"]
    return TritonInstall(binary, root / "backends", [p for p in libs if p.is_dir()], stub if stub.is_file() else None,
                         source=f"nvidia-pytriton ({root.parent})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running tritonserver; :meth:`stop` (or leaving :func:`running`) ends it."""

    process: subprocess.Popen
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    log: Path
    workdir: tempfile.TemporaryDirectory | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, n: int = 15, grep: str | None = None) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        errors = [ln for ln in lines if ln.startswith("E") or "error" in ln.lower() or "UNAVAILABLE" in ln]
        return "\n".join((errors or lines)[-n:])

    def failure(self) -> str:
        """Why the server did not come up, on one line (the log keeps the details)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return f"no log at {self.log}"
        return f"{startup_error(text)} (full log: {self.log})"

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # tritonserver unloads models and exits
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.workdir is not None:
            self.workdir.cleanup()
            self.workdir = None


_LOAD_FAILURE = re.compile(r"failed to load '([^']+)' version \d+: "  # Triton's status code, then the model's message
                           r"(?:(?:Internal|Invalid argument|Unavailable|Not found|Unsupported|Unknown): )?(.*?)\"?$")


def startup_error(log_text: str) -> str:
    """One line from a tritonserver log: the first model that failed to load and why, without the python
    backend's stack (``\\n\\nAt:\\n  file(line): ...``, escaped inside the quoted log message)."""
    lines = log_text.splitlines()
    for ln in lines:
        m = _LOAD_FAILURE.search(ln)
        if m:
            why = m.group(2).split("\\n\\nAt:", 1)[0].replace("\\n", " ").strip()
            return f"model {m.group(1)} failed to load: {why}"
    errors = [ln for ln in lines if ln.startswith(("E", "error:"))]
    return (errors or lines or ["tritonserver wrote no log"])[-1].strip()


def _backend_dir(inst: TritonInstall, work: Path) -> Path:
    """A backend folder of our own: links to the shipped backends, plus the python stub copy."""
    if inst.stub is None:
        return inst.backends
    dest = work / "backends"
    for b in inst.backends.iterdir():
        if b.name != "python":
            (dest / b.name).parent.mkdir(parents=True, exist_ok=True)
            (dest / b.name).symlink_to(b)
    py = dest / "python"
    py.mkdir(parents=True, exist_ok=True)
    for f in (inst.backends / "python").iterdir():
        if f.is_file():
            (py / f.name).symlink_to(f)
    shutil.copy2(inst.stub, py / "triton_python_backend_stub")
    return dest


def python_env() -> dict:
    """Environment for the server and its python-backend stubs: compsrt and this venv importable."""
    import site

    paths = [str(PACKAGE_ROOT)] + site.getsitepackages() + [p for p in sys.path if p.endswith("site-packages")]
    env = dict(os.environ)
    joined = os.pathsep.join(dict.fromkeys(paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]))
    # The stub's embedded interpreter ignores PYTHONPATH; the repository's model.py files read this.
    env["PYTHONPATH"] = env["COMPSRT_PYTHONPATH"] = joined
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // 2)))
    return env


def start(repo: Path, host: str = "127.0.0.1", http_port: int = 0, grpc_port: int = 0, metrics_port: int = 0,
          timeout: float = 120.0, log: Path | None = None, extra_args: list[str] | None = None,
          env: dict | None = None) -> Server:
    """Start tritonserver on ``repo`` and return once it reports ready (or raise with its log tail)."""
    repo = Path(repo)
    if not (repo / "compsrt_repo.json").is_file() and not any(repo.glob("*/config.pbtxt")):
        raise CompsrtError(f"{repo} is not a model repository (no */config.pbtxt); write one with `compsrt triton-repo`")
    inst = find_triton()
    work = tempfile.TemporaryDirectory(prefix="compsrt-triton-")
    wdir = Path(work.name)
    backends = _backend_dir(inst, wdir)
    needed = {p.read_text().split('backend: "', 1)[1].split('"', 1)[0] for p in repo.glob("*/config.pbtxt")
              if 'backend: "' in p.read_text()}
    missing = sorted(b for b in needed if not (backends / b).is_dir())
    if missing:
        work.cleanup()
        raise CompsrtError(f"this Triton ({inst.source}) has no {', '.join(missing)} backend; rewrite the repository "
                           "with `compsrt triton-repo ... --runtime python` or serve it from the NGC image")
    ports = [p or free_port() for p in (http_port, grpc_port, metrics_port)]
    if log is None:  # outside the work folder: the log outlives the server (its path is in the error messages)
        fd, log = tempfile.mkstemp(prefix="compsrt-tritonserver-", suffix=".log")
        os.close(fd)
    log = Path(log)
    env = dict(env or python_env())
    if inst.libs:
        env["LD_LIBRARY_PATH"] = os.pathsep.join([str(p) for p in inst.libs] + [env.get("LD_LIBRARY_PATH", "")])
    cmd = [str(inst.binary), f"--model-repository={repo.resolve()}", f"--backend-directory={backends}",
           f"--http-address={host}", f"--http-port={ports[0]}", f"--grpc-address={host}", f"--grpc-port={ports[1]}",
           f"--metrics-address={host}", f"--metrics-port={ports[2]}", "--allow-metrics=true",
           "--strict-readiness=true", "--exit-timeout-secs=5", "--log-verbose=0",
           *(extra_args or [])]
    fh = open(log, "wb")
    try:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=wdir, start_new_session=True)
    except OSError as exc:
        fh.close()
        work.cleanup()
        raise CompsrtError(f"cannot start {inst.binary}: {exc}") from None
    fh.close()
    server = Server(proc, host, *ports, log, work)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            why = server.failure()
            server.stop()
            raise CompsrtError(f"tritonserver exited with status {proc.returncode} before it was ready: {why}")
        try:
            with urllib.request.urlopen(f"{server.http_url}/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.25)
    why = server.failure()
    server.stop()
    raise CompsrtError(f"tritonserver was not ready within {timeout:.0f} s: {why}")


@contextlib.contextmanager
def running(repo: Path, **kw) -> Iterator[Server]:
    """Start the server for the duration of a block; it is stopped however the block ends."""
    server = start(repo, **kw)
    try:
        yield server
    finally:
        server.stop()
