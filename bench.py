"""What pfp-mini costs: training utilisation, and the autoregressive cost of memory (docs/paper.md,
"The idea": phi's context grows slowly with the history; a raw history grows without bound).

Training: for each preset that fits the machine, ms/step, tokens/s, and model FLOPs utilisation
(MFU): the FLOPs PyTorch's FlopCounterMode counts in one step's forward and backward (matmuls,
convolutions, attention), divided by the step time and by this machine's own matmul peak,
measured in the same run (the median of square matmuls in the training dtype). Peak memory is
the allocator's peak on a GPU, and on a CPU the rise of the process's high-water mark (RSS).

AR cost curve: the time and memory to sample one chunk after a history of 8 to 256 frames, for
pfp (at the paper's 4x4x2 and our tiny 2x2x2), the full raw history and the window alone, all
with --context_cache (keys/values of the context computed once per chunk), plus pfp without it.
Each point runs in a fresh process, so its memory is its own.

    python bench.py                       # tiny on this machine + the AR curve, ~10 min on 2 cores
    python bench.py --skip_curve          # training utilisation only, ~1 min
    python bench.py --device cuda --scales tiny small --dtype bf16 --compile   # a GPU

Writes results/bench.md, results/bench.json and results/ar_cost.png (the --out folder).
Letters: B batch, N tokens, D width.
"""
import argparse
import json
import math
import os
import signal
import statistics
import time
from dataclasses import replace
from multiprocessing import get_context

import torch
from torch.utils import flop_counter

from config import SCALES, Config, check, fail, run_main
from compressor import Compressor
from dit import DiT
from footprint import activation_bytes, human_bytes, machine_memory
from plot import line_chart
from checkpoint import writable_folder, write_atomically
from sample import next_chunk
from train_pfp import PFPLoss
from training import autocast, make_optimizer, micro_batch, random_batch, update_ema, update_is_safe

# PyTorch counts the FLOPs of the GPU attention kernels but not of the CPU one; register it.
_cpu_attention = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
if _cpu_attention is not None and _cpu_attention not in flop_counter.flop_registry:
    @flop_counter.register_flop_formula(_cpu_attention)
    def _cpu_attention_flops(query, key, value, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_flop_count(query, key, value)                  # shapes, not tensors

    @flop_counter.register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward)
    def _cpu_attention_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


CURVE_FRAMES = [8, 16, 32, 64, 128, 256]
CURVE_ROWS = {   # label: (compressor, rate, context_cache)
    "pfp 4x4x2": ("pfp", "4x4x2", True),
    "pfp 2x2x2": ("pfp", "2x2x2", True),
    "full history": ("only_lr", "1x1x1", True),
    "window only": ("none", "2x2x2", True),
    "pfp 4x4x2, no cache": ("pfp", "4x4x2", False),
}
# every history length of the curve and the ratio must be a whole number of each row's memory frames
HISTORY_STEP = SCALES["tiny"].vae_time * max(int(rate.split("x")[2]) for _, rate, _ in CURVE_ROWS.values())


def synchronize(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_seconds(fn, device: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(device: str, dtype: torch.dtype, n: int = 2048) -> float:
    """FLOP/s of an n x n matmul in dtype on this machine now: the MFU denominator."""
    n = 8192 if device.startswith("cuda") else n
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    median_seconds(lambda: a @ b, device, 3)                                   # warm up
    return 2 * n ** 3 / median_seconds(lambda: a @ b, device, 10)


def proc_status_bytes(field: str) -> int:
    """A memory line of Linux's /proc/self/status (VmRSS: resident now; VmHWM: its peak), in bytes."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def peak_memory_reset(device: str) -> int:
    """Start a peak-memory measurement -> the baseline to pass to peak_memory_since. On a CPU,
    Linux's resident-set peak (VmHWM) is reset by writing 5 to /proc/self/clear_refs."""
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return proc_status_bytes("VmRSS")


def peak_memory_since(device: str, baseline: int) -> int:
    """Bytes the peak rose above `baseline`: the allocator's on a GPU, the process's RSS on a CPU
    (so memory the allocator had already freed and reuses does not count)."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() - baseline
    return proc_status_bytes("VmHWM") - baseline


# --- training utilisation ---------------------------------------------------------------------
def training_speed(cfg: Config, steps: int) -> dict:
    """Time the real training step (train_pfp.train's: micro-batches, clip, guard, AdamW, EMA)
    on random videos -> ms/step, tokens/s, FLOPs per step, MFU and peak memory."""
    device = cfg.device
    torch.manual_seed(0)
    dit, phi = DiT(cfg).to(device), Compressor(cfg).to(device)
    ema_pairs = [(p.detach().clone(), p) for p in [*dit.parameters(), *phi.parameters()]]
    params = [p for _, p in ema_pairs]
    optimizer, schedule = make_optimizer(dit, phi, cfg)
    videos = torch.rand(2 * cfg.batch, cfg.history, 3, cfg.height, cfg.width, device=device) * 2 - 1
    micro = cfg.batch // cfg.accum
    loss_fn = PFPLoss(dit, phi, cfg)
    pool = torch.arange(len(videos), device=device)

    def step():                                          # as train_pfp.train's loop writes it
        for i in range(cfg.accum):
            with micro_batch(loss_fn, 0, 0, i, cfg):
                with autocast(cfg):
                    loss = loss_fn(random_batch(videos, pool, micro, cfg))[0]
                (loss / cfg.accum).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        if update_is_safe(loss.detach(), grad_norm, params, optimizer):
            optimizer.step()
            schedule.step()
            update_ema(ema_pairs, 0, cfg)
        optimizer.zero_grad(set_to_none=True)
    counter = flop_counter.FlopCounterMode(display=False)
    baseline = peak_memory_reset(device)
    with counter:                                        # eager, before any compilation
        step()
    memory = peak_memory_since(device, baseline)
    flops = counter.get_total_flops()
    if cfg.compile:
        dit.compile()
        phi.compile()
    median_seconds(step, device, 3)                      # warm up (and compile)
    seconds = median_seconds(step, device, steps)
    n_memory = phi(videos[:1], dit.latent).shape[1]
    tokens = cfg.batch * (n_memory + cfg.targets * math.prod(cfg.token_grid[1:]))
    params_m = sum(p.numel() for p in params) / 1e6
    return {"ms_per_step": 1000 * seconds, "tokens_per_s": tokens / seconds, "flops_per_step": flops,
            "achieved_flops": flops / seconds, "params_m": params_m, "peak_memory_bytes": memory}


# --- the AR cost curve ------------------------------------------------------------------------
def chunk_cost(cfg: Config, frames: int, repeats: int) -> dict:
    """Sample one chunk after a `frames`-frame history (untrained weights: cost does not depend on
    them) -> median ms, the context tokens, and the peak memory of the first (warm-up) chunk."""
    torch.set_num_threads(cfg.threads or torch.get_num_threads())
    torch.manual_seed(0)
    dit, phi = DiT(cfg).to(cfg.device).eval(), Compressor(cfg).to(cfg.device).eval()
    video = torch.rand(1, frames, 3, cfg.height, cfg.width, device=cfg.device) * 2 - 1
    s = frames // cfg.vae_time
    baseline = peak_memory_reset(cfg.device)
    start = time.perf_counter()
    _, n_context = next_chunk(dit, phi, video, s, cfg)
    memory = peak_memory_since(cfg.device, baseline)
    if time.perf_counter() - start > 2:                  # the slowest points (full history, long): fewer repeats
        repeats = min(repeats, 2)
    seconds = median_seconds(lambda: next_chunk(dit, phi, video, s, cfg), cfg.device, repeats)
    return {"ms": 1000 * seconds, "context_tokens": n_context, "peak_memory_bytes": memory}


def spawn_pool():
    """A pool of one fresh process that ignores Ctrl-C. A terminal sends Ctrl-C to the whole process
    group; only this process should answer it (one line, run_main), terminating the pool as it
    leaves. SIGINT ignored when the process starts stays ignored, even while it imports torch."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return get_context("spawn").Pool(1)
    finally:
        signal.signal(signal.SIGINT, previous)


def ar_cost_curve(base: Config, frames: list, repeats: int) -> dict:
    """{row: [chunk_cost per history length]}, each point in a fresh process (its own memory peak)."""
    curve = {}
    for label, (compressor, rate, cache) in CURVE_ROWS.items():
        cfg = check(replace(base, compressor=compressor, rate=rate, context_cache=cache))
        curve[label] = []
        for n in frames:
            with spawn_pool() as pool:                  # leaving it (Ctrl-C too) terminates the process
                point = pool.apply(chunk_cost, (cfg, n, repeats))
            curve[label].append({"frames": n, **point})
            print(f"  {label:>20} {n:>4} frames: {point['context_tokens']:>6} context tokens, "
                  f"{point['ms']:>8.0f} ms/chunk, {point['peak_memory_bytes'] / 2 ** 20:>7.0f} MiB")
    return curve


def cost_ratio(base: Config, short: int, long: int, repeats: int) -> dict:
    """{row: median ms after `long` frames / after `short`}, the two lengths timed alternately in one
    process, so that a change in the machine's load hits both alike (the bar: 16 x)."""
    ratios = {}
    for label, (compressor, rate, cache) in CURVE_ROWS.items():
        cfg = check(replace(base, compressor=compressor, rate=rate, context_cache=cache))
        torch.manual_seed(0)
        dit, phi = DiT(cfg).to(cfg.device).eval(), Compressor(cfg).to(cfg.device).eval()
        videos = {n: torch.rand(1, n, 3, cfg.height, cfg.width, device=cfg.device) * 2 - 1 for n in (short, long)}
        times = {short: [], long: []}
        for i in range(repeats + 1):                                       # the first round warms up
            for n, video in videos.items():
                seconds = median_seconds(lambda: next_chunk(dit, phi, video, n // cfg.vae_time, cfg), cfg.device, 1)
                times[n] += [seconds] if i else []
        ratios[label] = statistics.median(times[long]) / statistics.median(times[short])
        print(f"  {label:>20}: {long} frames / {short} frames = {ratios[label]:.2f}x")
    return ratios


# --- the report --------------------------------------------------------------------------------
def report(machine: str, speeds: dict, curve: dict, frames: list, ratios: dict, lengths: list) -> str:
    lines = ["# pfp-mini cost benchmark\n", f"Machine: {machine}. Regenerate: `python bench.py`.\n",
             "## Training (stage 1, the real step: forward, backward, AdamW, EMA)\n",
             "| preset | params | dtype | batch | ms/step | tokens/s | TFLOP/step | matmul peak (TFLOP/s) | MFU | peak memory |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in speeds.items():
        lines.append(f"| {name} | {r['params_m']:.1f}M | {r['dtype']} | {r['batch']} | {r['ms_per_step']:.0f} | "
                     f"{r['tokens_per_s']:,.0f} | {r['flops_per_step'] / 1e12:.3f} | {r['peak_flops'] / 1e12:.3f} | "
                     f"{100 * r['mfu']:.0f}% | {r['peak_memory_bytes'] / 2 ** 20:,.0f} MiB |")
    if curve:
        short, long = lengths
        lines += ["", "## AR cost: one chunk after a history of F frames (ms, median; tiny preset, untrained weights)\n",
                  "| row | " + " | ".join(f"{n}" for n in frames) + f" | {long} / {short}, alternating |",
                  "|---|" + "---|" * (len(frames) + 1)]
        for label, points in curve.items():
            lines.append(f"| {label} | " + " | ".join(f"{p['ms']:,.0f}" for p in points) + f" | {ratios[label]:.2f}x |")
        lines += ["", "Context tokens per chunk:\n", "| row | " + " | ".join(f"{n}" for n in frames) + " |",
                  "|---|" + "---|" * len(frames)]
        for label, points in curve.items():
            lines.append(f"| {label} | " + " | ".join(f"{p['context_tokens']:,}" for p in points) + " |")
        lines += ["", "Peak memory of one chunk (MiB above the process's baseline):\n",
                  "| row | " + " | ".join(f"{n}" for n in frames) + " |", "|---|" + "---|" * len(frames)]
        for label, points in curve.items():
            lines.append(f"| {label} | " + " | ".join(f"{p['peak_memory_bytes'] / 2 ** 20:,.0f}" for p in points) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", nargs="+", default=["tiny", "small"], choices=["tiny", "small"],
                        help="presets to time in training, each only if its activations fit the machine's memory "
                             "(default tiny small; paper never fits: see dit.py --scale paper)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="training dtype (default fp32)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the models in the training timing")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per preset (default 10)")
    parser.add_argument("--skip_curve", action="store_true", help="training utilisation only")
    parser.add_argument("--frames", type=int, nargs="+", default=CURVE_FRAMES,
                        help="history lengths of the AR curve (default 8 16 32 64 128 256)")
    parser.add_argument("--repeats", type=int, default=5, help="timed chunks per curve point (default 5)")
    parser.add_argument("--ratio", type=int, nargs=2, default=[16, 256], metavar=("SHORT", "LONG"),
                        help="the bar's two history lengths, timed alternately in one process (default 16 256)")
    parser.add_argument("--out", default="results", help="folder for bench.md, bench.json, ar_cost.png")
    parser.error = fail
    args = parser.parse_args()
    check(replace(SCALES["tiny"], device=args.device))                 # an unknown --device
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        fail(f"--device {args.device}: no CUDA GPU is visible to PyTorch here; use --device cpu")
    for name in ("steps", "repeats"):
        if getattr(args, name) < 1:
            fail(f"--{name} must be a positive integer, got {getattr(args, name)}")
    short, long = args.ratio
    for flag, lengths in (("--frames", args.frames), ("--ratio", args.ratio)):
        bad = [n for n in lengths if n < HISTORY_STEP or n % HISTORY_STEP]
        if bad:
            fail(f"{flag} {bad[0]}: history lengths must be positive multiples of {HISTORY_STEP}, the frames of one "
                 f"memory step at 4x4x2 and 2x2x2; e.g. {' '.join(map(str, CURVE_FRAMES))}")
    if short >= long:
        fail(f"--ratio {short} {long}: SHORT must be below LONG, e.g. --ratio 16 256")
    writable_folder(args.out)                                          # before minutes of timing, not after
    machine = (torch.cuda.get_device_name() if args.device.startswith("cuda")
               else f"CPU, {torch.get_num_threads()} threads") + f", PyTorch {torch.__version__}"
    print(f"bench on {machine}")
    speeds = {}
    for name in args.scales:
        cfg = check(replace(SCALES[name], device=args.device, dtype=args.dtype, compile=args.compile))
        act = activation_bytes(cfg, batch=cfg.batch)
        need = (act["compressor"] + act["dit"]) / (2 if args.dtype == "bf16" else 1) + act["attention_bias"]
        if need > 0.7 * machine_memory(args.device):
            print(f"{name}: skipped, its batch of {cfg.batch} keeps ~{human_bytes(need)} of activations for backward, "
                  f"more than 70% of this machine's {human_bytes(machine_memory(args.device))}")
            continue
        dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
        peak = matmul_peak(args.device, dtype)
        r = training_speed(cfg, args.steps)
        peak = (peak + matmul_peak(args.device, dtype)) / 2       # before and after: the machine's state now
        speeds[name] = {**r, "peak_flops": peak, "mfu": r["achieved_flops"] / peak, "dtype": args.dtype,
                        "batch": cfg.batch, "compile": args.compile}
        print(f"{name}: {r['ms_per_step']:.0f} ms/step, {r['tokens_per_s']:,.0f} tokens/s, "
              f"{r['achieved_flops'] / 1e9:,.1f} GFLOP/s of a measured {peak / 1e9:,.1f} GFLOP/s matmul peak: "
              f"MFU {100 * speeds[name]['mfu']:.0f}%, peak memory {r['peak_memory_bytes'] / 2 ** 20:,.0f} MiB")
    curve, ratios = {}, {}
    if not args.skip_curve:
        print("AR cost curve (tiny preset, one chunk of "
              f"{SCALES['tiny'].chunk} latent frames, {SCALES['tiny'].sample_steps} Euler steps):")
        curve = ar_cost_curve(replace(SCALES["tiny"], device=args.device), sorted(args.frames), args.repeats)
        print(f"cost at {args.ratio[1]} frames over cost at {args.ratio[0]}, alternating the two:")
        ratios = cost_ratio(replace(SCALES["tiny"], device=args.device), *args.ratio, repeats=2 * args.repeats)
    os.makedirs(args.out, exist_ok=True)
    text = report(machine, speeds, curve, sorted(args.frames), ratios, args.ratio)
    print(text)
    stem = "bench" if args.device == "cpu" else "bench_gpu"
    write_atomically(os.path.join(args.out, f"{stem}.md"), lambda tmp: open(tmp, "w").write(text))
    blob = {"machine": machine, "training": speeds, "ar_cost": curve, "ratio_lengths": args.ratio, "ratios": ratios}
    write_atomically(os.path.join(args.out, f"{stem}.json"), lambda tmp: open(tmp, "w").write(json.dumps(blob, indent=1)))
    if curve:
        series = {label: ([p["frames"] for p in points], [p["ms"] for p in points]) for label, points in curve.items()}
        line_chart(series, os.path.join(args.out, "ar_cost.png" if args.device == "cpu" else "ar_cost_gpu.png"),
                   title="AR cost: one chunk after F history frames", xlabel="history frames F",
                   ylabel="ms per chunk", xlog=True, ylog=True)
        print(f"wrote {args.out}/{stem}.md, {stem}.json and the AR cost curve PNG")


if __name__ == "__main__":
    run_main(main)
