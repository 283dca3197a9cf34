"""Stage 1: pretraining frame preservation (docs/paper.md, "Equations", L_pfp).

For each history H, phi(H) becomes the memory; a random set Omega of frames, uniform over the
whole history, is noised, and the DiT must predict their velocity from the memory alone:

    L_pfp = E || (eps - H_Omega) - G((H_Omega)_t, t, phi(H)) ||^2

`--omega last` always asks for the last frames: the paper's "cheating" ablation, where phi
learns to encode only the end. `--noise_as_mask` adds the other frames as noised tokens.

    python train_pfp.py --scale tiny                          # ~10 min on 2 CPU cores
    python train_pfp.py --scale tiny --compressor none        # the no-memory floor
    python train_pfp.py --scale tiny --data ../shared/videos  # real clips
    torchrun --nproc_per_node 2 train_pfp.py --scale tiny     # DDP: gloo on CPU, nccl with --device cuda
    python train_pfp.py --scale small --device cuda --dtype bf16 --compile true   # one GPU, hours

Writes runs/<name>/: config.json, metrics.jsonl, ckpt.pt, retrieval.png, summary.json.
"""
import argparse
import copy
import math
import os
import time
from dataclasses import asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

from config import Config, add_config_flags, config_from_args, run_main
from compressor import Compressor, memory_positions
from dit import DiT
from flow import add_noise, velocity_target, sample_t
from metrics import psnr, ssim, load_stlpips
from checkpoint import RunFolder, load_dit
from footprint import check_training_fits
from plot import save_rows_png
from sample import posterior_mean, retrieve, true_frames
from training import (Logbook, autocast, distribute, fit_latent, interruptible, latent_ceiling,
                      latent_line, make_optimizer, micro_batch, micro_batch_size, process_videos,
                      random_batch, start_run, update_ema, update_is_safe)


def pick_omega(batch: int, cfg: Config, generator=None) -> torch.Tensor:
    """(B, k) sorted latent-frame indices: uniform over the history, or the last k ("cheat")."""
    T, k = cfg.latent_frames, cfg.targets
    if cfg.omega == "last":
        return torch.arange(T - k, T).expand(batch, k)
    return torch.rand(batch, T, generator=generator).argsort(dim=1)[:, :k].sort(dim=1).values


def pfp_loss(dit, phi, video, cfg: Config):
    """L_pfp for a batch of histories (B, T, 3, H, W) -> (loss, per-sample loss, t)."""
    B = video.shape[0]
    latent = dit.latent.encode(video)                                        # (B, T', C, h, w)
    memory, memory_pos = phi(video, dit.latent), memory_positions(cfg)      # (B, M, D), (M, 3)
    omega = pick_omega(B, cfg).to(video.device)                             # (B, k)
    t = sample_t(B, cfg.t_mean, cfg.t_std, cfg.t_shift).to(video.device)    # (B,)
    rows = torch.arange(B, device=video.device)[:, None]
    if cfg.noise_as_mask:   # every frame is in the sequence; the unselected ones heavily noised
        T = latent.shape[1]
        levels = cfg.mask_noise_min + (1 - cfg.mask_noise_min) * torch.rand(B, T, device=video.device)
        levels[rows, omega] = t[:, None]                                    # (B, T')
        x0, frame_pos = latent, torch.arange(T, device=video.device).expand(B, T)
        on_target = torch.zeros(B, T, device=video.device)
        on_target[rows, omega] = 1.0
    else:                   # the DiT sees only the memory and the noisy targets
        x0, frame_pos = latent[rows, omega], omega                          # (B, k, C, h, w)
        levels, on_target = t[:, None].expand(-1, omega.shape[1]), torch.ones(omega.shape, device=video.device)
    eps = torch.randn_like(x0)
    v = dit(add_noise(x0, eps, levels), levels, frame_pos, memory, memory_pos)
    sq_err = (v - velocity_target(x0, eps)).pow(2).mean(dim=(2, 3, 4))     # (B, frames)
    per_sample = (sq_err * on_target).sum(1) / on_target.sum(1)             # the loss is on Omega only
    return per_sample.mean(), per_sample.detach(), t


class PFPLoss(nn.Module):
    """L_pfp with the DiT and phi inside: one module, the unit DDP wraps, so that backward
    averages the gradients of both models across processes."""

    def __init__(self, dit, phi, cfg: Config):
        super().__init__()
        self.dit, self.phi, self.cfg = dit, phi, cfg

    def forward(self, video):
        return pfp_loss(self.dit, self.phi, video, self.cfg)


@torch.no_grad()
def evaluate_retrieval(dit, phi, videos, cfg: Config, groups_per_video: int, batch: int = 64, lpips=None):
    """Retrieve frames of each video in groups of k (a fixed random Omega each, as in training).
    -> per-frame PSNR, SSIM (and ST-LPIPS when an `lpips` function is given), the PSNR of the
    DiT's posterior mean (psnr_mean, sample.posterior_mean) and latent-frame position."""
    gen, mean_gen = torch.Generator().manual_seed(1234), torch.Generator().manual_seed(4321)
    T, k = cfg.latent_frames, cfg.targets
    jobs = []                                        # (video index, omega)
    for i in range(len(videos)):
        groups = torch.randperm(T, generator=gen)[:T // k * k].reshape(-1, k)   # (T // k, k) disjoint
        jobs += [(i, omega) for omega in groups.sort(dim=1).values[:groups_per_video]]
    scores = {"psnr": [], "ssim": [], "psnr_mean": [], "position": []}
    if lpips:
        scores["lpips"] = []
    for start in range(0, len(jobs), batch):
        chunk = jobs[start:start + batch]
        video = videos[torch.tensor([i for i, _ in chunk])]                  # (b, T, 3, H, W)
        omega = torch.stack([o for _, o in chunk]).to(video.device)          # (b, k)
        got, truth = retrieve(dit, phi, video, omega, cfg, gen), true_frames(video, omega, cfg)
        scores["psnr"].append(psnr(got, truth).flatten())
        scores["ssim"].append(ssim(got, truth).flatten())
        mean = posterior_mean(dit, phi, video, omega, cfg, generator=mean_gen)   # (b, k*vt, 3, H, W)
        scores["psnr_mean"].append(psnr(mean, truth).flatten())
        if lpips:
            scores["lpips"].append(lpips(got, truth).flatten())
        scores["position"].append(omega.repeat_interleave(cfg.vae_time, dim=1).flatten())
    return {key: torch.cat(value).cpu() for key, value in scores.items()}


def no_network_baselines(videos, cfg: Config) -> dict:
    """Retrieval PSNR with no network at all, over every frame of videos (B, T, 3, H, W):
    mean_frame  each history's mean frame, for every frame;
    pooled      the history average-pooled by the rate, what the LR branch reads, blown back up."""
    rh, rw, rt = cfg.rate_hwt
    mean = videos.mean(dim=1, keepdim=True).expand_as(videos)
    small = F.avg_pool3d(videos.transpose(1, 2), (rt, rh, rw))                # (B, 3, T/rt, H/rh, W/rw)
    pooled = small.repeat_interleave(rt, 2).repeat_interleave(rh, 3).repeat_interleave(rw, 4).transpose(1, 2)
    return {"mean_frame": psnr(mean, videos).mean().item(), "pooled": psnr(pooled, videos).mean().item()}


def summarise(scores, cfg: Config) -> dict:
    """Mean PSNR/SSIM overall and per third of the history (first, middle, last)."""
    third = (scores["position"] * 3 // cfg.latent_frames).clamp(max=2)
    out = {"psnr": scores["psnr"].mean().item(), "ssim": scores["ssim"].mean().item(),
           "psnr_mean": scores["psnr_mean"].mean().item(),
           "lpips": scores["lpips"].mean().item() if "lpips" in scores else None}     # ST-LPIPS; None: not installed
    for name, idx in zip(["first", "middle", "last"], range(3)):
        out[f"psnr_{name}"] = scores["psnr"][third == idx].mean().item()
        out[f"ssim_{name}"] = scores["ssim"][third == idx].mean().item()
    return out


def by_position(scores, cfg: Config) -> dict:
    """Mean PSNR and SSIM at each latent-frame position of the history: the Omega ablation's plot."""
    at = [scores["position"] == i for i in range(cfg.latent_frames)]
    return {f"{m}_by_position": [scores[m][i].mean().item() for i in at] for m in ("psnr", "ssim")}


def retrieval_rows(dit, phi, videos, cfg: Config, n_videos: int = 4, n_frames: int = 8) -> list:
    """[truth, retrieved, truth, retrieved, ...]: frames spread across the history of the first
    n_videos, each row (n_frames, 3, H, W), retrieved k = --targets at a time as in training."""
    T = cfg.latent_frames
    frames = torch.linspace(0, T - 1, min(n_frames, T)).round().long()
    rows = []
    for video in videos[:n_videos]:
        got = torch.cat([retrieve(dit, phi, video[None], frames[i:i + cfg.targets][None], cfg,
                                  torch.Generator().manual_seed(0))[0]
                         for i in range(0, len(frames), cfg.targets)])
        rows += [true_frames(video[None], frames[None], cfg)[0], got]
    return rows


def train(cfg: Config, out: str, data=None, quiet: bool = False, position: int = 0, resuming: bool = False,
          overwrite: bool = False, init: str = "none") -> dict:
    """Train phi and the DiT on L_pfp, evaluate retrieval, write run files to out -> summary.
    data: (train, val, source) to reuse videos already loaded (evaluate.py); quiet: bar only;
    resuming: continue from out/ckpt.pt (--resume); overwrite: replace the run in out (--overwrite);
    init: a base video model's checkpoint whose DiT the run starts from (the paper's starting point).
    Under torchrun every process trains; rank 0 alone logs, evaluates and writes files.
    Raises ConfigError / DataError for bad input, before writing anything."""
    cfg, rank, world, say = start_run(cfg, quiet)
    micro, main_process, name = micro_batch_size(cfg, world), rank == 0, os.path.basename(os.path.normpath(out))
    check_training_fits(cfg, cfg.history, micro)
    with RunFolder(out, resuming, overwrite, active=main_process) as folder:

        # --- data -------------------------------------------------------------------------------
        train_videos, pools, val, source, _ = process_videos(cfg, rank, world, data)   # stage 1 reads no captions
        say(f"data: {source}; train {tuple(train_videos.shape)}" + (f" in this process of {world}" if world > 1 else "")
            + f", val {tuple(val.shape)}")

        # --- models -----------------------------------------------------------------------------
        dit, phi = DiT(cfg), Compressor(cfg)
        if init != "none":                               # a pretrained video DiT and its latent; phi's LR branch starts as its patchifier
            load_dit(dit, init)
        elif cfg.latent == "pca" and not resuming:       # --resume loads the basis with the weights
            say(fit_latent(dit.latent, train_videos, cfg, rank, world))
        dit, phi = dit.to(cfg.device), phi.to(cfg.device)
        phi.init_from_patchifier(dit.patchify.weight, dit.patchify.bias)
        ema_dit, ema_phi = copy.deepcopy(dit).requires_grad_(False), copy.deepcopy(phi).requires_grad_(False)
        params = list(dit.parameters()) + list(phi.parameters())
        n_memory = phi(val[:1], dit.latent).shape[1]
        tokens_per_step = cfg.batch * (n_memory + (cfg.latent_frames if cfg.noise_as_mask else cfg.targets) * math.prod(cfg.token_grid[1:]))
        say(f"DiT {sum(p.numel() for p in dit.parameters()) / 1e6:.2f}M params, compressor {cfg.compressor} "
            f"{sum(p.numel() for p in phi.parameters()) / 1e6:.2f}M params, {n_memory} memory tokens for "
            f"{math.prod(cfg.token_grid)} history tokens ({cfg.rate})")
        say(f"global batch {cfg.batch} = {world} process(es) x {cfg.accum} micro-batch(es) of {micro}; {cfg.dtype}"
            + (", compiled" if cfg.compile else ""))
        loss_fn = distribute(PFPLoss(dit, phi, cfg), cfg, world)

        optimizer, schedule = make_optimizer(dit, phi, cfg)
        ema_pairs = list(zip(list(ema_dit.parameters()) + list(ema_phi.parameters()), params))
        models = {"dit": dit, "compressor": phi, "dit_ema": ema_dit, "compressor_ema": ema_phi}
        book = Logbook(out, cfg, 1, models, optimizer, schedule, main_process, say, tokens_per_step,
                       validate=lambda: summarise(evaluate_retrieval(ema_dit, ema_phi, val[:8], cfg, groups_per_video=2), cfg),
                       describe=lambda r: f"val PSNR {r['psnr']:.2f} dB (first/middle/last third {r['psnr_first']:.2f}/"
                                          f"{r['psnr_middle']:.2f}/{r['psnr_last']:.2f}), SSIM {r['ssim']:.3f}; "
                                          f"posterior mean {r['psnr_mean']:.2f} dB")

        # --- training ---------------------------------------------------------------------------
        first = book.resume() if resuming else 0
        ceiling = latent_ceiling(dit.latent, val)     # of the basis the run trains with: fitted, from --init or resumed
        say(latent_line(cfg, ceiling))
        folder.start(asdict(cfg))                     # only now, all checked, is anything written to out
        with interruptible() as stop:
            for step in book.start(first, f"stage 1 {name}", position, quiet):
                # forward and backward on L_pfp, micro-batch by micro-batch (--accum)
                losses, per_sample, ts = [], [], []
                for i in range(cfg.accum):
                    with micro_batch(loss_fn, step, rank, i, cfg):   # own seed; DDP syncs last
                        video = random_batch(train_videos, pools[i], micro, cfg)   # (b, T, 3, H, W)
                        with autocast(cfg):
                            loss, sample_losses, t = loss_fn(video)
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

        # --- final evaluation: every frame of every validation video, once ---------------------------
        book.save(cfg.steps)
        scores = evaluate_retrieval(ema_dit, ema_phi, val, cfg, groups_per_video=cfg.latent_frames // cfg.targets,
                                    lpips=load_stlpips())
        final = summarise(scores, cfg)
        floor = no_network_baselines(val, cfg)                  # what no network scores: the mean frame, the pooled video
        save_rows_png(retrieval_rows(ema_dit, ema_phi, val, cfg), os.path.join(out, "retrieval.png"))
        summary = {"name": name, "init": init, "compressor": cfg.compressor, "rate": cfg.rate, "omega": cfg.omega, "data": cfg.data,
                   "data_split": source, "steps": cfg.steps, "memory_tokens": n_memory,
                   "history_tokens": math.prod(cfg.token_grid), **final, **by_position(scores, cfg), "no_network": floor,
                   "latent_ceiling_psnr": ceiling,
                   "train_seconds": train_seconds, "wall_seconds": time.time() - book.started, "config": asdict(cfg)}
        book.close(final, summary)
        say(f"done in {summary['wall_seconds'] / 60:.1f} min: val retrieval PSNR {final['psnr']:.2f} dB "
            f"(first/middle/last third {final['psnr_first']:.2f}/{final['psnr_middle']:.2f}/{final['psnr_last']:.2f}), "
            f"SSIM {final['ssim']:.3f}, {n_memory} memory tokens; "
            f"the DiT's posterior mean {final['psnr_mean']:.2f} dB")
        say(f"no network: the history's mean frame {floor['mean_frame']:.2f} dB, the video pooled {cfg.rate} and blown "
            f"back up {floor['pooled']:.2f} dB" + ("" if ceiling is None else f"; the pca latent's ceiling {ceiling:.2f} dB"))
        say(f"wrote {out}/summary.json, {out}/retrieval.png, {out}/ckpt.pt")
        return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out (or runs/<name>) from its ckpt.pt, exactly where it stopped")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in --out (without it, a folder holding a run is refused)")
    parser.add_argument("--init", default="none",
                        help="start the DiT from this checkpoint's (a base video model, e.g. a full-history "
                             "train_ar.py run); pass its shape flags too. Default none: from scratch")
    add_config_flags(parser)
    args = parser.parse_args()
    cfg = config_from_args(args)
    name = f"{cfg.compressor}_{cfg.rate}" + {"synthetic": "", "storyboard": "_story"}.get(cfg.data, "_real")
    train(cfg, cfg.out or os.path.join("runs", name), resuming=args.resume, overwrite=args.overwrite, init=args.init)


if __name__ == "__main__":
    run_main(main)
