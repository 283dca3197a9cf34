"""The storyboard world: multi-shot clips with hard cuts and per-frame captions.

The paper trains on storyboard-style videos with dense cuts and timestamped captions
(docs/paper.md, "The starting point"): the text condition c in G(x_t, t, c, phi(H)) says *what* each
chunk shows, and only the memory phi(H) can say *how it looked*. This file makes such data
at classroom scale, from a seed:

- a shot is a still or slowly drifting scene (1 px every 4 to 8 frames, or none) full of
  detail no caption pins down: a background pattern (its colours, scale, angle, phase), one
  main object with a fine inner pattern, and a few small signs with letters, dots and bars;
- its caption is coarse, four words out of a small vocabulary, "red stripes, blue disc": the
  background's colour and pattern kind, the main object's colour and kind. One caption has
  many looks: the look (exact shades, partner colours, pattern geometry, object place, size,
  angle and inner detail, the small items) comes from a separate look seed;
- a story is shot A, then B (sometimes B then C), then a hard cut back to A. [ours] A's own
  clock pauses while the story is away: the returning A is the next frame of A's shot, as if
  no time had passed there, so it is A's last frame moved by at most one drift step (in most
  stories not moved at all). After the cut back, only memory can restore A's exact look; the
  caption says only "red stripes, blue disc", which thousands of other looks share.

For a 16-frame history plus a 2-frame chunk (T = 18) the cut back lands anywhere from frame 5
to frame 17 (the very end), and what lies between A's last frame and the return (B, or B then
C) lasts at least 3 frames, so A is always further back than a 2-frame window. A benchmark
forces both: `storyboard_video(seed, 18, 32, cut_back=16, gap=8)`. [ours] `--min_first 1
--min_away 2` widen the training draw to the benchmark's edges: A seen for a single frame (its
gap 16), B for just two (its gap 3). `other_look` is the same story with another look of A:
the chance baseline (the right captions, the wrong memory).

Real clips have no captions: `stitch_real` cuts shots out of them into the same A, B, (C), A
stories and captions each shot with a reserved word for its source file (real0 ... real11).
The words, their token ids and written stories live in captions.py.

Drawing is numpy on one core: 1,024 stories of 18 frames at 32x32 take about 10 s.

    python storyboard.py                      # preview: runs/storyboard/storyboard.png, .gif, .mp4
    python storyboard.py --real ../shared/videos --out runs/storyboard

Letters: N stories, T frames, S the side of the square frame, L caption length (tokens), P
padding of the canvas around the first view, K frames of one shot.
"""
import argparse
import colorsys
import os
import time

import numpy as np
import torch
from PIL import Image

from captions import COLOURS, OBJECTS, PATTERNS, encode_caption, format_story, real_words
from config import CAPTION_LENGTH, fail, run_main, seed_int
from data import LETTERS, DataError, contrasting_colours, letter_glyph

HUES = {"red": 0.0, "orange": 0.07, "yellow": 0.15, "green": 0.32, "teal": 0.47, "blue": 0.62,
        "purple": 0.76, "pink": 0.9}

# ----------------------------------------------------------------------------- story timing
MIN_FIRST = 2      # frames of A before the first cut (default draw; --min_first)
MIN_AWAY = 3       # frames of B (and C) between A's last frame and the return (default draw; --min_away):
                   # more than a 2-frame window, whether the return starts a chunk or ends one
MIN_C = 2          # frames of B and of C when the time away is split in two shots
DRIFT_PERIODS = (4, 8)   # a drifting shot moves 1 px every 4..8 frames; a third of shots are still
STORY, LOOK = 0, 1       # random streams: the story (captions, timing) and each shot's look


# ----------------------------------------------------------------------------- drawing one shot
def shade(rng, colour: str) -> np.ndarray:
    """One exact shade of a caption colour, (3,) float32 in [0, 1]."""
    if colour == "white":
        hsv = (rng.uniform(), rng.uniform(0, 0.1), rng.uniform(0.85, 1.0))
    elif colour == "black":
        hsv = (rng.uniform(), rng.uniform(0, 0.3), rng.uniform(0.03, 0.15))
    else:
        hsv = (HUES[colour] + rng.uniform(-0.03, 0.03)) % 1.0, rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0)
    return np.array(colorsys.hsv_to_rgb(*hsv), dtype=np.float32)


def partner(rng, rgb: np.ndarray) -> np.ndarray:
    """A colour of any hue that contrasts in brightness with rgb: the other half of a pattern."""
    if rgb.max() > 0.5:
        hsv = (rng.uniform(), rng.uniform(0.3, 1.0), rng.uniform(0.05, 0.3))
    else:
        hsv = (rng.uniform(), rng.uniform(0.0, 0.6), rng.uniform(0.75, 1.0))
    return np.array(colorsys.hsv_to_rgb(*hsv), dtype=np.float32)


def rotated(yy, xx, angle):
    """Grid coordinates turned by angle -> (along, across), each like yy."""
    return xx * np.cos(angle) + yy * np.sin(angle), yy * np.cos(angle) - xx * np.sin(angle)


def pattern_mask(rng, kind: str, yy, xx, unit: float) -> np.ndarray:
    """A background pattern as a bool image like yy: True where the caption colour goes.
    unit = S / 32, so a pattern covers the same share of the frame at every size."""
    u, v = rotated(yy, xx, rng.uniform(0, np.pi))
    period = rng.uniform(4.5, 9.0) * unit
    phase_u, phase_v = rng.uniform(size=2)
    if kind == "stripes":
        return np.mod(u / period + phase_u, 1.0) < rng.uniform(0.35, 0.65)
    if kind == "checks":
        cell = period * 0.6
        return (np.floor(u / cell + phase_u) + np.floor(v / cell + phase_v)) % 2 == 1
    if kind == "dots":
        du, dv = np.mod(u / period + phase_u, 1.0) - 0.5, np.mod(v / period + phase_v, 1.0) - 0.5
        return du ** 2 + dv ** 2 < rng.uniform(0.2, 0.35) ** 2
    if kind == "waves":
        bend = rng.uniform(1.0, 2.5) * unit * np.sin(2 * np.pi * v / (rng.uniform(8, 16) * unit))
        return np.mod((u + bend) / period + phase_u, 1.0) < 0.5
    if kind == "grid":
        line = max(1.0, rng.uniform(1.0, 2.0) * unit) / period
        return (np.mod(u / period + phase_u, 1.0) < line) | (np.mod(v / period + phase_v, 1.0) < line)
    raise ValueError(kind)


def object_mask(kind: str, dy, dx, radius: float, angle: float) -> np.ndarray:
    """The main object's shape, centred at dy = dx = 0, as a bool image like dy."""
    u, v = rotated(dy, dx, angle)
    distance = np.sqrt(u ** 2 + v ** 2)
    if kind == "disc":
        return distance < radius
    if kind == "ring":
        return (distance < radius) & (distance > 0.55 * radius)
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) < 0.8 * radius
    if kind == "diamond":
        return np.abs(u) + np.abs(v) < radius
    if kind == "cross":
        arm = 0.33 * radius
        return ((np.abs(u) < arm) & (np.abs(v) < radius)) | ((np.abs(v) < arm) & (np.abs(u) < radius))
    if kind == "triangle":   # three half-planes at the inscribed radius r/2 of an equilateral triangle
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            theta = 2 * np.pi * k / 3
            inside &= u * np.cos(theta) + v * np.sin(theta) < 0.5 * radius
        return inside
    raise ValueError(kind)


def outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of mask with a 4-neighbour outside it: a one-pixel border."""
    padded = np.pad(mask, 1)
    interior = mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def glyph_ink(letter: str, height: int, width: int) -> np.ndarray:
    """A letter resized to (height, width), ink in [0, 1]."""
    image = letter_glyph(letter).resize((max(1, width), max(1, height)), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32) / 255


def paint(canvas, top: int, left: int, colours, alpha):
    """Blend colours (h, w, 3) into canvas at (top, left) with alpha (h, w) in [0, 1], clipped to the canvas."""
    h, w = alpha.shape
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + h, canvas.shape[0]), min(left + w, canvas.shape[1])
    if t1 <= t0 or l1 <= l0:
        return
    a = alpha[t0 - top:t1 - top, l0 - left:l1 - left, None]
    c = colours[t0 - top:t1 - top, l0 - left:l1 - left] if np.ndim(colours) == 3 else colours
    canvas[t0:t1, l0:l1] = canvas[t0:t1, l0:l1] * (1 - a) + c * a


def shot_canvas(caption: tuple, look, size: int, pad: int) -> tuple:
    """One look of a caption -> (canvas (S + 2P, S + 2P, 3) float32 in [0, 1], drift (dy, dx, period)).
    The first view is the canvas's centre crop; everything is drawn in coordinates relative to it,
    so the look does not depend on P (which only leaves room for the drift)."""
    bg_colour, pattern, object_colour, kind = caption
    rng = np.random.default_rng(look)
    unit = size / 32
    side = size + 2 * pad
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) - pad                 # (S+2P, S+2P) each

    # Background: the caption colour and a contrasting partner in a pattern of random geometry.
    ink = shade(rng, bg_colour)
    other = partner(rng, ink)
    canvas = np.where(pattern_mask(rng, pattern, yy, xx, unit)[..., None], ink, other)   # (S+2P, S+2P, 3)

    # Small uncaptioned items: signs (a letter on a tile), dots and bars, inside the first view.
    for _ in range(rng.integers(2, 5)):
        item = rng.integers(3)
        dark, bright = contrasting_colours(rng)
        if item == 0:      # a sign: a letter on a tile
            h = max(3, round(rng.uniform(8, 11) * unit))
            w = max(3, round(0.8 * h))
            tile = np.where(glyph_ink(LETTERS[rng.integers(len(LETTERS))], h - 2, w - 2)[..., None] > 0.5, bright, dark)
            colours = np.broadcast_to(dark, (h, w, 3)).copy()
            colours[1:-1, 1:-1] = tile
            alpha = np.ones((h, w), np.float32)
        elif item == 1:    # a dot
            h = w = max(2, round(rng.uniform(3, 6) * unit))
            r = np.arange(h) + 0.5 - h / 2
            alpha = (r[:, None] ** 2 + r[None, :] ** 2 <= (h / 2) ** 2).astype(np.float32)
            colours = bright
        else:              # a bar
            h, w = max(1, round(rng.uniform(2, 3) * unit)), max(2, round(rng.uniform(5, 10) * unit))
            h, w = (h, w) if rng.uniform() < 0.5 else (w, h)
            alpha, colours = np.ones((h, w), np.float32), bright
        top, left = rng.integers(0, size - h + 1) + pad, rng.integers(0, size - w + 1) + pad
        paint(canvas, top, left, colours, alpha)

    # The main object: the caption's colour and kind, its place, size, angle and inner detail the look's.
    radius = rng.uniform(0.2, 0.32) * size
    cy, cx = rng.uniform(0.3, 0.7, size=2) * size
    tilt = rng.uniform(-0.25, 0.25)          # a square stays a square, not a diamond: tilted, not turned
    angle = rng.uniform(0, 2 * np.pi) if kind == "triangle" else tilt
    mask = object_mask(kind, yy - cy, xx - cx, radius, angle)                  # (S+2P, S+2P)
    body = shade(rng, object_colour)
    detail_colour = partner(rng, body)
    detail = rng.integers(3)
    if detail == 0:        # fine stripes
        u, _ = rotated(yy, xx, rng.uniform(0, np.pi))
        inner = np.mod(u / (rng.uniform(3, 5) * unit) + rng.uniform(), 1.0) < 0.35
    elif detail == 1:      # spots
        u, v = rotated(yy, xx, rng.uniform(0, np.pi))
        cell = rng.uniform(3.5, 5) * unit
        inner = (np.mod(u / cell, 1.0) - 0.5) ** 2 + (np.mod(v / cell, 1.0) - 0.5) ** 2 < 0.06
    else:                  # a letter across the object
        h = max(3, round(1.1 * radius))
        letter = glyph_ink(LETTERS[rng.integers(len(LETTERS))], h, max(3, round(0.8 * h))) > 0.5
        inner = np.zeros_like(mask)
        top, left = round(cy - h / 2) + pad, round(cx - letter.shape[1] / 2) + pad
        inner[top:top + h, left:left + letter.shape[1]] = letter
    colours = np.where(inner[..., None], detail_colour, body)                   # (S+2P, S+2P, 3)
    edge = np.float32(0.95 if body.max() < 0.3 else 0.05)
    colours[outline(mask)] = edge
    canvas = np.where(mask[..., None], colours, canvas)

    # Drift: still, or 1 px every `period` frames in one of 8 directions.
    if rng.uniform() < 1 / 3:
        drift = (0, 0, 1)
    else:
        dy, dx = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)][rng.integers(8)]
        drift = (dy, dx, int(rng.integers(DRIFT_PERIODS[0], DRIFT_PERIODS[1] + 1)))
    return canvas.astype(np.float32), drift


def shot_frames(caption: tuple, look, size: int, times: np.ndarray) -> np.ndarray:
    """A shot seen at its own clock `times` (K,) ints -> (K, S, S, 3) float32 in [0, 1]."""
    pad = int(times.max()) // DRIFT_PERIODS[0] + 1
    canvas, (dy, dx, period) = shot_canvas(caption, look, size, pad)
    steps = times // period                                                     # (K,) 1-px steps so far
    rows = pad + dy * steps[:, None] + np.arange(size)                          # (K, S)
    cols = pad + dx * steps[:, None] + np.arange(size)                          # (K, S)
    return canvas[rows[:, :, None], cols[:, None, :]]                           # (K, S, S, 3)


# ----------------------------------------------------------------------------- stories
def random_caption(rng, avoid=()) -> tuple:
    """(background colour, pattern, object colour, object kind), unlike every caption in `avoid`
    in its background (so a cut always changes the caption's first phrase)."""
    while True:
        bg = COLOURS[rng.integers(len(COLOURS))]
        pattern = PATTERNS[rng.integers(len(PATTERNS))]
        fg = [c for c in COLOURS if c != bg][rng.integers(len(COLOURS) - 1)]
        caption = (bg, pattern, fg, OBJECTS[rng.integers(len(OBJECTS))])
        if all(caption[:2] != other[:2] for other in avoid):
            return caption


def story_timing(rng, frames: int, cut_back=None, gap=None, min_first: int = MIN_FIRST,
                 min_away: int = MIN_AWAY) -> tuple:
    """-> (first, away_b, away_c, cut_back): A fills frames [0, first), B the next away_b, C the
    next away_c (0: no C), A again from cut_back = first + away_b + away_c to the end.
    gap = cut_back - (A's last frame before the cut) = away_b + away_c + 1. A drawn story shows A
    for at least min_first frames before the cut and is away for at least min_away (a forced
    timing may differ)."""
    if min_first < 1 or min_away < 1:
        raise DataError(f"min_first and min_away must be at least 1 (A is seen, then B), got {min_first}, {min_away}")
    if cut_back is None and gap is None and frames < min_first + min_away + 1:
        raise DataError(f"storyboard stories need frames >= {min_first + min_away + 1} (A, B, A), got {frames}")
    if cut_back is not None and not 2 <= cut_back <= frames - 1:
        raise DataError(f"cut_back must be a frame in [2, {frames - 1}] (A, at least one frame away, A), got {cut_back}")
    if gap is not None and not 2 <= gap <= (frames - 1 if cut_back is None else cut_back):
        raise DataError(f"gap must be in [2, {frames - 1 if cut_back is None else cut_back}] at frames={frames}, "
                        f"cut_back={cut_back}: A's last frame must be in the clip and B between, got {gap}")
    draws = rng.uniform(size=3)    # always three draws: forcing the timing never moves the other streams
    if cut_back is None:
        lo = min_first + min_away if gap is None else min(frames - 1, gap + min_first - 1)
        cut_back = lo + int(draws[0] * (frames - lo))                           # uniform in [lo, frames - 1]
    if gap is None:
        hi = max(1, cut_back - min_first)                                       # away <= cut_back - min_first
        lo = min(min_away, hi)
        gap = 1 + lo + int(draws[1] * (hi - lo + 1))
    away = gap - 1
    away_b = away
    if away >= 2 * MIN_C and draws[2] < 0.5:                                    # half the long trips see C too
        away_b = MIN_C + int(draws[2] * 2 * (away - 2 * MIN_C + 1))             # uniform in [MIN_C, away - MIN_C]
    return cut_back - gap + 1, away_b, away - away_b, cut_back


def story_layout(first: int, away_b: int, away_c: int, frames: int) -> tuple:
    """-> shot (T,) ids 0 = A, 1 = B, 2 = C, and clock (T,): each frame's time in its own shot."""
    shot = np.array([0] * first + [1] * away_b + [2] * away_c + [0] * (frames - first - away_b - away_c))
    clock = np.zeros(frames, dtype=int)
    for s in range(3):
        clock[shot == s] = np.arange((shot == s).sum())                         # A's clock pauses while away
    return shot, clock


def storyboard_video(seed: int, frames: int, size: int, cut_back: int = None, gap: int = None, a_look: int = 0,
                     min_first: int = MIN_FIRST, min_away: int = MIN_AWAY) -> dict:
    """One story A, B, (C), A from `seed` -> {
        video    (T, 3, S, S) float32 in [-1, 1],
        captions (T, L) long, each frame's shot caption,
        shot     (T,) long, 0 = A, 1 = B, 2 = C,
        cut_back int, the first frame back on A,
        gap      int, cut_back minus A's last frame before it (gap - 1 frames of B and C)}.
    cut_back and gap force the timing (a benchmark); a_look picks another look of A (other_look);
    min_first, min_away: the fewest frames of A before the cut and away from it in a drawn timing."""
    if size < 8:
        raise DataError(f"storyboard frames need size >= 8, got {size}")
    rng = np.random.default_rng([seed, STORY])
    captions = [random_caption(rng)]
    captions.append(random_caption(rng, avoid=captions))
    captions.append(random_caption(rng, avoid=captions))
    first, away_b, away_c, cut_back = story_timing(rng, frames, cut_back, gap, min_first, min_away)
    shot, clock = story_layout(first, away_b, away_c, frames)
    video = np.empty((frames, size, size, 3), dtype=np.float32)                # (T, S, S, 3)
    ids = torch.zeros(frames, CAPTION_LENGTH, dtype=torch.long)                 # (T, L)
    for s in np.unique(shot):
        look = [seed, LOOK, s, a_look] if s == 0 else [seed, LOOK, s]
        video[shot == s] = shot_frames(captions[s], look, size, clock[shot == s])
        ids[torch.from_numpy(shot == s)] = encode_caption(" ".join(captions[s]))
    video = torch.from_numpy(video).permute(0, 3, 1, 2) * 2 - 1                # (T, 3, S, S) in [-1, 1]
    return {"video": video.contiguous(), "captions": ids, "shot": torch.from_numpy(shot).long(),
            "cut_back": cut_back, "gap": cut_back - first + 1}


def other_look(seed: int, frames: int, size: int, cut_back: int = None, gap: int = None, look: int = 1) -> dict:
    """The same story as storyboard_video(seed, ...) (captions, timing, B and C) with look `look`
    (not 0) of shot A: what a model that reads the captions but not the memory could draw."""
    if look == 0:
        raise DataError("other_look needs look != 0: look 0 is storyboard_video's own look of A")
    return storyboard_video(seed, frames, size, cut_back, gap, a_look=look)


def storyboard_videos(seeds, frames: int, size: int, cut_back: int = None, gap: int = None, a_look: int = 0,
                      min_first: int = MIN_FIRST, min_away: int = MIN_AWAY) -> dict:
    """storyboard_video over seeds, stacked: video (N, T, 3, S, S), captions (N, T, L), shot (N, T),
    cut_back (N,), gap (N,)."""
    stories = [storyboard_video(seed, frames, size, cut_back, gap, a_look, min_first, min_away) for seed in seeds]
    return {key: torch.stack([s[key] for s in stories]) if torch.is_tensor(stories[0][key])
            else torch.tensor([s[key] for s in stories]) for key in stories[0]}


# ----------------------------------------------------------------------------- real clips
def stitch_real(clips: dict, seed: int, frames: int, cut_back: int = None, gap: int = None, a_look: int = 0) -> dict:
    """Real clips {file name: (N, Tc, 3, S, S) in [-1, 1]} (data.video_folder_clips) -> one story in
    storyboard_video's format, its shots cut out of clips of 2 or 3 different files. Each shot runs
    on its own clock from a random start in its clip; the returning A continues A's clip.
    a_look != 0 takes A from another clip or start of the same file: the chance baseline."""
    names = sorted(clips)
    if len(names) < 2:
        raise DataError(f"stitch_real needs clips of at least 2 video files (A and B differ), got {len(names)}")
    rng = np.random.default_rng([seed, STORY])
    order = [names[k] for k in rng.permutation(len(names))]
    first, away_b, away_c, cut_back = story_timing(rng, frames, cut_back, gap)
    if len(names) < 3:
        away_b, away_c = away_b + away_c, 0                                    # no third file: B stays on
    shot, clock = story_layout(first, away_b, away_c, frames)
    words = real_words(names)
    sample = clips[names[0]]
    video = torch.empty(frames, *sample.shape[2:], dtype=sample.dtype)          # (T, 3, S, S)
    ids = torch.zeros(frames, CAPTION_LENGTH, dtype=torch.long)                 # (T, L)
    for s in np.unique(shot):
        source = clips[order[s]]                                                # (N, Tc, 3, S, S)
        need = int((shot == s).sum())
        if source.shape[1] < need:
            raise DataError(f"clips of '{order[s]}' have {source.shape[1]} frames but a shot needs {need}: "
                            f"load clips of at least {frames} frames")
        look = np.random.default_rng([seed, LOOK, s, a_look] if s == 0 else [seed, LOOK, s])
        clip, start = look.integers(source.shape[0]), look.integers(source.shape[1] - need + 1)
        video[torch.from_numpy(shot == s)] = source[int(clip), torch.from_numpy(start + clock[shot == s])]
        ids[torch.from_numpy(shot == s)] = encode_caption(words[order[s]])
    return {"video": video, "captions": ids, "shot": torch.from_numpy(shot).long(),
            "cut_back": cut_back, "gap": cut_back - first + 1}


# ----------------------------------------------------------------------------- preview
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/storyboard", help="folder for the preview (default runs/storyboard)")
    parser.add_argument("--stories", type=int, default=4, help="stories to show (default 4)")
    parser.add_argument("--frames", type=int, default=18, help="frames per story (default 18: a 16-frame history + a 2-frame chunk)")
    parser.add_argument("--size", type=int, default=32, help="frame side in pixels (default 32)")
    parser.add_argument("--seed", type=seed_int, default=0, help="first story seed (default 0)")
    parser.add_argument("--real", default="", help="also stitch stories from this folder of videos")
    parser.error = fail   # one line and exit code 2, as every script here
    args = parser.parse_args()
    for name in ("stories", "frames", "size"):
        if getattr(args, name) < 1:
            fail(f"--{name} must be a positive integer, got {getattr(args, name)}")
    from checkpoint import writable_folder
    from footprint import human_bytes, machine_memory
    from plot import framed_bthwc_uint8, save_bthwc_uint8_as_mp4_and_gif, save_rows_png
    need = 2 * args.stories * args.frames * 3 * args.size ** 2 * 4 * 8     # both looks, and the pictures' copies
    if need > 0.5 * machine_memory("cpu"):
        fail(f"--stories {args.stories} of {args.frames} frames at {args.size}x{args.size} need about "
             f"{human_bytes(need)}, more than half of this machine's {human_bytes(machine_memory('cpu'))}: lower them")
    writable_folder(args.out)
    os.makedirs(args.out, exist_ok=True)

    start = time.time()
    batch = storyboard_videos(range(args.seed, args.seed + args.stories), args.frames, args.size)
    print(f"{args.stories} stories of {args.frames} frames at {args.size}x{args.size} in {time.time() - start:.2f} s: "
          f"video {tuple(batch['video'].shape)}, captions {tuple(batch['captions'].shape)}")
    rows = []
    for k, seed in enumerate(range(args.seed, args.seed + args.stories)):
        other = other_look(seed, args.frames, args.size)["video"]
        rows += [batch["video"][k], other]
        print(f"story {seed} (cut back at frame {batch['cut_back'][k]}, A last seen {batch['gap'][k]} frames before): "
              f"{format_story(batch['captions'][k])}")
    save_rows_png(rows, os.path.join(args.out, "storyboard.png"))
    history = max(1, args.frames - 2)
    save_bthwc_uint8_as_mp4_and_gif(framed_bthwc_uint8(batch["video"], history, scale=4), os.path.join(args.out, "storyboard"))
    print(f"wrote {args.out}/storyboard.png (each story above the same story with another look of A) and "
          f"storyboard.gif/.mp4 (the first {history} frames framed red, the rest green)")
    if args.real:
        from data import video_folder_clips
        clips = video_folder_clips(args.real, args.frames, args.size)
        print("real caption words: " + ", ".join(f"{word} = {name}" for name, word in real_words(clips).items()))
        stories = [stitch_real(clips, seed, args.frames) for seed in range(args.seed, args.seed + args.stories)]
        for seed, story in zip(range(args.seed, args.seed + args.stories), stories):
            print(f"real story {seed} (cut back at frame {story['cut_back']}): {format_story(story['captions'])}")
        save_rows_png([s["video"] for s in stories], os.path.join(args.out, "real.png"))
        print(f"wrote {args.out}/real.png")


if __name__ == "__main__":
    run_main(main)
