"""A real Triton Inference Server (the nvidia-pytriton wheel's tritonserver) on a tiny model, loopback only.

The server starts once for the module and is stopped however the tests end. Skips only when the
tritonserver binary itself cannot run here.
"""

import json
import os
import subprocess
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from conftest import official_format_state

from compsrt.errors import CompsrtError
from compsrt.runtime.backends import torch_fp_backend
from compsrt.runtime.serving import repo as repo_mod
from compsrt.runtime.serving import server as server_mod
from compsrt.runtime.upscaler import TiledUpscaler

TILE, MAX_PIXELS = 16, 40 * 40


def _binary_runs() -> str | None:
    """None when tritonserver can execute here, else why not."""
    try:
        inst = server_mod.find_triton()
    except CompsrtError as exc:
        return str(exc)
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(map(str, inst.libs)))
    try:
        r = subprocess.run([str(inst.binary), "--help"], capture_output=True, env=env, timeout=30)
    except OSError as exc:
        return f"{inst.binary} cannot execute: {exc}"
    if b"--model-repository" not in r.stdout + r.stderr:
        return f"{inst.binary} --help failed: {(r.stdout + r.stderr)[-300:]!r}"
    if inst.stub is not None:  # the python backend's stub links this machine's libpython
        r = subprocess.run(["ldd", str(inst.stub)], capture_output=True, env=env, text=True)
        missing = [ln.split()[0] for ln in r.stdout.splitlines() if "not found" in ln]
        if missing:
            return f"the python backend stub cannot load {', '.join(missing)}"
    return None


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "x2.pth"
    torch.save(official_format_state(2, seed=3), path)
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory, weights):
    why = _binary_runs()
    if why:
        pytest.skip(f"tritonserver cannot start here: {why}")
    root = tmp_path_factory.mktemp("repo")
    repo_mod.write_repository(root, scale=2, weights=weights,
                              options=repo_mod.RepoOptions(tile=TILE, max_batch=8, max_pixels=MAX_PIXELS, overlap=8))
    env = server_mod.python_env() | {"OMP_NUM_THREADS": "1"}  # 2 cores shared with the test process
    with server_mod.running(root, timeout=120, env=env) as s:  # stopped on any failure below
        yield s
        assert s.alive(), s.log_tail()


class _Local:
    """The same model in-process, tiled as the server tiles (one torch thread: 2 shared cores)."""

    def __init__(self, weights):
        self.up = TiledUpscaler(torch_fp_backend(2, weights), tile=TILE, overlap=8, batch=4)

    def upscale(self, img):
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.up.upscale(img)
        finally:
            torch.set_num_threads(n)


@pytest.fixture(scope="module")
def local(weights):
    return _Local(weights)


def test_concurrent_requests_equal_in_process(served, local):
    from compsrt.runtime.serving.client import RemoteUpscaler

    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(16, 24), (24, 16), (13, 9), (16, 16)] * 2]
    urls = [served.http_url, served.grpc_url] * 4

    def one(i):
        c = RemoteUpscaler(urls[i])
        try:
            return c.upscale(imgs[i])
        finally:
            c.close()

    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(one, range(len(imgs))))
    for img, out in zip(imgs, outs):
        assert out.shape == (2 * img.shape[0], 2 * img.shape[1], 3)
        assert np.array_equal(out, local.upscale(img).rgb)


def test_malformed_and_oversized_requests_get_errors_and_the_server_keeps_serving(served, local):
    from tritonclient.utils import InferenceServerException

    from compsrt.runtime.serving.client import RemoteUpscaler

    c = RemoteUpscaler(served.http_url)
    bad = [(np.zeros((10, 10, 4), np.uint8), "UINT8", "RGB"),  # 4 channels: rejected by the config dims
           (np.zeros((10, 10), np.uint8), "UINT8", "dims"),  # wrong rank
           (np.zeros((0, 10, 3), np.uint8), "UINT8", "empty"),
           (np.zeros((50, 50, 3), np.uint8), "UINT8", "limit"),  # above max_pixels
           (np.zeros((10, 10, 3), np.float32), "FP32", "data-type")]
    for arr, dtype, _ in bad:
        with pytest.raises(InferenceServerException):
            c.infer_raw(arr, dtype)
    with pytest.raises(CompsrtError, match="limit"):
        c.upscale(np.zeros((50, 50, 3), np.uint8))
    # garbage HTTP bodies and unknown models: an error status, not a crash
    req = urllib.request.Request(f"{served.http_url}/v2/models/compsrt_upscale/infer", data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code >= 400
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"{served.http_url}/v2/models/nope/ready", timeout=10)
    # the tile model refuses a wrong tile size
    import tritonclient.http as th

    tc = th.InferenceServerClient(served.http_url.split("//")[1])
    x = th.InferInput("LR", [1, 3, 8, 8], "FP32")
    x.set_data_from_numpy(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(InferenceServerException):
        tc.infer("compsrt_tile", [x])
    assert served.alive()
    img = np.random.default_rng(1).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    assert np.array_equal(c.upscale(img), local.upscale(img).rgb)
    c.close()


def test_health_and_metrics_endpoints(served):
    with urllib.request.urlopen(f"{served.http_url}/v2/health/live", timeout=10) as r:
        assert r.status == 200
    with urllib.request.urlopen(f"{served.http_url}/v2/models/compsrt_tile/config", timeout=10) as r:
        cfg = json.loads(r.read())
    assert cfg["max_batch_size"] == 8 and "dynamic_batching" in cfg
    with urllib.request.urlopen(served.metrics_url, timeout=10) as r:
        text = r.read().decode()
    assert 'nv_inference_request_success{model="compsrt_upscale"' in text


def test_upscale_cli_through_the_server(served, local, tmp_path):
    from PIL import Image

    from compsrt.cli import main

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(2)
    imgs = [rng.integers(0, 256, (12, 10, 3), dtype=np.uint8) for _ in range(3)]
    for i, a in enumerate(imgs):
        Image.fromarray(a).save(src / f"{i}.png")
    assert main(["upscale", str(src), str(tmp_path / "out"), "--server", served.grpc_url, "--workers", "2"]) == 0
    for i, a in enumerate(imgs):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / f"{i}.png")), local.upscale(a).rgb)


def test_serve_cli_prints_urls_and_stops(served, capsys, tmp_path):
    from compsrt.cli import main

    assert main(["serve", str(tmp_path)]) == 2  # not a repository: refused with the fix
    assert "compsrt triton-repo" in capsys.readouterr().err
    root = next(p for p in served.process.args if p.startswith("--model-repository=")).split("=", 1)[1]
    assert main(["serve", root, "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--json",
                 "--duration", "0.5"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["http"].startswith("http://127.0.0.1:") and info["metrics"].endswith("/metrics")
    assert served.alive()


def test_server_log_has_no_traceback(served):
    """After the good requests above, the server log holds no Python traceback (the python backend stub
    renamed each consumed DLPack capsule so that numpy's destructor printed one per tensor)."""
    log = served.log.read_text(errors="replace")
    assert "Traceback" not in log and "PyCapsule" not in log, log[-2000:]


def _quantized_checkpoint(path):
    from compsrt.calibration.checkpoint import save_checkpoint
    from compsrt.calibration.qmodel import QuantConfig, quantize_model
    from conftest import tiny_swinir

    return save_checkpoint(quantize_model(tiny_swinir(2, seed=5), QuantConfig(bits=4, mode="deploy")), {}, path)


def test_readme_path_triton_repo_defaults_then_serve_then_request(tmp_path):
    """`compsrt triton-repo --checkpoint C --out repo && compsrt serve repo` with every default (--device auto is
    resolved on the server host), then a request: the output equals in-process upscaling and the log is clean."""
    import select
    import signal
    import sys

    from compsrt.cli import main
    from compsrt.runtime.backends import torch_checkpoint_backend
    from compsrt.runtime.serving.client import RemoteUpscaler

    why = _binary_runs()
    if why:
        pytest.skip(f"tritonserver cannot start here: {why}")
    ckpt = _quantized_checkpoint(tmp_path / "w4a4.pt")
    repo = tmp_path / "repo"
    assert main(["triton-repo", "--checkpoint", str(ckpt), "--out", str(repo)]) == 0
    assert 'string_value: "auto"' in (repo / "compsrt_tile" / "config.pbtxt").read_text()
    log = tmp_path / "server.log"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(server_mod.PACKAGE_ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "compsrt", "serve", str(repo), "--http-port", "0",
                             "--grpc-port", "0", "--metrics-port", "0", "--json", "--log", str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 180)
        line = proc.stdout.readline() if ready else ""
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        assert line.startswith("{"), (line, proc.poll(), tail)
        info = json.loads(line)
        img = np.random.default_rng(6).integers(0, 256, (20, 30, 3), dtype=np.uint8)
        c = RemoteUpscaler(info["http"])
        out = c.upscale(img)
        c.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait(10)
    backend = torch_checkpoint_backend(ckpt)
    backend.tile = (64, 64)  # the repository's tile model: the default --tile
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = TiledUpscaler(backend, overlap=16, batch=4).upscale(img).rgb
    finally:
        torch.set_num_threads(n)
    assert np.array_equal(out, local)
    text = log.read_text(errors="replace")
    assert "compsrt_tile: checkpoint model on cpu (repository device auto)" in text or "on cuda" in text, text[-2000:]
    assert "Traceback" not in text, text[-2000:]


def test_a_model_that_fails_to_load_is_one_line(tmp_path):
    """The server's reason, on one line (model and cause), not the python backend's stack from its log."""
    why = _binary_runs()
    if why:
        pytest.skip(f"tritonserver cannot start here: {why}")
    repo_mod.write_repository(tmp_path / "repo", checkpoint=_quantized_checkpoint(tmp_path / "c.pt"),
                              options=repo_mod.RepoOptions(tile=16))
    (tmp_path / "repo" / "compsrt_tile" / "1" / "model.pt").write_bytes(b"not a checkpoint")
    env = server_mod.python_env() | {"OMP_NUM_THREADS": "1"}
    with pytest.raises(CompsrtError) as exc:
        server_mod.start(tmp_path / "repo", timeout=120, env=env, log=tmp_path / "server.log")
    msg = str(exc.value)
    assert len(msg.splitlines()) == 1 and "At:" not in msg, msg
    assert "model compsrt_tile failed to load" in msg and "model.pt" in msg and "server.log" in msg, msg


def test_client_error_without_server(capsys):
    from compsrt.cli import main
    from compsrt.runtime.profile import SAMPLE
    from compsrt.runtime.serving.server import free_port

    assert main(["upscale", str(SAMPLE), "/tmp/never.png", "--server", f"http://127.0.0.1:{free_port()}"]) == 2
    err = capsys.readouterr().err
    assert "no Triton server answers" in err and "compsrt serve" in err


# ------------------------------------------------------------------ repositories (no server needed)
def _config(root, model):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse((root / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def _tiny_onnx(path, batch):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 16, 16])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 3, 32, 32])
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])
    node = helper.make_node("Resize", ["input", "", "scales"], ["output"], mode="nearest")
    model = helper.make_model(helper.make_graph([node], "up", [x], [y], [scales]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)


def test_onnx_repository_configs(tmp_path):
    _tiny_onnx(tmp_path / "dyn.onnx", "N")
    _tiny_onnx(tmp_path / "fixed.onnx", 1)
    m = repo_mod.write_repository(tmp_path / "r1", onnx=tmp_path / "dyn.onnx", scale=2)
    cfg = _config(tmp_path / "r1", "compsrt_tile")
    assert m["tile_model"]["backend"] == "onnxruntime" and cfg.backend == "onnxruntime"
    assert cfg.max_batch_size == 8 and list(cfg.input[0].dims) == [3, 16, 16] and cfg.input[0].name == "input"
    assert list(cfg.output[0].dims) == [3, 32, 32] and cfg.HasField("dynamic_batching")
    img = _config(tmp_path / "r1", "compsrt_upscale")
    assert img.backend == "python" and img.parameters["input_name"].string_value == "input"
    with pytest.raises(CompsrtError, match="--batch dynamic"):
        repo_mod.write_repository(tmp_path / "r2", onnx=tmp_path / "fixed.onnx", scale=2)
    m = repo_mod.write_repository(tmp_path / "r3", onnx=tmp_path / "fixed.onnx", scale=2,
                                  options=repo_mod.RepoOptions(runtime="python"))
    cfg = _config(tmp_path / "r3", "compsrt_tile")
    assert cfg.backend == "python" and (tmp_path / "r3" / "compsrt_tile" / "1" / "model.onnx").is_file()
    with pytest.raises(CompsrtError, match="not a compsrt model repository"):
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "x").write_text("x")
        repo_mod.write_repository(tmp_path / "other", onnx=tmp_path / "dyn.onnx")


def test_engine_repository_config(tmp_path):
    from compsrt.artifacts import ENGINE_FORMAT

    plan = tmp_path / "m.plan"
    plan.write_bytes(b"engine bytes")
    (tmp_path / "m.plan.json").write_text(json.dumps({
        "format": ENGINE_FORMAT, "tile": [64, 64], "scale": 4, "batch": 2, "inputs": ["input"], "outputs": ["output"],
        "input_dtype": "DataType.FLOAT", "plugin": {"kind": "cpp"}}))
    m = repo_mod.write_repository(tmp_path / "r", engine=plan)
    cfg = _config(tmp_path / "r", "compsrt_tile")
    assert cfg.platform == "tensorrt_plan" and cfg.max_batch_size == 0
    assert list(cfg.input[0].dims) == [2, 3, 64, 64] and list(cfg.output[0].dims) == [2, 3, 256, 256]
    assert cfg.instance_group[0].kind == cfg.instance_group[0].KIND_GPU
    assert (tmp_path / "r" / "compsrt_tile" / "1" / "model.plan").read_bytes() == b"engine bytes"
    assert any("LD_PRELOAD" in n and "plugins=" in n for n in m["notes"])
    img = _config(tmp_path / "r", "compsrt_upscale")
    assert img.parameters["batch"].string_value == "2" and img.parameters["fixed_batch"].string_value == "1"
