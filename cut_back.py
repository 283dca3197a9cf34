"""Recall after a cut back: the storyboard benchmark (docs/paper.md, Table 2 and "The starting
point"), run by `python evaluate.py --recall`.

A story is shot A, then B (sometimes C), then a hard cut back to A (storyboard.py). The caption
says "A again" but fits many looks; only memory can restore A's exact look. Each row generates
the chunk after the cut back, with its caption, from a history in which A was last seen `gap`
frames before; the whole chunk is scored against the truth (PSNR).

    chance     the same story with another look of A: right captions, wrong look;
    memory use the score minus the score when A's other look sits in the history: exactly 0 for a
               model that reads nothing older than its window.

Rows, every one from the same base video model (stage 0: the DiT trained on the full raw history
of storyboard clips, as the paper starts from a pretrained video DiT):
    full history            the base itself (and in the full benchmark also the base fine-tuned for
                            the ceiling's legs: the full history's own stage 2)
    pfp 2x2x2               stage 1 from the base, then stage 2
    pfp without pretrain    the base DiT and a fresh pfp compressor, stage 2 only
    window only             the base DiT, the last --window frames only, stage 2
  and in the full benchmark: pfp 4x4x2, only LR 2x2x2 and the large patchifier 2x2x2, each as pfp 2x2x2.

Stage 2 runs in legs: each leg trains on from the previous leg's checkpoint with a few settings
changed (the same --seed, so a later leg draws the same batches again). QUICK and FULL below are
the recipes measured in results/storyboard_recall.md.

    python evaluate.py --recall --quick      # four rows, 450 stage-2 steps, gaps 3 and 6: 36 min on 2 CPU cores
    python evaluate.py --recall              # every row, 2,250 stage-2 steps, gaps 3, 6, 10 and 16: ~4 h 45 min
    python evaluate.py --cut_back "pfp=runs/x" "window=runs/y"   # score run folders you trained

The base trains first; then --workers processes (default 2) each take a row, train its stage 1 (if
any) and stage 2, and score it, so the report only reads the scores kept beside each checkpoint.

Writes <results>/cut_back.md, cut_back.json, cut_back.png and cut_back.gif.
Letters: B batch (stories), T frames, c chunk (latent frames), vt frames per latent frame.
"""
import json
import math
import os
import subprocess
import sys
import time
from collections import namedtuple
from dataclasses import asdict, replace

import torch
from tqdm import tqdm

from cache import folder, made
from captions import latent_captions
from config import SCALES, Config, ConfigError, check, run_main
from checkpoint import load_checkpoint, write_atomically
from metrics import psnr
from plot import save_rows_gif, save_rows_png
from sample import ar_context, next_chunk
from storyboard import storyboard_videos
from train_ar import train_ar
from train_pfp import train

CUT_BACK_SEED_OFFSET = 4_000_000          # benchmark stories: disjoint from training and validation
Row = namedtuple("Row", "label stage1 compressor rate full")   # stage1: the rate of its own stage-1 run, or None
ROWS = [Row("pfp 2x2x2", "2x2x2", "pfp", "2x2x2", False),
        Row("pfp 4x4x2", "4x4x2", "pfp", "4x4x2", True),
        Row("only LR 2x2x2", "2x2x2", "only_lr", "2x2x2", True),
        Row("large patchifier 2x2x2", "2x2x2", "large_patchifier", "2x2x2", True),
        Row("pfp without pretrain", None, "pfp", "2x2x2", False),
        Row("window only", None, "none", "2x2x2", False),
        Row("full history", None, "only_lr", "1x1x1", True)]
# steps of the base and of each stage-1 run; stage 2 and the ceiling's stage 2 as legs of Config changes
QUICK = {"base": 450, "stage1": 1000, "stage2": [{"steps": 450}]}
FULL = {"base": 450, "stage1": 1000,
        "stage2": [{"steps": 900}, {"steps": 900, "lr": 1e-3}, {"steps": 450, "lr": 1e-3}],
        "ceiling": [{"steps": 450}, {"steps": 900, "split_return": 1.0},            # [ours] every story ends
                    {"steps": 900, "lr": 1e-3, "split_return": 1.0}]}              # at its cut back


def story_config(scale: str, memory_captions: bool = True, **changes) -> Config:
    """The preset on the storyboard world, with captions, no distance bias, 80% of stage-2
    micro-batches ending where a story cuts back [ours], and memory tokens that carry their
    frames' captions [ours] (results/storyboard_recall.md measures both)."""
    return check(replace(SCALES[scale], data="storyboard", captions=True, pos_bias=0.0, split_return=0.8,
                         memory_captions=memory_captions, val_videos=8, eval_every=10**9, **changes))


def train_base(cfg: Config, runs: str, steps: dict = QUICK) -> str:
    """The base video model: the DiT trained from scratch on the full raw history -> its folder."""
    base_cfg = replace(cfg, compressor="only_lr", rate="1x1x1", steps=steps["base"])
    out = folder(runs, "base", base_cfg)
    made(train_ar, base_cfg, out, "none", stage=2, quiet=True, position=1)
    return out


def legs(row: Row, steps: dict) -> list:
    """A row's stage-2 legs: the ceiling's own for the full history, stage2 for the rest."""
    return steps["ceiling"] if row.rate == "1x1x1" else steps["stage2"]


def label(row: Row, steps: dict) -> str:
    """The ceiling's label says how long its stage 2 is; the others' are their own."""
    if row.rate != "1x1x1":
        return row.label
    return f"full history (base + {sum(leg['steps'] for leg in legs(row, steps)):,} stage-2 steps)"


def train_row(cfg: Config, runs: str, row: Row, base: str, steps: dict = QUICK, position: int = 1) -> str:
    """A row's own stage 1 (if it has one) from the base, then its stage-2 legs, each from the last
    one's checkpoint -> the last leg's folder (stage2_<row>, then stage2_<row>_<steps so far>)."""
    init = os.path.join(base, "ckpt.pt")
    if row.stage1:
        c1 = replace(cfg, compressor=row.compressor, rate=row.stage1, steps=steps["stage1"], split_return=0.0)
        out1 = folder(runs, f"stage1_{row.compressor}_{row.stage1}", c1, init)
        made(train, c1, out1, init=init, quiet=True, position=position)
        init = os.path.join(out1, "ckpt.pt")
    name, done = "stage2_" + row.label.replace(" ", "_"), 0
    for leg in legs(row, steps):
        c2 = replace(cfg, compressor=row.compressor, rate=row.rate, **leg)
        out = folder(runs, name + (f"_{done + c2.steps}" if done else ""), c2, init)
        made(train_ar, c2, out, init, stage=2, quiet=True, position=position)
        init, done = os.path.join(out, "ckpt.pt"), done + c2.steps
    return out


def row_job(job: dict) -> str:
    """One worker's share, in its own process (`python cut_back.py --job JSON`): train a row (None:
    the base itself) and score it, so that the report only reads the scores kept beside each
    checkpoint -> the row's stage-2 folder."""
    cfg, row = Config(**job["cfg"]), job["row"] and Row(*job["row"])
    torch.set_num_threads(max(cfg.threads, 1))
    out = job["base"] if row is None else train_row(cfg, job["runs"], row, job["base"], job["steps"], job["position"])
    path = os.path.join(out, "ckpt.pt")
    run_cfg, dit, phi, _ = load_checkpoint(path)
    scored(path, dit, phi, run_cfg, job["gaps"], job["n"])
    return out


def in_workers(jobs: list, workers: int):
    """Run every job as `python cut_back.py --job JSON`, at most `workers` at a time. Each is a
    whole training process: Ctrl-C reaches it too and it saves its step, as any run does; SIGTERM
    here is passed on to it. A job that fails stops the rest."""
    waiting, running = list(jobs), []
    bar = tqdm(total=len(jobs), desc="recall rows", position=0)
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                running.append(subprocess.Popen([sys.executable, os.path.abspath(__file__), "--job", json.dumps(waiting.pop(0))]))
            time.sleep(1)
            for worker in [w for w in running if w.poll() is not None]:
                running.remove(worker)
                if worker.returncode:
                    raise ConfigError(f"a recall row stopped (exit {worker.returncode}; its line is above): "
                                      f"run the same command again to go on from the runs it saved")
                bar.update()
    finally:
        for worker in running:                   # Ctrl-C, SIGTERM or a failed row: the others save and stop
            worker.terminate()
        for worker in running:
            worker.wait()
        bar.close()


def cut_back_set(cfg: Config, gap: int, n: int) -> dict:
    """n storyboard stories whose chunk (the last c*vt frames, after the whole history) is the cut
    back to shot A, last seen `gap` frames before it -> {"video", "other", "captions"}: other is the
    same story with another look of A, (B, T + c*vt, 3, H, W); captions (B, T + c*vt, L)."""
    frames, seeds = cfg.history + cfg.chunk * cfg.vae_time, range(CUT_BACK_SEED_OFFSET, CUT_BACK_SEED_OFFSET + n)
    true = storyboard_videos(seeds, frames, cfg.height, cut_back=cfg.history, gap=gap)
    other = storyboard_videos(seeds, frames, cfg.height, cut_back=cfg.history, gap=gap, a_look=1)
    return {"video": true["video"], "other": other["video"], "captions": true["captions"]}


@torch.no_grad()
def cut_back_scores(dit, phi, cfg: Config, gaps: list, n: int = 64, batch: int = 16, keep: int = 0) -> dict:
    """PSNR of the chunk after a cut back, whole frames, per story: {gap: {"model", "swapped",
    "chance", "copy"}}, each a list over the n stories, and with keep > 0 the first `keep`
    generated chunks as "frames" (keep, c*vt, 3, H, W).
        model    the chunk generated from the true history, with the chunk's captions;
        swapped  the same, from a history in which A shows another look (the memory is wrong);
        chance   the other look's true frames: right captions, wrong look;
        copy     A's last frame before the cut repeated: what perfect recall of a still shot scores."""
    s, vt = cfg.latent_frames, cfg.vae_time
    out = {}
    for gap in gaps:
        data = cut_back_set(cfg, gap, n)
        video, truth = data["video"], data["video"][:, s * vt:]                # truth (B, c*vt, 3, H, W)
        captions = latent_captions(data["captions"], vt) if cfg.captions else None     # (B, T' + c, L)
        scores = {}
        for name, history in (("model", video), ("swapped", data["other"])):
            gen = torch.Generator().manual_seed(gap)
            got = torch.cat([next_chunk(dit, phi, history[i:i + batch], s, cfg, gen,
                                        captions=None if captions is None else captions[i:i + batch])[0]
                             for i in range(0, n, batch)])
            scores[name] = psnr(got, truth).mean(1).tolist()                    # (B,) over the chunk's frames
            if name == "model" and keep:
                scores["frames"] = got[:keep]
        scores["chance"] = psnr(data["other"][:, s * vt:], truth).mean(1).tolist()
        last_a = video[:, s * vt - gap][:, None].expand_as(truth)               # A's last frame before the cut
        scores["copy"] = psnr(last_a, truth).mean(1).tolist()
        out[gap] = scores
    return out


def scored(path: str, dit, phi, cfg: Config, gaps: list, n: int) -> dict:
    """cut_back_scores (with four stories' frames), kept beside the checkpoint in cut_back.pt and
    read back while the checkpoint, the gaps and n are the same: a report over many rows then
    scores only the rows that changed."""
    cache = os.path.join(os.path.dirname(path), "cut_back.pt")
    key = [os.path.getmtime(path), os.path.getsize(path), gaps, n, CUT_BACK_SEED_OFFSET]
    if os.path.isfile(cache):
        try:
            kept = torch.load(cache, weights_only=True)
            whole = all(isinstance(kept["scores"][gap]["frames"], torch.Tensor)
                        and all(len(kept["scores"][gap][k]) == n for k in ("model", "swapped", "chance", "copy"))
                        for gap in gaps)
            if kept["key"] == key and whole:
                return {gap: dict(s) for gap, s in kept["scores"].items()}
        except Exception:                            # unreadable, foreign or missing a part: score again
            pass
    scores = cut_back_scores(dit, phi, cfg, gaps, n, keep=4)
    write_atomically(cache, lambda tmp: torch.save({"key": key, "scores": scores}, tmp))
    return {gap: dict(s) for gap, s in scores.items()}


def interval(x: torch.Tensor) -> tuple:
    """Mean and 95% half-width of a paired difference over stories."""
    return x.mean().item(), 1.96 * x.std().item() / math.sqrt(len(x))


def claims(table: dict, gaps: list, window: int) -> list:
    """The benchmark's claims, each with its figure and whether it holds, at every gap beyond the
    window (whole 95% intervals above 0 where a difference is claimed)."""
    t = lambda label, gap, key: torch.tensor(table[label]["scores"][gap][key])
    fulls = sorted((l for l in table if l.startswith("full history")), key=lambda l: "+" not in l)
    full, lines = fulls[0] if fulls else None, []
    for gap in [g for g in gaps if g > window]:
        if full is not None:
            over = interval(t(full, gap, "model") - t(full, gap, "chance"))
            use = interval(t(full, gap, "model") - t(full, gap, "swapped"))
            lines.append(f"- gap {gap}: {full} is {over[0]:+.2f} dB over chance and uses {use[0]:.2f} dB of memory "
                         f"(bar: +6 and 3): {'holds' if over[0] >= 6 and use[0] >= 3 else 'does not hold'}")
        if full is not None and "window only" in table:
            w = interval(t("window only", gap, "model") - t("window only", gap, "chance"))[0]
            lines.append(f"- gap {gap}: window only is {w:+.2f} dB from chance (bar: within 1): "
                         f"{'holds' if abs(w) <= 1 else 'does not hold'}")
            if "pfp 2x2x2" in table:
                gain = lambda l: (t(l, gap, "model") - t("window only", gap, "model")).mean().item()
                share = gain("pfp 2x2x2") / gain(full) if gain(full) > 0 else float("nan")
                lines.append(f"- gap {gap}: pfp 2x2x2 recovers {share:.0%} of {full}'s gain over window only "
                             f"({table['pfp 2x2x2']['context_tokens']:,} against {table[full]['context_tokens']:,} "
                             f"context tokens; bar: 50% with 1/8): {'holds' if share >= 0.5 else 'does not hold'}")
        for other in ("large patchifier 2x2x2", "only LR 2x2x2", "pfp without pretrain"):
            if "pfp 2x2x2" in table and other in table:
                m, h = interval(t("pfp 2x2x2", gap, "model") - t(other, gap, "model"))
                lines.append(f"- gap {gap}: pfp 2x2x2 - {other} = {m:+.2f} dB [{m - h:+.2f}, {m + h:+.2f}]: "
                             f"{'holds' if m - h > 0 else 'does not hold'}")
    return lines


def report(rows: list, gaps: list, n: int, results: str, command: str) -> dict:
    """cut_back_scores for each (label, train_ar.py run folder) -> <results>/cut_back.md, .json,
    .png (gap 6 or the first gap, four stories) and .gif (the story playing, truth above each row).
    A row of several runs "RUN,RUN" (seeds of one recipe) scores the mean of their PSNRs per story,
    so its intervals and claims are over the seeds too; its pictures are the first run's."""
    table, pictures = {}, {}
    for label, runs in tqdm(rows, desc="scoring rows", position=0):
        seeds = []
        for run in runs.split(","):                   # RUN,RUN,...: seeds of one row, averaged per story
            path = run if os.path.isfile(run) else os.path.join(run, "ckpt.pt")     # a run folder or its ckpt.pt
            cfg, dit, phi, stage = load_checkpoint(path)
            if stage != 2 or cfg.data != "storyboard":
                raise ConfigError(f"--cut_back: {run} is not a train_ar.py run on --data storyboard (stage {stage}, "
                                  f"--data {cfg.data})")
            if max(gaps) > cfg.history or min(gaps) < 2:
                raise ConfigError(f"--gaps must lie in [2, {cfg.history}] (the history), got {gaps}")
            seeds.append(scored(path, dit, phi, cfg, gaps, n))
        pictures[label] = {gap: seeds[0][gap].pop("frames") for gap in gaps}
        scores = {gap: {key: torch.tensor([s[gap][key] for s in seeds]).mean(0).tolist() for key in seeds[0][gap]
                        if key != "frames"} for gap in gaps}
        with torch.no_grad():
            tokens = ar_context(dit, phi, cut_back_set(cfg, gaps[0], 1)["video"], cfg.latent_frames, cfg)[0].shape[1]
        table[label] = {"run": runs, "seeds": len(seeds), "context": f"{cfg.compressor} {cfg.rate} + window {cfg.window}",
                        "context_tokens": tokens, "scores": scores}
    lines = ["# Recall after a cut back (storyboard world)\n", f"Measured with `{command}`: {n} stories per gap. "
             "Whole-chunk PSNR in dB. *Over chance* and *memory use* are paired per story, with 95% intervals: chance "
             "is the same story with another look of A; memory use is the score minus the score with A's other look "
             "in the history.\n",
             "| row | context tokens | PSNR | over chance [95%] | memory use [95%] | chance | copy A |", "|---|---|---|---|---|---|---|"]
    for gap in gaps:
        lines.append(f"| **gap {gap}** | | | | | | |")
        for label, entry in table.items():
            s = {k: torch.tensor(v) for k, v in entry["scores"][gap].items()}
            (o, oh), (u, uh) = interval(s["model"] - s["chance"]), interval(s["model"] - s["swapped"])
            lines.append(f"| {label} | {entry['context_tokens']:,} | {s['model'].mean():.2f} | {o:+.2f} [{o - oh:+.2f}, "
                         f"{o + oh:+.2f}] | {u:.2f} [{u - uh:.2f}, {u + uh:.2f}] | {s['chance'].mean():.2f} | {s['copy'].mean():.2f} |")
    window = next(iter(table.values()))["context"].split("window ")[1]
    lines += ["", "Claims (gaps beyond the window):", *claims(table, gaps, int(window) * cfg.vae_time)]
    text = "\n".join(lines) + "\n"
    os.makedirs(results, exist_ok=True)
    write_atomically(os.path.join(results, "cut_back.md"), lambda tmp: open(tmp, "w").write(text))
    write_atomically(os.path.join(results, "cut_back.json"), lambda tmp: open(tmp, "w").write(json.dumps(table, indent=1)))
    pictures_of(table, pictures, gaps, cfg, results)
    print(text + f"wrote {results}/cut_back.md, .json, .png and .gif")
    return table


def pictures_of(table: dict, pictures: dict, gaps: list, cfg: Config, results: str):
    """cut_back.png: for four stories (columns) A as last seen, B just before the cut, the truth
    after it, another look of A, then each row's first generated frame. cut_back.gif: the stories
    playing, the truth on top, then pfp 2x2x2 and window only (every row if either is missing),
    each showing the true history until the cut back and its own chunk after it."""
    gap = 6 if 6 in gaps else gaps[0]
    s = cfg.latent_frames * cfg.vae_time
    data = cut_back_set(cfg, gap, len(next(iter(pictures.values()))[gap]))    # four stories, or fewer if n is
    video = data["video"]                                                       # (k <= 4, T + c*vt, 3, H, W)
    still = [video[:, s - gap], video[:, s - 1], video[:, s], data["other"][:, s]]
    save_rows_png(still + [pictures[label][gap][:, 0] for label in table], os.path.join(results, "cut_back.png"))
    shown = ["pfp 2x2x2", "window only"] if {"pfp 2x2x2", "window only"} <= set(table) else list(table)
    moving = [[video[:, t]] + [video[:, t] if t < s else pictures[label][gap][:, t - s] for label in shown]
              for t in range(video.shape[1])]
    save_rows_gif(moving + moving[-1:] * 6, os.path.join(results, "cut_back.gif"), ms=250)


def run(cfg: Config, quick: bool, runs: str, results: str, command: str, stories: int = 0, workers: int = 2,
        steps: dict = None) -> dict:
    """evaluate.py --recall: train (or read from runs/) the base, then every row in `workers`
    processes side by side, each with cfg.threads threads (0: one), each training its row and
    scoring it, the longest (the ceiling) first; then the report. cfg: story_config's; steps:
    QUICK or FULL by default."""
    gaps, n = ([3, 6], stories or 32) if quick else ([3, 6, 10, 16], stories or 48)
    steps = steps or (QUICK if quick else FULL)
    rows = [r for r in ROWS if not quick or not r.full]
    base = train_base(cfg, runs, steps)
    job = {"cfg": asdict(cfg), "runs": runs, "base": base, "steps": steps, "gaps": gaps, "n": n}
    order = sorted(rows, key=lambda r: r.rate != "1x1x1") + [None]
    in_workers([{**job, "row": row, "position": 1 + i % workers} for i, row in enumerate(order)], workers)
    done = [("full history (base)", base)] + [(label(row, steps), train_row(cfg, runs, row, base, steps))
                                              for row in rows]                                  # read back
    return report(done, gaps, n, results, command)


def worker_main():
    """`python cut_back.py --job JSON`: one worker of in_workers; anything else says where to start."""
    if len(sys.argv) != 3 or sys.argv[1] != "--job":
        raise ConfigError("cut_back.py runs as a worker of evaluate.py: use python evaluate.py --recall [--quick], "
                          "or --cut_back RUN ... to score runs")
    row_job(json.loads(sys.argv[2]))


if __name__ == "__main__":
    run_main(worker_main)
