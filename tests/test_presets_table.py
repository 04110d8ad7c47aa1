"""presets_table.py: each scale's engine sizes by graph name (--engine-prefix, --fp-engine), several result folders."""

from __future__ import annotations

import json

from benchmarks.export.presets_table import main


def _engine(n: int) -> dict:
    return {"engines": {"all": {"built": True, "engine_bytes": n}}}


def test_engine_prefix_and_fp_engine(tmp_path, capsys):
    runs = tmp_path / "run"
    runs.mkdir()
    ev = {d: {"psnr": 30.0} for d in ("Set5", "Set14", "B100")}
    (runs / "x2_fp32.json").write_text(json.dumps({"eval": ev}))
    (runs / "x2_deploy_w4a8.json").write_text(json.dumps({
        "tag": "x2_deploy_w4a8", "eval": ev, "calibration": {"iters_done": 100},
        "onnx": {"precision_label": "W4A8", "onnx_bytes": 2_000_000}}))
    mo = tmp_path / "mo.json"
    mo.write_text(json.dumps({"graphs": {"fp": {"gap_db": {"Set5": 0.0}, "sizes": {}}}}))
    eng = tmp_path / "sizes.json"
    eng.write_text(json.dumps({"graphs": {"w4a8_matmul": _engine(1), "fp": _engine(2),  # another scale's names
                                          "x2-a_w4a8_matmul": _engine(30_000_000),
                                          "x2-a_w4a8_fused-quant": _engine(11_000_000),
                                          "x2_fp": _engine(9_500_000)}}))
    main(["--presets", str(runs), "--modelopt", str(mo), "--engines", str(eng),
          "--engine-prefix", "x2-a_", "--fp-engine", "x2_fp"])
    out = capsys.readouterr().out
    assert "| 30.00 / 11.00 |" in out
    assert "| 9.50 | (ORT-scored) |" in out
    main(["--presets", str(runs), "--modelopt", str(mo), "--engines", str(eng)])  # the defaults: x4's names
    out = capsys.readouterr().out
    assert "| 0.00 / - |" in out and "| 0.00 | (ORT-scored) |" in out


def test_several_folders_and_pruned_rows(tmp_path, capsys):
    ev = {d: {"psnr": 30.0} for d in ("Set5", "Set14", "B100")}
    folders = []
    for name, tag, prune, iters in (("a", "x4_deploy_w4a4", None, 120), ("b", "x4_deploy_w4a4_p0.4", "0.4", 4000)):
        run = tmp_path / name
        run.mkdir()
        (run / "x4_fp32.json").write_text(json.dumps({"eval": ev}))
        (run / f"{tag}.json").write_text(json.dumps({"tag": tag, "eval": ev, "calibration": {"iters_done": iters},
                                                      "config": {"prune": prune}}))
        folders.append(str(run))
    eng = tmp_path / "sizes.json"
    eng.write_text(json.dumps({"graphs": {"w4a4_matmul": _engine(42_000_000), "w4a4_fused-quant": _engine(11_000_000)}}))
    main(["--presets", *folders, "--engines", str(eng)])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| compsrt")]
    assert rows[0].startswith("| compsrt W4A4 (120 it)") and "| 42.00 / 11.00 |" in rows[0]
    # the pruned model's engine was never built: its row must not borrow the dense preset's
    assert rows[1].startswith("| compsrt W4A4 pruned 0.4 (4000 it)") and "| - / - |" in rows[1]
