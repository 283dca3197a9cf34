"""Exercise 6, solved: Omega and the L_pfp loss."""
import torch

from compressor import memory_positions
from config import Config
from flow import add_noise, sample_t, velocity_target
from latent import encode

REPLACES = "train_pfp"


def pick_omega(batch: int, cfg: Config, generator=None) -> torch.Tensor:
    """(B, k) sorted frame indices: a random k-subset of the history per row, or the last k."""
    T, k = cfg.latent_frames, cfg.targets
    if cfg.omega == "last":
        return torch.arange(T - k, T).repeat(batch, 1)
    rows = [torch.randperm(T, generator=generator)[:k].sort().values for _ in range(batch)]
    return torch.stack(rows)                                                  # (B, k)


def pfp_loss(dit, phi, video: torch.Tensor, cfg: Config) -> tuple:
    """Noise the frames at Omega to one t per history; regress the velocity seeing only phi(H)."""
    if cfg.noise_as_mask:
        raise NotImplementedError("noise_as_mask is not part of this exercise")
    B, device = video.shape[0], video.device
    latent = encode(video, cfg.vae_space, cfg.vae_time)                      # (B, T', C, h, w)
    memory, memory_pos = phi(video), memory_positions(cfg)                   # (B, M, D), (M, 3)
    omega = pick_omega(B, cfg).to(device)                                    # (B, k)
    x0 = torch.gather(latent, 1, omega[:, :, None, None, None].expand(-1, -1, *latent.shape[2:]))   # (B, k, C, h, w)
    t = sample_t(B, cfg.t_mean, cfg.t_std, cfg.t_shift).to(device)           # (B,)
    eps = torch.randn_like(x0)
    levels = t[:, None].repeat(1, omega.shape[1])                            # (B, k): every target at the same t
    v = dit(add_noise(x0, eps, levels), levels, omega, memory, memory_pos)   # (B, k, C, h, w)
    per_sample = (v - velocity_target(x0, eps)).square().flatten(1).mean(1)  # (B,)
    return per_sample.mean(), per_sample.detach(), t
