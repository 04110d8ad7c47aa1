"""Range-initialised preset x4 models (13a's WIP presets + this branch's fused-quant patch), tile 64: sizes only.
Observation on 4 training patches (64x64 LR, seed 0), no DOBI, no DQC."""
import sys, torch
from compsrt.calibration.checkpoint import load_model
from compsrt.calibration.config import QuantConfig
from compsrt.calibration.qmodel import freeze_model, quantize_model, set_observe
from compsrt.calibration.data import PatchSampler, load_training_lr
from compsrt.export.exporter import ExportOptions, export_model
imgs = [im for _, im in load_training_lr(4, progress=False)]
x = PatchSampler(imgs, patch=64, seed=0).sample(4)
for preset in sys.argv[1:]:
    name, _, hads = preset.partition(":")
    m, _ = load_model("/work/shared/data/weights/swinir_light_x4.pth")
    quantize_model(m, QuantConfig.from_preset(name))
    set_observe(m, True)
    with torch.no_grad():
        m(x)
    set_observe(m, False)
    freeze_model(m)
    for had in hads.split(","):
        out = f"/work/tmp13b/onnx/x4_{name.lower()}_{had}.onnx"
        r = export_model(m.eval(), out, ExportOptions(tile=(64, 64), hadamard=had), {})
        print(name, had, out, r.onnx_path.stat().st_size, flush=True)
