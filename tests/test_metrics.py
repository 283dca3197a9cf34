"""Tests for metrics.py: closed-form PSNR, SSIM properties, agreement with scikit-image
reference values, and the optional ST-LPIPS loader.

The files in tests/reference/ are byte-identical copies of ../shared/reference (images, and
SSIM/PSNR values computed by scikit-image's independent implementation, settings in the JSON),
kept in the repo so that the reference test runs everywhere, CI included. The ST-LPIPS tests
run only when stlpips-pytorch is installed; the fallback test runs always.

Run:  python -m pytest tests/test_metrics.py -q
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import metrics  # noqa: E402
from metrics import load_stlpips, psnr, ssim  # noqa: E402

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"


def load_png_chw(path: Path) -> torch.Tensor:
    """uint8 RGB PNG -> (3, H, W) float in [-1, 1]."""
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0  # (H, W, 3) in [0, 1]
    return torch.from_numpy(rgb).permute(2, 0, 1).float() * 2 - 1                 # (3, H, W)


@pytest.mark.parametrize("other", ["ssim_b_noise.png", "ssim_c_blur.png"])
def test_matches_scikit_image_reference(other):
    expected = json.loads((REFERENCE_DIR / "ssim_psnr_reference.json").read_text())[f"ssim_a.png vs {other}"]
    a, b = load_png_chw(REFERENCE_DIR / "ssim_a.png"), load_png_chw(REFERENCE_DIR / other)
    assert ssim(a, b).item() == pytest.approx(expected["ssim"], abs=1e-4)
    assert psnr(a, b).item() == pytest.approx(expected["psnr_db"], abs=1e-3)


def test_identical_images():
    x = torch.rand(2, 3, 24, 24) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-6)
    p = psnr(x, x)
    assert torch.isfinite(p).all() and (p > 90).all()


def test_psnr_constant_offset_is_20db():
    # offset 0.1 in [0, 1] units -> mse 0.01 -> 10 log10(1 / 0.01) = 20 dB
    x = torch.rand(3, 16, 16) * 1.6 - 0.8
    assert psnr(x, x + 0.2).item() == pytest.approx(20.0, abs=1e-4)


def test_ssim_symmetric():
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, 32, 32, generator=g) * 2 - 1, torch.rand(3, 32, 32, generator=g) * 2 - 1
    assert torch.allclose(ssim(a, b), ssim(b, a), atol=1e-6)


def test_batched_equals_per_image():
    g = torch.Generator().manual_seed(2)
    a = torch.rand(2, 3, 3, 32, 32, generator=g) * 2 - 1     # (B, T, C, H, W)
    b = (a + 0.1 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    s, p = ssim(a, b), psnr(a, b)
    assert s.shape == p.shape == (2, 3)
    for i in range(2):
        for t in range(3):
            assert torch.allclose(s[i, t], ssim(a[i, t], b[i, t]), atol=1e-6)
            assert torch.allclose(p[i, t], psnr(a[i, t], b[i, t]), atol=1e-5)


def test_more_noise_lowers_ssim():
    g = torch.Generator().manual_seed(3)
    # smooth image so that structure is there for noise to destroy
    x = torch.linspace(-0.8, 0.8, 48)
    img = (x[None, :, None] * x[None, None, :]).expand(3, 48, 48).contiguous()
    light = (img + 0.02 * torch.randn(img.shape, generator=g)).clamp(-1, 1)
    heavy = (img + 0.3 * torch.randn(img.shape, generator=g)).clamp(-1, 1)
    assert ssim(img, heavy) < ssim(img, light)


def test_too_small_raises():
    with pytest.raises(ValueError):
        ssim(torch.zeros(3, 10, 32), torch.zeros(3, 10, 32))
    with pytest.raises(ValueError):
        ssim(torch.zeros(3, 32, 10), torch.zeros(3, 32, 10))


# --- ST-LPIPS (optional extra) ---

@pytest.fixture
def stlpips():
    fn = load_stlpips()
    if fn is None:
        pytest.skip("stlpips-pytorch not installed")
    return fn


def smooth_frames(*lead, side=32):
    """Smooth colour gradients (..., 3, side, side) in [-1, 1], structure for noise to destroy."""
    x = torch.linspace(-0.8, 0.8, side)
    img = torch.stack([x[:, None] * x[None, :], x[:, None].expand(side, side),
                       x[None, :].expand(side, side)])           # (3, side, side)
    return img.expand(*lead, 3, side, side).contiguous()


def test_stlpips_identical_is_zero(stlpips):
    a = torch.rand(3, 3, 32, 32) * 2 - 1
    d = stlpips(a, a)
    assert d.shape == (3,)
    assert (d.abs() < 1e-6).all()


def test_stlpips_more_noise_is_farther(stlpips):
    g = torch.Generator().manual_seed(4)
    img = smooth_frames(2)                                        # (2, 3, 32, 32)
    light = (img + 0.02 * torch.randn(img.shape, generator=g)).clamp(-1, 1)
    heavy = (img + 0.3 * torch.randn(img.shape, generator=g)).clamp(-1, 1)
    d_light, d_heavy = stlpips(img, light), stlpips(img, heavy)
    assert (d_light > 0).all() and (d_heavy > d_light).all()


def test_stlpips_shape_and_batching(stlpips):
    g = torch.Generator().manual_seed(5)
    a = torch.rand(2, 3, 3, 32, 32, generator=g) * 2 - 1        # (B, T, C, H, W)
    b = (a + 0.1 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    d = stlpips(a, b)
    assert d.shape == (2, 3) and torch.isfinite(d).all()
    assert torch.allclose(d[1, 2], stlpips(a[1, 2], b[1, 2]), atol=1e-5)
    assert stlpips(a[:, :, :, :16, :40], b[:, :, :, :16, :40]).shape == (2, 3)  # non-square, tiny


def test_stlpips_absent_returns_none(monkeypatch, capsys):
    load_stlpips.cache_clear()
    monkeypatch.setitem(sys.modules, "stlpips_pytorch", None)     # import now fails as if absent
    monkeypatch.setitem(sys.modules, "stlpips_pytorch.stlpips", None)
    try:
        assert metrics.load_stlpips() is None
        assert capsys.readouterr().err == ""                      # plain absence is silent
    finally:
        load_stlpips.cache_clear()                                # later tests load the real one


def test_stlpips_load_failure_returns_none(monkeypatch, capsys):
    pkg = pytest.importorskip("stlpips_pytorch")                  # installed, but a dependency breaks
    load_stlpips.cache_clear()
    monkeypatch.delattr(pkg, "stlpips", raising=False)             # force a fresh submodule import
    monkeypatch.delitem(sys.modules, "stlpips_pytorch.stlpips", raising=False)
    monkeypatch.setitem(sys.modules, "torchsummary", None)
    try:
        assert metrics.load_stlpips() is None
        assert "ST-LPIPS unavailable" in capsys.readouterr().err
    finally:
        load_stlpips.cache_clear()
