"""Image quality metrics for frame reconstruction: PSNR and SSIM (Wang et al. 2004).

The paper scores how well frames are preserved by a compressed memory; these are the two
per-frame numbers used for that. Inputs use the project layout, floats in [-1, 1] shaped
(..., C, H, W); both metrics map to [0, 1] first, so the data range is 1.

Run the demo:  python metrics.py
"""
import torch
import torch.nn.functional as F

SSIM_WINDOW = 11      # Gaussian window side, as in Wang et al. (2004)
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
MSE_FLOOR = 1e-10     # identical images give a large finite PSNR (100 dB), not inf


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


if __name__ == "__main__":
    torch.manual_seed(0)
    frames = torch.rand(2, 4, 3, 64, 64) * 2 - 1             # (B, T, C, H, W) in [-1, 1]
    print(f"frames {tuple(frames.shape)}")
    for noise in (0.0, 0.05, 0.2, 0.5):
        noisy = (frames + noise * torch.randn_like(frames)).clamp(-1, 1)
        p, s = psnr(frames, noisy), ssim(frames, noisy)      # (B, T) each
        print(f"noise std {noise:4.2f}: psnr {tuple(p.shape)} mean {p.mean():7.2f} dB, "
              f"ssim {tuple(s.shape)} mean {s.mean():.4f}")
