import pytest
import torch

from compsrt.errors import CompsrtError
from compsrt.models.swinir import SwinIR, SwinIRConfig, shifted_window_mask
from compsrt.models.weights import load_swinir, read_state_dict
from tests.conftest import tiny_swinir
from tests.conftest import official_format_state


@pytest.mark.parametrize("scale,count", [(2, 910_152), (3, 918_267), (4, 929_628)])
def test_parameter_counts(scale, count):
    assert sum(p.numel() for p in SwinIR(SwinIRConfig(scale=scale)).parameters()) == count


def test_official_names_load_strictly_and_buffers_are_ignored(x2_weights):
    expected = official_format_state(2)["params"]
    model = load_swinir(2, x2_weights)
    got = model.state_dict()
    assert set(got) == {k for k in expected if not k.endswith(("attn_mask", "relative_position_index"))}
    assert all(torch.equal(got[k], expected[k]) for k in got)
    assert not model.training


def test_params_ema_key_is_accepted(tmp_path):
    path = tmp_path / "ema.pth"
    torch.save({"params_ema": official_format_state(3)["params"]}, path)
    assert load_swinir(3, path).scale == 3


def test_wrong_scale_names_file_scale_and_keys(x2_weights):
    with pytest.raises(CompsrtError) as err:
        load_swinir(4, x2_weights)
    msg = str(err.value)
    assert str(x2_weights) in msg and "x4" in msg and "holds x2" in msg and "upsample.0.weight" in msg


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    state = official_format_state(2)["params"]
    del state["conv_first.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CompsrtError, match=r"missing: conv_first.weight.*unexpected: extra.weight"):
        load_swinir(2, path)


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"params": {"x": torch.zeros(1)}, "obj": ValueError("pickled object")}, path)
    with pytest.raises(CompsrtError, match="cannot read weights file"):
        read_state_dict(path)


@pytest.mark.parametrize("h,w", [(8, 8), (13, 11), (17, 30)])
def test_any_size_is_padded_and_cropped(h, w):
    model = tiny_swinir(3, 0)
    with torch.no_grad():
        y = model(torch.rand(2, 3, h, w))
    assert y.shape == (2, 3, 3 * h, 3 * w)


def test_padding_is_reflect_so_crop_equals_explicitly_padded_input():
    model = tiny_swinir(2, 0)
    x = torch.rand(1, 3, 13, 11)
    padded = torch.nn.functional.pad(x, (0, 5, 0, 3), mode="reflect")
    with torch.no_grad():
        assert torch.allclose(model(x), model(padded)[..., :26, :22], atol=1e-6)


def test_shift_mask_is_built_for_the_input_size():
    mask = shifted_window_mask(16, 24, 8, 4)
    assert mask.shape == (6, 64, 64)
    assert (mask[0] == 0).all()  # the top-left window never straddles a seam
    assert (mask[-1] == -100).any()
