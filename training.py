"""The machinery both training scripts share (train_pfp.py, train_ar.py): how a run gets its data,
steps, scales to more hardware and survives interruption. None of it is the paper's method;
all of it is what makes a long run trustworthy.

- data: load_videos, and process_videos (this process's shard of them); a --latent pca basis
  fitted on them (fit_latent) and its reconstruction ceiling (latent_ceiling);
- scaling (README, "Scaling up"): torchrun's processes and DDP (setup_distributed, distribute),
  micro-batches with a seed each (micro_batch), bf16 autocast, torch.compile;
- around the step, which each training script writes out: AdamW with warmup and cosine decay
  (make_optimizer), the NaN guard (update_is_safe), the EMA (update_ema);
- nothing lost (README, "Nothing lost"): checkpoints, --resume, Ctrl-C/SIGTERM (interruptible).

    torchrun --nproc_per_node 2 train_pfp.py --scale tiny     # uses all of it

Letters: B batch, T frames.
"""
import json
import math
import os
import signal
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, replace

import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm
from torch.nn.parallel import DistributedDataParallel as DDP

MAX_UPDATE = 1.0     # the NaN guard skips an update that would move the weights by more than their own norm
LATENT_FIT_CLIPS = 256   # [ours] training clips a --latent pca basis is fitted on: ~1M pixel blocks at tiny, seconds

from config import Config, ConfigError, Interrupted, result_fields
from data import TRAIN_SEED_OFFSET, VAL_SEED_OFFSET, synthetic_videos, video_folder_clips
from storyboard import storyboard_videos
from flow import loss_per_t_bin
from metrics import psnr
from checkpoint import read_checkpoint, write_atomically
from latent import cell_sums


def load_videos(cfg: Config, frames: int = 0, progress: bool = True, only=None):
    """-> train (N, T, 3, H, W), val (V, T, 3, H, W), and a line saying where they came from; the
    storyboard world adds a fourth item, its captions {"train": (N, T, L), "val": (V, T, L)}.
    T = frames, or the history by default (stage 2 asks for the history plus a chunk).
    only: indices of the synthetic training videos to generate (default all of them)."""
    frames = frames or cfg.history
    if cfg.height != cfg.width:
        raise ConfigError(f"training data is square: set --height and --width equal (got {cfg.height}x{cfg.width})")
    if cfg.data == "storyboard":
        indices = range(cfg.train_videos) if only is None else only
        timing = {"min_first": cfg.min_first, "min_away": cfg.min_away}
        train = storyboard_videos([TRAIN_SEED_OFFSET + j for j in indices], frames, cfg.height, **timing)
        val = storyboard_videos(range(VAL_SEED_OFFSET, VAL_SEED_OFFSET + cfg.val_videos), frames, cfg.height, **timing)
        return (train["video"], val["video"], f"storyboard: {cfg.train_videos} train stories, {cfg.val_videos} validation",
                {"train": train["captions"], "val": val["captions"]})
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


def fit_latent(latent, train, cfg: Config, rank: int, world: int) -> str:
    """--latent pca from scratch: fit the DiT's latent on the pixel blocks of the training split's
    first LATENT_FIT_CLIPS clips -> a line saying so. Each process sums the cells of those it holds
    (its first rows, see process_videos) and the sums are added up, so every process fits the basis
    one process would, however the batch is split. [ours]"""
    started, held = time.time(), len(shard(LATENT_FIT_CLIPS, rank, world, cfg.accum))
    sums = cell_sums(train[:held], cfg.vae_space, cfg.vae_time)         # count, sum (P,), sum of outer products (P, P)
    if world > 1:
        for total in sums:
            dist.all_reduce(total)
    latent.fit_sums(*sums)
    blocks = int(sums[0].item())
    return (f"latent: pca fitted on the {blocks:,} pixel blocks of {blocks // (train[0].numel() // cfg.block_channels)} "
            f"training clips in {time.time() - started:.1f} s")


@torch.no_grad()
def latent_ceiling(latent, videos, batch: int = 4):
    """Mean PSNR of decode(encode(video)) over the frames of videos (B, T, 3, H, W): the ceiling no
    retrieval can pass. None for the lossless latent, which is exact."""
    if latent.kind == "lossless":
        return None
    return torch.cat([psnr(latent.decode(latent.encode(v)), v) for v in videos.split(batch)]).mean().item()


def latent_line(cfg: Config, ceiling) -> str:
    """The line a run prints about its latent, `ceiling` from latent_ceiling."""
    block = f"{cfg.block_channels} values of a {cfg.vae_time}x{cfg.vae_space}x{cfg.vae_space} pixel block"
    if ceiling is None:
        return f"latent: lossless, the {block} (exact)"
    return (f"latent: pca, {cfg.pca_channels} channels for the {block}; reconstruction ceiling {ceiling:.2f} dB "
            f"on the validation clips, what no retrieval can pass")


def make_optimizer(dit, phi, cfg: Config):
    """AdamW over the DiT (at --dit_lr_scale times --lr) and phi, with a linear warmup and a cosine
    decay to 10% -> (optimizer, scheduler)."""
    groups = [{"params": list(dit.parameters()), "lr": cfg.lr * cfg.dit_lr_scale}, {"params": list(phi.parameters())}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    def lr_factor(step):
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)))
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def random_batch(videos, pool, size: int, cfg: Config, rows=None):
    """`size` of the videos whose rows are in `pool`, drawn at random (B, T, 3, H, W), or the given
    rows; real clips are few, so half the batches are mirrored."""
    video = videos[pool[torch.randint(len(pool), (size,), device=pool.device)] if rows is None else rows]
    return video.flip(-1) if cfg.data not in ("synthetic", "storyboard") and torch.rand(()) < 0.5 else video


# --- scaling up: processes, micro-batches, precision (README, "Scaling up") ----------------------
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


def shard(n: int, rank: int, world: int, accum: int) -> list:
    """Which of n training clips this process holds (process_videos), in order."""
    return [j for j in range(n) if j % (world * accum) // accum == rank]


def process_videos(cfg: Config, rank: int, world: int, data=None, frames: int = 0) -> tuple:
    """This process's shard of the training videos -> (train, pools, val, source, captions), pools[i]
    the rows of train that micro-batch i may draw from; captions None, or the storyboard world's
    {"train": (N, T, L) the rows of train, "val": (V, T, L)}.

    Micro-batch m = rank * accum + i draws only from the videos j with j % (world * accum) == m:
    processes hold disjoint shards (synthetic videos are generated only where they are used), and
    one process with --accum 2k draws exactly what two processes with --accum k draw."""
    every = world * cfg.accum
    generated = data is None and cfg.data in ("synthetic", "storyboard")
    held = shard(cfg.train_videos, rank, world, cfg.accum) if generated else None
    train, val, source, *captions = data or load_videos(cfg, frames, progress=rank == 0, only=held)
    captions = dict(captions[0]) if captions else None
    if held is None:                                    # real clips (or data given): all loaded, keep ours
        held = shard(len(train), rank, world, cfg.accum)
        if len(held) < len(train):                      # one process: no copy of the whole set
            train = train[held]
            captions = captions and {**captions, "train": captions["train"][held]}
    pools = [torch.tensor([p for p, j in enumerate(held) if j % every == rank * cfg.accum + i], device=cfg.device)
             for i in range(cfg.accum)]
    if min(len(pool) for pool in pools) == 0:
        raise ConfigError(f"{len(held)} training clips cannot feed {every} micro-batches (processes x --accum), one "
                          f"clip each at least: lower --accum or the processes, or add videos")
    captions = captions and {k: v.to(cfg.device) for k, v in captions.items()}
    return train.to(cfg.device), pools, val.to(cfg.device), source, captions


def start_run(cfg: Config, quiet: bool) -> tuple:
    """What every training run does first: check the device, join torchrun's processes, seed (the
    same initial weights everywhere), set threads, print the config. Nothing is written yet.
    -> (cfg, rank, world, say), say printing on rank 0 unless quiet."""
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {cfg.device}: no CUDA GPU is visible to PyTorch here; use --device cpu")
    cfg, rank, world = setup_distributed(cfg)
    say = print if rank == 0 and not quiet else (lambda *a: None)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    say(json.dumps(asdict(cfg)))
    return cfg, rank, world, say


def distribute(loss: nn.Module, cfg: Config, world: int) -> nn.Module:
    """A stage's loss module (its models inside): their forward compiled with --compile, and the
    whole wrapped in DDP under torchrun, so that backward averages the gradients across processes."""
    if cfg.compile:
        for model in loss.children():
            model.compile()
    if world > 1:
        loss = DDP(loss, device_ids=[torch.cuda.current_device()] if cfg.device.startswith("cuda") else None)
    return loss


def micro_batch_size(cfg: Config, world: int) -> int:
    """--batch is the global batch: world processes x --accum micro-batches each."""
    if cfg.batch % (world * cfg.accum):
        raise ConfigError(f"--batch {cfg.batch} must be divisible by processes x --accum = {world} x {cfg.accum}")
    return cfg.batch // (world * cfg.accum)


@contextmanager
def micro_batch(loss: nn.Module, step: int, rank: int, i: int, cfg: Config):
    """Around the forward and backward of this process's micro-batch i of a step.

    Micro-batch m = rank * accum + i seeds all its randomness (which videos, Omega, t, the noise)
    from (seed, step, m), so a run's numbers do not depend on how its global batch is split over
    processes and accumulation (tests/test_scale.py). Under DDP only the last micro-batch's
    backward all-reduces the gradients (no_sync); the gradients end as the global batch's mean.
    oneDNN's bf16 kernels gave NaN weight gradients in the compressor's convolutions on our CPU
    (PyTorch 2.13, stage 2, from step 5; tests/test_scale.py): bf16 on a CPU runs without oneDNN."""
    torch.manual_seed(hash((cfg.seed, step, rank * cfg.accum + i)) % 2 ** 63)
    not_last = isinstance(loss, DDP) and i < cfg.accum - 1
    cpu_bf16 = cfg.dtype == "bf16" and not cfg.device.startswith("cuda")
    with loss.no_sync() if not_last else nullcontext(), torch.backends.mkldnn.flags(False) if cpu_bf16 else nullcontext():
        yield


def autocast(cfg: Config):
    """bf16 autocast for the forward with --dtype bf16; the backward runs outside it, as PyTorch advises."""
    return torch.autocast(cfg.device.split(":")[0], torch.bfloat16, enabled=cfg.dtype == "bf16")


@torch.no_grad()
def update_is_safe(loss, grad_norm, params, optimizer) -> bool:
    """The NaN guard: False for a step whose loss or gradient norm is not finite, or whose update
    would move the weights by more than MAX_UPDATE of their own norm (a diverging step, e.g.
    --lr 1e30, whose loss is still finite). The update is predicted from AdamW's moments before it
    is made (adamw_update_norm), so a skipped step changes neither the weights nor the moments,
    and no copy of the weights is held."""
    if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
        return False
    size = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(params)))
    moved = adamw_update_norm(optimizer)
    return bool(torch.isfinite(moved) and moved <= MAX_UPDATE * size)


@torch.no_grad()
def adamw_update_norm(optimizer) -> torch.Tensor:
    """The norm of the update optimizer.step() is about to make: AdamW's step (moments updated with
    this gradient, bias-corrected, plus the decoupled weight decay), computed one tensor at a time,
    so it costs a few temporaries the size of the largest tensor, not a copy of the model."""
    total = torch.zeros(())
    for group in optimizer.param_groups:
        (b1, b2), lr, eps, decay = group["betas"], group["lr"], group["eps"], group["weight_decay"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = optimizer.state.get(p, {})
            t = int(state["step"]) + 1 if state else 1
            m = torch.lerp(state["exp_avg"], p.grad, 1 - b1) if state else p.grad * (1 - b1)
            v = torch.lerp(state["exp_avg_sq"], p.grad.square(), 1 - b2) if state else p.grad.square() * (1 - b2)
            update = (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps) + decay * p
            total += (lr * update).float().square().sum().cpu()
    return total.sqrt()


def count_bad_steps(bad: int, kept: bool, loss, grad_norm, step: int, cfg: Config, saved: str, say) -> int:
    """The NaN guard's tally of skipped steps in a row -> the new tally; too many raise ConfigError.
    saved: the line saying where the last good weights are (None while no checkpoint exists)."""
    if kept:
        return 0
    finite = bool(torch.isfinite(loss) and torch.isfinite(grad_norm))
    why = f"an update moving the weights by over {MAX_UPDATE:g} of their norm" if finite else "not finite"
    say(f"step {step + 1}: loss {loss.item():.3g}, gradient norm {grad_norm.item():.3g}: {why}, step skipped")
    if bad + 1 >= cfg.max_bad_steps:
        raise ConfigError(f"{bad + 1} steps in a row were skipped (to step {step + 1}; the last: {why}): lower --lr or "
                          f"use --dtype fp32; " + (saved or "no checkpoint was written yet, so no weights are kept"))
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
                          f"flags: {', '.join(differ) or 'none'}): pass the flags it was started with"
                          + (" (a finished run cannot be extended)" if differ == ["steps"] else "")
                          + ", or start anew with --overwrite or another --out")
    step = ckpt.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= cfg.steps:
        raise ConfigError(f"--resume: {path} says it stopped at step {step!r}, not a step from 0 to {cfg.steps}: "
                          f"it is damaged; start anew with --overwrite or another --out")
    try:                                              # all in memory: nothing on disk changes before they load
        for key, model in models.items():
            model.load_state_dict(ckpt[key])
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["schedule"])
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise ConfigError(f"--resume: {path} does not hold this run's weights, optimizer and schedule "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:120]}); its weights may start a new run "
                          f"with --init, or start anew with --overwrite") from None
    if os.path.isfile(log_path):                  # a SIGKILL may have cut the last line short: drop it too
        rows, corrupt = [], 0
        for line in open(log_path, errors="replace"):
            try:
                row = json.loads(line)
                final = "val" in row and row["step"] >= cfg.steps       # a finished run writes it again at its end
                if row["step"] <= step and line.endswith("\n") and not final:
                    rows.append(line)
            except (ValueError, KeyError, TypeError):
                corrupt += line.endswith("\n")         # not the last line a kill cut short
        if corrupt:
            print(f"warning: {log_path}: {corrupt} unreadable line(s) dropped", file=sys.stderr)
        write_atomically(log_path, lambda tmp: open(tmp, "w").writelines(rows))
    return step


class Logbook:
    """What both training loops do around their step: resume, metrics.jsonl, the progress bar,
    validation every --eval_every, checkpoints every --ckpt_every and on Ctrl-C, the NaN guard's
    count. On processes other than rank 0 it only counts and stops.

    validate() -> a dict of figures for metrics.jsonl; describe(figures) -> the line shown for it."""

    def __init__(self, out: str, cfg: Config, stage: int, models: dict, optimizer, schedule, main_process: bool,
                 say, tokens_per_step: int, validate, describe, **checkpoint_extra):
        self.out, self.cfg, self.stage, self.models = out, cfg, stage, models
        self.optimizer, self.schedule, self.main, self.say = optimizer, schedule, main_process, say
        self.tokens_per_step, self.validate, self.describe, self.extra = tokens_per_step, validate, describe, checkpoint_extra
        self.log_path, self.log, self.saved, self.bad = os.path.join(out, "metrics.jsonl"), None, None, 0

    def resume(self) -> int:
        """Continue from <out>/ckpt.pt (--resume) -> the step to start at."""
        first = resume(self.out, self.cfg, self.stage, self.models, self.optimizer, self.schedule, self.log_path)
        self.say(f"resumed at step {first} from {self.out}/ckpt.pt")
        self.saved = f"{self.out}/ckpt.pt holds the last good weights (step {first})"
        return first

    def start(self, first: int, desc: str, position: int, quiet: bool):
        """Open metrics.jsonl and the bar -> the steps to run, first .. cfg.steps - 1."""
        if self.main:
            self.log = open(self.log_path, "a" if first else "w")
        self.started = self.tick = time.time()
        self.eval_seconds = 0.0
        self.bar = tqdm(range(first, self.cfg.steps), desc=desc, dynamic_ncols=True, position=position, leave=not quiet,
                        disable=not self.main, initial=first, total=self.cfg.steps)
        return self.bar

    def write(self, row: dict):
        self.log.write(json.dumps(row) + "\n")
        self.log.flush()

    def save(self, step: int):
        """The models, EMA, optimizer and schedule at `step` -> <out>/ckpt.pt, atomically."""
        m = self.models
        state = checkpoint_state(self.cfg, step, m["dit"], m["compressor"], m["dit_ema"], m["compressor_ema"],
                                 stage=self.stage, **self.extra, optimizer=self.optimizer.state_dict(),
                                 schedule=self.schedule.state_dict())
        write_atomically(os.path.join(self.out, "ckpt.pt"), lambda tmp: torch.save(state, tmp))
        self.saved = f"{self.out}/ckpt.pt holds the last good weights (step {step})"

    def after_step(self, step: int, loss, grad_norm, kept: bool, per_sample, t, stop: list):
        """Count a bad step; log, validate and checkpoint when due; on Ctrl-C save and raise Interrupted."""
        cfg, done = self.cfg, step + 1
        self.bad = count_bad_steps(self.bad, kept, loss, grad_norm, step, cfg, self.saved,
                                   self.bar.write if self.main else self.say)
        if self.main and done % cfg.log_every == 0:
            ms = (time.time() - self.tick) * 1000 / cfg.log_every
            self.tick = time.time()
            row = log_row(step, loss, grad_norm, self.schedule, ms, self.tokens_per_step, per_sample, t)
            self.write(row)
            self.bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{row['tokens_per_s']:.0f}")
        if self.main and done % cfg.eval_every == 0 and done < cfg.steps:
            began = time.time()
            figures = self.validate()
            trained = began - self.started - self.eval_seconds      # training time so far in this process
            self.write({"step": done, "val": figures, "train_seconds": round(trained, 1)})
            if self.say is print:                      # rank 0, not --quiet
                self.bar.write(f"step {done}: {self.describe(figures)}")
            self.tick += time.time() - began           # evaluation time is not training speed
            self.eval_seconds += time.time() - began
        if self.main and (stop or done % cfg.ckpt_every == 0):
            self.save(done)
        if stop:
            raise Interrupted(f"interrupted at step {done} of {cfg.steps}: {self.out}/ckpt.pt is saved; "
                              f"continue with the same command plus --resume")

    def finish(self, world: int) -> float:
        """After the last step: close the bar, leave the process group -> training seconds."""
        self.bar.close()
        if world > 1:
            dist.destroy_process_group()
        return time.time() - self.started

    def close(self, final: dict, summary: dict):
        """The final checkpoint is already saved: log the final figures, write summary.json."""
        self.write({"step": self.cfg.steps, "val": final})
        self.log.close()
        write_atomically(os.path.join(self.out, "summary.json"), lambda tmp: open(tmp, "w").write(json.dumps(summary, indent=1)))


def log_row(step, loss, grad_norm, schedule, ms, tokens_per_step, per_sample, t) -> dict:
    """One line of metrics.jsonl: step, loss, lr, grad norm, speed and the loss per t-bin."""
    return {"step": step + 1, "loss": loss.item(), "lr": schedule.get_last_lr()[-1], "grad_norm": grad_norm.item(),
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
