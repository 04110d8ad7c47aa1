"""The GPU table runner resumes across sessions (finished configurations in --out are skipped) and takes its
workers down with it when stopped."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from benchmarks.calibration.run_device import REPO, config_tag, main, onnx_from, parse, pending
from compsrt.errors import CompsrtError


def test_runner_skips_only_complete_results(tmp_path):
    args = argparse.Namespace(out=str(tmp_path), scale=4, iters=4000, datasets="Set5,B100", clamp_codes=False,
                              lr_mode="auto", first="deploy:4:-", configs=["deploy:3:-", "deploy:2:-", "deploy:4:2:4", "deploy:W4A8:-@120"],
                              redo=False, lr=None)
    assert config_tag(args, "deploy:4:2:4") == "x4_deploy_w4a4_p24"
    assert config_tag(argparse.Namespace(**{**vars(args), "lr": 3e-3}), "deploy:4:-") == "x4_deploy_w4a4_lr0.003"
    full = {"Set5": {}, "B100": {}}
    results = {"x4_fp32": {"eval": full},
               "x4_deploy_w4a4": {"calibration": {"iters_done": 4000}, "eval": full},
               "x4_deploy_w3a3": {"calibration": {"iters_done": 1462}, "eval": full},  # stopped at a deadline
               "x4_deploy_w2a2": {"calibration": {"iters_done": 4000}, "eval": {"Set5": {}}}}  # B100 not scored
    for tag, res in results.items():
        (tmp_path / f"{tag}.json").write_text(json.dumps(res))
    (tmp_path / "x4_deploy_w4a4_p24.json").write_text("{trunc")  # a half-written file: run again
    # @ITERS: the config's own iteration count decides whether it finished
    (tmp_path / f"{config_tag(args, 'deploy:W4A8:-@120')}.json").write_text(
        json.dumps({"calibration": {"iters_done": 120}, "eval": full}))
    assert pending(args) == ["deploy:3:-", "deploy:2:-", "deploy:4:2:4"]
    args.redo = True
    assert pending(args) == ["fp", "deploy:4:-", "deploy:3:-", "deploy:2:-", "deploy:4:2:4", "deploy:W4A8:-@120"]


def test_clamp_suffix_runs_a_clamped_paper_config_beside_the_unclamped_one(tmp_path):
    """``paper:4:-:clamp`` is what ``--clamp-codes`` makes of ``paper:4:-``, so one call trains both."""
    args = argparse.Namespace(out=str(tmp_path), scale=2, iters=4000, datasets="Set5", clamp_codes=False,
                              lr_mode="auto", first=None, configs=["paper:4:-", "paper:4:-:clamp@300"], redo=False, lr=None)
    assert config_tag(args, "paper:4:-:clamp") == "x2_paper_w4a4_clamped"
    assert config_tag(argparse.Namespace(**{**vars(args), "clamp_codes": True}), "paper:4:-") == "x2_paper_w4a4_clamped"
    assert config_tag(args, "paper:4:-") == "x2_paper_w4a4"
    assert parse("paper:3:0.4:clamp@300")[1] == 300 and parse("paper:3:0.4:clamp")[0].prune == "0.4"
    assert parse("deploy:4:2:4@300")[0].prune == "2:4"  # a 2:4 PRUNE is not taken for a flag
    (tmp_path / "x2_fp32.json").write_text(json.dumps({"eval": {"Set5": {}}}))
    (tmp_path / "x2_paper_w4a4.json").write_text(json.dumps({"calibration": {"iters_done": 4000}, "eval": {"Set5": {}}}))
    assert pending(args) == ["paper:4:-:clamp@300"]


@pytest.mark.parametrize("bad, error, says", [("deploy:4", ValueError, "expected MODE:BITS:PRUNE"),
                                              ("deploy:4:-@many", ValueError, "expected MODE:BITS:PRUNE"),
                                              ("deploy:W4A8:-:clamp", ValueError, ":clamp with numeric BITS"),
                                              ("deploy:4:-:clamp", CompsrtError, "is for paper mode")])
def test_malformed_configs_are_refused_before_anything_runs(tmp_path, monkeypatch, capsys, bad, error, says):
    with pytest.raises(error, match=says):
        parse(bad)
    monkeypatch.setattr("sys.argv", ["run_device", "--scale", "4", "--out", str(tmp_path), "--configs", "deploy:4:-", bad])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2 and says in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing launched, no logs folder


def test_onnx_from_skips_paper_mode_results(tmp_path, capsys):
    """Paper-mode models do not export: the after-the-fact ONNX checks pass over them instead of stopping."""
    res = {"tag": "x4_paper_w4a4", "config": {"mode": "paper"}, "eval": {}}
    (tmp_path / "x4_paper_w4a4.json").write_text(json.dumps(res))
    (tmp_path / "x4_paper_w4a4.csrt").write_bytes(b"not read")
    onnx_from(argparse.Namespace(onnx_from=str(tmp_path), parity_threads=1))
    assert "skip x4_paper_w4a4: paper mode does not export" in capsys.readouterr().out
    assert json.loads((tmp_path / "x4_paper_w4a4.json").read_text()) == res


def test_loss_curves_tenths_and_reference(tmp_path, capsys):
    from benchmarks.calibration.loss_curves import main, tenths

    assert tenths(list(range(10))) == [float(i) for i in range(10)]
    assert tenths([1.0] * 7 + [3.0] * 8) == [1.0] * 4 + [2.0] + [3.0] * 5  # 15 values: ten parts of 1 or 2, none lost
    assert tenths([2.0, 4.0]) == [2.0, 4.0]
    for name, losses in (("ref", [1.0e-3, 2.0e-3]), ("run", [1.1e-3, 1.8e-3])):
        (tmp_path / f"{name}.json").write_text(json.dumps({"calibration": {"loss": [[50, losses[0]], [100, losses[1]]]}}))
    (tmp_path / "x4_fp32.json").write_text(json.dumps({"eval": {}}))  # a result folder's FP row: no loss log
    main([str(tmp_path / "run.json"), str(tmp_path / "x4_fp32.json"), "--ref", str(tmp_path / "ref.json"), "--from-iter", "100"])
    out = capsys.readouterr().out
    assert "from iteration 100: 1.800-1.800 e-3" in out and "-10.0 to +10.0 %" in out
    assert "x4_fp32.json: no calibration loss log, skipped" in out


def test_stopped_runner_terminates_its_workers(tmp_path):
    """``timeout`` (SIGTERM) on the runner stops its calibrations too, instead of leaving them on the GPU."""
    # the runner with each worker replaced by a sleeper: only the supervision is under test
    code = ("import subprocess, sys\nimport benchmarks.calibration.run_device as r\n"
            "r.launch = lambda args, extra, log: subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], stdout=subprocess.DEVNULL)\n"
            f"sys.argv = ['run_device', '--scale', '4', '--out', {str(tmp_path)!r}, '--jobs', '2', '--budget', '600',"
            " '--configs', 'deploy:4:-', 'deploy:2:-', 'deploy:3:-']\nr.main()\n")
    runner = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
    pids = {}
    for line in runner.stdout:
        if "launched" in line:
            config, pid = line.split("launched ")[1].split(" (pid ")
            pids[config] = int(pid.rstrip(")\n"))
        if len(pids) == 3:  # the FP row and the first two configurations; the third waits for a free job
            break
    assert set(pids) == {"fp", "deploy:4:-", "deploy:2:-"}
    runner.send_signal(signal.SIGTERM)
    rest = runner.communicate(timeout=30)[0]
    assert runner.returncode == 128 + signal.SIGTERM
    assert "stopped: terminated fp, deploy:4:-, deploy:2:-" in rest and "launched deploy:3:-" not in rest

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    deadline = time.time() + 5
    while any(map(alive, pids.values())) and time.time() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in pids.values() if alive(pid)]  # reaped by the runner: gone, not zombies under it
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"workers {survivors} outlived the runner"
