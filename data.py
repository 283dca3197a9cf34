"""Data: the videos whose history the memory compressor must preserve.

PFP pretrains its compressor on long real videos so that any frame of the history, with its
high-frequency detail (faces, text, texture), can be rebuilt from the compressed memory
(docs/paper.md, "The idea"). We cannot ship millions of videos, so this file offers two sources:

- a synthetic world, generated from a seed: a textured background (gratings, a checkerboard,
  colour blobs) seen by a panning camera, and 2-4 patterned sprites (stripes, checks, big
  letters) that move, leave the frame and come back. It is rich in fine detail that moves out
  of view, which is exactly what a history compressor must remember, yet small enough for a
  tiny model at 32x32 pixels.
- a folder of real videos (.mp4/.webm/.gif/...), cut into square clips, cached on disk.

Videos are (T, C, H, W) float32 tensors in [-1, 1], batches (B, T, C, H, W); letters: T frames,
C=3 colour channels, S the side of the square frame. Run the demo with

    python data.py [folder_of_videos]
"""
import colorsys
import contextlib
import functools
import hashlib
import os
import re
import subprocess
import sys
import time

import imageio
import imageio_ffmpeg
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from config import ConfigError, fail, run_main


class DataError(ConfigError):
    """A bad input: the message is one line naming the problem and the fix."""


# ----------------------------------------------------------------------------- synthetic world
TRAIN_SEED_OFFSET = 0  # train videos use seeds 0, 1, 2, ...
VAL_SEED_OFFSET = 1_000_000  # validation videos use seeds 1_000_000 + i: disjoint from train
LETTERS = "ABEFGHKMPRSWXZ"  # letters with distinctive shapes that stay readable at ~10 px


def contrasting_colours(rng):
    """Two RGB colours in [0, 1] of different hue, one dark and one bright: a pattern drawn
    with them keeps strong edges whatever the palette. Returns a (2, 3) float32 array."""
    hue = rng.uniform()
    dark = colorsys.hsv_to_rgb(hue, rng.uniform(0.4, 1.0), rng.uniform(0.05, 0.4))
    bright = colorsys.hsv_to_rgb((hue + rng.uniform(0.2, 0.8)) % 1.0, rng.uniform(0.3, 1.0), rng.uniform(0.7, 1.0))
    pair = np.array([dark, bright], dtype=np.float32)
    return pair if rng.uniform() < 0.5 else pair[::-1].copy()


def smooth_noise(rng, grid, side):
    """Low-pass noise: a random grid x grid field upsampled to (side, side), values in [0, 1]."""
    coarse = Image.fromarray(rng.uniform(size=(grid, grid)).astype(np.float32))
    return np.clip(np.asarray(coarse.resize((side, side), Image.Resampling.BICUBIC)), 0.0, 1.0)


def textured_canvas(rng, size):
    """The world behind the sprites: a (2S, 2S, 3) float32 image in [0, 1], twice the frame so
    that the panning camera sees parts of it leave the view and come back."""
    side = 2 * size
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)  # (2S, 2S) each
    layers = []
    for _ in range(2):  # two oriented gratings, from soft sinusoids to hard square waves
        period = max(2.0, rng.uniform(8 / 32, 20 / 32) * size)  # 8..20 px at S=32
        angle, phase, sharpness = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi), rng.uniform(1, 6)
        wave = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + phase)
        profile = 0.5 + 0.5 * np.tanh(sharpness * wave) / np.tanh(sharpness)  # (2S, 2S) in [0, 1]
        dark, bright = contrasting_colours(rng)
        layers.append(dark + (bright - dark) * profile[..., None])  # (2S, 2S, 3)
    layers.append(np.stack([smooth_noise(rng, 4, side) for _ in range(3)], axis=-1))  # colour blobs
    # Each layer owns the regions where its own smooth field is largest; the sharp softmax
    # gives patches of texture with short, soft borders.
    fields = np.stack([smooth_noise(rng, 3, side) for _ in layers])  # (3, 2S, 2S)
    weights = np.exp(15.0 * (fields - fields.max(axis=0)))
    weights /= weights.sum(axis=0)
    canvas = np.einsum("lyx,lyxc->yxc", weights, np.stack(layers)).astype(np.float32)  # (2S, 2S, 3)

    cell = max(1, round(rng.uniform(0.12, 0.25) * size))  # checker squares of 4..8 px at S=32
    height, width = rng.integers(int(0.4 * size), int(0.9 * size) + 1, size=2)
    top, left = rng.integers(0, side - height + 1), rng.integers(0, side - width + 1)
    checks = ((yy[:height, :width] // cell + xx[:height, :width] // cell) % 2)[..., None]  # (h, w, 1)
    dark, bright = contrasting_colours(rng)
    canvas[top : top + height, left : left + width] = dark + (bright - dark) * checks
    return canvas


@functools.lru_cache(maxsize=None)
def letter_glyph(letter):
    """A big bold letter as a greyscale PIL image (255 = ink), cropped to its ink; rendered
    once per letter, then resized for each sprite. Needs Pillow >= 10.1 (sized default font)."""
    image = Image.new("L", (96, 96))
    font = ImageFont.load_default(size=64)
    ImageDraw.Draw(image).text((48, 48), letter, fill=255, font=font, anchor="mm", stroke_width=3, stroke_fill=255)
    return image.crop(image.getbbox())


def sprite_pattern(rng, height, width, size):
    """A sprite's look, drawn once per video: (height, width, 3) colours in [0, 1] and a
    (height, width) bool mask of the pixels it covers (a rectangle or an ellipse)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)  # (h, w) each
    kind = rng.integers(3)
    if kind == 0:  # stripes
        period = max(2.0, rng.uniform(0.15, 0.3) * size)
        angle = rng.uniform(0, np.pi)
        profile = (np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period) > 0).astype(np.float32)
    elif kind == 1:  # checks
        cell = max(1, round(rng.uniform(0.08, 0.15) * size))
        profile = ((yy // cell + xx // cell) % 2).astype(np.float32)
    else:  # a letter filling most of the sprite
        glyph = letter_glyph(LETTERS[rng.integers(len(LETTERS))])
        inner_w, inner_h = max(1, round(0.8 * width)), max(1, round(0.85 * height))
        profile = np.zeros((height, width), dtype=np.float32)
        top, left = (height - inner_h) // 2, (width - inner_w) // 2
        inked = glyph.resize((inner_w, inner_h), Image.Resampling.BILINEAR)
        profile[top : top + inner_h, left : left + inner_w] = np.asarray(inked, dtype=np.float32) / 255
    dark, bright = contrasting_colours(rng)
    colours = dark + (bright - dark) * profile[..., None]  # (h, w, 3)
    if rng.uniform() < 0.5:
        mask = np.ones((height, width), dtype=bool)
    else:
        mask = ((yy + 0.5 - height / 2) / (height / 2)) ** 2 + ((xx + 0.5 - width / 2) / (width / 2)) ** 2 <= 1
    # A one-pixel near-black outline makes the sprite an object that stands out from the texture.
    padded = np.pad(mask, 1)  # (h + 2, w + 2), False outside
    interior = mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    colours[mask & ~interior] = 0.05
    return colours, mask


def synthetic_video(seed: int, frames: int, size: int) -> torch.Tensor:
    """(T, 3, size, size) in [-1, 1], fully deterministic given (seed, frames, size)."""
    if size < 8 or frames < 1:
        raise DataError(f"synthetic videos need size >= 8 and frames >= 1, got size={size}, "
                        f"frames={frames}: raise --height/--width or --history")
    rng = np.random.default_rng(seed)
    time_steps = np.arange(frames, dtype=np.float64)  # (T,)
    pixel = np.arange(size)  # (S,)

    # Camera: constant velocity over the 2S canvas, bouncing off its edges (a triangle wave),
    # 0.3..1.5 px/frame at S=32. Integer positions keep every texture edge sharp.
    canvas = textured_canvas(rng, size)  # (2S, 2S, 3)
    travel = size  # the camera's top-left corner moves within [0, S] on each axis
    speed, angle = rng.uniform(0.3, 1.5) * size / 32, rng.uniform(0, 2 * np.pi)
    camera = []
    for start, velocity in zip(rng.uniform(0, travel, size=2), (speed * np.sin(angle), speed * np.cos(angle))):
        folded = np.mod(start + velocity * time_steps, 2 * travel)
        camera.append(np.rint(np.where(folded > travel, 2 * travel - folded, folded)).astype(int))  # (T,)
    rows = camera[0][:, None] + pixel  # (T, S) canvas row of each frame row
    cols = camera[1][:, None] + pixel  # (T, S) canvas column of each frame column
    video = canvas[rows[:, :, None], cols[:, None, :]]  # (T, S, S, 3)

    # Sprites: constant velocity, 0.5..2 px/frame at S=32, wrapping around a region larger
    # than the frame, so that each one leaves on one side and comes back on the other.
    for _ in range(rng.integers(2, 4)):
        height, width = np.maximum(2, np.rint(rng.uniform(0.25, 0.45, size=2) * size)).astype(int)
        colours, mask = sprite_pattern(rng, height, width, size)
        speed, angle = rng.uniform(0.5, 2.0) * size / 32, rng.uniform(0, 2 * np.pi)
        offsets = []  # per axis: the frame pixel minus the sprite's top-left corner, (T, S)
        for extent, velocity in ((height, speed * np.sin(angle)), (width, speed * np.cos(angle))):
            loop = size + extent + rng.uniform(0, 0.5) * size  # the sprite is hidden for part of each loop
            start = rng.uniform(extent, size)  # the first frame shows the whole sprite
            corner = np.floor(np.mod(start + velocity * time_steps, loop)).astype(int) - extent  # (T,)
            offsets.append(pixel - corner[:, None])  # (T, S)
        inside_rows = (offsets[0] >= 0) & (offsets[0] < height)  # (T, S)
        inside_cols = (offsets[1] >= 0) & (offsets[1] < width)  # (T, S)
        sprite_rows = np.clip(offsets[0], 0, height - 1)[:, :, None]  # (T, S, 1)
        sprite_cols = np.clip(offsets[1], 0, width - 1)[:, None, :]  # (T, 1, S)
        covered = mask[sprite_rows, sprite_cols] & inside_rows[:, :, None] & inside_cols[:, None, :]  # (T, S, S)
        video = np.where(covered[..., None], colours[sprite_rows, sprite_cols], video)  # (T, S, S, 3)

    video = torch.from_numpy(np.ascontiguousarray(video, dtype=np.float32))  # (T, S, S, 3) in [0, 1]
    return (video.permute(0, 3, 1, 2) * 2 - 1).contiguous()  # (T, 3, S, S) in [-1, 1]


def synthetic_videos(seeds, frames: int, size: int, progress: bool = False) -> torch.Tensor:
    """(N, T, 3, size, size) float in [-1,1] -- stacks synthetic_video over seeds, with a tqdm bar if progress."""
    seeds = list(seeds)
    videos = torch.empty(len(seeds), frames, 3, size, size)  # (N, T, 3, S, S), filled in place: no stack copy
    for index, seed in enumerate(tqdm(seeds, desc="synthetic videos", disable=not progress)):
        videos[index] = synthetic_video(seed, frames, size)
    return videos


# ----------------------------------------------------------------------------- memory-recall benchmark
RECALL_FULL_VIEWS = 2  # frames in which the object is seen whole before it hides


def recall_speed_and_width(size):
    """The recall object's speed (px/frame, 2 at S=32) and width (8 px at S=32): integers, so
    that its re-entry and its hidden frames fall on exact frames."""
    return max(1, round(2 * size / 32)), max(4, round(0.25 * size))


def recall_hidden_range(frames: int, size: int, after: int = 2) -> int:
    """The largest `hidden` that recall_video(seed, frames, size, hidden, after=after) accepts:
    the object must be seen whole in RECALL_FULL_VIEWS frames before it hides."""
    if size < 8 or after < 0:
        raise DataError(f"recall videos need size >= 8 and after >= 0, got size={size}, after={after}: "
                        "raise --height/--width or pass after >= 0")
    speed, width = recall_speed_and_width(size)
    # Counting back from the first hidden frame, the object was last whole ceil(width / speed)
    # frames earlier: each extra hidden frame pushes its whole views back by one frame, until
    # fewer than RECALL_FULL_VIEWS of them are left after frame 0.
    enter = frames - after - 1
    largest = enter - -(-width // speed) - (RECALL_FULL_VIEWS - 1)
    if largest < 1:
        raise DataError(f"recall videos of size {size} with after={after} need frames >= {frames - largest + 1}, "
                        f"got {frames}: raise --history")
    return largest


def recall_video(seed: int, frames: int, size: int, hidden: int, look: int = None, after: int = 2) -> tuple:
    """-> video (T, 3, S, S) float32 in [-1, 1], object mask (T, S, S) bool.

    The memory-recall benchmark of evaluate.py --objects (object consistency, docs/paper.md Table 2;
    the paper's Figure 6): a static camera over a texture and one patterned object that moves
    right at constant speed, leaves the frame, stays hidden for exactly `hidden` frames and comes
    back through the same edge at frame T - after - 1, so a model must recall its look from memory.
    The background, the row and the size come from `seed`, the object's look from `look`
    (default `seed`): two looks give identical videos outside the object."""
    largest = recall_hidden_range(frames, size, after)
    if hidden < 1 or hidden > largest:
        raise DataError(f"recall_video needs 1 <= hidden <= {largest} at "
                        f"frames={frames}, size={size}, after={after}, got hidden={hidden}: "
                        "lower hidden or raise --history")
    rng = np.random.default_rng(seed)
    speed, width = recall_speed_and_width(size)
    top, left = rng.integers(0, size + 1, size=2)  # a window of the (2S, 2S) canvas
    canvas = textured_canvas(rng, size)[top : top + size, left : left + size]  # (S, S, 3)
    height = round(rng.uniform(0.3, 0.45) * size)
    row = rng.integers(0, size - height + 1)  # the object is always whole vertically
    colours, mask = sprite_pattern(np.random.default_rng([seed if look is None else look, 1]), height, width, size)

    # The object moves right, leaves on the right, is hidden for exactly `hidden` frames and comes
    # back the way it went, as if it bounced off a wall just outside the frame: `speed` px of it
    # show in the last frame before it hides and again in the re-entry frame, and it comes back
    # where it left, so recalling its look is a lookup far back in time but not across space.
    enter, last = frames - after - 1, frames - after - 2 - hidden
    t = np.arange(frames)
    steps_in = np.maximum(np.maximum(t - enter + 1, last - t + 1), 0)  # (T,) 0 while hidden
    corner = size - speed * steps_in  # (T,) the object's left column (S = just outside, hidden)
    offsets = np.arange(size) - corner[:, None]  # (T, S) object column under each frame column
    inside = (offsets >= 0) & (offsets < width)  # (T, S)
    object_cols = np.clip(offsets, 0, width - 1)  # (T, S)
    object_mask = np.zeros((frames, size, size), dtype=bool)  # (T, S, S)
    object_mask[:, row : row + height] = mask[:, object_cols].transpose(1, 0, 2) & inside[:, None, :]  # (T, h, S)
    video = np.repeat(canvas[None], frames, axis=0)  # (T, S, S, 3)
    object_colours = colours[:, object_cols].transpose(1, 0, 2, 3)  # (T, h, S, 3)
    band = video[:, row : row + height]  # (T, h, S, 3), a view: painting it paints the video
    band[:] = np.where(object_mask[:, row : row + height, :, None], object_colours, band)

    video = torch.from_numpy(np.ascontiguousarray(video, dtype=np.float32))  # (T, S, S, 3) in [0, 1]
    return (video.permute(0, 3, 1, 2) * 2 - 1).contiguous(), torch.from_numpy(object_mask)  # (T, 3, S, S), (T, S, S)


# ----------------------------------------------------------------------------- real videos
VIDEO_EXTENSIONS = (".mp4", ".webm", ".gif", ".mov", ".avi", ".mkv")


def square_frame_hwc_uint8(frame, size):
    """Any decoded frame (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 -> (S, S, 3) uint8:
    converted to RGB, short side resized to S with antialiasing, centre-cropped."""
    image = Image.fromarray(frame[..., 0] if frame.ndim == 3 and frame.shape[2] == 1 else frame)
    image = image.convert("RGB")  # grayscale, palette and RGBA frames all become RGB
    width, height = image.size
    scale = size / min(width, height)
    new_width, new_height = max(size, round(width * scale)), max(size, round(height * scale))
    # reducing_gap: a box (area) reduction by an integer factor first, then bilinear: fast and alias-free.
    image = image.resize((new_width, new_height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    left, top = (new_width - size) // 2, (new_height - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)))


def variable_frame_rate_share(path) -> float:
    """The share of frame-to-frame gaps that differ from the others, by ffmpeg's vfrdet filter:
    0 for a constant frame rate (phones often record a variable one)."""
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    done = subprocess.run([ffmpeg, "-hide_banner", "-i", path, "-map", "0:v:0", "-vf", "vfrdet", "-f", "null", "-"],
                          capture_output=True, text=True)
    shares = re.findall(r"VFR:([0-9.]+)", done.stderr)
    return float(shares[-1]) if shares else 0.0


def load_video_thwc_uint8(path, size, frame_stride):
    """Decode a video file, keeping every frame_stride-th frame, each resized and cropped to
    S x S as soon as it is decoded (no full-HD frame is kept). Returns (T, S, S, 3) uint8.
    A variable frame rate is decoded at a constant one (ffmpeg repeats frames where the video
    slowed), with a one-line warning, so that frame_stride means the same time everywhere."""
    try:
        with imageio.v2.get_reader(path) as reader:
            fps = reader.get_meta_data().get("fps")
        share = 0.0 if path.lower().endswith(".gif") else variable_frame_rate_share(path)   # GIFs: Pillow, not ffmpeg
        if share > 0 and fps:
            print(f"warning: '{os.path.basename(path)}' has a variable frame rate ({share:.0%} of frame gaps differ): "
                  f"decoded at a constant {fps:g} fps; re-encode it to choose the rate yourself "
                  f"(ffmpeg -i in.mp4 -fps_mode cfr -r 24 out.mp4)", file=sys.stderr)
        with imageio.v2.get_reader(path, **({"fps": fps} if share > 0 and fps else {})) as reader:
            frames = [square_frame_hwc_uint8(frame, size) for index, frame in enumerate(reader) if index % frame_stride == 0]
    except Exception as error:  # imageio, ffmpeg and Pillow raise many types (OSError, SyntaxError, EOFError, ...)
        reason = str(error).strip().split("\n")[0]
        raise DataError(f"cannot decode video file '{path}' ({type(error).__name__}: {reason}): "
                        "re-encode it (e.g. H.264 .mp4) or remove it from the folder") from error
    if not frames:
        raise DataError(f"video file '{path}' has no frames: re-encode it or remove it from the folder")
    return np.stack(frames)  # (T, S, S, 3)


def cached_video_thwc_uint8(path, size, frame_stride, cache_dir):
    """load_video_thwc_uint8, stored once in cache_dir as .npy: decoding HD video takes seconds,
    loading the small result takes milliseconds. The key is a hash of the file's bytes, so two
    files of one name, size and time in two folders never share an entry. A cache entry that
    cannot be read back whole is decoded again; a cache folder that cannot be written (a
    read-only working directory, a full disk) costs the speed-up, not the run."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    key = f"{os.path.basename(path)}.{digest.hexdigest()[:20]}.{size}px.stride{frame_stride}.npy"
    cache_path = os.path.join(cache_dir, key)
    if os.path.exists(cache_path):
        try:
            video = np.load(cache_path)
            if video.dtype == np.uint8 and video.ndim == 4 and len(video) and video.shape[1:] == (size, size, 3):
                return video
            reason = f"shape {video.shape}, {video.dtype}"
        except Exception as error:  # truncated (ValueError, EOFError), unreadable (OSError), ...
            reason = type(error).__name__
        print(f"warning: cache entry '{cache_path}' is damaged ({reason}): decoding '{os.path.basename(path)}' again",
              file=sys.stderr)
        with contextlib.suppress(OSError):
            os.remove(cache_path)
    video = load_video_thwc_uint8(path, size, frame_stride)  # (T, S, S, 3)
    partial = f"{cache_path}.partial-{os.getpid()}"  # one per process: two runs may fill the cache at once
    try:
        os.makedirs(cache_dir, exist_ok=True)
        with open(partial, "wb") as file:
            np.save(file, video)
        os.replace(partial, cache_path)  # atomic: an interrupted run leaves no truncated cache
    except BaseException as error:  # Ctrl-C too: no partial file is left behind
        with contextlib.suppress(OSError):
            os.remove(partial)
        if not isinstance(error, OSError):
            raise
        if cache_dir not in _UNCACHED:  # one warning per folder, not one per video
            _UNCACHED.add(cache_dir)
            print(f"warning: cannot write the video cache '{cache_dir}' ({error.strerror or error}): decoding without "
                  f"it, so every run decodes again; run from a folder you can write to", file=sys.stderr)
    return video


_UNCACHED = set()  # cache folders cached_video_thwc_uint8 could not write to


class VideoTooShort(DataError):
    """A video with fewer frames than one clip needs."""


TOO_SHORT_ADVICE = "lower --history or --frame_stride, or use a longer video"  # the training scripts' fix


def video_file_clips(path: str, frames: int, size: int, frame_stride: int = 2, cache_dir: str = "runs/cache",
                     advice: str = TOO_SHORT_ADVICE) -> torch.Tensor:
    """One video file -> (n_clips, T, 3, S, S) float in [-1, 1], non-overlapping clips of `frames`.
    advice: the fix a too-short video's error names, in the flags of the calling script."""
    if not os.path.isfile(path):
        raise DataError(f"video file '{path}' does not exist: pass an existing .mp4/.webm/.gif file")
    video = cached_video_thwc_uint8(path, size, frame_stride, cache_dir)  # (F, S, S, 3)
    n_clips = len(video) // frames
    if n_clips == 0:
        raise VideoTooShort(f"'{os.path.basename(path)}' has {len(video)} frames after frame_stride={frame_stride}, "
                            f"fewer than the {frames} a clip needs: {advice}")
    video = torch.from_numpy(video[: n_clips * frames]).reshape(n_clips, frames, size, size, 3)  # (n_clips, T, S, S, 3)
    return video.permute(0, 1, 4, 2, 3).float() / 127.5 - 1  # (n_clips, T, 3, S, S) in [-1, 1]


def video_folder_clips(folder: str, frames: int, size: int, frame_stride: int = 2, cache_dir: str = "runs/cache",
                       advice: str = TOO_SHORT_ADVICE, min_clips: int = 2) -> dict:
    """Decode every .mp4/.webm/.gif/.mov/.avi/.mkv in `folder` (sorted by name), resize the short
    side to `size` and centre-crop, keep every `frame_stride`-th frame, and cut each video into
    non-overlapping clips of `frames` frames. Returns {filename: (n_clips, T, 3, S, S) float in
    [-1, 1]}, one entry per file long enough for one clip; shorter files are skipped with a
    warning, and it is an error if the files give fewer than `min_clips` clips in all (training
    needs 2: one to train on, one held out to validate; training.load_videos)."""
    if frames < 1 or size < 1 or frame_stride < 1:
        raise DataError(f"need frames, size and frame_stride >= 1, got {frames}, {size}, {frame_stride}: "
                        "fix --history, --height/--width or --frame_stride")
    if os.path.isfile(folder):
        raise DataError(f"--data '{folder}' is a file: pass a folder of videos, e.g. its folder "
                        f"'{os.path.dirname(os.path.abspath(folder))}' (every video in it is used) or one holding only this file")
    if not os.path.isdir(folder):
        raise DataError(f"video folder '{folder}' does not exist: "
                        "pass --data synthetic or a folder of .mp4/.webm/.gif files")
    names = sorted(name for name in os.listdir(folder)
                   if name.lower().endswith(VIDEO_EXTENSIONS) and os.path.isfile(os.path.join(folder, name)))
    if not names:
        raise DataError(f"video folder '{folder}' holds no {'/'.join(VIDEO_EXTENSIONS)} files: "
                        "add some or pass --data synthetic")

    clips, too_short = {}, []
    for name in names:
        try:
            clips[name] = video_file_clips(os.path.join(folder, name), frames, size, frame_stride, cache_dir, advice)
        except VideoTooShort as e:
            too_short.append(str(e))
    if not clips:
        raise DataError(f"no video in '{folder}' is long enough: {'; '.join(too_short)}")
    if sum(len(c) for c in clips.values()) < min_clips:  # one video, one clip: nothing left to train on
        name = next(iter(clips))
        kept = len(cached_video_thwc_uint8(os.path.join(folder, name), size, frame_stride, cache_dir))
        raise DataError(f"'{name}' has {kept} frames after frame_stride={frame_stride}: one clip of {frames}, and "
                        f"training needs {min_clips} (one to train on, one to validate): {advice}, or add another video")
    for message in too_short:
        print(f"warning: skipping {message}", file=sys.stderr)
    return clips


def main():
    import argparse
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", default="", help="a folder of videos to cut into clips (optional)")
    parser.error = fail
    folder = parser.parse_args().folder
    video = synthetic_video(seed=0, frames=16, size=32)
    print(f"synthetic_video(seed=0, frames=16, size=32): {tuple(video.shape)} (T, C, H, W), "
          f"range [{video.min():.2f}, {video.max():.2f}]")
    start = time.time()
    videos = synthetic_videos(range(VAL_SEED_OFFSET, VAL_SEED_OFFSET + 100), frames=16, size=32)
    print(f"100 validation videos: {tuple(videos.shape)} (B, T, C, H, W) in {time.time() - start:.2f} s")
    horizontal_detail = (videos[..., 1:] - videos[..., :-1]).abs().mean()
    print(f"mean |horizontal neighbour difference| = {horizontal_detail:.3f} (a measure of fine detail)")
    if folder:
        clips = video_folder_clips(folder, frames=16, size=32, frame_stride=4)
        for name, clip in clips.items():
            print(f"{name}: {tuple(clip.shape)} (clips, T, C, H, W)")


if __name__ == "__main__":
    run_main(main)
