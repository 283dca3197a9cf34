"""Image quality metrics for frame reconstruction: PSNR and SSIM (Wang et al. 2004), and
optionally ST-LPIPS (shift-tolerant LPIPS, Ghildyal & Liu, ECCV 2022).

The paper scores how well frames are preserved by a compressed memory; PSNR and SSIM are the
two per-frame numbers used for that. Inputs use the project layout, floats in [-1, 1] shaped
(..., C, H, W); both metrics map to [0, 1] first, so the data range is 1.

ST-LPIPS is an optional extra; the rest works without it. Install with
    pip install stlpips-pytorch IPython torchsummary
(its weights ship inside the wheel, so nothing is downloaded). load_stlpips() returns None
when it is absent.

Run the demo:  python metrics.py
"""
import contextlib
import functools
import importlib.util
import sys
import types

import torch
import torch.nn.functional as F

from config import run_main

SSIM_WINDOW = 11      # Gaussian window side, as in Wang et al. (2004)
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
MSE_FLOOR = 1e-10     # identical images give a large finite PSNR (100 dB), not inf
STLPIPS_MIN_SIDE = 64  # ST-LPIPS was trained on 64x64 patches; it errors below 24 px and its deep
                       # layers are 4x4 at 32 px, so smaller frames are upsampled (bilinear) to this
STLPIPS_CHUNK = 64     # images per forward pass, bounds CPU memory


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image. a, b: (..., C, H, W) in [-1, 1]. Returns (...)."""
    a01, b01 = (a.float() + 1) / 2, (b.float() + 1) / 2
    mse = (a01 - b01).pow(2).mean(dim=(-3, -2, -1))         # (...)
    return -10 * torch.log10(mse.clamp_min(MSE_FLOOR))      # 10 log10(1^2 / mse)


def gaussian_window(channels: int, dtype, device) -> torch.Tensor:
    """Normalised 2D Gaussian, one copy per channel for a grouped conv: (C, 1, 11, 11)."""
    x = torch.arange(SSIM_WINDOW, dtype=dtype, device=device) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-x**2 / (2 * SSIM_SIGMA**2))
    g = g / g.sum()                                          # (11,)
    return (g[:, None] * g[None, :]).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image over the valid interior, averaged over channels.
    a, b: (..., C, H, W) in [-1, 1] with H, W >= 11. Returns (...)."""
    *lead, C, H, W = a.shape
    if H < SSIM_WINDOW or W < SSIM_WINDOW:
        raise ValueError(f"ssim needs H, W >= {SSIM_WINDOW}, got {H}x{W}")
    x = ((a.float() + 1) / 2).reshape(-1, C, H, W)           # (N, C, H, W) in [0, 1]
    y = ((b.float() + 1) / 2).reshape(-1, C, H, W)
    window = gaussian_window(C, x.dtype, x.device)
    # no padding: statistics only where the whole window fits, (N, C, H-10, W-10)
    def blur(z):
        return F.conv2d(z, window, groups=C)
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2                            # population (weighted) moments
    var_y = blur(y * y) - mu_y**2
    cov_xy = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2                          # (K * data_range)^2, range 1
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))     # (N, C, H-10, W-10)
    return ssim_map.mean(dim=(-3, -2, -1)).reshape(lead)     # (...)


@contextlib.contextmanager
def _torchvision_if_missing():
    """stlpips_pytorch runs `from torchvision import models` at import time, but its alex
    shift-tolerant net is built in-package and never touches torchvision. torchvision is not a
    project dependency (and the PyPI wheel fails to import against torch's CPU build), so when it
    cannot be imported an empty stand-in serves that import and is removed again afterwards."""
    try:
        import torchvision  # noqa: F401
        have_torchvision = True
    except Exception:                                        # absent, or a wheel built for CUDA torch
        have_torchvision = False
    if have_torchvision:
        yield
        return
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] == "torchvision"}
    stub = types.ModuleType("torchvision")
    stub.models = types.ModuleType("torchvision.models")
    sys.modules.update({"torchvision": stub, "torchvision.models": stub.models})
    try:
        yield
    finally:
        del sys.modules["torchvision"], sys.modules["torchvision.models"]
        sys.modules.update(saved)


@functools.lru_cache(maxsize=None)   # load once; tests reset with load_stlpips.cache_clear()
def load_stlpips():
    """-> a function (a, b) -> (...) ST-LPIPS distance per image for (..., 3, H, W) in [-1, 1],
    or None when stlpips-pytorch is not installed (or cannot load offline).

    Variant: the package's default, LPIPS(net="alex", variant="shift_tolerant"), i.e. the
    anti-aliased AlexNet trunk plus linear heads, all loaded from the wheel's
    weights/vST0.0/alex_shift_tolerant.pth (no torchvision or internet weights). Runs on CPU
    under no_grad; 0 for identical images, larger is more different."""
    if importlib.util.find_spec("stlpips_pytorch") is None:
        return None                                          # plain absence: silent
    try:
        with _torchvision_if_missing():
            from stlpips_pytorch import stlpips
        model = stlpips.LPIPS(net="alex", variant="shift_tolerant", verbose=False).eval()
    except Exception as e:                                   # e.g. IPython/torchsummary missing
        print(f"metrics: ST-LPIPS unavailable ({type(e).__name__}: {e})", file=sys.stderr)
        return None

    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        *lead, C, H, W = a.shape
        x = a.detach().float().cpu().reshape(-1, C, H, W)   # (N, 3, H, W) in [-1, 1]
        y = b.detach().float().cpu().reshape(-1, C, H, W)
        if min(H, W) < STLPIPS_MIN_SIDE:                     # our frames are 32..128 px: 32 -> 64
            scale = STLPIPS_MIN_SIDE / min(H, W)
            size = (round(H * scale), round(W * scale))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        with torch.no_grad():
            d = [model(x[i:i + STLPIPS_CHUNK], y[i:i + STLPIPS_CHUNK])  # (n, 1, 1, 1)
                 for i in range(0, x.shape[0], STLPIPS_CHUNK)]
        return torch.cat(d or [x.new_zeros(0)]).reshape(lead).to(a.device)  # (...)

    return distance


def main():
    torch.manual_seed(0)
    frames = torch.rand(2, 4, 3, 64, 64) * 2 - 1             # (B, T, C, H, W) in [-1, 1]
    print(f"frames {tuple(frames.shape)}")
    stlpips = load_stlpips()                                 # None without the optional extra
    for noise in (0.0, 0.05, 0.2, 0.5):
        noisy = (frames + noise * torch.randn_like(frames)).clamp(-1, 1)
        p, s = psnr(frames, noisy), ssim(frames, noisy)      # (B, T) each
        extra = f", st-lpips mean {stlpips(frames, noisy).mean():.4f}" if stlpips else ""
        print(f"noise std {noise:4.2f}: psnr {tuple(p.shape)} mean {p.mean():7.2f} dB, "
              f"ssim {tuple(s.shape)} mean {s.mean():.4f}{extra}")


if __name__ == "__main__":
    run_main(main)
