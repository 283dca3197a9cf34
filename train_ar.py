"""Stage 2: autoregressive fine-tuning with the pretrained memory (docs/paper.md, "Equations", L_ar).

A clip of the history plus one chunk is cut at a random split point s (in latent frames; one s
per micro-batch, so every sample in it has as many memory tokens; --split_full p cuts after the whole
history in a share p of the steps [ours]: a long rollout mostly generates after a full history).
The history before s is compressed by phi; its last --window latent frames are also kept
uncompressed (the paper's tiny sliding window, `sample.ar_context`); the DiT predicts the next
--chunk latent frames:

    L_ar = E || (eps - X_0) - G(X_t, t, [phi(H), window]) ||^2,   X_0 = the chunk after H

with the loss on the chunk only. --init takes a train_pfp.py checkpoint (its EMA weights) or
`none`: the same model from scratch for the same steps, the paper's "without pretrain" row.
The memory baselines are stage-1 flags, not new ones:

    python train_ar.py --init runs/pfp_2x2x2/ckpt.pt                                     # pfp
    python train_ar.py --init none                                                       # pfp without pretraining
    python train_ar.py --init runs/large_patchifier_2x2x2/ckpt.pt                        # large patchifier
    python train_ar.py --init runs/pfp_2x2x2/ckpt.pt --compressor none                   # window only
    python train_ar.py --init runs/pfp_2x2x2/ckpt.pt --compressor only_lr --rate 1x1x1   # full history (the ceiling)
    torchrun --nproc_per_node 2 train_ar.py --init runs/pfp_2x2x2/ckpt.pt                # DDP, as train_pfp.py

A checkpoint's config is the starting point and any flag overrides it. When the compressor
or rate differ from the checkpoint's, the DiT is loaded and a fresh compressor starts from the
DiT's patchifier. --cross_attn true adds the paper's cross-attention enhancement (zero-init).

Writes runs/<name>/: config.json, metrics.jsonl, ckpt.pt (stage 2), next_chunk.png, summary.json.
"""
import argparse
import copy
import math
import os
import time
from dataclasses import asdict

import torch
import torch.nn as nn

from config import Config, ConfigError, add_config_flags, config_from_args, run_main
from compressor import Compressor
from dit import DiT, drop_captions
from flow import add_noise, velocity_target, sample_t
from metrics import psnr, ssim
from captions import cut_back_frames, latent_captions
from checkpoint import RunFolder, load_dit, read_checkpoint
from footprint import check_training_fits
from plot import save_rows_png
from sample import ar_context, chunk_and_context_captions, chunk_positions, next_chunk
from training import (Logbook, autocast, distribute, fit_latent, interruptible, latent_ceiling,
                      latent_line, make_optimizer, micro_batch, micro_batch_size, process_videos,
                      random_batch, start_run, update_ema, update_is_safe)


def split_points(cfg: Config) -> list:
    """Every split point s (latent frames) a history can end at: a multiple of the rate's t, so phi
    pools whole groups of frames, from one group up to the stage-1 history."""
    rt = cfg.rate_hwt[2]
    return list(range(rt, cfg.latent_frames + 1, rt))


def ar_loss(dit, phi, video, s: int, captions, cfg: Config):
    """L_ar for long videos (B, (T' + c)*vt, 3, H, W) cut at s -> (loss, per-sample loss, t).
    captions: the clips' latent-frame captions (B, T' + c, L), or None (a world without captions):
    the chunk reads its own c, and with --memory_captions the context tokens their frames'."""
    B, c, vt = video.shape[0], cfg.chunk, cfg.vae_time
    context, context_pos = ar_context(dit, phi, video, s, cfg)               # (B, N_ctx, D), (B, N_ctx, 3)
    caption, memory_caption = chunk_and_context_captions(captions, context_pos, s, cfg)   # (B, c, L), (B, N_ctx, L)
    x0 = dit.latent.encode(video[:, s * vt:(s + c) * vt])                    # (B, c, C, h, w) the next chunk
    t = sample_t(B, cfg.t_mean, cfg.t_std, cfg.t_shift).to(video.device)    # (B,)
    eps = torch.randn_like(x0)
    v = dit(add_noise(x0, eps, t), t[:, None].expand(B, c), chunk_positions(B, cfg, video.device), context, context_pos,
            caption=caption, memory_caption=memory_caption)
    per_sample = (v - velocity_target(x0, eps)).pow(2).mean(dim=(1, 2, 3, 4))   # (B,) the chunk only
    return per_sample.mean(), per_sample.detach(), t


class ARLoss(nn.Module):
    """L_ar with the DiT and phi inside: one module, the unit DDP wraps (as train_pfp.PFPLoss)."""

    def __init__(self, dit, phi, cfg: Config):
        super().__init__()
        self.dit, self.phi, self.cfg = dit, phi, cfg

    def forward(self, video, s: int, captions):
        return ar_loss(self.dit, self.phi, video, s, captions, self.cfg)


def evaluate_next_chunk(dit, phi, val, cfg: Config, batch: int = 32, captions=None) -> dict:
    """PSNR/SSIM of the chunk after the whole history (s = T'), one sample per validation video."""
    s, vt, gen = cfg.latent_frames, cfg.vae_time, torch.Generator().manual_seed(1234)
    captions = None if captions is None else latent_captions(captions, vt)   # (V, T' + c, L)
    got = torch.cat([next_chunk(dit, phi, val[i:i + batch], s, cfg, gen, captions=captions if captions is None else captions[i:i + batch])[0]
                     for i in range(0, len(val), batch)])
    truth = val[:, s * vt:(s + cfg.chunk) * vt]                              # (V, c*vt, 3, H, W)
    return {"chunk_psnr": psnr(got, truth).mean().item(), "chunk_ssim": ssim(got, truth).mean().item()}


def init_models(cfg: Config, init: str) -> tuple:
    """-> (dit, phi, a line saying where the weights came from). Raises ConfigError for a checkpoint
    that does not fit: another width, depth, patch or latent."""
    dit, phi = DiT(cfg), Compressor(cfg)
    if init == "none":
        phi.init_from_patchifier(dit.patchify.weight, dit.patchify.bias)
        return dit, phi, "from scratch (--init none)"
    ckpt = load_dit(dit, init)                       # cross-attention and captions may be new: they start as no-ops
    old = Config(**ckpt["config"])
    same_phi = all(getattr(old, k) == getattr(cfg, k) for k in ("compressor", "rate", "hr_channels", "hr_blocks"))
    if same_phi:
        phi.load_state_dict(ckpt["compressor_ema"])
        return dit, phi, f"stage {ckpt.get('stage', 1)} {init} (step {ckpt['step']}): DiT and {cfg.compressor} compressor"
    phi.init_from_patchifier(dit.patchify.weight, dit.patchify.bias)
    return dit, phi, (f"stage {ckpt.get('stage', 1)} {init} (step {ckpt['step']}): DiT only; a fresh {cfg.compressor} {cfg.rate} "
                      f"compressor from its patchifier (the checkpoint's is {old.compressor} {old.rate})")


def stage2_config(args) -> Config:
    """The checkpoint's config (or the preset's, for --init none), then every flag given."""
    base = None if args.init == "none" else {**read_checkpoint(args.init)["config"], "out": ""}   # never stage 1's folder
    cfg = config_from_args(args, base=base)
    if cfg.chunk % cfg.rate_hwt[2]:
        raise ConfigError(f"--chunk {cfg.chunk} must be a multiple of the rate's t ({cfg.rate}) so every history phi sees pools exactly")
    return cfg


def train_ar(cfg: Config, out: str, init: str, data=None, quiet: bool = False, position: int = 0,
             resuming: bool = False, overwrite: bool = False) -> dict:
    """Fine-tune (or, init='none', train from scratch) on L_ar; write run files to out -> summary.
    Under torchrun every process trains; rank 0 alone logs, evaluates and writes files (as stage 1).
    The run folder is held as in train_pfp.train: nothing is written before the models are built."""
    cfg, rank, world, say = start_run(cfg, quiet)
    micro, main_process, name = micro_batch_size(cfg, world), rank == 0, os.path.basename(os.path.normpath(out))
    check_training_fits(cfg, cfg.history + cfg.chunk * cfg.vae_time, micro)
    with RunFolder(out, resuming, overwrite, active=main_process) as folder:

        # --- data: clips of the history plus one chunk ------------------------------------------
        train_videos, pools, val, source, captions = process_videos(cfg, rank, world, data,
                                                                    frames=cfg.history + cfg.chunk * cfg.vae_time)
        if cfg.captions and captions is None:
            raise ConfigError(f"--captions true needs a world with captions: --data storyboard (not {cfg.data})")
        captions = captions if cfg.captions else None
        returns = cut_back_frames(captions["train"]) // cfg.vae_time if captions else None   # (N,) latent frames
        say(f"data: {source}; train {tuple(train_videos.shape)}, val {tuple(val.shape)}")

        # --- models -----------------------------------------------------------------------------
        dit, phi, origin = init_models(cfg, init)
        if init == "none" and cfg.latent == "pca" and not resuming:   # else the basis came with the weights
            say(fit_latent(dit.latent, train_videos, cfg, rank, world))
        dit, phi = dit.to(cfg.device), phi.to(cfg.device)
        ema_dit, ema_phi = copy.deepcopy(dit).requires_grad_(False), copy.deepcopy(phi).requires_grad_(False)
        params = list(dit.parameters()) + list(phi.parameters())
        with torch.no_grad():
            n_context = ar_context(dit, phi, val[:1], cfg.latent_frames, cfg)[0].shape[1]
        tokens_per_step = cfg.batch * (n_context + cfg.chunk * math.prod(cfg.token_grid[1:]))   # at the longest history
        say(f"init: {origin}")
        say(f"{cfg.compressor} {cfg.rate} + window {cfg.window}: {n_context} context tokens for a {cfg.latent_frames}-frame "
            f"history of {math.prod(cfg.token_grid)} tokens; chunk {cfg.chunk} latent frames")
        loss_fn = distribute(ARLoss(dit, phi, cfg), cfg, world)
        optimizer, schedule = make_optimizer(dit, phi, cfg)
        ema_pairs = list(zip(list(ema_dit.parameters()) + list(ema_phi.parameters()), params))
        splits = split_points(cfg)

        def draw(i):
            """Micro-batch i: (b, T + c, 3, H, W) clips, one split point s for all of them, and their
            latent-frame captions (b, T' + c, L) (caption dropout applied) or None."""
            s = splits[torch.randint(len(splits), ()).item()]
            if torch.rand(()) < cfg.split_full:                          # ... or after the whole history
                s = cfg.latent_frames
            pool = pools[i]
            if returns is not None and torch.rand(()) < cfg.split_return:   # ... or where the chunk cuts back:
                r = returns[pool][torch.randint(len(pool), ()).item()].item()   # one clip's return, then
                s = max([p for p in splits if p <= r] or [s])                 # the split whose chunk holds it
                back = pool[(returns[pool] >= s) & (returns[pool] < s + cfg.chunk)]
                pool = back if len(back) else pool                            # every clip returns there
            rows = pool[torch.randint(len(pool), (micro,), device=pool.device)]
            clip_captions = None if captions is None else drop_captions(latent_captions(captions["train"][rows], cfg.vae_time),
                                                                        cfg.caption_dropout)
            return random_batch(train_videos, pools[i], micro, cfg, rows), s, clip_captions

        models = {"dit": dit, "compressor": phi, "dit_ema": ema_dit, "compressor_ema": ema_phi}
        book = Logbook(out, cfg, 2, models, optimizer, schedule, main_process, say, tokens_per_step,
                       validate=lambda: evaluate_next_chunk(ema_dit, ema_phi, val, cfg, captions=captions and captions["val"]),
                       describe=lambda r: f"next-chunk PSNR {r['chunk_psnr']:.2f} dB, SSIM {r['chunk_ssim']:.3f}", init=init)

        # --- training (as train_pfp.train) --------------------------------------------------------
        first = book.resume() if resuming else 0
        ceiling = latent_ceiling(dit.latent, val)     # of the basis the run trains with: fitted, from --init or resumed
        say(latent_line(cfg, ceiling))
        folder.start(asdict(cfg))                     # only now, all checked, is anything written to out
        with interruptible() as stop:
            for step in book.start(first, f"stage 2 {name}", position, quiet):
                # forward and backward on L_ar, micro-batch by micro-batch (--accum)
                losses, per_sample, ts = [], [], []
                for i in range(cfg.accum):
                    with micro_batch(loss_fn, step, rank, i, cfg):   # own seed; DDP syncs last
                        video, s, clip_captions = draw(i)   # (b, T + c, 3, H, W), split, captions
                        with autocast(cfg):
                            loss, sample_losses, t = loss_fn(video, s, clip_captions)
                        (loss / cfg.accum).backward()
                    losses.append(loss.detach())
                    per_sample.append(sample_losses.float())
                    ts.append(t)
                loss = torch.stack(losses).mean()
                # clip, then AdamW, the schedule and the EMA, unless the NaN guard skips the step
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                kept = update_is_safe(loss, grad_norm, params, optimizer)
                if kept:
                    optimizer.step()
                    schedule.step()
                    update_ema(ema_pairs, step, cfg)
                optimizer.zero_grad(set_to_none=True)
                per_sample, ts = torch.cat(per_sample), torch.cat(ts)
                book.after_step(step, loss, grad_norm, kept, per_sample, ts, stop)
        train_seconds = book.finish(world)
        if not main_process:
            return {}

        # --- final evaluation and a picture: the last frames, the true chunk, the predicted chunk ---
        book.save(cfg.steps)
        final = evaluate_next_chunk(ema_dit, ema_phi, val, cfg, captions=captions and captions["val"])
        s, vt, c = cfg.latent_frames, cfg.vae_time, cfg.chunk
        got = next_chunk(ema_dit, ema_phi, val[:4], s, cfg, torch.Generator().manual_seed(0),
                         captions=captions and latent_captions(captions["val"][:4], vt))[0]   # (4, c*vt, 3, H, W)
        rows = [row for v, g in zip(val[:4], got) for row in (v[(s - 2) * vt:(s + c) * vt], torch.cat([v[(s - 2) * vt:s * vt], g]))]
        save_rows_png(rows, os.path.join(out, "next_chunk.png"))
        summary = {"name": name, "stage": 2, "init": init, "init_origin": origin, "compressor": cfg.compressor,
                   "rate": cfg.rate, "window": cfg.window, "chunk": cfg.chunk, "data": cfg.data, "data_split": source,
                   "steps": cfg.steps, "context_tokens": n_context, **final, "latent_ceiling_psnr": ceiling, "train_seconds": train_seconds,
                   "wall_seconds": time.time() - book.started, "config": asdict(cfg)}
        book.close(final, summary)
        say(f"done in {summary['wall_seconds'] / 60:.1f} min: next-chunk PSNR {final['chunk_psnr']:.2f} dB, "
            f"SSIM {final['chunk_ssim']:.3f}, {n_context} context tokens"
            + ("" if ceiling is None else f"; the pca latent's ceiling {ceiling:.2f} dB"))
        say(f"wrote {out}/summary.json, {out}/next_chunk.png, {out}/ckpt.pt")
        return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", required=True,
                        help="a train_pfp.py ckpt.pt to fine-tune, or 'none' to train the same model from scratch")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out (or runs/<name>) from its ckpt.pt, exactly where it stopped")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in --out (without it, a folder holding a run is refused)")
    add_config_flags(parser)
    args = parser.parse_args()
    cfg = stage2_config(args)
    tag = "scratch" if args.init == "none" else "init"
    name = f"ar_{cfg.compressor}_{cfg.rate}_w{cfg.window}_{tag}" + {"synthetic": "", "storyboard": "_story"}.get(cfg.data, "_real")
    train_ar(cfg, cfg.out or os.path.join("runs", name), args.init, resuming=args.resume, overwrite=args.overwrite)


if __name__ == "__main__":
    run_main(main)
