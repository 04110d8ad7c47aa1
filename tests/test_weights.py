import hashlib

import pytest
import torch

from compsrt.errors import CompsrtError
from compsrt.files import sha256_file
from compsrt.models.weights import resolve_weights


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPSRT_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("COMPSRT_CACHE", str(tmp_path / "cache"))


def test_explicit_path_wins(x2_weights):
    assert resolve_weights(2, x2_weights) == x2_weights


def test_weights_dir_is_used(x2_weights, tmp_path):
    (tmp_path / "weights").mkdir()
    local = tmp_path / "weights" / "swinir_light_x2.pth"
    local.write_bytes(x2_weights.read_bytes())
    assert resolve_weights(2) == local


def test_download_from_file_url_is_validated_and_cached(x2_weights, tmp_path):
    url = x2_weights.as_uri()
    digest = sha256_file(x2_weights)
    got = resolve_weights(2, url=url, sha256=digest)
    assert got.parent == tmp_path / "cache" and got.read_bytes() == x2_weights.read_bytes()
    assert not list((tmp_path / "cache").glob(".*part*"))
    assert resolve_weights(2, url=url) == got  # second call uses the cache


def test_download_with_wrong_sha_leaves_nothing(x2_weights, tmp_path):
    with pytest.raises(CompsrtError, match="not the pinned"):
        resolve_weights(2, url=x2_weights.as_uri(), sha256=hashlib.sha256(b"other").hexdigest())
    assert not any((tmp_path / "cache").iterdir())


def test_download_of_wrong_scale_is_rejected_and_not_cached(x2_weights, tmp_path):
    with pytest.raises(CompsrtError, match="holds x2"):
        resolve_weights(3, url=x2_weights.as_uri())
    assert not any((tmp_path / "cache").iterdir())


def test_unreachable_download_explains_the_fix(tmp_path):
    with pytest.raises(CompsrtError, match="COMPSRT_WEIGHTS_DIR"):
        resolve_weights(4, url=(tmp_path / "nowhere.pth").as_uri())


def test_non_weights_download_is_rejected(tmp_path):
    junk = tmp_path / "junk.pth"
    torch.save({"params": {"a": torch.zeros(2)}}, junk)
    with pytest.raises(CompsrtError, match="missing"):
        resolve_weights(2, url=junk.as_uri())
