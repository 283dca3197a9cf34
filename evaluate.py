"""Table 1 in shape (docs/paper.md, "Baselines and results to reproduce"): random-frame retrieval
after stage-1 pretraining, one row per compressor, all trained with the same seeds, steps, data
and (at 4x4x2) the same number of memory tokens; plus the Omega ablation (random frames
against always the last ones, the "cheat" the paper warns of).

    python evaluate.py --quick        # the whole table on 2 CPU cores in about 30 minutes
    python evaluate.py                # the preset's full steps (2,000 at tiny): hours on CPU
    python evaluate.py --quick --tables synthetic        # one table only
    python evaluate.py --quick --from_base               # every row starts from a base video model
    python evaluate.py --quick --from_base --latent pca  # ... in a PCA latent with a known ceiling
    python evaluate.py --device cuda --shard 0/8 & ...   # n processes train the rows on one GPU; then
    python evaluate.py --device cuda                     # ... a last run reads the cache and reports
    python evaluate.py --curves runs/a runs/b            # validation PSNR against steps of train_pfp runs
    python evaluate.py --recall --quick                  # recall after a storyboard cut back (cut_back.py)
    python evaluate.py --objects                         # the single-shot object-recall benchmark (recall.py)

Every row is one train_pfp.train() run, cached in runs/table1/ under its full config: running
again with the same flags reads the finished rows back and trains only what is missing.
--from_base first trains a base video model on each table's clips (train_ar.py on the full raw
history, BASE_STEPS steps, as the paper starts from a pretrained video DiT) and starts every row
from its DiT, the LR branch from its patchifier; its table is written with the suffix _base,
beside the from-scratch one.
Validation: synthetic videos with seeds disjoint from training; real clips from --real, where
train_pfp.load_videos holds the last video (by name) out whole and validates on its clips.

Writes, for synthetic and for real clips (suffix _real):
    results/table1.md            our table beside the paper's, the gaps, and the orderings checked
    results/table1.json          every number behind it
    results/table1_position.png  PSNR against the position of the retrieved frame (Omega ablation)
    results/table1_rate.png      PSNR against memory tokens (the rate-quality curve)
    results/table1_grid.png      the same frames retrieved by every row
"""
import argparse
import json
import math
import os
import shlex
import sys
import time
from collections import namedtuple
from dataclasses import replace

import torch
from tqdm import tqdm

from config import SCALES, Config, ConfigError, check, fail, finite_float, run_main, seed_int
import cut_back
import recall
from plot import labelled_png, line_chart
from metrics import psnr
from checkpoint import load_checkpoint, writable_folder, write_atomically
from train_ar import train_ar
from train_pfp import no_network_baselines, retrieval_rows, train
from cache import cached_summary, folder, made, run_dir
from training import load_videos

Row = namedtuple("Row", "label compressor rate omega paper")   # paper: (PSNR, SSIM, LPIPS) or None
ROWS = [
    Row("Large Patchifier 4x4x2", "large_patchifier", "4x4x2", "random", (12.93, 0.412, 0.365)),
    Row("Only LR 4x4x2", "only_lr", "4x4x2", "random", (15.21, 0.472, 0.212)),
    Row("Without LR 4x4x2", "without_lr", "4x4x2", "random", (15.73, 0.423, 0.198)),
    Row("Proposed 4x4x2", "pfp", "4x4x2", "random", (17.41, 0.596, 0.171)),
    Row("Proposed 2x2x2", "pfp", "2x2x2", "random", (19.12, 0.683, 0.152)),
    Row("Proposed 2x2x1", "pfp", "2x2x1", "random", (20.19, 0.705, 0.121)),
    Row("No memory (floor)", "none", "4x4x2", "random", None),
]
OMEGA_LAST = Row("Proposed 4x4x2, Omega = last", "pfp", "4x4x2", "last", None)   # synthetic only
QUICK_STEPS = {"synthetic": 600, "real": 400}   # --quick: the whole table in ~30 min on 2 cores
BASE_STEPS = 450                                 # --from_base: the storyboard benchmark's base recipe [ours]


def base_model(cfg: Config, root: str, steps: int = BASE_STEPS, wait: bool = False) -> str:
    """The base video model of one table's clips: the DiT trained from scratch to predict the next
    chunk from the full raw history (train_ar.py, only LR at 1x1x1; it loads its own, longer
    clips), cached in root -> its ckpt.pt. wait: another process (shard 0) trains it."""
    base_cfg = replace(cfg, compressor="only_lr", rate="1x1x1", steps=steps)
    out = folder(root, f"base_{'synthetic' if cfg.data == 'synthetic' else 'real'}", base_cfg)
    if wait and cached_summary(out) is None:
        print(f"waiting for shard 0 to train the base in {out}")
    while wait and cached_summary(out) is None:
        time.sleep(30)
    made(train_ar, base_cfg, out, "none", stage=2, quiet=True, position=1)
    return os.path.join(out, "ckpt.pt")


def run_rows(jobs, data, root, bases=None):
    """jobs: [(Row, Config)] -> [summary], training the rows not cached yet; a bar across rows.
    bases: {data source: base ckpt.pt} to start every row from, or None (from scratch)."""
    summaries = []
    bar = tqdm(jobs, desc="table 1 rows", position=0, dynamic_ncols=True)
    for row, cfg in bar:
        init = bases[cfg.data] if bases else "none"
        out = run_dir(cfg, root, init)
        cached = cached_summary(out) is not None
        summary = made(train, cfg, out, data[cfg.data], quiet=True, position=1, init=init)
        summary.update(label=row.label, paper=row.paper, out=out)
        summaries.append(summary)
        lpips = "n/a" if summary["lpips"] is None else f"{summary['lpips']:.3f}"
        bar.write(f"{row.label:<30} {'synthetic' if cfg.data == 'synthetic' else 'real':<9} "
                  f"{summary['memory_tokens']:>4} tokens  PSNR {summary['psnr']:5.2f}  SSIM {summary['ssim']:.3f}  "
                  f"ST-LPIPS {lpips}  first/last third {summary['psnr_first']:5.2f}/{summary['psnr_last']:5.2f}  "
                  + ("cached" if cached else f"{summary['train_seconds'] / 60:.1f} min"))
    return summaries


@torch.no_grad()
def linear_references(train_videos, val, cfg: Config) -> dict:
    """What a *linear* code of each 4x4x2 memory keeps, with no network at all: PSNR of
    only_lr: the video average-pooled by (t, h, w) = the LR branch's input, blown back up;
    large_patchifier: each token sees one block of rt x (rh*s) x (rw*s) pixels and is a linear
    map of it into D numbers; the best such code is the block's top-D principal components,
    fitted on (up to 256) training videos. [ours: a reference point for reading Table 1]"""
    rh, rw, rt = cfg.rate_hwt
    s = cfg.vae_space * cfg.patch                               # pixels per DiT token, each way
    pooled = torch.nn.functional.avg_pool3d(val.transpose(1, 2), (rt, rh, rw))             # (V, 3, T/rt, H/rh, W/rw)
    up = pooled.repeat_interleave(rt, 2).repeat_interleave(rh, 3).repeat_interleave(rw, 4).transpose(1, 2)  # (V, T, 3, H, W)

    def to_blocks(v):                                           # (B, T, 3, H, W) -> (blocks, rt*3*bh*bw)
        B, T, C, H, W = v.shape
        x = v.reshape(B, T // rt, rt, C, H // (rh * s), rh * s, W // (rw * s), rw * s)
        return x.permute(0, 1, 4, 6, 2, 3, 5, 7).reshape(-1, rt * C * rh * s * rw * s)

    def from_blocks(x, shape):
        B, T, C, H, W = shape
        x = x.reshape(B, T // rt, H // (rh * s), W // (rw * s), rt, C, rh * s, rw * s)
        return x.permute(0, 1, 4, 5, 2, 6, 3, 7).reshape(shape)

    fit = to_blocks(train_videos[:256].double())
    mean = fit.mean(0)
    _, vectors = torch.linalg.eigh((fit - mean).T @ (fit - mean))               # ascending eigenvalues
    top = vectors[:, -cfg.dim:]                                                  # (block size, D)
    code = (to_blocks(val.double()) - mean) @ top                                # (blocks, D): the memory
    pca = from_blocks(code @ top.T + mean, val.shape).float().clamp(-1, 1)
    return {"only_lr": psnr(up, val).mean().item(), "large_patchifier": psnr(pca, val).mean().item()}


def orderings(rows) -> list:
    """The paper's claims, each checked on our PSNR: (claim, holds, the figures)."""
    by = {r["label"]: r for r in rows}
    p = lambda label: by[label]["psnr"] if label in by else None
    claims = [("Proposed 4x4x2 > Only LR 4x4x2", "Proposed 4x4x2", "Only LR 4x4x2"),
              ("Proposed 4x4x2 > Without LR 4x4x2", "Proposed 4x4x2", "Without LR 4x4x2"),
              ("Only LR 4x4x2 > Large Patchifier 4x4x2", "Only LR 4x4x2", "Large Patchifier 4x4x2"),
              ("Without LR 4x4x2 > Large Patchifier 4x4x2", "Without LR 4x4x2", "Large Patchifier 4x4x2"),
              ("Proposed 2x2x2 > Proposed 4x4x2", "Proposed 2x2x2", "Proposed 4x4x2"),
              ("Proposed 2x2x1 > Proposed 2x2x2", "Proposed 2x2x1", "Proposed 2x2x2")]
    out = [(claim, p(a) > p(b), f"{p(a):.2f} vs {p(b):.2f} dB") for claim, a, b in claims
           if p(a) is not None and p(b) is not None]
    # The Omega ablation: early = the first third of the history, late = the last k frames, the
    # ones `--omega last` is always asked for (a third would mix them with frames it never sees).
    for label, want_close in (("Proposed 4x4x2", True), (OMEGA_LAST.label, False)):
        if label in by:
            r = by[label]
            early, late = r["psnr_first"], sum(r["psnr_by_position"][-r["config"]["targets"]:]) / r["config"]["targets"]
            claim = f"{label}: first third within 2 dB of the last {r['config']['targets']} frames" if want_close else \
                    f"{label}: first third more than 2 dB below the last {r['config']['targets']} frames (the cheat)"
            out.append((claim, (late - early <= 2) == want_close, f"first third {early:.2f}, last frames {late:.2f} dB"))
    return out


def markdown(rows, title, references=None, floors=None) -> str:
    """Our table beside the paper's; gaps are measured against each table's Large Patchifier row.
    floors: {rate: no_network_baselines} for the columns of what no network scores at each row's rate."""
    fmt = lambda v, f: "n/a" if v is None else format(v, f)
    base = next((r for r in rows if r["compressor"] == "large_patchifier"), None)
    lines = [f"### {title}", "", f"Data: {rows[0]['data_split']}; {rows[0]['steps']} steps, batch "
             f"{rows[0]['config']['batch']}, seed {rows[0]['config']['seed']} for every row.", "",
             "| Row | memory tokens | PSNR | no network: mean frame / pooled | latent ceiling | SSIM | ST-LPIPS | "
             "PSNR first / last third | train min | PSNR - LP (ours) | paper PSNR | paper SSIM | paper LPIPS | "
             "PSNR - LP (paper) |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        paper = r["paper"] or (None, None, None)
        ours_gap = r["psnr"] - base["psnr"] if base else None
        paper_gap = paper[0] - 12.93 if paper[0] is not None else None
        floor = (floors or {}).get(r["rate"])
        floor = f"{floor['mean_frame']:.2f} / {floor['pooled']:.2f}" if floor else "n/a"
        ceiling = r.get("latent_ceiling_psnr")                          # None: the lossless latent, exact
        ceiling = "exact" if ceiling is None else f"{ceiling:.2f}"
        lines.append(f"| {r['label']} | {r['memory_tokens']} | {r['psnr']:.2f} | {floor} | {ceiling} | {r['ssim']:.3f} | "
                     f"{fmt(r['lpips'], '.3f')} | "
                     f"{r['psnr_first']:.2f} / {r['psnr_last']:.2f} | {r['train_seconds'] / 60:.1f} | "
                     f"{fmt(ours_gap, '+.2f')} | {fmt(paper[0], '.2f')} | {fmt(paper[1], '.3f')} | "
                     f"{fmt(paper[2], '.3f')} | {fmt(paper_gap, '+.2f')} |")
    if references:
        lines += ["", f"Linear reference points at 4x4x2, no network (`linear_references`): the pooled video the LR "
                  f"branch sees, blown back up, {references['only_lr']:.2f} dB; the best linear {rows[0]['config']['dim']}-number "
                  f"code of each large-patchifier block (PCA), {references['large_patchifier']:.2f} dB."]
    lines += ["", "Orderings (the paper's claims, on our PSNR):", ""]
    lines += [f"- {'yes' if holds else '**no**'}: {claim} ({figures})" for claim, holds, figures in orderings(rows)]
    return "\n".join(lines) + "\n"


def plots(rows, suffix, results):
    """The position plot and the rate-quality curve of one table."""
    line_chart({r["label"]: (list(range(len(r["psnr_by_position"]))), r["psnr_by_position"]) for r in rows},
               os.path.join(results, f"table1_position{suffix}.png"), title="Retrieval PSNR by position in the history",
               xlabel="latent frame of the history (0 = oldest)", ylabel="PSNR (dB)")
    proposed = sorted((r["memory_tokens"], r["psnr"]) for r in rows if r["compressor"] == "pfp" and r["omega"] == "random")
    series = {"Proposed (4x4x2, 2x2x2, 2x2x1)": ([m for m, _ in proposed], [p for _, p in proposed])}
    series.update({r["label"]: ([r["memory_tokens"]], [r["psnr"]]) for r in rows
                   if r["compressor"] in ("large_patchifier", "only_lr", "without_lr")})
    line_chart(series, os.path.join(results, f"table1_rate{suffix}.png"), title="Rate against quality",
               xlabel="memory tokens per history", ylabel="PSNR (dB)", xlog=True)


def picture_grid(rows, val, suffix, results):
    """The same frames of the first validation video, retrieved by every row's checkpoint."""
    truth, pictures, labels = None, [], []
    for r in rows:
        cfg, dit, phi, _ = load_checkpoint(os.path.join(r["out"], "ckpt.pt"))
        made = retrieval_rows(dit, phi, val, cfg, n_videos=1)             # [truth, retrieved]
        truth = made[0]
        pictures.append(made[1])
        labels.append(f"{r['label']} ({r['psnr']:.1f} dB)")
    labelled_png([truth] + pictures, ["truth"] + labels, os.path.join(results, f"table1_grid{suffix}.png"))


def read_curve(run: str) -> list:
    """[(step, validation PSNR)] from a train_pfp.py run's metrics.jsonl. Lines that are not whole
    rows (a run killed mid-write, an edit by hand) are skipped with one warning."""
    path = os.path.join(run, "metrics.jsonl")
    try:
        lines = open(path, errors="replace").read().splitlines()      # bytes that are not text: a corrupt line
    except OSError as e:
        raise ConfigError(f"--curves: cannot read {path} ({e.strerror or e}): pass run folders of train_pfp.py "
                          f"that you can read") from e
    points, bad, stage2 = [], 0, False
    for line in filter(str.strip, lines):
        try:
            row = json.loads(line)
            val = row.get("val")
            if isinstance(val, dict) and "chunk_psnr" in val:   # train_ar.py: next-chunk PSNR, not retrieval
                stage2 = True
            elif val is not None:
                points.append((int(row["step"]), float(val["psnr"])))
        except (ValueError, KeyError, TypeError, AttributeError):
            bad += 1
    if bad:
        print(f"warning: skipped {bad} corrupt line{'s' * (bad > 1)} of {path}", file=sys.stderr)
    if stage2 and not points:
        raise ConfigError(f"--curves: {run} is a train_ar.py run (next-chunk PSNR, not retrieval): "
                          f"pass run folders of train_pfp.py")
    return points


def learning_curves(runs, path):
    """Validation PSNR against training step for train_pfp.py run folders (their metrics.jsonl)."""
    series = {}
    for run in runs:
        points = read_curve(run)
        if not any(math.isfinite(p) for _, p in points):              # NaN: a diverged run
            print(f"warning: {run} has no validation PSNR yet (one every --eval_every steps): left out", file=sys.stderr)
            continue
        series[os.path.basename(os.path.normpath(run))] = ([s for s, _ in points], [p for _, p in points])
    if not series:
        raise ConfigError("--curves: no run has a validation PSNR to plot yet: train longer than --eval_every steps")
    line_chart(series, path, title="Validation retrieval PSNR during training",
               xlabel="training step", ylabel="PSNR (dB)")
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"short runs ({QUICK_STEPS['synthetic']} steps synthetic, {QUICK_STEPS['real']} real): "
                             "the whole table in ~30 min on 2 CPU cores")
    parser.add_argument("--scale", default="tiny", choices=list(SCALES), help="preset every row starts from (default tiny)")
    parser.add_argument("--steps", type=int, default=0, help="training steps per synthetic row (default: preset, or --quick's)")
    parser.add_argument("--real_steps", type=int, default=0, help="training steps per real-clip row (default: as --steps)")
    parser.add_argument("--real", default=os.path.join("..", "shared", "videos"),
                        help="folder of real videos for the second table; '' skips it (default ../shared/videos)")
    parser.add_argument("--tables", default="both", choices=["both", "synthetic", "real"],
                        help="which tables to train and report (default both)")
    parser.add_argument("--from_base", action="store_true",
                        help="start every row from a base video model trained first on the table's clips "
                             "(full-history train_ar.py), the paper's starting point; writes table1_base.md "
                             "beside the from-scratch table1.md")
    parser.add_argument("--base_steps", type=int, default=BASE_STEPS,
                        help=f"--from_base: training steps of the base (default {BASE_STEPS})")
    parser.add_argument("--latent", default="lossless", choices=["lossless", "pca"],
                        help="the latent every row (and the base) works in [ours]: lossless cells, or a --pca_channels "
                             "PCA bottleneck that the HR branch bypasses; pca writes table1_pca.md / table1_base_pca.md, "
                             "its reconstruction ceiling beside every row (default lossless)")
    parser.add_argument("--pca_channels", type=int, default=SCALES["tiny"].pca_channels,
                        help=f"--latent pca: channels per latent cell (default {SCALES['tiny'].pca_channels})")
    parser.add_argument("--seed", type=seed_int, default=None, help="seed of every row (and of the base; default the preset's)")
    parser.add_argument("--runs", default=os.path.join("runs", "table1"), help="cache of trained rows (default runs/table1)")
    parser.add_argument("--results", default="results", help="where the tables and figures go (default results)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 keeps PyTorch's default")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where every row trains (default cpu)")
    parser.add_argument("--shard", default="", help="i/n: train only rows i, i+n, ... and write no report, so n "
                        "processes can share a big machine; a last run without --shard reads the cache and reports")
    parser.add_argument("--curves", nargs="+", default=None, metavar="RUN",
                        help="instead of the table: plot validation PSNR against steps for these train_pfp.py "
                             "run folders into <results>/curves.png")
    parser.add_argument("--recall", action="store_true",
                        help="instead of Table 1: recall after a cut back in the storyboard world (cut_back.py): "
                             "trains the base, stage 1 and stage 2 of every row into <runs> (default runs/recall_story), "
                             "then scores them: every row with 2,250 stage-2 steps and gaps 3, 6, 10 and 16 (cut_back.FULL; "
                             "about 4 h 45 min on 2 cores), or with --quick four rows, 450 stage-2 steps and gaps 3 and 6 "
                             "(cut_back.QUICK; ~36 min)")
    parser.add_argument("--memory_captions", default="true", choices=["true", "false"],
                        help="--recall: memory and window tokens carry their own frames' captions [ours] "
                             "(default true; false trains the rows without them)")
    parser.add_argument("--cut_back", nargs="+", default=None, metavar="[LABEL=]RUN[,RUN...]",
                        help="instead of the table: score these train_ar.py run folders (--data storyboard) after a cut "
                             "back; RUN,RUN (seeds of one row) scores their per-story mean; the claims read the labels 'full history ...', 'pfp 2x2x2', 'window only', "
                             "'pfp without pretrain', 'only LR 2x2x2', 'large patchifier 2x2x2'")
    parser.add_argument("--gaps", type=int, nargs="+", default=[3, 6, 10, 16],
                        help="--cut_back: frames between the shot's last sight and its return (default 3 6 10 16)")
    parser.add_argument("--workers", type=int, default=2,
                        help="--recall: processes that train and score rows side by side after the base, each with "
                             "--threads threads, or one (default 2: one per core of a 2-core machine)")
    parser.add_argument("--stories", type=int, default=0,
                        help="--recall, --cut_back: stories per gap (default 48; 32 with --quick)")
    parser.add_argument("--objects", action="store_true",
                        help="instead of Table 1: the single-shot object-recall benchmark and drift meter (recall.py); "
                             "trains stage 1 for pfp and the large patchifier, then stage 2 for every row, into <runs>")
    parser.add_argument("--ar_steps", type=int, default=0,
                        help="--objects: stage-2 steps per row (default: half the stage-1 steps)")
    parser.add_argument("--object_share", type=finite_float, default=0.5,
                        help="--objects: share of the stage-2 training clips taken from the recall world (default 0.5)")
    parser.error = fail
    args = parser.parse_args()
    if args.base_steps < 1:
        fail(f"--base_steps must be a positive integer, got {args.base_steps}")
    if args.workers < 1:
        fail(f"--workers must be a positive integer, got {args.workers}")
    for name in ("steps", "real_steps", "ar_steps", "threads"):
        if getattr(args, name) < 0:
            fail(f"--{name} must be 0 (the default) or a positive integer, got {getattr(args, name)}")
    if not 0 <= args.object_share <= 1:
        fail(f"--object_share {args.object_share} must lie in [0, 1]")
    if args.stories == 1 or args.stories < 0:
        fail(f"--stories must be 2 or more (the interval needs two), got {args.stories}")
    check(replace(SCALES[args.scale], device=args.device, threads=args.threads))   # before any work
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        fail(f"--device {args.device}: no CUDA GPU is visible to PyTorch here; use --device cpu")
    writable_folder(args.results, "--results")                          # not after hours of training
    if args.curves:
        missing = [r for r in args.curves if not os.path.isfile(os.path.join(r, "metrics.jsonl"))]
        if missing:
            what = "is a file, not a run folder" if os.path.isfile(missing[0]) else "holds no metrics.jsonl"
            fail(f"--curves: {missing[0]!r} {what}; pass run folders of train_pfp.py")
        return learning_curves(args.curves, os.path.join(args.results, "curves.png"))
    command = shlex.join(["python", *sys.argv])
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cut_back:
        rows = [arg.split("=", 1) if "=" in arg else (os.path.basename(os.path.normpath(arg)), arg) for arg in args.cut_back]
        return cut_back.report(rows, args.gaps, args.stories or 48, args.results, command)
    if args.recall:
        runs = args.runs if args.runs != parser.get_default("runs") else os.path.join("runs", "recall_story")
        writable_folder(runs, "--runs")
        cfg = cut_back.story_config(args.scale, args.memory_captions == "true", threads=args.threads, device=args.device)
        return cut_back.run(cfg, args.quick, runs, args.results, command, args.stories, args.workers)
    if args.objects:
        cfg = check(replace(SCALES[args.scale], steps=args.steps or SCALES[args.scale].steps, threads=args.threads,
                            device=args.device, eval_every=10**9))
        runs = args.runs if args.runs != parser.get_default("runs") else os.path.join("runs", "recall")
        writable_folder(runs, "--runs")
        return recall.run(cfg, args.ar_steps or max(1, cfg.steps // 2), runs, args.results, command,
                          share=args.object_share)
    writable_folder(args.runs, "--runs")
    shard = args.shard.split("/") if args.shard else None
    if shard and not (len(shard) == 2 and all(v.isdigit() for v in shard) and int(shard[0]) < int(shard[1])):
        fail(f"--shard {args.shard!r} must be i/n with 0 <= i < n, e.g. 0/4")
    if args.tables == "real" and not args.real:
        fail("--tables real needs --real FOLDER")
    if args.real and args.tables != "synthetic" and not os.path.isdir(args.real):
        fail(f"--real {args.real!r} is not a folder: pass a folder of videos, or --real '' to skip the real-clip table")
    preset = SCALES[args.scale]
    steps = args.steps or (QUICK_STEPS["synthetic"] if args.quick else preset.steps)
    real_steps = args.real_steps or args.steps or (QUICK_STEPS["real"] if args.quick else preset.steps)
    tables = [("synthetic", "", "Synthetic validation videos", steps, ROWS + [OMEGA_LAST])] if args.tables != "real" else []
    if args.real and args.tables != "synthetic":
        tables.append((args.real, "_real", f"Real clips ({args.real})", real_steps, ROWS))

    jobs, data, bases = [], {}, {} if args.from_base else None
    for source, _, _, n, rows in tables:
        base = check(replace(preset, data=source, steps=n, eval_every=n + 1, threads=args.threads, device=args.device,
                             seed=preset.seed if args.seed is None else args.seed, latent=args.latent,
                             pca_channels=args.pca_channels))
        data[source] = load_videos(base)                                   # (train, val, description)
        jobs += [(row, check(replace(base, compressor=row.compressor, rate=row.rate, omega=row.omega))) for row in rows]
        if args.from_base:
            bases[source] = base_model(base, args.runs, args.base_steps, wait=bool(shard) and shard[0] != "0")
    if shard:
        i, n = int(shard[0]), int(shard[1])
        run_rows(jobs[i::n], data, args.runs, bases)
        return
    summaries = run_rows(jobs, data, args.runs, bases)
    name = ("table1_base" if args.from_base else "table1") + ("_pca" if args.latent == "pca" else "")

    os.makedirs(args.results, exist_ok=True)
    start = (f"Every row starts from a base video model ({args.base_steps} full-history steps of train_ar.py on the "
             f"table's clips: {', '.join(bases.values())}): its DiT, and phi's LR branch as its patchifier. "
             if args.from_base else "Every row trains from scratch. ")
    report, everything = ["# Table 1 in shape: frame retrieval after stage-1 pretraining", "",
                          f"Measured with `python {' '.join(sys.argv)}` ({args.scale} preset). " + start +
                          "Paper columns: PFP Table 1 (13B DiT, 4096 unseen videos, LPIPS); "
                          "ours: ST-LPIPS when stlpips-pytorch is installed, else n/a.", ""], {"bases": bases}
    for source, suffix, title, _, _ in tables:
        rows = [s for s in summaries if s["data"] == source]
        train_videos, val, _ = data[source]
        references = linear_references(train_videos, val, replace(preset, rate="4x4x2"))
        floors = {r["rate"]: no_network_baselines(val, replace(preset, rate=r["rate"])) for r in rows}
        report.append(markdown(rows, title, references, floors))
        plots(rows, name[6:] + suffix, args.results)
        picture_grid(rows, val, name[6:] + suffix, args.results)
        everything[title] = {"rows": rows, "linear_references_4x4x2": references, "no_network": floors}
    write_atomically(os.path.join(args.results, f"{name}.md"), lambda tmp: open(tmp, "w").write("\n".join(report)))
    write_atomically(os.path.join(args.results, f"{name}.json"), lambda tmp: open(tmp, "w").write(json.dumps(everything, indent=1)))
    print("\n".join(report))
    print(f"wrote {args.results}/{name}.md, {name}.json, table1_position*.png, table1_rate*.png, table1_grid*.png")


if __name__ == "__main__":
    run_main(main)
