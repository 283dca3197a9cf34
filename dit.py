"""The video diffusion transformer G (docs/paper.md, "Equations"; FramePack-style context).

G(x_t, t, phi(H)) predicts the flow velocity of noisy latent frames x_t given memory tokens
phi(H). The memory tokens are concatenated *before* the noisy tokens in one sequence
(FramePack), every token attends to every token, and only the noisy tokens' velocities come
out. Positions are 3D RoPE over (frame, row, column) in DiT-token units: a memory token sits
at the centre of the patch it summarises, so "the memory of my own place and time" is simply
the nearby key in every head [ours, as FramePack pools RoPE for packed tokens].

Each block is adaLN-modulated (DiT) by the noise level of its token's frame; memory tokens are
clean (t = 0). With cfg.captions, the text condition c of G(x_t, t, c, phi(H)) joins the noise
level: each noisy frame's caption (storyboard.py) is embedded by a tiny text encoder and added
to its time embedding. With cfg.memory_captions [ours], memory tokens carry their own frame's
caption the same way, through a zero-initialised layer. With cfg.cross_attn (the paper's
enhancement), every block also cross-attends to the memory.

    python dit.py --scale tiny      # shapes, token counts, parameter count (activation memory: footprint.py)
    python dit.py --scale paper     # the same at the paper's shapes, on the meta device (no memory used)

Letters: B batch, F noisy frames, M memory tokens, N sequence tokens, D width, C latent channels,
L caption tokens.
"""
import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from config import CAPTION_LENGTH, CAPTION_VOCAB, Config, add_config_flags, config_from_args, ConfigError, fail
from latent import Latent


# --- 3D rotary positions ------------------------------------------------------------------
def rope_angles(pos: torch.Tensor, head_dim: int, base: float) -> tuple:
    """pos (..., N, 3) float (frame, row, col) -> cos, sin (..., N, head_dim/2).
    The head_dim/2 rotation pairs are split over the three axes; time takes the remainder."""
    pairs = head_dim // 2
    per_axis = [pairs - 2 * (pairs // 3), pairs // 3, pairs // 3]
    angles = []
    for axis, n in enumerate(per_axis):
        freqs = base ** (-torch.arange(n, dtype=torch.float32, device=pos.device) / max(n, 1))
        angles.append(pos[..., axis:axis + 1].float() * freqs)            # (..., N, n)
    angles = torch.cat(angles, dim=-1)                                      # (..., N, pairs)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, heads, N, hd) pairwise (first half, second half) by the angles (B, 1, N, hd/2)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


def fourier_features(pos: torch.Tensor, n_freqs: int = 8) -> torch.Tensor:
    """pos (..., 3) -> (..., 6 * n_freqs) sines and cosines, wavelengths 2 to 64 tokens per axis."""
    wavelengths = 2.0 * 32.0 ** (torch.arange(n_freqs, device=pos.device) / (n_freqs - 1))
    angles = 2 * math.pi * pos[..., None].float() / wavelengths               # (..., 3, n_freqs)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)


# --- building blocks ------------------------------------------------------------------------
class Attention(nn.Module):
    """Multi-head attention with RMS-normalised queries and keys (stable at lr 1e-3) and RoPE,
    through F.scaled_dot_product_attention, so a GPU gets its fused kernels (flash attention
    needs bias=None, i.e. --pos_bias 0 without --context_cache; with a bias it uses the
    memory-efficient kernel)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.kv, self.out = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        self.q_norm, self.k_norm = nn.RMSNorm(dim // heads), nn.RMSNorm(dim // heads)

    def forward(self, x, rope_x, context=None, rope_context=None, bias=None, past=None):
        """-> (output (B, N, D), the (k, v) computed here); `past` (k, v) are cached keys and values
        that go before this call's own (DiT.memory_keys_values)."""
        context, rope_context = (x, rope_x) if context is None else (context, rope_context)
        B, N, D = x.shape
        split = lambda y: y.reshape(B, y.shape[1], self.heads, D // self.heads).transpose(1, 2)
        q = self.q_norm(split(self.q(x)))                                   # (B, heads, N, hd)
        k, v = self.kv(context).chunk(2, dim=-1)
        k, v = self.k_norm(split(k)), split(v)                              # (B, heads, Nc, hd)
        q, k = apply_rope(q, *rope_x), apply_rope(k, *rope_context)
        keys, values = (k, v) if past is None else (torch.cat([past[0], k], 2), torch.cat([past[1], v], 2))
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=bias)   # (B, heads, N, hd)
        return self.out(y.transpose(1, 2).reshape(B, N, D)), (k, v)        # (B, N, D)


class Block(nn.Module):
    """Pre-norm transformer block, modulated per token by adaLN (shift, scale, gate)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, cross_attn: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(mlp_ratio * dim, dim))
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.cross = Attention(dim, heads) if cross_attn else None
        self.norm_cross = nn.LayerNorm(dim, eps=1e-6) if cross_attn else None

    def forward(self, x, cond, rope_x, memory, rope_memory, bias, past=None):
        """cond: (B, N, D) the time embedding of each token's frame -> (x, this block's (k, v))."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN(cond).chunk(6, dim=-1)
        y, kv = self.attn(self.norm1(x) * (1 + scale1) + shift1, rope_x, bias=bias, past=past)
        x = x + gate1 * y
        if self.cross is not None and memory.shape[1] > 0:
            x = x + self.cross(self.norm_cross(x), rope_x, memory, rope_memory)[0]
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2), kv


class MemoryRead(nn.Module):
    """[ours] The noisy tokens' own read of the memory, before the blocks: each token attends to the
    context tokens of its spatial cell (the rh x rw tokens one memory token covers) at every time,
    with RoPE, and what it reads is unpacked by its place in the cell: one D x D map per place,
    zero at start, so a DiT starts out as without it.

    Why: in one sequence a noisy token must find, among all tokens, the memory token that covers
    it, then learn which part of that token is its own. A tiny DiT learns both slowly: at 4x4x2
    it stayed below the pooled video the LR branch hands it (results/learning_speed.md). Here the
    place gives the finding and one linear map the unpacking. Time is left to attention, so a
    chunk after the history (stage 2) reads its cell's memory from whenever it was."""

    def __init__(self, cfg: Config):
        super().__init__()
        D, rh, rw = cfg.dim, *cfg.rate_hwt[:2]
        self.cfg, self.heads = cfg, cfg.heads
        self.q, self.kv = nn.Linear(D, D), nn.Linear(D, 2 * D)
        self.q_norm, self.k_norm = nn.RMSNorm(D // cfg.heads), nn.RMSNorm(D // cfg.heads)
        self.unpack = nn.Parameter(torch.zeros(rh * rw, D, D))
        for layer in (self.q, self.kv):
            nn.init.xavier_uniform_(layer.weight)           # as every linear layer of the DiT
            nn.init.zeros_(layer.bias)

    def forward(self, tokens, token_pos, context, context_pos):
        """tokens (B, F*R*C, D) of F whole frames at token_pos (B, F*R*C, 3); context (B, Nc, D) at
        context_pos (B, Nc, 3) -> tokens plus what each read in its cell (B, F*R*C, D)."""
        B, N, D = tokens.shape
        (_, R, C), (rh, rw, _), hd = self.cfg.token_grid, self.cfg.rate_hwt, D // self.heads
        rope = lambda pos: [a[:, None] for a in rope_angles(pos, hd, self.cfg.rope_base)]
        split = lambda y: y.reshape(B, y.shape[1], self.heads, hd).transpose(1, 2)
        q = apply_rope(self.q_norm(split(self.q(tokens))), *rope(token_pos))    # (B, h, N, hd)
        k, v = self.kv(context).chunk(2, dim=-1)
        k = apply_rope(self.k_norm(split(k)), *rope(context_pos))               # (B, h, Nc, hd)
        cell = lambda pos: (pos[..., 1] // rh) * C + pos[..., 2] // rw         # (B, n) cell index
        mine = cell(token_pos.floor())[:, :, None] == cell(context_pos.floor())[:, None]  # B,N,Nc
        y = F.scaled_dot_product_attention(q, k, split(v), attn_mask=mine[:, None])  # (B, h, N, hd)
        # Unpack by place in the cell: the tokens grouped by (row mod rh, col mod rw), one matmul
        # each. A grid rh x rw does not tile is padded (the paper's 30 rows at 4x4: 32), then cut.
        Rp, Cp = -(-R // rh) * rh, -(-C // rw) * rw
        y = y.transpose(1, 2).reshape(B, -1, R, C, D)                          # (B, F, R, C, D)
        y = F.pad(y, (0, 0, 0, Cp - C, 0, Rp - R))                             # (B, F, Rp, Cp, D)
        y = y.reshape(B, -1, Rp // rh, rh, Cp // rw, rw, D)                  # B, F, r, rh, c, rw, D
        y = y.permute(3, 5, 0, 1, 2, 4, 6).reshape(rh * rw, -1, D)             # (rh*rw, B*F*r*c, D)
        y = torch.bmm(y, self.unpack)                                          # (rh*rw, B*F*r*c, D)
        y = y.reshape(rh, rw, B, -1, Rp // rh, Cp // rw, D).permute(2, 3, 4, 0, 5, 1, 6)
        y = y.reshape(B, -1, Rp, Cp, D)[:, :, :R, :C]                          # (B, F, R, C, D)
        return tokens + y.reshape(B, N, D)


class CaptionEncoder(nn.Module):
    """The text condition c: per-frame captions (B, F, L) token ids, 0 = padding -> (B, F, D).

    [ours as to form] The paper's DiT reads text through its pretrained text encoder; ours is a
    tiny one learned from scratch (no downloads): word embeddings, pooled over the caption's
    words, then an MLP, one embedding per frame, added to that frame's time embedding in adaLN.
    Why there: a caption, like the noise level, belongs to a frame, and adaLN already modulates
    every token by its own frame's embedding, so a cut inside a chunk is just two captions in it,
    and no text tokens lengthen the sequence. (Large video DiTs read text tokens in attention;
    HunyuanVideo also adds a pooled text vector to its time embedding, the part we keep.)
    Mean pooling alone would be a bag of words ("red stripes, blue disc" = "blue stripes, red
    disc"), so each word first gets its slot in the caption and a SiLU: the pool keeps which
    colour goes with which thing. An all-padding caption (none given, or dropped in training)
    maps to a learned null embedding."""

    def __init__(self, dim: int, vocab: int = CAPTION_VOCAB, length: int = CAPTION_LENGTH):
        super().__init__()
        self.words = nn.Embedding(vocab, dim)
        self.slots = nn.Parameter(torch.zeros(length, dim))
        self.null = nn.Parameter(torch.zeros(dim))
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.initialize_weights()

    @torch.no_grad()
    def initialize_weights(self):
        for table in (self.words.weight, self.slots, self.null):
            nn.init.normal_(table)                      # unit scale, like the sinusoidal features of t
        nn.init.xavier_uniform_(self.mlp[0].weight)     # DiT's choice for a linear layer
        nn.init.zeros_(self.mlp[0].bias)
        # The last layer starts at zero: at step 0 a caption changes nothing, so a DiT trained
        # without captions loads into one with them (strict=False) and computes exactly what it did.
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, caption: torch.Tensor) -> torch.Tensor:
        real = caption > 0                                                   # (B, F, L) words, not padding
        words = F.silu(self.words(caption) + self.slots[:caption.shape[-1]])  # (B, F, L, D)
        count = real.sum(-1, keepdim=True)                                   # (B, F, 1)
        pooled = (words * real[..., None]).sum(-2) / count.clamp(min=1)      # (B, F, D) mean over words
        pooled = torch.where(count > 0, pooled, self.null)                   # (B, F, D) empty: the null caption
        return self.mlp(pooled)                                              # (B, F, D)


def drop_captions(caption: torch.Tensor, p: float, generator=None) -> torch.Tensor:
    """Caption dropout for training (cfg.caption_dropout): each sample's captions (B, ...) become
    all padding, the null caption, with probability p, so the model also learns to go without."""
    device = generator.device if generator is not None else "cpu"
    drop = torch.rand(caption.shape[0], generator=generator, device=device) < p       # (B,)
    return caption.masked_fill(drop.to(caption.device).view(-1, *[1] * (caption.dim() - 1)), 0)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of t in [0, 1] (scaled by 1000, as in DiT), (...,) -> (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)
    args = 1000 * t[..., None].float() * freqs
    return torch.cat([args.cos(), args.sin()], dim=-1)


# --- the DiT ---------------------------------------------------------------------------------
class DiT(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.latent = Latent(cfg)      # the space G works in; a pca basis is saved with G's weights (latent.py)
        C, p, D = cfg.latent_channels, cfg.patch, cfg.dim
        self.patchify = nn.Conv3d(C, D, kernel_size=(1, p, p), stride=(1, p, p))  # the "first projection"
        # [ours, flag] RoPE only tells attention *relative* places; values carry none. A token
        # that reads one coarse memory token must know which part of it is its own: give every
        # token its absolute (frame, row, col) too, memory tokens at their patch centres.
        self.pos_embed = nn.Linear(6 * 8, D) if cfg.abs_pos else None
        self.t_mlp = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
        self.blocks = nn.ModuleList(Block(D, cfg.heads, cfg.mlp_ratio, cfg.cross_attn) for _ in range(cfg.depth))
        self.final_norm = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.final_adaLN = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))
        self.unpatchify = nn.Linear(D, C * p * p)
        self.initialize_weights()
        self.memory_read = MemoryRead(cfg) if cfg.memory_read else None   # drawn after the rest
        # Drawn after every other weight, so those are the same, seed for seed, with and without captions.
        self.caption_encoder = CaptionEncoder(D) if cfg.captions else None
        # [ours] Memory tokens' captions: the caption embedding through a layer that starts at zero, so
        # a DiT trained without it loads (strict=False) and computes exactly what it did.
        self.memory_caption = nn.Linear(D, D) if cfg.memory_captions else None
        if self.memory_caption is not None:
            nn.init.zeros_(self.memory_caption.weight)
            nn.init.zeros_(self.memory_caption.bias)

    @torch.no_grad()
    def initialize_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)       # DiT's choice for every linear layer
                nn.init.zeros_(m.bias)
        # Patchifier like a linear layer over its flattened patch (DiT).
        nn.init.xavier_uniform_(self.patchify.weight.view(self.patchify.weight.shape[0], -1))
        nn.init.zeros_(self.patchify.bias)
        for block in self.blocks:
            # adaLN starts constant in t: shift = scale = 0 ... but the residual gates start at 1,
            # not 0 as in DiT. With zero gates the memory is invisible to the noisy tokens at
            # step 0 and, in our calibration runs, no compressor ever left the no-memory floor. [ours]
            nn.init.zeros_(block.adaLN[-1].weight)
            nn.init.zeros_(block.adaLN[-1].bias)
            gates = block.adaLN[-1].bias.view(6, -1)
            gates[2].fill_(1.0)
            gates[5].fill_(1.0)
            if block.cross is not None:                 # the enhancement starts as a no-op
                nn.init.zeros_(block.cross.out.weight)
        nn.init.zeros_(self.final_adaLN[-1].weight)
        nn.init.zeros_(self.final_adaLN[-1].bias)
        nn.init.zeros_(self.unpatchify.weight)          # predict v = 0 at step 0 (DiT)

    def token_positions(self, frame_pos: torch.Tensor) -> torch.Tensor:
        """frame_pos (B, F) latent-frame index of each noisy frame -> (B, F*rows*cols, 3) positions."""
        _, rows, cols = self.cfg.token_grid
        r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
        rc = torch.stack([r, c], dim=-1).reshape(1, 1, rows * cols, 2).to(frame_pos.device).float()
        f = frame_pos.float()[:, :, None, None].expand(-1, -1, rows * cols, 1)   # (B, F, rows*cols, 1)
        pos = torch.cat([f, rc.expand(f.shape[0], f.shape[1], -1, -1)], dim=-1)  # (B, F, rows*cols, 3)
        return pos.reshape(f.shape[0], -1, 3)

    def clean_tokens(self, latent: torch.Tensor, frame_pos: torch.Tensor) -> tuple:
        """Clean latent frames (B, F, C, h, w) at frame_pos (B, F) -> context tokens (B, F*n, D) and
        their positions (B, F*n, 3): stage 2's uncompressed sliding window, patchified exactly as
        the noisy frames are, so it can sit beside phi(H) in the memory."""
        tokens = self.patchify(latent.transpose(1, 2))              # (B, D, F, h/p, w/p)
        return tokens.flatten(2).transpose(1, 2), self.token_positions(frame_pos)

    def embed(self, tokens, pos):
        """tokens (B, N, D) at positions (B, N, 3) -> (tokens plus their absolute positions,
        RoPE angles (B, 1, N, hd/2))."""
        if self.pos_embed is not None:
            tokens = tokens + self.pos_embed(fourier_features(pos))             # (B, N, D)
        cos, sin = rope_angles(pos, self.cfg.dim // self.cfg.heads, self.cfg.rope_base)   # (B, N, hd/2)
        return tokens, (cos[:, None], sin[:, None])

    def time_cond(self, levels, per: int):
        """Noise levels (B, L) -> time embeddings (B, L*per, D), each repeated for `per` tokens."""
        return self.t_mlp(timestep_embedding(levels, self.cfg.dim)).repeat_interleave(per, dim=1)

    def position_bias(self, q_pos, k_pos):
        """3D ALiBi [ours]: head h adds -pos_bias / 2^h * distance to its logits, so every head
        starts out reading the keys near its own place and time. (B, Nq, 3), (B, Nk, 3) ->
        (B, heads, Nq, Nk), or None with --pos_bias 0."""
        if self.cfg.pos_bias <= 0:
            return None
        slopes = self.cfg.pos_bias * 2.0 ** -torch.arange(self.cfg.heads, device=q_pos.device)
        return -slopes[None, :, None, None] * torch.cdist(q_pos, k_pos)[:, None]

    def memory_cond(self, memory, memory_caption):
        """adaLN conditions (B, M, D) of memory tokens (B, M, D): clean (t = 0), and with
        cfg.memory_captions the caption of each token's frame, memory_caption (B, M, L) (None: the null caption)."""
        B, M = memory.shape[:2]
        cond = self.time_cond(memory.new_zeros(B, 1), M)                      # (B, M, D)
        if self.memory_caption is None:
            return cond
        if memory_caption is None:
            memory_caption = torch.zeros(B, M, CAPTION_LENGTH, dtype=torch.long, device=memory.device)
        return cond + self.memory_caption(self.caption_encoder(memory_caption))   # (B, M, D)

    def memory_keys_values(self, memory, memory_pos, memory_caption=None) -> list:
        """The clean memory tokens alone through every block -> each block's (k, v), (B, heads, M, hd).

        With --context_cache [ours] memory tokens attend only to each other, so these are exactly
        what the noisy tokens read in every block, at every Euler step: sampling computes them
        once per chunk (pass them as `cache`) and each step runs the noisy tokens alone."""
        B, M = memory.shape[:2]
        pos = memory_pos.to(memory.device).float().expand(B, M, 3)
        x, rope = self.embed(memory, pos)
        cond = self.memory_cond(memory, memory_caption)                       # (B, M, D)
        bias, cache = self.position_bias(pos, pos), []
        for block in self.blocks:
            x, kv = block(x, cond, rope, memory, rope, bias)
            cache.append(kv)
        return cache

    def noisy_tokens(self, x_t, t, frame_pos, caption):
        """Noisy latent frames (B, F, C, h, w) -> their tokens (B, F*n, D), adaLN conditions (B, F*n, D)
        from t (and c) by each token's frame, and positions (B, F*n, 3)."""
        B, Fr = x_t.shape[:2]
        tokens = self.patchify(x_t.transpose(1, 2))                 # (B, D, F, h/p, w/p)
        tokens = tokens.flatten(2).transpose(1, 2)                  # (B, F*n, D) with n = hw/p^2
        n = tokens.shape[1] // Fr
        cond = self.time_cond(t, n)                                 # (B, F*n, D)
        assert caption is None or self.cfg.captions, "captions need a DiT built with --captions"
        if self.cfg.captions:      # c joins t; memory tokens get no caption (they are clean memory)
            if caption is None:
                caption = torch.zeros(B, Fr, CAPTION_LENGTH, dtype=torch.long, device=x_t.device)   # the null caption
            cond = cond + self.caption_encoder(caption).repeat_interleave(n, dim=1)   # (B, F*n, D)
        return tokens, cond, self.token_positions(frame_pos)

    def velocity(self, x, cond, shape):
        """The noisy tokens' last hidden states (B, F*n, D) -> velocity (B, F, C, h, w)."""
        B, Fr, C, h, w = shape
        p = self.cfg.patch
        shift, scale = self.final_adaLN(cond).chunk(2, dim=-1)
        v = self.unpatchify(self.final_norm(x) * (1 + scale) + shift)   # (B, F*n, C*p*p)
        v = v.reshape(B, Fr, h // p, w // p, C, p, p)
        return v.permute(0, 1, 4, 2, 5, 3, 6).reshape(B, Fr, C, h, w)   # (B, F, C, h, w)

    def forward(self, x_t, t, frame_pos, memory, memory_pos, caption=None, memory_caption=None):
        """G(x_t, t, c, phi(H)): one sequence [memory, noisy] (FramePack), full attention.

        x_t:        (B, F, C, h, w) noisy latent frames
        t:          (B, F) noise level of each frame (1 = noise)
        frame_pos:  (B, F) the frames' positions in the history, in latent frames
        memory:     (B, M, D) memory tokens phi(H) (M may be 0)
        memory_pos: (M, 3) or (B, M, 3) (frame, row, col) centres of the memory tokens
        caption:    optional (B, F, L) caption c of each noisy frame (needs --captions; None: the null caption)
        memory_caption: optional (B, M, L) caption of each memory token's frame (read with --memory_captions)
        returns     (B, F, C, h, w) predicted velocity eps - x_0
        """
        B, M = x_t.shape[0], memory.shape[1]
        tokens, cond, noisy_pos = self.noisy_tokens(x_t, t, frame_pos, caption)
        memory_pos = memory_pos.to(x_t.device).float().expand(B, M, 3)
        if self.memory_read is not None and M > 0:
            tokens = self.memory_read(tokens, noisy_pos, memory, memory_pos)   # (B, F*n, D)
        pos = torch.cat([memory_pos, noisy_pos], dim=1)                       # (B, N = M + F*n, 3)
        x, rope = self.embed(torch.cat([memory, tokens], dim=1), pos)          # (B, N, D)
        cond = torch.cat([self.memory_cond(memory, memory_caption), cond], dim=1)   # (B, N, D)
        rope_memory = (rope[0][:, :, :M], rope[1][:, :, :M])
        bias = self.position_bias(pos, pos)                          # (B, heads, N, N) or None
        if self.cfg.context_cache:   # memory never reads the noisy tokens: the same at every Euler step
            bias = torch.zeros(B, 1, *pos.shape[1:2] * 2, device=x.device) if bias is None else bias.clone()
            bias[:, :, :M, M:] = float("-inf")
        for block in self.blocks:
            x = block(x, cond, rope, memory, rope_memory, bias)[0]
        return self.velocity(x[:, M:], cond[:, M:], x_t.shape)      # only the noisy tokens come out

    def forward_cached(self, x_t, t, frame_pos, memory, memory_pos, cache, caption=None):
        """The same as forward for a model trained with --context_cache [ours], but the noisy tokens
        run alone: every block reads the memory's (k, v) from cache = memory_keys_values(memory, memory_pos,
        memory_caption), which holds the memory's captions too."""
        assert self.cfg.context_cache, "a memory cache is exact only for models trained with --context_cache"
        B, M = x_t.shape[0], memory.shape[1]
        tokens, cond, noisy_pos = self.noisy_tokens(x_t, t, frame_pos, caption)
        memory_pos = memory_pos.to(x_t.device).float().expand(B, M, 3)
        if self.memory_read is not None and M > 0:
            tokens = self.memory_read(tokens, noisy_pos, memory, memory_pos)   # (B, F*n, D)
        x, rope = self.embed(tokens, noisy_pos)
        bias = self.position_bias(noisy_pos, torch.cat([memory_pos, noisy_pos], 1))   # (B, heads, F*n, N)
        rope_memory = self.embed(memory, memory_pos)[1] if self.cfg.cross_attn else None
        for block, past in zip(self.blocks, cache):
            x = block(x, cond, rope, memory, rope_memory, bias, past)[0]
        return self.velocity(x, cond, x_t.shape)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser)
    try:
        cfg = config_from_args(parser.parse_args())
    except ConfigError as e:
        fail(str(e))
    with torch.device("meta"):                     # count parameters without allocating them
        n_params = sum(p.numel() for p in DiT(cfg).parameters())
    frames, rows, cols = cfg.token_grid
    print(f"DiT {cfg.depth} blocks x width {cfg.dim}, {cfg.heads} heads: {n_params / 1e6:.2f}M parameters")
    print(f"one latent frame = {rows} x {cols} = {rows * cols} tokens; the history = {frames * rows * cols:,} tokens")
    if cfg.height * cfg.width <= 128 * 128:
        dit = DiT(cfg)
        h, w = cfg.height // cfg.vae_space, cfg.width // cfg.vae_space
        x = torch.randn(2, cfg.targets, cfg.latent_channels, h, w)
        memory, memory_pos = torch.randn(2, 32, cfg.dim), torch.rand(32, 3) * 4
        caption = torch.randint(0, CAPTION_VOCAB, (2, cfg.targets, CAPTION_LENGTH)) if cfg.captions else None
        v = dit(x, torch.rand(2, cfg.targets), torch.randint(0, frames, (2, cfg.targets)), memory, memory_pos, caption=caption)
        print(f"x_t {tuple(x.shape)} + memory {tuple(memory.shape)}"
              + (f" + captions {tuple(caption.shape)}" if cfg.captions else "") + f" -> v {tuple(v.shape)}")
        if cfg.captions:
            print(f"caption encoder: {sum(p.numel() for p in dit.caption_encoder.parameters()):,} parameters "
                  f"({CAPTION_VOCAB} token ids, {CAPTION_LENGTH} per caption)")
