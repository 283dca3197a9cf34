"""Pictures: line charts drawn with Pillow alone (matplotlib is not a dependency), and videos
as PNG grids, GIFs and MP4s.

    line_chart({"pfp": (xs, ys), "only_lr": (xs, ys2)}, "results/psnr.png",
               title="PSNR vs frame position", xlabel="frame", ylabel="PSNR (dB)")

One line per series in a fixed tab10-like palette; None/NaN in ys breaks the line; the legend
sits outside the plot area, to its right, so it never hides data. Each axis gets ~5 "nice"
ticks: steps of 1, 2 or 5 x 10^k when linear, powers of 10 (of 2 over short spans) when log.

    python plot.py [out.png]      # demo chart, written to /tmp/plot_demo.png by default
"""
import argparse
import math
import os
from itertools import groupby

import imageio
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from config import ConfigError, fail, run_main
from checkpoint import write_atomically

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
TEXT, AXIS, GRID = (30, 30, 30), (90, 90, 90), (228, 228, 228)


def _label(v, step):
    """A tick label with the decimals that step needs, or 2.5e6 style for huge/tiny numbers."""
    if step >= 1e-3 and abs(v) < 1e5:
        return f"{v:.{max(0, -math.floor(math.log10(step) + 1e-9))}f}"
    return f"{v:.3g}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def _ticks(lo, hi, log, most=7):
    """Ticks in [lo, hi] and their labels. Linear: multiples of the smallest step 1, 2 or 5 x 10^k
    that gives at most `most` ticks. Log: powers of 10 (of 2 when hi/lo < 1000), thinned."""
    if log:
        base = 10 if hi / lo >= 1000 else 2
        e0, e1 = math.ceil(math.log(lo, base) - 1e-9), math.floor(math.log(hi, base) + 1e-9)
        k = max(1, math.ceil((e1 - e0 + 1) / most))                # keep every k-th power
        ticks = [float(base) ** e for e in range(e0, e1 + 1) if e % k == 0]
        return ticks, [_label(t, t) for t in ticks]
    mag = 10 ** math.floor(math.log10((hi - lo) / most))
    for step in (m * mag for m in (1, 2, 5, 10, 20, 50)):
        i0, i1 = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
        if i1 - i0 + 1 <= most:
            ticks = [i * step for i in range(i0, i1 + 1)]
            return ticks, [_label(t, step) for t in ticks]


def _axis(vals, log):
    """Ticks, their labels and a map value -> [0, 1]; the axis spans vals plus a 4% margin."""
    tf, inv = (math.log10, lambda t: 10 ** t) if log else (float, float)
    lo, hi = tf(min(vals)), tf(max(vals))
    pad = (hi - lo) * 0.04 or (0.3 if log else abs(lo) * 0.1 or 1.0)   # all equal: pad anyway
    lo, hi = inv(lo - pad), inv(hi + pad)
    while log and len(_ticks(lo, hi, log)[0]) < 2:                 # narrow log range: widen
        lo, hi = lo / 2, hi * 2
    a, b = tf(lo), tf(hi)
    return *_ticks(lo, hi, log), lambda v: (tf(v) - a) / (b - a)


def _text(draw, x, y, s, font, ax=0.5, ay=0.5):
    """Draw s so that the point (ax, ay) of its box (0 = left/top, 1 = right/bottom) is (x, y)."""
    l, t, r, b = font.getbbox(s)
    draw.text((x - l - ax * (r - l), y - t - ay * (b - t)), s, font=font, fill=TEXT)


def line_chart(series, path, title="", xlabel="", ylabel="", xlog=False, ylog=False,
               width=720, height=440, markers=True):
    """series: dict label -> (xs, ys) sequences of numbers (ys may contain None/NaN = gap).
    Writes a PNG to path: width x height, widened on the right for the legend."""
    if not series:
        raise ValueError("line_chart: series is empty, nothing to plot")
    num = lambda v: math.nan if v is None else float(v)
    finite = lambda p: math.isfinite(p[0]) and math.isfinite(p[1])
    data = {str(k): [(num(x), num(y)) for x, y in zip(xs, ys, strict=True)]
            for k, (xs, ys) in series.items()}
    pts = [p for ps in data.values() for p in ps if finite(p)]
    if not pts:
        raise ValueError("line_chart: no finite (x, y) point in any series")
    for name, log, i in (("x", xlog, 0), ("y", ylog, 1)):
        if log and min(p[i] for p in pts) <= 0:
            raise ValueError(f"line_chart: {name} axis is log but has values <= 0")
    xt, xl, fx = _axis([p[0] for p in pts], xlog)
    yt, yl, fy = _axis([p[1] for p in pts], ylog)

    font, tfont = ImageFont.load_default(size=14), ImageFont.load_default(size=17)   # Pillow >= 10.1
    wid = lambda s, f=font: math.ceil(f.getlength(s))              # text width, pixels
    hgt = lambda s, f=font: f.getbbox(s)[3] - f.getbbox(s)[1]      # text height, pixels
    th = hgt("0123456789")
    # plot area [x0, x1] x [y0, y1] inside the requested width x height; the legend goes right
    y0 = 14 + (hgt(title, tfont) + 14 if title else 0)
    y1 = height - 14 - th - 10 - (th + 10 if xlabel else 0)
    x0 = 14 + (th + 10 if ylabel else 0) + max(map(wid, yl)) + 10
    x1 = width - max(16, wid(xl[-1]) // 2 + 6)
    lw, row = 66 + max(map(wid, data)), th + 10                    # legend box width, row height
    img = Image.new("RGB", (x1 + lw + 32, max(height, y0 + row * len(data) + 20)), "white")
    d = ImageDraw.Draw(img)
    px = lambda x: x0 + fx(x) * (x1 - x0)
    py = lambda y: y1 - fy(y) * (y1 - y0)

    for t, s in zip(xt, xl):                                       # grid, ticks, tick labels
        d.line([(px(t), y0), (px(t), y1)], fill=GRID)
        d.line([(px(t), y1), (px(t), y1 + 5)], fill=AXIS)
        _text(d, px(t), y1 + 8, s, font, ay=0)
    for t, s in zip(yt, yl):
        d.line([(x0, py(t)), (x1, py(t))], fill=GRID)
        d.line([(x0 - 5, py(t)), (x0, py(t))], fill=AXIS)
        _text(d, x0 - 8, py(t), s, font, ax=1)
    d.rectangle([x0, y0, x1, y1], outline=AXIS)
    _text(d, (x0 + x1) / 2, 14, title, tfont, ay=0)               # "" draws nothing
    _text(d, (x0 + x1) / 2, height - 14, xlabel, font, ay=1)
    if ylabel:                                                     # rotated: draw into a mask
        l, t, r, b = font.getbbox(ylabel)
        mask = Image.new("L", (r - l, b - t))
        ImageDraw.Draw(mask).text((-l, -t), ylabel, font=font, fill=255)
        mask = mask.rotate(90, expand=True)
        img.paste(TEXT, (14, (y0 + y1 - mask.height) // 2), mask)

    lx = x1 + 20                                                   # legend box, left edge
    d.rectangle([lx, y0, lx + lw, y0 + row * len(data) + 10], outline=AXIS)
    for i, (label, ps) in enumerate(data.items()):
        c = PALETTE[i % len(PALETTE)]
        # the line breaks at gaps: draw each run of finite points on its own
        for run in ([(px(x), py(y)) for x, y in g] for ok, g in groupby(ps, finite) if ok):
            if len(run) > 1:
                d.line(run, fill=c, width=2, joint="curve")
            for x, y in run if markers or len(run) == 1 else []:   # a lone point needs its dot
                d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=c)
        cy = y0 + 5 + row * i + row / 2                            # legend entry i
        d.line([(lx + 14, cy), (lx + 44, cy)], fill=c, width=2)
        if markers:
            d.ellipse([lx + 26, cy - 3, lx + 32, cy + 3], fill=c)
        _text(d, lx + 52, cy, label, font, ax=0)

    tmp = f"{path}.tmp-{os.getpid()}"                              # this process's own: two runs may plot at once
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        img.save(tmp, format="PNG")
        os.replace(tmp, path)                                      # atomic: never a half PNG
    except OSError as e:                                           # a full disk, a read-only folder
        if os.path.exists(tmp):
            os.remove(tmp)
        raise ConfigError(f"could not write {path} ({e.strerror or e}): free disk space or choose another folder") from e
    return path



# Pictures of videos: frames as PNG grids, GIFs and MP4s, each written atomically.

def framed_bthwc_uint8(video, prompt_frames: int, scale: int = 8, border: int = 2) -> np.ndarray:
    """(B, T, 3, H, W) in [-1, 1] -> (T, B*H', W', 3) uint8: the batch stacked vertically, upscaled
    with nearest pixels, each frame framed red while it is prompt and green once generated."""
    frames = []
    for t in range(video.shape[1]):
        tiles = []
        for b in range(video.shape[0]):
            tile = np.asarray(Image.fromarray(to_uint8_hwc(video[b, t])).resize(
                (video.shape[-1] * scale, video.shape[-2] * scale), Image.NEAREST))
            tile = np.pad(tile, ((border, border), (border, border), (0, 0)))
            tile[:border], tile[-border:], tile[:, :border], tile[:, -border:] = [(220, 40, 40) if t < prompt_frames else (40, 200, 60)] * 4
            tiles.append(tile)
        frames.append(np.concatenate(tiles, axis=0))
    return np.stack(frames)


def save_bthwc_uint8_as_mp4_and_gif(frames, path_stem, fps: int = 8):
    """(T, H, W, 3) uint8 -> <path_stem>.mp4 (H.264 via imageio-ffmpeg) and <path_stem>.gif, each atomic."""
    def mp4(tmp):
        with imageio.v2.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", macro_block_size=1) as writer:
            for frame in frames:
                writer.append_data(frame[:frame.shape[0] // 2 * 2, :frame.shape[1] // 2 * 2])   # yuv420p: even sides
        # ffmpeg can fail to finish the file (a full disk) without imageio raising: read it back
        # whole before it may replace a good one.
        try:
            with imageio.v2.get_reader(tmp, format="FFMPEG") as reader:
                count = sum(1 for _ in reader)
        except Exception as e:
            raise OSError(f"the video written is not readable ({type(e).__name__})") from e
        if count != len(frames):
            raise OSError(f"the video written holds {count} of its {len(frames)} frames")
    write_atomically(path_stem + ".mp4", mp4)
    images = [Image.fromarray(frame) for frame in frames]
    write_atomically(path_stem + ".gif", lambda tmp: images[0].save(tmp, format="GIF", save_all=True,
                                                                   append_images=images[1:], duration=1000 // fps, loop=0))


def to_uint8_hwc(frame):
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    return ((frame.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def save_rows_png(rows, path, scale=4, gap=2):
    """rows: list of (N, 3, H, W) tensors -> one PNG, a row each, upscaled with nearest pixels."""
    N, _, H, W = rows[0].shape
    canvas = np.full((len(rows) * (H + gap), N * (W + gap), 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, frame in enumerate(row):
            canvas[i * (H + gap):i * (H + gap) + H, j * (W + gap):j * (W + gap) + W] = to_uint8_hwc(frame)
    image = Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST)
    write_atomically(path, lambda tmp: image.save(tmp, format="PNG"))


def save_rows_gif(frames_of_rows, path, scale=4, ms=120):
    """frames_of_rows: list over time of row-lists (as save_rows_png) -> an animated GIF."""
    images = []
    for rows in frames_of_rows:
        N, _, H, W = rows[0].shape
        strip = np.concatenate([np.concatenate([to_uint8_hwc(f) for f in row], axis=1) for row in rows], axis=0)
        images.append(Image.fromarray(strip).resize((strip.shape[1] * scale, strip.shape[0] * scale), Image.NEAREST))
    write_atomically(path, lambda tmp: images[0].save(tmp, format="GIF", save_all=True,
                                                       append_images=images[1:], duration=ms, loop=0))


def labelled_png(rows, labels, path, scale=3, margin=270):
    """rows: list of (N, 3, H, W) -> a PNG grid with each row's label on its left."""
    save_rows_png(rows, path, scale=scale)
    grid = Image.open(path).convert("RGB")
    canvas = Image.new("RGB", (grid.width + margin, grid.height), "white")
    canvas.paste(grid, (margin, 0))
    draw, step = ImageDraw.Draw(canvas), grid.height / len(rows)
    font = ImageFont.load_default(size=14)                # scalable since Pillow 10.1 (requirements.txt)
    for i, label in enumerate(labels):
        draw.text((6, i * step + step / 2), label, fill="black", font=font, anchor="lm")
    write_atomically(path, lambda tmp: canvas.save(tmp, format="PNG"))


def main():
    fs = list(range(0, 33, 2))                                     # made-up demo numbers
    demo = {m: (fs, [b - drop * f / 32 + 0.4 * math.sin(f + b) for f in fs]) for m, b, drop in
            [("pfp", 31, 3), ("only_lr", 29, 5), ("without_lr", 28, 6), ("none", 26, 9)]}
    demo["without_lr"][1][7:9] = [None, None]                      # a gap breaks the line
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", default="/tmp/plot_demo.png", help="the demo chart's PNG path")
    parser.error = fail
    out = parser.parse_args().out
    line_chart(demo, out, title="PSNR vs frame position (demo data)", xlabel="frame position",
               ylabel="PSNR (dB)")
    print(f"wrote {out}")


if __name__ == "__main__":
    run_main(main)
