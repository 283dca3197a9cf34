"""The one configuration every pfp-mini script shares, and its scale presets.

A single flat dataclass (nanoGPT's GPTConfig habit) rather than one per component: the DiT,
the compressor phi and the training loop all depend on the same geometry (frame size, history
length, latent factors, patch, width), and one object stored in every checkpoint means
`sample.py --ckpt X` needs no other flag. Every field is a command-line flag; a flag
overrides the preset chosen with --scale.

    python config.py --scale paper      # print a resolved preset
"""
import argparse
import inspect
import math
import os
import re
import signal
import sys
from dataclasses import dataclass, fields, asdict


@dataclass
class Config:
    # --- video geometry -------------------------------------------------------------------
    height: int = 32           # frame height in pixels
    width: int = 32            # frame width in pixels
    history: int = 16          # frames in the history H that phi compresses
    frame_stride: int = 2      # real videos: keep every n-th decoded frame
    # --- the latent stand-in (latent.py): space-to-depth, lossless or a PCA bottleneck -------
    vae_space: int = 2         # pixels per latent cell along height and width (paper's VAE: 8)
    vae_time: int = 1          # frames per latent frame (paper's VAE: 4)
    latent: str = "lossless"   # [ours] lossless: each vae_time x vae_space^2 pixel block is one exact latent cell |
                               # pca: a --pca_channels PCA of those blocks, a lossy channel bottleneck like the paper's
                               # VAE, fitted on training clips; the DiT and the LR branch read it, the HR branch the pixels
    pca_channels: int = 4      # [ours] K, channels per cell of the --latent pca latent, of the 3*vae_time*vae_space^2
                               # values of a pixel block (the paper's VAE: 16 channels for 768 values)
    # --- the video DiT G (dit.py) -----------------------------------------------------------
    patch: int = 2             # DiT patchifier 1 x patch x patch over latent cells (paper: 1x2x2)
    dim: int = 128             # hidden width D; memory tokens live in it too (paper: 3072)
    depth: int = 4             # transformer blocks
    heads: int = 4             # attention heads (head dim = dim / heads, split 3-ways by RoPE)
    mlp_ratio: int = 4         # MLP hidden width = mlp_ratio x dim
    rope_base: float = 100.0   # RoPE frequency base; positions are small integers here [ours]
    pos_bias: float = 2.0      # [ours] 3D ALiBi: logits -= slope_h * distance, slope_h = pos_bias / 2^h;
                               # every head starts out reading the keys near its own place and time (measured
                               # best for stage 1; the storyboard's stage 2 reads far back better at 0:
                               # results/learning_speed.md, results/storyboard_recall.md)
    memory_read: bool = True   # [ours] before the blocks, each noisy token reads the memory of its own spatial
                               # cell at every time and unpacks it by its place in the cell (dit.py:MemoryRead)
    abs_pos: bool = True       # [ours] also add a learned projection of 3D Fourier positions
    cross_attn: bool = False   # paper's enhancement: every block also cross-attends to memory
    context_cache: bool = False  # [ours] memory tokens attend only to memory, so sampling computes their
                               # keys/values once per chunk, not once per Euler step (bench.py's cost curve)
    captions: bool = False     # condition the DiT on per-frame captions c (the storyboard world; a tiny
                               # text encoder in dit.py, added to the time embedding in adaLN [ours as to form])
    caption_dropout: float = 0.1  # share of training samples whose captions are dropped, so that sampling
                               # without captions still works
    memory_captions: bool = False  # [ours] memory and window tokens carry the caption of their history frame
                               # too (adaLN, through a zero-initialised layer), so a caption can find its shot
    # --- the compressor phi (compressor.py) -------------------------------------------------
    compressor: str = "pfp"    # pfp | only_lr | without_lr | large_patchifier | none
    rate: str = "2x2x2"        # h x w x t compression relative to the DiT's token grid
    hr_channels: int = 32      # width of the HR branch's full-resolution 3D convolutions
    hr_blocks: int = 1         # attention blocks of the HR branch over the compressed grid
    # --- stage-1 objective (train_pfp.py) ---------------------------------------------------
    omega: str = "random"      # random: targets uniform over the history | last: the "cheat"
    targets: int = 2           # |Omega|, frames reconstructed per history per step
    noise_as_mask: bool = False  # [ours, flag] add the non-selected frames as noised tokens
    mask_noise_min: float = 0.2  # their noise level ~ U[mask_noise_min, 1] (paper: "about 0.2")
    t_mean: float = 0.0        # logit-normal timestep sampling: t = sigmoid(N(t_mean, t_std))
    t_std: float = 1.0         # spread of the logit-normal timestep distribution
    t_shift: float = 3.0       # SD3-style shift; > 1 spends more steps at high noise
    sample_steps: int = 16     # Euler steps for retrieval and generation
    # --- stage 2, autoregressive fine-tuning (train_ar.py) ----------------------------------
    chunk: int = 2             # latent frames generated per autoregressive step
    window: int = 2            # latent frames before the split kept uncompressed beside phi(H) (paper's tiny window)
    split_full: float = 0.0    # [ours] share of stage-2 steps split after the whole history (else s is uniform)
    split_return: float = 0.0  # [ours] share of stage-2 micro-batches whose chunk holds a cut back to an earlier
                               # shot (--data storyboard), the steps where only memory can know the look
    # --- optimisation -----------------------------------------------------------------------
    steps: int = 1000          # optimizer steps
    batch: int = 8             # global batch: processes x --accum micro-batches
    lr: float = 2e-3           # AdamW peak learning rate (linear warmup, cosine decay to 10%)
    dit_lr_scale: float = 1.0  # [ours] the DiT's learning rate as a share of --lr: below 1 adapts a
                               # pretrained base lightly while phi learns at the full rate
    warmup: int = 100          # warmup steps of the learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0     # gradient norm clipped to this
    ema: float = 0.99          # decay of the EMA weights that evaluation and sampling use
    seed: int = 0              # seeds the initial weights and every micro-batch's draws
    # --- scaling up: the same run on more hardware (README, "Scaling up") ---------------------
    accum: int = 1             # micro-batches per process per step: --batch is always the global batch
    dtype: str = "fp32"        # fp32 | bf16: bf16 autocast for the training forward (weights stay fp32)
    compile: bool = False      # torch.compile the DiT and the compressor (slow to start; for long runs)
    # --- data, evaluation, output -----------------------------------------------------------
    data: str = "synthetic"    # "synthetic", "storyboard" (shots, cuts and captions: storyboard.py) or a folder of videos
    min_first: int = 2         # [ours] storyboard training stories show their first shot A for at least this many
                               # frames before the first cut; 1 lets A be a single frame, which a 2-frame memory
                               # token shares with the next shot (the cut-back benchmark's longest gap)
    min_away: int = 3          # [ours] storyboard training stories stay on B (and C) for at least this many frames
                               # before cutting back to A; 2 lets B fill just a 2-frame window (the cut-back
                               # benchmark's shortest gap, 3)
    train_videos: int = 1024   # synthetic training videos generated at start
    val_videos: int = 16       # held-out videos (synthetic: disjoint seeds; folder: last clips)
    eval_every: int = 500      # steps between validation passes
    log_every: int = 20        # steps between lines of metrics.jsonl
    ckpt_every: int = 100      # steps between checkpoints (also on Ctrl-C/SIGTERM); --resume continues from the last
    max_bad_steps: int = 5     # NaN guard: a step with a non-finite loss or gradient is skipped; this many in a row stop the run
    out: str = ""              # run folder; default runs/<name>
    threads: int = 0           # torch CPU threads; 0 keeps PyTorch's default
    device: str = "cpu"        # cpu | cuda (| cuda:N): where the models and videos live

    # derived sizes, written once here so every file agrees
    @property
    def block_channels(self) -> int:
        """Channels of a lossless latent cell: the 3 x vt x vs x vs pixels of one block (the HR branch's input)."""
        return 3 * self.vae_space ** 2 * self.vae_time

    @property
    def latent_channels(self) -> int:
        """Channels of the DiT's latent: the whole block, or its K leading PCA components (--latent pca)."""
        return self.pca_channels if self.latent == "pca" else self.block_channels

    @property
    def latent_frames(self) -> int:
        return self.history // self.vae_time

    @property
    def token_grid(self) -> tuple:
        """(frames, rows, cols) of DiT tokens for the whole history."""
        s = self.vae_space * self.patch
        return self.latent_frames, self.height // s, self.width // s

    @property
    def rate_hwt(self) -> tuple:
        h, w, t = (int(r) for r in self.rate.split("x"))
        return h, w, t


SCALES = {
    # CPU minutes: 32x32 frames, 16-frame history, 8x8 tokens a frame, 128 memory tokens at 2x2x2
    "tiny": Config(),
    # one GPU, hours: 128x128, 64-frame history, 16x16 tokens a frame
    "small": Config(rate="4x4x2", height=128, width=128, history=64, vae_space=4, dim=512, depth=8, heads=8,
                    hr_channels=64, hr_blocks=2, targets=4, steps=40_000, batch=32, lr=3e-4,
                    warmup=1000, ema=0.999, train_videos=2048, eval_every=2000, rope_base=1000.0),
    # the paper's shapes: 20 s of 480x832 at 24 fps, an 8x8x4 VAE, a 3072-wide DiT; counts only
    "paper": Config(rate="4x4x2", height=480, width=832, history=480, vae_space=8, vae_time=4, dim=3072,
                    depth=40, heads=24, hr_channels=128, hr_blocks=2, targets=4, batch=1,
                    lr=1e-4, rope_base=10000.0),
}
COMPRESSORS = ["pfp", "only_lr", "without_lr", "large_patchifier", "none"]
CHOICES = {"compressor": COMPRESSORS, "omega": ["random", "last"], "dtype": ["fp32", "bf16"], "latent": ["lossless", "pca"]}


MIN_SIDE = 11    # metrics.SSIM_WINDOW: SSIM needs frames at least this wide and high
CAPTION_LENGTH = 8   # tokens per caption c (0 = padding): storyboard.py writes them, dit.py reads them
CAPTION_VOCAB = 64   # token ids dit.py's text encoder knows; captions.VOCABULARY fills the first of them


class ConfigError(ValueError):
    """A bad setting: the message is one line naming the problem and the fix."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM during training: the checkpoint is saved; the message says how to resume."""


def fail(message: str):
    """One line on stderr and exit code 2: how every script reports bad input."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def finite_float(text: str) -> float:
    """argparse type for float flags: nan and inf are refused where they are typed."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def seed_int(text: str) -> int:
    """argparse type for seeds: an integer in [0, 2**63), what torch's generators take."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer")
    if not 0 <= value < 2 ** 63:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 2**63)")
    return value


SIGNALLED = []   # the signals run_main's handler has seen: a run checks it before it writes (RunFolder.start)


def stop_quietly(message: str):
    """The one line, then exit 130; a second Ctrl-C during the exit is ignored, not a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(message, file=sys.stderr)
    sys.exit(130)


def run_main(main):
    """Run a script's main(): bad input (ConfigError, DataError) is one line and exit 2 (fail);
    Ctrl-C or SIGTERM is one line and exit 130, never a traceback: inside a training loop the
    loop saves first and raises Interrupted (training.interruptible), anywhere else it just stops."""
    def on_signal(number, frame):
        SIGNALLED.append(number)                 # also noted, in case the KeyboardInterrupt is swallowed
        raise KeyboardInterrupt                  # (e.g. inside a library's lazy import): see RunFolder.start
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        main()
    except ConfigError as e:                     # data.DataError is one too
        fail(str(e))
    except Interrupted as e:                     # the training loop saved first; its message says how to go on
        stop_quietly(str(e))
    except KeyboardInterrupt:
        stop_quietly(f"interrupted: {os.path.basename(sys.argv[0])} stopped; files it had finished are kept")
    except MemoryError:                          # torch.OutOfMemoryError too: an estimate in footprint.py fell short
        fail("out of memory: ask for less (training: --batch or a higher --accum, --history, --height/--width, "
             "--train_videos; other scripts: their counts and sizes) or use a machine with more memory")
    except OSError as e:                         # a full disk, a folder gone mid-run: what and where, not a traceback
        fail(f"{e.strerror or e}{f': {e.filename}' if e.filename else ''}; files written before it are kept")


def check(cfg: Config) -> Config:
    """Raise ConfigError for a setting no model can be built from."""
    for name in ("height", "width", "history", "frame_stride", "vae_space", "vae_time", "pca_channels", "patch", "dim", "depth", "heads",
                 "mlp_ratio", "hr_channels", "steps", "batch", "accum", "sample_steps", "chunk", "train_videos",
                 "val_videos", "eval_every", "log_every", "ckpt_every", "max_bad_steps", "min_first", "min_away"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name} must be a positive integer, got {getattr(cfg, name)}")
    for f in fields(cfg):
        if f.type is float and not math.isfinite(getattr(cfg, f.name)):
            raise ConfigError(f"--{f.name} must be a finite number, got {getattr(cfg, f.name)}")
    if not 0 <= cfg.seed < 2 ** 63:
        raise ConfigError(f"--seed must be in [0, 2**63), got {cfg.seed}")
    if min(cfg.height, cfg.width) < MIN_SIDE:
        raise ConfigError(f"--height/--width {cfg.height}x{cfg.width}: at least {MIN_SIDE} pixels each, the side of "
                          f"the SSIM window every evaluation uses (metrics.py)")
    ranges = {"ema": (0 <= cfg.ema < 1, "in [0, 1)"), "lr": (cfg.lr > 0, "above 0"), "dit_lr_scale": (cfg.dit_lr_scale > 0, "above 0"),
              "mask_noise_min": (0 <= cfg.mask_noise_min <= 1, "in [0, 1]"), "split_full": (0 <= cfg.split_full <= 1, "in [0, 1]"),
              "split_return": (0 <= cfg.split_return <= 1, "in [0, 1]"),
              "caption_dropout": (0 <= cfg.caption_dropout <= 1, "in [0, 1]"),
              "grad_clip": (cfg.grad_clip > 0, "above 0"), "weight_decay": (cfg.weight_decay >= 0, "0 or more"),
              "t_std": (cfg.t_std > 0, "above 0"), "t_shift": (cfg.t_shift > 0, "above 0"),
              "pos_bias": (cfg.pos_bias >= 0, "0 or more"), "rope_base": (cfg.rope_base > 1, "above 1"),
              "window": (cfg.window >= 0, "0 or more latent frames"), "hr_blocks": (cfg.hr_blocks >= 0, "0 or more"),
              "warmup": (cfg.warmup >= 0, "0 or more steps"), "threads": (0 <= cfg.threads <= 4 * (os.cpu_count() or 1), f"0 (PyTorch's default) to {4 * (os.cpu_count() or 1)}, "
                                                                          f"4 per core of this machine")}
    for name, (ok, allowed) in ranges.items():
        if not ok:
            raise ConfigError(f"--{name} must be {allowed}, got {getattr(cfg, name)}")
    if cfg.device != "cpu" and not cfg.device.startswith("cuda"):
        raise ConfigError(f"unknown --device {cfg.device!r}: choose cpu, cuda or cuda:N")
    if cfg.memory_captions and not cfg.captions:
        raise ConfigError("--memory_captions true gives memory tokens their frames' captions: it needs --captions true")
    for name, allowed in CHOICES.items():
        if getattr(cfg, name) not in allowed:
            raise ConfigError(f"unknown --{name} {getattr(cfg, name)!r}: choose from {', '.join(allowed)}")
    try:
        rh, rw, rt = cfg.rate_hwt
        assert min(rh, rw, rt) >= 1
    except (ValueError, AssertionError):
        raise ConfigError(f"--rate {cfg.rate!r} is not HxWxT with positive integers: try 4x4x2, 2x2x2 or 2x2x1")
    s = cfg.vae_space * cfg.patch
    if cfg.height % s or cfg.width % s:
        raise ConfigError(f"--height/--width {cfg.height}x{cfg.width} must be multiples of vae_space*patch = {s}")
    if cfg.history % cfg.vae_time:
        raise ConfigError(f"--history {cfg.history} must be a multiple of --vae_time {cfg.vae_time}")
    if cfg.latent == "pca" and cfg.pca_channels > cfg.block_channels:
        raise ConfigError(f"--pca_channels {cfg.pca_channels}: a PCA keeps at most the {cfg.block_channels} channels of a "
                          f"{cfg.vae_time}x{cfg.vae_space}x{cfg.vae_space} pixel block; pick 1 to {cfg.block_channels}")
    if cfg.dim % cfg.heads or (cfg.dim // cfg.heads) % 2:
        raise ConfigError(f"--dim {cfg.dim} must be divisible by --heads {cfg.heads} into an even head dim")
    if not 1 <= cfg.targets <= cfg.latent_frames:
        raise ConfigError(f"--targets {cfg.targets} must be between 1 and the {cfg.latent_frames} latent frames of the history")
    return cfg


def result_fields(cfg: Config, skip=()) -> dict:
    """The fields that change what a run learns, for cache keys (evaluate.py, recall.py): not where
    or how fast it runs. Fields added after the results were cached count only when set away from
    their default, so those caches stay valid."""
    where = ("out", "threads", "device", "eval_every", "log_every", "ckpt_every", "max_bad_steps", "compile", *skip)
    added_later = {"context_cache": False, "accum": 1, "dtype": "fp32", "captions": False, "caption_dropout": 0.1,
                   "split_return": 0.0, "dit_lr_scale": 1.0, "latent": "lossless", "pca_channels": 4,
                   "memory_captions": False, "min_first": 2, "min_away": 3}
    return {k: v for k, v in asdict(cfg).items()
            if k not in where and not (k in added_later and v == added_later[k])}


def field_comments() -> dict:
    """{field: the comment beside it in Config above, continuation lines included}: each flag's --help."""
    comments, name = {}, None
    for line in inspect.getsource(Config).splitlines():
        field = re.match(r"\s+(\w+): \w+ = [^#]*#\s*(.*)", line)
        more = re.match(r"\s+#\s*(.*)", line)
        if field:
            name, comments[field.group(1)] = field.group(1), field.group(2)
        elif more and name and not line.strip().startswith("# ---"):
            comments[name] += " " + more.group(1)
        else:
            name = None
    return comments


FLAG_GROUPS = {   # --help shows the method's knobs first, then our switches, then sizes and machinery
    "the method (the paper's knobs)": ["data", "history", "compressor", "rate", "omega", "targets", "captions",
                                       "caption_dropout", "cross_attn", "chunk", "window", "mask_noise_min",
                                       "t_shift", "sample_steps", "steps", "batch", "lr", "dit_lr_scale"],
    "[ours] switches": ["memory_read", "pos_bias", "abs_pos", "rope_base", "noise_as_mask", "context_cache", "split_full",
                        "split_return", "memory_captions", "min_first", "min_away", "latent", "pca_channels"],
    "sizes": ["height", "width", "frame_stride", "vae_space", "vae_time", "patch", "dim", "depth", "heads",
              "mlp_ratio", "hr_channels", "hr_blocks"],
    "machinery": ["t_mean", "t_std", "warmup", "weight_decay", "grad_clip", "ema", "seed", "accum", "dtype",
                  "compile", "train_videos", "val_videos", "eval_every", "log_every", "ckpt_every",
                  "max_bad_steps", "out", "threads", "device"],
}


def add_config_flags(parser: argparse.ArgumentParser):
    """--scale plus one flag per Config field; a flag left unset keeps the preset's value."""
    def parse_bool(text: str) -> bool:
        if text.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise argparse.ArgumentTypeError(f"{text!r} is not a yes/no value: write true or false")
        return text.lower() in ("1", "true", "yes", "on")

    parser.usage = parser.usage or "%(prog)s [--flag value ...]   (the flags below, by group)"
    comments = field_comments()
    groups = {title: parser.add_argument_group(title) for title in FLAG_GROUPS}
    group_of = {name: groups[title] for title, names in FLAG_GROUPS.items() for name in names}
    groups[next(iter(FLAG_GROUPS))].add_argument(
        "--scale", default="tiny", choices=list(SCALES), help="preset to start from (default tiny)")
    for f in fields(Config):
        kind = {bool: parse_bool, float: finite_float}.get(f.type, seed_int if f.name == "seed" else f.type)
        choices = CHOICES.get(f.name)
        preset = ", ".join(f"{name} {getattr(cfg, f.name)!r}" for name, cfg in SCALES.items())
        group_of[f.name].add_argument(f"--{f.name}", type=kind, default=None, choices=choices,
                            help=f"{comments.get(f.name, '')} (presets: {preset})".replace("%", "%%"))
    parser.error = fail  # argparse's own errors become one line with exit code 2


def config_from_args(args: argparse.Namespace, base: dict = None) -> Config:
    """The preset named by --scale (or `base`, e.g. a checkpoint's config, whose missing fields,
    added after it was saved, take their defaults), then every flag given."""
    values = {**asdict(Config()), **base} if base else asdict(SCALES[args.scale])
    values.update({k: v for k, v in vars(args).items() if k in values and v is not None})
    return check(Config(**values))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser)
    try:
        cfg = config_from_args(parser.parse_args())
    except ConfigError as e:
        fail(str(e))
    for k, v in asdict(cfg).items():
        print(f"{k:>16} = {v}")
    print(f"{'latent shape':>16} = {cfg.latent_frames} x {cfg.latent_channels} x {cfg.height // cfg.vae_space} x {cfg.width // cfg.vae_space}")
    print(f"{'token grid':>16} = {cfg.token_grid} (frames, rows, cols)")
