"""The memory compressor phi (docs/paper.md, "The compressor (Figure 3)").

phi turns a history video H into M memory tokens of the DiT's width D, at a rate h x w x t
relative to the DiT's token grid (4x4x2 keeps 1/32 of the tokens). Two branches are *added*
in the DiT's width, after its first projection, bypassing the VAE's channel bottleneck:

    LR branch:  downsample H by (t, h, w) in pixels -> VAE encode -> the DiT's own patchifier
                (a copy initialised from it), so its tokens already "speak the DiT's language"
    HR branch:  3D convolutions + SiLU over the full-resolution video, one strided
                convolution onto the compressed grid, attention across all memory tokens,
                plus a linear route from the cells to the grid [ours]: residual vectors that
                carry the detail the LR branch lost

The LR branch and the large patchifier read the DiT's latent (`phi(video, dit.latent)`); the HR
branch reads the lossless pixel cells (latent.encode), so with a lossy --latent pca it sees what
the VAE's bottleneck dropped. With the default lossless latent the two inputs are the same.

--compressor picks the paper's rows (Table 1):
    pfp               LR + HR (the proposed method)
    only_lr           LR alone
    without_lr        HR alone
    large_patchifier  one Conv3d whose kernel spans the compressed patch, initialised from the
                      DiT's patchifier as FramePack does (its weights repeated and averaged)
    none              no memory at all: the floor that shows what memory adds

    python compressor.py --scale paper    # token counts (187,200 raw -> ~5.9k at 4x4x2), parameters (activation memory: footprint.py)

Letters: B batch, T frames, C latent channels, P lossless cell channels, D width, M memory tokens,
(f, r, c) memory grid.
"""
import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from config import Config, add_config_flags, config_from_args, ConfigError, fail
from latent import Latent, encode


def memory_grid(cfg: Config) -> tuple:
    """(frames, rows, cols) of memory tokens; ceil, because the paper pads (30 rows / 4 -> 8)."""
    frames, rows, cols = cfg.token_grid
    rh, rw, rt = cfg.rate_hwt
    return math.ceil(frames / rt), math.ceil(rows / rh), math.ceil(cols / rw)


def memory_positions(cfg: Config) -> torch.Tensor:
    """(M, 3) (frame, row, col) of each memory token: the centre of the DiT tokens it summarises,
    in DiT-token units, so it shares RoPE coordinates with the noisy tokens. [ours]"""
    if cfg.compressor == "none":
        return torch.zeros(0, 3)
    (f, r, c), (rh, rw, rt) = memory_grid(cfg), cfg.rate_hwt
    grid = torch.meshgrid(torch.arange(f), torch.arange(r), torch.arange(c), indexing="ij")
    pos = torch.stack(grid, dim=-1).reshape(-1, 3).float()                 # (M, 3) grid index
    size = torch.tensor([rt, rh, rw], dtype=torch.float32)
    return pos * size + (size - 1) / 2                                      # centre of each patch


def pad_to_memory_grid(video: torch.Tensor, cfg: Config) -> torch.Tensor:
    """video (B, T, 3, H, W) -> zero-padded at its end, bottom and right to whole memory tokens,
    as the paper pads (30 token rows at 4x4 -> 32). Zero is mid-grey. [ours, as to the value]"""
    rh, rw, rt = cfg.rate_hwt
    cell = cfg.vae_space * cfg.patch                   # pixels a DiT token spans
    T, H, W = video.shape[1], video.shape[3], video.shape[4]
    more = lambda n, step: -n % step                   # what n lacks of a whole number of steps
    pad_w, pad_h, pad_t = more(W, rw * cell), more(H, rh * cell), more(T, rt * cfg.vae_time)
    return F.pad(video, (0, pad_w, 0, pad_h, 0, 0, 0, pad_t))


class HRBranch(nn.Module):
    """Full-resolution lossless cells (B, P, T', h, w) -> residual memory tokens (B, M, D)."""

    def __init__(self, cfg: Config):
        super().__init__()
        rh, rw, rt = cfg.rate_hwt
        ch, p = cfg.hr_channels, cfg.patch
        self.stem = nn.Conv3d(cfg.block_channels, ch, 3, padding=1)   # the pixels, past the latent's bottleneck
        # A residual block, so the full-resolution detail reaches the grid both directly and
        # through the nonlinearity; a plain stack had to learn even the linear route. [ours]
        self.res = nn.Sequential(nn.SiLU(), nn.Conv3d(ch, ch, 3, padding=1),
                                 nn.SiLU(), nn.Conv3d(ch, ch, 3, padding=1))
        block = (rt, rh * p, rw * p)                   # one memory token's span, in latent cells
        self.to_grid = nn.Conv3d(ch, cfg.dim, kernel_size=block, stride=block)
        self.attn = nn.ModuleList(
            nn.TransformerEncoderLayer(cfg.dim, cfg.heads, 4 * cfg.dim, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True) for _ in range(cfg.hr_blocks))
        # Not zero-initialised: a silent start (ControlNet-style) would starve every layer below
        # it of gradient until it grows. [ours]
        self.out = nn.Linear(cfg.dim, cfg.dim)
        # [ours] Beside the chain, a linear route from the cells straight onto the grid: the large
        # patchifier's single strided convolution, the compressor that learns fastest. It starts at
        # zero, so pfp starts as its LR branch, then learns at once what the large patchifier
        # learns, while the chain adds what no linear map can (results/learning_speed.md).
        self.linear = nn.Conv3d(cfg.block_channels, cfg.dim, kernel_size=block, stride=block)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, cells):
        x = self.stem(cells)                           # (B, ch, T', h, w)
        x = self.to_grid(x + self.res(x))              # (B, D, f, r, c)
        x = x.flatten(2).transpose(1, 2)               # (B, M, D)
        for layer in self.attn:                        # every memory token sees the whole history
            x = layer(x)
        return self.out(x) + self.linear(cells).flatten(2).transpose(1, 2)   # (B, M, D)


class Compressor(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        C, p, D = cfg.latent_channels, cfg.patch, cfg.dim
        rh, rw, rt = cfg.rate_hwt
        variant = cfg.compressor
        self.lr_patchify = nn.Conv3d(C, D, (1, p, p), stride=(1, p, p)) if variant in ("pfp", "only_lr") else None
        self.hr = HRBranch(cfg) if variant in ("pfp", "without_lr") else None
        block = (rt, rh * p, rw * p)
        self.large_patchify = nn.Conv3d(C, D, block, stride=block) if variant == "large_patchifier" else None

    @torch.no_grad()
    def init_from_patchifier(self, weight: torch.Tensor, bias: torch.Tensor):
        """Start from the DiT's patchifier (D, C, 1, p, p). The LR branch copies it. The large
        patchifier spreads each of its weights over an rt x rh x rw block of its kernel and divides
        by the block's size (FramePack), so at step 0 it patchifies the pooled latent: what the
        LR branch computes, exactly so when pooling commutes with the latent (vae_space 1)."""
        if self.lr_patchify is not None:
            self.lr_patchify.weight.copy_(weight)
            self.lr_patchify.bias.copy_(bias)
        if self.large_patchify is not None:
            rh, rw, rt = self.cfg.rate_hwt
            big = weight.repeat_interleave(rt, 2).repeat_interleave(rh, 3).repeat_interleave(rw, 4)
            self.large_patchify.weight.copy_(big / (rt * rh * rw))          # (D, C, rt, rh*p, rw*p)
            self.large_patchify.bias.copy_(bias)

    def forward(self, video: torch.Tensor, latent: Latent = None) -> torch.Tensor:
        """video (B, T, 3, H, W) pixels in [-1, 1] -> memory (B, M, D). latent: the DiT's latent
        space (dit.latent), which LR and the large patchifier read; None: the lossless one."""
        cfg, B = self.cfg, video.shape[0]
        assert latent is not None or cfg.latent == "lossless", "a --latent pca compressor reads phi(video, dit.latent)"
        if latent is None:
            latent = Latent(cfg)                       # lossless: no basis to share
        if cfg.compressor == "none":
            return video.new_zeros(B, 0, cfg.dim)
        rh, rw, rt = cfg.rate_hwt
        video = pad_to_memory_grid(video, cfg)                             # (B, T+, 3, H+, W+)
        memory = 0
        if self.lr_patchify is not None:
            small = F.avg_pool3d(video.transpose(1, 2), (rt, rh, rw)).transpose(1, 2)   # (B, T/rt, 3, H/rh, W/rw)
            z = latent.encode(small)                                        # (B, T'/rt, C, h/rh, w/rw)
            memory = self.lr_patchify(z.transpose(1, 2)).flatten(2).transpose(1, 2)   # (B, M, D)
        if self.hr is not None:
            cells = encode(video, cfg.vae_space, cfg.vae_time).transpose(1, 2)   # (B, P, T', h, w) lossless
            memory = memory + self.hr(cells)                               # (B, M, D)
        if self.large_patchify is not None:
            z = latent.encode(video).transpose(1, 2)                        # (B, C, T', h, w)
            memory = self.large_patchify(z).flatten(2).transpose(1, 2)     # (B, M, D)
        return memory


def token_table(cfg: Config) -> str:
    """The context cost of one history at every rate, as the paper counts it."""
    frames, rows, cols = cfg.token_grid
    raw = frames * rows * cols
    lines = [f"history: {cfg.history} frames of {cfg.height}x{cfg.width} -> latent "
             f"{cfg.latent_frames} frames of {cfg.height // cfg.vae_space}x{cfg.width // cfg.vae_space} "
             f"-> {frames} x {rows} x {cols} = {raw:,} DiT tokens (patch 1x{cfg.patch}x{cfg.patch})",
             f"{'rate':>6} {'kept':>6} {'exact':>10} {'padded grid':>16} {'memory tokens':>14}"]
    for rate in ["1x1x1", "2x2x1", "2x2x2", "4x4x2"]:
        rh, rw, rt = (int(r) for r in rate.split("x"))
        f, r, c = memory_grid(Config(**{**cfg.__dict__, "rate": rate}))
        lines.append(f"{rate:>6} {f'1/{rh * rw * rt}':>6} {raw / (rh * rw * rt):>10,.0f} "
                     f"{f'{f}x{r}x{c}':>16} {f * r * c:>14,}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser)
    try:
        cfg = config_from_args(parser.parse_args())
    except ConfigError as e:
        fail(str(e))
    print(token_table(cfg))
    with torch.device("meta"):                     # count parameters without allocating them
        n_params = sum(p.numel() for p in Compressor(cfg).parameters())
    print(f"\n{cfg.compressor} at {cfg.rate}: {n_params / 1e6:.2f}M parameters (activation memory: footprint.py)")
    if cfg.height * cfg.width <= 128 * 128 and cfg.history <= 64:
        video = torch.rand(2, cfg.history, 3, cfg.height, cfg.width) * 2 - 1
        print(f"\nvideo {tuple(video.shape)} at rate {cfg.rate}:")
        for variant in ["pfp", "only_lr", "without_lr", "large_patchifier", "none"]:
            phi = Compressor(Config(**{**cfg.__dict__, "compressor": variant}))
            n_params = sum(p.numel() for p in phi.parameters())
            print(f"  {variant:>16}: memory {tuple(phi(video, Latent(cfg)).shape)}, {n_params / 1e3:.0f}k parameters")
