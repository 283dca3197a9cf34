"""Memory recall after stage 2 (docs/paper.md, Table 2 and the "without pretrain" ablation), run by
`python evaluate.py --objects`. (Recall after a storyboard cut back, `evaluate.py --recall`: cut_back.py.)

The paper judges long-video consistency (cloth, identity, objects) with VLM and ArcFace judges.
We measure the same thing directly on videos built for it (data.recall_video): an object is
seen, leaves the frame, stays hidden for D frames and comes back where it left, its edge just
visible in the last history frame. Each model continues the history by one chunk; the object's
appearance error is the PSNR over the object's pixels of that chunk, against the truth.
`memory_use` asks the sharper question without sampling: does the model's prediction change
when only the frames before its window show another look?

Rows, all with the same stage-2 steps, window, seeds and data (`stage2_data`: half synthetic
world, half recall-world training clips, split after the whole history in half the steps):
    pfp                    stage-1 pfp checkpoint, fine-tuned with L_ar
    pfp without pretrain   train_ar.py --init none
    large patchifier       its own stage-1 checkpoint (same memory tokens as pfp)
    window only            pfp's stage-1 DiT, --compressor none: the last --window frames only
    full                   pfp's stage-1 DiT, --compressor only_lr --rate 1x1x1: the raw history (the ceiling)
Chance: the truth against the same video with *another* object's look in the same place
(data.recall_video's `look`): what a model that knows where but not what would score.

The drift meter rolls every row out for many chunks and tracks, per chunk, the colour mean,
the colour spread and the sharpness against the first generated chunk.

Writes results/recall.md, recall.json, recall.png (object PSNR against D), recall_grid.png,
drift.png and generate.gif/mp4 (pfp rollouts above the truth).

Letters: B batch, T frames, c chunk (latent frames), vt frames per latent frame, D hidden frames.
"""
import json
import math
import os
from collections import namedtuple
from dataclasses import asdict, replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from config import Config, check, result_fields
from data import recall_hidden_range, recall_video, synthetic_videos, VAL_SEED_OFFSET
from plot import framed_bthwc_uint8, labelled_png, line_chart, save_bthwc_uint8_as_mp4_and_gif
from flow import add_noise
from checkpoint import load_checkpoint, write_atomically
from sample import ar_context, chunk_positions, generate, next_chunk
from train_ar import train_ar
from train_pfp import train
from cache import key, made, run_dir
from training import load_videos

Variant = namedtuple("Variant", "label stage1 compressor rate init")   # stage1: which stage-1 run to start from
RECALL_SEED_OFFSET = 2_000_000                                          # the benchmark: disjoint from train and validation
RECALL_TRAIN_SEED_OFFSET = 3_000_000                                    # recall-world clips stage 2 trains on
STAGE2_SPLIT_FULL = 0.5                                                 # --split_full of every row's stage 2


def variants(cfg: Config) -> list:
    return [Variant("pfp", "pfp", "pfp", cfg.rate, "stage1"),
            Variant("pfp without pretrain", None, "pfp", cfg.rate, "none"),
            Variant("large patchifier", "large_patchifier", "large_patchifier", cfg.rate, "stage1"),
            Variant("window only", "pfp", "none", cfg.rate, "stage1"),
            Variant("full history", "pfp", "only_lr", "1x1x1", "stage1")]


def stage2_data(cfg: Config, share: float) -> tuple:
    """The stage-2 training clips of every row: the synthetic world with `share` of its clips
    replaced by recall-world clips (their own seeds, a random hidden D, the object back in the
    frame before the last chunk). The synthetic world alone rarely shows an object come back
    within one 18-frame clip, so without them no row has anything to learn recall from; and the
    rows train with STAGE2_SPLIT_FULL, so that half the steps split right there. [ours]
    -> (train, val, source) as load_videos."""
    frames = cfg.history + cfg.chunk * cfg.vae_time
    train, val, source = load_videos(cfg, frames=frames)
    rng, clips = np.random.default_rng(0), []
    step = cfg.chunk * cfg.vae_time
    largest = recall_hidden_range(frames, cfg.height, after=step)
    for i in range(round(share * len(train))):
        hidden = int(rng.integers(1, largest + 1))
        clips.append(recall_video(RECALL_TRAIN_SEED_OFFSET + i, frames, cfg.height, hidden, after=step)[0])
    if clips:
        train = torch.cat([torch.stack(clips), train[len(clips):]])
    return train, val, f"{source}; {len(clips)} of the {len(train)} train clips from the recall world"


def train_rows(cfg: Config, ar_steps: int, runs: str, share: float) -> list:
    """Stage 1 for pfp and the large patchifier (each when a row first needs it), then stage 2 for
    every row; everything cached. -> [(Variant, stage-2 run folder)] in table order."""
    ar_data = stage2_data(cfg, share)
    done = {}
    for v in tqdm(sorted(variants(cfg), key=lambda v: v.stage1 == "large_patchifier"), desc="stage 2 rows", position=0):
        init = "none"
        if v.stage1:
            c1 = check(replace(cfg, compressor=v.stage1))
            first = run_dir(c1, runs)                                   # the same cache key as Table 1's rows
            made(train, c1, first, quiet=True, position=1)
            init = os.path.join(first, "ckpt.pt")
        c = check(replace(cfg, compressor=v.compressor, rate=v.rate, steps=ar_steps, eval_every=ar_steps + 1,
                          split_full=STAGE2_SPLIT_FULL))
        keep = result_fields(c)
        out = os.path.join(runs, f"ar_{v.label.replace(' ', '_')}_{ar_steps}_{key([keep, v.init, v.stage1, share])}")
        made(train_ar, c, out, init, stage=2, data=ar_data, quiet=True, position=1)
        done[v.label] = (v, out)
    return [done[v.label] for v in variants(cfg)]


def masked_psnr(a, b, mask) -> torch.Tensor:
    """PSNR over the pixels where mask is set, per video: a, b (B, T, 3, H, W) in [-1, 1], mask (B, T, H, W)."""
    sq = ((a - b) / 2).pow(2).mean(dim=2)                                  # (B, T, H, W) in [0, 1] units
    mse = (sq * mask).sum(dim=(1, 2, 3)) / mask.sum(dim=(1, 2, 3)).clamp(min=1)
    return -10 * torch.log10(mse.clamp(min=1e-10))                         # (B,)


def recall_set(cfg: Config, hidden: int, n: int) -> tuple:
    """n benchmark videos with the object hidden for `hidden` frames -> (video, mask, other_look)
    (B, T + c*vt, ...), the last c*vt frames being the chunk to predict."""
    frames, after = cfg.history + cfg.chunk * cfg.vae_time, cfg.chunk * cfg.vae_time
    seeds = range(RECALL_SEED_OFFSET, RECALL_SEED_OFFSET + n)
    made = [recall_video(s, frames, cfg.height, hidden, after=after) for s in seeds]
    other = [recall_video(s, frames, cfg.height, hidden, look=s + n, after=after)[0] for s in seeds]
    return torch.stack([v for v, _ in made]), torch.stack([torch.from_numpy(np.asarray(m)) for _, m in made]), torch.stack(other)


@torch.no_grad()
def recall_scores(rows, cfg: Config, hiddens: list, n: int, batch: int = 16) -> tuple:
    """-> ({label: {D: [object PSNR per video]}} with 'chance' too, {label: {D: memory_use in dB}},
    the first 3 videos' chunks for the grid)."""
    s, vt = cfg.latent_frames, cfg.vae_time
    scores, use, pictures = {"chance": {}}, {}, {}
    sets = {d: recall_set(cfg, d, n) for d in hiddens}
    for d, (video, mask, other) in sets.items():
        scores["chance"][d] = masked_psnr(other[:, s * vt:], video[:, s * vt:], mask[:, s * vt:]).tolist()
    for v, out in tqdm(rows, desc="recall", position=0):
        c, dit, phi, _ = load_checkpoint(os.path.join(out, "ckpt.pt"))
        scores[v.label], use[v.label] = {}, {}
        for d, (video, mask, other) in sets.items():
            gen = torch.Generator().manual_seed(d)
            got = torch.cat([next_chunk(dit, phi, video[i:i + batch], s, c, gen)[0] for i in range(0, n, batch)])
            scores[v.label][d] = masked_psnr(got, video[:, s * vt:], mask[:, s * vt:]).tolist()
            pictures[(v.label, d)] = got[:3]                                 # (3, c*vt, 3, H, W)
            use[v.label][d] = memory_use(dit, phi, c, video, mask, other, batch)
    pictures["truth"] = {d: video[:3] for d, (video, _, _) in sets.items()}
    return scores, use, pictures


@torch.no_grad()
def memory_use(dit, phi, cfg: Config, video, mask, other, batch: int = 16) -> float:
    """Does the model read the object's look from its memory? The velocity error on the object's
    latent cells of the chunk when the frames *before the window* show another look (`other`),
    over the error with the true history, in dB: 0 = the old frames' look is ignored (window only
    scores exactly 0). Teacher-forced at t = 0.25, 0.5, 0.75 with the same noise: no sampling, so
    it measures the memory apart from how well the sampler can draw what it remembers. [ours]"""
    s, vt, c = cfg.latent_frames, cfg.vae_time, cfg.chunk
    old_frames = (s - min(cfg.window, s)) * vt
    other = torch.cat([other[:, :old_frames], video[:, old_frames:]], dim=1)   # only the memory differs
    x0 = dit.latent.encode(video[:, s * vt:])                                # (B, c, C, h, w) the true chunk
    cells = F.max_pool2d(mask[:, s * vt:].float(), cfg.vae_space)             # (B, c*vt, h, w) object latent cells
    cells = cells.reshape(len(video), c, vt, *cells.shape[-2:]).amax(dim=2)[:, :, None]   # (B, c, 1, h, w)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    errors = {"true": 0.0, "other": 0.0}
    for t_value in (0.25, 0.5, 0.75):
        t = torch.full((len(video),), t_value)
        x_t = add_noise(x0, eps, t)
        for name, history in (("true", video), ("other", other)):
            for i in range(0, len(video), batch):
                context, context_pos = ar_context(dit, phi, history[i:i + batch], s, cfg)
                b = len(context)
                v = dit(x_t[i:i + b], t[i:i + b, None].expand(b, c), chunk_positions(b, cfg, video.device), context, context_pos)
                errors[name] += ((v - (eps[i:i + b] - x0[i:i + b])).pow(2) * cells[i:i + b]).sum().item()
    return 10 * math.log10(errors["other"] / errors["true"])


def drift_stats(video) -> torch.Tensor:
    """(B, T, 3, H, W) -> (B, T, 5): per frame, the mean of each colour channel, the colour spread
    (std over pixels and channels) and the sharpness (mean absolute difference of neighbouring pixels)."""
    mean = video.mean(dim=(3, 4))                                            # (B, T, 3)
    spread = video.std(dim=(2, 3, 4))                                        # (B, T)
    sharp = ((video[..., 1:, :] - video[..., :-1, :]).abs().mean(dim=(2, 3, 4))
             + (video[..., 1:] - video[..., :-1]).abs().mean(dim=(2, 3, 4))) / 2
    return torch.cat([mean, spread[..., None], sharp[..., None]], dim=-1)


def relative_drift(stats, chunks: int) -> dict:
    """(B, chunks*c, 5) drift_stats -> per chunk, averaged over videos and against each video's chunk 1:
    'mean' |colour mean - chunk 1's| (averaged over R, G, B), 'spread' and 'sharpness' as ratios."""
    per_chunk = stats.reshape(stats.shape[0], chunks, -1, 5).mean(dim=2)     # (B, chunks, 5)
    first = per_chunk[:, :1]
    return {"mean": (per_chunk[..., :3] - first[..., :3]).abs().mean(dim=(0, 2)).tolist(),
            "spread": (per_chunk[..., 3] / first[..., 3]).mean(dim=0).tolist(),
            "sharpness": (per_chunk[..., 4] / first[..., 4]).mean(dim=0).tolist()}


@torch.no_grad()
def drift(rows, cfg: Config, chunks: int, n: int) -> tuple:
    """Roll the rows out for `chunks` chunks from the first half-history of n validation videos (not
    'full history': its context grows without bound). -> (relative_drift per row and for 'truth',
    the real continuation; the videos; the prompt length)."""
    step = cfg.vae_time * cfg.rate_hwt[2]
    prompt_frames, c = cfg.history // 2 // step * step, cfg.chunk * cfg.vae_time
    truth = synthetic_videos(range(VAL_SEED_OFFSET, VAL_SEED_OFFSET + n), prompt_frames + chunks * c, cfg.height)
    videos = {"truth": truth}
    for v, run in tqdm([r for r in rows if r[0].label != "full history"], desc="drift rollouts", position=0):
        cr, dit, phi, _ = load_checkpoint(os.path.join(run, "ckpt.pt"))
        videos[v.label] = generate(dit, phi, truth[:, :prompt_frames], chunks, cr, torch.Generator().manual_seed(0),
                                   progress=False)[0]
    stats = {label: relative_drift(drift_stats(video[:, prompt_frames:]), chunks) for label, video in videos.items()}
    return stats, videos, prompt_frames


def stack_pngs(paths, path):
    """Stack PNGs vertically into one and delete the parts."""
    images = [Image.open(p).convert("RGB") for p in paths]
    canvas = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    y = 0
    for image in images:
        canvas.paste(image, (0, y))
        y += image.height
    write_atomically(path, lambda tmp: canvas.save(tmp, format="PNG"))
    for p in paths:
        os.remove(p)


def report(scores, use, summaries, hiddens, cfg: Config, command: str, window: int) -> tuple:
    """The markdown tables and the bar's claims, each checked on paired per-video differences."""
    mean = {label: {d: float(np.mean(v[d])) for d in hiddens} for label, v in scores.items()}
    ci = {label: {d: 1.96 * float(np.std(v[d])) / np.sqrt(len(v[d])) for d in hiddens} for label, v in scores.items()}
    lines = ["# Memory recall after stage 2", "",
             f"Measured with `{command}` ({cfg.height}x{cfg.width}, a {cfg.history}-frame history, "
             f"chunk {cfg.chunk}, window {window}, {len(next(iter(scores['chance'].values())))} videos per D).",
             "Object PSNR (dB, higher = closer to the truth) over the returning object's pixels in the generated "
             "chunk; ± is a 95% interval of the mean. D = frames the object was hidden.", "",
             "| row | context tokens | next-chunk PSNR (val) | " + " | ".join(f"D = {d}" for d in hiddens) + " |",
             "|---|---|---|" + "---|" * len(hiddens)]
    for label in list(summaries) + ["chance"]:
        s = summaries.get(label)
        head = f"| {label} | {s['context_tokens']} | {s['chunk_psnr']:.2f} |" if s else f"| {label} (another object's look) | | |"
        lines.append(head + " ".join(f" {mean[label][d]:.2f} ± {ci[label][d]:.2f} |" for d in hiddens))
    lines += ["", "Memory use (dB): how much worse the model predicts the returning object when only the frames "
              "*before* the window show another look (teacher-forced, no sampling; 0 = it ignores what it saw "
              "before the window).", "", "| row | " + " | ".join(f"D = {d}" for d in hiddens) + " |",
              "|---|" + "---|" * len(hiddens)]
    lines += [f"| {label} |" + " ".join(f" {use[label][d]:.2f} |" for d in hiddens) for label in summaries]
    avg = {label: float(np.mean(list(mean[label].values()))) for label in mean}

    def paired(a, b, ds=hiddens):
        """a - b on the same videos, pooled over ds: (mean, 95% half-width) in dB."""
        diff = np.concatenate([np.subtract(scores[a][d], scores[b][d]) for d in ds])
        return float(diff.mean()), 1.96 * float(diff.std()) / np.sqrt(len(diff))

    def above(a, b):                      # holds only if the whole 95% interval is above 0
        m, h = paired(a, b)
        return m - h > 0, f"{m:+.2f} ± {h:.2f} dB"
    beyond = [d for d in hiddens if d > window]
    m, h = paired("window only", "chance", beyond)
    uses = [use["pfp"][d] for d in hiddens]
    claims = [("pfp > window only", *above("pfp", "window only")),
              ("pfp > large patchifier (equal memory tokens)", *above("pfp", "large patchifier")),
              ("pfp > pfp without pretrain (equal stage-2 steps)", *above("pfp", "pfp without pretrain")),
              (f"window only at chance (within 1 dB) for D > window = {window}", abs(m) < 1, f"{m:+.2f} ± {h:.2f} dB"),
              ("full history is the ceiling (full > pfp)", *above("full history", "pfp")),
              ("pfp reads the object from memory older than its window (memory use > 0.1 dB)",
               min(uses) > 0.1, f"{min(uses):+.2f} to {max(uses):+.2f} dB")]
    lines += ["", "Averaged over D: " + ", ".join(f"{label} {value:.2f}" for label, value in avg.items()) + ".", "",
              "Claims: differences on the same videos, pooled over D, with 95% intervals; a claim holds only "
              "if its whole interval is above 0.", "",
              "| the paper's claim (Table 2, 'without pretrain') | figure | holds here? |", "|---|---|---|"]
    lines += [f"| {claim} | {figure} | {'yes' if holds else 'no'} |" for claim, holds, figure in claims]
    return "\n".join(lines), {"mean": mean, "ci95": ci, "memory_use_db": use,
                               "claims": {claim: [bool(holds), figure] for claim, holds, figure in claims}}


def run(cfg: Config, ar_steps: int, runs: str, results: str, command: str, share: float = 0.5, n: int = 64,
        chunks: int = 24):
    """Train (or read back) every row, score recall and drift, write the results."""
    rows = train_rows(cfg, ar_steps, runs, share)
    summaries = {v.label: json.load(open(os.path.join(out, "summary.json"))) for v, out in rows}
    largest = recall_hidden_range(cfg.history + cfg.chunk * cfg.vae_time, cfg.height, cfg.chunk * cfg.vae_time)
    hiddens = sorted({round(x) for x in np.linspace(2, largest, 5)})
    scores, use, pictures = recall_scores(rows, cfg, hiddens, n)
    os.makedirs(results, exist_ok=True)
    table, numbers = report(scores, use, summaries, hiddens, cfg, command, cfg.window)

    line_chart({label: (hiddens, [numbers["mean"][label][d] for d in hiddens]) for label in numbers["mean"]},
               os.path.join(results, "recall.png"), title="Does the object come back looking the same?",
               xlabel="frames the object was hidden (D)", ylabel="object PSNR in the next chunk (dB)")
    d = hiddens[-1]
    s, vt = cfg.latent_frames, cfg.vae_time
    truth = pictures["truth"][d][:, (s - 2) * vt:]                           # (3, 2*vt + c*vt, ...): the last 2 history frames + the chunk
    side_by_side = lambda clips: torch.cat(list(clips))                      # 3 videos in one row
    grid = [side_by_side(truth)] + [side_by_side(torch.cat([truth[:, :2 * vt], pictures[(v.label, d)]], 1)) for v, _ in rows]
    labelled_png(grid, ["truth"] + [f"{v.label} ({numbers['mean'][v.label][d]:.1f} dB)" for v, _ in rows],
                 os.path.join(results, "recall_grid.png"))

    stats, videos, prompt_frames = drift(rows, cfg, chunks, n=8)
    parts = []
    for name, what in (("mean", "|colour mean - chunk 1's|"), ("spread", "colour spread / chunk 1's"),
                       ("sharpness", "sharpness / chunk 1's")):
        parts.append(os.path.join(results, f"drift_{name}.png"))
        line_chart({label: (list(range(1, chunks + 1)), v[name]) for label, v in stats.items()}, parts[-1],
                   title=f"Drift over a {chunks}-chunk rollout: {what}", xlabel="generated chunk", ylabel=what, height=300)
    stack_pngs(parts, os.path.join(results, "drift.png"))
    shown = torch.cat([videos["pfp"][:2], videos["truth"][:2]])             # top: pfp rollouts, bottom: the truth
    save_bthwc_uint8_as_mp4_and_gif(framed_bthwc_uint8(shown, prompt_frames, scale=4), os.path.join(results, "generate"))
    last = {label: {k: v[k][-1] for k in v} for label, v in stats.items()}
    table += (f"\n\nDrift after {chunks} chunks, against chunk 1 (truth = the real continuation):\n\n"
              "| row | abs. colour mean change | spread ratio | sharpness ratio |\n|---|---|---|---|\n")
    table += "\n".join(f"| {label} | {v['mean']:.3f} | {v['spread']:.3f} | {v['sharpness']:.3f} |" for label, v in last.items())
    everything = {"hiddens": hiddens, "scores": scores, **numbers, "summaries": summaries, "drift": stats,
                  "config": asdict(cfg), "ar_steps": ar_steps}
    write_atomically(os.path.join(results, "recall.md"), lambda tmp: open(tmp, "w").write(table + "\n"))
    write_atomically(os.path.join(results, "recall.json"), lambda tmp: open(tmp, "w").write(json.dumps(everything, indent=1, default=str)))
    print(table)
    print(f"wrote {results}/recall.md, recall.json, recall.png, recall_grid.png, drift.png, generate.mp4, generate.gif")
