"""Stage 1: pretraining frame preservation (PAPER.md, "Equations", L_pfp).

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
import json
import math
import os
import signal
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, replace

import torch
import torch.nn as nn
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from config import Config, ConfigError, Interrupted, add_config_flags, config_from_args, fail, result_fields
from compressor import Compressor, memory_positions
from data import DataError, TRAIN_SEED_OFFSET, VAL_SEED_OFFSET, synthetic_videos, video_folder_clips
from dit import DiT
from flow import add_noise, velocity_target, sample_t, loss_per_t_bin
from latent import encode
from metrics import psnr, ssim, load_stlpips
from sample import read_checkpoint, retrieve, true_frames, save_rows_png, write_atomically


def load_videos(cfg: Config, frames: int = 0, progress: bool = True, only=None):
    """-> train (N, T, 3, H, W), val (V, T, 3, H, W), and a line saying where they came from.
    T = frames, or the history by default (stage 2 asks for the history plus a chunk).
    only: indices of the synthetic training videos to generate (default all of them)."""
    frames = frames or cfg.history
    if cfg.height != cfg.width:
        raise ConfigError(f"training data is square: set --height and --width equal (got {cfg.height}x{cfg.width})")
    if cfg.data == "synthetic":
        indices = range(cfg.train_videos) if only is None else only
        train = synthetic_videos([TRAIN_SEED_OFFSET + j for j in indices], frames, cfg.height, progress=progress)
        val = synthetic_videos(range(VAL_SEED_OFFSET, VAL_SEED_OFFSET + cfg.val_videos), frames, cfg.height)
        return train, val, f"synthetic: {cfg.train_videos} train seeds, {cfg.val_videos} validation seeds"
    clips = video_folder_clips(cfg.data, frames, cfg.height, cfg.frame_stride)
    names = sorted(clips)
    if len(names) == 1:                           # one video: its last clips validate
        everything = clips[names[0]]
        n_val = max(1, len(everything) // 4)
        return everything[:-n_val], everything[-n_val:][:cfg.val_videos], f"{names[0]}: last {n_val} clips validate"
    # Several videos: the last file (by name) is held out whole, so validation is unseen footage.
    train = torch.cat([clips[n] for n in names[:-1]])
    return train, clips[names[-1]][:cfg.val_videos], f"{len(names) - 1} videos train, {names[-1]} validates"


def pick_omega(batch: int, cfg: Config, generator=None) -> torch.Tensor:
    """(B, k) sorted latent-frame indices: uniform over the history, or the last k ("cheat")."""
    T, k = cfg.latent_frames, cfg.targets
    if cfg.omega == "last":
        return torch.arange(T - k, T).expand(batch, k)
    return torch.rand(batch, T, generator=generator).argsort(dim=1)[:, :k].sort(dim=1).values


def pfp_loss(dit, phi, video, cfg: Config):
    """L_pfp for a batch of histories (B, T, 3, H, W) -> (loss, per-sample loss, t)."""
    B = video.shape[0]
    latent = encode(video, cfg.vae_space, cfg.vae_time)                     # (B, T', C, h, w)
    memory, memory_pos = phi(video), memory_positions(cfg)                  # (B, M, D), (M, 3)
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


@torch.no_grad()
def evaluate_retrieval(dit, phi, videos, cfg: Config, groups_per_video: int, batch: int = 64, lpips=None):
    """Retrieve frames of each video in groups of k (a fixed random Omega each, as in training).
    -> per-frame PSNR, SSIM (and ST-LPIPS when an `lpips` function is given) and latent-frame position."""
    gen = torch.Generator().manual_seed(1234)
    T, k = cfg.latent_frames, cfg.targets
    jobs = []                                        # (video index, omega)
    for i in range(len(videos)):
        groups = torch.randperm(T, generator=gen)[:T // k * k].reshape(-1, k)   # (T // k, k) disjoint
        jobs += [(i, omega) for omega in groups.sort(dim=1).values[:groups_per_video]]
    scores = {"psnr": [], "ssim": [], "position": [], **({"lpips": []} if lpips else {})}
    for start in range(0, len(jobs), batch):
        chunk = jobs[start:start + batch]
        video = videos[torch.tensor([i for i, _ in chunk])]                  # (b, T, 3, H, W)
        omega = torch.stack([o for _, o in chunk]).to(video.device)          # (b, k)
        got, truth = retrieve(dit, phi, video, omega, cfg, gen), true_frames(video, omega, cfg)
        scores["psnr"].append(psnr(got, truth).flatten())
        scores["ssim"].append(ssim(got, truth).flatten())
        if lpips:
            scores["lpips"].append(lpips(got, truth).flatten())
        scores["position"].append(omega.repeat_interleave(cfg.vae_time, dim=1).flatten())
    return {key: torch.cat(value).cpu() for key, value in scores.items()}


def summarise(scores, cfg: Config) -> dict:
    """Mean PSNR/SSIM overall and per third of the history (first, middle, last)."""
    third = (scores["position"] * 3 // cfg.latent_frames).clamp(max=2)
    out = {"psnr": scores["psnr"].mean().item(), "ssim": scores["ssim"].mean().item(),
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


def make_optimizer(params, cfg: Config):
    """AdamW with a linear warmup and a cosine decay to 10% -> (optimizer, scheduler)."""
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    def lr_factor(step):
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)))
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def random_batch(videos, pool, size: int, cfg: Config):
    """`size` of the videos whose rows are in `pool`, drawn at random (B, T, 3, H, W); real clips are
    few, so half the batches are mirrored."""
    video = videos[pool[torch.randint(len(pool), (size,), device=pool.device)]]
    return video.flip(-1) if cfg.data != "synthetic" and torch.rand(()) < 0.5 else video


# --- scaling up: processes, micro-batches, precision (README, "Scaling up") ----------------------
class Objective(nn.Module):
    """The DiT, phi and a loss as one module: the unit DDP wraps, so that the backward pass
    averages the gradients of both models across processes."""

    def __init__(self, loss, dit, phi, cfg: Config):
        super().__init__()
        self.loss, self.dit, self.phi, self.cfg = loss, dit, phi, cfg

    def forward(self, *batch):
        return self.loss(self.dit, self.phi, *batch, self.cfg)


def setup_distributed(cfg: Config) -> tuple:
    """-> (cfg, rank, world size). Under torchrun (which sets RANK, WORLD_SIZE, LOCAL_RANK) join the
    process group: nccl with one GPU per process, gloo on CPU. A plain `python` run is rank 0 of 1."""
    if "WORLD_SIZE" not in os.environ:
        return cfg, 0, 1
    rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if cfg.device.startswith("cuda"):
        cfg = replace(cfg, device=f"cuda:{local}")
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cfg.device.startswith("cuda") else "gloo")
    return cfg, rank, world


def process_videos(cfg: Config, rank: int, world: int, data=None, frames: int = 0) -> tuple:
    """This process's shard of the training videos -> (train, pools, val, source), pools[i] the rows
    of train that micro-batch i may draw from.

    Micro-batch m = rank * accum + i draws only from the videos j with j % (world * accum) == m:
    processes hold disjoint shards (synthetic videos are generated only where they are used), and
    one process with --accum 2k draws exactly what two processes with --accum k draw."""
    every = world * cfg.accum
    mine = lambda n: [j for j in range(n) if j % every // cfg.accum == rank]
    held = mine(cfg.train_videos) if data is None and cfg.data == "synthetic" else None
    train, val, source = data or load_videos(cfg, frames, progress=rank == 0, only=held)
    if held is None:                                    # real clips (or data given): all loaded, keep ours
        held = mine(len(train))
        train = train[held]
    pools = [torch.tensor([p for p, j in enumerate(held) if j % every == rank * cfg.accum + i], device=cfg.device)
             for i in range(cfg.accum)]
    if min(len(pool) for pool in pools) == 0:
        raise ConfigError(f"{len(held)} training videos cannot feed {every} micro-batches: lower --accum or the processes")
    return train.to(cfg.device), pools, val.to(cfg.device), source


def start_run(cfg: Config, out: str, quiet: bool) -> tuple:
    """What every training run does first: check the device, join torchrun's processes, seed (the
    same initial weights everywhere), set threads, print and save the config (rank 0).
    -> (cfg, rank, world, say), say printing on rank 0 unless quiet."""
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {cfg.device}: no CUDA GPU is visible to PyTorch here; use --device cpu")
    cfg, rank, world = setup_distributed(cfg)
    say = print if rank == 0 and not quiet else (lambda *a: None)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    say(json.dumps(asdict(cfg)))
    if rank == 0:
        os.makedirs(out, exist_ok=True)
        write_atomically(os.path.join(out, "config.json"), lambda tmp: open(tmp, "w").write(json.dumps(asdict(cfg), indent=1)))
    return cfg, rank, world, say


def training_objective(loss, dit, phi, cfg: Config, world: int):
    """Objective(loss, dit, phi), its models compiled with --compile, wrapped in DDP under torchrun."""
    if cfg.compile:
        dit.compile()
        phi.compile()
    objective = Objective(loss, dit, phi, cfg)
    if world > 1:
        objective = DDP(objective, device_ids=[torch.cuda.current_device()] if cfg.device.startswith("cuda") else None)
    return objective


def micro_batch_size(cfg: Config, world: int) -> int:
    """--batch is the global batch: world processes x --accum micro-batches each."""
    if cfg.batch % (world * cfg.accum):
        raise ConfigError(f"--batch {cfg.batch} must be divisible by processes x --accum = {world} x {cfg.accum}")
    return cfg.batch // (world * cfg.accum)


def accumulate_gradients(objective, draw, step: int, rank: int, cfg: Config) -> tuple:
    """Forward and backward over this process's --accum micro-batches of the step's global batch.
    draw(i) -> the loss's inputs for micro-batch i. -> (mean loss, per-sample losses, t).

    Micro-batch m = rank * accum + i seeds all its randomness (which videos, Omega, t, the noise)
    from (seed, step, m), so a run's numbers do not depend on how its global batch is split over
    processes and accumulation (tests/test_scale.py). Under DDP only the last micro-batch's
    backward all-reduces the gradients (no_sync); the gradients end as the global batch's mean."""
    losses, per_sample, ts = [], [], []
    # oneDNN's bf16 kernels gave NaN weight gradients in the compressor's convolutions on our CPU
    # (PyTorch 2.13, stage 2, from step 5; tests/test_scale.py): bf16 on a CPU runs without oneDNN.
    cpu_bf16 = cfg.dtype == "bf16" and not cfg.device.startswith("cuda")
    for i in range(cfg.accum):
        torch.manual_seed(hash((cfg.seed, step, rank * cfg.accum + i)) % 2 ** 63)
        not_last = isinstance(objective, DDP) and i < cfg.accum - 1
        with objective.no_sync() if not_last else nullcontext(), torch.backends.mkldnn.flags(False) if cpu_bf16 else nullcontext():
            with torch.autocast(cfg.device.split(":")[0], torch.bfloat16, enabled=cfg.dtype == "bf16"):
                loss, ps, t = objective(*draw(i))
            (loss / cfg.accum).backward()                # backward outside autocast, as PyTorch advises
        losses.append(loss.detach())
        per_sample.append(ps.float())
        ts.append(t)
    return torch.stack(losses).mean(), torch.cat(per_sample), torch.cat(ts)


def optimizer_step(loss, params, optimizer, schedule, ema_pairs, step: int, cfg: Config):
    """Clip, AdamW, the learning-rate schedule and the EMA, after accumulate_gradients -> the
    gradient norm before clipping. The NaN guard: a non-finite loss or gradient norm skips the
    update, so the weights (and the checkpoints written from them) stay the last good ones."""
    grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    if torch.isfinite(loss) and torch.isfinite(grad_norm):
        optimizer.step()
        schedule.step()
        update_ema(ema_pairs, step, cfg)
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


def count_bad_steps(bad: int, loss, grad_norm, step: int, cfg: Config, out: str, say) -> int:
    """The NaN guard's tally of skipped steps in a row -> the new tally; too many raise ConfigError."""
    if torch.isfinite(loss) and torch.isfinite(grad_norm):
        return 0
    say(f"step {step + 1}: loss {loss.item():.3g}, gradient norm {grad_norm.item():.3g}: not finite, step skipped")
    if bad + 1 >= cfg.max_bad_steps:
        raise ConfigError(f"the loss or gradients were not finite for {bad + 1} steps in a row (to step {step + 1}): "
                          f"lower --lr or use --dtype fp32; {out}/ckpt.pt holds the last good weights")
    return bad + 1


@contextmanager
def interruptible():
    """Inside, Ctrl-C and SIGTERM only set a flag (a list that becomes non-empty): the loop then
    saves a checkpoint at the end of its step and raises Interrupted, instead of dying mid-write."""
    stop = []
    handlers = {sig: signal.signal(sig, lambda number, frame: stop.append(number)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def resume(out: str, cfg: Config, stage: int, models: dict, optimizer, schedule, log_path: str) -> int:
    """Load <out>/ckpt.pt into the models, EMA, optimizer and schedule -> the step to continue from.
    Every random draw is seeded by (seed, step, micro-batch), so this is all a run needs to go on
    exactly as if never stopped (tests/test_resume.py). metrics.jsonl loses the rows past it."""
    path = os.path.join(out, "ckpt.pt")
    ckpt = read_checkpoint(path)
    saved = Config(**ckpt["config"])
    if ckpt.get("stage", 1) != stage or result_fields(saved) != result_fields(cfg) or "optimizer" not in ckpt:
        differ = sorted(k for k, v in result_fields(cfg).items() if result_fields(saved).get(k) != v)
        raise ConfigError(f"--resume: {path} is not a checkpoint of this run (stage {ckpt.get('stage', 1)}, differing "
                          f"flags: {', '.join(differ) or 'none'}): pass the flags it was started with, or drop --resume")
    for key, model in models.items():
        model.load_state_dict(ckpt[key])
    optimizer.load_state_dict(ckpt["optimizer"])
    schedule.load_state_dict(ckpt["schedule"])
    if os.path.isfile(log_path):
        rows = [line for line in open(log_path) if json.loads(line)["step"] <= ckpt["step"]]
        write_atomically(log_path, lambda tmp: open(tmp, "w").writelines(rows))
    return ckpt["step"]


def log_row(step, loss, grad_norm, schedule, ms, tokens_per_step, per_sample, t) -> dict:
    """One line of metrics.jsonl: step, loss, lr, grad norm, speed and the loss per t-bin."""
    return {"step": step + 1, "loss": loss.item(), "lr": schedule.get_last_lr()[0], "grad_norm": grad_norm.item(),
            "ms_per_step": ms, "tokens_per_s": tokens_per_step / ms * 1000, **loss_per_t_bin(per_sample, t)}


@torch.no_grad()
def update_ema(ema_pairs, step: int, cfg: Config):
    """ema <- decay * ema + (1 - decay) * weights, with a short warm-up of the decay itself."""
    decay = min(cfg.ema, (1 + step) / (10 + step))
    for ema_p, p in ema_pairs:
        ema_p.lerp_(p, 1 - decay)


def checkpoint_state(cfg: Config, step: int, dit, phi, ema_dit, ema_phi, **extra) -> dict:
    """Everything sample.py needs, the config included; `extra` says e.g. which stage wrote it."""
    return {"config": asdict(cfg), "step": step, "dit": dit.state_dict(), "compressor": phi.state_dict(),
            "dit_ema": ema_dit.state_dict(), "compressor_ema": ema_phi.state_dict(), **extra}


def train(cfg: Config, out: str, data=None, quiet: bool = False, position: int = 0, resuming: bool = False) -> dict:
    """Train phi and the DiT on L_pfp, evaluate retrieval, write run files to out -> summary.
    data: (train, val, source) to reuse videos already loaded (evaluate.py); quiet: bar only;
    resuming: continue from out/ckpt.pt (--resume).
    Under torchrun every process trains; rank 0 alone logs, evaluates and writes files.
    Raises ConfigError / DataError for bad input."""
    cfg, rank, world, say = start_run(cfg, out, quiet)
    micro, main_process, name = micro_batch_size(cfg, world), rank == 0, os.path.basename(os.path.normpath(out))

    # --- data -------------------------------------------------------------------------------
    train_videos, pools, val, source = process_videos(cfg, rank, world, data)
    say(f"data: {source}; train {tuple(train_videos.shape)}" + (f" in this process of {world}" if world > 1 else "")
        + f", val {tuple(val.shape)}")

    # --- models -----------------------------------------------------------------------------
    dit, phi = DiT(cfg).to(cfg.device), Compressor(cfg).to(cfg.device)
    phi.init_from_patchifier(dit.patchify.weight, dit.patchify.bias)
    ema_dit, ema_phi = copy.deepcopy(dit).requires_grad_(False), copy.deepcopy(phi).requires_grad_(False)
    params = list(dit.parameters()) + list(phi.parameters())
    n_memory = phi(val[:1]).shape[1]
    tokens_per_step = cfg.batch * (n_memory + (cfg.latent_frames if cfg.noise_as_mask else cfg.targets) * math.prod(cfg.token_grid[1:]))
    say(f"DiT {sum(p.numel() for p in dit.parameters()) / 1e6:.2f}M params, compressor {cfg.compressor} "
        f"{sum(p.numel() for p in phi.parameters()) / 1e6:.2f}M params, {n_memory} memory tokens for "
        f"{math.prod(cfg.token_grid)} history tokens ({cfg.rate})")
    say(f"global batch {cfg.batch} = {world} process(es) x {cfg.accum} micro-batch(es) of {micro}; {cfg.dtype}"
        + (", compiled" if cfg.compile else ""))
    objective = training_objective(pfp_loss, dit, phi, cfg, world)

    optimizer, schedule = make_optimizer(params, cfg)
    ema_pairs = list(zip(list(ema_dit.parameters()) + list(ema_phi.parameters()), params))

    def save_checkpoint(step):
        state = checkpoint_state(cfg, step, dit, phi, ema_dit, ema_phi, stage=1, optimizer=optimizer.state_dict(),
                                 schedule=schedule.state_dict())
        write_atomically(os.path.join(out, "ckpt.pt"), lambda tmp: torch.save(state, tmp))

    # --- training ---------------------------------------------------------------------------
    log_path = os.path.join(out, "metrics.jsonl")
    models = {"dit": dit, "compressor": phi, "dit_ema": ema_dit, "compressor_ema": ema_phi}
    first = resume(out, cfg, 1, models, optimizer, schedule, log_path) if resuming else 0
    if resuming:
        say(f"resumed at step {first} from {out}/ckpt.pt")
    log = open(log_path, "a" if resuming else "w") if main_process else None
    start = time.time()
    bar = tqdm(range(first, cfg.steps), desc=f"stage 1 {name}", dynamic_ncols=True, position=position, leave=not quiet,
               disable=not main_process, initial=first, total=cfg.steps)
    tick, bad = time.time(), 0
    with interruptible() as stop:
        for step in bar:
            loss, per_sample, t = accumulate_gradients(objective, lambda i: (random_batch(train_videos, pools[i], micro, cfg),),
                                                       step, rank, cfg)
            grad_norm = optimizer_step(loss, params, optimizer, schedule, ema_pairs, step, cfg)
            bad = count_bad_steps(bad, loss, grad_norm, step, cfg, out, bar.write if main_process else say)
            if main_process and (step + 1) % cfg.log_every == 0:
                ms = (time.time() - tick) * 1000 / cfg.log_every
                tick = time.time()
                row = log_row(step, loss, grad_norm, schedule, ms, tokens_per_step, per_sample, t)
                log.write(json.dumps(row) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{row['tokens_per_s']:.0f}")
            if main_process and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
                eval_start = time.time()
                result = summarise(evaluate_retrieval(ema_dit, ema_phi, val[:8], cfg, groups_per_video=2), cfg)
                log.write(json.dumps({"step": step + 1, "val": result}) + "\n")
                log.flush()
                if not quiet:
                    bar.write(f"step {step + 1}: val PSNR {result['psnr']:.2f} dB (first/middle/last third "
                              f"{result['psnr_first']:.2f}/{result['psnr_middle']:.2f}/{result['psnr_last']:.2f}), SSIM {result['ssim']:.3f}")
                tick += time.time() - eval_start           # evaluation time is not training speed
            if main_process and (stop or (step + 1) % cfg.ckpt_every == 0):
                save_checkpoint(step + 1)
            if stop:
                raise Interrupted(f"interrupted at step {step + 1} of {cfg.steps}: {out}/ckpt.pt is saved; "
                                  f"continue with the same command plus --resume")
    bar.close()
    train_seconds = time.time() - start
    if world > 1:
        dist.destroy_process_group()
    if not main_process:
        return {}

    # --- final evaluation: every frame of every validation video, once ---------------------------
    save_checkpoint(cfg.steps)
    scores = evaluate_retrieval(ema_dit, ema_phi, val, cfg, groups_per_video=cfg.latent_frames // cfg.targets,
                                lpips=load_stlpips())
    final = summarise(scores, cfg)
    save_rows_png(retrieval_rows(ema_dit, ema_phi, val, cfg), os.path.join(out, "retrieval.png"))
    summary = {"name": name, "compressor": cfg.compressor, "rate": cfg.rate, "omega": cfg.omega, "data": cfg.data,
               "data_split": source, "steps": cfg.steps, "memory_tokens": n_memory,
               "history_tokens": math.prod(cfg.token_grid), **final, **by_position(scores, cfg),
               "train_seconds": train_seconds, "wall_seconds": time.time() - start, "config": asdict(cfg)}
    log.write(json.dumps({"step": cfg.steps, "val": final}) + "\n")
    log.close()
    write_atomically(os.path.join(out, "summary.json"), lambda tmp: open(tmp, "w").write(json.dumps(summary, indent=1)))
    say(f"done in {summary['wall_seconds'] / 60:.1f} min: val retrieval PSNR {final['psnr']:.2f} dB "
        f"(first/middle/last third {final['psnr_first']:.2f}/{final['psnr_middle']:.2f}/{final['psnr_last']:.2f}), "
        f"SSIM {final['ssim']:.3f}, {n_memory} memory tokens")
    say(f"wrote {out}/summary.json, {out}/retrieval.png, {out}/ckpt.pt")
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out (or runs/<name>) from its ckpt.pt, exactly where it stopped")
    add_config_flags(parser)
    try:
        args = parser.parse_args()
        cfg = config_from_args(args)
        name = f"{cfg.compressor}_{cfg.rate}" + ("" if cfg.data == "synthetic" else "_real")
        train(cfg, cfg.out or os.path.join("runs", name), resuming=args.resume)
    except (ConfigError, DataError) as e:
        fail(str(e))
    except Interrupted as e:
        print(str(e), file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
