"""Exercise 6: the stage-1 objective, Omega and L_pfp (train_pfp.py, docs/paper.md, "Equations").

    L_pfp = E || (eps - H_Omega) - G((H_Omega)_t, t, phi(H)) ||^2

Pick a set Omega of k latent frames of each history, noise them to one time t per history, and
regress the DiT's velocity on them, seeing only the memory phi(H). Fill in both bodies, then run
    python exercises/check.py 6
which runs the Omega and loss tests of tests/test_models.py with yours, then checks your loss
against its definition with a stand-in DiT that records what it is given.
"""
import torch

# everything pfp_loss needs:
from compressor import memory_positions
from config import Config
from flow import add_noise, sample_t, velocity_target
from latent import encode

REPLACES = "train_pfp"


def pick_omega(batch: int, cfg: Config, generator=None) -> torch.Tensor:
    """(B, k) long latent-frame indices, k = cfg.targets, out of T = cfg.latent_frames.

    cfg.omega == "random": k distinct frames per row, uniform over the whole history, sorted
    ascending in each row; draw with `generator` (torch.rand and torch.randperm take one).
    cfg.omega == "last": the last k frames, T-k .. T-1, in every row (the paper's cheat)."""
    raise NotImplementedError("write pick_omega in exercises/stubs/pfp_objective.py")


def pfp_loss(dit, phi, video: torch.Tensor, cfg: Config) -> tuple:
    """L_pfp for a batch of histories video (B, T, 3, H, W) -> (loss, per-sample loss (B,) detached, t (B,)).

    The pieces, all on video.device:
      latent = encode(video, cfg.vae_space, cfg.vae_time)      (B, T', C, h, w), T' = cfg.latent_frames
      memory = phi(video)  (B, M, D);  memory_pos = memory_positions(cfg)  (M, 3)
      omega = pick_omega(B, cfg)  (B, k);  x0 = the latent frames at omega  (B, k, C, h, w)
      t = sample_t(B, cfg.t_mean, cfg.t_std, cfg.t_shift)  (B,): one time per history
      eps: standard normal noise shaped like x0
      v = dit(x_t, levels, omega, memory, memory_pos): levels (B, k) is each frame's time,
          omega (B, k) the frames' positions; v has the shape of x0
    per-sample loss: mean squared error against the velocity target, over (k, C, h, w).
    cfg.noise_as_mask is not part of this exercise: raise NotImplementedError when it is set."""
    raise NotImplementedError("write pfp_loss in exercises/stubs/pfp_objective.py")
