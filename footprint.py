"""How much memory a run needs, worked out before anything is allocated: the activations autograd
keeps for backward, traced on the meta device (so it runs at the paper's scale in seconds), and
the videos a run holds. Training and sampling refuse a setting that cannot fit with one line
naming the estimate and the machine's memory; bench.py skips presets with it.

    python footprint.py --scale paper     # one sample's activation memory at the paper's shapes

Letters: B batch, M memory tokens, D width.
"""
import argparse
import math
import os

import torch
import torch.nn.functional as F

from config import Config, ConfigError, add_config_flags, config_from_args, run_main
from compressor import Compressor, memory_positions
from dit import DiT

FLOAT_BYTES = 4


def human_bytes(n: float) -> str:
    return f"{n / 2 ** 30:,.2f} GiB" if n >= 2 ** 30 else f"{n / 2 ** 20:,.1f} MiB"


def machine_memory(device: str) -> int:
    """Bytes of memory the device has: the GPU's, or the machine's RAM."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_properties(torch.device(device)).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def activation_bytes(cfg: Config, batch: int = 1) -> dict:
    """Bytes autograd keeps for backward in one stage-1 forward at cfg's shapes, traced on the meta
    device: nothing is allocated, so it runs at the paper's scale. Weights are not counted.
    Attention is counted as a fused kernel keeps it (q, k, v, out, log-sum-exp and the bias
    once): the meta device would run the math path, whose N x N probabilities no GPU keeps."""
    saved, bias_bytes = {}, {}

    def pack(t):
        base = t._base if t._base is not None else t
        if not isinstance(base, torch.nn.Parameter):
            saved[id(base)] = base.numel() * base.element_size()
        return t

    def fused_attention(q, k, v, attn_mask=None, *_, **__):
        """Count what a fused kernel saves; return a stand-in output wired to q, k and v."""
        B, heads, N, hd = q.shape
        for t in (q, k, v):
            pack(t)
        saved[("out", id(q))] = q.numel() * q.element_size()
        saved[("lse", id(q))] = B * heads * N * 4
        if attn_mask is not None:
            bias_bytes[id(attn_mask)] = attn_mask.numel() * attn_mask.element_size()
        return q + 0 * (k.sum(-2, keepdim=True) + v.sum(-2, keepdim=True))

    original = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = fused_attention
    try:
        with torch.device("meta"), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            dit, phi = DiT(cfg), Compressor(cfg)
            history = torch.randn(batch, cfg.history, 3, cfg.height, cfg.width)   # phi pads it
            memory = phi(history, dit.latent)                                      # (B, M, D)
            phi_bytes = sum(saved.values())
            h, w = cfg.height // cfg.vae_space, cfg.width // cfg.vae_space
            x = torch.randn(batch, cfg.targets, cfg.latent_channels, h, w)
            dit(x, torch.rand(batch, cfg.targets), torch.arange(cfg.targets).expand(batch, -1), memory,
                memory_positions(cfg))
    finally:
        F.scaled_dot_product_attention = original
    return {"compressor": phi_bytes, "dit": sum(saved.values()) - phi_bytes, "attention_bias": sum(bias_bytes.values()),
            "memory_tokens": memory.shape[1]}


def video_bytes(videos: int, frames: int, cfg: Config) -> int:
    """Bytes of `videos` fp32 clips of `frames` frames at cfg's size."""
    return videos * frames * 3 * cfg.height * cfg.width * FLOAT_BYTES


def generous_bytes(cfg: Config) -> int:
    """A quick upper bound on activation_bytes per sample, with no trace (which costs seconds on its
    first call): the trace keeps about 34 floats per token, block and width in the DiT, up to 21
    per history pixel value in the compressor, and one ALiBi bias; we allow 48 and 32, and count
    every history token as a memory token (stage 2's full history) plus the frames predicted."""
    rows, cols = cfg.token_grid[1:]
    n = math.prod(cfg.token_grid) + max(cfg.targets, cfg.chunk + cfg.window) * rows * cols
    dit = 48 * cfg.depth * n * cfg.dim * FLOAT_BYTES + cfg.heads * n * n * FLOAT_BYTES
    return dit + 32 * video_bytes(1, cfg.history, cfg)


def check_fits(cfg: Config, what: str, need: float, share: float = 0.8):
    """Raise ConfigError when `need` bytes exceed `share` of the device's memory."""
    have = machine_memory(cfg.device)
    if need > share * have:
        raise ConfigError(f"{what} needs about {human_bytes(need)}, more than {share:.0%} of this machine's "
                          f"{human_bytes(have)} ({cfg.device}): lower it")


def check_training_fits(cfg: Config, frames: int, batch_per_process: int):
    """Before a training run allocates anything: its videos (synthetic ones are generated in memory)
    and one micro-batch's activations (the stage-1 trace; stage 2's is of the same order)."""
    if cfg.data in ("synthetic", "storyboard"):
        check_fits(cfg, f"--train_videos {cfg.train_videos} of {frames} frames at {cfg.height}x{cfg.width}",
                   video_bytes(cfg.train_videos + cfg.val_videos, frames, cfg))
    check_fits(cfg, f"--height/--width {cfg.height}x{cfg.width} at --history {cfg.history}",
               video_bytes(1, frames, cfg) * 8)                 # one clip and its working copies, before the trace
    per_sample = generous_bytes(cfg)
    if per_sample * batch_per_process > 0.2 * machine_memory(cfg.device):   # near the limit: trace it exactly
        act = activation_bytes(cfg)
        per_sample = act["dit"] + act["compressor"] + act["attention_bias"]
    check_fits(cfg, f"a micro-batch of {batch_per_process} (--batch {cfg.batch} / processes / --accum {cfg.accum}) "
               f"at {cfg.height}x{cfg.width}, --history {cfg.history}", per_sample * batch_per_process)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser)
    cfg = config_from_args(parser.parse_args())
    check_fits(cfg, f"one {cfg.height}x{cfg.width} history of {cfg.history} frames", video_bytes(1, cfg.history, cfg))
    with torch.device("meta"):                     # count parameters without allocating them
        n_dit = sum(p.numel() for p in DiT(cfg).parameters())
        n_phi = sum(p.numel() for p in Compressor(cfg).parameters())
    act = activation_bytes(cfg)
    rows, cols = cfg.token_grid[1:]
    n = act["memory_tokens"] + cfg.targets * rows * cols
    print(f"DiT {n_dit / 1e6:,.2f}M parameters, compressor {cfg.compressor} {cfg.rate} {n_phi / 1e6:,.2f}M parameters")
    print(f"stage-1 sequence: {act['memory_tokens']:,} memory tokens + {cfg.targets} target frames = {n:,} tokens")
    print("activation memory for one sample (fp32, saved for backward, traced on the meta device):")
    print(f"  compressor {human_bytes(act['compressor'])}, DiT {human_bytes(act['dit'])}, "
          f"our ALiBi bias and the memory read's mask {human_bytes(act['attention_bias'])} (--pos_bias 0 drops the bias; bf16 halves the rest)")
    print(f"this machine ({cfg.device}): {human_bytes(machine_memory(cfg.device))}")


if __name__ == "__main__":
    run_main(main)
