"""Learning speed: stage-1 retrieval PSNR against CPU-minutes of training, runs side by side.

How much a tiny model learns per CPU-minute decides what a laptop can show of the method. This
reads finished or running train_pfp.py run folders and draws, for each, its validation PSNR
(sampled, the paper's metric, and the DiT's posterior mean) against the minutes it trained,
with the no-network references of its rate beside them; the table says when each run first
reached --target dB. Run the recipes to compare at the same time, on the same cores, so that
their minutes are comparable (results/learning_speed.md has the commands).

    python -m benchmarks.learning_speed runs/old runs/new --labels "old recipe" "new recipe" \\
        --target 20.18 --results results/learning_speed
    python -m benchmarks.learning_speed --paired runs/pfp_s0,runs/pfp_s1 runs/lp_s0,runs/lp_s1

Writes <results>/learning_speed.png and learning_speed.md; --paired prints the difference of two
sets of runs (seed by seed, on the same validation frames) with its 95% interval.
"""
import argparse
import json
import math
import os

import torch

from config import ConfigError, fail, run_main
from checkpoint import load_checkpoint, write_atomically
from data import VAL_SEED_OFFSET, synthetic_videos
from plot import line_chart
from train_pfp import evaluate_retrieval


def read_run(run: str) -> dict:
    """A train_pfp.py run folder -> {"points": [(minutes, step, sampled, posterior mean)], "floors": {..}}.
    Minutes are training time alone (validation excluded), summed from metrics.jsonl's ms_per_step."""
    try:
        config = json.load(open(os.path.join(run, "config.json")))
        lines = open(os.path.join(run, "metrics.jsonl"), errors="replace").read().splitlines()
    except (OSError, ValueError) as e:
        raise ConfigError(f"{run}: not a train_pfp.py run folder with config.json and metrics.jsonl ({e})") from e
    summary_path = os.path.join(run, "summary.json")
    summary = json.load(open(summary_path)) if os.path.isfile(summary_path) else {}
    seconds, last_step, points = 0.0, 0, []
    for line in filter(str.strip, lines):
        try:
            row = json.loads(line)
        except ValueError:                                 # a line cut short by a kill
            continue
        if "ms_per_step" in row:
            seconds += row["ms_per_step"] / 1000 * (row["step"] - last_step)
            last_step = row["step"]
        val = row.get("val")
        if isinstance(val, dict) and "psnr" in val:
            final = row["step"] >= config["steps"] and "train_seconds" in summary
            at = summary["train_seconds"] if final else seconds
            points.append((at / 60, row["step"], val["psnr"], val.get("psnr_mean", math.nan)))
    if not points:
        raise ConfigError(f"{run}: no validation row yet (one every --eval_every steps)")
    return {"points": points, "floors": summary.get("no_network", {}), "rate": config["rate"]}


def minutes_to_reach(points: list, target: float, column: int = 2):
    """The training minutes at which a curve first reaches target dB, linearly between the
    validation points around the crossing; None if it never does."""
    before = (0.0, -math.inf)
    for p in points:
        if p[column] >= target:
            (m0, y0), (m1, y1) = before, (p[0], p[column])
            return m1 if not math.isfinite(y0) else m0 + (m1 - m0) * (target - y0) / (y1 - y0)
        before = (p[0], p[column])
    return None


def report(runs: dict, target: float) -> str:
    """The markdown page: every validation point of every run, then the minutes to the target."""
    figure = lambda y: f"{y:.2f}" if math.isfinite(y) else "not measured"
    lines = ["| run | step | minutes | PSNR sampled | PSNR posterior mean |", "|---|---|---|---|---|"]
    for label, run in runs.items():
        lines += [f"| {label} | {s} | {m:.1f} | {figure(y)} | {figure(pm)} |" for m, s, y, pm in run["points"]]
    lines += ["", "Each run's last point is its final validation, every frame of every validation video; the "
                  "points before it are train_pfp.py's checks during training, on a few (8 videos, 2 groups "
                  "of frames each), so a crossing between them is a rough time."]
    lines += ["", f"| run | minutes to {target:.2f} dB sampled | minutes to {target:.2f} dB posterior mean "
                  f"| no network: mean frame, pooled |", "|---|---|---|---|"]
    for label, run in runs.items():
        reach = [minutes_to_reach(run["points"], target, c) for c in (2, 3)]
        floors = ", ".join(f"{run['floors'][k]:.2f}" for k in ("mean_frame", "pooled") if k in run["floors"])
        lines.append(f"| {label} | " + " | ".join("never" if r is None else f"{r:.1f}" for r in reach)
                     + f" | {floors or 'not yet (summary.json)'} |")
    return "\n".join(lines) + "\n"


@torch.no_grad()
def per_video_psnr(run: str) -> dict:
    """A run's EMA models on its validation videos, every frame once, as train_pfp.py's final
    evaluation draws them -> {"psnr": (V,), "psnr_mean": (V,)} each video's mean over its frames."""
    cfg, dit, phi, _ = load_checkpoint(os.path.join(run, "ckpt.pt"))
    if cfg.data != "synthetic":
        raise ConfigError(f"--paired: {run} was not trained on the synthetic world")
    val = synthetic_videos(range(VAL_SEED_OFFSET, VAL_SEED_OFFSET + cfg.val_videos), cfg.history, cfg.height)
    scores = evaluate_retrieval(dit, phi, val, cfg, groups_per_video=cfg.latent_frames // cfg.targets)
    per_video = cfg.latent_frames // cfg.targets * cfg.targets * cfg.vae_time         # frames a video
    return {key: scores[key].view(len(val), per_video).mean(1) for key in ("psnr", "psnr_mean")}


def paired(runs_a: list, runs_b: list) -> dict:
    """Runs a minus runs b, paired seed by seed and video by video -> {metric: (mean, 95% half-width)}."""
    if len(runs_a) != len(runs_b):
        raise ConfigError(f"--paired: {len(runs_a)} runs against {len(runs_b)}; pair them seed by seed")
    gaps = {"psnr": [], "psnr_mean": []}
    for a, b in zip(runs_a, runs_b):
        sa, sb = per_video_psnr(a), per_video_psnr(b)
        for key in gaps:
            gaps[key].append(sa[key] - sb[key])
    out = {}
    for key, values in gaps.items():
        x = torch.cat(values)                                              # (seeds * V,)
        out[key] = (x.mean().item(), 1.96 * x.std().item() / math.sqrt(len(x)))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", help="train_pfp.py run folders (each with config.json, metrics.jsonl)")
    parser.add_argument("--paired", nargs=2, metavar=("A,A2", "B,B2"),
                        help="two comma-separated lists of finished runs, paired seed by seed: print A - B")
    parser.add_argument("--labels", nargs="+", help="a name for each run (default: the folder names)")
    parser.add_argument("--target", type=float, default=20.18,
                        help="the PSNR whose first crossing the table times (default 20.18 dB)")
    parser.add_argument("--results", default="results/learning_speed", help="folder for the PNG and the page")
    parser.error = fail
    args = parser.parse_args()
    if args.paired:
        a, b = (group.split(",") for group in args.paired)
        for key, (mean, half) in paired(a, b).items():
            name = "sampled" if key == "psnr" else "posterior mean"
            print(f"{name}: A - B = {mean:+.2f} dB [{mean - half:+.2f}, {mean + half:+.2f}] (95%, per video and seed)")
        return
    if not args.runs:
        raise ConfigError("name the run folders to draw (or --paired A,.. B,..)")
    labels = args.labels or [os.path.basename(os.path.normpath(r)) for r in args.runs]
    if len(labels) != len(args.runs):
        raise ConfigError(f"--labels: {len(labels)} names for {len(args.runs)} runs; give one each")
    runs = {label: read_run(run) for label, run in zip(labels, args.runs)}
    series = {}
    for label, run in runs.items():
        minutes = [p[0] for p in run["points"]]
        series[f"{label}: sampled"] = (minutes, [p[2] for p in run["points"]])
        series[f"{label}: posterior mean"] = (minutes, [p[3] for p in run["points"]])
    end = max(p[0] for run in runs.values() for p in run["points"])
    for rate in sorted({run["rate"] for run in runs.values()}):
        floors = next(run["floors"] for run in runs.values() if run["rate"] == rate)
        for name, label in (("pooled", f"pooled video {rate}"), ("mean_frame", "mean frame")):
            if name in floors:
                series[f"no network: {label}"] = ([0, end], [floors[name]] * 2)
    os.makedirs(args.results, exist_ok=True)
    png, page = os.path.join(args.results, "learning_speed.png"), os.path.join(args.results, "learning_speed.md")
    line_chart(series, png, title="Stage-1 validation retrieval against training time",
               xlabel="CPU-minutes of training", ylabel="PSNR (dB)")
    write_atomically(page, lambda tmp: open(tmp, "w").write(report(runs, args.target)))
    print(report(runs, args.target), end="")
    print(f"wrote {png}, {page}")


if __name__ == "__main__":
    run_main(main)
